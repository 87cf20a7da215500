//! `drlab storm`: a reconnect storm on a lab of its own. Thousands of softphone-sim phones
//! register (half with DC1's first SIP node then DC2's first, half with the second ones, like
//! SRV records with DC1 first), desktop-sim desktops log the same agents in through DC1's proxy
//! and go Ready, then one named fault hits them all at once; the storm measures, per agent, when
//! its client noticed and when it was back, and sums that up ([`measure`]).
//!
//! * [`outcomes`] — who the fault reached and when each agent recovered, from the journals;
//! * [`measure`] — percentiles, the recovery curve, the agents that never recovered.

pub mod measure;
pub mod outcomes;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use desktop_sim::{DesktopConfig, SwarmConfig};
use serde_json::json;
use softphone_sim::{PhoneConfig, Swarm as Phones};

use crate::orchestra::faults::{self, Fault, Layer, Mode, Step, Via};
use crate::orchestra::handle::{LabHandle, NodeKind};
use crate::orchestra::history::{now_ms, History};
use crate::orchestra::iptables::Installed;
use crate::orchestra::roles::Roles;
use crate::orchestra::BadInput;
use crate::topology::Topology;
use crate::Lab;
use sipserver_mock::DnKind;

pub use measure::Recovery;

/// Journal entries kept per agent (registrations, refreshes, desktop events).
const JOURNAL_PER_AGENT: usize = 64;
/// Desktops logging in at once during the set-up.
const MAX_LOGGING_IN: usize = 100;
/// Desktop logins started per second during the set-up (a storm measures the fault, not the
/// morning login).
const LOGIN_RATE: f64 = 400.0;
/// Agents clicking "log in" / "Ready" at once after the fault, and how often each one retries.
const MAX_AGENTS_ACTING: usize = 200;
const AGENT_RETRY: Duration = Duration::from_secs(1);
/// How long the desktops stay silent before the fault counts them settled.
const DESKTOPS_QUIET: Duration = Duration::from_millis(300);

/// The fault that starts the storm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StormFault {
    /// Every node of DC1 crashes: SIP nodes, GWS nodes, proxy.
    Dc1Down,
    /// DC1's first SIP node crashes.
    Ss1Crash,
    /// DC1's first GWS node crashes.
    Gws1Crash,
    /// DC1's proxy crashes.
    ProxyDc1Crash,
    /// The TC layer between the DCs is cut.
    TcCut,
}

/// How a storm is configured.
#[derive(Clone, Debug)]
pub struct Options {
    pub topology: Topology,
    pub profile: String,
    pub phones: usize,
    pub desktops: usize,
    pub fault: StormFault,
    pub via: Via,
    /// How long agents have to recover before they count as lost.
    pub timeout: Duration,
}

/// What a storm measured.
#[derive(Clone, Debug)]
pub struct Report {
    pub fault: String,
    pub phones: Recovery,
    pub desktops: Recovery,
    /// From the fault to the end of the measurement.
    pub measured_ms: u64,
    pub wall_ms: u64,
}

impl Report {
    pub fn render(&self) -> String {
        format!(
            "storm: {}\n{}{}measured {:.1} s after the fault, wall time {:.1} s\n",
            self.fault,
            self.phones.lines("phones"),
            self.desktops.lines("desktops"),
            self.measured_ms as f64 / 1000.0,
            self.wall_ms as f64 / 1000.0
        )
    }

    /// `{"fault":…, "phones":{…}, "desktops":{…}, "never_recovered":[…], …}`.
    pub fn json(&self) -> serde_json::Value {
        let never: Vec<_> = self
            .phones
            .never_recovered
            .iter()
            .chain(&self.desktops.never_recovered)
            .collect();
        json!({
            "fault": self.fault,
            "phones": self.phones,
            "desktops": self.desktops,
            "never_recovered": never,
            "measured_ms": self.measured_ms,
            "wall_ms": self.wall_ms,
        })
    }

    /// Whether every affected agent recovered.
    pub fn ok(&self) -> bool {
        self.phones.lost == 0 && self.desktops.lost == 0
    }
}

