//! `drlab up`, `drlab scenario`, `drlab fault`, `drlab status`, `drlab node`, `drlab image
//! build`, `drlab compose`, `drlab topology --print`, `drlab bench cluster`: a thin front end over
//! the `drlab` library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use drlab::orchestra::faults::{self, Fault, Layer, Mode, Via};
use drlab::orchestra::handle::LabHandle;
use drlab::orchestra::iptables::Installed;
use drlab::orchestra::{status, BadInput};
use drlab::scenario;
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
        /// Capture the messages crossing every node's links, keeping this many per node
        /// (`GET /capture` on each control plane); off (0) by default.
        #[arg(long, default_value_t = 0)]
        capture_limit: usize,
    },
    /// Inject or remove a named fault in a running lab (`drlab up`) through its control planes
    /// or iptables: `cut dc1 dc2`, `cut gws1 ss1`, `cut proxy-dc1 gws1`, `cut phone DN DC`,
    /// `crash NODE`, `restart NODE`, `heal [NAME|all]`.
    Fault {
        /// The fault's words, e.g. `cut dc1 dc2` or `heal all`.
        #[arg(required = true, num_args = 1..)]
        words: Vec<String>,
        /// Topology the lab runs (default: the embedded one).
        #[arg(long)]
        topology: Option<PathBuf>,
        /// The fault layer: the nodes' built-in one or iptables rules (root).
        #[arg(long, value_enum, default_value = "builtin")]
        via: Via,
        /// `drop` (silent blackhole; keepalives find it) or `reject` (RST at once).
        #[arg(long, value_enum, default_value = "drop")]
        mode: Mode,
        /// For a DC cut: the TC links only, or all traffic between the DCs.
        #[arg(long, value_enum, default_value = "tc")]
        layer: Layer,
        /// Control plane of a softphone-sim phone (`softphone-sim --control ADDR`), for
        /// `cut phone DN DC`.
        #[arg(long)]
        phone_control: Option<std::net::SocketAddr>,
    },
    /// Nodes, links up/down, DN owners, logged-in agents and calls of a running lab.
    Status {
        #[arg(long)]
        topology: Option<PathBuf>,
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Run DR scenarios of the seed on a lab of their own and check every assertion id
    /// (`drlab scenario S1 --variant a`, `drlab scenario all`).
    Scenario {
        /// S0, S1, S2, S3, S4 or all.
        #[arg(required = true, num_args = 1..)]
        ids: Vec<String>,
        /// Only this variant (S1: a, b, c; S2: a, b; S4: a, b; S0 and S3 have one, `-`).
        #[arg(long)]
        variant: Option<String>,
        #[command(flatten)]
        lab: OwnLab,
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Write the report here: index.html, one ladder page per scenario variant,
        /// journal.json and capture.json.
        #[arg(long, value_name = "DIR")]
        report: Option<PathBuf>,
        /// Messages each node's capture keeps (its newest); 0 turns capture off.
        #[arg(long, default_value_t = DEFAULT_CAPTURE_LIMIT)]
        capture_limit: usize,
    },
    /// Render the report of a saved run again (`journal.json` of `--report`, with the
    /// `capture.json` beside it) into OUT_DIR.
    Report {
        /// The saved run's journal.json.
        #[arg(long)]
        from: PathBuf,
        out_dir: PathBuf,
    },
    /// A reconnect storm on a lab of its own: phones and desktops logged in, one fault for all,
    /// how long each agent took to recover (percentiles, recovery curve, the ones never back).
    Storm {
        /// Softphone agents (DNs of the topology's first softphone range).
        #[arg(long, default_value_t = 1000)]
        phones: usize,
        /// Desktops logging the first of those agents in through DC1's proxy.
        #[arg(long, default_value_t = 500)]
        desktops: usize,
        #[arg(long, value_enum)]
        fault: drlab::storm::StormFault,
        #[command(flatten)]
        lab: OwnLab,
        /// Seconds the agents have to recover before they count as lost.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// One JSON object instead of the summary.
        #[arg(long)]
        json: bool,
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

/// Messages each node's capture keeps in a scenario run.
const DEFAULT_CAPTURE_LIMIT: usize = 20_000;

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

/// The lab a scenario or storm starts for itself: topology, timer profile, fault layer.
#[derive(clap::Args, Debug)]
struct OwnLab {
    #[arg(long)]
    topology: Option<PathBuf>,
    /// Timer profile: `fast` (default), `default`, or one of the topology's profiles.
    #[arg(long, default_value = "fast")]
    profile: String,
    /// The fault layer: built-in (default) or real iptables rules between the nodes (root).
    #[arg(long, value_enum, default_value = "builtin")]
    faults: Via,
}

impl OwnLab {
    /// The topology, checked against the profile and the fault layer.
    fn load(&self) -> anyhow::Result<Topology> {
        let (topology, _) = load(self.topology.as_ref())?;
        topology
            .timers(Some(&self.profile))
            .map_err(|e| BadInput::new(e, Vec::new()))?;
        if self.faults == Via::Iptables && !drlab::orchestra::iptables::usable() {
            return Err(BadInput::new(
                "--faults iptables needs root and the iptables command",
                vec!["builtin".into()],
            )
            .into());
        }
        Ok(topology)
    }
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
    // One line naming what went wrong, not a backtrace; status 2 for input the user can fix.
    match run(cli).await {
        Ok(0) => {}
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("drlab: {e:#}");
            let bad_input = e.downcast_ref::<BadInput>().is_some();
            std::process::exit(if bad_input { 2 } else { 1 });
        }
    }
}

/// Runs the command; Ok(exit status).
async fn run(cli: Cli) -> anyhow::Result<i32> {
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
            cli.log.init("info");
            let (topology, _) = load(topology.as_ref())?;
            drlab::node::run_node(&topology, profile.as_deref(), &name, wait_for_stop()).await?;
        }
        Command::Image { action } => action.run()?,
        Command::Report { from, out_dir } => {
            let pages = drlab::report::render_saved(&from, &out_dir)?;
            println!("{}", pages[0].display());
        }
        Command::Compose(args) => {
            let (topology, _) = load(args.topology.as_ref())?;
            args.run(&topology)?;
        }
        Command::Fault {
            words,
            topology,
            via,
            mode,
            layer,
            phone_control,
        } => {
            let (topology, _) = load(topology.as_ref())?;
            let mut lab = LabHandle::from_topology(&topology)?;
            if let Some(control) = phone_control {
                add_phone(&mut lab, control).await?;
            }
            for line in fault(&lab, &words, via, mode, layer).await? {
                println!("{line}");
            }
        }
        Command::Status { topology, json } => {
            let (topology, _) = load(topology.as_ref())?;
            let lab = LabHandle::from_topology(&topology)?;
            let status = status::collect(&lab).await;
            if json {
                println!("{status}");
            } else {
                print!("{}", status::render(&status));
            }
        }
        Command::Scenario {
            ids,
            variant,
            lab,
            json,
            report: report_dir,
            capture_limit,
        } => {
            let topology = lab.load()?;
            if let Some(dir) = &report_dir {
                drlab::report::prepare(dir)?;
            }
            // Every node of the scenarios' labs starts with this capture limit.
            netfault::capture::set_process_limit(capture_limit);
            let cases = scenario::cases(&ids, variant.as_deref())?;
            let recorder = report_dir
                .as_ref()
                .map(|_| drlab::report::Recorder::default());
            let opts = scenario::Options {
                topology,
                profile: lab.profile,
                faults: lab.faults,
                recorder: recorder.clone(),
            };
            if !json {
                print!("{}", scenario::Report::header());
            }
            let report = scenario::run(&cases, &opts, |progress| {
                if json {
                    return;
                }
                match progress {
                    scenario::Progress::Started { case, n, of } => {
                        eprintln!("… [{n}/{of}] {} {}", case.scenario.name(), case.variant);
                    }
                    scenario::Progress::Finished { case, rows, ms } => {
                        for row in rows {
                            print!("{}", row.line());
                        }
                        let failed = rows.iter().filter(|r| !r.pass).count();
                        eprintln!(
                            "… {} {}: {} rows, {failed} failed, {:.1} s",
                            case.scenario.name(),
                            case.variant,
                            rows.len(),
                            ms as f64 / 1000.0
                        );
                    }
                }
            })
            .await?;
            if json {
                println!("{}", report.json());
            } else {
                print!("{}", report.summary());
            }
            if let (Some(dir), Some(recorder)) = (&report_dir, &recorder) {
                let (journal, capture) = recorder.finish(&report);
                let pages = drlab::report::write(dir, &journal, &capture)?;
                eprintln!("report: {}", pages[0].display());
            }
            return Ok(if report.ok() { 0 } else { 1 });
        }
        Command::Storm {
            phones,
            desktops,
            fault,
            lab,
            timeout,
            json,
        } => {
            let opts = drlab::storm::Options {
                topology: lab.load()?,
                profile: lab.profile,
                phones,
                desktops,
                fault,
                via: lab.faults,
                timeout: std::time::Duration::from_secs(timeout),
            };
            let report = drlab::storm::run(&opts, |line| {
                if !json {
                    eprintln!("… {line}");
                }
            })
            .await?;
            if json {
                println!("{}", report.json());
            } else {
                print!("{}", report.render());
            }
            return Ok(if report.ok() { 0 } else { 1 });
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
        Command::Up {
            topology,
            profile,
            capture_limit,
        } => {
            cli.log.init("info");
            netfault::capture::set_process_limit(capture_limit);
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
    Ok(0)
}

/// `drlab fault WORDS…`: inject a named fault, or heal one (or all).
async fn fault(
    lab: &LabHandle,
    words: &[String],
    via: Via,
    mode: Mode,
    layer: Layer,
) -> anyhow::Result<Vec<String>> {
    // Rules of iptables faults stay after this process (until `heal`).
    let mut installed = Installed::default();
    let lines = match words.first().map(String::as_str) {
        Some("heal") if matches!(words.get(1).map(String::as_str), None | Some("all")) => {
            faults::heal_all(lab).await?
        }
        Some("heal") => {
            let fault = Fault::parse(&words[1..], layer, lab)?;
            let steps = fault.plan(lab, via, mode)?;
            faults::undo(lab, &steps, &mut installed).await?
        }
        _ => {
            let fault = Fault::parse(words, layer, lab)?;
            let steps = fault.plan(lab, via, mode)?;
            faults::apply(lab, &steps, &mut installed).await?
        }
    };
    installed.keep();
    Ok(lines)
}

/// Adds the phones of the softphone-sim whose control plane is at `control`.
async fn add_phone(lab: &mut LabHandle, control: std::net::SocketAddr) -> anyhow::Result<()> {
    let state =
        drlab::orchestra::control::expect_ok("phone", control, "GET", "/state", None).await?;
    let sip: std::net::SocketAddr = state["sip"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("the phone's /state has no `sip` address")?;
    for phone in state["phones"].as_array().into_iter().flatten() {
        if let Some(dn) = phone["dn"].as_str() {
            lab.add_phone(dn, sip, control);
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
