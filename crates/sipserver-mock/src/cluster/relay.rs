//! What travels for clients: requests of clients at non-owner nodes (R2), and the events and
//! control of calls that live on another node than the DN's owner.
//!
//! This is where R11 lives: a call belongs to the node whose SIP port received its INVITE (its
//! ConnID is that node's, see `calls/mod.rs`). Its events go to the DN's owner over the TC layer
//! ([`NodeCore::publish_call_event`]), which hands them to its clients and keeps the call's latest
//! event; call control from the owner's clients is relayed to the call's node
//! ([`NodeCore::call_control`]). With the TC link down the events are lost and control is refused,
//! except a release, which clears the call from the desktop so nothing is left stuck. After a heal
//! the calls snapshot (`sync.rs`) brings the owner up to date.

use std::sync::Arc;

use serde_json::json;
use tlib::{error_code, event, ConnId, Message, MessageName, Request};
use tokio::time::Instant;

use crate::agent::{ClientId, Refusal};
use crate::core::{ClientOrigin, NodeCore};
use crate::tc::{RemoteClient, TcMessage};

use super::{out_of_service_event, OutOfServiceReason, RemoteCall};

/// A relayed request passes through at most this many nodes (views that disagree for a moment
/// must not bounce a request forever).
const MAX_HOPS: u8 = 3;
/// `EventReleased` for a call known only by its latest event (or by DN and ConnID).
pub(super) fn released_event(dn: &str, conn: ConnId, last: Option<&Message>) -> Message {
    match last {
        Some(m) => Message::with_attrs(MessageName::EventReleased, m.attrs.clone()),
        None => Message::new(MessageName::EventReleased).with(|a| {
            a.this_dn = Some(dn.to_string());
            a.conn_id = Some(conn);
        }),
    }
}

impl NodeCore {
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
        let Some(dn) = request.dn() else {
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
                if matches!(request, Request::RegisterAddress { .. }) {
                    // R2: the registration is the owner's; this node only relays it.
                    self.journal.record(
                        "tlib.register_forwarded",
                        json!({ "client": id, "dn": dn, "owner": &*owner, "rule": "R2" }),
                    );
                }
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
        let local_calls = self
            .dns
            .get(dn.as_str())
            .is_some_and(|s| !s.calls.is_empty());
        match request {
            // R10: the calls that live here stay under this node's control (S3.9).
            Request::RegisterAddress { .. } if local_calls => {
                self.register_for_local_calls(id, reference, &dn, &owner);
            }
            Request::AnswerCall { conn_id, .. }
            | Request::ReleaseCall { conn_id, .. }
            | Request::ClearCall { conn_id, .. }
            | Request::HoldCall { conn_id, .. }
            | Request::RetrieveCall { conn_id, .. }
                if self.calls.contains(conn_id) =>
            {
                return false;
            }
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
                let released = self.cleared_locally(&dn, *conn_id, &owner, None);
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

    /// R10: a registration of `dn` while its owner is unreachable, accepted because calls of
    /// the DN live here: the client gets them (R6) and controls them, while the DN stays out of
    /// service for agent state (a login is refused). On heal the registration goes to the owner
    /// like any other (`owner_lost`).
    fn register_for_local_calls(
        &mut self,
        id: ClientId,
        reference: Option<u32>,
        dn: &str,
        owner: &str,
    ) {
        let state = self.dns.entry(dn);
        state.clients.insert(id);
        state.cluster_mut().owner_lost = true;
        if let Some(client) = self.clients.get_mut(&id) {
            client.dns.insert(dn.into());
        }
        self.journal.record(
            "tlib.registered",
            json!({ "client": id, "dn": dn, "owner_unreachable": owner, "rule": "R10" }),
        );
        let mut reply = event::registered(reference, dn);
        let mut ext = tlib::KvList::new();
        ext.insert("DNStatus".into(), json!("OutOfService"));
        ext.insert("Owner".into(), json!(owner));
        reply.attrs.extensions = Some(ext);
        self.send(id, reply);
        self.report_calls(id, dn);
        let reason = OutOfServiceReason::OwnerUnreachable;
        self.send(id, out_of_service_event(dn, reason));
    }

    /// Peers drop whatever client `id` did through them.
    pub(crate) fn tell_peers_client_gone(&mut self, id: ClientId) {
        if self.links.values().any(|l| l.up) {
            self.broadcast_tc(TcMessage::ClientGone { client: id });
        }
    }

    /// The local (or relayed) client `id` of a peer's node: its number here.
    pub(super) fn relayed_client(&mut self, node: &Arc<str>, client: RemoteClient) -> ClientId {
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

    /// R11 at the owner: an event of a call on another node, for this DN's clients.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn remote_call_event(
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
    pub(super) fn deliver_call_event(
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
                let local_requester = requester.filter(|_| relayed.is_none());
                let delivered = self.send_tc(
                    &owner,
                    TcMessage::CallEvent {
                        dn: dn.into(),
                        conn_id: conn,
                        event: msg.clone(),
                        requester: relayed,
                        ended,
                    },
                );
                if delivered {
                    if let Some((id, reference)) = local_requester {
                        self.send(id, msg.with_reference_id(reference));
                    }
                } else {
                    self.journal.record(
                        "call.event_lost",
                        json!({ "dn": dn, "conn_id": conn.to_string(), "event": msg.name.as_str(), "owner": &*owner, "rule": "R11" }),
                    );
                    // R10: clients that registered the DN here still see the calls that live
                    // here (they are the only ones that can).
                    self.deliver_call_event(dn, msg, local_requester);
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
        if self.calls.contains(&conn) {
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
                let released = self.cleared_locally(dn, conn, &node, Some(&last));
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

    /// R11: a release for a call on `unreachable` clears it from the desktop rather than leave
    /// it stuck; journals that and returns the `EventReleased` to send.
    fn cleared_locally(
        &self,
        dn: &str,
        conn: ConnId,
        unreachable: &str,
        last: Option<&Message>,
    ) -> Message {
        self.journal.record(
            "call.cleared_locally",
            json!({ "dn": dn, "conn_id": conn.to_string(), "unreachable": unreachable, "rule": "R11" }),
        );
        released_event(dn, conn, last)
    }

    /// Call control the owner relayed to this, the call's node (R11).
    pub(super) fn relayed_call_control(&mut self, id: ClientId, msg: &Message, now: Instant) {
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
    pub(super) fn deliver_relayed_event(&mut self, client: ClientId, event: Message) {
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
                    self.dns.entry(dn).clients.insert(client);
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
}