/// The softphone DNs and users of the storm, from the topology's first softphone range.
fn agents(
    topology: &Topology,
    phones: usize,
    desktops: usize,
) -> Result<Vec<(String, String, String)>, BadInput> {
    if desktops > phones {
        return Err(BadInput::new(
            format!("--desktops {desktops} is more than --phones {phones}"),
            vec!["each desktop logs in the agent of one phone: --desktops ≤ --phones".into()],
        ));
    }
    let spec = topology
        .dns
        .iter()
        .find(|d| d.kind == DnKind::Softphone)
        .ok_or_else(|| {
            BadInput::new(
                "the topology has no softphone DN range",
                vec!["a [[dns]] range with kind = \"softphone\"".into()],
            )
        })?;
    (0..phones as u64)
        .map(|n| {
            spec.nth_dn(n)
                .map(|dn| (spec.user_of(&dn), spec.password.clone(), dn))
                .ok_or_else(|| {
                    BadInput::new(
                        format!(
                            "--phones {phones}: the softphone range {} is smaller",
                            spec.range
                        ),
                        vec!["fewer phones, or a larger range in the topology".into()],
                    )
                })
        })
        .collect()
}

/// The SIP address of the lab's node `name`.
fn sip_addr(lab: &Lab, name: &str) -> anyhow::Result<SocketAddr> {
    Ok(lab
        .sip_node(name)
        .ok_or_else(|| anyhow::anyhow!("no SIP node {name}"))?
        .sip_addr())
}

/// The faults of `fault` and the registrars they take away.
fn plan(
    fault: StormFault,
    roles: &Roles,
    handle: &LabHandle,
    lab: &Lab,
) -> anyhow::Result<(Vec<Fault>, HashSet<String>)> {
    let sip = |name: &str| sip_addr(lab, name).map(|a| a.to_string());
    Ok(match fault {
        StormFault::Dc1Down => {
            let nodes: Vec<_> = handle
                .endpoints
                .iter()
                .filter(|e| e.dc == roles.dc1 && e.kind != NodeKind::Phone)
                .collect();
            let mut lost = HashSet::new();
            for e in nodes.iter().filter(|e| e.kind == NodeKind::Sip) {
                lost.insert(sip(&e.name)?);
            }
            (
                nodes.iter().map(|e| Fault::Crash(e.name.clone())).collect(),
                lost,
            )
        }
        StormFault::Ss1Crash => (
            vec![Fault::Crash(roles.ss1.clone())],
            [sip(&roles.ss1)?].into(),
        ),
        StormFault::Gws1Crash => (vec![Fault::Crash(roles.gws1.clone())], HashSet::new()),
        StormFault::ProxyDc1Crash => (vec![Fault::Crash(roles.proxy_dc1.clone())], HashSet::new()),
        StormFault::TcCut => (
            vec![Fault::CutDcs {
                a: roles.dc1.clone(),
                b: roles.dc2.clone(),
                layer: Layer::Tc,
            }],
            HashSet::new(),
        ),
    })
}

/// Runs a storm; `progress` hears one line now and then (set-up steps, recovery counts).
pub async fn run(opts: &Options, mut progress: impl FnMut(&str)) -> anyhow::Result<Report> {
    let started = std::time::Instant::now();
    let roles = Roles::from_topology(&opts.topology)?;
    let agents = agents(&opts.topology, opts.phones, opts.desktops)?;
    let fast = opts.profile != "default";
    let lab = Lab::start(&opts.topology, Some(&opts.profile)).await?;
    let handle = LabHandle::from_lab(&lab);
    let mut history = History::default();
    let explain = std::env::var_os("DRLAB_HISTORY").is_some();
    if explain {
        // The nodes' journals too, printed at the end: for a storm that needs explaining.
        for n in &lab.sip_nodes {
            history.add(n.name(), n.journal());
        }
        for g in &lab.gws_nodes {
            history.add(g.name(), g.journal());
        }
    }
    let result = storm(
        opts,
        &roles,
        &agents,
        fast,
        &lab,
        &handle,
        &mut history,
        &mut progress,
    )
    .await;
    if explain {
        for e in history.since(&history.mark_start()) {
            eprintln!("{} {}", e.at_ms, e.describe());
        }
    }
    lab.shutdown().await;
    let (phones, desktops, measured_ms, fault) = result?;
    Ok(Report {
        fault,
        phones,
        desktops,
        measured_ms,
        wall_ms: started.elapsed().as_millis() as u64,
    })
}

