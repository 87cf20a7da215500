//! `softphone-sim register 7001-7100 --registrar 127.0.1.1:5060 --registrar 127.0.2.1:5060`,
//! `softphone-sim gateway --listen 127.0.3.1:5060`, `softphone-sim call 7001 --via 127.0.1.1:5060`.
//!
//! `register` sends every phone's first REGISTER at once (a registration storm) or, with
//! `--start-rate R`, R per second. On Ctrl-C or SIGTERM each registered phone removes its
//! binding (REGISTER `Expires: 0`) and the process waits up to `--unregister-wait` ms for the
//! registrars to confirm; `--no-unregister` exits at once and leaves the bindings to expire.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use softphone_sim::status::{live_status, print_events, status_line};
use softphone_sim::usage::Usage;
use softphone_sim::{
    dn_range, AnswerMode, Backoff, CallPlan, Failover, PhoneConfig, Swarm, Transport,
};
use tokio::time::Instant;

/// mimalloc returns freed pages to the OS after bursts (a swarm's registration storm).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Agent softphones (one or thousands), the PSTN gateway, PSTN callers.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Register phones for DNs and answer their calls until Ctrl-C.
    Register(RegisterArgs),
    /// The PSTN gateway: answer calls for any number until Ctrl-C.
    Gateway(GatewayArgs),
    /// Place calls to a DN through a node, hold them, hang up.
    Call(CallArgs),
}

/// What every role shares.
#[derive(Args, Debug)]
struct Common {
    #[arg(long, value_enum, default_value = "udp")]
    transport: Transport,
    /// Print the journal (registrations, calls, media) as JSON lines on stdout, and a summary.
    #[arg(long)]
    json: bool,
    /// Serve the control plane (state, events, metrics, faults) on this address.
    #[arg(long)]
    control: Option<SocketAddr>,
    /// RFC 3261 T1 in milliseconds (a silent registrar is noticed after 64·T1).
    #[arg(long, default_value_t = 500)]
    t1: u64,
    /// Media heartbeat interval, milliseconds.
    #[arg(long, default_value_t = 20)]
    media_interval: u64,
    /// Drop a call whose media is silent this long, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    media_timeout: u64,
    /// auto, delay=MS or notify (answer on NOTIFY Event: talk).
    #[arg(long, default_value = "auto")]
    answer: AnswerMode,
}

