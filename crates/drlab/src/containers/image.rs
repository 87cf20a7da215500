//! `drlab image build`: one image with every drlab binary plus iptables and iproute2, built with
//! no registry. The base is a Debian root filesystem made by `debootstrap --variant=minbase` and
//! `docker import`ed, built only when its tag is missing; the image is a two-line Dockerfile on
//! top that copies the binaries from a cargo target dir, so a rebuild with nothing changed is
//! Docker's cache answering.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use super::docker::{docker, require_daemon, run_tool};

/// Every binary the image holds (all in `/usr/local/bin`).
pub const BINARIES: [&str; 6] = [
    "sipserver-mock",
    "gws-mock",
    "proxy",
    "softphone-sim",
    "desktop-sim",
    "drlab",
];

/// The image `drlab image build` and `drlab compose` use unless told otherwise.
pub const DEFAULT_TAG: &str = "drlab:latest";

/// Debian packages the base adds to minbase: iptables and tc for faults, curl for healthchecks.
pub const BASE_PACKAGES: &str = "iptables,iproute2,ca-certificates,curl";

/// Where debootstrap fetches packages unless `DRLAB_DEBIAN_MIRROR` says otherwise.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// The iptables backend: the image must use the host's, or rules land in tables the kernel side
/// of the host does not show (and `iptables -L` on either side misleads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IptablesBackend {
    Nft,
    Legacy,
}

impl IptablesBackend {
    /// From `iptables -V` output (`iptables v1.8.9 (nf_tables)` or `(legacy)`).
    pub fn from_version(text: &str) -> IptablesBackend {
        if text.contains("legacy") {
            IptablesBackend::Legacy
        } else {
            IptablesBackend::Nft
        }
    }

    /// The host's backend; nf_tables (Debian's default) when the host has no iptables.
    pub fn of_host() -> IptablesBackend {
        Command::new("iptables")
            .arg("-V")
            .output()
            .map(|o| IptablesBackend::from_version(&String::from_utf8_lossy(&o.stdout)))
            .unwrap_or(IptablesBackend::Nft)
    }

    fn suffix(self) -> &'static str {
        match self {
            IptablesBackend::Nft => "nft",
            IptablesBackend::Legacy => "legacy",
        }
    }
}

/// What to build.
#[derive(Clone, Debug)]
pub struct ImageBuild {
    /// A cargo target dir holding [`BINARIES`] (e.g. `target/debug`).
    pub binaries: PathBuf,
    pub tag: String,
    pub backend: IptablesBackend,
    pub mirror: String,
}

/// What a build did and how long each part took.
#[derive(Clone, Debug)]
pub struct Built {
    pub base_tag: String,
    /// None when the base was already there.
    pub base_took: Option<Duration>,
    pub tag: String,
    pub image_took: Duration,
}

impl ImageBuild {
    /// `binaries` (default: the directory of the running executable), `tag` (default
    /// [`DEFAULT_TAG`]), the host's iptables backend, the mirror of `DRLAB_DEBIAN_MIRROR`.
    pub fn new(binaries: Option<PathBuf>, tag: Option<String>) -> anyhow::Result<ImageBuild> {
        let binaries = match binaries {
            Some(dir) => dir,
            None => std::env::current_exe()
                .context("cannot locate the running drlab binary")?
                .parent()
                .map(Path::to_path_buf)
                .ok_or_else(|| anyhow!("the drlab binary has no directory"))?,
        };
        Ok(ImageBuild {
            binaries,
            tag: tag.unwrap_or_else(|| DEFAULT_TAG.to_string()),
            backend: IptablesBackend::of_host(),
            mirror: std::env::var("DRLAB_DEBIAN_MIRROR")
                .unwrap_or_else(|_| DEFAULT_MIRROR.to_string()),
        })
    }

    /// The base image's tag: one per iptables backend.
    pub fn base_tag(&self) -> String {
        format!("drlab-base:bookworm-{}", self.backend.suffix())
    }

    /// Builds the base if missing, then the image. `progress` hears each step.
    pub fn run(&self, progress: impl Fn(&str)) -> anyhow::Result<Built> {
        require_daemon()?;
        self.check_binaries()?;
        let base_tag = self.base_tag();
        let base_took = if docker(&["image", "inspect", &base_tag]).is_ok() {
            None
        } else {
            progress(&format!(
                "building the base image {base_tag} (debootstrap, a few minutes)"
            ));
            let started = Instant::now();
            self.build_base(&base_tag)?;
            Some(started.elapsed())
        };
        progress(&format!(
            "building {} from {}",
            self.tag,
            self.binaries.display()
        ));
        let started = Instant::now();
        let context = self
            .binaries
            .join(format!("drlab-image-context-{}", std::process::id()));
        let result = self.build_image(&base_tag, &context);
        let _ = std::fs::remove_dir_all(&context);
        result?;
        Ok(Built {
            base_tag,
            base_took,
            tag: self.tag.clone(),
            image_took: started.elapsed(),
        })
    }

