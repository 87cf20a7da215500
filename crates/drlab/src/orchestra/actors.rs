//! The actors of a scenario, driven as libraries: desktop-sim desktops (one shared journal),
//! softphone-sim phones (each with a control plane, so faults can name them), and one PSTN
//! caller whose calls are placed through the node a scenario names. The PSTN gateway belongs to
//! the lab.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use desktop_sim::{Connection, Desktop, DesktopConfig, Shared};
use nodekit::Journal;
use serde_json::Value;
use softphone_sim::{CallPlan, CallReport, PhoneConfig, Swarm};
use tokio::task::JoinHandle;

use super::history::History;
use super::roles::Agent;

/// How long a scenario's call is held by its caller unless someone hangs up.
const CALL_HOLD: Duration = Duration::from_secs(3600);
/// The fast profile's caller gives a silent call this long.
const CALLER_MEDIA_TIMEOUT: Duration = Duration::from_secs(3);
/// The phones' Expires under the Genesys default timers (the fast profile has its own).
pub const SLOW_PROFILE_EXPIRES: u32 = 60;
/// Logins a desktop may need until the proxy's round robin lands it on the wanted GWS node.
const PLACEMENT_ATTEMPTS: usize = 6;

/// A call placed by the caller, alive until one side hangs up.
pub struct LiveCall {
    /// The number dialled (the agent's DN).
    pub to: String,
    /// The node whose SIP port got the INVITE.
    pub via: SocketAddr,
    pub report: JoinHandle<anyhow::Result<CallReport>>,
}

/// Every actor of one scenario run.
pub struct Actors {
    shared: Shared,
    pub caller: Swarm,
    pub phones: Vec<Swarm>,
    ip: IpAddr,
    fast: bool,
}

impl Actors {
    /// The caller on `ip`; desktops and phones come later. `fast`: the fast timer profile.
    pub async fn start(ip: IpAddr, fast: bool) -> anyhow::Result<Actors> {
        let mut config = PhoneConfig::caller(ip);
        if fast {
            config = config.with_fast_timers();
            // No assertion rests on the caller noticing silence: a longer media timeout keeps a
            // starved CPU from ending a call the scenario needs (S4.1 is the phone's own timeout).
            config.media.timeout = config.media.timeout.max(CALLER_MEDIA_TIMEOUT);
        }
        let caller = Swarm::start(config).await?;
        Ok(Actors {
            shared: Shared::new(Journal::new("desktops", nodekit::journal::DEFAULT_CAPACITY)),
            caller,
            phones: Vec::new(),
            ip,
            fast,
        })
    }

    /// Adds every actor's journal to `history` (`desktops`, `caller`, `phone-<dn>`).
    pub fn watch(&self, history: &mut History) {
        history.add("desktops", &self.shared.journal);
        history.add("caller", self.caller.journal());
    }

    /// The desktops' shared journal.
    pub fn desktop_journal(&self) -> &Journal {
        &self.shared.journal
    }

    /// A desktop's configuration: through `url`, Ready on login, the profile's timers.
    pub fn desktop_config(&self, url: &str, agent: &Agent) -> DesktopConfig {
        let mut cfg = DesktopConfig::new(url, &agent.user);
        if self.fast {
            cfg = cfg.with_fast_timers();
        }
        cfg.password = agent.password.clone();
        cfg.ready = true;
        cfg.relogin = true;
        cfg
    }

    /// Starts a desktop and waits until it is connected (the agent logged in or not).
    pub async fn desktop(&self, cfg: DesktopConfig, patience: Duration) -> Result<Desktop, String> {
        let user = cfg.user.clone();
        let desktop = Desktop::start_with(cfg, &self.shared).map_err(|e| format!("{e:#}"))?;
        desktop
            .wait_for(patience, |s| s.connection == Connection::Connected)
            .await
            .map_err(|s| {
                format!(
                    "{user}'s desktop did not connect: {:?} {:?}",
                    s.connection, s.notice
                )
            })?;
        Ok(desktop)
    }