#[derive(Args, Debug)]
struct RegisterArgs {
    /// A DN or a range (7001 or 7001-7100).
    dns: String,
    /// Another range of DNs (added to the first).
    #[arg(long)]
    range: Option<String>,
    /// Registrar address, preferred first; repeat for the failover list.
    #[arg(long = "registrar", required = true)]
    registrars: Vec<SocketAddr>,
    /// Local SIP address (port 0: any).
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    /// Expiry asked for, seconds.
    #[arg(long, default_value_t = 1800)]
    expires: u32,
    /// Refresh when this share of the granted expiry has passed.
    #[arg(long, default_value_t = 0.5)]
    refresh_ratio: f64,
    /// rfc5626, rfc5626:base=MS,max=MS or fixed=MS: the wait once every registrar of the list
    /// failed (with `--failover backoff`, before each next registrar).
    #[arg(long, default_value = "rfc5626")]
    backoff: Backoff,
    /// immediate (the next registrar at once, like a phone with an SRV list) or backoff.
    #[arg(long, default_value = "immediate")]
    failover: Failover,
    /// First REGISTERs per second (0: all at once).
    #[arg(long, default_value_t = 0)]
    start_rate: u32,
    /// Exit once every phone is registered, printing the time it took (benchmarks).
    #[arg(long)]
    until_registered: bool,
    /// Give up `--until-registered` after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// On Ctrl-C or SIGTERM exit at once, leaving the bindings to expire at the registrars
    /// (by default every registered phone first sends REGISTER Expires: 0).
    #[arg(long)]
    no_unregister: bool,
    /// Wait at most this many milliseconds for the registrars to confirm the unregistrations
    /// (a second Ctrl-C stops waiting).
    #[arg(long, default_value_t = 5_000)]
    unregister_wait: u64,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct GatewayArgs {
    /// The gateway's SIP address (the nodes' `pstn_gateway`).
    #[arg(long)]
    listen: SocketAddr,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
struct CallArgs {
    /// The number to call (a DN).
    dn: String,
    /// The node the INVITE goes to.
    #[arg(long)]
    via: SocketAddr,
    /// Stay in the call this long once answered, milliseconds.
    #[arg(long, default_value_t = 5_000)]
    hold: u64,
    /// The caller's number.
    #[arg(long, default_value = "5551000")]
    from: String,
    /// Calls placed at once.
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Local IP of the caller.
    #[arg(long, default_value = "127.0.0.1")]
    ip: IpAddr,
    /// CANCEL when not answered within this many milliseconds.
    #[arg(long, default_value_t = 30_000)]
    give_up: u64,
    #[command(flatten)]
    common: Common,
}

impl Common {
    fn apply(&self, c: &mut PhoneConfig) {
        c.transport = self.transport;
        c.sip_timers.t1 = Duration::from_millis(self.t1.max(1));
        c.media.interval = Duration::from_millis(self.media_interval.max(1));
        c.media.timeout = Duration::from_millis(self.media_timeout);
        c.answer = self.answer;
    }

    async fn start(&self, config: PhoneConfig) -> anyhow::Result<Swarm> {
        let swarm = Swarm::start(config).await?;
        if let Some(addr) = self.control {
            let bound = swarm.serve_control(addr).await?;
            eprintln!("control plane on http://{bound}");
        }
        if self.json {
            tokio::spawn(print_events(swarm.journal().clone()));
        }
        Ok(swarm)
    }
}

// One thread: the engine, the socket loop and the media tasks wake each other constantly, and
// cross-thread wake-ups (futex, context switches) would cost more CPU than the work itself.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    nodekit::telemetry::init("warn");
    match Cli::parse().command {
        Cmd::Register(args) => register(args).await,
        Cmd::Gateway(args) => gateway(args).await,
        Cmd::Call(args) => call(args).await,
    }
}

/// Turns transparent huge pages off for this process. mimalloc asks for them, and the first
/// touch of a huge page zeroes all 2 MiB of it: for a swarm, whose memory is many small pieces,
/// that zeroing was a fifth of its CPU in a registration storm and doubled its RSS. It runs as
/// an ELF constructor, before the runtime's first allocation touches the allocator's first page.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static NO_HUGE_PAGES: extern "C" fn() = no_huge_pages;

#[cfg(target_os = "linux")]
extern "C" fn no_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

async fn register(args: RegisterArgs) -> anyhow::Result<()> {
    let mut dns = dn_range(&args.dns).map_err(anyhow::Error::msg)?;
    if let Some(range) = &args.range {
        dns.extend(dn_range(range).map_err(anyhow::Error::msg)?);
    }
    let mut config = PhoneConfig::phones(dns, args.registrars.clone());
    args.common.apply(&mut config);
    config.bind = args.bind;
    config.expires = args.expires;
    config.refresh_ratio = args.refresh_ratio;
    config.backoff = args.backoff;
    config.failover = args.failover;
    config.start_rate = args.start_rate;
    // This process's runtime runs nothing else (see `PhoneConfig::pace_reads`).
    config.pace_reads = true;
    let phones = config.dns.len();
    let started = Instant::now();
    let swarm = args.common.start(config).await?;
    eprintln!(
        "{} phones on {} registering at {:?}",
        phones,
        swarm.sip_addr(),
        args.registrars
    );
    let status = tokio::spawn(live_status(swarm.clone(), Duration::from_millis(250)));
    if args.until_registered {
        swarm
            .until_registered(started + Duration::from_secs(args.timeout))
            .await;
        status.abort();
        let elapsed = started.elapsed();
        let stats = swarm.stats();
        let summary = json!({
            "kind": "summary",
            "phones": phones,
            "registered": stats.registered,
            "all_registered": stats.registered == phones as i64,
            "time_to_all_registered_ms": elapsed.as_millis() as u64,
            "registrations_per_s": stats.registrations as f64 / elapsed.as_secs_f64().max(1e-3),
            "registration_failures": stats.registration_failures,
            "usage": Usage::now(),
        });
        println!("{summary}");
        swarm.shutdown();
        anyhow::ensure!(
            stats.registered == phones as i64,
            "not every phone registered"
        );
        return Ok(());
    }
    shutdown_signal().await?;
    status.abort();
    if !args.no_unregister {
        let wait = Duration::from_millis(args.unregister_wait);
        eprintln!("\nunregistering (Ctrl-C again to skip)");
        tokio::select! {
            r = swarm.unregister(wait) => {
                let r = r?;
                eprintln!(
                    "unregistered {} of {} phones{}",
                    r.confirmed,
                    r.phones,
                    if r.complete { "" } else { " (gave up waiting)" }
                );
            }
            _ = tokio::signal::ctrl_c() => eprintln!("unregistration skipped"),
        }
    }
    finish(&swarm, started, args.common.json);
    Ok(())
}

/// Ctrl-C, or SIGTERM (what `kill` and service managers send).
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let mut config = PhoneConfig::gateway(args.listen);
    args.common.apply(&mut config);
    let started = Instant::now();
    let swarm = args.common.start(config).await?;
    eprintln!("PSTN gateway on {} answering any number", swarm.sip_addr());
    let status = tokio::spawn(live_status(swarm.clone(), Duration::from_millis(250)));
    tokio::signal::ctrl_c().await?;
    status.abort();
    finish(&swarm, started, args.common.json);
    Ok(())
}

async fn call(args: CallArgs) -> anyhow::Result<()> {
    let mut config = PhoneConfig::caller(args.ip);
    args.common.apply(&mut config);
    let started = Instant::now();
    let swarm = args.common.start(config).await?;
    let plan = CallPlan::new(args.dn.clone(), args.via)
        .from(args.from.clone())
        .hold(Duration::from_millis(args.hold))
        .give_up_after(Duration::from_millis(args.give_up));
    let calls: Vec<_> = (0..args.count.max(1))
        .map(|_| {
            let (swarm, plan) = (swarm.clone(), plan.clone());
            tokio::spawn(async move { swarm.place_call(plan).await })
        })
        .collect();
    let mut established = 0;
    for call in calls {
        let report = call.await.context("call task")??;
        established += usize::from(report.established);
        if !args.common.json {
            println!(
                "call {} to {}: status {:?}, {} after {} ms, media received {:?}",
                report.call_id,
                report.to,
                report.status,
                report.reason,
                report.duration_ms,
                report.media.map(|m| (m.received, m.lost))
            );
        }
    }
    finish(&swarm, started, args.common.json);
    anyhow::ensure!(
        established == args.count.max(1) as usize,
        "{established} of {} calls established",
        args.count.max(1)
    );
    Ok(())
}

/// The final line: a JSON summary for scripts, else the status line.
fn finish(swarm: &Swarm, started: Instant, json: bool) {
    let stats = swarm.stats();
    if json {
        println!(
            "{}",
            json!({ "kind": "summary", "stats": stats, "elapsed_ms": started.elapsed().as_millis() as u64, "usage": Usage::now() })
        );
    } else {
        eprintln!("\n{}", status_line(&stats, started.elapsed()));
    }
    swarm.shutdown();
}
