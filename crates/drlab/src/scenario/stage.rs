//! One scenario run's stage: its own lab from the topology, the roles, the actors, the merged
//! history, the fault layer chosen, and the rows checked so far. Scenarios drive it step by
//! step; every check ends in [`Stage::record`].

use std::time::Duration;

use anyhow::Context;
use gws_mock::GwsNode;
use sipserver_mock::SipNode;

use super::report::Row;
use super::Case;
use crate::orchestra::faults::{self, Fault, Mode, Step, Via};
use crate::orchestra::handle::LabHandle;
use crate::orchestra::history::{now_ms, History, Mark};
use crate::orchestra::iptables::Installed;
use crate::orchestra::roles::Roles;
use crate::orchestra::{actors::Actors, BadInput};
use crate::topology::{Timers, Topology};
use crate::Lab;

/// What a check found: when (ms since the fault or step) and the evidence, or why it failed.
pub type Found = Result<(Option<u64>, String), String>;

/// How a scenario run is configured.
#[derive(Clone, Debug)]
pub struct Options {
    pub topology: Topology,
    /// Timer profile (`fast` unless told otherwise).
    pub profile: String,
    pub faults: Via,
    /// Collects each case for the report (`--report`).
    pub recorder: Option<crate::report::Recorder>,
}

pub struct Stage {
    pub case: Case,
    pub lab: Lab,
    pub handle: LabHandle,
    pub roles: Roles,
    pub history: History,
    pub actors: Actors,
    pub timers: Timers,
    pub via: Via,
    /// The desktops' give-up time (R13) of this profile.
    pub giveup_after: Duration,
    /// How long one expected happening may take beyond the timers that govern it.
    pub patience: Duration,
    pub rows: Vec<Row>,
    /// Wall-clock ms of the fault.
    pub fault_at: u64,
    /// The history when the fault was injected.
    pub fault_mark: Option<Mark>,
    installed: Installed,
}

/// Whether the error chain says an address was busy.
fn address_in_use(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
    }) || format!("{e:#}").contains("in use")
}

impl Stage {
    /// Starts the lab of `topology` (edited by `adjust`, e.g. session expiry off) and the actors,
    /// and waits until every TC link and GWS T-Lib link is up.
    pub async fn start(
        case: Case,
        opts: &Options,
        adjust: impl FnOnce(&mut Topology),
    ) -> anyhow::Result<Stage> {
        let roles = Roles::from_topology(&opts.topology)?;
        let mut topology = opts.topology.clone();
        adjust(&mut topology);
        let profile = Some(opts.profile.as_str());
        let timers = topology
            .timers(profile)
            .map_err(anyhow::Error::msg)?
            .clone();
        let lab = match Lab::start(&topology, profile).await {
            Ok(lab) => lab,
            Err(e) if address_in_use(&e) => {
                return Err(BadInput::new(
                    format!("cannot start the scenario's lab: {e:#}"),
                    vec!["stop the lab using the address (e.g. `drlab up`), or --topology with other addresses".into()],
                )
                .into())
            }
            Err(e) => return Err(e),
        };
        let fast = opts.profile != "default";
        let actors = Actors::start(roles.actor_ip, fast).await?;
        let mut history = History::default();
        for n in &lab.sip_nodes {
            history.add(n.name(), n.journal());
        }
        for g in &lab.gws_nodes {
            history.add(g.name(), g.journal());
        }
        if let Some(g) = &lab.pstn_gateway {
            history.add("pstn-gateway", g.journal());
        }
        actors.watch(&mut history);
        let giveup_after = actors
            .desktop_config("http://127.0.0.1:1", &roles.pstn[0])
            .giveup_after;
        let patience = Duration::from_secs(5) + timers.addp_timeout * 2;
        let handle = LabHandle::from_lab(&lab);
        let stage = Stage {
            case,
            lab,
            handle,
            roles,
            history,
            actors,
            timers,
            via: opts.faults,
            giveup_after,
            patience,
            rows: Vec::new(),
            fault_at: now_ms(),
            fault_mark: None,
            installed: Installed::default(),
        };
        stage.wait_ready().await?;
        Ok(stage)
    }