#[allow(clippy::too_many_arguments)]
async fn storm(
    opts: &Options,
    roles: &Roles,
    agents: &[(String, String, String)],
    fast: bool,
    lab: &Lab,
    handle: &LabHandle,
    history: &mut History,
    progress: &mut impl FnMut(&str),
) -> anyhow::Result<(Recovery, Recovery, u64, String)> {
    let timers = opts
        .topology
        .timers(Some(&opts.profile))
        .map_err(anyhow::Error::msg)?
        .clone();
    // Phones: two halves, each with a DC1 node first and a DC2 node second.
    let addr = |name: &str| sip_addr(lab, name);
    let halves = [
        (vec![addr(&roles.ss1)?, addr(&roles.ss3)?], 0),
        (vec![addr(&roles.ss2)?, addr(&roles.ss4)?], 1),
    ];
    let mut swarms: Vec<Phones> = Vec::new();
    for (registrars, parity) in halves {
        let dns: Vec<String> = agents
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == parity)
            .map(|(_, a)| a.2.clone())
            .collect();
        if dns.is_empty() {
            continue;
        }
        let n = dns.len();
        let mut config = PhoneConfig::phones(dns, registrars);
        if fast {
            config = config.with_fast_timers();
        } else {
            config.expires = crate::orchestra::actors::SLOW_PROFILE_EXPIRES;
        }
        config.bind = SocketAddr::new(roles.actor_ip, 0);
        config.journal_capacity = n * JOURNAL_PER_AGENT + 1024;
        let swarm = Phones::start(config).await?;
        history.add(&format!("phones-{}", parity + 1), swarm.journal());
        swarms.push(swarm);
    }
    let patience = Duration::from_secs(10) + timers.addp_timeout * 2;
    let deadline =
        tokio::time::Instant::now() + patience + Duration::from_millis(opts.phones as u64);
    for s in &swarms {
        if !s.until_registered(deadline).await {
            anyhow::bail!("the phones did not all register in time ({:?})", s.stats());
        }
    }
    progress(&format!("{} phones registered", opts.phones));

    // Desktops through DC1's proxy, the agents of the first phones, Ready, relogin on.
    let proxy = lab
        .proxy(&roles.proxy_dc1)
        .ok_or_else(|| anyhow::anyhow!("no proxy {}", roles.proxy_dc1))?;
    let url = format!("http://{}", proxy.http);
    // DC2's proxy as the fallback, as WWE's FQDN behind a global load balancer.
    let fallback = lab
        .proxy(&roles.proxy_dc2)
        .map(|p| format!("http://{}", p.http));
    let desktop_swarm = if opts.desktops > 0 {
        let mut cfg = DesktopConfig::new(&url, &agents[0].0);
        if fast {
            cfg = cfg.with_fast_timers();
        }
        cfg.password = agents[0].1.clone();
        cfg.fallback_urls = fallback.into_iter().collect();
        cfg.ready = true;
        cfg.relogin = true;
        let users = agents
            .iter()
            .take(opts.desktops)
            .map(|a| a.0.clone())
            .collect();
        let mut sc = SwarmConfig::new(cfg, users);
        sc.max_logging_in = MAX_LOGGING_IN;
        sc.rate = LOGIN_RATE;
        sc.journal_capacity = opts.desktops * JOURNAL_PER_AGENT + 1024;
        let swarm = desktop_sim::Swarm::start(sc)?;
        history.add("desktops", swarm.journal());
        let wait = patience + Duration::from_millis(opts.desktops as u64 * 2);
        let (summary, all) = swarm
            .tally()
            .wait_for(wait, |s| s.connected == opts.desktops)
            .await;
        if !all {
            anyhow::bail!("the desktops did not all log in: {}", summary.line());
        }
        progress(&format!("{} desktops logged in", opts.desktops));
        Some(swarm)
    } else {
        None
    };
    // Every desktop Ready before the fault.
    let start = history.mark_start();
    let ready_users = || {
        let mut ready = HashSet::new();
        for e in history.since(&start) {
            if e.kind == "desktop.voice" && e.detail["voice"]["state"] == "Ready" {
                if let Some(u) = e.detail["user"].as_str() {
                    ready.insert(u.to_owned());
                }
            }
        }
        ready.len()
    };
    history
        .eventually(patience, || async {
            let n = ready_users();
            if n >= opts.desktops {
                Ok(())
            } else {
                Err(format!("{n} of {} desktops Ready", opts.desktops))
            }
        })
        .await
        .map_err(anyhow::Error::msg)?;

    // The desktops settled: no desktop event for a moment, so that a late event of the set-up
    // is not taken for the fault's doing.
    let settle_until = tokio::time::Instant::now() + patience;
    loop {
        let m = history.mark();
        tokio::time::sleep(DESKTOPS_QUIET).await;
        let quiet = history
            .since(&m)
            .iter()
            .all(|e| !e.kind.starts_with("desktop."));
        if quiet || tokio::time::Instant::now() >= settle_until {
            break;
        }
    }

    // The fault, all at once.
    let (faults, lost_registrars) = plan(opts.fault, roles, handle, lab)?;
    let fault_name = faults
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let mut steps: Vec<Step> = Vec::new();
    for f in &faults {
        steps.extend(f.plan(handle, opts.via, Mode::Drop)?);
    }
    let mut installed = Installed::default();
    let fault_at = now_ms();
    faults::apply(handle, &steps, &mut installed).await?;
    progress(&format!("fault: {fault_name}"));

    // Measure until everyone reached is back and nothing new happened for a while, or timeout.
    let quiet = (timers.ownership_move_delay * 2)
        .max(timers.addp_timeout * 3)
        .max(Duration::from_secs(2));
    let end = tokio::time::Instant::now() + opts.timeout;
    let mut last_change = tokio::time::Instant::now();
    let mut last_counts = (usize::MAX, usize::MAX, usize::MAX, usize::MAX);
    let mut agents_acting = AgentsActing::default();
    let (phones, desktops) = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some(swarm) = &desktop_swarm {
            agents_acting.act(swarm);
        }
        let events = history.since(&start);
        let p = outcomes::phones(&events, fault_at, &lost_registrars);
        let d = outcomes::desktops(&events, fault_at);
        let phones = Recovery::measure(opts.phones, &p);
        let desktops = Recovery::measure(opts.desktops, &d);
        let counts = (
            phones.affected,
            phones.recovered,
            desktops.affected,
            desktops.recovered,
        );
        let now = tokio::time::Instant::now();
        if counts != last_counts {
            last_counts = counts;
            last_change = now;
            progress(&format!(
                "phones {}/{} recovered, desktops {}/{} Ready again ({:.1} s)",
                phones.recovered,
                phones.affected,
                desktops.recovered,
                desktops.affected,
                (now_ms() - fault_at) as f64 / 1000.0
            ));
        }
        let settled = phones.lost == 0 && desktops.lost == 0 && now - last_change >= quiet;
        if settled || now >= end {
            break (phones, desktops);
        }
    };
    let measured_ms = now_ms() - fault_at;
    installed.clear();
    for s in &swarms {
        s.shutdown();
    }
    drop(desktop_swarm);
    Ok((phones, desktops, measured_ms, fault_name))
}

