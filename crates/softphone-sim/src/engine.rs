//! The state of every phone of one simulator and what each input does to it: a SIP message, a
//! timer, a command, a media task going silent. One task owns it (`swarm.rs`) and sends the
//! outbox after each input, so this file holds no sockets. Calls are in `answering.rs` and
//! `placing.rs`.
//!
//! Demultiplexing on the shared socket: a response to a REGISTER names its phone and CSeq in its
//! Via branch (`register_request.rs`), other responses go by Via branch through the client
//! transaction table, requests by Call-ID to their call, and a new INVITE by the user part of its
//! Request-URI (the DN in the Contact we registered). UDP datagrams arrive raw
//! ([`Engine::on_datagram`]) so registrars' responses skip the full parser.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use netfault::Faults;
use nodekit::Journal;
use rsip::{Method, SipMessage};
use serde_json::{json, Value};
use sipcore::builder::{self, status};
use sipcore::rsip;
use sipcore::transport::{Incoming, IncomingMessage, Source, TransportKind};
use sipcore::{fields, response_for, Datagram};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::answering::Answer;
use crate::config::{PhoneConfig, Transport};
use crate::deadlines::Deadlines;
use crate::media::MediaSilent;
use crate::metrics::SimMetrics;
use crate::placing::{CallPlan, CallReport, Place};
use crate::register_request::RegisterText;
use crate::registration::{Failure, Registration, RegistrationPolicy};
use sipcore::client_transaction::{ClientTxs, TxClock, TxTimer};

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
    pub tx: Option<TxRef>,
}

/// A client transaction: a phone's REGISTER or an entry of the transaction table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxRef {
    Register { line: u32, cseq: u32 },
    Key(Box<str>),
}

/// Who waits for the outcome of a transaction in the table (REGISTERs live in their line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxOwner {
    /// A placed call's INVITE.
    Invite(Arc<str>),
    /// BYE or CANCEL of a call: only logged, the call is already over for us.
    Ending(Arc<str>),
}

/// What a wake-up is for.
#[derive(Debug)]
pub enum Timer {
    Registration(usize),
    /// A phone's REGISTER transaction (stale when the line has moved on to another CSeq).
    RegisterTx {
        line: u32,
        cseq: u32,
    },
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
    /// Stop every phone and remove its binding (REGISTER `Expires: 0`): `started` gets how
    /// many were sent, `done` fires once each has a final response or timed out.
    Unregister {
        started: oneshot::Sender<usize>,
        done: oneshot::Sender<()>,
    },
}

/// One phone (DN) and its registration. Its Call-ID and branches derive from its index.
pub(crate) struct Line {
    pub dn: Box<str>,
    pub reg: Registration,
    pub cseq: u32,
    /// The REGISTER in flight: responses to older ones are ignored.
    pub tx: Option<RegisterTx>,
}

/// A REGISTER in flight: enough to write the identical request again for a retransmission.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RegisterTx {
    pub cseq: u32,
    pub registrar: usize,
    /// 0: an unregistration at shutdown (a registration asks for at least 1 s, see `config.rs`).
    pub expires: u32,
    pub clock: TxClock,
}

/// Whether any fault rule exists, re-read only when the rules change: with none (always, in a
/// benchmark) nothing per message asks the fault layer, and the swarm's socket takes batches.
pub(crate) struct FaultGate {
    faults: Faults,
    rules: watch::Receiver<u64>,
    seen: std::cell::Cell<u64>,
    active: std::cell::Cell<bool>,
}

impl FaultGate {
    pub fn new(faults: Faults) -> Self {
        let rules = faults.watch_rules();
        let seen = *rules.borrow();
        let active = !faults.list().is_empty();
        FaultGate {
            faults,
            rules,
            seen: seen.into(),
            active: active.into(),
        }
    }

