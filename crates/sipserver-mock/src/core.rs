//! The node's state — registrar bindings, DNs with their T-Lib registrations, owner and agent,
//! T-Lib clients — and the transitions that every input (a SIP request, a T-Lib request, a
//! client leaving, a timer) causes. One task owns it (see `node.rs`); I/O tasks only move frames
//! to and from it, so the core is driven directly by unit tests.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use nodekit::Journal;
use serde::Serialize;
use serde_json::{json, Value};
use sipcore::{ServerTransactions, TimerConfig};
use tlib::{EventStamper, Message};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::agent::{Agent, ClientId};
use crate::config::NodeConfig;
use crate::dn::{DnKind, DnPlan};
use crate::metrics::NodeMetrics;
use crate::registrar::Registrar;

/// Messages queued towards one T-Lib client before it counts as stuck and is disconnected.
pub const CLIENT_QUEUE: usize = 4096;

/// A connected T-Lib client.
#[derive(Debug)]
pub struct Client {
    pub peer: SocketAddr,
    pub application: Option<String>,
    pub dns: BTreeSet<Box<str>>,
    pub tx: mpsc::Sender<Message>,
}

/// Everything the node knows about one DN beyond its SIP binding.
#[derive(Debug, Default, Serialize)]
pub struct DnState {
    /// Clients that registered the DN (`RequestRegisterAddress`), in registration order.
    pub clients: BTreeSet<ClientId>,
    /// The node that keeps the DN's agent state (R1); None: unowned.
    pub owner: Option<Arc<str>>,
    pub agent: Option<Agent>,
}

impl DnState {
    fn is_idle(&self) -> bool {
        self.clients.is_empty() && self.owner.is_none() && self.agent.is_none()
    }
}

/// The node core.
pub struct NodeCore {
    pub(crate) config: Arc<NodeConfig>,
    pub(crate) node: Arc<str>,
    pub(crate) plan: DnPlan,
    pub(crate) registrar: Registrar,
    pub(crate) transactions: ServerTransactions,
    pub(crate) dns: HashMap<Box<str>, DnState>,
    pub(crate) clients: HashMap<ClientId, Client>,
    pub(crate) stamper: EventStamper,
    pub(crate) journal: Journal,
    pub(crate) metrics: Arc<NodeMetrics>,
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
        Ok(NodeCore {
            node: config.name.as_str().into(),
            registrar: Registrar::new(config.registrar.clone()),
            transactions: ServerTransactions::new(TimerConfig::default(), MAX_TRANSACTIONS),
            plan,
            config,
            dns: HashMap::new(),
            clients: HashMap::new(),
            stamper: EventStamper::new(),
            journal,
            metrics,
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
            self.softphone_unbound(&dn);
        }
        self.metrics.bindings.set(self.registrar.len() as i64);
    }

    /// Whether a DN is in service: a softphone DN while its phone is registered here, a PSTN DN
    /// while a T-Lib client registered it at its owner.
    pub fn in_service(&self, dn: &str, kind: DnKind) -> bool {
        match kind {
            DnKind::Softphone => self.registrar.binding(dn).is_some(),
            DnKind::Pstn => self
                .dns
                .get(dn)
                .is_some_and(|d| d.owner.is_some() && !d.clients.is_empty()),
        }
    }

    /// The phone of a softphone DN registered (R1): this node owns the DN, in service.
    pub(crate) fn softphone_bound(&mut self, dn: &str) {
        let node = self.node.clone();
        self.dns.entry(dn.into()).or_default().owner = Some(node.clone());
        self.journal.record(
            "dn.in_service",
            json!({ "dn": dn, "owner": &*node, "cause": "sip_register" }),
        );
        self.journal
            .record("ownership.taken", json!({ "dn": dn, "owner": &*node }));
        self.broadcast_dn(dn, tlib::event::dn_back_in_service(dn));
    }

    /// The phone's binding expired or was removed (R12): out of service, no owner.
    pub(crate) fn softphone_unbound(&mut self, dn: &str) {
        if let Some(state) = self.dns.get_mut(dn) {
            state.owner = None;
        }
        self.journal.record(
            "dn.out_of_service",
            json!({ "dn": dn, "cause": "sip_unregistered" }),
        );
        self.journal.record(
            "ownership.released",
            json!({ "dn": dn, "node": &*self.node }),
        );
        self.broadcast_dn(dn, tlib::event::dn_out_of_service(dn));
        self.forget_if_idle(dn);
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
        self.stamper.stamp(&mut msg);
        self.metrics.tlib_events_sent.inc();
        match client.tx.try_send(msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(node = %self.node, client = id, "T-Lib client not reading; disconnecting");
                self.client_gone(id, "event queue full");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Removes DN state that carries nothing (keeps the map small at 100k DNs).
    pub(crate) fn forget_if_idle(&mut self, dn: &str) {
        if self.dns.get(dn).is_some_and(DnState::is_idle) {
            self.dns.remove(dn);
        }
    }

    /// The whole state, as `GET /state` shows it.
    pub fn snapshot(&self) -> Value {
        let now = Instant::now();
        let mut dns: Vec<Value> = Vec::new();
        let mut names: BTreeSet<&str> = self.dns.keys().map(|k| &**k).collect();
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
                "agent": state.and_then(|s| s.agent.as_ref()),
                "binding": binding,
            }));
        }
        let clients: Vec<Value> = self
            .clients
            .iter()
            .map(|(id, c)| {
                json!({ "id": id, "peer": c.peer.to_string(), "application": c.application, "dns": c.dns })
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
            "calls": [],
            "links": [],
        })
    }

    /// A restart: the process keeps running, every piece of state is gone.
    pub fn reset(&mut self) {
        self.registrar.clear();
        self.transactions = ServerTransactions::new(TimerConfig::default(), MAX_TRANSACTIONS);
        self.dns.clear();
        self.clients.clear();
        self.metrics.bindings.set(0);
        self.metrics.clients.set(0);
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
