//! Calls the caller places (a PSTN caller through a node): INVITE with an SDP offer carrying the
//! media port, ACK, hold, BYE; CANCEL when nobody answers in time; BYE from the far end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rsip::Method;
use serde::Serialize;
use serde_json::json;
use sipcore::builder::{ack_for, bye_for, cancel_for, sdp_offer};
use sipcore::rsip;
use sipcore::transport::{Source, TransportKind};
use sipcore::{fields, RequestBuilder};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::call::{CallAction, EndReason, Placing, PlacingPhase};
use crate::dialog;
use crate::engine::{Call, Engine, Role, Timer, TxOwner};
use crate::heartbeat::LossTracker;
use crate::media::MediaSession;

/// A call to place.
#[derive(Debug, Clone)]
pub struct CallPlan {
    /// The number dialled (a DN, or any number for the PSTN gateway).
    pub to: String,
    /// The node (or proxy) the INVITE goes to.
    pub via: SocketAddr,
    /// The caller's number (From user, the call's ANI).
    pub from: String,
    /// How long to stay in the call once answered before hanging up.
    pub hold: Duration,
    /// CANCEL when not answered within this time.
    pub give_up_after: Duration,
}

impl CallPlan {
    pub fn new(to: impl Into<String>, via: SocketAddr) -> Self {
        CallPlan {
            to: to.into(),
            via,
            from: "5551000".into(),
            hold: Duration::from_secs(1),
            give_up_after: Duration::from_secs(30),
        }
    }

    pub fn hold(mut self, hold: Duration) -> Self {
        self.hold = hold;
        self
    }

    pub fn give_up_after(mut self, after: Duration) -> Self {
        self.give_up_after = after;
        self
    }

    pub fn from(mut self, number: impl Into<String>) -> Self {
        self.from = number.into();
        self
    }
}

/// How a placed call went.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CallReport {
    pub call_id: String,
    pub to: String,
    /// The INVITE's final status, if one came.
    pub status: Option<u16>,
    pub established: bool,
    /// `remote_bye`, `local_bye`, `media_silent`, `cancelled`, `refused`, `no_response`.
    pub reason: &'static str,
    pub duration_ms: u64,
    /// What the heartbeat received from the far end.
    pub media: Option<LossTracker>,
}

/// A placed call's SIP side.
pub struct Place {
    pub state: Placing,
    invite: rsip::Request,
    dest: Source,
    /// The 2xx that set up the dialog (for the BYE).
    answered: Option<rsip::Response>,
    /// The latest final response (for the ACK).
    last_final: Option<rsip::Response>,
    report: Option<oneshot::Sender<CallReport>>,
    to: String,
}

impl Place {
    pub fn phase_name(&self) -> &'static str {
        match self.state.phase {
            PlacingPhase::Calling { ringing: false } => "calling",
            PlacingPhase::Calling { ringing: true } => "ringing",
            PlacingPhase::Cancelling => "cancelling",
            PlacingPhase::Confirmed { .. } => "confirmed",
            PlacingPhase::Ended(_) => "ended",
        }
    }

    pub fn end_reason(&self) -> Option<EndReason> {
        match self.state.phase {
            PlacingPhase::Ended(r) => Some(r),
            _ => None,
        }
    }

    /// Tells whoever placed the call how it went (once).
    pub fn report(&mut self, reason: EndReason, media: Option<LossTracker>, duration_ms: u64) {
        let Some(tx) = self.report.take() else {
            return;
        };
        let _ = tx.send(CallReport {
            call_id: fields::call_id(&self.invite).unwrap_or_default().to_owned(),
            to: self.to.clone(),
            status: self.last_final.as_ref().map(|r| r.status_code.code()),
            established: self.answered.is_some(),
            reason: reason.as_str(),
            duration_ms,
            media,
        });
    }
}

impl Engine {
    pub(crate) fn place_call(
        &mut self,
        plan: CallPlan,
        report: oneshot::Sender<CallReport>,
        now: Instant,
    ) {
        if self.calls.len() >= self.config.max_calls {
            // Dropping `report` tells the caller the call was not placed.
            return tracing::warn!(
                max = self.config.max_calls,
                "too many calls; call not placed"
            );
        }
        let media = match MediaSession::bind(
            &self.faults,
            &format!("media:{}", plan.from),
            self.local.ip(),
        ) {
            Ok(m) => m,
            Err(e) => return tracing::warn!(error = %e, "no media port; call not placed"),
        };
        let sdp = sdp_offer(self.local.ip(), media.port());
        let built = RequestBuilder::invite(
            &format!("sip:{}@{}", plan.from, self.local.ip()),
            &format!("sip:{}@{}", plan.to, plan.via),
            self.local,
            sdp,
        )
        .transport(match self.transport {
            TransportKind::Udp => rsip::Transport::Udp,
            TransportKind::Tcp => rsip::Transport::Tcp,
        })
        .build();
        let invite = match built {
            Ok(r) => r,
            Err(e) => return tracing::warn!(error = %e, "INVITE not built"),
        };
        let Ok(id) = fields::call_id(&invite).map(Arc::<str>::from) else {
            return;
        };
        let dest = match self.transport {
            TransportKind::Udp => Source::udp(plan.via),
            TransportKind::Tcp => Source::tcp(plan.via),
        };
        let (state, actions) = Placing::new(plan.hold, plan.give_up_after, now);
        self.calls.insert(
            id.clone(),
            Call {
                dn: plan.to.as_str().into(),
                role: Role::Place(Box::new(Place {
                    state,
                    invite: invite.clone(),
                    dest,
                    answered: None,
                    last_final: None,
                    report: Some(report),
                    to: plan.to.clone(),
                })),
                media: Some(media),
                remote_media: None,
                started: now,
                ended: false,
            },
        );
        self.metrics.calls_placed.inc();
        self.journal.record(
            "call.placed",
            json!({ "to": plan.to, "via": plan.via.to_string(), "from": plan.from, "call_id": &*id }),
        );
        self.send_request(&invite, TxOwner::Invite(id.clone()), dest, now);
        self.run_place_actions(&id, actions, now);
    }

