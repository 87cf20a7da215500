//! `drlab bench cluster`: how fast the SIP Cluster settles after a partition heals, and how long
//! the TC layer takes to relay T-Events.
//!
//! 1. Settle: the DCs are cut (built-in `drop` on the TC links), a T-Lib client registers `dns`
//!    PSTN DNs at ss1, so DC1 owns them and DC2 has never heard of them; then the cut heals and
//!    the clock runs until every node's view names ss1 as their owner. Reported: heal → TC links
//!    back (reconnect backoff), links back → ownership settled (snapshot exchange), and the total.
//! 2. Relay latency: a client at ss1 (the owner) changes an agent's state `rate` times a second;
//!    a client at ss3 registered the same DN remotely (R2). Each request's event reaches the
//!    local client directly and the remote one over the TC layer; both latencies are recorded.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use netfault::{FaultMode, FaultRule, PeerFilter};
use serde_json::Value;
use sipserver_mock::SipNode;
use tlib::{AgentWorkMode, ClientEvent, Events, MessageName, Request, TlibClient};

use crate::{Lab, Topology, DEFAULT_TOPOLOGY};

/// What to measure.
#[derive(Clone, Debug)]
pub struct ClusterBench {
    /// DNs registered during the partition.
    pub dns: u32,
    /// Agent state changes per second for the relay latency.
    pub rate: u32,
    /// How long the relay latency runs.
    pub duration: Duration,
}

/// The figures, in milliseconds / microseconds.
#[derive(Debug)]
pub struct ClusterReport {
    pub dns: u32,
    pub register_ms: u128,
    pub links_back_ms: u128,
    pub settled_ms: u128,
    pub events: u64,
    pub local_us: Percentiles,
    pub relayed_us: Percentiles,
    pub lost: u64,
}

#[derive(Debug, Default)]
pub struct Percentiles {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        Percentiles {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }
}

const PATIENCE: Duration = Duration::from_secs(60);
/// The bench's PSTN DNs (a wider plan than the default's 1,000).
const FIRST_DN: u32 = 80_000;

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn node<'a>(lab: &'a Lab, name: &str) -> anyhow::Result<&'a SipNode> {
    lab.sip_node(name)
        .with_context(|| format!("the embedded topology has no node {name}"))
}

async fn links_up(node: &SipNode) -> usize {
    let state = node.state().await;
    state["links"]
        .as_array()
        .map(|l| l.iter().filter(|l| l["up"] == Value::Bool(true)).count())
        .unwrap_or(0)
}