    /// Logs `agent` in with `cfg` (through a proxy) until its session lands on GWS node `gws`
    /// (the proxy spreads new sessions round robin): a desktop that lands elsewhere logs out
    /// and a new one logs in. `behind_proxy` names the GWS nodes (history sources) the proxy
    /// may pick.
    pub async fn desktop_on(
        &self,
        history: &History,
        cfg: DesktopConfig,
        agent: &Agent,
        gws: &str,
        behind_proxy: &[String],
        patience: Duration,
    ) -> Result<Desktop, String> {
        for _ in 0..PLACEMENT_ATTEMPTS {
            let mark = history.mark();
            let desktop = self.desktop(cfg.clone(), patience).await?;
            let landed = behind_proxy.iter().find(|node| {
                history
                    .find(&mark, node, |e| {
                        e.kind == "session.created" && e.detail["user"] == agent.user.as_str()
                    })
                    .is_some()
            });
            if landed.map(String::as_str) == Some(gws) {
                return Ok(desktop);
            }
            let _ = desktop.log_out().await;
        }
        Err(format!(
            "{} never landed on {gws} in {PLACEMENT_ATTEMPTS} logins",
            agent.user
        ))
    }

    /// Starts the phone of softphone DN `dn` registering to `registrars` (preferred first),
    /// answering at once, with a control plane; adds its journal to `history` as `phone-<dn>`.
    pub async fn phone(
        &mut self,
        history: &mut History,
        dn: &str,
        registrars: Vec<SocketAddr>,
        expires: Option<u32>,
    ) -> anyhow::Result<(Swarm, SocketAddr)> {
        let mut config = PhoneConfig::phones([dn], registrars);
        if self.fast {
            config = config.with_fast_timers();
        }
        match expires {
            Some(e) => config.expires = e,
            // Real phones ask for 1800–3600 s; a scenario that waits for a registration to
            // lapse (S4) would take that long, so the Genesys timers run with a minute.
            None if !self.fast => config.expires = SLOW_PROFILE_EXPIRES,
            None => {}
        }
        let ip = self.phone_ip();
        config.bind = SocketAddr::new(ip, 0);
        let phone = Swarm::start(config).await?;
        let control = phone.serve_control(SocketAddr::new(ip, 0)).await?;
        history.add(&format!("phone-{dn}"), phone.journal());
        self.phones.push(phone.clone());
        Ok((phone, control))
    }

    /// The address of the next phone: on loopback each phone gets one of its own after the
    /// caller's, so that an iptables rule on a phone's address (a phone losing a DC, SIP and
    /// media) leaves the caller's media alone; elsewhere the actors share their one address.
    fn phone_ip(&self) -> IpAddr {
        match self.ip {
            IpAddr::V4(v4) if v4.is_loopback() => {
                IpAddr::V4((u32::from(v4) + 1 + self.phones.len() as u32).into())
            }
            other => other,
        }
    }

    /// The caller calls `to` through the SIP node at `via` (from `ani`), holding until hung up.
    pub fn call(&self, to: &str, via: SocketAddr, ani: &str) -> LiveCall {
        let plan = CallPlan::new(to, via)
            .hold(CALL_HOLD)
            .give_up_after(Duration::from_secs(10))
            .from(ani);
        let caller = self.caller.clone();
        LiveCall {
            to: to.to_owned(),
            via,
            report: tokio::spawn(async move { caller.place_call(plan).await }),
        }
    }

    /// The caller's view of its call to `to`: phase and media counters (None: no such call).
    pub async fn caller_call(&self, to: &str) -> Option<Value> {
        let state = self.caller.state().await;
        state["calls"]
            .as_array()?
            .iter()
            .find(|c| c["dn"] == to)
            .cloned()
    }

    /// Stops every actor.
    pub fn shutdown(&self) {
        self.caller.shutdown();
        for p in &self.phones {
            p.shutdown();
        }
    }
}
