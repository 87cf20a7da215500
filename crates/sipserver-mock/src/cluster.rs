//! The SIP Cluster over the TC layer (scenarios.md R1–R3, R8–R12): the replicated DN ownership
//! map, remote registration (R2), ownership moves (R8, R9), the loss of a DN's owner (R10), calls
//! that live where they arrived with their events and control relayed (R11), and the
//! resynchronisation after a heal.
//!
//! Ownership records carry an epoch. The node that takes, releases or hands over a DN bumps it
//! and tells every peer; every node keeps the record that ranks highest by (epoch, a claim over
//! a release, the lower node name). That is a total order, so after a split brain every node
//! settles on the same owner, and both sides of the conflict say so in their journals.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tlib::{error_code, event, ConnId, Message, MessageName, Request};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::agent::{ClientId, Refusal};
use crate::core::{ClientOrigin, NodeCore, TcLink, TimerJob, RELAYED_CLIENT_BASE};
use crate::dn::DnKind;
use crate::tc::{self, CallReport, OwnedDn, PhoneContact, RemoteClient, TcMessage};

/// A relayed request passes through at most this many nodes (views that disagree for a moment
/// must not bounce a request forever).
const MAX_HOPS: u8 = 3;
/// DNs per ownership-snapshot frame and calls per calls-snapshot frame (frames stay far below
/// the 1 MiB limit).
const SNAPSHOT_DNS: usize = 2_000;
const SNAPSHOT_CALLS: usize = 200;

/// The cluster part of one DN's state.
#[derive(Debug, Default, Serialize)]
pub struct ClusterDn {
    /// Where the owner's phone is registered, when another node owns this softphone DN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<PhoneContact>,
    /// At the owner: calls on this DN that live on other nodes (R11).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub remote_calls: BTreeMap<ConnId, RemoteCall>,
    /// At the owner: nodes with a controlling registration that asked for the DN (R8).
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub move_candidates: BTreeSet<Arc<str>>,
    /// At the owner: the serial of the move whose delay is running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub move_pending: Option<u64>,
    #[serde(skip)]
    pub move_serial: u64,
    /// At a non-owner: our MoveRequest stands at the owner.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub move_requested: bool,
    /// At a non-owner: the agent the owner reported logged in (from relayed events), so that R10
    /// can tell local clients it is gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relayed_agent: Option<Option<String>>,
    /// At a non-owner: the owner became unreachable and local clients were told (R10).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub owner_lost: bool,
}

impl ClusterDn {
    pub fn is_idle(&self) -> bool {
        self.contact.is_none()
            && self.remote_calls.is_empty()
            && self.move_candidates.is_empty()
            && self.move_pending.is_none()
            && !self.move_requested
            && self.relayed_agent.is_none()
            && !self.owner_lost
    }
}

/// A call on an owned DN that lives on another node.
#[derive(Debug, Serialize)]
pub struct RemoteCall {
    pub node: Arc<str>,
    /// The call's latest event, replayed to a client that registers the DN (R6).
    #[serde(skip)]
    pub last_event: Message,
    /// False while the TC link to the call's node is down.
    pub reachable: bool,
}

/// How ownership records rank: highest epoch, then a claim over a release, then the lower name.
fn precedence(epoch: u64, owner: Option<&str>) -> (u64, bool, Reverse<&str>) {
    (epoch, owner.is_some(), Reverse(owner.unwrap_or("")))
}

fn is_relayed(id: ClientId) -> bool {
    id >= RELAYED_CLIENT_BASE
}

/// The DN a request is about, if it is about one.
fn request_dn(request: &Request) -> Option<&str> {
    match request {
        Request::RegisterClient { .. } | Request::QueryServer => None,
        Request::RegisterAddress { dn, .. }
        | Request::UnregisterAddress { dn }
        | Request::QueryAddress { dn, .. }
        | Request::AgentLogin { dn, .. }
        | Request::AgentLogout { dn, .. }
        | Request::AgentReady { dn, .. }
        | Request::AgentNotReady { dn, .. }
        | Request::MakeCall { dn, .. }
        | Request::AnswerCall { dn, .. }
        | Request::ReleaseCall { dn, .. }
        | Request::ClearCall { dn, .. }
        | Request::HoldCall { dn, .. }
        | Request::RetrieveCall { dn, .. } => Some(dn),
    }
}

/// `EventReleased` for a call known only by its latest event (or by DN and ConnID).
fn released_event(dn: &str, conn: ConnId, last: Option<&Message>) -> Message {
    match last {
        Some(m) => Message::with_attrs(MessageName::EventReleased, m.attrs.clone()),
        None => Message::new(MessageName::EventReleased).with(|a| {
            a.this_dn = Some(dn.to_string());
            a.conn_id = Some(conn);
        }),
    }
}

impl NodeCore {
    fn is_me(&self, node: Option<&str>) -> bool {
        node == Some(&*self.node)
    }

    pub(crate) fn owner_of(&self, dn: &str) -> Option<Arc<str>> {
        self.dns.get(dn).and_then(|s| s.owner.clone())
    }

    pub(crate) fn owns(&self, dn: &str) -> bool {
        self.is_me(self.dns.get(dn).and_then(|s| s.owner.as_deref()))
    }

    pub(crate) fn link_up(&self, peer: &str) -> bool {
        self.links.get(peer).is_some_and(|l| l.up)
    }