    pub fn active(&self) -> bool {
        let generation = *self.rules.borrow();
        if generation != self.seen.get() {
            self.seen.set(generation);
            self.active.set(!self.faults.list().is_empty());
        }
        self.active.get()
    }
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
    /// The same as text, for the journal (one entry per registration).
    pub(crate) registrar_names: Vec<Box<str>>,
    pub(crate) lines: Vec<Line>,
    line_of_dn: HashMap<Box<str>, usize>,
    pub(crate) register_text: RegisterText,
    /// Phones with a REGISTER in flight (lines whose `tx` is set).
    pub(crate) registers_in_flight: usize,
    /// Shutting down: unregistrations still waiting for their outcome, and who to tell.
    pub(crate) unregistering: Option<(usize, oneshot::Sender<()>)>,
    /// Where REGISTERs are written; each is split off as its own `Bytes`.
    pub(crate) out_buf: BytesMut,
    pub(crate) gate: FaultGate,
    pub(crate) calls: HashMap<Arc<str>, Call>,
    pub(crate) txs: ClientTxs<TxOwner>,
    pub(crate) timers: Deadlines<Timer>,
    /// The next phone to send its first REGISTER (all started: `lines.len()`); phone `i` starts
    /// `i / start_rate` seconds after `started`. A cursor rather than a timer per phone.
    pub(crate) next_start: usize,
    started: Instant,
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
            failover: config.failover,
        };
        let mut lines = Vec::with_capacity(config.dns.len());
        let mut line_of_dn = HashMap::with_capacity(config.dns.len());
        for (i, dn) in config.dns.iter().enumerate() {
            line_of_dn.insert(dn.as_str().into(), i);
            lines.push(Line {
                dn: dn.as_str().into(),
                reg: Registration::new(&policy),
                cseq: 0,
                tx: None,
            });
        }
        let transport = match config.transport {
            Transport::Udp => TransportKind::Udp,
            Transport::Tcp => TransportKind::Tcp,
        };
        // The calls' requests (REGISTERs are not in the table).
        let tx_capacity = 2 * config.max_calls + 16;
        Engine {
            register_text: RegisterText::new(&config.registrars, local, transport),
            registers_in_flight: 0,
            unregistering: None,
            out_buf: BytesMut::new(),
            gate: FaultGate::new(faults.clone()),
            txs: ClientTxs::new(config.sip_timers, tx_capacity),
            shared_socket: config.dns.len() != 1,
            registrars: config.registrars.clone(),
            registrar_names: config
                .registrars
                .iter()
                .map(|a| a.to_string().into())
                .collect(),
            policy,
            local,
            transport,
            faults,
            journal,
            metrics,
            lines,
            line_of_dn,
            calls: HashMap::new(),
            timers: Deadlines::default(),
            next_start: usize::MAX,
            started: Instant::now(),
            outbox: Vec::new(),
            silent,
            config,
        }
    }

    /// Schedules every phone's first REGISTER, paced by `start_rate`.
    pub fn start(&mut self, now: Instant) {
        self.next_start = 0;
        self.started = now;
    }

    /// When the next phone not started yet is due to start.
    fn next_start_at(&self) -> Option<Instant> {
        if self.next_start >= self.lines.len() {
            return None;
        }
        Some(match self.config.start_rate {
            0 => self.started,
            rate => {
                self.started + Duration::from_secs_f64(self.next_start as f64 / f64::from(rate))
            }
        })
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.timers.next(), self.next_start_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves the outbox into `into` (empty), keeping both allocations for the next round.
    pub fn take_outbox(&mut self, into: &mut Vec<Out>) {
        std::mem::swap(&mut self.outbox, into);
    }

    /// Requests waiting for a response: a swarm in a storm has thousands.
    pub fn requests_in_flight(&self) -> usize {
        self.registers_in_flight + self.txs.len()
    }

    /// Whether a fault rule exists (then traffic goes through the fault layer one by one).
    pub fn faults_active(&self) -> bool {
        self.gate.active()
    }

    pub(crate) fn send(&mut self, dest: Source, bytes: Bytes, tx: Option<TxRef>) {
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
        if !self.shared_socket || !self.gate.active() {
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

    /// A UDP datagram as it arrived: a registrar's response to a REGISTER is read in place
    /// (`register_reply.rs`); anything else, or anything that reader leaves, is parsed in full.
    pub fn on_datagram(&mut self, datagram: &[u8], from: SocketAddr, now: Instant) {
        if let Some(r) = crate::register_reply::parse(datagram) {
            if let Some((line, cseq)) = self.register_text.owner(r.branch, r.call_id) {
                let reply = (r.code, r.granted, r.min_expires);
                return self.on_register_reply(line, cseq, from, reply, now);
            }
        }
        let source = Source::udp(from);
        let msg = match sipcore::parse_datagram(datagram) {
            Ok(Datagram::Message(m)) => IncomingMessage::Sip(m),
            Ok(Datagram::KeepAlive) => return,
            Err(error) => IncomingMessage::Invalid {
                raw: Bytes::copy_from_slice(datagram),
                error,
            },
        };
        self.on_sip(Incoming { msg, source }, now);
    }

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
        let Some(key) = sipcore::client_transaction::key_of(&resp) else {
            return;
        };
        let call_id = fields::call_id(&resp).unwrap_or_default();
        let branch = fields::top_via(&resp).ok().and_then(|v| v.branch);
        if let Some((line, cseq)) = branch.and_then(|b| self.register_text.owner(b, call_id)) {
            let reply = (
                code,
                crate::dialog::granted_expires(&resp),
                crate::dialog::min_expires(&resp),
            );
            return self.on_register_reply(line, cseq, source.remote, reply, now);
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

    /// Handles the due phone starts and timers, at most [`TIMER_BATCH`] of them: the rest stay
    /// due, so the task reads the responses in between instead of queueing a whole storm of them.
    pub fn on_timer(&mut self, now: Instant) {
        let mut budget = TIMER_BATCH;
        while budget > 0 && self.next_start_at().is_some_and(|at| at <= now) {
            let line = self.next_start;
            self.next_start += 1;
            budget -= 1;
            let step = self.lines[line].reg.start();
            self.apply(line, step, now);
        }
        for _ in 0..budget {
            let Some(timer) = self.timers.pop_due(now) else {
                break;
            };
            match timer {
                Timer::Registration(line) => {
                    let step = self.lines[line].reg.on_timer(now);
                    self.apply(line, step, now);
                }
                Timer::RegisterTx { line, cseq } => self.register_tx_timer(line, cseq, now),
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
                self.send(dest, bytes, None);
                self.timers.at(next, Timer::Tx(branch.into()));
            }
            TxTimer::Wait(next) => self.timers.at(next, Timer::Tx(branch.into())),
            TxTimer::TimedOut(owner) => self.tx_failed(owner, Failure::Timeout, now),
            TxTimer::Idle => {}
        }
    }

    /// A request could not be sent (the transport refused it at once).
    pub fn on_send_failed(&mut self, tx: &TxRef, now: Instant) {
        match tx {
            TxRef::Register { line, cseq } => {
                self.register_failed(*line, *cseq, Failure::Transport, now)
            }
            TxRef::Key(key) => {
                if let Some(owner) = self.txs.abandon(key) {
                    self.tx_failed(owner, Failure::Transport, now);
                }
            }
        }
    }

    fn tx_failed(&mut self, owner: TxOwner, failure: Failure, now: Instant) {
        match owner {
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
        let Some(key) = sipcore::client_transaction::key_of(req) else {
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
                self.send(dest, bytes, Some(TxRef::Key(key)));
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
            Command::Unregister { started, done } => {
                let _ = started.send(self.unregister_all(done, now));
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
