//! `drlab up`, `drlab node`, `drlab image build`, `drlab compose`, `drlab topology --print`,
//! `drlab fault cut|heal`, `drlab bench cluster`.

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
    #[command(flatten)]
    log: nodekit::telemetry::LogArgs,
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
    /// Inject or remove faults in a running lab (`drlab up`) through its control planes.
    Fault {
        #[command(subcommand)]
        action: Fault,
        /// Topology the lab runs (default: the embedded one).
        #[arg(long, global = true)]
        topology: Option<PathBuf>,
    },
    /// Run a benchmark on an in-process lab (free ports) and print its figures.
    Bench {
        #[command(subcommand)]
        which: Bench,
    },
    /// Run one node of a topology until stopped (what each container of `drlab compose` runs).
    Node {
        name: String,
        #[arg(long)]
        topology: Option<PathBuf>,
        #[arg(long)]
        profile: Option<String>,
    },
    /// Build the container image (every binary plus iptables and iproute2), offline.
    Image {
        #[command(subcommand)]
        action: drlab::containers::cli::ImageCommand,
    },
    /// Write a Compose project (compose.yaml, topology.toml) for a topology.
    Compose(drlab::containers::cli::ComposeArgs),
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

#[derive(Subcommand, Debug)]
enum Fault {
    /// Cut every TC link between two DCs, on both sides (`drlab fault cut dc1 dc2 --mode drop`).
    Cut {
        dc_a: String,
        dc_b: String,
        /// `drop` (silent blackhole; ADDP finds it) or `reject` (RST at once).
        #[arg(long, default_value = "drop")]
        mode: String,
    },
    /// Remove every fault rule of every SIP node.
    Heal,
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// Ownership settle time after a partition heals, and TC-layer event relay latency.
    Cluster {
        /// PSTN DNs registered at ss1 while the DCs are cut (at most 20000).
        #[arg(long, default_value_t = 10_000)]
        dns: u32,
        /// Agent state events per second for the relay latency.
        #[arg(long, default_value_t = 1_000)]
        rate: u32,
        /// Seconds the relay latency runs.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
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
async fn main() {
    let cli = Cli::parse();
    // One line naming what went wrong, not a backtrace.
    if let Err(e) = run(cli).await {
        eprintln!("drlab: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Topology { print, topology } => {
            let (_, text) = load(topology.as_ref())?;
            if print {
                print!("{text}");
            } else {
                println!("topology OK");
            }
        }
        Command::Node {
            name,
            topology,
            profile,
        } => {
            nodekit::telemetry::init("info");
            let (topology, _) = load(topology.as_ref())?;
            drlab::node::run_node(&topology, profile.as_deref(), &name, wait_for_stop()).await?;
        }
        Command::Image { action } => action.run()?,
        Command::Compose(args) => {
            let (topology, _) = load(args.topology.as_ref())?;
            args.run(&topology)?;
        }
        Command::Fault { action, topology } => {
            let (topology, _) = load(topology.as_ref())?;
            let nodes = topology.node_configs(None).map_err(anyhow::Error::msg)?;
            let lines = match action {
                Fault::Cut { dc_a, dc_b, mode } => {
                    drlab::fault::cut(&nodes, &dc_a, &dc_b, &mode).await?
                }
                Fault::Heal => drlab::fault::heal(&nodes).await?,
            };
            for line in lines {
                println!("{line}");
            }
        }
        Command::Bench {
            which: Bench::Cluster { dns, rate, seconds },
        } => {
            let bench = drlab::bench::ClusterBench {
                dns,
                rate,
                duration: std::time::Duration::from_secs(seconds),
            };
            let report = bench.run(|step| eprintln!("… {step}")).await?;
            print!("{}", report.render());
        }
        Command::Up { topology, profile } => {
            cli.log.init("info");
            let (topology, _) = load(topology.as_ref())?;
            let lab = Lab::start(&topology, profile.as_deref()).await?;
            println!(
                "drlab up ({} profile): {} SIP nodes, {} GWS nodes\n",
                profile.as_deref().unwrap_or("default"),
                lab.sip_nodes.len(),
                lab.gws_nodes.len()
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
