//! T-Lib call control (3pcc) on a call that lives on this node: `RequestAnswerCall`,
//! `RequestHoldCall`, `RequestRetrieveCall`, `RequestReleaseCall` / `RequestClearCall`. Whether a
//! request is for a call here or is relayed to the call's node is decided in `cluster/relay.rs`;
//! `RequestMakeCall` is `third_party.rs`.

use serde_json::json;
use tlib::{error_code, event, CallState, ConnId, MessageName, Request};
use tokio::time::Instant;

use super::{Outcome, Side};
use crate::agent::{ClientId, Refusal};
use crate::call::{CallPhase, OutKind};
use crate::core::NodeCore;

impl NodeCore {
    /// 3pcc on a call that lives here, from a client of this node or relayed by the DN's owner.
    pub(crate) fn local_call_control(
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

    /// A call whose phone leg belongs to `dn` (answer and hold NOTIFY the called phone, so the
    /// calling DN of an internal call cannot ask for them).
    fn phone_call_of(&self, dn: &str, conn: ConnId) -> Result<ConnId, Refusal> {
        let conn = self.call_of(dn, conn)?;
        if self
            .calls
            .get(&conn)
            .is_some_and(|c| c.is_calling_party(dn))
        {
            return Err(Refusal::new(
                error_code::CTL_INV_CALL_STATE,
                format!("DN {dn} is the calling party of call {conn}: only release is supported"),
            ));
        }
        Ok(conn)
    }

    /// The DN's call with `conn` (3pcc requests must name a call of the DN).
    fn call_of(&self, dn: &str, conn: ConnId) -> Result<ConnId, Refusal> {
        if self.dns.has_call(dn, conn) && self.calls.contains(&conn) {
            Ok(conn)
        } else {
            Err(Refusal::new(
                error_code::INV_CONNID,
                format!("No call {conn} on DN {dn}"),
            ))
        }
    }

    /// RequestAnswerCall: NOTIFY `Event: talk` to the ringing phone, which then answers.
    fn answer_call(&mut self, dn: &str, conn: ConnId, now: Instant) -> Result<(), Refusal> {
        let conn = self.phone_call_of(dn, conn)?;
        let phase = self.calls.get(&conn).map(|c| c.phase);
        if phase != Some(CallPhase::Ringing) {
            return Err(Refusal::new(
                error_code::CTL_INV_CALL_STATE,
                "The call is not ringing",
            ));
        }
        self.notify_phone(conn, "talk", now);
        Ok(())
    }

    /// RequestReleaseCall: BYE both legs (or CANCEL/487 while ringing).
    fn release_call(
        &mut self,
        client: ClientId,
        reference: Option<u32>,
        dn: &str,
        conn: ConnId,
        now: Instant,
    ) -> Result<(), Refusal> {
        let conn = self.call_of(dn, conn)?;
        let answered = self.calls.get(&conn).is_some_and(|c| c.b.answered);
        if answered {
            self.hang_up_a(conn, now);
            self.hang_up_b(conn, now);
        } else if let Some(call) = self.calls.get(&conn) {
            let terminated = call.a_response(487, "Request Terminated", &self.contact(), None);
            let (key, source) = (call.a.tx_key.clone(), call.a.source);
            self.send_a_final(key, source, terminated, now);
            self.cancel_b(conn, now);
        }
        let by_calling_party = self
            .calls
            .get(&conn)
            .is_some_and(|c| c.is_calling_party(dn));
        let requester = Some((client, reference));
        self.release_for(
            conn,
            Outcome::Released3pcc,
            requester,
            by_calling_party,
            now,
        );
        Ok(())
    }

    /// RequestHoldCall / RequestRetrieveCall: NOTIFY `Event: hold` / `Event: talk` to the phone.
    fn hold_call(
        &mut self,
        client: ClientId,
        reference: Option<u32>,
        dn: &str,
        conn: ConnId,
        hold: bool,
        now: Instant,
    ) -> Result<(), Refusal> {
        let conn = self.phone_call_of(dn, conn)?;
        let phase = self.calls.get(&conn).map(|c| c.phase);
        let (from, to, event_name, name) = if hold {
            (
                CallPhase::Established,
                CallPhase::Held,
                "hold",
                MessageName::EventHeld,
            )
        } else {
            (
                CallPhase::Held,
                CallPhase::Established,
                "talk",
                MessageName::EventRetrieved,
            )
        };
        if phase != Some(from) {
            return Err(Refusal::new(
                error_code::CTL_INV_CALL_STATE,
                format!(
                    "The call is not {}",
                    if hold { "established" } else { "held" }
                ),
            ));
        }
        self.notify_phone(conn, event_name, now);
        let Some(call) = self.calls.get_mut(&conn) else {
            return Ok(());
        };
        call.phase = to;
        let msg = event::call_event(name, None, &call.info(Some(CallState::Ok)));
        self.journal.record(
            if hold { "call.held" } else { "call.retrieved" },
            json!({ "conn_id": conn.to_string(), "dn": dn }),
        );
        self.publish_call_event(dn, conn, msg, Some((client, reference)), None, now);
        Ok(())
    }

    fn notify_phone(&mut self, conn: ConnId, event_name: &str, now: Instant) {
        let extra = format!("Event: {event_name}\r\nSubscription-State: active\r\n");
        self.send_in_dialog(conn, Side::B, "NOTIFY", OutKind::Notify, &extra, now);
    }
}
