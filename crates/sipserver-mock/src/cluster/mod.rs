//! The SIP Cluster over the TC layer (docs/scenarios.md R1–R3, R8–R12): the replicated DN ownership
//! map, remote registration (R2), ownership moves (R8, R9), the loss of a DN's owner (R10), the
//! relay of call events and control between a call's node and its DN's owner (`relay.rs`), and
//! the resynchronisation after a heal.
//!
//! Ownership records carry an epoch (a Lamport clock per node: past every epoch it has seen). The node that takes, releases or hands over a DN bumps it
//! and tells every peer; every node keeps the record that ranks highest by (epoch, a claim over
//! a release, the lower node name). That is a total order, so after a split brain every node
//! settles on the same owner, and both sides of the conflict say so in their journals.

//! Files: this one holds the ownership map itself; `moves.rs` the R8 moves; `relay.rs` what
//! travels for clients (R2; R11 lives there); `sync.rs` the links, their snapshots and R10.

mod moves;
mod relay;
mod sync;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use tlib::{event, ConnId, Message, Request};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::agent::ClientId;
use crate::core::{NodeCore, RELAYED_CLIENT_BASE};
use crate::dn::DnKind;
use crate::tc::{PhoneContact, TcMessage};

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
    /// The DN's calls on other nodes that this node can reach now.
    pub fn reachable_remote_calls(&self) -> impl Iterator<Item = &RemoteCall> {
        self.remote_calls.values().filter(|rc| rc.reachable)
    }

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

/// Why a node reports a DN out of service: `OutOfServiceReason` in the Extensions of
/// `EventDNOutOfService`, so a GWS node can tell R13's two cases apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutOfServiceReason {
    /// The owner itself took the DN out of service: the registration expired or was removed
    /// (R12), or ownership moved away (R8). The agent is logged out for good.
    OwnerOutOfService,
    /// This node lost its TC link to the owner (R10); the DN may well be in service there.
    OwnerUnreachable,
}

impl OutOfServiceReason {
    pub fn as_str(self) -> &'static str {
        match self {
            OutOfServiceReason::OwnerOutOfService => "OwnerOutOfService",
            OutOfServiceReason::OwnerUnreachable => "OwnerUnreachable",
        }
    }
}

/// `EventDNOutOfService` saying why (R13).
pub fn out_of_service_event(dn: &str, reason: OutOfServiceReason) -> Message {
    let mut msg = event::dn_out_of_service(dn);
    let mut ext = tlib::KvList::new();
    ext.insert("OutOfServiceReason".into(), json!(reason.as_str()));
    msg.attrs.extensions = Some(ext);
    msg
}

/// How ownership records rank: highest epoch, then a claim over a release, then the lower name.
pub(super) fn precedence(epoch: u64, owner: Option<&str>) -> (u64, bool, Reverse<&str>) {
    (epoch, owner.is_some(), Reverse(owner.unwrap_or("")))
}

pub(crate) fn is_relayed(id: ClientId) -> bool {
    id >= RELAYED_CLIENT_BASE
}

impl NodeCore {
    pub(super) fn is_me(&self, node: Option<&str>) -> bool {
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

    pub(super) fn broadcast_tc(&mut self, msg: TcMessage) {
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
    pub(super) fn local_contact(&self, dn: &str) -> Option<PhoneContact> {
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
    pub(super) fn has_controlling_registration(&self, dn: &str) -> bool {
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
        let state = self.dns.entry(dn);
        // Past every epoch this node has seen, so a DN whose record it forgot (idle DNs are
        // dropped) still gets a record that outranks what other nodes remember.
        state.epoch = state.epoch.max(self.epoch_clock) + 1;
        let epoch = state.epoch;
        self.epoch_clock = epoch;
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
        // Past every epoch this node has seen, so a DN whose record it forgot (idle DNs are
        // dropped) still gets a record that outranks what other nodes remember.
        state.epoch = state.epoch.max(self.epoch_clock) + 1;
        let epoch = state.epoch;
        self.epoch_clock = epoch;
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
    pub(super) fn change_owner(&mut self, dn: &str, new: Option<Arc<str>>) {
        let me = self.node.clone();
        let state = self.dns.entry(dn);
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
            let mut move_dropped = false;
            if let Some(c) = state.cluster.as_mut() {
                c.remote_calls.clear();
                c.move_candidates.clear();
                move_dropped = c.move_pending.take().is_some();
            }
            if move_dropped {
                self.journal.record(
                    "ownership.move_cancelled",
                    json!({ "dn": dn, "reason": "this node no longer owns the DN", "rule": "R8" }),
                );
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
    pub(super) fn resync_registrations(&mut self, dn: &str) {
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
            self.last_registration_gone(dn, "sip_unregistered", now);
        } else {
            self.sync_move_request(dn);
        }
        self.forget_if_idle(dn);
    }

    /// Journals a DN going in or out of service here (the owner) and tells its clients.
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
            let msg = out_of_service_event(dn, OutOfServiceReason::OwnerOutOfService);
            self.broadcast_dn(dn, msg);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
