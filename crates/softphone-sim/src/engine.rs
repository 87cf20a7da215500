//! The state of every phone of one simulator and what each input does to it: a SIP message, a
//! timer, a command, a media task going silent. One task owns it (`swarm.rs`) and sends the
//! outbox after each input, so this file holds no sockets. Calls are in `answering.rs` and
//! `placing.rs`.
//!
//! Demultiplexing on the shared socket: responses by Via branch (the client transaction table),
//! registration Call-IDs to their phone, other requests by Call-ID to their call, and a new
//! INVITE by the user part of its Request-URI (the DN in the Contact we registered).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use netfault::Faults;
use nodekit::Journal;
use rsip::{Method, SipMessage};
use serde_json::{json, Value};
use sipcore::builder::{self, status};
use sipcore::rsip;
use sipcore::transport::{Incoming, IncomingMessage, Source, TransportKind};
use sipcore::{fields, response_for};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::answering::Answer;
use crate::client_tx::{ClientTxs, TxTimer};
use crate::config::{PhoneConfig, Transport};
use crate::deadlines::Deadlines;
use crate::media::MediaSilent;
use crate::metrics::SimMetrics;
use crate::placing::{CallPlan, CallReport, Place};
use crate::registration::{Failure, Registration, RegistrationPolicy};

/// Methods we answer, for `Allow`.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, NOTIFY";

/// Timers handled per wake-up (see [`Engine::on_timer`]).
const TIMER_BATCH: usize = 256;

/// One datagram or TCP message to send; `tx` names the client transaction it belongs to, so a
/// send that fails at once (TCP refused or reset, a `reject` fault) fails that transaction.
#[derive(Debug)]
pub struct Out {
    pub dest: Source,
    pub bytes: Bytes,
    pub tx: Option<Box<str>>,
}

/// Who waits for a client transaction's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxOwner {
    /// A phone's REGISTER (index into the lines).
    Register(usize),
    /// A placed call's INVITE.
    Invite(Arc<str>),
    /// BYE or CANCEL of a call: only logged, the call is already over for us.
    Ending(Arc<str>),
}

/// What a wake-up is for.
#[derive(Debug)]
pub enum Timer {
    /// A phone's first REGISTER (paced by `start_rate`).
    Start(usize),
    Registration(usize),
    Tx(Box<str>),
    /// A call's own timer (answer delay, hold time, give-up).
    Call(Arc<str>),
    /// Retransmit our 2xx until the ACK (RFC 3261 §13.3.1.4).
    Resend2xx(Arc<str>),
    /// Forget an ended call once retransmissions can no longer arrive.
    Forget(Arc<str>),
}

/// Commands from the handle.
pub enum Command {
    Place {
        plan: CallPlan,
        report: oneshot::Sender<CallReport>,
    },
    /// Hang up every call of a DN; replies how many.
    HangUp {
        dn: String,
        done: oneshot::Sender<usize>,
    },
    Snapshot(oneshot::Sender<Value>),
}

/// One phone (DN) and its registration.
pub(crate) struct Line {
    pub dn: Box<str>,
    pub reg: Registration,
    /// Kept for every REGISTER of this phone, so refreshes update the same binding.
    pub call_id: Box<str>,
    pub cseq: u32,
    /// Key of the REGISTER in flight: responses to older ones are ignored.
    pub pending: Option<Box<str>>,
}

/// A call in progress (or just over, lingering for retransmissions).
pub struct Call {
    /// The phone's DN, the gateway's called number, or the caller's destination.
    pub dn: Box<str>,
    pub role: Role,
    pub media: Option<crate::media::MediaSession>,
    pub remote_media: Option<SocketAddr>,
    pub started: Instant,
    /// Over for us; kept a little for retransmissions (see `Timer::Forget`).
    pub ended: bool,
}

pub enum Role {
    Answer(Box<Answer>),
    Place(Box<Place>),
}