    fn check_binaries(&self) -> anyhow::Result<()> {
        for name in BINARIES {
            let path = self.binaries.join(name);
            if !path.is_file() {
                bail!(
                    "{} is missing: run `cargo build --workspace --bins` (add --release for target/release) \
                     or pass --binaries DIR",
                    path.display()
                );
            }
        }
        Ok(())
    }

    fn build_base(&self, tag: &str) -> anyhow::Result<()> {
        let rootfs = std::env::temp_dir().join(format!("drlab-rootfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&rootfs);
        let result = self.bootstrap(&rootfs).and_then(|()| import(&rootfs, tag));
        let _ = std::fs::remove_dir_all(&rootfs);
        result
    }

    fn bootstrap(&self, rootfs: &Path) -> anyhow::Result<()> {
        let root = rootfs.to_string_lossy();
        let include = format!("--include={BASE_PACKAGES}");
        run_tool(
            "debootstrap",
            &[
                "--variant=minbase",
                &include,
                "bookworm",
                &root,
                &self.mirror,
            ],
            "install it: apt-get install -y debootstrap",
        )?;
        if self.backend == IptablesBackend::Legacy {
            for (name, path) in [
                ("iptables", "/usr/sbin/iptables-legacy"),
                ("ip6tables", "/usr/sbin/ip6tables-legacy"),
            ] {
                run_tool(
                    "chroot",
                    &[&root, "update-alternatives", "--set", name, path],
                    "the host uses legacy iptables and the image must too",
                )?;
            }
        }
        // Package caches are not needed at run time.
        for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
            let dir = rootfs.join(dir);
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    if entry.path().is_file() {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
        }
        Ok(())
    }

    fn build_image(&self, base_tag: &str, context: &Path) -> anyhow::Result<()> {
        let _ = std::fs::remove_dir_all(context);
        std::fs::create_dir_all(context)
            .with_context(|| format!("cannot create {}", context.display()))?;
        for name in BINARIES {
            let from = self.binaries.join(name);
            let to = context.join(name);
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to)
                    .with_context(|| format!("cannot copy {}", from.display()))?;
            }
        }
        std::fs::write(context.join("Dockerfile"), dockerfile(base_tag))?;
        docker(&["build", "-q", "-t", &self.tag, &context.to_string_lossy()])?;
        Ok(())
    }
}

/// The image's Dockerfile on the base.
pub fn dockerfile(base_tag: &str) -> String {
    format!(
        "FROM {base_tag}\nCOPY {} /usr/local/bin/\nWORKDIR /lab\n",
        BINARIES.join(" ")
    )
}

/// `tar -C rootfs -c . | docker import - tag`.
fn import(rootfs: &Path, tag: &str) -> anyhow::Result<()> {
    let mut tar = Command::new("tar")
        .args([
            "-C",
            &rootfs.to_string_lossy(),
            "--numeric-owner",
            "-c",
            ".",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run tar")?;
    let stdout = tar
        .stdout
        .take()
        .ok_or_else(|| anyhow!("tar gave no output pipe"))?;
    let import = Command::new("docker")
        .args(["import", "-", tag])
        .stdin(stdout)
        .output()
        .context("cannot run docker import")?;
    let tar_status = tar.wait()?;
    if !tar_status.success() {
        bail!("tar of {} failed ({tar_status})", rootfs.display());
    }
    if !import.status.success() {
        bail!(
            "`docker import - {tag}` failed: {}",
            String::from_utf8_lossy(&import.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_copies_every_binary_onto_the_base() {
        let file = dockerfile("drlab-base:bookworm-nft");
        assert!(file.starts_with("FROM drlab-base:bookworm-nft\n"));
        for name in BINARIES {
            assert!(file.contains(name), "{name} missing from {file}");
        }
    }

    #[test]
    fn the_iptables_backend_follows_the_host() {
        assert_eq!(
            IptablesBackend::from_version("iptables v1.8.9 (nf_tables)"),
            IptablesBackend::Nft
        );
        assert_eq!(
            IptablesBackend::from_version("iptables v1.8.7 (legacy)"),
            IptablesBackend::Legacy
        );
    }
}