    /// Queues a frame to a peer; false when the link is down. A peer that stopped reading loses
    /// its link (the reconnect's snapshots bring it back in line).
    pub(crate) fn send_tc(&mut self, peer: &str, msg: TcMessage) -> bool {
        let Some((tx, link_id)) = self
            .links
            .get(peer)
            .and_then(|l| l.tx.as_ref().map(|tx| (tx, l.link_id)))
        else {
            self.metrics.tc_frames_lost.inc();
            return false;
        };
        match tx.try_send(msg) {
            Ok(()) => {
                self.metrics.tc_frames_sent.inc();
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(node = %self.node, %peer, "TC peer not reading; closing the link");
                self.metrics.tc_frames_lost.inc();
                self.tc_link_down(peer, link_id, "send queue full");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.metrics.tc_frames_lost.inc();
                false
            }
        }
    }

    fn broadcast_tc(&mut self, msg: TcMessage) {
        let peers: Vec<String> = self
            .links
            .iter()
            .filter(|(_, l)| l.up)
            .map(|(p, _)| p.clone())
            .collect();
        for peer in peers {
            self.send_tc(&peer, msg.clone());
        }
    }

    /// The phone contact of a softphone DN registered here.
    fn local_contact(&self, dn: &str) -> Option<PhoneContact> {
        self.registrar.binding(dn).map(|b| PhoneContact {
            uri: b
                .contact
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string(),
            source: b.source,
        })
    }

    /// Where another node's phone for `dn` is registered (from the owner's record).
    pub(crate) fn remote_contact(&self, dn: &str) -> Option<&PhoneContact> {
        self.dns
            .get(dn)
            .and_then(|s| s.cluster.as_ref())
            .and_then(|c| c.contact.as_ref())
    }

    /// A controlling registration here (R1): the phone's binding for a softphone DN, a local
    /// T-Lib client's registration for a PSTN DN.
    fn has_controlling_registration(&self, dn: &str) -> bool {
        match self.plan.lookup(dn).map(|i| i.kind) {
            Some(DnKind::Softphone) => self.registrar.binding(dn).is_some(),
            Some(DnKind::Pstn) => self
                .dns
                .get(dn)
                .is_some_and(|s| s.clients.iter().any(|id| !is_relayed(*id))),
            None => false,
        }
    }

    /// This node takes ownership of `dn` (R1) and tells the cluster.
    pub(crate) fn take_ownership(&mut self, dn: &str, cause: &str) {
        let node = self.node.clone();
        let state = self.dns.entry(dn.into()).or_default();
        state.epoch += 1;
        let epoch = state.epoch;
        self.change_owner(dn, Some(node.clone()));
        self.journal.record(
            "ownership.taken",
            json!({ "dn": dn, "owner": &*node, "epoch": epoch, "cause": cause }),
        );
        let contact = self.local_contact(dn);
        self.broadcast_tc(TcMessage::Owner {
            dn: dn.into(),
            owner: Some(node.to_string()),
            epoch,
            contact,
        });
    }

    /// This node gives `dn` up: to `to` (R8) or to nobody (R12, the last registration gone).
    pub(crate) fn give_up_ownership(&mut self, dn: &str, to: Option<Arc<str>>, cause: &str) {
        let Some(state) = self.dns.get_mut(dn) else {
            return;
        };
        state.epoch += 1;
        let epoch = state.epoch;
        self.change_owner(dn, to.clone());
        let node = self.node.clone();
        match &to {
            Some(to) => {
                self.journal.record(
                    "ownership.moved",
                    json!({ "dn": dn, "from": &*node, "to": &**to, "epoch": epoch, "cause": cause, "rule": "R8" }),
                );
            }
            None => {
                self.journal.record(
                    "ownership.released",
                    json!({ "dn": dn, "node": &*node, "epoch": epoch, "cause": cause }),
                );
            }
        }
        self.broadcast_tc(TcMessage::Owner {
            dn: dn.into(),
            owner: to.map(|t| t.to_string()),
            epoch,
            contact: None,
        });
        self.forget_if_idle(dn);
    }

    /// Applies a new owner of `dn` to this node's state.
    fn change_owner(&mut self, dn: &str, new: Option<Arc<str>>) {
        let me = self.node.clone();
        let state = self.dns.entry(dn.into()).or_default();
        let old = std::mem::replace(&mut state.owner, new.clone());
        let was_mine = old.as_deref() == Some(&*me);
        let is_mine = new.as_deref() == Some(&*me);
        if was_mine && !is_mine {
            // Registrations relayed from other nodes follow the DN: those nodes re-register at
            // the new owner when they hear of it.
            let relayed: Vec<ClientId> = state
                .clients
                .iter()
                .copied()
                .filter(|id| is_relayed(*id))
                .collect();
            for id in &relayed {
                state.clients.remove(id);
            }
            if let Some(c) = state.cluster.as_mut() {
                c.remote_calls.clear();
                c.move_candidates.clear();
                c.move_pending = None;
            }
            for id in relayed {
                if let Some(client) = self.clients.get_mut(&id) {
                    client.dns.remove(dn);
                }
            }
            self.owned = self.owned.saturating_sub(1);
        } else if is_mine && !was_mine {
            if let Some(c) = state.cluster.as_mut() {
                c.move_requested = false;
                c.contact = None;
                c.owner_lost = false;
                c.relayed_agent = None;
            }
            self.owned += 1;
        }
        self.metrics.owned_dns.set(self.owned as i64);
        if !is_mine && new.is_some() && old != new {
            self.resync_registrations(dn);
        }
        self.sync_move_request(dn);
    }

    /// Local clients of `dn` register it again at its owner (after an owner change or a heal).
    /// The answers come back without a ReferenceID: `deliver_relayed_event` turns them into
    /// service events instead of passing them on.
    fn resync_registrations(&mut self, dn: &str) {
        let Some(owner) = self.owner_of(dn) else {
            return;
        };
        if self.is_me(Some(&owner)) || !self.link_up(&owner) {
            return;
        }
        let clients: Vec<ClientId> = self
            .dns
            .get(dn)
            .map(|s| s.clients.iter().copied().collect())
            .unwrap_or_default();
        let request = Request::register_address(dn).to_message(None);
        for client in clients {
            self.send_tc(
                &owner,
                TcMessage::Request {
                    client,
                    hops: 1,
                    request: request.clone(),
                },
            );
        }
    }

