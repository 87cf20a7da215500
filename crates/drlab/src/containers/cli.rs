//! The `drlab image` and `drlab compose` subcommands' arguments and what they do.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::anyhow;
use clap::{Args, Subcommand};

use super::compose::{write_checked, COMPOSE_FILE, TOPOLOGY_FILE};
use super::image::{ImageBuild, DEFAULT_TAG};
use super::plan::{parse_subnet_arg, project_name, Plan, PlanRequest};
use crate::topology::Topology;

/// `drlab image …`
#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Build the base (when missing) and the image from a cargo target dir.
    Build {
        /// Directory with the binaries (default: the running drlab's, e.g. target/debug).
        #[arg(long)]
        binaries: Option<PathBuf>,
        /// Image tag.
        #[arg(long)]
        tag: Option<String>,
    },
}

impl ImageCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let ImageCommand::Build { binaries, tag } = self;
        let built = ImageBuild::new(binaries, tag)?.run(|step| eprintln!("… {step}"))?;
        let base = match built.base_took {
            Some(took) => format!("built in {:.1} s", took.as_secs_f64()),
            None => "cached".into(),
        };
        println!(
            "{} built in {:.1} s (base {} {base})",
            built.tag,
            built.image_took.as_secs_f64(),
            built.base_tag
        );
        Ok(())
    }
}

/// `drlab compose …`
#[derive(Args, Debug)]
pub struct ComposeArgs {
    /// Topology file (default: the embedded two-DC topology).
    #[arg(long)]
    pub topology: Option<PathBuf>,
    /// Directory to write the project into.
    #[arg(long)]
    pub out: PathBuf,
    /// A network's subnet, e.g. `dc1=172.30.1.0/24` (repeatable; default 172.30.<n>.0/24,
    /// `pstn` 172.30.0.0/24).
    #[arg(long = "subnet")]
    pub subnets: Vec<String>,
    /// Image the containers run.
    #[arg(long, default_value = DEFAULT_TAG)]
    pub image: String,
    /// Compose project name (default: the --out directory's name).
    #[arg(long)]
    pub project: Option<String>,
    /// Timer profile the nodes run (e.g. `fast`).
    #[arg(long)]
    pub profile: Option<String>,
}

impl ComposeArgs {
    /// The plan these arguments ask for.
    pub fn plan(&self, topology: &Topology) -> anyhow::Result<Plan> {
        let mut subnets = BTreeMap::new();
        for arg in &self.subnets {
            let (name, subnet) = parse_subnet_arg(arg).map_err(|e| anyhow!(e))?;
            subnets.insert(name, subnet);
        }
        let project = match &self.project {
            Some(p) => project_name(p),
            None => {
                let dir = std::path::absolute(&self.out)?;
                project_name(&dir.file_name().unwrap_or_default().to_string_lossy())
            }
        };
        if let Some(profile) = &self.profile {
            topology.timers(Some(profile)).map_err(|e| anyhow!(e))?;
        }
        Plan::new(
            topology,
            PlanRequest {
                project,
                image: self.image.clone(),
                profile: self.profile.clone(),
                subnets,
                control_token: None,
            },
        )
        .map_err(|e| anyhow!(e))
    }

    /// Checks the daemon and its networks, writes the project and says how to start it.
    pub fn run(&self, topology: &Topology) -> anyhow::Result<()> {
        let plan = self.plan(topology)?;
        write_checked(&plan, &self.out)?;
        let out = self.out.display();
        println!(
            "wrote {out}/{COMPOSE_FILE} and {out}/{TOPOLOGY_FILE} (project {})",
            plan.project
        );
        for c in &plan.containers {
            println!("  {:<14} {:<5} {}", c.service, c.network, c.address);
        }
        println!(
            "start: docker-compose -f {out}/{COMPOSE_FILE} -p {} up -d   (or `docker compose …`)",
            plan.project
        );
        Ok(())
    }
}
