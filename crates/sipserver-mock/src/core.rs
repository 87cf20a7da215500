//! The node's state — registrar bindings, DNs with their T-Lib registrations, owner and agent,
//! T-Lib clients — and the transitions that every input (a SIP request, a T-Lib request, a
//! client leaving, a timer) causes. One task owns it (see `node.rs`); I/O tasks only move frames
//! to and from it, so the core is driven directly by unit tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use nodekit::Journal;
use serde_json::{json, Value};
use sipcore::transport::Source;
use sipcore::ServerTransactions;
use tlib::{ConnId, EventStamper, Message};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::agent::ClientId;
use crate::call::OutRequest;
use crate::calls::CallTable;
use crate::config::NodeConfig;
use crate::dn::{DnKind, DnPlan};
pub use crate::dn_table::{DnState, DnTable};
use crate::metrics::NodeMetrics;
use crate::registrar::Registrar;

/// Messages queued towards one T-Lib client before it counts as stuck and is disconnected.
pub const CLIENT_QUEUE: usize = 4096;

/// A T-Lib client this node serves: connected here, or a peer node's client acting through the
/// TC layer (a remote registration, R2, or relayed call control, R11).
#[derive(Debug)]
pub struct Client {
    pub origin: ClientOrigin,
    pub application: Option<String>,
    pub dns: BTreeSet<Box<str>>,
}

/// Where a client's events go.
#[derive(Debug)]
pub enum ClientOrigin {
    Local {
        peer: SocketAddr,
        tx: mpsc::Sender<Message>,
    },
    /// Client `client` of node `node`: events go back over the TC link.
    Relayed { node: Arc<str>, client: ClientId },
}

impl Client {
    pub fn is_local(&self) -> bool {
        matches!(self.origin, ClientOrigin::Local { .. })
    }

    fn describe(&self) -> String {
        match &self.origin {
            ClientOrigin::Local { peer, .. } => peer.to_string(),
            ClientOrigin::Relayed { node, client } => format!("{node}#{client}"),
        }
    }
}

/// Relayed clients are numbered from here, apart from connections (numbered from 1).
pub const RELAYED_CLIENT_BASE: ClientId = 1 << 62;

/// One TC link as the core sees it.
#[derive(Debug)]
pub struct TcLink {
    pub up: bool,
    /// Which connection is current (a reconnect replaces the old one).
    pub link_id: u64,
    pub since: Instant,
    pub last_reason: Option<String>,
    /// Sends to the peer while up.
    pub tx: Option<mpsc::Sender<crate::tc::TcMessage>>,
}

/// Work the core scheduled for later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerJob {
    /// Timer A / E: retransmit our request with this branch.
    Retransmit { branch: String },
    /// Timer B / F: our request with this branch gave up.
    ExpireOut { branch: String },
    /// Resend our 2xx to the caller until it ACKs.
    Resend2xx {
        conn_id: ConnId,
        interval: std::time::Duration,
    },
    /// R7: the wrap-up time of this DN's ACW is over.
    AcwEnd { dn: Box<str>, serial: u64 },
    /// Time to check that both legs of an answered call are still there.
    Audit { conn_id: ConnId },
    /// R8: the ownership move delay of this DN is over.
    OwnershipMove { dn: Box<str>, serial: u64 },
}

/// The node core.
pub struct NodeCore {
    pub(crate) config: Arc<NodeConfig>,
    pub(crate) node: Arc<str>,
    pub(crate) plan: DnPlan,
    pub(crate) registrar: Registrar,
    pub(crate) transactions: ServerTransactions,
    pub(crate) dns: DnTable,
    pub(crate) clients: HashMap<ClientId, Client>,
    pub(crate) stamper: EventStamper,
    pub(crate) journal: Journal,
    pub(crate) metrics: Arc<NodeMetrics>,
    /// Calls that arrived on this node.
    pub(crate) calls: CallTable,
    /// Peer nodes' clients acting here, by (node, their client id).
    pub(crate) relayed_clients: HashMap<(Arc<str>, ClientId), ClientId>,
    pub(crate) next_relayed_client: ClientId,
    /// The highest ownership epoch this node has seen or made (cluster/mod.rs).
    pub(crate) epoch_clock: u64,
    /// DNs this node owns (the `drlab_owned_dns` gauge).
    pub(crate) owned: usize,
    /// Per peer, the DNs its ownership snapshot named so far (until its last part).
    pub(crate) snapshot_rx: HashMap<String, std::collections::HashSet<Box<str>>>,
    /// Per peer, the calls its calls snapshot named so far.
    pub(crate) calls_snapshot_rx: HashMap<String, std::collections::HashSet<ConnId>>,
    /// Requests the node sent, by Via branch, until answered or timed out.
    pub(crate) out_requests: HashMap<String, OutRequest>,
    pub(crate) timers: BTreeMap<(Instant, u64), TimerJob>,
    timer_seq: u64,
    /// TC links to the other nodes, by peer name.
    pub(crate) links: BTreeMap<String, TcLink>,
    /// SIP messages to send, drained by the core task after every input.
    pub(crate) outbox: Vec<(Source, Bytes)>,
    /// Calls' T-Lib user data, by ConnID (user_data.rs).
    pub(crate) user_data: HashMap<ConnId, tlib::KvList>,
}