/// The simulator's state.
pub struct Engine {
    pub(crate) config: Arc<PhoneConfig>,
    pub(crate) policy: RegistrationPolicy,
    pub(crate) local: SocketAddr,
    pub(crate) transport: TransportKind,
    pub(crate) faults: Faults,
    pub(crate) journal: Journal,
    pub(crate) metrics: Arc<SimMetrics>,
    /// Registrar addresses in preference order.
    pub(crate) registrars: Vec<SocketAddr>,
    pub(crate) lines: Vec<Line>,
    line_of_dn: HashMap<Box<str>, usize>,
    line_of_call_id: HashMap<Box<str>, usize>,
    pub(crate) calls: HashMap<Arc<str>, Call>,
    pub(crate) txs: ClientTxs<TxOwner>,
    pub(crate) timers: Deadlines<Timer>,
    outbox: Vec<Out>,
    pub(crate) silent: mpsc::Sender<MediaSilent>,
    /// Per-phone fault links apply in here when phones share the socket (see `phone_cut`).
    shared_socket: bool,
}

impl Engine {
    pub fn new(
        config: Arc<PhoneConfig>,
        local: SocketAddr,
        faults: Faults,
        journal: Journal,
        metrics: Arc<SimMetrics>,
        silent: mpsc::Sender<MediaSilent>,
    ) -> Engine {
        let policy = RegistrationPolicy {
            registrars: config.registrars.len().max(1),
            expires: config.expires,
            refresh_ratio: config.refresh_ratio,
            backoff: config.backoff,
        };
        let mut lines = Vec::with_capacity(config.dns.len());
        let mut line_of_dn = HashMap::with_capacity(config.dns.len());
        let mut line_of_call_id = HashMap::with_capacity(config.dns.len());
        for (i, dn) in config.dns.iter().enumerate() {
            let call_id: Box<str> = sipcore::call_id().into();
            line_of_dn.insert(dn.as_str().into(), i);
            line_of_call_id.insert(call_id.clone(), i);
            lines.push(Line {
                dn: dn.as_str().into(),
                reg: Registration::new(&policy),
                call_id,
                cseq: 0,
                pending: None,
            });
        }
        let transport = match config.transport {
            Transport::Udp => TransportKind::Udp,
            Transport::Tcp => TransportKind::Tcp,
        };
        // Enough for every phone to have a REGISTER in flight plus the calls' requests.
        let tx_capacity = lines.len() + 2 * config.max_calls + 16;
        Engine {
            txs: ClientTxs::new(config.sip_timers, tx_capacity),
            shared_socket: config.dns.len() != 1,
            registrars: config.registrars.clone(),
            policy,
            local,
            transport,
            faults,
            journal,
            metrics,
            lines,
            line_of_dn,
            line_of_call_id,
            calls: HashMap::new(),
            timers: Deadlines::default(),
            outbox: Vec::new(),
            silent,
            config,
        }
    }

