//! Calls a phone (or the PSTN gateway) receives: ring, answer per the answer mode with the
//! media port in the SDP, retransmit the 2xx until the ACK, take BYE, CANCEL, NOTIFY `talk`,
//! in-dialog OPTIONS (the node's session audit), and hang up with BYE when asked or when the
//! media goes silent.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rsip::Method;
use serde_json::json;
use sipcore::rsip;
use sipcore::transport::Source;
use sipcore::{builder, fields};
use tokio::time::Instant;

use crate::call::{Answering, AnsweringPhase, CallAction, EndReason};
use crate::dialog;
use crate::engine::{Call, Engine, Role, Timer, TxOwner};
use crate::media::MediaSession;

/// A received call's SIP side.
pub struct Answer {
    pub state: Answering,
    invite: rsip::Request,
    source: Source,
    tag: String,
    /// Last response to the INVITE: resent for INVITE retransmissions, and as the 2xx
    /// retransmission until the ACK.
    last: Option<Bytes>,
    /// 2xx retransmission: next time, interval, give-up time.
    resend: Option<(Instant, Duration, Instant)>,
    /// CSeq of our own in-dialog requests.
    cseq: u32,
}

impl Answer {
    pub fn phase_name(&self) -> &'static str {
        match self.state.phase {
            AnsweringPhase::Ringing { .. } => "ringing",
            AnsweringPhase::Answered => "answered",
            AnsweringPhase::Confirmed => "confirmed",
            AnsweringPhase::Ended(_) => "ended",
        }
    }
}

impl Engine {
    /// A new INVITE (no To tag, unknown Call-ID).
    pub(crate) fn new_invite(
        &mut self,
        req: rsip::Request,
        source: Source,
        call_id: Arc<str>,
        now: Instant,
    ) {
        let dn = req
            .uri
            .auth
            .as_ref()
            .map(|a| a.user.clone())
            .unwrap_or_default();
        if !self.config.answer_any && !self.has_line(&dn) {
            return self.reply(&req, source, 404);
        }
        if self.calls.len() >= self.config.max_calls {
            return self.reply(&req, source, 486);
        }
        let remote_media = crate::sdp::media_destination(&req.body);
        self.metrics.calls_offered.inc();
        self.journal.record(
            "call.offered",
            json!({
                "dn": dn, "call_id": &*call_id,
                "from": fields::from_user(&req).unwrap_or_default(),
                "call_uuid": x_genesys_call_uuid(&req),
            }),
        );
        let (state, actions) = Answering::offered(self.config.answer, now);
        let answer = Answer {
            state,
            invite: req,
            source,
            tag: sipcore::tag(),
            last: None,
            resend: None,
            cseq: 0,
        };
        self.calls.insert(
            call_id.clone(),
            Call {
                dn: dn.into(),
                role: Role::Answer(Box::new(answer)),
                media: None,
                remote_media,
                started: now,
                ended: false,
            },
        );
        self.run_answer_actions(&call_id, actions, now);
    }

