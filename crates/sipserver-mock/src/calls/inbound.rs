//! An initial INVITE from a caller or the gateway: the call is offered to the DN's phone (or
//! its PSTN number), and the phone's answers travel back to the caller.

use bytes::Bytes;
use rsip::prelude::*;
use serde_json::json;
use sipcore::builder::status;
use sipcore::transport::{Source, TransportKind};
use sipcore::{fields, response_for, TxKey};
use tlib::{event, CallState, CallType, ConnId};
use tokio::time::Instant;

use super::{new_call_uuid, warned_response, Outcome};
use crate::call::{sdp_is_valid, ALeg, BLeg, Call, CallPhase, Origin, OutKind};
use crate::core::{NodeCore, TimerJob};
use crate::dn::DnKind;

impl NodeCore {
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
        if let Some((conn, side)) = self.calls.dialog(&call_id) {
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
        let calling_dn = self.internal_caller(&ani, &dn);
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
        let conn_id = self.calls.new_conn_id();
        let uuid = new_call_uuid();
        let b_branch = sipcore::branch();
        let b_call_id = sipcore::ids::call_id();
        let local_from = format!(
            "<sip:{ani}@{}>;tag={}",
            self.config.sip_addr().ip(),
            sipcore::tag()
        );
        let to_phone = match info.kind {
            DnKind::Softphone => format!("<sip:{dn}@{}>", self.config.sip_addr().ip()),
            DnKind::Pstn => format!("<{request_uri}>"),
        };
        let call = Call {
            conn_id,
            uuid,
            dn: dn.as_str().into(),
            ani: ani.clone(),
            dnis: dn.clone(),
            call_type: if calling_dn.is_some() {
                CallType::Internal
            } else {
                CallType::Inbound
            },
            calling_dn: calling_dn.clone(),
            origin: Origin::Inbound,
            phase: CallPhase::Offering,
            a: ALeg {
                call_id,
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
            // The To of our INVITE; the phone's tag is appended when it answers.
            b: BLeg::new(
                b_call_id,
                local_from,
                to_phone,
                request_uri,
                dest,
                b_branch.clone(),
            ),
            started: now,
            answered_at: None,
            reported: false,
        };
        // 100 Trying at once, so the caller stops retransmitting while the phone is reached.
        let trying = call.a_response(100, "Trying", &self.contact(), None);
        self.answer_tx(key, source, trying, now);
        let sdp = if has_sdp { Some(body.as_slice()) } else { None };
        let bytes = self.invite_phone(&call, sdp);
        self.dns.add_call(&dn, conn_id);
        self.journal.record(
            "call.offered",
            json!({ "conn_id": conn_id.to_string(), "dn": dn, "ani": ani, "uuid": call.uuid }),
        );
        self.calls.insert(call);
        self.metrics.calls_active.set(self.calls.len() as i64);
        if let Some(caller) = calling_dn {
            self.report_dialing(conn_id, &caller, &dn, None, now);
        }
        self.send_out(conn_id, OutKind::Invite, b_branch, bytes, dest, now);
        None
    }

    pub(super) fn send_a_final(
        &mut self,
        key: Option<TxKey>,
        source: Source,
        resp: Bytes,
        now: Instant,
    ) {
        match key {
            Some(key) => self.answer_tx(&key, source, resp, now),
            None => self.outbox.push((source, resp)),
        }
    }

    pub(super) fn on_invite_response(
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
                if !call.phone_answered(resp.body()) {
                    return;
                }
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
                if !call.phone_answered(resp.body()) {
                    return;
                }
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
}
