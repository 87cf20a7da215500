//! Running the `docker` CLI and Compose. Every failure is one line saying what to do.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail};

/// `docker ARGS…`; its stdout on success, else an error with the command and its last stderr line.
pub fn docker(args: &[&str]) -> anyhow::Result<String> {
    run_tool(
        "docker",
        args,
        "install Docker Engine (apt-get install docker.io)",
    )
}

/// `program ARGS…`; its stdout on success, else an error with the command and its last stderr
/// line. `hint` says what to do when the program does not run at all.
pub fn run_tool(program: &str, args: &[&str], hint: &str) -> anyhow::Result<String> {
    let output = Command::new(program)
        .args(args)
        // The daemon may be older than the client (20.10 here): the classic builder, no BuildKit.
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| anyhow!("cannot run `{program}` ({e}): {hint}"))?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output");
    bail!("`{program} {}` failed: {last}", args.join(" "))
}

/// Fails unless a Docker daemon answers, with what to do about it.
pub fn require_daemon() -> anyhow::Result<()> {
    match docker(&["version", "--format", "{{.Server.Version}}"]) {
        Ok(v) if !v.trim().is_empty() => Ok(()),
        Ok(_) | Err(_) => bail!(
            "no Docker daemon answers: start it (`service docker start` or `dockerd &`) or point \
             DOCKER_HOST at one"
        ),
    }
}

/// Whether a Docker daemon answers (tests skip without one).
pub fn daemon_available() -> bool {
    require_daemon().is_ok()
}

/// Which Compose is installed: the `docker compose` plugin is preferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComposeTool {
    /// `docker compose` (Compose v2, a CLI plugin).
    Plugin,
    /// `docker-compose` (Compose v1, e.g. Debian's package).
    Standalone,
}

impl ComposeTool {
    /// The plugin when `docker compose version` works, else `docker-compose` when it runs.
    pub fn detect() -> anyhow::Result<ComposeTool> {
        let works = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        };
        if works("docker", &["compose", "version"]) {
            Ok(ComposeTool::Plugin)
        } else if works("docker-compose", &["version"]) {
            Ok(ComposeTool::Standalone)
        } else {
            bail!("neither `docker compose` nor `docker-compose` runs: install one (apt-get install docker-compose)")
        }
    }

    /// Runs Compose on the project in `dir` (its `compose.yaml`) with `args`.
    pub fn run(self, dir: &Path, project: &str, args: &[&str]) -> anyhow::Result<String> {
        let file = dir.join(crate::containers::compose::COMPOSE_FILE);
        let file = file.to_string_lossy();
        let mut all: Vec<&str> = Vec::new();
        let program = match self {
            ComposeTool::Plugin => {
                all.push("compose");
                "docker"
            }
            ComposeTool::Standalone => "docker-compose",
        };
        all.extend(["-f", &file, "-p", project]);
        all.extend(args);
        run_tool(
            program,
            &all,
            "install Compose (apt-get install docker-compose)",
        )
    }
}