    /// Schedules every phone's first REGISTER, paced by `start_rate`.
    pub fn start(&mut self, now: Instant) {
        let rate = self.config.start_rate;
        for i in 0..self.lines.len() {
            let at = if rate == 0 {
                now
            } else {
                now + Duration::from_secs_f64(i as f64 / f64::from(rate))
            };
            self.timers.at(at, Timer::Start(i));
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next()
    }

    pub fn take_outbox(&mut self) -> Vec<Out> {
        std::mem::take(&mut self.outbox)
    }

    pub(crate) fn send(&mut self, dest: Source, bytes: Bytes, tx: Option<Box<str>>) {
        self.outbox.push(Out { dest, bytes, tx });
    }

    pub(crate) fn random_unit() -> f64 {
        rand::random::<f64>()
    }

    /// Whether the fault layer cuts this phone's own link `sip:<dn>` right now. Phones that
    /// share a socket cannot each have a socket-level link, so their rules apply here to whole
    /// messages (drop, reject, loss; `delay` applies to the shared socket's link only). When the
    /// socket's link is already faulted the transport has applied that rule; not applying a
    /// second matching rule keeps a `sip:*` loss rate what it says.
    pub(crate) fn phone_cut(&self, dn: &str, peer: SocketAddr) -> bool {
        if !self.shared_socket {
            return false;
        }
        let socket = self.faults.verdict(&self.config.sip_link(), Some(peer));
        if !socket.is_clear() {
            return false;
        }
        let v = self.faults.verdict(&format!("sip:{dn}"), Some(peer));
        v.reject || v.loses_one()
    }

    // ----------------------------------------------------------------------------- inputs

    pub fn on_sip(&mut self, incoming: Incoming, now: Instant) {
        let source = incoming.source;
        match incoming.msg {
            IncomingMessage::Sip(SipMessage::Response(resp)) => self.on_response(resp, source, now),
            IncomingMessage::Sip(SipMessage::Request(req)) => self.on_request(req, source, now),
            IncomingMessage::Invalid { raw, error } => {
                tracing::debug!(from = %source.remote, %error, "malformed SIP message");
                if let Some(bytes) = sipcore::bad_request_response(&raw, &error.to_string()) {
                    self.send(source, bytes, None);
                }
            }
        }
    }

    fn on_response(&mut self, resp: rsip::Response, source: Source, now: Instant) {
        let code = resp.status_code.code();
        let Some(key) = crate::client_tx::key_of(&resp) else {
            return;
        };
        let call_id = fields::call_id(&resp).unwrap_or_default();
        if let Some(&line) = self.line_of_call_id.get(call_id) {
            if self.phone_cut(&self.lines[line].dn, source.remote) {
                return;
            }
            if let Some(TxOwner::Register(_)) = self.txs.on_response(&key, code) {
                self.on_register_response(line, &key, &resp, now);
            }
            return;
        }
        let owner = self.txs.on_response(&key, code);
        match (owner, fields::cseq(&resp)) {
            (Some(TxOwner::Ending(id)), _) => {
                tracing::debug!(call_id = %id, code, "BYE/CANCEL answered")
            }
            // INVITE responses go to the call even after its transaction ended: a 2xx
            // retransmission must be ACKed again.
            (_, Ok((_, Method::Invite))) => self.placed_call_response(&resp, now),
            _ => tracing::trace!(code, "stray response"),
        }
    }

    fn on_request(&mut self, req: rsip::Request, source: Source, now: Instant) {
        let Ok(call_id) = fields::call_id(&req).map(Arc::<str>::from) else {
            return self.reply(&req, source, 400);
        };
        if let Some(call) = self.calls.get(&call_id) {
            if self.phone_cut(&call.dn, source.remote) {
                return;
            }
            return self.in_dialog_request(req, source, &call_id, now);
        }
        match req.method {
            Method::Invite if matches!(fields::to_tag(&req), Ok(None)) => {
                self.new_invite(req, source, call_id, now)
            }
            Method::Options => {
                let mut ok = response_for(&req, status(200));
                builder::set_header(&mut ok, rsip::Header::Allow(ALLOW.into()));
                self.send(source, Bytes::from(ok.to_string()), None);
            }
            Method::Ack => {}
            _ => self.reply(&req, source, 481),
        }
    }

    fn in_dialog_request(
        &mut self,
        req: rsip::Request,
        source: Source,
        id: &Arc<str>,
        now: Instant,
    ) {
        if req.method == Method::Options {
            // The node's session audit: answering it keeps the call alive there.
            let mut ok = response_for(&req, status(200));
            builder::set_header(&mut ok, rsip::Header::Allow(ALLOW.into()));
            return self.send(source, Bytes::from(ok.to_string()), None);
        }
        match self.calls.get(id).map(|c| &c.role) {
            Some(Role::Answer(_)) => self.answer_dialog_request(req, source, id, now),
            Some(Role::Place(_)) => self.place_dialog_request(req, source, id, now),
            None => {}
        }
    }

    pub(crate) fn reply(&mut self, req: &rsip::Request, source: Source, code: u16) {
        let resp = response_for(req, status(code));
        self.send(source, Bytes::from(resp.to_string()), None);
    }

    /// Handles the due timers, at most [`TIMER_BATCH`] of them: the rest stay due, so the task
    /// reads the responses in between instead of queueing a whole storm's worth of them.
    pub fn on_timer(&mut self, now: Instant) {
        for _ in 0..TIMER_BATCH {
            let Some(timer) = self.timers.pop_due(now) else {
                break;
            };
            match timer {
                Timer::Start(line) => {
                    let step = self.lines[line].reg.start();
                    self.apply(line, step, now);
                }
                Timer::Registration(line) => {
                    let step = self.lines[line].reg.on_timer(now);
                    self.apply(line, step, now);
                }
                Timer::Tx(branch) => self.tx_timer(&branch, now),
                Timer::Call(id) => self.call_timer(&id, now),
                Timer::Resend2xx(id) => self.resend_2xx(&id, now),
                Timer::Forget(id) => self.forget(&id),
            }
        }
    }

    fn tx_timer(&mut self, branch: &str, now: Instant) {
        match self.txs.on_timer(branch, now) {
            TxTimer::Resend(dest, bytes, next) => {
                let cut = match self.txs.owner(branch) {
                    Some(TxOwner::Register(line)) => {
                        self.phone_cut(&self.lines[*line].dn, dest.remote)
                    }
                    _ => false,
                };
                if !cut {
                    self.send(dest, bytes, None);
                }
                self.timers.at(next, Timer::Tx(branch.into()));
            }
            TxTimer::Wait(next) => self.timers.at(next, Timer::Tx(branch.into())),
            TxTimer::TimedOut(owner) => self.tx_failed(owner, Failure::Timeout, now),
            TxTimer::Idle => {}
        }
    }

    /// A request could not be sent (the transport refused it at once).
    pub fn on_send_failed(&mut self, key: &str, now: Instant) {
        if let Some(owner) = self.txs.abandon(key) {
            self.tx_failed(owner, Failure::Transport, now);
        }
    }

    fn tx_failed(&mut self, owner: TxOwner, failure: Failure, now: Instant) {
        match owner {
            TxOwner::Register(line) => {
                self.lines[line].pending = None;
                let step = self.lines[line].reg.on_failure(
                    &self.policy,
                    failure,
                    now,
                    Self::random_unit(),
                );
                self.apply(line, step, now);
            }
            TxOwner::Invite(id) => self.placed_call_failed(&id, now),
            TxOwner::Ending(id) => {
                tracing::debug!(call_id = %id, failure = %failure.describe(), "BYE/CANCEL got no answer")
            }
        }
    }

    /// Sends `req` in a new client transaction owned by `owner`.
    pub(crate) fn send_request(
        &mut self,
        req: &rsip::Request,
        owner: TxOwner,
        dest: Source,
        now: Instant,
    ) -> bool {
        let Some(key) = crate::client_tx::key_of(req) else {
            return false;
        };
        let bytes = Bytes::from(req.to_string());
        let invite = req.method == Method::Invite;
        match self
            .txs
            .start(&key, owner, bytes.clone(), dest, invite, now)
        {
            Ok(wake) => {
                self.timers.at(wake, Timer::Tx(key.clone()));
                self.send(dest, bytes, Some(key));
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "request not sent");
                false
            }
        }
    }

