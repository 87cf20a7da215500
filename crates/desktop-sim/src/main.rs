//! `desktop-sim`: one desktop (`login`) or thousands (`swarm`) against GWS or the proxy in front
//! of it. What happens is printed as it happens (`--json`: one journal entry per line, for
//! scripts); a swarm shows a live status line on stderr when that is a terminal.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use desktop_sim::{
    user_range, Backoff, Desktop, DesktopConfig, Entry, Journal, Swarm, SwarmConfig, Transport,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Users a swarm accepts at most.
const MAX_USERS: usize = 100_000;

#[derive(Parser)]
#[command(
    name = "desktop-sim",
    about = "WWE-like agent desktops against GWS API v2 (REST + CometD)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: nodekit::telemetry::LogArgs,
}

#[derive(Subcommand)]
enum Command {
    /// One desktop: log in, follow the voice channel and calls, reconnect by R13.
    Login {
        /// `agent<DN>`.
        user: String,
        #[command(flatten)]
        desktop: DesktopArgs,
    },
    /// Many desktops in one process, each with its own cookie jar.
    Swarm {
        /// `agent8000-agent8999` (a range) or one user.
        #[arg(long)]
        users: String,
        /// Logins started per second (`200/s` or `200`); 0 = as fast as `--max-logging-in` allows.
        #[arg(long, default_value = "0", value_parser = parse_rate)]
        rate: f64,
        /// Logins in progress at most.
        #[arg(long, default_value_t = 500)]
        max_logging_in: usize,
        /// Exit once every desktop has logged in (or failed), printing the time it took.
        #[arg(long)]
        exit_when_logged_in: bool,
        #[command(flatten)]
        desktop: DesktopArgs,
    },
}

#[derive(Args)]
struct DesktopArgs {
    /// The proxy or GWS node, `http://host:port`.
    #[arg(long)]
    url: String,
    /// Where to go when `--url` stays unreachable, in order (repeat the flag): the other DC's
    /// proxy, as a global load balancer or DNS name would send a browser.
    #[arg(long = "fallback-url", value_name = "URL")]
    fallback_urls: Vec<String>,
    #[arg(long, default_value = "password")]
    password: String,
    /// Post Ready after login.
    #[arg(long)]
    ready: bool,
    /// R13: show "Unable to establish connection…" after this long without recovery.
    #[arg(long, value_parser = nodekit::duration::parse)]
    giveup_after: Option<Duration>,
    /// `cometd` (linear 1 s steps to 60 s, no jitter) or `jittered` (exponential, 50–100 %).
    #[arg(long, default_value = "cometd")]
    backoff: Backoff,
    /// How CometD is carried: `long-polling` or `websocket`.
    #[arg(long, default_value = "long-polling")]
    transport: Transport,
    /// Log in again when the session is gone (storm policy).
    #[arg(long)]
    relogin: bool,
    /// The fast test profile (give up after 3 s, 100 ms reconnect steps).
    #[arg(long)]
    fast: bool,
    /// Print journal entries as JSON lines.
    #[arg(long)]
    json: bool,
}

impl DesktopArgs {
    fn config(&self, user: &str) -> DesktopConfig {
        let mut cfg = DesktopConfig::new(&self.url, user);
        cfg.fallback_urls = self.fallback_urls.clone();
        cfg.password = self.password.clone();
        cfg.ready = self.ready;
        cfg.relogin = self.relogin;
        cfg.backoff = self.backoff;
        cfg.transport = self.transport;
        if self.fast {
            cfg = cfg.with_fast_timers();
        }
        if let Some(g) = self.giveup_after {
            cfg.giveup_after = g;
        }
        cfg
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let n = text.trim().trim_end_matches("/s");
    match n.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!("`{text}` is not a rate like 200/s")),
    }
}

