//! `drlab up`, `drlab topology --print`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use drlab::{Lab, Topology, DEFAULT_TOPOLOGY};

/// mimalloc returns freed pages to the OS, so memory drops back after bursts (e.g. when the
/// 32 s SIP transaction cache of a registration storm drains) instead of staying with the process.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Disaster-recovery test bench for Genesys SIP Cluster + GWS stacks.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start every node of the topology in this process; Ctrl-C stops them.
    Up {
        /// Topology file (TOML); default: the embedded two-DC topology.
        #[arg(long)]
        topology: Option<PathBuf>,
        /// Timer profile: `default` or one of the file's [profiles] (e.g. `fast`).
        #[arg(long)]
        profile: Option<String>,
    },
    /// Show or check a topology.
    Topology {
        /// Print the topology file (the embedded default unless --topology is given).
        #[arg(long)]
        print: bool,
        /// Topology file to print or check.
        #[arg(long)]
        topology: Option<PathBuf>,
    },
}

fn load(path: Option<&PathBuf>) -> anyhow::Result<(Topology, String)> {
    match path {
        None => Ok((Topology::embedded(), DEFAULT_TOPOLOGY.to_string())),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            let topology =
                Topology::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            Ok((topology, text))
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Topology { print, topology } => {
            let (_, text) = load(topology.as_ref())?;
            if print {
                print!("{text}");
            } else {
                println!("topology OK");
            }
        }
        Command::Up { topology, profile } => {
            nodekit::telemetry::init("info");
            let (topology, _) = load(topology.as_ref())?;
            let lab = Lab::start(&topology, profile.as_deref()).await?;
            println!(
                "drlab up ({} profile): {} SIP nodes\n",
                profile.as_deref().unwrap_or("default"),
                lab.sip_nodes.len()
            );
            print!("{}", lab.endpoint_table());
            println!("\nCtrl-C stops the lab.");
            wait_for_stop().await?;
            println!("stopping…");
            lab.shutdown().await;
        }
    }
    Ok(())
}

async fn wait_for_stop() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