    pub fn on_command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Place { plan, report } => self.place_call(plan, report, now),
            Command::HangUp { dn, done } => {
                let _ = done.send(self.hang_up(&dn, now));
            }
            Command::Snapshot(reply) => {
                let _ = reply.send(self.snapshot(now));
            }
        }
    }

    // -------------------------------------------------------------------------- inspection

    pub fn snapshot(&self, now: Instant) -> Value {
        let phones: Vec<Value> = self
            .lines
            .iter()
            .map(|l| {
                json!({
                    "dn": l.dn,
                    "registered": l.reg.is_registered(now),
                    "registrar": l.reg.registrar().and_then(|i| self.registrars.get(i)).map(|a| a.to_string()),
                    "state": format!("{:?}", l.reg.state()).split([' ', '{']).next().unwrap_or(""),
                })
            })
            .collect();
        let calls: Vec<Value> = self
            .calls
            .iter()
            .map(|(id, c)| {
                json!({
                    "call_id": &**id,
                    "dn": c.dn,
                    "phase": c.phase_name(),
                    "media": c.media.as_ref().map(|m| m.stats()),
                    "remote_media": c.remote_media.map(|a| a.to_string()),
                    "age_ms": now.saturating_duration_since(c.started).as_millis() as u64,
                })
            })
            .collect();
        json!({
            "name": self.config.name,
            "sip": self.local.to_string(),
            "link": self.config.sip_link(),
            "registrars": self.registrars.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "registered": self.metrics.registered.get(),
            "phones": phones,
            "calls": calls,
            "transactions": self.txs.len(),
            "timers": self.timers.len(),
        })
    }

    /// Whether a phone of this simulator has `dn` (a new INVITE for another gets 404).
    pub(crate) fn has_line(&self, dn: &str) -> bool {
        self.line_of_dn.contains_key(dn)
    }
}

impl Call {
    pub fn phase_name(&self) -> &'static str {
        match &self.role {
            Role::Answer(a) => a.phase_name(),
            Role::Place(p) => p.phase_name(),
        }
    }
}