    /// A request in the dialog of a received call.
    pub(crate) fn answer_dialog_request(
        &mut self,
        req: rsip::Request,
        source: Source,
        id: &Arc<str>,
        now: Instant,
    ) {
        let Some(Call {
            role: Role::Answer(a),
            ..
        }) = self.calls.get_mut(id)
        else {
            return;
        };
        match req.method {
            Method::Invite => {
                let same = fields::top_via(&req).ok().and_then(|v| v.branch)
                    == fields::top_via(&a.invite).ok().and_then(|v| v.branch);
                if same {
                    // A retransmitted INVITE: the last response again.
                    if let Some(last) = a.last.clone() {
                        self.send(source, last, None);
                    }
                } else {
                    self.reinvite(req, source, id);
                }
            }
            Method::Ack => {
                a.state.on_ack();
                a.resend = None;
                if let Some(remote) = crate::sdp::media_destination(&req.body) {
                    if let Some(call) = self.calls.get_mut(id) {
                        call.remote_media.get_or_insert(remote);
                    }
                }
                self.start_media(id);
            }
            Method::Bye => {
                let ended_by_bye = a.state.phase == AnsweringPhase::Ended(EndReason::RemoteBye);
                let (exists, actions) = a.state.on_bye();
                // A retransmitted BYE whose 200 was lost gets its 200 again.
                let code = if exists || ended_by_bye { 200 } else { 481 };
                self.reply(&req, source, code);
                self.run_answer_actions(id, actions, now);
            }
            Method::Cancel => {
                let actions = a.state.on_cancel();
                self.reply(&req, source, 200);
                self.run_answer_actions(id, actions, now);
            }
            Method::Notify => {
                let event = fields::event(&req).unwrap_or("").to_owned();
                let (exists, actions) = a.state.on_notify(&event);
                self.reply(&req, source, if exists { 200 } else { 481 });
                self.journal.record(
                    "call.notify",
                    json!({ "dn": self.calls.get(id).map(|c| &*c.dn), "call_id": &**id, "event": event }),
                );
                self.run_answer_actions(id, actions, now);
            }
            _ => self.reply(&req, source, 501),
        }
    }

