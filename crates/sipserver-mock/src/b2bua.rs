//! Calls: the node as a back-to-back UA between a caller and an agent's phone (scenarios.md R5–R7,
//! R11 on one node; docs/protocols.md §4.2–§4.3). SDP passes through unchanged, so media flows
//! directly between the endpoints; the node only keeps the two dialogs and reports T-Events.

use std::time::Duration;

use bytes::Bytes;
use rsip::prelude::*;
use serde_json::json;
use sipcore::builder::status;
use sipcore::transport::{Source, TransportKind};
use sipcore::{fields, response_for, TxKey};
use tlib::{event, AgentWorkMode, CallState, CallType, ConnId, KvList, MessageName};
use tokio::time::Instant;

use crate::agent::{AgentStatus, ClientId, Refusal};
use crate::call::{sdp_is_valid, ALeg, BLeg, Call, CallPhase, Origin, OutKind, OutRequest};
use crate::core::{NodeCore, TimerJob};
use crate::dn::DnKind;

/// Which leg of a call a dialog is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// Why a call ended, for the journal and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Cancelled,
    Rejected,
    Timeout,
    Released3pcc,
    /// The session audit found a leg gone.
    LegLost,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Cancelled => "cancelled",
            Outcome::Rejected => "rejected",
            Outcome::Timeout => "timeout",
            Outcome::Released3pcc => "released_by_desktop",
            Outcome::LegLost => "leg_lost",
        }
    }
}

impl NodeCore {
    fn via(&self, transport: TransportKind, branch: &str) -> String {
        via_line(self.config.sip_addr(), transport, branch)
    }

    /// Where a number is reached: a softphone DN at its registered Contact, a PSTN DN at the
    /// gateway with its external number, any other number at the gateway.
    fn reach(&self, number: &str) -> Result<(String, Source), String> {
        let info = self.plan.lookup(number);
        match info.as_ref().map(|i| i.kind) {
            Some(DnKind::Softphone) => {
                match (self.registrar.binding(number), self.remote_contact(number)) {
                    (Some(b), _) => {
                        let uri = b
                            .contact
                            .trim_start_matches('<')
                            .trim_end_matches('>')
                            .to_string();
                        let tcp = b.transport == crate::registrar::SipTransport::Tcp;
                        let dest = contact_destination(&uri, b.source, tcp);
                        Ok((uri, dest))
                    }
                    // Registered at another node: the owner's record says where the phone is.
                    (None, Some(c)) => {
                        Ok((c.uri.clone(), contact_destination(&c.uri, c.source, false)))
                    }
                    (None, None) => Err(format!("DN {number} has no registered phone")),
                }
            }
            _ => {
                let Some(gw) = self.config.pstn_gateway else {
                    return Err(format!("no PSTN gateway configured to reach {number}"));
                };
                let external = info
                    .and_then(|i| i.external)
                    .unwrap_or_else(|| number.to_string());
                Ok((format!("sip:{external}@{gw}"), Source::udp(gw)))
            }
        }
    }