    /// Keeps this node's standing at the owner in line with its controlling registration:
    /// asks for the DN (R8), withdraws the ask, or takes an unowned DN (R1).
    pub(crate) fn sync_move_request(&mut self, dn: &str) {
        let controlling = self.has_controlling_registration(dn);
        let Some(state) = self.dns.get(dn) else {
            return;
        };
        let requested = state.cluster.as_ref().is_some_and(|c| c.move_requested);
        match state.owner.clone() {
            None if controlling => self.take_ownership(dn, "controlling_registration"),
            Some(owner) if !self.is_me(Some(&owner)) => {
                if controlling && !requested && self.link_up(&owner) {
                    if self.send_tc(&owner, TcMessage::MoveRequest { dn: dn.into() }) {
                        self.set_move_requested(dn, true);
                    }
                } else if !controlling && requested {
                    self.send_tc(&owner, TcMessage::MoveCancel { dn: dn.into() });
                    self.set_move_requested(dn, false);
                }
            }
            _ => {}
        }
    }

    fn set_move_requested(&mut self, dn: &str, requested: bool) {
        if let Some(state) = self.dns.get_mut(dn) {
            state.cluster_mut().move_requested = requested;
        }
    }

    /// R8 at the owner: starts the move when every condition holds, cancels it when one stops.
    pub(crate) fn consider_move(&mut self, dn: &str, now: Instant) {
        if !self.owns(dn) {
            return;
        }
        let blocker = self.move_blocker(dn);
        let Some(state) = self.dns.get_mut(dn) else {
            return;
        };
        let cluster = state.cluster_mut();
        match (blocker, cluster.move_pending) {
            (Ok(to), None) => {
                cluster.move_serial += 1;
                let serial = cluster.move_serial;
                cluster.move_pending = Some(serial);
                // A softphone DN whose registration here is gone moves at once.
                let delay = match self.plan.lookup(dn).map(|i| i.kind) {
                    Some(DnKind::Softphone) => Duration::ZERO,
                    _ => self.config.options.ownership_move_delay,
                };
                self.journal.record(
                    "ownership.move_scheduled",
                    json!({ "dn": dn, "to": &*to, "delay_ms": delay.as_millis() as u64, "rule": "R8" }),
                );
                self.schedule(
                    now + delay,
                    TimerJob::OwnershipMove {
                        dn: dn.into(),
                        serial,
                    },
                );
            }
            (Err(reason), Some(_)) => {
                cluster.move_pending = None;
                self.journal.record(
                    "ownership.move_cancelled",
                    json!({ "dn": dn, "reason": reason, "rule": "R8" }),
                );
            }
            _ => {}
        }
    }

