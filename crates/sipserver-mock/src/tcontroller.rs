//! The T-Controller side of the core: T-Lib clients, DN registrations and agent requests
//! (docs/scenarios.md R1, R3, R4; docs/protocols.md §2).

use std::net::SocketAddr;

use serde_json::json;
use tlib::{
    error_code, event, AddressInfoType, AgentWorkMode, KvList, Message, MessageError, Request,
    ServerRole,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::agent::{self, AgentStatus, ClientId, Refusal};
use crate::cluster::{is_relayed, out_of_service_event, OutOfServiceReason};
use crate::core::{Client, ClientOrigin, NodeCore};
use crate::dn::DnKind;

impl NodeCore {
    /// A T-Lib connection was accepted.
    pub fn client_up(&mut self, id: ClientId, peer: SocketAddr, tx: mpsc::Sender<Message>) {
        self.clients.insert(
            id,
            Client {
                origin: ClientOrigin::Local { peer, tx },
                application: None,
                dns: Default::default(),
            },
        );
        self.metrics.clients.set(self.local_clients() as i64);
        self.journal.record(
            "tlib.client_connected",
            json!({ "client": id, "peer": peer.to_string() }),
        );
    }

    /// A T-Lib connection ended (EOF, RST, ADDP timeout, stuck): R4 for every DN it registered.
    pub fn client_gone(&mut self, id: ClientId, reason: &str) {
        let Some(client) = self.clients.remove(&id) else {
            return;
        };
        let peer = match &client.origin {
            ClientOrigin::Local { peer, .. } => {
                self.metrics.clients.set(self.local_clients() as i64);
                peer.to_string()
            }
            ClientOrigin::Relayed { node, client } => {
                self.relayed_clients.remove(&(node.clone(), *client));
                format!("{node}#{client}")
            }
        };
        self.journal.record(
            "tlib.client_disconnected",
            json!({ "client": id, "peer": peer, "application": client.application, "reason": reason }),
        );
        let cause = if reason == "tc_link_lost" {
            "tc_link_lost"
        } else {
            "client_disconnected"
        };
        for dn in client.dns {
            // Disconnect is an implicit unregister (as T-Server treats it).
            self.unregister_dn(id, &dn, cause);
        }
        // Peers drop what this client did through them (R4 at the owners of its remote DNs).
        self.tell_peers_client_gone(id);
    }

    fn local_clients(&self) -> usize {
        self.clients.keys().filter(|id| !is_relayed(**id)).count()
    }

    /// One decoded frame from client `id`.
    pub fn client_message(&mut self, id: ClientId, msg: Result<Message, MessageError>) {
        self.client_request_or_error(id, msg, 0, Instant::now())
    }

    /// A request of client `id`, local or relayed by a peer (`hops` nodes so far).
    pub(crate) fn client_request(&mut self, id: ClientId, msg: Message, hops: u8, now: Instant) {
        self.client_request_or_error(id, Ok(msg), hops, now)
    }

    fn client_request_or_error(
        &mut self,
        id: ClientId,
        msg: Result<Message, MessageError>,
        hops: u8,
        now: Instant,
    ) {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                self.metrics.tlib_errors.inc();
                let reply = event::error(e.reference_id(), error_code::INVALID_ATTR, e.to_string());
                self.send(id, reply);
                return;
            }
        };
        self.metrics.tlib_requests.inc();
        match Request::parse(&msg) {
            Ok((reference, request)) => {
                if !self.forward_if_remote(id, reference, &request, &msg, hops) {
                    self.handle_request(id, reference, request, now)
                }
            }
            Err(e) => {
                self.metrics.tlib_errors.inc();
                self.journal.record(
                    "tlib.rejected",
                    json!({ "client": id, "message": msg.name.as_str(), "error": e.message }),
                );
                self.send(id, e.to_event());
            }
        }
    }

    fn handle_request(
        &mut self,
        id: ClientId,
        reference: Option<u32>,
        request: Request,
        now: Instant,
    ) {
        let result = match request {
            Request::RegisterClient {
                application_name, ..
            } => {
                if let Some(c) = self.clients.get_mut(&id) {
                    c.application = Some(application_name.clone());
                }
                self.journal.record(
                    "tlib.client_registered",
                    json!({ "client": id, "application": application_name }),
                );
                let info = self.server_info(reference);
                self.send(id, info);
                self.send(id, event::link_connected());
                Ok(())
            }
            Request::QueryServer => {
                let info = self.server_info(reference);
                self.send(id, info);
                Ok(())
            }
            Request::RegisterAddress { dn, .. } => self.register_address(id, reference, &dn, now),
            Request::UnregisterAddress { dn } => self.unregister_address(id, reference, &dn, now),
            Request::QueryAddress { dn, info_type } => {
                self.query_address(id, reference, &dn, info_type)
            }
            Request::AgentLogin {
                dn,
                agent_id,
                work_mode,
                extensions,
                ..
            } => self.agent_login(id, reference, &dn, agent_id, work_mode, extensions.as_ref()),
            Request::AgentLogout { dn, extensions, .. } => {
                self.agent_logout(id, reference, &dn, extensions.as_ref())
            }
            Request::MakeCall {
                dn, destination, ..
            } => self
                .registered_by(id, &dn)
                .and_then(|_| self.make_call(id, reference, &dn, &destination, now)),
            Request::AnswerCall { ref dn, .. }
            | Request::ReleaseCall { ref dn, .. }
            | Request::ClearCall { ref dn, .. }
            | Request::HoldCall { ref dn, .. }
            | Request::RetrieveCall { ref dn, .. } => self
                .registered_by(id, dn)
                .and_then(|_| self.call_control(id, reference, &request, now)),
            Request::AttachUserData { ref dn, .. }
            | Request::UpdateUserData { ref dn, .. }
            | Request::DeleteUserData { ref dn, .. }
            | Request::SendDtmf { ref dn, .. } => self
                .registered_by(id, dn)
                .and_then(|_| self.call_data_request(id, reference, &request, now)),
            Request::AgentReady { dn, .. } => {
                self.agent_status(id, reference, &dn, AgentStatus::Ready)
            }
            Request::AgentNotReady {
                dn,
                work_mode,
                reasons,
                ..
            } => {
                let work_mode = match work_mode {
                    None | Some(AgentWorkMode::Unknown) => AgentWorkMode::AuxWork,
                    Some(other) => other,
                };
                self.agent_status(
                    id,
                    reference,
                    &dn,
                    AgentStatus::NotReady { work_mode, reasons },
                )
            }
        };
        if let Err(refusal) = result {
            self.metrics.tlib_errors.inc();
            self.journal.record(
                "tlib.error",
                json!({ "client": id, "code": refusal.code, "text": refusal.text }),
            );
            self.send(id, event::error(reference, refusal.code, refusal.text));
        }
    }

    fn server_info(&self, reference: Option<u32>) -> Message {
        event::server_info(reference, &self.node, &self.config.dc, ServerRole::Primary)
    }

    /// Login and logout wait for the end of the call and of ACW (R5, see `agent.rs`).
    fn login_allowed(&self, dn: &str, extensions: Option<&KvList>) -> Result<(), Refusal> {
        let allowed = self.config.options.agent_emu_login_on_call;
        if agent::emu_login_on_call(extensions, allowed) {
            return Ok(());
        }
        self.busy_for_login(dn).map_or(Ok(()), Err)
    }

    /// Whether the DN has a call or its agent is in ACW (R5; R8 waits for the same).
    pub(crate) fn busy_for_login(&self, dn: &str) -> Option<Refusal> {
        let state = self.dns.get(dn)?;
        agent::busy_for_login(state.call_in_progress(), state.agent.as_deref())
    }

    /// The DN must be configured; returns its kind.
    fn configured(&self, dn: &str) -> Result<DnKind, Refusal> {
        self.plan.lookup(dn).map(|i| i.kind).ok_or_else(|| {
            Refusal::new(
                error_code::NOT_CONFIGURED,
                format!("DN {dn} is not configured"),
            )
        })
    }

    /// The client must have registered the DN.
    fn registered_by(&self, id: ClientId, dn: &str) -> Result<(), Refusal> {
        match self.dns.get(dn) {
            Some(state) if state.clients.contains(&id) => Ok(()),
            _ => Err(Refusal::new(
                error_code::NOT_REGISTERED,
                format!("DN {dn} is not registered by this client"),
            )),
        }
    }

    fn register_address(
        &mut self,
        id: ClientId,
        reference: Option<u32>,
        dn: &str,
        now: Instant,
    ) -> Result<(), Refusal> {
        let kind = self.configured(dn)?;
        let node = self.node.clone();
        let state = self.dns.entry(dn);
        let first_client = state.clients.is_empty();
        state.clients.insert(id);
        // R1 for PSTN DNs: the T-Lib registration makes this node the owner of an unowned DN.
        // R3: at the owner it moves nothing.
        let took_ownership = kind == DnKind::Pstn && state.owner.is_none();
        if let Some(client) = self.clients.get_mut(&id) {
            client.dns.insert(dn.into());
        }
        self.journal
            .record("tlib.registered", json!({ "client": id, "dn": dn }));
        if took_ownership {
            self.take_ownership(dn, "tlib_register");
        }
        // A new registration at the owner cancels a pending move (R8).
        self.consider_move(dn, now);
        let mut reply = event::registered(reference, dn);
        reply.attrs.extensions = Some(self.dn_status(dn, kind));
        self.send(id, reply);
        // R6: a desktop that (re)registers sees the call in progress and can control it.
        self.report_calls(id, dn);
        if kind == DnKind::Pstn && (took_ownership || first_client) {
            self.journal.record(
                "dn.in_service",
                json!({ "dn": dn, "owner": &*node, "cause": "tlib_register" }),
            );
            self.broadcast_dn(dn, event::dn_back_in_service(dn));
        } else if !self.in_service(dn, kind) {
            let reason = OutOfServiceReason::OwnerOutOfService;
            self.send(id, out_of_service_event(dn, reason));
        }
        Ok(())
    }

    fn unregister_address(
        &mut self,
        id: ClientId,
        reference: Option<u32>,
        dn: &str,
        now: Instant,
    ) -> Result<(), Refusal> {
        self.configured(dn)?;
        self.registered_by(id, dn)?;
        if let Some(client) = self.clients.get_mut(&id) {
            client.dns.remove(dn);
        }
        self.send(id, event::unregistered(reference, dn));
        self.unregister_dn(id, dn, "unregister");
        self.consider_move(dn, now);
        Ok(())
    }

    /// Client `id` no longer registers `dn` (request or disconnect): R4, then PSTN service.
    pub(crate) fn unregister_dn(&mut self, id: ClientId, dn: &str, cause: &str) {
        let Some(state) = self.dns.get_mut(dn) else {
            return;
        };
        state.clients.remove(&id);
        self.journal.record(
            "tlib.unregistered",
            json!({ "client": id, "dn": dn, "cause": cause }),
        );
        let logs_out = self.config.options.logout_on_disconnect
            && state.agent.as_ref().is_some_and(|a| a.login_client == id);
        if logs_out {
            self.logout_agent(dn, cause, "R4");
        }
        let kind = self.plan.lookup(dn).map(|i| i.kind);
        let last_gone = self.dns.get(dn).is_some_and(|s| s.clients.is_empty());
        if kind == Some(DnKind::Pstn) && last_gone && self.owns(dn) {
            // The last desktop registration is gone: a PSTN DN goes out of service. Its
            // ownership lapses, or moves to a node that asked for it (R8), but only once the DN
            // has no call and no ACW.
            self.journal.record(
                "dn.out_of_service",
                json!({ "dn": dn, "cause": "no_tlib_registration" }),
            );
            self.last_registration_gone(dn, "no_tlib_registration", Instant::now());
        }
        self.sync_move_request(dn);
        self.forget_if_idle(dn);
    }

    /// The DN's status as carried in `EventRegistered` / `EventAddressInfo` Extensions.
    fn dn_status(&self, dn: &str, kind: DnKind) -> KvList {
        let state = self.dns.get(dn);
        let agent = state.and_then(|s| s.agent.as_deref());
        let mut ext = KvList::new();
        ext.insert(
            "DNStatus".into(),
            json!(if self.in_service(dn, kind) {
                "InService"
            } else {
                "OutOfService"
            }),
        );
        ext.insert(
            "Owner".into(),
            json!(state.and_then(|s| s.owner.as_deref())),
        );
        ext.insert("DNType".into(), json!(kind));
        let agent_status = match agent.map(|a| &a.status) {
            None => json!("LoggedOut"),
            Some(AgentStatus::Ready) => json!("Ready"),
            Some(AgentStatus::NotReady { .. }) => json!("NotReady"),
        };
        ext.insert("AgentStatus".into(), agent_status);
        if let Some(a) = agent {
            ext.insert("AgentID".into(), json!(a.agent_id));
            if let AgentStatus::NotReady { work_mode, .. } = &a.status {
                ext.insert("AgentWorkMode".into(), json!(work_mode.as_str()));
            }
        }
        ext
    }

    fn query_address(
        &mut self,
        id: ClientId,
        reference: Option<u32>,
        dn: &str,
        info_type: AddressInfoType,
    ) -> Result<(), Refusal> {
        let kind = self.configured(dn)?;
        let status = self.dn_status(dn, kind);
        self.send(
            id,
            event::address_info(reference, dn, info_type, Some(status)),
        );
        Ok(())
    }

    fn agent_login(
        &mut self,
        id: ClientId,
        reference: Option<u32>,
        dn: &str,
        agent_id: Option<String>,
        work_mode: AgentWorkMode,
        extensions: Option<&KvList>,
    ) -> Result<(), Refusal> {
        let kind = self.configured(dn)?;
        self.registered_by(id, dn)?;
        self.login_allowed(dn, extensions)?;
        if !self.in_service(dn, kind) {
            return Err(Refusal::new(
                error_code::OUT_OF_SERVICE,
                format!("DN {dn} is out of service"),
            ));
        }
        let state = self.dns.entry(dn);
        let agent = agent::login(state.agent.as_deref(), id, agent_id, work_mode)?;
        let agent_id = agent.agent_id.clone();
        let status = agent.status.clone();
        state.agent = Some(Box::new(agent));
        self.metrics.agent_logins.inc();
        self.journal.record(
            "agent.login",
            json!({ "dn": dn, "agent": agent_id, "client": id }),
        );
        let login = event::agent_login(None, dn, agent_id.as_deref(), Some(work_mode));
        self.answer_and_broadcast(dn, id, reference, login);
        self.broadcast_dn(dn, status_event(dn, agent_id.as_deref(), &status));
        Ok(())
    }

    fn agent_logout(
        &mut self,
        id: ClientId,
        reference: Option<u32>,
        dn: &str,
        extensions: Option<&KvList>,
    ) -> Result<(), Refusal> {
        self.configured(dn)?;
        self.registered_by(id, dn)?;
        self.login_allowed(dn, extensions)?;
        let state = self.dns.entry(dn);
        agent::logout(state.agent.as_deref())?;
        let agent_id = state.agent.take().and_then(|a| a.agent_id);
        self.metrics.agent_logouts.inc();
        self.journal.record(
            "agent.logout",
            json!({ "dn": dn, "agent": agent_id, "cause": "request" }),
        );
        self.answer_and_broadcast(
            dn,
            id,
            reference,
            event::agent_logout(None, dn, agent_id.as_deref()),
        );
        Ok(())
    }

    fn agent_status(
        &mut self,
        id: ClientId,
        reference: Option<u32>,
        dn: &str,
        status: AgentStatus,
    ) -> Result<(), Refusal> {
        self.configured(dn)?;
        self.registered_by(id, dn)?;
        let state = self.dns.entry(dn);
        let agent = agent::set_status(state.agent.as_deref(), status)?;
        let agent_id = agent.agent_id.clone();
        let event = status_event(dn, agent_id.as_deref(), &agent.status);
        self.journal.record(
            "agent.state",
            json!({ "dn": dn, "agent": agent_id, "status": &agent.status }),
        );
        state.agent = Some(Box::new(agent));
        self.answer_and_broadcast(dn, id, reference, event);
        Ok(())
    }
}

/// `EventAgentReady` or `EventAgentNotReady` for a status.
fn status_event(dn: &str, agent_id: Option<&str>, status: &AgentStatus) -> Message {
    match status {
        AgentStatus::Ready => event::agent_ready(None, dn, agent_id, None),
        AgentStatus::NotReady { work_mode, reasons } => {
            event::agent_not_ready(None, dn, agent_id, Some(*work_mode), reasons.clone())
        }
    }
}