    /// An initial INVITE from the node, with the SDP offer if there is one.
    #[allow(clippy::too_many_arguments)]
    fn invite_bytes(
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

    /// ACKs the phone's final answer to our INVITE (with the SDP answer when the phone made the
    /// offer) and keeps the ACK for its retransmissions.
    fn ack_phone(
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

    fn contact(&self) -> String {
        format!("<sip:{}@{}>", self.node, self.config.sip_addr())
    }

    /// A new initial INVITE (no To tag) or a re-INVITE in an existing dialog.
    pub(crate) fn on_invite(
        &mut self,
        req: &rsip::Request,
        source: Source,
        key: &TxKey,
        now: Instant,
    ) -> Option<rsip::Response> {
        let call_id = match fields::call_id(req) {
            Ok(c) => c.to_string(),
            Err(e) => return Some(warned_response(req, 400, &e.reason())),
        };
        if let Some(&(conn, side)) = self.dialogs.get(&call_id) {
            // A re-INVITE (session refresh, hold from the endpoint): answer it locally with the
            // session description the other side gave, so the call is not disturbed.
            return Some(self.reinvite_answer(req, conn, side));
        }
        if matches!(fields::to_tag(req), Ok(Some(_))) {
            return Some(response_for(req, status(481)));
        }
        let (Ok((cseq, _)), Ok(_)) = (fields::cseq(req), req.from_header()) else {
            return Some(warned_response(req, 400, "missing or invalid CSeq or From"));
        };
        let body = req.body();
        let has_sdp = !body.is_empty();
        if has_sdp && !sdp_is_valid(body) {
            return Some(warned_response(req, 400, "malformed SDP"));
        }
        let dn = match req.uri.auth.as_ref().map(|a| a.user.clone()) {
            Some(user) if !user.is_empty() => user,
            _ => match fields::dn_from_to_uri(req) {
                Ok(dn) => dn,
                Err(e) => return Some(warned_response(req, 400, &e.reason())),
            },
        };
        let Some(info) = self.plan.lookup(&dn) else {
            self.metrics.call_outcome("not_found");
            return Some(response_for(req, status(404)));
        };
        let (request_uri, dest) = match self.reach(&dn) {
            Ok(target) => target,
            Err(reason) => {
                self.metrics.call_outcome("unavailable");
                return Some(warned_response(req, 480, &reason));
            }
        };
        let ani = fields::from_user(req).unwrap_or_default();
        let remote_target = fields::contact_uri(req)
            .ok()
            .flatten()
            .map(|u| u.to_string())
            .unwrap_or_else(|| req.uri.to_string());
        let mut response_headers = String::new();
        for h in req.headers.iter() {
            if matches!(
                h,
                rsip::Header::Via(_)
                    | rsip::Header::From(_)
                    | rsip::Header::CallId(_)
                    | rsip::Header::CSeq(_)
            ) {
                response_headers.push_str(&h.to_string());
                response_headers.push_str("\r\n");
            }
        }
        let to_value = req
            .to_header()
            .map(|t| t.value().to_string())
            .unwrap_or_default();
        let remote_from = req
            .from_header()
            .map(|f| f.value().to_string())
            .unwrap_or_default();
        self.next_call += 1;
        let conn_id = ConnId(self.conn_id_base | self.next_call);
        let uuid = new_call_uuid();
        let b_branch = sipcore::branch();
        let b_call_id = sipcore::ids::call_id();
        let local_from = format!(
            "<sip:{ani}@{}>;tag={}",
            self.config.sip_addr().ip(),
            sipcore::tag()
        );
        let mut call = Call {
            conn_id,
            uuid,
            dn: dn.as_str().into(),
            ani: ani.clone(),
            dnis: dn.clone(),
            call_type: CallType::Inbound,
            origin: Origin::Inbound,
            phase: CallPhase::Offering,
            a: ALeg {
                call_id: call_id.clone(),
                source,
                response_headers,
                local_to: format!("{to_value};tag={}", sipcore::tag()),
                remote_from,
                remote_target,
                invite_cseq: cseq,
                next_cseq: 1,
                last_response: None,
                acked: false,
                tx_key: Some(key.clone()),
                sdp: body.to_vec(),
                invite: None,
            },
            b: BLeg {
                call_id: b_call_id.clone(),
                local_from,
                remote_to_base: String::new(),
                remote_to: None,
                request_uri: request_uri.clone(),
                remote_target: None,
                dest,
                invite_branch: b_branch.clone(),
                next_cseq: 2,
                answered: false,
                sdp: Vec::new(),
            },
            started: now,
            answered_at: None,
            reported: false,
        };
        // 100 Trying at once, so the caller stops retransmitting while the phone is reached.
        let trying = call.a_response(100, "Trying", &self.contact(), None);
        self.answer_tx(key, source, trying, now);
        let to_phone = match info.kind {
            DnKind::Softphone => format!("<sip:{dn}@{}>", self.config.sip_addr().ip()),
            DnKind::Pstn => format!("<{request_uri}>"),
        };
        let sdp = if has_sdp { Some(body.as_slice()) } else { None };
        let bytes = self.invite_bytes(
            &request_uri,
            &call.b.local_from,
            &to_phone,
            &b_call_id,
            &b_branch,
            dest,
            &call.uuid,
            sdp,
        );
        // The To we put in the INVITE; the phone's tag is appended when it answers.
        call.b.remote_to_base = to_phone;
        self.dialogs.insert(call_id, (conn_id, Side::A));
        self.dialogs.insert(b_call_id, (conn_id, Side::B));
        self.dns
            .entry(dn.as_str().into())
            .or_default()
            .calls
            .push(conn_id);
        self.journal.record(
            "call.offered",
            json!({ "conn_id": conn_id.to_string(), "dn": dn, "ani": ani, "uuid": call.uuid }),
        );
        self.calls.insert(conn_id, call);
        self.metrics.calls_active.set(self.calls.len() as i64);
        self.send_out(conn_id, OutKind::Invite, b_branch, bytes, dest, now);
        None
    }

    /// Sends a request of a call and keeps it for retransmission until answered.
    fn send_out(
        &mut self,
        conn_id: ConnId,
        kind: OutKind,
        branch: String,
        bytes: Bytes,
        dest: Source,
        now: Instant,
    ) {
        let t = self.config.sip_timers;
        let deadline = now + t.t1 * 64;
        self.outbox.push((dest, bytes.clone()));
        if dest.transport == TransportKind::Udp {
            self.schedule(
                now + t.t1,
                TimerJob::Retransmit {
                    branch: branch.clone(),
                },
            );
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
                interval: t.t1,
                deadline,
                answered: false,
                ack: None,
            },
        );
    }

    /// Retransmits an unanswered request (Timers A and E), doubling the interval.
    pub(crate) fn retransmit(&mut self, branch: &str, now: Instant) {
        let t2 = self.config.sip_timers.t2;
        let Some(out) = self.out_requests.get_mut(branch) else {
            return;
        };
        if out.answered || now >= out.deadline {
            return;
        }
        self.outbox.push((out.dest, out.bytes.clone()));
        self.metrics.sip_retransmissions_sent.inc();
        out.interval = if out.kind == OutKind::Invite {
            out.interval * 2
        } else {
            (out.interval * 2).min(t2)
        };
        let next = now + out.interval;
        self.schedule(
            next,
            TimerJob::Retransmit {
                branch: branch.to_string(),
            },
        );
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

    /// Session audit (the node's stand-in for RFC 4028 session timers): every
    /// `call_audit_interval` an in-dialog OPTIONS goes to both legs of an answered call; a leg
    /// that stops answering (Timer F) or answers 408/481 is gone, and the call is released —
    /// so a call whose phone vanished does not stay up forever (scenario S4.1).
    pub(crate) fn audit_call(&mut self, conn_id: ConnId, now: Instant) {
        let interval = self.config.call_audit_interval;
        let up = self
            .calls
            .get(&conn_id)
            .is_some_and(|c| matches!(c.phase, CallPhase::Established | CallPhase::Held));
        if !up {
            return;
        }
        self.send_in_dialog(conn_id, Side::A, "OPTIONS", OutKind::AuditA, "", now);
        self.send_in_dialog(conn_id, Side::B, "OPTIONS", OutKind::AuditB, "", now);
        self.schedule(now + interval, TimerJob::Audit { conn_id });
    }

    /// One leg of a call is gone: hang up the other one and release the call.
    fn leg_lost(&mut self, conn_id: ConnId, kind: OutKind, now: Instant) {
        if !self.calls.contains_key(&conn_id) {
            return;
        }
        let side = if kind == OutKind::AuditA {
            "caller"
        } else {
            "phone"
        };
        self.journal.record(
            "call.leg_lost",
            json!({ "conn_id": conn_id.to_string(), "side": side }),
        );
        if kind == OutKind::AuditA {
            self.hang_up_b(conn_id, now);
        } else {
            self.hang_up_a(conn_id, now);
        }
        self.release(conn_id, Outcome::LegLost, None, now);
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

    /// A retransmitted INVITE whose transaction already ended with a 2xx: resend the 2xx.
    pub(crate) fn resend_invite_response(&mut self, req: &rsip::Request, source: Source) {
        let Ok(call_id) = fields::call_id(req) else {
            return;
        };
        if let Some(&(conn, Side::A)) = self.dialogs.get(call_id) {
            if let Some(resp) = self
                .calls
                .get(&conn)
                .and_then(|c| c.a.last_response.clone())
            {
                self.outbox.push((source, resp));
            }
        }
    }

    fn send_a_final(&mut self, key: Option<TxKey>, source: Source, resp: Bytes, now: Instant) {
        match key {
            Some(key) => self.answer_tx(&key, source, resp, now),
            None => self.outbox.push((source, resp)),
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
        if matches!(kind, OutKind::Invite | OutKind::InviteA) && code >= 200 {
            if let Some(ack) = out.ack.clone() {
                // A retransmitted final: our ACK was lost.
                self.outbox.push((dest, ack));
                return;
            }
        }
        if code >= 200 || matches!(kind, OutKind::Invite | OutKind::InviteA) {
            out.answered = true;
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

    fn on_invite_response(
        &mut self,
        branch: &str,
        conn_id: ConnId,
        resp: &rsip::Response,
        code: u16,
        now: Instant,
    ) {
        let contact = self.contact();
        let Some(call) = self.calls.get_mut(&conn_id) else {
            // The call is gone (cancelled) but the phone answered: ACK and hang up.
            if (200..300).contains(&code) {
                self.ack_and_bye_orphan(branch, resp);
            }
            return;
        };
        let to = resp.to_header().map(|t| t.value().to_string()).ok();
        if to.as_deref().is_some_and(|t| t.contains("tag=")) {
            call.b.remote_to = to;
        }
        if let Ok(Some(uri)) = fields::contact_uri(resp) {
            call.b.remote_target = Some(uri.to_string());
        }
        match code {
            100 => {}
            101..=199 if call.origin == Origin::MakeCall => {}
            101..=199 => {
                if call.phase == CallPhase::Offering {
                    call.phase = CallPhase::Ringing;
                    call.reported = true;
                    let ringing = call.a_response(180, "Ringing", &contact, None);
                    let (key, source, dn, info) = (
                        call.a.tx_key.clone(),
                        call.a.source,
                        call.dn.clone(),
                        call.info(Some(CallState::Ok)),
                    );
                    if let Some(key) = key {
                        self.answer_tx(&key, source, ringing, now);
                    }
                    self.journal.record(
                        "call.ringing",
                        json!({ "conn_id": conn_id.to_string(), "dn": &*dn }),
                    );
                    self.publish_call_event(
                        &dn,
                        conn_id,
                        event::ringing(None, &info),
                        None,
                        None,
                        now,
                    );
                }
            }
            200..=299 if call.origin == Origin::MakeCall => {
                // Flow I: the phone's offer goes to the destination; the phone's ACK waits for
                // the destination's answer (retransmitted 2xx are ignored until then).
                if call.b.answered {
                    return;
                }
                call.b.answered = true;
                call.b.sdp = resp.body().to_vec();
                if call.phase == CallPhase::Releasing {
                    self.hang_up_b(conn_id, now);
                } else {
                    self.invite_destination(conn_id, now);
                }
            }
            200..=299 => {
                // ACK for 2xx is a new transaction (new branch).
                self.ack_phone(conn_id, branch, &sipcore::branch(), None);
                let Some(call) = self.calls.get_mut(&conn_id) else {
                    return;
                };
                if call.b.answered {
                    return;
                }
                call.b.answered = true;
                call.b.sdp = resp.body().to_vec();
                if call.phase == CallPhase::Releasing {
                    self.hang_up_b(conn_id, now);
                    return;
                }
                let sdp = if resp.body().is_empty() {
                    None
                } else {
                    Some(resp.body().as_slice())
                };
                let ok = call.a_response(200, "OK", &contact, sdp);
                call.a.last_response = Some(ok.clone());
                let (key, source) = (call.a.tx_key.take(), call.a.source);
                if let Some(key) = key {
                    self.answer_tx(&key, source, ok, now);
                }
                if source.transport == TransportKind::Udp {
                    let t1 = self.config.sip_timers.t1;
                    self.schedule(
                        now + t1,
                        TimerJob::Resend2xx {
                            conn_id,
                            interval: t1,
                        },
                    );
                }
                self.call_established(conn_id, now);
            }
            _ => {
                // The phone refused (busy, declined, gone) or answered our CANCEL with 487:
                // ACK it in its transaction, tell the caller, end the call.
                // ACK for a non-2xx final belongs to the INVITE's transaction (same branch).
                self.ack_phone(conn_id, branch, branch, None);
                let Some(call) = self.calls.get(&conn_id) else {
                    return;
                };
                if call.origin == Origin::MakeCall {
                    self.release(conn_id, Outcome::Rejected, None, now);
                } else if call.phase != CallPhase::Releasing {
                    let reason = resp.status_code.to_string();
                    let text = reason
                        .split_once(' ')
                        .map(|(_, r)| r.to_string())
                        .unwrap_or_default();
                    let final_resp = call.a_response(code, &text, &contact, None);
                    let (key, source) = (call.a.tx_key.clone(), call.a.source);
                    self.send_a_final(key, source, final_resp, now);
                    self.release(conn_id, Outcome::Rejected, None, now);
                }
            }
        }
    }

    /// The call is up: both parties answered. Reports it and starts the session audit.
    fn call_established(&mut self, conn_id: ConnId, now: Instant) {
        let Some(call) = self.calls.get_mut(&conn_id) else {
            return;
        };
        call.phase = CallPhase::Established;
        call.answered_at = Some(now);
        call.reported = true;
        let (dn, info) = (call.dn.clone(), call.info(Some(CallState::Ok)));
        self.metrics.calls_answered.inc();
        if !self.config.call_audit_interval.is_zero() {
            let at = now + self.config.call_audit_interval;
            self.schedule(at, TimerJob::Audit { conn_id });
        }
        self.journal.record(
            "call.established",
            json!({ "conn_id": conn_id.to_string(), "dn": &*dn }),
        );
        let mut established = event::established(None, &info);
        established.attrs.extensions = Some(self.wrap_up_extensions());
        self.publish_call_event(&dn, conn_id, established, None, None, now);
    }

    /// `RequestMakeCall` (RFC 3725 flow I): INVITE the agent's phone without an offer; when it
    /// answers, its offer goes to the destination.
    pub(crate) fn make_call(
        &mut self,
        client: ClientId,
        reference: Option<u32>,
        dn: &str,
        destination: &str,
        now: Instant,
    ) -> Result<(), Refusal> {
        let (phone_uri, phone) = self
            .reach(dn)
            .map_err(|e| Refusal::new(tlib::error_code::OUT_OF_SERVICE, e))?;
        let (dest_uri, dest) = self
            .reach(destination)
            .map_err(|e| Refusal::new(tlib::error_code::INV_CALD_DN, e))?;
        let internal = self.plan.lookup(destination).is_some();
        self.next_call += 1;
        let conn_id = ConnId(self.conn_id_base | self.next_call);
        let uuid = new_call_uuid();
        let ip = self.config.sip_addr().ip();
        let (a_call_id, b_call_id, b_branch) = (
            sipcore::ids::call_id(),
            sipcore::ids::call_id(),
            sipcore::branch(),
        );
        let call = Call {
            conn_id,
            uuid,
            dn: dn.into(),
            ani: dn.to_string(),
            dnis: destination.to_string(),
            call_type: if internal {
                CallType::Internal
            } else {
                CallType::Outbound
            },
            origin: Origin::MakeCall,
            phase: CallPhase::Offering,
            a: ALeg {
                call_id: a_call_id.clone(),
                source: dest,
                response_headers: String::new(),
                local_to: format!("<sip:{dn}@{ip}>;tag={}", sipcore::tag()),
                remote_from: format!("<{dest_uri}>"),
                remote_target: dest_uri,
                invite_cseq: 1,
                next_cseq: 2,
                last_response: None,
                acked: true,
                tx_key: None,
                sdp: Vec::new(),
                invite: None,
            },
            b: BLeg {
                call_id: b_call_id.clone(),
                local_from: format!("<sip:{destination}@{ip}>;tag={}", sipcore::tag()),
                remote_to_base: format!("<sip:{dn}@{ip}>"),
                remote_to: None,
                request_uri: phone_uri,
                remote_target: None,
                dest: phone,
                invite_branch: b_branch.clone(),
                next_cseq: 2,
                answered: false,
                sdp: Vec::new(),
            },
            started: now,
            answered_at: None,
            reported: true,
        };
        let bytes = self.invite_bytes(
            &call.b.request_uri,
            &call.b.local_from,
            &call.b.remote_to_base,
            &b_call_id,
            &b_branch,
            phone,
            &call.uuid,
            None,
        );
        let dialing = event::dialing(None, &call.info(Some(CallState::Ok)));
        self.dialogs.insert(a_call_id, (conn_id, Side::A));
        self.dialogs.insert(b_call_id, (conn_id, Side::B));
        self.dns.entry(dn.into()).or_default().calls.push(conn_id);
        self.journal.record(
            "call.dialing",
            json!({ "conn_id": conn_id.to_string(), "dn": dn, "destination": destination }),
        );
        self.calls.insert(conn_id, call);
        self.metrics.calls_active.set(self.calls.len() as i64);
        self.publish_call_event(dn, conn_id, dialing, Some((client, reference)), None, now);
        self.send_out(conn_id, OutKind::Invite, b_branch, bytes, phone, now);
        Ok(())
    }

    /// `RequestMakeCall`: the phone answered with its offer; call the destination with it.
    fn invite_destination(&mut self, conn_id: ConnId, now: Instant) {
        let Some(call) = self.calls.get(&conn_id) else {
            return;
        };
        let branch = sipcore::branch();
        let sdp = (!call.b.sdp.is_empty()).then_some(call.b.sdp.as_slice());
        let bytes = self.invite_bytes(
            &call.a.remote_target,
            &call.a.local_to,
            &call.a.remote_from,
            &call.a.call_id,
            &branch,
            call.a.source,
            &call.uuid,
            sdp,
        );
        let dest = call.a.source;
        if let Some(call) = self.calls.get_mut(&conn_id) {
            call.a.invite = Some((branch.clone(), call.a.remote_target.clone()));
        }
        self.send_out(conn_id, OutKind::InviteA, branch, bytes, dest, now);
    }

    /// `RequestMakeCall`: the destination's answer to our INVITE.
    fn on_destination_response(
        &mut self,
        branch: &str,
        conn_id: ConnId,
        resp: &rsip::Response,
        code: u16,
        now: Instant,
    ) {
        let addr = self.config.sip_addr();
        let Some(call) = self.calls.get_mut(&conn_id) else {
            if (200..300).contains(&code) {
                self.ack_and_bye_orphan(branch, resp);
            }
            return;
        };
        if let Ok(to) = resp.to_header() {
            if to.value().contains("tag=") {
                call.a.remote_from = to.value().to_string();
            }
        }
        if let Ok(Some(uri)) = fields::contact_uri(resp) {
            call.a.remote_target = uri.to_string();
        }
        let dest = call.a.source;
        if code < 200 {
            if code > 100 && call.phase == CallPhase::Offering {
                call.phase = CallPhase::Ringing;
                let info = call.info(Some(CallState::Ok));
                let (dn, conn_id) = (call.dn.clone(), call.conn_id);
                let reached = event::network_reached(None, &info);
                self.publish_call_event(&dn, conn_id, reached, None, None, now);
            }
            return;
        }
        // ACK the destination: a new transaction for a 2xx, the INVITE's own for an error.
        let ack_branch = if code < 300 {
            sipcore::branch()
        } else {
            branch.to_string()
        };
        let ack = Bytes::from(call.a_request(
            "ACK",
            &via_line(addr, dest.transport, &ack_branch),
            Some(1),
            "",
        ));
        if let Some(out) = self.out_requests.get_mut(branch) {
            out.ack = Some(ack.clone());
        }
        self.outbox.push((dest, ack));
        let Some(call) = self.calls.get_mut(&conn_id) else {
            return;
        };
        if code < 300 && call.phase != CallPhase::Releasing {
            call.a.sdp = resp.body().to_vec();
            let (phone_branch, answer) = (call.b.invite_branch.clone(), call.a.sdp.clone());
            // Now the phone gets its ACK, carrying the destination's answer.
            self.ack_phone(conn_id, &phone_branch, &sipcore::branch(), Some(&answer));
            self.call_established(conn_id, now);
        } else {
            if code < 300 {
                // Released while the destination was answering: hang it up again.
                self.hang_up_a(conn_id, now);
            }
            self.hang_up_b(conn_id, now);
            self.release(conn_id, Outcome::Rejected, None, now);
        }
    }

    /// A 2xx from a phone for a call that no longer exists: ACK it, then BYE it.
    fn ack_and_bye_orphan(&mut self, branch: &str, resp: &rsip::Response) {
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

    /// The caller's ACK for our 2xx.
    pub(crate) fn on_ack(&mut self, req: &rsip::Request) {
        let Ok(call_id) = fields::call_id(req) else {
            return;
        };
        if let Some(&(conn, Side::A)) = self.dialogs.get(call_id) {
            if let Some(call) = self.calls.get_mut(&conn) {
                call.a.acked = true;
            }
        }
    }

    /// BYE from either side: answer it, hang up the other side, release the call.
    pub(crate) fn on_bye(&mut self, req: &rsip::Request, now: Instant) -> rsip::Response {
        let Ok(call_id) = fields::call_id(req) else {
            return warned_response(req, 400, "missing Call-ID");
        };
        let Some(&(conn, side)) = self.dialogs.get(call_id) else {
            return response_for(req, status(481));
        };
        match side {
            Side::A => self.hang_up_b(conn, now),
            Side::B => self.hang_up_a(conn, now),
        }
        self.release(conn, Outcome::Completed, None, now);
        let mut ok = response_for(req, status(200));
        // Keep the dialog's To tag in the answer (response_for only adds one when missing).
        if let Ok(to) = req.to_header() {
            sipcore::builder::set_header(&mut ok, rsip::Header::To(to.clone()));
        }
        ok
    }

    /// CANCEL from the caller before the phone answered.
    pub(crate) fn on_cancel(&mut self, req: &rsip::Request, now: Instant) -> rsip::Response {
        let Ok(call_id) = fields::call_id(req) else {
            return warned_response(req, 400, "missing Call-ID");
        };
        let Some(&(conn, Side::A)) = self.dialogs.get(call_id) else {
            return response_for(req, status(481));
        };
        let contact = self.contact();
        if let Some(call) = self.calls.get(&conn) {
            if call.b.answered {
                // Too late: the call is up; the caller will send BYE.
                return response_for(req, status(200));
            }
            let terminated = call.a_response(487, "Request Terminated", &contact, None);
            let (key, source) = (call.a.tx_key.clone(), call.a.source);
            self.send_a_final(key, source, terminated, now);
            self.cancel_b(conn, now);
            self.release(conn, Outcome::Cancelled, None, now);
        }
        response_for(req, status(200))
    }

    /// UPDATE (session refresh): accepted without a new offer.
    pub(crate) fn on_update(&mut self, req: &rsip::Request) -> rsip::Response {
        match fields::call_id(req).ok().and_then(|c| self.dialogs.get(c)) {
            Some(_) => response_for(req, status(200)),
            None => response_for(req, status(481)),
        }
    }

    fn reinvite_answer(&self, req: &rsip::Request, conn: ConnId, side: Side) -> rsip::Response {
        let Some(call) = self.calls.get(&conn) else {
            return response_for(req, status(481));
        };
        let sdp = match side {
            Side::A => &call.b.sdp,
            Side::B => &call.a.sdp,
        };
        let mut ok = response_for(req, status(200));
        if let Ok(to) = req.to_header() {
            sipcore::builder::set_header(&mut ok, rsip::Header::To(to.clone()));
        }
        sipcore::builder::set_header(&mut ok, rsip::Header::Contact(self.contact().into()));
        if !sdp.is_empty() {
            sipcore::builder::set_response_body(&mut ok, "application/sdp", sdp.clone());
        }
        ok
    }

    /// Ends the phone's leg: BYE if answered, CANCEL if still ringing.
    fn hang_up_b(&mut self, conn: ConnId, now: Instant) {
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
    fn hang_up_a(&mut self, conn: ConnId, now: Instant) {
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

    /// Sends an in-dialog request on one leg of a call, as a new transaction retransmitted until
    /// answered.
    fn send_in_dialog(
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

    /// CANCEL of our INVITE to the phone (same branch and CSeq number, RFC 3261 §9.1).
    fn cancel_b(&mut self, conn: ConnId, now: Instant) {
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
        let Some(call) = self.calls.remove(&conn) else {
            return;
        };
        self.dialogs.remove(&call.a.call_id);
        self.dialogs.remove(&call.b.call_id);
        self.metrics.calls_active.set(self.calls.len() as i64);
        self.metrics.call_outcome(outcome.as_str());
        let dn = call.dn.clone();
        if let Some(state) = self.dns.get_mut(&dn) {
            state.calls.retain(|c| *c != conn);
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
        } else if answered {
            self.start_acw(&dn, now);
        }
        self.forget_if_idle(&dn);
    }

    /// R7: after a business call a logged-in agent goes NotReady/AfterCallWork; the timer
    /// brings it back to Ready.
    pub(crate) fn start_acw(&mut self, dn: &str, now: Instant) {
        let options = &self.config.options;
        if options.wrap_up_time.is_zero() && !options.wrap_up_untimed {
            return;
        }
        let (untimed, wrap_up) = (options.wrap_up_untimed, options.wrap_up_time);
        let Some(state) = self.dns.get_mut(dn) else {
            return;
        };
        let Some(agent) = state.agent.as_mut() else {
            return;
        };
        agent.status = AgentStatus::NotReady {
            work_mode: AgentWorkMode::AfterCallWork,
            reasons: None,
        };
        state.acw_serial += 1;
        let serial = state.acw_serial;
        let agent_id = agent.agent_id.clone();
        self.journal.record(
            "agent.acw_started",
            json!({ "dn": dn, "untimed": untimed, "wrap_up_ms": wrap_up.as_millis() as u64 }),
        );
        let mut acw = event::agent_not_ready(
            None,
            dn,
            agent_id.as_deref(),
            Some(AgentWorkMode::AfterCallWork),
            None,
        );
        acw.attrs.extensions = Some(self.wrap_up_extensions());
        self.broadcast_dn(dn, acw);
        if !untimed {
            self.schedule(
                now + wrap_up,
                TimerJob::AcwEnd {
                    dn: dn.into(),
                    serial,
                },
            );
        }
    }

    /// The wrap-up timer ended: back to Ready unless the agent changed state meanwhile.
    pub(crate) fn end_acw(&mut self, dn: &str, serial: u64, now: Instant) {
        let Some(state) = self.dns.get_mut(dn) else {
            return;
        };
        let in_acw = matches!(&state.agent, Some(a) if matches!(a.status, AgentStatus::NotReady { work_mode: AgentWorkMode::AfterCallWork, .. }));
        if state.acw_serial != serial || !in_acw {
            return;
        }
        let Some(agent) = state.agent.as_mut() else {
            return;
        };
        agent.status = AgentStatus::Ready;
        let agent_id = agent.agent_id.clone();
        self.journal.record("agent.acw_ended", json!({ "dn": dn }));
        self.broadcast_dn(dn, event::agent_ready(None, dn, agent_id.as_deref(), None));
        self.consider_move(dn, now);
    }

    /// `WrapUpTime` (seconds or `untimed`) and `BusinessCall` as real Established events carry them.
    fn wrap_up_extensions(&self) -> KvList {
        let mut ext = KvList::new();
        let o = &self.config.options;
        ext.insert(
            "WrapUpTime".into(),
            if o.wrap_up_untimed {
                json!("untimed")
            } else {
                json!(o.wrap_up_time.as_secs_f64())
            },
        );
        ext.insert("BusinessCall".into(), json!(1));
        ext
    }

    /// Whether the DN has a call or is in ACW (R5).
    pub(crate) fn busy_for_login(&self, dn: &str) -> Option<Refusal> {
        let state = self.dns.get(dn)?;
        // Calls on other nodes count while they can be reached (R11: a call in a disconnected
        // DC does not keep the agent from logging in elsewhere).
        let remote = state
            .cluster
            .as_ref()
            .is_some_and(|c| c.remote_calls.values().any(|rc| rc.reachable));
        if !state.calls.is_empty() || remote {
            return Some(Refusal::new(
                tlib::error_code::CTL_INV_CALL_STATE,
                "Login and logout are not allowed while a call is in progress",
            ));
        }
        let in_acw = matches!(&state.agent, Some(a) if matches!(a.status, AgentStatus::NotReady { work_mode: AgentWorkMode::AfterCallWork, .. }));
        in_acw.then(|| {
            Refusal::new(
                tlib::error_code::CTL_INV_CALL_STATE,
                "Login and logout are not allowed during after-call work",
            )
        })
    }

    /// R6: the DN's calls, reported to a client that just registered the DN.
    pub(crate) fn report_calls(&mut self, client: ClientId, dn: &str) {
        let conns = self
            .dns
            .get(dn)
            .map(|d| d.calls.clone())
            .unwrap_or_default();
        let mut reports: Vec<tlib::Message> = conns
            .iter()
            .filter_map(|conn| self.calls.get(conn))
            .map(|call| call.current_event())
            .collect();
        if let Some(c) = self.dns.get(dn).and_then(|s| s.cluster.as_ref()) {
            reports.extend(
                c.remote_calls
                    .values()
                    .filter(|rc| rc.reachable)
                    .map(|rc| rc.last_event.clone()),
            );
        }
        for msg in reports {
            self.send(client, msg);
        }
    }

    /// The DN's call with `conn` (3pcc requests must name a call of the DN).
    fn call_of(&self, dn: &str, conn: ConnId) -> Result<ConnId, Refusal> {
        let on_dn = self.dns.get(dn).is_some_and(|d| d.calls.contains(&conn));
        if on_dn && self.calls.contains_key(&conn) {
            Ok(conn)
        } else {
            Err(Refusal::new(
                tlib::error_code::INV_CONNID,
                format!("No call {conn} on DN {dn}"),
            ))
        }
    }

    /// RequestAnswerCall: NOTIFY `Event: talk` to the ringing phone, which then answers.
    pub(crate) fn answer_call(
        &mut self,
        dn: &str,
        conn: ConnId,
        now: Instant,
    ) -> Result<(), Refusal> {
        let conn = self.call_of(dn, conn)?;
        let phase = self.calls.get(&conn).map(|c| c.phase);
        if phase != Some(CallPhase::Ringing) {
            return Err(Refusal::new(
                tlib::error_code::CTL_INV_CALL_STATE,
                "The call is not ringing",
            ));
        }
        self.notify_phone(conn, "talk", now);
        Ok(())
    }

    /// RequestReleaseCall: BYE both legs (or CANCEL/487 while ringing).
    pub(crate) fn release_call(
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
        self.release(conn, Outcome::Released3pcc, Some((client, reference)), now);
        Ok(())
    }

    /// RequestHoldCall / RequestRetrieveCall: NOTIFY `Event: hold` / `Event: talk` to the phone.
    pub(crate) fn hold_call(
        &mut self,
        client: ClientId,
        reference: Option<u32>,
        dn: &str,
        conn: ConnId,
        hold: bool,
        now: Instant,
    ) -> Result<(), Refusal> {
        let conn = self.call_of(dn, conn)?;
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
                tlib::error_code::CTL_INV_CALL_STATE,
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

/// A CallUUID: 32 upper-case alphanumerics, as Genesys prints them.
fn new_call_uuid() -> String {
    sipcore::ids::call_id()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(32)
        .collect::<String>()
        .to_uppercase()
}

/// A CANCEL of one of our INVITEs (`via` carries the INVITE's branch).
fn cancel_request(uri: &str, via: &str, from: &str, to: &str, call_id: &str) -> Bytes {
    Bytes::from(format!(
        "CANCEL {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    ))
}

/// A Via line value for a request the node sends from `addr`.
fn via_line(addr: std::net::SocketAddr, transport: TransportKind, branch: &str) -> String {
    let t = if transport == TransportKind::Tcp {
        "TCP"
    } else {
        "UDP"
    };
    format!("SIP/2.0/{t} {addr};branch={branch};rport")
}

/// Where to send requests for a registered Contact: its host and port, over its `transport`
/// parameter or the transport it registered with; the source address when the URI has no port.
fn contact_destination(uri: &str, source: std::net::SocketAddr, registered_tcp: bool) -> Source {
    let lower = uri.to_ascii_lowercase();
    let tcp = if lower.contains("transport=tcp") {
        true
    } else if lower.contains("transport=udp") {
        false
    } else {
        registered_tcp
    };
    let hostport = uri
        .split_once(':')
        .map(|(_, rest)| rest)
        .unwrap_or(uri)
        .rsplit('@')
        .next()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("");
    let addr = hostport.parse::<std::net::SocketAddr>().unwrap_or(source);
    if tcp {
        Source::tcp(addr)
    } else {
        Source::udp(addr)
    }
}

/// A response with a `Warning` header saying why.
fn warned_response(req: &rsip::Request, code: u16, reason: &str) -> rsip::Response {
    let mut resp = response_for(req, status(code));
    sipcore::builder::set_header(
        &mut resp,
        rsip::Header::Warning(format!("399 drlab \"{reason}\"").into()),
    );
    resp
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_destinations() {
        let src: std::net::SocketAddr = "127.0.0.9:40000".parse().unwrap();
        assert_eq!(
            contact_destination("sip:7001@127.0.0.1:5062", src, false),
            Source::udp("127.0.0.1:5062".parse().unwrap())
        );
        assert_eq!(
            contact_destination("sip:7001@127.0.0.1:5062;transport=TCP", src, false),
            Source::tcp("127.0.0.1:5062".parse().unwrap())
        );
        assert_eq!(
            contact_destination("sip:7001@phone.example", src, true),
            Source::tcp(src)
        );
    }
}