/// Most server transactions kept at once (retransmission cache).
const MAX_TRANSACTIONS: usize = 200_000;

impl NodeCore {
    pub fn new(
        config: Arc<NodeConfig>,
        journal: Journal,
        metrics: Arc<NodeMetrics>,
    ) -> Result<Self, String> {
        let plan = DnPlan::new(&config.dns)?;
        let calls = CallTable::new(&config.name);
        Ok(NodeCore {
            node: config.name.as_str().into(),
            registrar: Registrar::new(config.registrar.clone()),
            transactions: ServerTransactions::new(config.sip_timers, MAX_TRANSACTIONS),
            plan,
            config,
            dns: DnTable::default(),
            clients: HashMap::new(),
            stamper: EventStamper::new(),
            journal,
            metrics,
            calls,
            out_requests: HashMap::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            outbox: Vec::new(),
            user_data: HashMap::new(),
            links: BTreeMap::new(),
            relayed_clients: HashMap::new(),
            next_relayed_client: RELAYED_CLIENT_BASE,
            owned: 0,
            epoch_clock: 0,
            snapshot_rx: HashMap::new(),
            calls_snapshot_rx: HashMap::new(),
        })
    }

    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// The earliest time a timer needs the core.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.registrar.next_expiry(),
            self.transactions.next_deadline().map(Instant::from_std),
            self.timers.keys().next().map(|(at, _)| *at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs every timer that is due.
    pub fn on_timer(&mut self, now: Instant) {
        self.transactions.purge(now.into_std());
        for dn in self.registrar.expire(now) {
            self.metrics.registrations_expired.inc();
            self.journal
                .record("sip.registration_expired", json!({ "dn": &*dn }));
            self.softphone_unbound(&dn, now);
        }
        self.metrics.bindings.set(self.registrar.len() as i64);
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            match entry.remove() {
                TimerJob::Retransmit { branch } => self.retransmit(&branch, now),
                TimerJob::ExpireOut { branch } => self.expire_out(&branch, now),
                TimerJob::Resend2xx { conn_id, interval } => {
                    self.resend_2xx(conn_id, interval, now)
                }
                TimerJob::AcwEnd { dn, serial } => self.end_acw(&dn, serial, now),
                TimerJob::Audit { conn_id } => self.audit_call(conn_id, now),
                TimerJob::OwnershipMove { dn, serial } => self.ownership_move_due(&dn, serial, now),
            }
        }
    }

    /// Runs `job` at `at`.
    pub(crate) fn schedule(&mut self, at: Instant, job: TimerJob) {
        self.timer_seq += 1;
        self.timers.insert((at, self.timer_seq), job);
    }

    /// The SIP messages produced since the last call, to hand to the transport.
    pub fn take_outbox(&mut self) -> Vec<(Source, Bytes)> {
        std::mem::take(&mut self.outbox)
    }

    /// Whether a DN is in service: a softphone DN while its phone is registered here, a PSTN DN
    /// while a T-Lib client registered it at its owner.
    pub fn in_service(&self, dn: &str, kind: DnKind) -> bool {
        match kind {
            DnKind::Softphone => self.registrar.binding(dn).is_some(),
            DnKind::Pstn => self
                .dns
                .get(dn)
                .is_some_and(|d| d.owner.as_deref() == Some(&*self.node) && !d.clients.is_empty()),
        }
    }

    /// Sends an event to every client that registered `dn`.
    pub(crate) fn broadcast_dn(&mut self, dn: &str, msg: Message) {
        let clients: Vec<ClientId> = self
            .dns
            .get(dn)
            .map(|d| d.clients.iter().copied().collect())
            .unwrap_or_default();
        for id in clients {
            self.send(id, msg.clone());
        }
    }

    /// Sends `msg` to every client of `dn`; `requester` gets it with its ReferenceID.
    pub(crate) fn answer_and_broadcast(
        &mut self,
        dn: &str,
        requester: ClientId,
        reference: Option<u32>,
        msg: Message,
    ) {
        let others: Vec<ClientId> = self
            .dns
            .get(dn)
            .map(|d| {
                d.clients
                    .iter()
                    .copied()
                    .filter(|c| *c != requester)
                    .collect()
            })
            .unwrap_or_default();
        for id in others {
            self.send(id, msg.clone());
        }
        self.send(requester, msg.with_reference_id(reference));
    }