// One thread: a swarm is mostly waiting on sockets, and a single scheduler spends nothing on
// cross-thread wakeups and leaves the other cores to the servers under test.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    cli.log.init("warn");
    match cli.command {
        Command::Login { user, desktop } => login(desktop.config(&user), desktop.json).await,
        Command::Swarm {
            users,
            rate,
            max_logging_in,
            exit_when_logged_in,
            desktop,
        } => {
            let users = user_range(&users, MAX_USERS).map_err(anyhow::Error::msg)?;
            let mut cfg = SwarmConfig::new(desktop.config(""), users);
            cfg.rate = rate;
            cfg.max_logging_in = max_logging_in;
            swarm(cfg, desktop.json, exit_when_logged_in).await
        }
    }
}

/// Prints journal entries newer than `since` (one line each); returns the last seq printed.
fn print_entries(journal: &Journal, since: u64, json: bool) -> u64 {
    let mut last = since;
    let mut out = std::io::stdout().lock();
    for e in journal.since(since, usize::MAX) {
        last = e.seq;
        let _ = if json {
            writeln!(out, "{}", serde_json::to_string(&*e).unwrap_or_default())
        } else {
            writeln!(out, "{}", human(&e))
        };
    }
    last
}

fn human(e: &Entry) -> String {
    let mut detail = e.detail();
    let user = detail
        .get("user")
        .and_then(|u| u.as_str())
        .unwrap_or("")
        .to_owned();
    if let Some(map) = detail.as_object_mut() {
        map.remove("user");
    }
    let kind = e.kind.trim_start_matches("desktop.");
    format!("{} {user} {kind} {detail}", e.at_ms)
}

/// Runs one desktop until Ctrl-C (it logs out) or until it gives up or cannot log in (exit 1).
async fn login(cfg: DesktopConfig, json: bool) -> anyhow::Result<ExitCode> {
    let desktop = Desktop::start(cfg).context("starting the desktop")?;
    let mut seen = 0;
    loop {
        let since = seen;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                let _ = desktop.log_out().await;
                print_entries(desktop.journal(), seen, json);
                return Ok(ExitCode::SUCCESS);
            }
            _ = desktop.journal().wait_newer(since, Duration::from_secs(3600)) => {
                seen = print_entries(desktop.journal(), seen, json);
            }
        }
        let name = desktop.screen().connection.name();
        if matches!(name, "gave_up" | "login_failed") {
            eprintln!("desktop-sim: {} {name}", desktop.user());
            return Ok(ExitCode::FAILURE);
        }
    }
}

async fn swarm(
    cfg: SwarmConfig,
    json: bool,
    exit_when_logged_in: bool,
) -> anyhow::Result<ExitCode> {
    let total = cfg.users.len();
    let swarm = Swarm::start(cfg)?;
    let tty = std::io::stderr().is_terminal();
    let mut seen = 0;
    let mut status = tokio::time::interval(Duration::from_millis(250));
    let mut all_in: Option<Duration> = None;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = status.tick() => {}
        }
        if json {
            seen = print_entries(swarm.journal(), seen, true);
        }
        let s = swarm.summary();
        if tty {
            eprint!("\r\x1b[2K{}", s.line());
        }
        if all_in.is_none() && s.desktops == total && s.settled() == total {
            all_in = Some(swarm.started_at().elapsed());
            if exit_when_logged_in {
                break;
            }
        }
    }
    if tty {
        eprintln!();
    }
    let s = swarm.summary();
    let elapsed = all_in.unwrap_or_else(|| swarm.started_at().elapsed());
    let report = serde_json::json!({
        "summary": s,
        "all_logged_in_s": all_in.map(|d| d.as_secs_f64()),
        "logins_per_s": s.logins as f64 / elapsed.as_secs_f64().max(1e-9),
    });
    println!("{report}");
    // Done. Dropping thousands of desktops one by one (tasks, buffers, socket deregistrations)
    // is work nobody waits for; the kernel closes their sockets when the process ends.
    std::process::exit(0)
}