    /// Every SIP node's TC links and every GWS node's T-Lib link up.
    async fn wait_ready(&self) -> anyhow::Result<()> {
        let peers = self.lab.sip_nodes.len().saturating_sub(1);
        for node in &self.lab.sip_nodes {
            self.history
                .eventually(self.patience, || async {
                    let state = node.state().await;
                    let up = state["links"]
                        .as_array()
                        .map(|l| l.iter().filter(|l| l["up"] == true).count())
                        .unwrap_or(0);
                    if up >= peers {
                        Ok(())
                    } else {
                        Err(format!("{}: {up} of {peers} TC links up", node.name()))
                    }
                })
                .await
                .map_err(anyhow::Error::msg)?;
        }
        for g in &self.lab.gws_nodes {
            self.history
                .eventually(self.patience, || async {
                    let state = g.state().await;
                    if state["tlib_link"].is_string() {
                        Ok(())
                    } else {
                        Err(format!("{}: T-Lib link not up", g.name()))
                    }
                })
                .await
                .map_err(anyhow::Error::msg)?;
        }
        Ok(())
    }

    pub fn sip(&self, name: &str) -> anyhow::Result<&SipNode> {
        self.lab
            .sip_node(name)
            .with_context(|| format!("no SIP node {name}"))
    }

    pub fn gws(&self, name: &str) -> anyhow::Result<&GwsNode> {
        self.lab
            .gws_node(name)
            .with_context(|| format!("no GWS node {name}"))
    }

    /// `http://` of a proxy.
    pub fn proxy_url(&self, name: &str) -> anyhow::Result<String> {
        let p = self
            .lab
            .proxy(name)
            .with_context(|| format!("no proxy {name}"))?;
        Ok(format!("http://{}", p.http))
    }

    /// The GWS nodes behind a proxy.
    pub fn behind(&self, proxy: &str) -> Vec<String> {
        self.lab
            .proxy(proxy)
            .map(|p| p.upstreams.clone())
            .unwrap_or_default()
    }

    /// Milliseconds from the fault to `at_ms`.
    pub fn after_fault(&self, at_ms: u64) -> u64 {
        at_ms.saturating_sub(self.fault_at)
    }

    /// The history mark of the fault (the start when no fault yet).
    pub fn fault_mark(&self) -> Mark {
        self.fault_mark
            .clone()
            .unwrap_or_else(|| self.history.mark())
    }

    /// Records the check of `id`.
    pub fn record(&mut self, id: &str, found: Found) {
        let (pass, ms, evidence) = match found {
            Ok((ms, evidence)) => (true, ms, evidence),
            Err(why) => (false, None, why),
        };
        self.rows.push(Row {
            id: id.to_owned(),
            scenario: self.case.scenario.name().to_owned(),
            variant: self.case.variant.to_owned(),
            pass,
            ms,
            evidence,
            at_ms: now_ms(),
        });
    }

    /// Injects `fault` on the chosen layer; the fault time starts here.
    pub async fn inject(&mut self, fault: &Fault, mode: Mode) -> anyhow::Result<Vec<Step>> {
        let steps = fault.plan(&self.handle, self.via, mode)?;
        self.fault_mark = Some(self.history.mark());
        self.fault_at = now_ms();
        faults::apply(&self.handle, &steps, &mut self.installed).await?;
        Ok(steps)
    }

    /// Removes a fault injected by [`Stage::inject`].
    pub async fn heal(&mut self, steps: &[Step]) -> anyhow::Result<()> {
        faults::undo(&self.handle, steps, &mut self.installed).await?;
        Ok(())
    }

    /// Stops the actors and the lab (and removes iptables rules left).
    pub async fn stop(mut self) {
        self.installed.clear();
        self.actors.shutdown();
        self.lab.shutdown().await;
        // The nodes' servers close their listeners in their own tasks: the next case's lab
        // binds the same addresses, so wait (bounded) until they are free.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        for e in &self.handle.endpoints {
            while tokio::net::TcpListener::bind(e.control).await.is_err()
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
