//! The TC links as the ownership map sees them: frames in, ownership records, the snapshots
//! exchanged on every link-up, split-brain resolution, and R10 when a link is lost.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;
use tlib::{event, ConnId, Message};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::agent::ClientId;
use crate::core::{NodeCore, TcLink};
use crate::tc::{self, CallReport, OwnedDn, PhoneContact, TcMessage};

use super::relay::released_event;
use super::{is_relayed, out_of_service_event, precedence, OutOfServiceReason, RemoteCall};

/// DNs per ownership-snapshot frame and calls per calls-snapshot frame (frames stay far below
/// the 1 MiB limit).
const SNAPSHOT_DNS: usize = 2_000;
const SNAPSHOT_CALLS: usize = 200;

impl NodeCore {
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
        let state = self.dns.entry(dn);
        let current = precedence(state.epoch, state.owner.as_deref());
        let incoming = precedence(epoch, owner.as_deref());
        self.epoch_clock = self.epoch_clock.max(epoch);
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
                let kind = self.plan.lookup(dn).map(|i| i.kind);
                if kind.is_some_and(|k| self.in_service(dn, k)) {
                    self.service_event(dn, true, "handover");
                }
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
                contact: self.local_contact(dn),
            })
            .collect();
        self.send_in_parts(peer, owned, SNAPSHOT_DNS, |owned, done| {
            TcMessage::OwnerSnapshot { owned, done }
        });
        let calls: Vec<CallReport> = self
            .calls
            .values()
            .flat_map(|c| {
                c.parties()
                    .filter(|dn| c.reported || c.is_calling_party(dn))
                    .map(|dn| CallReport {
                        dn: dn.to_string(),
                        conn_id: c.conn_id,
                        event: c.current_event(dn),
                    })
            })
            .collect();
        self.send_in_parts(peer, calls, SNAPSHOT_CALLS, |calls, done| {
            TcMessage::CallsSnapshot { calls, done }
        });
    }

    /// Sends `items` to `peer` in frames of at most `size` (at least one frame, even for none),
    /// the last one marked done.
    fn send_in_parts<T>(
        &mut self,
        peer: &str,
        items: Vec<T>,
        size: usize,
        frame: impl Fn(Vec<T>, bool) -> TcMessage,
    ) {
        let mut items = items.into_iter().peekable();
        loop {
            let part: Vec<T> = items.by_ref().take(size).collect();
            let done = items.peek().is_none();
            self.send_tc(peer, frame(part, done));
            if done {
                return;
            }
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
            self.send(
                id,
                out_of_service_event(dn, OutOfServiceReason::OwnerUnreachable),
            );
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