    /// Stamps and queues one event to one client. A client whose queue is full is stuck: it is
    /// dropped (its connection closes, R4 applies) rather than let memory grow.
    pub(crate) fn send(&mut self, id: ClientId, mut msg: Message) {
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        match &client.origin {
            ClientOrigin::Relayed { node, client } => {
                let (node, client) = (node.clone(), *client);
                self.send_tc(&node, crate::tc::TcMessage::Event { client, event: msg });
            }
            ClientOrigin::Local { tx, .. } => {
                self.stamper.stamp(&mut msg);
                self.metrics.tlib_events_sent.inc();
                match tx.try_send(msg) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(node = %self.node, client = id, "T-Lib client not reading; disconnecting");
                        self.client_gone(id, "event queue full");
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
    }

    /// Removes DN state that carries nothing (keeps the map small at 100k DNs).
    pub(crate) fn forget_if_idle(&mut self, dn: &str) {
        self.dns.forget_if_idle(dn);
    }

    /// The whole state, as `GET /state` shows it.
    pub fn snapshot(&self) -> Value {
        let now = Instant::now();
        let mut dns: Vec<Value> = Vec::new();
        let mut names: BTreeSet<&str> = self.dns.names().collect();
        names.extend(self.registrar.iter().map(|(dn, _)| dn));
        for dn in names {
            let kind = self.plan.lookup(dn).map(|i| i.kind);
            let state = self.dns.get(dn);
            let binding = self.registrar.binding(dn).map(|b| {
                json!({
                    "contact": &*b.contact,
                    "source": b.source.to_string(),
                    "transport": b.transport,
                    "expires_in_ms": b.expires_at.saturating_duration_since(now).as_millis() as u64,
                })
            });
            dns.push(json!({
                "dn": dn,
                "kind": kind,
                "in_service": kind.map(|k| self.in_service(dn, k)).unwrap_or(false),
                "owner": state.and_then(|s| s.owner.as_deref()),
                "registered_by": state.map(|s| s.clients.iter().copied().collect::<Vec<_>>()).unwrap_or_default(),
                "agent": state.and_then(|s| s.agent.as_deref()),
                "binding": binding,
                "epoch": state.map(|s| s.epoch),
                "cluster": state.and_then(|s| s.cluster.as_deref()),
            }));
        }
        let clients: Vec<Value> = self
            .clients
            .iter()
            .map(|(id, c)| {
                json!({ "id": id, "peer": c.describe(), "local": c.is_local(), "application": c.application, "dns": c.dns })
            })
            .collect();
        json!({
            "node": &*self.node,
            "dc": self.config.dc,
            "sip": self.config.sip_addr().to_string(),
            "tlib": self.config.tlib_addr().to_string(),
            "bindings": self.registrar.len(),
            "transactions": self.transactions.len(),
            "dns": dns,
            "clients": clients,
            "calls": self.calls.values().map(|c| json!({
                "conn_id": c.conn_id.to_string(),
                "uuid": c.uuid,
                "dn": &*c.dn,
                "ani": c.ani,
                "phase": c.phase,
                "caller": c.a.source.remote.to_string(),
                "phone": c.b.dest.remote.to_string(),
                "age_ms": now.saturating_duration_since(c.started).as_millis() as u64,
            })).collect::<Vec<_>>(),
            "pending_requests": self.out_requests.len(),
            "timers": self.timers.len(),
            "links": self.links.iter().map(|(peer, l)| json!({
                "link": crate::tc::link_name(&self.node, peer),
                "peer": peer,
                "up": l.up,
                "for_ms": now.saturating_duration_since(l.since).as_millis() as u64,
                "last_reason": l.last_reason,
            })).collect::<Vec<_>>(),
        })
    }

    /// A restart: the process keeps running, every piece of state is gone.
    pub fn reset(&mut self) {
        self.registrar.clear();
        self.transactions = ServerTransactions::new(self.config.sip_timers, MAX_TRANSACTIONS);
        self.dns.clear();
        self.clients.clear();
        self.calls.clear();
        self.out_requests.clear();
        self.timers.clear();
        self.outbox.clear();
        self.links.clear();
        self.relayed_clients.clear();
        self.owned = 0;
        self.epoch_clock = 0;
        self.snapshot_rx.clear();
        self.calls_snapshot_rx.clear();
        self.metrics.owned_dns.set(0);
        self.metrics.bindings.set(0);
        self.metrics.clients.set(0);
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
pub(crate) mod tests;
