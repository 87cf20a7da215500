//! The node's own requests on a call's legs (INVITE, ACK, CANCEL, BYE, NOTIFY, the audit's
//! OPTIONS) as RFC 3261 client transactions: retransmitted on Timers A/E until answered, given
//! up on Timers B/F; our 2xx to the caller resent until its ACK; responses matched by branch.

use std::time::Duration;

use bytes::Bytes;
use rsip::prelude::*;
use sipcore::client_transaction::{Tick, TxClock};
use sipcore::fields;
use sipcore::transport::{Source, TransportKind};
use tlib::ConnId;
use tokio::time::Instant;

use super::{via_line, Outcome, Side};
use crate::call::{Call, Origin, OutKind, OutRequest};
use crate::core::{NodeCore, TimerJob};

impl NodeCore {
    /// An initial INVITE from the node, with the SDP offer if there is one.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn invite_bytes(
        &self,
        request_uri: &str,
        from: &str,
        to: &str,
        call_id: &str,
        branch: &str,
        dest: Source,
        uuid: &str,
        sdp: Option<&[u8]>,
    ) -> Bytes {
        let mut invite = format!(
            "INVITE {request_uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: {contact}\r\nX-Genesys-CallUUID: {uuid}\r\nAllow: INVITE, ACK, BYE, CANCEL, OPTIONS, NOTIFY, UPDATE\r\nSupported: timer\r\n",
            via = self.via(dest.transport, branch),
            contact = self.contact(),
        );
        with_body(&mut invite, sdp)
    }

    /// Our INVITE to the phone of `call` (its B leg).
    pub(super) fn invite_phone(&self, call: &Call, sdp: Option<&[u8]>) -> Bytes {
        let b = &call.b;
        self.invite_bytes(
            &b.request_uri,
            &b.local_from,
            &b.remote_to_base,
            &b.call_id,
            &b.invite_branch,
            b.dest,
            &call.uuid,
            sdp,
        )
    }

    /// ACKs the phone's final answer to our INVITE (with the SDP answer when the phone made the
    /// offer) and keeps the ACK for its retransmissions.
    pub(super) fn ack_phone(
        &mut self,
        conn_id: ConnId,
        invite_branch: &str,
        ack_branch: &str,
        sdp: Option<&[u8]>,
    ) {
        let addr = self.config.sip_addr();
        let Some(call) = self.calls.get_mut(&conn_id) else {
            return;
        };
        let via = via_line(addr, call.b.dest.transport, ack_branch);
        let ack = match sdp {
            Some(body) if !body.is_empty() => call.b_ack_with_sdp(&via, body),
            _ => Bytes::from(call.b_request("ACK", &via, Some(1), "")),
        };
        let dest = call.b.dest;
        if let Some(out) = self.out_requests.get_mut(invite_branch) {
            out.ack = Some(ack.clone());
        }
        self.outbox.push((dest, ack));
    }

    /// Sends a request of a call and keeps it for retransmission until answered.
    pub(super) fn send_out(
        &mut self,
        conn_id: ConnId,
        kind: OutKind,
        branch: String,
        bytes: Bytes,
        dest: Source,
        now: Instant,
    ) {
        let t = self.config.sip_timers;
        let deadline = now + t.t1_x64();
        let reliable = dest.transport.is_reliable();
        let (clock, wake) = TxClock::start(&t, reliable, kind.is_invite(), now);
        self.outbox.push((dest, bytes.clone()));
        if wake < deadline {
            let branch = branch.clone();
            self.schedule(wake, TimerJob::Retransmit { branch });
        }
        self.schedule(
            deadline,
            TimerJob::ExpireOut {
                branch: branch.clone(),
            },
        );
        self.out_requests.insert(
            branch,
            OutRequest {
                conn_id,
                kind,
                bytes,
                dest,
                clock,
                answered: false,
                ack: None,
            },
        );
    }

    /// Retransmits an unanswered request (Timers A and E).
    pub(crate) fn retransmit(&mut self, branch: &str, now: Instant) {
        let t = self.config.sip_timers;
        let Some(out) = self.out_requests.get_mut(branch) else {
            return;
        };
        if out.answered {
            return;
        }
        // Wakes come at the instants the clock gave, so it never says Wait here; the ExpireOut
        // job ends the transaction.
        if let Tick::Resend(next) = out.clock.on_timer(&t, now) {
            self.outbox.push((out.dest, out.bytes.clone()));
            self.metrics.sip_retransmissions_sent.inc();
            let branch = branch.to_string();
            self.schedule(next, TimerJob::Retransmit { branch });
        }
    }

    /// Timer B / F: an unanswered request gave up.
    pub(crate) fn expire_out(&mut self, branch: &str, now: Instant) {
        let Some(out) = self.out_requests.remove(branch) else {
            return;
        };
        if out.answered {
            return;
        }
        if out.kind == OutKind::Invite {
            if let Some(call) = self
                .calls
                .get(&out.conn_id)
                .filter(|c| c.origin == Origin::Inbound)
            {
                let resp = call.a_response(408, "Request Timeout", &self.contact(), None);
                let (key, source) = (call.a.tx_key.clone(), call.a.source);
                self.send_a_final(key, source, resp, now);
            }
            self.release(out.conn_id, Outcome::Timeout, None, now);
        }
        if out.kind == OutKind::InviteA {
            // The destination never answered: hang up the phone that is waiting.
            self.hang_up_b(out.conn_id, now);
            self.release(out.conn_id, Outcome::Timeout, None, now);
        }
        if matches!(out.kind, OutKind::AuditA | OutKind::AuditB) {
            self.leg_lost(out.conn_id, out.kind, now);
        }
    }

    /// Resends our 2xx to the caller until its ACK arrives (RFC 3261 §13.3.1.4).
    pub(crate) fn resend_2xx(&mut self, conn_id: ConnId, interval: Duration, now: Instant) {
        let t = self.config.sip_timers;
        let Some(call) = self.calls.get(&conn_id) else {
            return;
        };
        if call.a.acked || call.a.source.transport == TransportKind::Tcp {
            return;
        }
        if let Some(resp) = call.a.last_response.clone() {
            if call.answered_at.is_some_and(|at| now < at + t.t1 * 64) {
                self.outbox.push((call.a.source, resp));
                let next = (interval * 2).min(t.t2);
                self.schedule(
                    now + next,
                    TimerJob::Resend2xx {
                        conn_id,
                        interval: next,
                    },
                );
            }
        }
    }

    /// A response to one of our requests.
    pub(crate) fn on_response(&mut self, resp: rsip::Response, now: Instant) {
        let Ok(via) = fields::top_via(&resp) else {
            self.metrics.sip_dropped.inc();
            return;
        };
        let Some(branch) = via.branch.map(str::to_string) else {
            return;
        };
        let code = resp.status_code.code();
        let Some(out) = self.out_requests.get_mut(&branch) else {
            self.metrics.sip_dropped.inc();
            return;
        };
        let (conn_id, kind, dest) = (out.conn_id, out.kind, out.dest);
        if kind.is_invite() && code >= 200 {
            if let Some(ack) = out.ack.clone() {
                // A retransmitted final: our ACK was lost.
                self.outbox.push((dest, ack));
                return;
            }
        }
        if code >= 200 || kind.is_invite() {
            out.answered = true;
        } else {
            // A non-INVITE request resends at T2 once a provisional came (RFC 3261 §17.1.2.2).
            out.clock.on_provisional(&self.config.sip_timers);
        }
        match kind {
            OutKind::Invite => self.on_invite_response(&branch, conn_id, &resp, code, now),
            OutKind::InviteA => self.on_destination_response(&branch, conn_id, &resp, code, now),
            OutKind::AuditA | OutKind::AuditB if matches!(code, 408 | 481) => {
                // The endpoint no longer knows the dialog: the call is dead on that side.
                self.leg_lost(conn_id, kind, now);
            }
            OutKind::ByeA
            | OutKind::ByeB
            | OutKind::CancelA
            | OutKind::CancelB
            | OutKind::Notify
            | OutKind::AuditA
            | OutKind::AuditB => {}
        }
    }

    /// A 2xx from a phone for a call that no longer exists: ACK it, then BYE it.
    pub(super) fn ack_and_bye_orphan(&mut self, branch: &str, resp: &rsip::Response) {
        let Some(out) = self.out_requests.get_mut(branch) else {
            return;
        };
        let dest = out.dest;
        let (Ok(from), Ok(to), Ok(call_id)) =
            (resp.from_header(), resp.to_header(), fields::call_id(resp))
        else {
            return;
        };
        let target = fields::contact_uri(resp)
            .ok()
            .flatten()
            .map(|u| u.to_string())
            .unwrap_or_default();
        let addr = self.config.sip_addr();
        let mk = |method: &str, cseq: u32| {
            Bytes::from(format!(
                "{method} {target} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
                via_line(addr, dest.transport, &sipcore::branch()),
                from.value(),
                to.value(),
            ))
        };
        let ack = mk("ACK", 1);
        out.ack = Some(ack.clone());
        self.outbox.push((dest, ack));
        self.outbox.push((dest, mk("BYE", 2)));
    }

    /// Sends an in-dialog request on one leg of a call, as a new transaction retransmitted until
    /// answered.
    pub(super) fn send_in_dialog(
        &mut self,
        conn: ConnId,
        side: Side,
        method: &str,
        kind: OutKind,
        extra: &str,
        now: Instant,
    ) {
        let addr = self.config.sip_addr();
        let Some(call) = self.calls.get_mut(&conn) else {
            return;
        };
        let branch = sipcore::branch();
        let (text, dest) = match side {
            Side::A => {
                let via = via_line(addr, call.a.source.transport, &branch);
                (call.a_request(method, &via, None, extra), call.a.source)
            }
            Side::B => {
                let via = via_line(addr, call.b.dest.transport, &branch);
                (call.b_request(method, &via, None, extra), call.b.dest)
            }
        };
        self.send_out(conn, kind, branch, Bytes::from(text), dest, now);
    }
}

/// Appends the body (with its Content-Type and Content-Length) to a request's header text.
fn with_body(head: &mut String, body: Option<&[u8]>) -> Bytes {
    match body {
        Some(b) => {
            head.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n",
                b.len()
            ));
            let mut bytes = std::mem::take(head).into_bytes();
            bytes.extend_from_slice(b);
            Bytes::from(bytes)
        }
        None => {
            head.push_str("Content-Length: 0\r\n\r\n");
            Bytes::from(std::mem::take(head))
        }
    }
}
