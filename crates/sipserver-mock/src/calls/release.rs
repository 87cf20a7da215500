//! The end of a call: hanging up either leg (BYE once answered, CANCEL while ringing) and
//! releasing the call from the node's state with its last T-Event.

use bytes::Bytes;
use serde_json::json;
use tlib::{event, CallState, ConnId};
use tokio::time::Instant;

use super::{via_line, Outcome, Side};
use crate::agent::ClientId;
use crate::call::{CallPhase, Origin, OutKind};
use crate::core::NodeCore;

impl NodeCore {
    /// Ends the phone's leg: BYE if answered, CANCEL if still ringing.
    pub(super) fn hang_up_b(&mut self, conn: ConnId, now: Instant) {
        let Some(call) = self.calls.get_mut(&conn) else {
            return;
        };
        if !call.b.answered {
            return self.cancel_b(conn, now);
        }
        if call.origin == Origin::MakeCall && call.answered_at.is_none() {
            // The phone's 2xx still waits for its ACK (the destination never answered).
            let invite_branch = call.b.invite_branch.clone();
            self.ack_phone(conn, &invite_branch, &sipcore::branch(), None);
        }
        if let Some(call) = self.calls.get_mut(&conn) {
            call.phase = CallPhase::Releasing;
        }
        self.send_in_dialog(conn, Side::B, "BYE", OutKind::ByeB, "", now);
    }

    /// Ends the far party's leg: BYE once answered; for a `RequestMakeCall` destination still
    /// ringing, CANCEL.
    pub(super) fn hang_up_a(&mut self, conn: ConnId, now: Instant) {
        let addr = self.config.sip_addr();
        let Some(call) = self.calls.get_mut(&conn) else {
            return;
        };
        if call.answered_at.is_none() {
            if let (Origin::MakeCall, Some((invite_branch, invite_uri))) =
                (call.origin, call.a.invite.clone())
            {
                call.phase = CallPhase::Releasing;
                let via = via_line(addr, call.a.source.transport, &invite_branch);
                // Same Request-URI and To as the INVITE (RFC 3261 §9.1), whatever 18x said.
                let to = format!("<{invite_uri}>");
                let cancel =
                    cancel_request(&invite_uri, &via, &call.a.local_to, &to, &call.a.call_id);
                let dest = call.a.source;
                let key = format!("{invite_branch}-cancel");
                self.send_out(conn, OutKind::CancelA, key, cancel, dest, now);
            }
            return;
        }
        call.phase = CallPhase::Releasing;
        self.send_in_dialog(conn, Side::A, "BYE", OutKind::ByeA, "", now);
    }

    /// CANCEL of our INVITE to the phone (same branch and CSeq number, RFC 3261 §9.1).
    pub(super) fn cancel_b(&mut self, conn: ConnId, now: Instant) {
        let Some(call) = self.calls.get_mut(&conn) else {
            return;
        };
        call.phase = CallPhase::Releasing;
        let via = via_line(
            self.config.sip_addr(),
            call.b.dest.transport,
            &call.b.invite_branch,
        );
        let cancel = cancel_request(
            &call.b.request_uri,
            &via,
            &call.b.local_from,
            &call.b.remote_to_base,
            &call.b.call_id,
        );
        let dest = call.b.dest;
        // CANCEL gets its own transaction: key it apart from the INVITE's branch.
        let key = format!("{}-cancel", call.b.invite_branch);
        self.send_out(conn, OutKind::CancelB, key, cancel, dest, now);
    }

    /// The call is over for the desktop: ACW (R7) before EventReleased, state cleared.
    pub(crate) fn release(
        &mut self,
        conn: ConnId,
        outcome: Outcome,
        requester: Option<(ClientId, Option<u32>)>,
        now: Instant,
    ) {
        self.release_for(conn, outcome, requester, false, now)
    }

    /// [`Self::release`], the requester's answer on the calling DN's side of an internal call
    /// when `by_calling_party`.
    pub(super) fn release_for(
        &mut self,
        conn: ConnId,
        outcome: Outcome,
        requester: Option<(ClientId, Option<u32>)>,
        by_calling_party: bool,
        now: Instant,
    ) {
        let Some(call) = self.calls.remove(conn) else {
            return;
        };
        let (requester, calling_requester) = if by_calling_party {
            (None, requester)
        } else {
            (requester, None)
        };
        self.metrics.calls_active.set(self.calls.len() as i64);
        self.metrics.call_outcome(outcome.as_str());
        let dn = call.dn.clone();
        for party in call.parties() {
            self.dns.remove_call(party, conn);
        }
        self.journal.record(
            "call.released",
            json!({ "conn_id": conn.to_string(), "dn": &*dn, "outcome": outcome.as_str(), "duration_ms": now.saturating_duration_since(call.started).as_millis() as u64 }),
        );
        // The owner starts ACW (R7) before it reports the release.
        let answered = call.answered_at.is_some();
        if call.reported {
            let released = event::released(None, &call.info(Some(CallState::Ok)));
            self.publish_call_event(&dn, conn, released, requester, Some(answered), now);
        } else {
            if answered {
                self.start_acw(&dn, now);
            }
            // The call no longer keeps the DN at its owner (R8).
            self.consider_move(&dn, now);
        }
        if let Some(caller) = call.calling_dn.as_deref() {
            let released = event::released(None, &call.info_for(caller, Some(CallState::Ok)));
            let requester = calling_requester;
            self.publish_call_event(caller, conn, released, requester, Some(answered), now);
            self.forget_if_idle(caller);
        }
        self.forget_if_idle(&dn);
    }
}

/// A CANCEL of one of our INVITEs (`via` carries the INVITE's branch).
fn cancel_request(uri: &str, via: &str, from: &str, to: &str, call_id: &str) -> Bytes {
    Bytes::from(format!(
        "CANCEL {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    ))
}