/// What an agent does at a desktop whose voice channel the fault took off Ready: log in again
/// when it shows logged out or out of service, go Ready when logged in, once a second at most.
/// desktop-sim logs in again by itself only when the GWS session is gone; a voice channel the
/// server logged out, or whose registration was refused while the DN's owner was unreachable
/// (R10), waits for the agent's click.
#[derive(Default)]
struct AgentsActing {
    in_flight: std::sync::Arc<std::sync::Mutex<HashSet<String>>>,
    last_try: std::collections::HashMap<String, tokio::time::Instant>,
}

impl AgentsActing {
    fn act(&mut self, swarm: &desktop_sim::Swarm) {
        use desktop_sim::{Connection, Voice};
        let now = tokio::time::Instant::now();
        let due: Vec<(String, desktop_sim::Hands, Voice)> = swarm.with_desktops(|all| {
            all.iter()
                .filter_map(|d| {
                    let screen = d.screen();
                    let wants = screen.connection == Connection::Connected
                        && matches!(
                            screen.voice,
                            Voice::LoggedOut | Voice::LoggedIn | Voice::OutOfService
                        );
                    let rested = self
                        .last_try
                        .get(d.user())
                        .is_none_or(|t| now.duration_since(*t) >= AGENT_RETRY);
                    (wants && rested).then(|| (d.user().to_owned(), d.hands(), screen.voice))
                })
                .collect()
        });
        for (user, desktop, voice) in due {
            {
                let mut busy = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
                if busy.len() >= MAX_AGENTS_ACTING || !busy.insert(user.clone()) {
                    continue;
                }
            }
            self.last_try.insert(user.clone(), now);
            let in_flight = self.in_flight.clone();
            tokio::spawn(async move {
                let logged_in = voice == Voice::LoggedIn || desktop.log_in_agent().await.is_ok();
                if logged_in {
                    let _ = desktop.ready().await;
                }
                in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&user);
            });
        }
    }
}