    /// The node to move `dn` to, or what keeps it here.
    fn move_blocker(&self, dn: &str) -> Result<Arc<str>, &'static str> {
        let candidate = self
            .dns
            .get(dn)
            .and_then(|s| s.cluster.as_ref())
            .and_then(|c| c.move_candidates.iter().find(|n| self.link_up(n)).cloned())
            .ok_or("no other node asks for the DN")?;
        if self.has_controlling_registration(dn) {
            return Err("a registration remains at the owner");
        }
        if self.busy_for_login(dn).is_some() {
            return Err("a call or after-call work is in progress");
        }
        Ok(candidate)
    }

    /// The move delay of `dn` is over: log the agent out and hand the DN over (R8).
    pub(crate) fn ownership_move_due(&mut self, dn: &str, serial: u64, now: Instant) {
        let pending = self
            .dns
            .get(dn)
            .and_then(|s| s.cluster.as_ref())
            .and_then(|c| c.move_pending);
        if pending != Some(serial) || !self.owns(dn) {
            return;
        }
        if let Some(c) = self.dns.get_mut(dn).and_then(|s| s.cluster.as_mut()) {
            c.move_pending = None;
        }
        match self.move_blocker(dn) {
            Ok(to) => {
                // Even an agent that logged in through the new owner meanwhile is logged out:
                // that is why agents may have to log on twice.
                self.logout_agent(dn, "ownership_move", "R8");
                self.metrics.ownership_moves.inc();
                self.give_up_ownership(dn, Some(to), "ownership_move");
            }
            Err(_) => self.consider_move(dn, now),
        }
    }

    /// Logs the DN's agent out (if logged in) and tells the DN's clients why in the journal.
    pub(crate) fn logout_agent(&mut self, dn: &str, cause: &str, rule: &str) {
        let Some(agent) = self.dns.get_mut(dn).and_then(|s| s.agent.take()) else {
            return;
        };
        let agent_id = agent.agent_id;
        self.metrics.agent_logouts.inc();
        self.journal.record(
            "agent.logout",
            json!({ "dn": dn, "agent": agent_id, "cause": cause, "rule": rule }),
        );
        self.broadcast_dn(dn, event::agent_logout(None, dn, agent_id.as_deref()));
    }

    /// The phone of a softphone DN registered here (R1): take the DN, or ask its owner (R8).
    pub(crate) fn softphone_bound(&mut self, dn: &str, now: Instant) {
        match self.owner_of(dn) {
            Some(owner) if self.is_me(Some(&owner)) => {
                self.service_event(dn, true, "sip_register");
                self.consider_move(dn, now);
            }
            Some(owner) if self.link_up(&owner) => {
                self.journal.record(
                    "sip.registered_at_non_owner",
                    json!({ "dn": dn, "owner": &*owner }),
                );
                self.sync_move_request(dn);
            }
            // Unowned, or the owner is unreachable: the phone is here, so this node takes the DN
            // (a split brain if the owner still holds it, resolved on heal).
            _ => {
                self.take_ownership(dn, "sip_register");
                self.service_event(dn, true, "sip_register");
            }
        }
    }

    /// The phone's binding here expired or was removed (R12): out of service, the agent logged
    /// out, and the DN released or moved at once to a node the phone registered at since.
    pub(crate) fn softphone_unbound(&mut self, dn: &str, now: Instant) {
        if self.owns(dn) {
            self.service_event(dn, false, "sip_unregistered");
            self.logout_agent(dn, "dn_out_of_service", "R12");
            let has_candidate = self
                .dns
                .get(dn)
                .and_then(|s| s.cluster.as_ref())
                .is_some_and(|c| !c.move_candidates.is_empty());
            if has_candidate {
                self.consider_move(dn, now);
            } else {
                self.give_up_ownership(dn, None, "sip_unregistered");
            }
        } else {
            self.sync_move_request(dn);
        }
        self.forget_if_idle(dn);
    }

    /// Journals a DN going in or out of service here and tells its clients.
    pub(crate) fn service_event(&mut self, dn: &str, in_service: bool, cause: &str) {
        if in_service {
            self.journal.record(
                "dn.in_service",
                json!({ "dn": dn, "owner": &*self.node, "cause": cause }),
            );
            self.broadcast_dn(dn, event::dn_back_in_service(dn));
        } else {
            self.journal
                .record("dn.out_of_service", json!({ "dn": dn, "cause": cause }));
            self.broadcast_dn(dn, event::dn_out_of_service(dn));
        }
    }

    /// R2/R10: a request about a DN another node owns goes there; with that node unreachable it
    /// is refused (or, for unregister and release, done locally). True when handled here.
    pub(crate) fn forward_if_remote(
        &mut self,
        id: ClientId,
        reference: Option<u32>,
        request: &Request,
        msg: &Message,
        hops: u8,
    ) -> bool {
        let Some(dn) = request_dn(request) else {
            return false;
        };
        if self.plan.lookup(dn).is_none() {
            return false;
        }
        let owner = match self.owner_of(dn) {
            Some(o) if !self.is_me(Some(&o)) => o,
            _ => return false,
        };
        if self.link_up(&owner) {
            if hops >= MAX_HOPS {
                let text = format!("request for DN {dn} relayed too often; ownership is settling");
                self.send(id, event::error(reference, error_code::UNKNOWN_ERROR, text));
            } else {
                self.send_tc(
                    &owner,
                    TcMessage::Request {
                        client: id,
                        hops: hops + 1,
                        request: msg.clone(),
                    },
                );
            }
            return true;
        }
        let dn = dn.to_string();
        match request {
            Request::UnregisterAddress { .. }
                if self
                    .dns
                    .get(dn.as_str())
                    .is_some_and(|s| s.clients.contains(&id)) =>
            {
                if let Some(client) = self.clients.get_mut(&id) {
                    client.dns.remove(dn.as_str());
                }
                self.send(id, event::unregistered(reference, &dn));
                self.unregister_dn(id, &dn, "unregister");
            }
            Request::ReleaseCall { conn_id, .. } | Request::ClearCall { conn_id, .. } => {
                // R11: the call cannot be reached; clear it from the desktop, not leave it stuck.
                self.journal.record(
                    "call.cleared_locally",
                    json!({ "dn": dn, "conn_id": conn_id.to_string(), "unreachable": &*owner, "rule": "R11" }),
                );
                let released = released_event(&dn, *conn_id, None);
                self.send(id, released.with_reference_id(reference));
            }
            _ => {
                self.journal.record(
                    "tlib.error",
                    json!({ "client": id, "dn": dn, "code": error_code::OUT_OF_SERVICE, "owner_unreachable": &*owner, "rule": "R10" }),
                );
                let text = format!("DN {dn} is out of service: its owner {owner} is unreachable");
                self.send(
                    id,
                    event::error(reference, error_code::OUT_OF_SERVICE, text),
                );
            }
        }
        true
    }

    /// Peers drop whatever client `id` did through them.
    pub(crate) fn tell_peers_client_gone(&mut self, id: ClientId) {
        if self.links.values().any(|l| l.up) {
            self.broadcast_tc(TcMessage::ClientGone { client: id });
        }
    }

    /// The local (or relayed) client `id` of a peer's node: its number here.
    fn relayed_client(&mut self, node: &Arc<str>, client: RemoteClient) -> ClientId {
        if let Some(id) = self.relayed_clients.get(&(node.clone(), client)) {
            return *id;
        }
        let id = self.next_relayed_client;
        self.next_relayed_client += 1;
        self.relayed_clients.insert((node.clone(), client), id);
        self.clients.insert(
            id,
            crate::core::Client {
                origin: ClientOrigin::Relayed {
                    node: node.clone(),
                    client,
                },
                application: None,
                dns: Default::default(),
            },
        );
        id
    }

    /// One frame from link `link_id` to `peer`; frames of a link already gone are dropped (the
    /// next link's snapshots supersede them).
    pub fn on_tc_frame_of(&mut self, peer: &str, link_id: u64, msg: TcMessage, now: Instant) {
        if self
            .links
            .get(peer)
            .is_some_and(|l| l.up && l.link_id == link_id)
        {
            self.on_tc_frame(peer, msg, now);
        }
    }

    /// One frame from a peer.
    pub fn on_tc_frame(&mut self, peer: &str, msg: TcMessage, now: Instant) {
        self.metrics.tc_frames_received.inc();
        let peer: Arc<str> = peer.into();
        match msg {
            TcMessage::TcHello { .. } | TcMessage::Ping | TcMessage::Pong => {}
            TcMessage::Owner {
                dn,
                owner,
                epoch,
                contact,
            } => self.apply_owner_record(&peer, &dn, owner, epoch, contact, now),
            TcMessage::OwnerSnapshot { owned, done } => {
                for o in owned {
                    self.snapshot_rx
                        .entry(peer.to_string())
                        .or_default()
                        .insert(o.dn.as_str().into());
                    let owner = Some(peer.to_string());
                    self.apply_owner_record(&peer, &o.dn, owner, o.epoch, o.contact, now);
                }
                if done {
                    self.owner_snapshot_done(&peer, now);
                }
            }
            TcMessage::MoveRequest { dn } => {
                if self.owns(&dn) {
                    if let Some(state) = self.dns.get_mut(dn.as_str()) {
                        state.cluster_mut().move_candidates.insert(peer.clone());
                    }
                    self.journal.record(
                        "ownership.move_requested",
                        json!({ "dn": dn, "by": &*peer }),
                    );
                    self.consider_move(&dn, now);
                } else if let Some(state) = self.dns.get(dn.as_str()) {
                    // The peer's view is stale: tell it what we know.
                    let record = TcMessage::Owner {
                        dn: dn.clone(),
                        owner: state.owner.as_deref().map(str::to_string),
                        epoch: state.epoch,
                        contact: None,
                    };
                    self.send_tc(&peer, record);
                }
            }
            TcMessage::MoveCancel { dn } => {
                if let Some(c) = self
                    .dns
                    .get_mut(dn.as_str())
                    .and_then(|s| s.cluster.as_mut())
                {
                    c.move_candidates.remove(&peer);
                }
                self.consider_move(&dn, now);
            }
            TcMessage::Request {
                client,
                hops,
                request,
            } => {
                let id = self.relayed_client(&peer, client);
                self.client_request(id, request, hops, now);
            }
            TcMessage::CallControl { client, request } => {
                let id = self.relayed_client(&peer, client);
                self.relayed_call_control(id, &request, now);
            }
            TcMessage::Event { client, event } => self.deliver_relayed_event(client, event),
            TcMessage::ClientGone { client } => {
                if let Some(id) = self.relayed_clients.get(&(peer.clone(), client)).copied() {
                    self.client_gone(id, "remote client disconnected");
                }
            }
            TcMessage::CallEvent {
                dn,
                conn_id,
                event,
                requester,
                ended,
            } => self.remote_call_event(&peer, &dn, conn_id, event, requester, ended, now),
            TcMessage::CallsSnapshot { calls, done } => {
                for report in calls {
                    self.calls_snapshot_rx
                        .entry(peer.to_string())
                        .or_default()
                        .insert(report.conn_id);
                    self.remote_call_reported(&peer, report);
                }
                if done {
                    self.calls_snapshot_done(&peer, now);
                }
            }
        }
    }

    /// An ownership record from `from`: keep it if it ranks higher than ours.
    fn apply_owner_record(
        &mut self,
        from: &Arc<str>,
        dn: &str,
        owner: Option<String>,
        epoch: u64,
        contact: Option<PhoneContact>,
        now: Instant,
    ) {
        if self.plan.lookup(dn).is_none() {
            return;
        }
        let me = self.node.clone();
        let state = self.dns.entry(dn.into()).or_default();
        let current = precedence(state.epoch, state.owner.as_deref());
        let incoming = precedence(epoch, owner.as_deref());
        let mine = state.owner.as_deref() == Some(&*me);
        if incoming > current {
            let to_me = owner.as_deref() == Some(&*me);
            if mine && !to_me && owner.as_deref() == Some(&**from) {
                // Split brain: another node took the DN while it could not hear us. It wins.
                self.ownership_conflict(dn, &owner, epoch, false);
                self.logout_agent(dn, "ownership_conflict", "R10");
            }
            if let Some(state) = self.dns.get_mut(dn) {
                state.epoch = epoch;
                if !to_me {
                    state.cluster_mut().contact = contact;
                }
            }
            self.change_owner(dn, owner.map(Arc::from));
            if to_me {
                // Handed over to us (R8): claim it with our own contact.
                self.take_ownership(dn, "handover");
            } else if mine {
                self.service_event(dn, false, "ownership_lost");
            }
            self.consider_move(dn, now);
        } else if incoming == current {
            if !mine {
                state.cluster_mut().contact = contact;
            }
        } else if mine && owner.as_deref() == Some(&**from) {
            // The peer claims what we hold by a higher rank: we win; tell it.
            let epoch_mine = state.epoch;
            self.ownership_conflict(dn, &Some(me.to_string()), epoch_mine, true);
            let contact = self.local_contact(dn);
            self.send_tc(
                from,
                TcMessage::Owner {
                    dn: dn.into(),
                    owner: Some(me.to_string()),
                    epoch: epoch_mine,
                    contact,
                },
            );
        }
        self.forget_if_idle(dn);
    }

    fn ownership_conflict(&mut self, dn: &str, winner: &Option<String>, epoch: u64, won: bool) {
        self.metrics.ownership_conflicts.inc();
        self.journal.record(
            "ownership.conflict",
            json!({
                "dn": dn,
                "node": &*self.node,
                "winner": winner,
                "winner_epoch": epoch,
                "won": won,
                "resolution": "highest epoch, then a claim over a release, then the lower node name",
            }),
        );
    }

    /// The peer's ownership snapshot is complete: DNs we thought it owned and it did not name
    /// are unowned now; DNs whose owner came back get their local registrations again.
    fn owner_snapshot_done(&mut self, peer: &Arc<str>, now: Instant) {
        let named = self.snapshot_rx.remove(&**peer).unwrap_or_default();
        let theirs: Vec<Box<str>> = self
            .dns
            .iter()
            .filter(|(_, s)| s.owner.as_deref() == Some(&**peer))
            .map(|(dn, _)| dn.clone())
            .collect();
        let mut resynced = 0usize;
        for dn in &theirs {
            if !named.contains(dn) {
                self.change_owner(dn, None);
                continue;
            }
            let lost = self
                .dns
                .get(dn)
                .and_then(|s| s.cluster.as_ref())
                .is_some_and(|c| c.owner_lost);
            if lost {
                resynced += 1;
                self.resync_registrations(dn);
            }
            self.sync_move_request(dn);
            self.consider_move(dn, now);
            self.forget_if_idle(dn);
        }
        self.journal.record(
            "tc.snapshot_applied",
            json!({ "peer": &**peer, "owned_by_peer": named.len(), "resynced": resynced }),
        );
    }

    /// R11 at the owner: an event of a call on another node, for this DN's clients.
    #[allow(clippy::too_many_arguments)]
    fn remote_call_event(
        &mut self,
        from: &Arc<str>,
        dn: &str,
        conn: ConnId,
        event: Message,
        requester: Option<(RemoteClient, Option<u32>)>,
        ended: Option<bool>,
        now: Instant,
    ) {
        if !self.owns(dn) {
            // Not ours (any more): pass it to the owner we know, if that is a third node.
            if let Some(owner) = self.owner_of(dn).filter(|o| o != from) {
                let msg = TcMessage::CallEvent {
                    dn: dn.into(),
                    conn_id: conn,
                    event,
                    requester: None,
                    ended,
                };
                self.send_tc(&owner, msg);
            }
            return;
        }
        let Some(state) = self.dns.get_mut(dn) else {
            return;
        };
        let cluster = state.cluster_mut();
        match ended {
            Some(_) => {
                cluster.remote_calls.remove(&conn);
            }
            None => {
                cluster.remote_calls.insert(
                    conn,
                    RemoteCall {
                        node: from.clone(),
                        last_event: event.clone(),
                        reachable: true,
                    },
                );
            }
        }
        if ended == Some(true) {
            self.start_acw(dn, now);
        }
        self.deliver_call_event(dn, event, requester);
        if ended.is_some() {
            self.consider_move(dn, now);
        }
        self.forget_if_idle(dn);
    }

    /// A call event to the DN's clients; the requester (if still here) gets its ReferenceID.
    fn deliver_call_event(
        &mut self,
        dn: &str,
        event: Message,
        requester: Option<(ClientId, Option<u32>)>,
    ) {
        match requester {
            Some((id, reference)) if self.clients.contains_key(&id) => {
                self.answer_and_broadcast(dn, id, reference, event)
            }
            _ => self.broadcast_dn(dn, event),
        }
    }

    /// R11 on the call's node: publish a call event. The owner's clients get it: here when this
    /// node owns the DN (or nobody does), over the TC layer otherwise; with the owner unreachable
    /// it is lost. `ended` says the call is over and whether it was answered (ACW at the owner).
    pub(crate) fn publish_call_event(
        &mut self,
        dn: &str,
        conn: ConnId,
        msg: Message,
        requester: Option<(ClientId, Option<u32>)>,
        ended: Option<bool>,
        now: Instant,
    ) {
        match self.owner_of(dn).filter(|o| !self.is_me(Some(o))) {
            Some(owner) => {
                // The requester is the owner's client when the request came from there.
                let relayed = requester.and_then(|(id, reference)| match self.clients.get(&id) {
                    Some(crate::core::Client {
                        origin: ClientOrigin::Relayed { node, client },
                        ..
                    }) if *node == owner => Some((*client, reference)),
                    _ => None,
                });
                if let (Some((id, reference)), None) = (requester, relayed) {
                    self.send(id, msg.clone().with_reference_id(reference));
                }
                let name = msg.name.as_str().to_string();
                let delivered = self.send_tc(
                    &owner,
                    TcMessage::CallEvent {
                        dn: dn.into(),
                        conn_id: conn,
                        event: msg,
                        requester: relayed,
                        ended,
                    },
                );
                if !delivered {
                    self.journal.record(
                        "call.event_lost",
                        json!({ "dn": dn, "conn_id": conn.to_string(), "event": name, "owner": &*owner, "rule": "R11" }),
                    );
                }
            }
            None => {
                if ended == Some(true) {
                    self.start_acw(dn, now);
                }
                self.deliver_call_event(dn, msg, requester);
                if ended.is_some() {
                    self.consider_move(dn, now);
                }
            }
        }
    }

    /// R11 at the owner: 3pcc for a call of the DN. Local calls are handled here; calls on
    /// another node are relayed there; a release for a call that cannot be reached clears it.
    pub(crate) fn call_control(
        &mut self,
        id: ClientId,
        reference: Option<u32>,
        request: &Request,
        now: Instant,
    ) -> Result<(), Refusal> {
        let (dn, conn) = match request {
            Request::AnswerCall { dn, conn_id }
            | Request::ReleaseCall { dn, conn_id }
            | Request::ClearCall { dn, conn_id }
            | Request::HoldCall { dn, conn_id }
            | Request::RetrieveCall { dn, conn_id } => (dn.as_str(), *conn_id),
            _ => return Err(Refusal::new(error_code::UNSUP_OPER, "not call control")),
        };
        if self.calls.contains_key(&conn) {
            return self.local_call_control(id, reference, request, now);
        }
        let remote = self
            .dns
            .get(dn)
            .and_then(|s| s.cluster.as_ref())
            .and_then(|c| c.remote_calls.get(&conn))
            .map(|rc| (rc.node.clone(), rc.last_event.clone()));
        let Some((node, last)) = remote else {
            return self.local_call_control(id, reference, request, now);
        };
        if self.link_up(&node) {
            self.send_tc(
                &node,
                TcMessage::CallControl {
                    client: id,
                    request: request.to_message(reference),
                },
            );
            return Ok(());
        }
        match request {
            Request::ReleaseCall { .. } | Request::ClearCall { .. } => {
                if let Some(c) = self.dns.get_mut(dn).and_then(|s| s.cluster.as_mut()) {
                    c.remote_calls.remove(&conn);
                }
                self.journal.record(
                    "call.cleared_locally",
                    json!({ "dn": dn, "conn_id": conn.to_string(), "unreachable": &*node, "rule": "R11" }),
                );
                let released = released_event(dn, conn, Some(&last));
                self.answer_and_broadcast(dn, id, reference, released);
                self.consider_move(dn, now);
                Ok(())
            }
            _ => Err(Refusal::new(
                error_code::NO_SWITCH,
                format!("call {conn} lives on {node}, which is unreachable"),
            )),
        }
    }

    /// 3pcc on a call that lives here.
    fn local_call_control(
        &mut self,
        id: ClientId,
        reference: Option<u32>,
        request: &Request,
        now: Instant,
    ) -> Result<(), Refusal> {
        match request {
            Request::AnswerCall { dn, conn_id } => self.answer_call(dn, *conn_id, now),
            Request::ReleaseCall { dn, conn_id } | Request::ClearCall { dn, conn_id } => {
                self.release_call(id, reference, dn, *conn_id, now)
            }
            Request::HoldCall { dn, conn_id } => {
                self.hold_call(id, reference, dn, *conn_id, true, now)
            }
            Request::RetrieveCall { dn, conn_id } => {
                self.hold_call(id, reference, dn, *conn_id, false, now)
            }
            _ => Err(Refusal::new(error_code::UNSUP_OPER, "not call control")),
        }
    }

    /// Call control the owner relayed to this, the call's node (R11).
    fn relayed_call_control(&mut self, id: ClientId, msg: &Message, now: Instant) {
        let (reference, request) = match Request::parse(msg) {
            Ok(parsed) => parsed,
            Err(e) => {
                self.send(id, e.to_event());
                return;
            }
        };
        if let Err(refusal) = self.local_call_control(id, reference, &request, now) {
            self.send(id, event::error(reference, refusal.code, refusal.text));
        }
    }

    /// An event for local client `client` from the node that owns (or relays) its DN. The
    /// registration bookkeeping follows the owner's answers.
    fn deliver_relayed_event(&mut self, client: ClientId, event: Message) {
        let dn = event.this_dn().map(str::to_string);
        if let Some(dn) = dn.as_deref() {
            match event.name {
                MessageName::EventRegistered if event.reference_id().is_none() => {
                    // The answer to our resync: tell the client the DN is back, not the answer.
                    if let Some(c) = self.dns.get_mut(dn).and_then(|s| s.cluster.as_mut()) {
                        c.owner_lost = false;
                    }
                    let in_service = event
                        .attrs
                        .extensions
                        .as_ref()
                        .and_then(|e| e.get("DNStatus"))
                        .is_some_and(|s| s == "InService");
                    if in_service {
                        self.send(client, event::dn_back_in_service(dn));
                    }
                    return;
                }
                MessageName::EventRegistered if self.clients.contains_key(&client) => {
                    self.dns
                        .entry(dn.into())
                        .or_default()
                        .clients
                        .insert(client);
                    if let Some(c) = self.clients.get_mut(&client) {
                        c.dns.insert(dn.into());
                    }
                    self.sync_move_request(dn);
                }
                MessageName::EventUnregistered => {
                    if let Some(state) = self.dns.get_mut(dn) {
                        state.clients.remove(&client);
                    }
                    if let Some(c) = self.clients.get_mut(&client) {
                        c.dns.remove(dn);
                    }
                    self.sync_move_request(dn);
                    self.forget_if_idle(dn);
                }
                MessageName::EventAgentLogin => {
                    if let Some(state) = self.dns.get_mut(dn) {
                        state.cluster_mut().relayed_agent = Some(event.attrs.agent_id.clone());
                    }
                }
                MessageName::EventAgentLogout => {
                    if let Some(c) = self.dns.get_mut(dn).and_then(|s| s.cluster.as_mut()) {
                        c.relayed_agent = None;
                    }
                }
                _ => {}
            }
        }
        self.send(client, event);
    }

    /// A TC link to `peer` came up (or replaced the previous connection): send it everything we
    /// own and every call here, so it can resynchronise.
    pub fn tc_link_up(&mut self, peer: &str, link_id: u64, tx: mpsc::Sender<TcMessage>) {
        if let Some(old) = self.links.get(peer).filter(|l| l.up).map(|l| l.link_id) {
            self.tc_link_down(peer, old, "replaced by a new connection");
        }
        self.links.insert(
            peer.to_string(),
            TcLink {
                up: true,
                link_id,
                since: Instant::now(),
                last_reason: None,
                tx: Some(tx),
            },
        );
        let link = tc::link_name(&self.node, peer);
        self.journal
            .record("link.up", json!({ "link": link, "peer": peer }));
        let me = self.node.clone();
        let owned: Vec<OwnedDn> = self
            .dns
            .iter()
            .filter(|(_, s)| s.owner.as_deref() == Some(&*me))
            .map(|(dn, s)| OwnedDn {
                dn: dn.to_string(),
                epoch: s.epoch,
                contact: None,
            })
            .collect();
        let mut parts: Vec<Vec<OwnedDn>> = owned
            .chunks(SNAPSHOT_DNS)
            .map(|c| {
                c.iter()
                    .map(|o| OwnedDn {
                        contact: self.local_contact(&o.dn),
                        ..o.clone()
                    })
                    .collect()
            })
            .collect();
        if parts.is_empty() {
            parts.push(Vec::new());
        }
        let last = parts.len() - 1;
        for (i, owned) in parts.into_iter().enumerate() {
            let done = i == last;
            self.send_tc(peer, TcMessage::OwnerSnapshot { owned, done });
        }
        let calls: Vec<CallReport> = self
            .calls
            .values()
            .filter(|c| c.reported)
            .map(|c| CallReport {
                dn: c.dn.to_string(),
                conn_id: c.conn_id,
                event: c.current_event(),
            })
            .collect();
        let mut parts: Vec<Vec<CallReport>> =
            calls.chunks(SNAPSHOT_CALLS).map(<[_]>::to_vec).collect();
        if parts.is_empty() {
            parts.push(Vec::new());
        }
        let last = parts.len() - 1;
        for (i, calls) in parts.into_iter().enumerate() {
            let done = i == last;
            self.send_tc(peer, TcMessage::CallsSnapshot { calls, done });
        }
    }

    /// The TC connection `link_id` to `peer` ended; stale connections (already replaced) are
    /// ignored. R10 on both sides of the lost link, R11 for the calls behind it.
    pub fn tc_link_down(&mut self, peer: &str, link_id: u64, reason: &str) {
        let Some(link) = self.links.get_mut(peer) else {
            return;
        };
        if link.link_id != link_id || !link.up {
            return;
        }
        link.up = false;
        link.tx = None;
        link.since = Instant::now();
        link.last_reason = Some(reason.to_string());
        let name = tc::link_name(&self.node, peer);
        self.journal.record(
            "link.down",
            json!({ "link": name, "peer": peer, "reason": reason }),
        );
        self.snapshot_rx.remove(peer);
        self.calls_snapshot_rx.remove(peer);
        // The peer's clients acting here are gone with the link (R4 for agents they logged in).
        let relayed: Vec<ClientId> = self
            .relayed_clients
            .iter()
            .filter(|((node, _), _)| &**node == peer)
            .map(|(_, id)| *id)
            .collect();
        for id in relayed {
            self.client_gone(id, "tc_link_lost");
        }
        let now = Instant::now();
        let affected: Vec<Box<str>> = self
            .dns
            .iter()
            .filter(|(_, s)| {
                s.owner.as_deref() == Some(peer)
                    || s.cluster.as_ref().is_some_and(|c| {
                        c.move_candidates.contains(peer)
                            || c.remote_calls.values().any(|rc| &*rc.node == peer)
                    })
            })
            .map(|(dn, _)| dn.clone())
            .collect();
        for dn in affected {
            if self.owner_of(&dn).as_deref() == Some(peer) {
                self.owner_unreachable(&dn, peer);
            } else if let Some(c) = self.dns.get_mut(&dn).and_then(|s| s.cluster.as_mut()) {
                c.move_candidates.remove(peer);
                for rc in c.remote_calls.values_mut() {
                    if &*rc.node == peer {
                        rc.reachable = false;
                    }
                }
                self.consider_move(&dn, now);
            }
        }
    }

    /// R10 at a non-owner: the DN's owner is unreachable. Local clients hear the DN is out of
    /// service and the agent logged out; requests for it are refused until the link heals.
    fn owner_unreachable(&mut self, dn: &str, owner: &str) {
        let Some(state) = self.dns.get_mut(dn) else {
            return;
        };
        let cluster = state.cluster_mut();
        cluster.move_requested = false;
        let agent = cluster.relayed_agent.take();
        let local: Vec<ClientId> = state
            .clients
            .iter()
            .copied()
            .filter(|id| !is_relayed(*id))
            .collect();
        if local.is_empty() {
            return;
        }
        state.cluster_mut().owner_lost = true;
        self.journal.record(
            "dn.owner_unreachable",
            json!({ "dn": dn, "owner": owner, "clients": local.len(), "rule": "R10" }),
        );
        for id in local {
            self.send(id, event::dn_out_of_service(dn));
            if let Some(agent_id) = &agent {
                self.send(id, event::agent_logout(None, dn, agent_id.as_deref()));
            }
        }
    }

    /// A call of the peer named by its calls snapshot: known again, and shown again if it was
    /// out of reach.
    fn remote_call_reported(&mut self, peer: &Arc<str>, report: CallReport) {
        if !self.owns(&report.dn) {
            return;
        }
        let Some(state) = self.dns.get_mut(report.dn.as_str()) else {
            return;
        };
        let previous = state.cluster_mut().remote_calls.insert(
            report.conn_id,
            RemoteCall {
                node: peer.clone(),
                last_event: report.event.clone(),
                reachable: true,
            },
        );
        if previous.is_none_or(|p| !p.reachable) {
            self.broadcast_dn(&report.dn, report.event);
        }
    }

    /// The peer's calls snapshot is complete: its calls we knew and it did not name ended
    /// while the link was down.
    fn calls_snapshot_done(&mut self, peer: &Arc<str>, now: Instant) {
        let named: HashSet<ConnId> = self.calls_snapshot_rx.remove(&**peer).unwrap_or_default();
        let mut gone: Vec<(Box<str>, ConnId, Message)> = Vec::new();
        for (dn, state) in self.dns.iter_mut() {
            let Some(c) = state.cluster.as_mut() else {
                continue;
            };
            let ended: Vec<ConnId> = c
                .remote_calls
                .iter()
                .filter(|(conn, rc)| rc.node == *peer && !named.contains(conn))
                .map(|(conn, _)| *conn)
                .collect();
            for conn in ended {
                if let Some(rc) = c.remote_calls.remove(&conn) {
                    gone.push((dn.clone(), conn, rc.last_event));
                }
            }
        }
        for (dn, conn, last) in gone {
            self.journal.record(
                "call.released_while_unreachable",
                json!({ "dn": &*dn, "conn_id": conn.to_string(), "node": &**peer, "rule": "R11" }),
            );
            self.broadcast_dn(&dn, released_event(&dn, conn, Some(&last)));
            self.consider_move(&dn, now);
        }
    }
}