    /// A response to one of our INVITEs (retransmitted 2xx included).
    pub(crate) fn placed_call_response(&mut self, resp: &rsip::Response, now: Instant) {
        let Ok(id) = fields::call_id(resp).map(Arc::<str>::from) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Role::Place(p) = &mut call.role else {
            return;
        };
        let code = resp.status_code.code();
        let first_answer = (200..300).contains(&code) && p.answered.is_none();
        if code >= 200 {
            p.last_final = Some(resp.clone());
        }
        if first_answer {
            p.answered = Some(resp.clone());
            call.remote_media = crate::sdp::media_destination(&resp.body);
        }
        let actions = p.state.on_response(code, now);
        if first_answer {
            self.metrics.calls_established.inc();
            self.journal.record(
                "call.established",
                json!({ "to": call.dn, "call_id": &*id }),
            );
            self.start_media(&id);
        }
        self.run_place_actions(&id, actions, now);
    }

    pub(crate) fn placed_call_failed(&mut self, id: &Arc<str>, now: Instant) {
        if let Some(Call {
            role: Role::Place(p),
            ..
        }) = self.calls.get_mut(id)
        {
            p.state.on_no_response();
        }
        self.settle(id, now);
    }

    /// A request in the dialog of a placed call.
    pub(crate) fn place_dialog_request(
        &mut self,
        req: rsip::Request,
        source: Source,
        id: &Arc<str>,
        now: Instant,
    ) {
        let Some(Call {
            role: Role::Place(p),
            ..
        }) = self.calls.get_mut(id)
        else {
            return;
        };
        match req.method {
            Method::Bye => {
                let exists = p.state.on_bye();
                let gone_by_bye = p.end_reason() == Some(EndReason::RemoteBye);
                self.reply(&req, source, if exists || gone_by_bye { 200 } else { 481 });
                self.settle(id, now);
            }
            Method::Invite => self.reinvite(req, source, id),
            Method::Notify => self.reply(&req, source, 200),
            Method::Ack => {}
            Method::Cancel => self.reply(&req, source, 481),
            _ => self.reply(&req, source, 501),
        }
    }

    pub(crate) fn run_place_actions(
        &mut self,
        id: &Arc<str>,
        actions: Vec<CallAction>,
        now: Instant,
    ) {
        for action in actions {
            let Some(Call {
                role: Role::Place(p),
                ..
            }) = self.calls.get(id)
            else {
                return;
            };
            let (dest, invite) = (p.dest, &p.invite);
            let request = match action {
                CallAction::Wake(at) => {
                    self.timers.at(at, Timer::Call(id.clone()));
                    continue;
                }
                CallAction::Ack => {
                    let Some(last) = &p.last_final else { continue };
                    let success = (200..300).contains(&last.status_code.code());
                    match ack_for(invite, last) {
                        Ok(ack) => {
                            // A 2xx ACK goes to the callee's Contact; a non-2xx one follows the
                            // INVITE (same transaction).
                            let to = if success {
                                dialog::destination(&ack.uri, dest.transport, dest.remote)
                            } else {
                                dest
                            };
                            self.send(to, Bytes::from(ack.to_string()), None);
                        }
                        Err(e) => tracing::warn!(error = %e, "ACK not built"),
                    }
                    continue;
                }
                CallAction::Bye => match &p.answered {
                    Some(ok) => bye_for(invite, ok),
                    None => continue,
                },
                CallAction::Cancel => cancel_for(invite),
                CallAction::Ring | CallAction::Answer | CallAction::Refuse(_) => continue,
            };
            let req = match request {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "request not built");
                    continue;
                }
            };
            let to = if req.method == Method::Cancel {
                dest
            } else {
                dialog::destination(&req.uri, dest.transport, dest.remote)
            };
            self.send_request(&req, TxOwner::Ending(id.clone()), to, now);
        }
        self.settle(id, now);
    }
}