    /// A re-INVITE (session refresh, hold): accepted with our SDP so the call is not disturbed.
    pub(crate) fn reinvite(&mut self, req: rsip::Request, source: Source, id: &Arc<str>) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let sdp = call
            .media
            .as_ref()
            .map(|m| builder::sdp_offer(self.local.ip(), m.port()));
        let to_tag = fields::to_tag(&req).ok().flatten().unwrap_or_default();
        let contact = dialog::contact(&call.dn, self.local, self.transport);
        let ok = dialog::invite_response(&req, 200, &to_tag, &contact, sdp);
        self.send(source, Bytes::from(ok.to_string()), None);
    }

    pub(crate) fn run_answer_actions(
        &mut self,
        id: &Arc<str>,
        actions: Vec<CallAction>,
        now: Instant,
    ) {
        for action in actions {
            match action {
                CallAction::Ring => self.respond_to_invite(id, 180, None),
                CallAction::Answer => self.answer(id, now),
                CallAction::Refuse(code) => self.respond_to_invite(id, code, None),
                CallAction::Wake(at) => self.timers.at(at, Timer::Call(id.clone())),
                CallAction::Bye => self.callee_bye(id, now),
                CallAction::Ack | CallAction::Cancel => {}
            }
        }
        self.settle(id, now);
    }

    fn respond_to_invite(&mut self, id: &Arc<str>, code: u16, sdp: Option<String>) {
        let (local, transport) = (self.local, self.transport);
        let Some(Call {
            dn,
            role: Role::Answer(a),
            ..
        }) = self.calls.get_mut(id)
        else {
            return;
        };
        let contact = dialog::contact(dn, local, transport);
        let resp = dialog::invite_response(&a.invite, code, &a.tag, &contact, sdp);
        let bytes = Bytes::from(resp.to_string());
        a.last = Some(bytes.clone());
        let source = a.source;
        self.send(source, bytes, None);
    }

    /// 200 with an SDP carrying a freshly bound media port; the heartbeat starts at once when the
    /// offer told us where to send it, else with the ACK's answer.
    fn answer(&mut self, id: &Arc<str>, now: Instant) {
        let Some(dn) = self.calls.get(id).map(|c| c.dn.clone()) else {
            return;
        };
        let media = match MediaSession::bind(&self.faults, &format!("media:{dn}"), self.local.ip())
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "no media port; refusing the call");
                self.respond_to_invite(id, 500, None);
                if let Some(Call {
                    role: Role::Answer(a),
                    ..
                }) = self.calls.get_mut(id)
                {
                    a.state.phase = AnsweringPhase::Ended(EndReason::Refused(500));
                }
                return;
            }
        };
        let port = media.port();
        let sdp = builder::sdp_offer(self.local.ip(), port);
        if let Some(call) = self.calls.get_mut(id) {
            call.media = Some(media);
        }
        self.respond_to_invite(id, 200, Some(sdp));
        let timers = self.config.sip_timers;
        let give_up = now + timers.t1_x64();
        if let Some(Call {
            role: Role::Answer(a),
            ..
        }) = self.calls.get_mut(id)
        {
            // Over TCP the 2xx is not resent, but the ACK is still awaited for 64·T1.
            let first = if a.source.transport.is_reliable() {
                give_up
            } else {
                now + timers.t1
            };
            a.resend = Some((first, timers.t1, give_up));
            self.timers.at(first, Timer::Resend2xx(id.clone()));
        }
        self.metrics.calls_answered.inc();
        self.journal.record(
            "call.answered",
            json!({ "dn": dn, "call_id": &**id, "media_port": port }),
        );
        self.start_media(id);
    }

    /// RFC 3261 §13.3.1.4: resend the 2xx at T1 doubling to T2 until the ACK; none for 64·T1
    /// ends the call with BYE.
    pub(crate) fn resend_2xx(&mut self, id: &Arc<str>, now: Instant) {
        let t2 = self.config.sip_timers.t2;
        let Some(Call {
            role: Role::Answer(a),
            ..
        }) = self.calls.get_mut(id)
        else {
            return;
        };
        let Some((next, interval, give_up)) = a.resend else {
            return;
        };
        if a.state.phase != AnsweringPhase::Answered {
            a.resend = None;
            return;
        }
        if now >= give_up {
            a.resend = None;
            let actions = a.state.on_no_ack();
            return self.run_answer_actions(id, actions, now);
        }
        if now < next {
            return self.timers.at(next, Timer::Resend2xx(id.clone()));
        }
        let interval = interval.saturating_mul(2).min(t2);
        let next = (now + interval).min(give_up);
        a.resend = Some((next, interval, give_up));
        let (source, last) = (a.source, a.last.clone());
        self.timers.at(next, Timer::Resend2xx(id.clone()));
        if let Some(last) = last {
            self.send(source, last, None);
        }
    }

    /// Our BYE in a received call's dialog.
    fn callee_bye(&mut self, id: &Arc<str>, now: Instant) {
        let (local, transport) = (self.local, self.transport);
        let Some(Call {
            role: Role::Answer(a),
            ..
        }) = self.calls.get_mut(id)
        else {
            return;
        };
        a.cseq += 1;
        let req = match dialog::callee_request(
            &a.invite,
            &a.tag,
            Method::Bye,
            a.cseq,
            local,
            transport,
        ) {
            Ok(r) => r,
            Err(e) => return tracing::warn!(error = %e, "BYE not built"),
        };
        let dest = dialog::destination(&req.uri, a.source.transport, a.source.remote);
        self.send_request(&req, TxOwner::Ending(id.clone()), dest, now);
    }

    /// Ends the call if its state machine says it is over.
    pub(crate) fn settle(&mut self, id: &Arc<str>, now: Instant) {
        let reason = match self.calls.get(id).map(|c| &c.role) {
            Some(Role::Answer(a)) => match a.state.phase {
                AnsweringPhase::Ended(r) => Some(r),
                _ => None,
            },
            Some(Role::Place(p)) => p.end_reason(),
            None => None,
        };
        if let Some(reason) = reason {
            self.end_call(id, reason, now);
        }
    }

    /// Once per call: stop the media, report, and forget the call after 64·T1 (retransmitted
    /// BYEs still get their 200 until then).
    fn end_call(&mut self, id: &Arc<str>, reason: EndReason, now: Instant) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        if call.ended {
            return;
        }
        call.ended = true;
        let media = call.media.take().map(|m| m.stats());
        let duration_ms = now.saturating_duration_since(call.started).as_millis() as u64;
        let dn = call.dn.clone();
        if let Role::Place(p) = &mut call.role {
            p.report(reason, media, duration_ms);
        }
        self.metrics.calls_ended.inc();
        self.journal.record(
            "call.ended",
            json!({
                "dn": dn, "call_id": &**id, "reason": reason.as_str(),
                "status": match reason { EndReason::Refused(code) => Some(code), _ => None },
                "duration_ms": duration_ms, "media": media,
            }),
        );
        self.timers.at(
            now + self.config.sip_timers.t1_x64(),
            Timer::Forget(id.clone()),
        );
    }

    pub(crate) fn forget(&mut self, id: &Arc<str>) {
        if self.calls.get(id).is_some_and(|c| c.ended) {
            self.calls.remove(id);
        }
    }

    /// Starts the heartbeat once the media port is bound and the remote address known.
    pub(crate) fn start_media(&mut self, id: &Arc<str>) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let (Some(media), Some(remote)) = (call.media.as_mut(), call.remote_media) else {
            return;
        };
        if media.start(
            remote,
            self.config.media,
            id.clone(),
            self.metrics.media.clone(),
            self.silent.clone(),
        ) {
            self.journal.record(
                "media.started",
                json!({ "dn": call.dn, "call_id": &**id, "local_port": media.port(), "remote": remote.to_string() }),
            );
        }
    }

    /// A call's heartbeat heard nothing for `media_timeout`: hang up with BYE.
    pub fn on_media_silent(&mut self, id: &Arc<str>, now: Instant) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let stats = call.media.as_ref().map(|m| m.stats());
        let actions = match &mut call.role {
            Role::Answer(a) => a.state.on_media_silent(),
            Role::Place(p) => p.state.on_media_silent(),
        };
        if actions.is_empty() {
            return;
        }
        self.metrics.media_silent_drops.inc();
        self.journal.record(
            "media.silent",
            json!({
                "dn": call.dn, "call_id": &**id, "media": stats,
                "timeout_ms": self.config.media.timeout.as_millis() as u64,
            }),
        );
        self.run_call_actions(id, actions, now);
    }

    /// Hangs up every call of `dn`; returns how many.
    pub fn hang_up(&mut self, dn: &str, now: Instant) -> usize {
        let ids: Vec<Arc<str>> = self
            .calls
            .iter()
            .filter(|(_, c)| &*c.dn == dn && !c.ended)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ids {
            let actions = match self.calls.get_mut(id).map(|c| &mut c.role) {
                Some(Role::Answer(a)) => a.state.hang_up(),
                Some(Role::Place(p)) => p.state.hang_up(),
                None => continue,
            };
            self.run_call_actions(id, actions, now);
        }
        ids.len()
    }

    /// A call's own timer (answer delay, hold time, give-up).
    pub(crate) fn call_timer(&mut self, id: &Arc<str>, now: Instant) {
        let actions = match self.calls.get_mut(id).map(|c| &mut c.role) {
            Some(Role::Answer(a)) => a.state.on_timer(now),
            Some(Role::Place(p)) => p.state.on_timer(now),
            None => return,
        };
        self.run_call_actions(id, actions, now);
    }

    fn run_call_actions(&mut self, id: &Arc<str>, actions: Vec<CallAction>, now: Instant) {
        match self.calls.get(id).map(|c| &c.role) {
            Some(Role::Answer(_)) => self.run_answer_actions(id, actions, now),
            Some(Role::Place(_)) => self.run_place_actions(id, actions, now),
            None => {}
        }
    }
}

/// Genesys puts the call's UUID on the phone's leg.
fn x_genesys_call_uuid(req: &rsip::Request) -> Option<String> {
    req.headers.iter().find_map(|h| match h {
        rsip::Header::Other(name, value) if name.eq_ignore_ascii_case("X-Genesys-CallUUID") => {
            Some(value.clone())
        }
        _ => None,
    })
}