/// Waits until every node of `lab` has `up` TC links up.
async fn wait_links(lab: &Lab, up: &[(&str, usize)]) -> anyhow::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    for (name, want) in up {
        let n = node(lab, name)?;
        while links_up(n).await != *want {
            if Instant::now() > deadline {
                bail!("{name}: {want} TC links not up within {PATIENCE:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(())
}

async fn client(node: &SipNode, app: &str) -> anyhow::Result<(TlibClient, Events)> {
    let stream = tokio::net::TcpStream::connect(node.tlib_addr()).await?;
    // The node's own ADDP timers: a client whose ping interval exceeds the node's timeout would be
    // declared dead while it only listens.
    TlibClient::handshake(stream, app, node.config().addp.to_tlib())
        .await
        .with_context(|| format!("T-Lib handshake with {}", node.name()))
}

/// How many DNs `node` believes `owner` owns.
async fn owned_by(node: &SipNode, owner: &str) -> usize {
    let state = node.state().await;
    state["dns"]
        .as_array()
        .map(|d| d.iter().filter(|d| d["owner"] == owner).count())
        .unwrap_or(0)
}

impl ClusterBench {
    pub async fn run(&self, progress: impl Fn(&str)) -> anyhow::Result<ClusterReport> {
        if self.dns == 0 || self.dns > 20_000 {
            bail!("--dns must be between 1 and 20000");
        }
        if self.rate == 0 || self.rate > 100_000 {
            bail!("--rate must be between 1 and 100000");
        }
        let text = DEFAULT_TOPOLOGY.replace("range = \"8000-8999\"", "range = \"80000-99999\"");
        let topology = Topology::parse(&text)
            .map_err(anyhow::Error::msg)?
            .with_ephemeral_ports();
        let lab = Lab::start(&topology, Some("fast")).await?;
        let result = self.measure(&lab, &progress).await;
        lab.shutdown().await;
        result
    }

    async fn measure(&self, lab: &Lab, progress: &impl Fn(&str)) -> anyhow::Result<ClusterReport> {
        let all = [("ss1", 3), ("ss2", 3), ("ss3", 3), ("ss4", 3)];
        wait_links(lab, &all).await?;
        progress("full TC mesh up; cutting DC1 from DC2");
        let dc2: PeerFilter = "127.0.2.0/24".parse().map_err(anyhow::Error::msg)?;
        for name in ["ss1", "ss2"] {
            node(lab, name)?
                .faults()
                .add(FaultRule::new("tc:*", FaultMode::Drop).with_peer(dc2))
                .map_err(anyhow::Error::msg)?;
        }
        wait_links(lab, &[("ss1", 1), ("ss2", 1), ("ss3", 1), ("ss4", 1)]).await?;

        progress(&format!("registering {} PSTN DNs at ss1", self.dns));
        let ss1 = node(lab, "ss1")?;
        let (owner_client, mut owner_events) = client(ss1, "bench-gws1").await?;
        let started = Instant::now();
        for dn in FIRST_DN..FIRST_DN + self.dns {
            let reply = owner_client
                .request(Request::register_address(dn.to_string()))
                .await?;
            if reply.name != MessageName::EventRegistered {
                bail!("DN {dn}: {reply:?}");
            }
        }
        let register_ms = started.elapsed().as_millis();
        // The owner client's own events are not measured, but must be read: a client that stops
        // reading is disconnected by the node as stuck.
        tokio::spawn(async move { while owner_events.recv().await.is_some() {} });

        progress("healing the cut");
        let ss3 = node(lab, "ss3")?;
        let ss4 = node(lab, "ss4")?;
        let marks: Vec<u64> = [ss3, ss4].iter().map(|n| n.journal().last_seq()).collect();
        let healed_at = now_ms();
        for name in ["ss1", "ss2"] {
            node(lab, name)?.faults().clear();
        }
        let mut links_back = 0u128;
        let mut settled = 0u128;
        for (n, since) in [ss3, ss4].into_iter().zip(marks) {
            let up = n
                .journal()
                .wait_for(since, PATIENCE, |e| {
                    e.kind == "link.up" && e.detail()["peer"] == "ss1"
                })
                .await
                .context("TC link to ss1 back")?;
            let applied = n
                .journal()
                .wait_for(since, PATIENCE, |e| {
                    e.kind == "tc.snapshot_applied" && e.detail()["peer"] == "ss1"
                })
                .await
                .context("ownership snapshot of ss1 applied")?;
            links_back = links_back.max(u128::from(up.at_ms).saturating_sub(healed_at));
            settled = settled.max(u128::from(applied.at_ms).saturating_sub(healed_at));
        }
        for n in &lab.sip_nodes {
            let seen = owned_by(n, "ss1").await;
            if seen < self.dns as usize {
                bail!("{} sees only {seen} DNs owned by ss1", n.name());
            }
        }
        wait_links(lab, &all).await?;

        progress(&format!(
            "relaying agent state events at {}/s for {:?}",
            self.rate, self.duration
        ));
        let (local_us, relayed_us, events, lost) = self.relay_latency(lab, &owner_client).await?;
        Ok(ClusterReport {
            dns: self.dns,
            register_ms,
            links_back_ms: links_back,
            settled_ms: settled,
            events,
            local_us,
            relayed_us,
            lost,
        })
    }

    async fn relay_latency(
        &self,
        lab: &Lab,
        owner_client: &TlibClient,
    ) -> anyhow::Result<(Percentiles, Percentiles, u64, u64)> {
        let dn = FIRST_DN.to_string();
        let (observer, observer_events) = client(node(lab, "ss1")?, "bench-observer").await?;
        observer.request(Request::register_address(&dn)).await?;
        let login = owner_client
            .request(Request::AgentLogin {
                dn: dn.clone(),
                agent_id: Some(format!("agent{dn}")),
                password: None,
                work_mode: AgentWorkMode::AutoIn,
                queue: None,
                reasons: None,
                extensions: None,
            })
            .await?;
        if login.name != MessageName::EventAgentLogin {
            bail!("agent login: {login:?}");
        }
        let (remote, remote_events) = client(node(lab, "ss3")?, "bench-gws3").await?;
        let reply = remote.request(Request::register_address(&dn)).await?;
        if reply.name != MessageName::EventRegistered {
            bail!("remote registration: {reply:?}");
        }
        let total = (u64::from(self.rate) * self.duration.as_millis() as u64 / 1000).max(1);
        let sent: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
        let local = tokio::spawn(collect(observer_events, sent.clone(), total, dn.clone()));
        let relayed = tokio::spawn(collect(remote_events, sent.clone(), total, dn.clone()));
        let mut tick = tokio::time::interval(Duration::from_secs(1) / self.rate);
        for i in 0..total {
            tick.tick().await;
            let request = if i % 2 == 0 {
                Request::AgentNotReady {
                    dn: dn.clone(),
                    work_mode: Some(AgentWorkMode::AuxWork),
                    reasons: None,
                    extensions: None,
                }
            } else {
                Request::AgentReady {
                    dn: dn.clone(),
                    work_mode: None,
                    reasons: None,
                    extensions: None,
                }
            };
            sent.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_back(Instant::now());
            owner_client.send(request.to_message(None)).await?;
        }
        let (local, local_lost) = local.await?;

        let (relayed, relayed_lost) = relayed.await?;
        drop(observer);
        drop(remote);
        Ok((
            Percentiles::of(&local),
            Percentiles::of(&relayed),
            total,
            local_lost + relayed_lost,
        ))
    }
}

/// Latencies of the agent-state events of `dn` seen on `events`, matched in order with the send
/// times (both collectors see every event, so each keeps its own index into `sent`).
async fn collect(
    mut events: Events,
    sent: Arc<Mutex<VecDeque<Instant>>>,
    total: u64,
    dn: String,
) -> (Histogram<u64>, u64) {
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| unreachable!());
    let mut seen = 0u64;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while seen < total {
        let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await else {
            break;
        };
        let ClientEvent::Message(m) = event else {
            continue;
        };
        let is_state = matches!(
            m.name,
            MessageName::EventAgentReady | MessageName::EventAgentNotReady
        );
        if !is_state || m.this_dn() != Some(dn.as_str()) {
            continue;
        }
        let at = sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(seen as usize)
            .copied();
        if let Some(at) = at {
            let _ = histogram.record(at.elapsed().as_micros().max(1) as u64);
        }
        seen += 1;
    }
    (histogram, total - seen)
}

impl ClusterReport {
    /// The report as people read it.
    pub fn render(&self) -> String {
        format!(
            "drlab bench cluster — 4 nodes, 2 DCs, fast profile\n\
             \n\
             settle after a partition heals ({dns} DNs taken by ss1 during the cut; registered in {reg} ms)\n\
             \x20 heal → TC links back          {links} ms   (reconnect backoff)\n\
             \x20 heal → every view settled     {settled} ms\n\
             \x20 links back → settled          {diff} ms   (snapshot exchange)\n\
             \n\
             T-Event relay latency ({events} agent state events at the requested rate)\n\
             \x20                      p50 µs   p99 µs   max µs\n\
             \x20 owner's own client   {lp50:>6}   {lp99:>6}   {lmax:>6}\n\
             \x20 remote client (TC)   {rp50:>6}   {rp99:>6}   {rmax:>6}\n\
             \x20 lost events: {lost}\n",
            dns = self.dns,
            reg = self.register_ms,
            links = self.links_back_ms,
            settled = self.settled_ms,
            diff = self.settled_ms.saturating_sub(self.links_back_ms),
            events = self.events,
            lp50 = self.local_us.p50,
            lp99 = self.local_us.p99,
            lmax = self.local_us.max,
            rp50 = self.relayed_us.p50,
            rp99 = self.relayed_us.p99,
            rmax = self.relayed_us.max,
            lost = self.lost,
        )
    }
}
