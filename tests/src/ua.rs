//! Minimal SIP user agents over UDP for end-to-end tests of the B2BUA (docs/protocols.md §4):
//! [`TestPhone`], a registered softphone answering per [`AnswerMode`] (including 3pcc
//! `NOTIFY Event: talk`), and [`TestCaller`], an inbound caller. Each runs its socket in a spawned
//! task, reports what it saw on a bounded channel, and logs and ignores what it does not expect.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use sipcore::builder::status as sip_status;
use sipcore::builder::{
    ack_for, add_contact, cancel_for, sdp_offer, set_header, set_response_body,
};
use sipcore::client_transaction::{Tick, TxClock};
use sipcore::rsip::{self, headers, prelude::*, Header, Method};
use sipcore::{fields, parse_datagram, response_for, Datagram, RequestBuilder, TimerConfig};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
/// Timer B/F/H (64·T1): how long requests and unacknowledged finals are retransmitted.
const TX_LIFETIME: Duration = Duration::from_secs(32);
/// How long `register`, `hang_up`, `cancel` and `notify` wait for their final response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const EVENTS: usize = 256;
const MAX_CALLS: usize = 128;
const MAX_TXS: usize = 128;
const TICK: Duration = Duration::from_millis(20);

/// A message's headers as `(name, value)` pairs, in order.
pub type Headers = Vec<(String, String)>;

/// First value of header `name` (case-insensitive).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn headers_of(h: &rsip::Headers) -> Headers {
    h.iter()
        .filter_map(|h| {
            let s = h.to_string();
            let (n, v) = s.split_once(':')?;
            Some((n.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

fn call_id_of<M: HeadersExt>(m: &M) -> String {
    fields::call_id(m).unwrap_or_default().to_owned()
}

fn branch_of<M: HeadersExt>(m: &M) -> Option<String> {
    Some(fields::top_via(m).ok()?.branch?.to_owned())
}

/// Transaction key of a request or response: top Via branch + CSeq method.
fn tx_key<M: HeadersExt>(m: &M) -> Option<(String, String)> {
    Some((branch_of(m)?, fields::cseq(m).ok()?.1.to_string()))
}

/// `host:port` of a SIP URI (5060 when the port is absent), if the host is an IP address.
fn uri_addr(uri: &rsip::Uri) -> Option<SocketAddr> {
    let hp = uri.host_with_port.to_string();
    hp.parse().or_else(|_| format!("{hp}:5060").parse()).ok()
}

/// Stable `;tag=` for a To value.
fn tagged(value: &str, tag: &str) -> String {
    format!("{value};tag={tag}")
}

fn emit<T>(tx: &mpsc::Sender<T>, who: SocketAddr, ev: T) {
    if tx.try_send(ev).is_err() {
        eprintln!("ua {who}: event channel full or closed, event dropped");
    }
}

/// Receives from `rx` until `pred` matches (other events are discarded) or `timeout` passes.
async fn wait_on<T: std::fmt::Debug>(
    rx: &mut mpsc::Receiver<T>,
    mut pred: impl FnMut(&T) -> bool,
    timeout: Duration,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match timeout_at(deadline, rx.recv()).await {
            Err(_) => bail!("no matching event within {timeout:?}"),
            Ok(None) => bail!("user agent task ended"),
            Ok(Some(ev)) if pred(&ev) => return Ok(ev),
            Ok(Some(ev)) => eprintln!("ua: skipping {ev:?}"),
        }
    }
}

async fn await_reply(rx: oneshot::Receiver<rsip::Response>, what: &str) -> Result<u16> {
    match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
        Err(_) => bail!("{what}: no final response within {REQUEST_TIMEOUT:?}"),
        Ok(Err(_)) => bail!("{what}: not sent (no such dialog) or transaction timed out"),
        Ok(Ok(r)) => Ok(r.status_code.code()),
    }
}

/// The RFC 3261 timers (T1 500 ms, T2 4 s): client transactions resend and time out on them.
fn timers() -> TimerConfig {
    TimerConfig {
        t1: T1,
        t2: T2,
        ..TimerConfig::default()
    }
}

/// Client non-INVITE transactions (Timers E/F) and sending, shared by both agents.
struct Wire {
    socket: UdpSocket,
    local: SocketAddr,
    txs: HashMap<(String, String), ClientTx>,
}

struct ClientTx {
    bytes: Vec<u8>,
    dest: SocketAddr,
    clock: TxClock,
    /// When the clock wants to be asked again.
    next: Instant,
    reply: oneshot::Sender<rsip::Response>,
}

impl Wire {
    async fn bind() -> Result<Wire> {
        let socket = UdpSocket::bind("127.0.0.1:0").await.context("bind UDP")?;
        let local = socket.local_addr()?;
        Ok(Wire {
            socket,
            local,
            txs: HashMap::new(),
        })
    }

    async fn send(&self, msg: &impl ToString, dest: SocketAddr) {
        if let Err(e) = self.socket.send_to(msg.to_string().as_bytes(), dest).await {
            eprintln!("ua {}: send to {dest}: {e}", self.local);
        }
    }

    /// Sends a non-INVITE request; its final response goes to `reply`.
    async fn request(
        &mut self,
        req: rsip::Request,
        dest: SocketAddr,
        reply: oneshot::Sender<rsip::Response>,
    ) {
        let Some(key) = tx_key(&req) else { return };
        if self.txs.len() >= MAX_TXS {
            eprintln!(
                "ua {}: too many transactions, {} not sent",
                self.local, req.method
            );
            return;
        }
        self.send(&req, dest).await;
        let now = Instant::now();
        let bytes = req.to_string().into_bytes();
        let (clock, next) = TxClock::start(&timers(), false, false, now);
        let tx = ClientTx {
            bytes,
            dest,
            clock,
            next,
            reply,
        };
        self.txs.insert(key, tx);
    }

    /// Consumes a response to one of our transactions (true) or leaves it to the caller (false).
    fn on_response(&mut self, resp: &rsip::Response) -> bool {
        let Some(key) = tx_key(resp) else {
            return false;
        };
        if resp.status_code.code() < 200 {
            if let Some(tx) = self.txs.get_mut(&key) {
                tx.clock.on_provisional(&timers());
                return true;
            }
            return false;
        }
        match self.txs.remove(&key) {
            Some(tx) => {
                let _ = tx.reply.send(resp.clone());
                true
            }
            None => false,
        }
    }

    async fn tick(&mut self, now: Instant) {
        let mut timed_out = Vec::new();
        for (key, tx) in self.txs.iter_mut().filter(|(_, tx)| tx.next <= now) {
            match tx.clock.on_timer(&timers(), now) {
                Tick::Resend(next) => {
                    tx.next = next;
                    let _ = self.socket.send_to(&tx.bytes, tx.dest).await;
                }
                Tick::Wait(next) => tx.next = next,
                Tick::TimedOut => timed_out.push(key.clone()),
            }
        }
        for key in timed_out {
            self.txs.remove(&key);
        }
    }

    /// Next message from the socket, or `None` for anything unparseable (logged).
    async fn recv(&self, buf: &mut [u8]) -> Option<(rsip::SipMessage, SocketAddr)> {
        let (n, src) = match self.socket.recv_from(buf).await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("ua {}: recv: {e}", self.local);
                return None;
            }
        };
        match parse_datagram(&buf[..n]) {
            Ok(Datagram::Message(m)) => Some((m, src)),
            Ok(Datagram::KeepAlive) => None,
            Err(e) => {
                eprintln!("ua {}: unparseable datagram from {src}: {e}", self.local);
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TestPhone

/// How the phone answers an INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerMode {
    /// 180 then 200 at once.
    Auto,
    /// 180, then 200 after the delay.
    AfterDelay(Duration),
    /// 180, then 200 only after a NOTIFY with `Event: talk` (answered 200 first).
    OnNotifyTalk,
    /// 180, then this final error status.
    Reject(u16),
    /// 180 only.
    Never,
}

/// What the phone saw or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhoneEvent {
    Invite {
        call_id: String,
        request_uri: String,
        from_user: String,
        sdp: String,
        /// `X-Genesys-CallUUID`, if present.
        call_uuid: Option<String>,
        headers: Headers,
    },
    /// A re-INVITE in a confirmed dialog (answered 200 with SDP).
    ReInvite {
        call_id: String,
        sdp: String,
    },
    /// The phone sent this final response to the INVITE.
    Answered {
        call_id: String,
        status: u16,
    },
    Ack {
        call_id: String,
    },
    Bye {
        call_id: String,
    },
    Cancel {
        call_id: String,
    },
    /// A NOTIFY, its `Event` value and the status the phone answered (481 outside a dialog).
    Notify {
        call_id: String,
        event: String,
        status: u16,
    },
    Options,
    /// Final response to the phone's own BYE.
    ByeAnswered {
        call_id: String,
        status: u16,
    },
}

enum PhoneCmd {
    Request {
        req: Box<rsip::Request>,
        dest: SocketAddr,
        reply: oneshot::Sender<rsip::Response>,
    },
    HangUp {
        reply: oneshot::Sender<rsip::Response>,
    },
}

/// A registered softphone on 127.0.0.1 UDP.
pub struct TestPhone {
    local: SocketAddr,
    mode: Arc<Mutex<AnswerMode>>,
    cmd: mpsc::Sender<PhoneCmd>,
    events: mpsc::Receiver<PhoneEvent>,
    task: JoinHandle<()>,
}

impl Drop for TestPhone {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestPhone {
    pub async fn bind() -> Result<TestPhone> {
        let wire = Wire::bind().await?;
        let local = wire.local;
        let mode = Arc::new(Mutex::new(AnswerMode::Auto));
        let (cmd, cmd_rx) = mpsc::channel(16);
        let (ev_tx, events) = mpsc::channel(EVENTS);
        let phone = PhoneTask {
            wire,
            mode: mode.clone(),
            events: ev_tx,
            calls: HashMap::new(),
            answered: None,
        };
        let task = tokio::spawn(phone.run(cmd_rx));
        Ok(TestPhone {
            local,
            mode,
            cmd,
            events,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Answer mode for INVITEs arriving from now on (default [`AnswerMode::Auto`]).
    pub fn set_answer(&self, mode: AnswerMode) {
        *self.mode.lock().unwrap_or_else(|e| e.into_inner()) = mode;
    }

    /// REGISTER `dn` at `node_sip` (Contact = this phone); returns the final status.
    pub async fn register(&self, node_sip: SocketAddr, dn: &str, expires: u32) -> Result<u16> {
        let aor = format!("sip:{dn}@{}", node_sip.ip());
        let req = RequestBuilder::register(&format!("sip:{node_sip}"), &aor, self.local, expires)
            .build()?;
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(PhoneCmd::Request {
                req: Box::new(req),
                dest: node_sip,
                reply,
            })
            .await?;
        await_reply(rx, "REGISTER").await
    }

    /// BYE in the most recently answered dialog; returns the final status.
    pub async fn hang_up(&self) -> Result<u16> {
        let (reply, rx) = oneshot::channel();
        self.cmd.send(PhoneCmd::HangUp { reply }).await?;
        await_reply(rx, "BYE").await
    }

    pub async fn next_event(&mut self, timeout: Duration) -> Result<PhoneEvent> {
        wait_on(&mut self.events, |_| true, timeout).await
    }

    /// The first event matching `pred`; earlier ones are discarded.
    pub async fn wait_for(
        &mut self,
        pred: impl FnMut(&PhoneEvent) -> bool,
        timeout: Duration,
    ) -> Result<PhoneEvent> {
        wait_on(&mut self.events, pred, timeout).await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Ringing,
    Final(u16),
    Ended,
}

struct PhoneCall {
    invite: rsip::Request,
    src: SocketAddr,
    tag: String,
    mode: AnswerMode,
    stage: Stage,
    last: Option<rsip::Response>,
    answer_at: Option<Instant>,
    /// Timer G: (next retransmission, interval, give up) of the final until ACK.
    retx: Option<(Instant, Duration, Instant)>,
    cseq: u32,
}

struct PhoneTask {
    wire: Wire,
    mode: Arc<Mutex<AnswerMode>>,
    events: mpsc::Sender<PhoneEvent>,
    calls: HashMap<String, PhoneCall>,
    answered: Option<String>,
}

impl PhoneTask {
    async fn run(mut self, mut cmds: mpsc::Receiver<PhoneCmd>) {
        let mut buf = vec![0u8; 65536];
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                m = self.wire.recv(&mut buf) => match m {
                    Some((rsip::SipMessage::Request(r), src)) => self.on_request(r, src).await,
                    Some((rsip::SipMessage::Response(r), _)) => self.on_response(r),
                    None => {}
                },
                c = cmds.recv() => match c {
                    Some(PhoneCmd::Request { req, dest, reply }) => self.wire.request(*req, dest, reply).await,
                    Some(PhoneCmd::HangUp { reply }) => self.hang_up(reply).await,
                    None => return,
                },
                _ = tick.tick() => self.tick().await,
            }
        }
    }

    fn emit(&self, ev: PhoneEvent) {
        emit(&self.events, self.wire.local, ev);
    }

    fn on_response(&mut self, r: rsip::Response) {
        let is_bye = matches!(fields::cseq(&r), Ok((_, Method::Bye)));
        let status = r.status_code.code();
        if !self.wire.on_response(&r) {
            eprintln!("phone {}: stray response {status}", self.wire.local);
        } else if is_bye && status >= 200 {
            self.emit(PhoneEvent::ByeAnswered {
                call_id: call_id_of(&r),
                status,
            });
        }
    }

    async fn reply(&self, req: &rsip::Request, code: u16, src: SocketAddr) {
        self.wire
            .send(&response_for(req, sip_status(code)), src)
            .await;
    }

    async fn on_request(&mut self, req: rsip::Request, src: SocketAddr) {
        let call_id = call_id_of(&req);
        let known = self
            .calls
            .get(&call_id)
            .map(|c| (c.stage, branch_of(&c.invite)));
        match (req.method, known) {
            (Method::Invite, None) => self.new_invite(req, src, call_id).await,
            (Method::Invite, Some((_, branch))) if branch == branch_of(&req) => {
                if let Some(last) = self.calls.get(&call_id).and_then(|c| c.last.clone()) {
                    self.wire.send(&last, src).await;
                }
            }
            (Method::Invite, Some((Stage::Final(200..=299), _))) => {
                let mut ok = response_for(&req, sip_status(200));
                add_contact(&mut ok, &self.contact(&req), None);
                set_response_body(&mut ok, "application/sdp", self.sdp().into_bytes());
                self.wire.send(&ok, src).await;
                self.emit(PhoneEvent::ReInvite {
                    call_id,
                    sdp: String::from_utf8_lossy(&req.body).into(),
                });
            }
            (Method::Ack, Some(_)) => {
                if let Some(c) = self.calls.get_mut(&call_id) {
                    c.retx = None;
                }
                self.emit(PhoneEvent::Ack { call_id });
            }
            (Method::Ack, None) => {
                eprintln!("phone {}: ACK for unknown call {call_id}", self.wire.local)
            }
            (Method::Bye, Some((stage, _))) if stage != Stage::Ended => {
                self.reply(&req, 200, src).await;
                if stage == Stage::Ringing {
                    self.send_final(&call_id, 487).await; // BYE in an early dialog
                }
                if let Some(c) = self.calls.get_mut(&call_id) {
                    c.stage = Stage::Ended;
                }
                self.emit(PhoneEvent::Bye { call_id });
            }
            (Method::Cancel, Some((stage, branch))) if branch == branch_of(&req) => {
                self.reply(&req, 200, src).await;
                if stage == Stage::Ringing {
                    self.send_final(&call_id, 487).await;
                }
                self.emit(PhoneEvent::Cancel { call_id });
            }
            (Method::Notify, known) => {
                let event = fields::event(&req).unwrap_or("").to_owned();
                let status = if known.is_some_and(|k| k.0 != Stage::Ended) {
                    200
                } else {
                    481
                };
                self.reply(&req, status, src).await;
                self.emit(PhoneEvent::Notify {
                    call_id: call_id.clone(),
                    event: event.clone(),
                    status,
                });
                let talk = self.calls.get(&call_id).is_some_and(|c| {
                    c.mode == AnswerMode::OnNotifyTalk && c.stage == Stage::Ringing
                });
                if talk && event.eq_ignore_ascii_case("talk") {
                    self.send_final(&call_id, 200).await;
                }
            }
            (Method::Options, _) => {
                self.reply(&req, 200, src).await;
                self.emit(PhoneEvent::Options);
            }
            (Method::Bye | Method::Cancel | Method::Invite, _) => self.reply(&req, 481, src).await,
            (m, _) => {
                eprintln!("phone {}: {m} not handled, 501", self.wire.local);
                self.reply(&req, 501, src).await;
            }
        }
    }

    fn contact(&self, req: &rsip::Request) -> String {
        let user = req.uri.user().unwrap_or("phone").to_owned();
        format!("<sip:{user}@{}>", self.wire.local)
    }

    fn sdp(&self) -> String {
        sdp_offer(self.wire.local.ip(), self.wire.local.port().wrapping_add(1))
    }

    async fn new_invite(&mut self, req: rsip::Request, src: SocketAddr, call_id: String) {
        if self.calls.len() >= MAX_CALLS {
            self.calls.retain(|_, c| {
                c.retx.is_some() || matches!(c.stage, Stage::Ringing | Stage::Final(200..=299))
            });
            if self.calls.len() >= MAX_CALLS {
                return self.reply(&req, 503, src).await;
            }
        }
        let mode = *self.mode.lock().unwrap_or_else(|e| e.into_inner());
        let h = headers_of(&req.headers);
        self.emit(PhoneEvent::Invite {
            call_id: call_id.clone(),
            request_uri: req.uri.to_string(),
            from_user: fields::from_user(&req).unwrap_or_default(),
            sdp: String::from_utf8_lossy(&req.body).into(),
            call_uuid: header(&h, "X-Genesys-CallUUID").map(str::to_owned),
            headers: h,
        });
        let call = PhoneCall {
            invite: req,
            src,
            tag: sipcore::tag(),
            mode,
            stage: Stage::Ringing,
            last: None,
            answer_at: None,
            retx: None,
            cseq: 1,
        };
        self.calls.insert(call_id.clone(), call);
        let ringing = self.response(&call_id, 180);
        self.store_and_send(&call_id, ringing).await;
        match mode {
            AnswerMode::Auto => self.send_final(&call_id, 200).await,
            AnswerMode::Reject(code) => self.send_final(&call_id, code).await,
            AnswerMode::AfterDelay(d) => {
                if let Some(c) = self.calls.get_mut(&call_id) {
                    c.answer_at = Some(Instant::now() + d);
                }
            }
            AnswerMode::OnNotifyTalk | AnswerMode::Never => {}
        }
    }

    /// A response to the call's INVITE with the dialog's To tag (Contact and SDP for 1xx/2xx).
    fn response(&self, call_id: &str, code: u16) -> Option<rsip::Response> {
        let c = self.calls.get(call_id)?;
        let mut r = response_for(&c.invite, sip_status(code));
        let to = c.invite.to_header().ok()?.value().to_owned();
        set_header(&mut r, Header::To(headers::To::new(tagged(&to, &c.tag))));
        if code < 300 {
            add_contact(&mut r, &self.contact(&c.invite), None);
        }
        if (200..300).contains(&code) {
            set_response_body(&mut r, "application/sdp", self.sdp().into_bytes());
        }
        Some(r)
    }

    async fn store_and_send(&mut self, call_id: &str, r: Option<rsip::Response>) {
        let (Some(r), Some(c)) = (r, self.calls.get_mut(call_id)) else {
            return;
        };
        let src = c.src;
        c.last = Some(r.clone());
        self.wire.send(&r, src).await;
    }

    async fn send_final(&mut self, call_id: &str, code: u16) {
        let r = self.response(call_id, code);
        self.store_and_send(call_id, r).await;
        let now = Instant::now();
        if let Some(c) = self.calls.get_mut(call_id) {
            c.stage = Stage::Final(code);
            c.answer_at = None;
            c.retx = Some((now + T1, T1, now + TX_LIFETIME));
        }
        if (200..300).contains(&code) {
            self.answered = Some(call_id.to_owned());
        }
        self.emit(PhoneEvent::Answered {
            call_id: call_id.to_owned(),
            status: code,
        });
    }

    async fn hang_up(&mut self, reply: oneshot::Sender<rsip::Response>) {
        let local = self.wire.local;
        let Some(call_id) = self.answered.clone() else {
            return eprintln!("phone {local}: hang_up without an answered call");
        };
        let Some(c) = self
            .calls
            .get_mut(&call_id)
            .filter(|c| c.stage != Stage::Ended)
        else {
            return eprintln!("phone {local}: hang_up: call {call_id} already ended");
        };
        c.cseq += 1;
        c.stage = Stage::Ended;
        let target = fields::contact_uri(&c.invite)
            .ok()
            .flatten()
            .unwrap_or_else(|| c.invite.uri.clone());
        let dest = uri_addr(&target).unwrap_or(c.src);
        let (Ok(to), Ok(from)) = (c.invite.to_header(), c.invite.from_header()) else {
            return;
        };
        let bye = RequestBuilder::new(Method::Bye, target.to_string(), local)
            .from(&tagged(to.value(), &c.tag))
            .to(from.value())
            .call_id(call_id.clone())
            .cseq(c.cseq)
            .build();
        match bye {
            Ok(bye) => self.wire.request(bye, dest, reply).await,
            Err(e) => eprintln!("phone {local}: cannot build BYE: {e}"),
        }
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        self.wire.tick(now).await;
        let due: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| c.stage == Stage::Ringing && c.answer_at.is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.send_final(&id, 200).await;
        }
        let mut resend = Vec::new();
        for c in self.calls.values_mut() {
            let Some((next, interval, give_up)) = c.retx else {
                continue;
            };
            if now >= give_up {
                eprintln!(
                    "phone {}: no ACK for {}",
                    self.wire.local,
                    call_id_of(&c.invite)
                );
                c.retx = None;
            } else if now >= next {
                let interval = (interval * 2).min(T2);
                c.retx = Some((now + interval, interval, give_up));
                resend.extend(c.last.clone().map(|r| (r, c.src)));
            }
        }
        for (r, src) in resend {
            self.wire.send(&r, src).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TestCaller

/// A response received by a [`CallerCall`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipReply {
    pub status: u16,
    pub headers: Headers,
    pub body: String,
}

impl SipReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// What a caller's call saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerEvent {
    /// A response to the INVITE (each final reported once; retransmissions only re-ACKed).
    Response(SipReply),
    /// BYE from the far end (answered 200).
    Bye,
    /// Another in-dialog request (answered 200), e.g. NOTIFY, re-INVITE.
    Request { method: String, headers: Headers },
}

enum CallerCmd {
    Invite {
        req: Box<rsip::Request>,
        dest: SocketAddr,
        events: mpsc::Sender<CallerEvent>,
    },
    Request {
        call_id: String,
        kind: Outgoing,
        reply: oneshot::Sender<rsip::Response>,
    },
}

enum Outgoing {
    Cancel,
    Bye,
    Notify(String),
}

/// An inbound caller on 127.0.0.1 UDP; each [`invite`](Self::invite) returns a call handle.
pub struct TestCaller {
    local: SocketAddr,
    cmd: mpsc::Sender<CallerCmd>,
    task: JoinHandle<()>,
}

impl Drop for TestCaller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One outgoing call of a [`TestCaller`].
pub struct CallerCall {
    call_id: String,
    cmd: mpsc::Sender<CallerCmd>,
    events: mpsc::Receiver<CallerEvent>,
}

impl TestCaller {
    pub async fn bind() -> Result<TestCaller> {
        let wire = Wire::bind().await?;
        let local = wire.local;
        let (cmd, cmd_rx) = mpsc::channel(16);
        let task = tokio::spawn(
            CallerTask {
                wire,
                calls: HashMap::new(),
            }
            .run(cmd_rx),
        );
        Ok(TestCaller { local, cmd, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// INVITE `sip:<dn>@<node_sip>` from `sip:<from_user>@<local>` with an SDP offer,
    /// retransmitted (Timer A) until a response arrives.
    pub async fn invite(
        &self,
        node_sip: SocketAddr,
        dn: &str,
        from_user: &str,
    ) -> Result<CallerCall> {
        let sdp = sdp_offer(self.local.ip(), self.local.port().wrapping_add(1));
        let req = RequestBuilder::invite(
            &format!("sip:{from_user}@{}", self.local),
            &format!("sip:{dn}@{node_sip}"),
            self.local,
            sdp,
        )
        .build()?;
        let call_id = call_id_of(&req);
        let (tx, events) = mpsc::channel(EVENTS);
        self.cmd
            .send(CallerCmd::Invite {
                req: Box::new(req),
                dest: node_sip,
                events: tx,
            })
            .await?;
        Ok(CallerCall {
            call_id,
            cmd: self.cmd.clone(),
            events,
        })
    }
}

impl CallerCall {
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    pub async fn next_event(&mut self, timeout: Duration) -> Result<CallerEvent> {
        wait_on(&mut self.events, |_| true, timeout).await
    }

    /// The first event matching `pred`; earlier ones are discarded.
    pub async fn wait_for(
        &mut self,
        pred: impl FnMut(&CallerEvent) -> bool,
        timeout: Duration,
    ) -> Result<CallerEvent> {
        wait_on(&mut self.events, pred, timeout).await
    }

    /// The next response to the INVITE (other events are discarded).
    pub async fn next_response(&mut self, timeout: Duration) -> Result<SipReply> {
        match self
            .wait_for(|e| matches!(e, CallerEvent::Response(_)), timeout)
            .await?
        {
            CallerEvent::Response(r) => Ok(r),
            other => Err(anyhow!("unexpected {other:?}")),
        }
    }

    /// The first response with status `code`; earlier events are discarded.
    pub async fn wait_for_status(&mut self, code: u16, timeout: Duration) -> Result<SipReply> {
        let pred = |e: &CallerEvent| matches!(e, CallerEvent::Response(r) if r.status == code);
        match self.wait_for(pred, timeout).await? {
            CallerEvent::Response(r) => Ok(r),
            other => Err(anyhow!("unexpected {other:?}")),
        }
    }

    async fn request(&self, kind: Outgoing, what: &str) -> Result<u16> {
        let (reply, rx) = oneshot::channel();
        let call_id = self.call_id.clone();
        self.cmd
            .send(CallerCmd::Request {
                call_id,
                kind,
                reply,
            })
            .await?;
        await_reply(rx, what).await
    }

    /// CANCEL the pending INVITE; returns the CANCEL's status (the INVITE's 487 is an event).
    pub async fn cancel(&self) -> Result<u16> {
        self.request(Outgoing::Cancel, "CANCEL").await
    }

    /// BYE in the confirmed dialog; returns its status.
    pub async fn hang_up(&self) -> Result<u16> {
        self.request(Outgoing::Bye, "BYE").await
    }

    /// NOTIFY `Event: <event>` in the early or confirmed dialog; returns its status.
    pub async fn notify(&self, event: &str) -> Result<u16> {
        self.request(Outgoing::Notify(event.to_owned()), "NOTIFY")
            .await
    }
}

struct OutCall {
    invite: rsip::Request,
    dest: SocketAddr,
    events: mpsc::Sender<CallerEvent>,
    /// Timers A and B until the first response: the clock and when to ask it again.
    retx: Option<(TxClock, Instant)>,
    /// Latest response establishing the (early or confirmed) dialog.
    dialog: Option<rsip::Response>,
    final_status: Option<u16>,
    ack: Option<(rsip::Request, SocketAddr)>,
    cseq: u32,
}

struct CallerTask {
    wire: Wire,
    calls: HashMap<String, OutCall>,
}

impl CallerTask {
    async fn run(mut self, mut cmds: mpsc::Receiver<CallerCmd>) {
        let mut buf = vec![0u8; 65536];
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                m = self.wire.recv(&mut buf) => match m {
                    Some((rsip::SipMessage::Request(r), src)) => self.on_request(r, src).await,
                    Some((rsip::SipMessage::Response(r), _)) => self.on_response(r).await,
                    None => {}
                },
                c = cmds.recv() => match c {
                    Some(CallerCmd::Invite { req, dest, events }) => self.invite(*req, dest, events).await,
                    Some(CallerCmd::Request { call_id, kind, reply }) => self.request(&call_id, kind, reply).await,
                    None => return,
                },
                _ = tick.tick() => self.tick().await,
            }
        }
    }

    async fn invite(
        &mut self,
        req: rsip::Request,
        dest: SocketAddr,
        events: mpsc::Sender<CallerEvent>,
    ) {
        self.calls.retain(|_, c| !c.events.is_closed()); // forget calls whose handle is gone
        if self.calls.len() >= MAX_CALLS {
            return eprintln!(
                "caller {}: too many calls, INVITE not sent",
                self.wire.local
            );
        }
        self.wire.send(&req, dest).await;
        let now = Instant::now();
        let call = OutCall {
            cseq: fields::cseq(&req).map(|c| c.0).unwrap_or(1),
            invite: req,
            dest,
            events,
            retx: Some(TxClock::start(&timers(), false, true, now)),
            dialog: None,
            final_status: None,
            ack: None,
        };
        self.calls.insert(call_id_of(&call.invite), call);
    }

    async fn on_response(&mut self, r: rsip::Response) {
        if self.wire.on_response(&r) {
            return;
        }
        let local = self.wire.local;
        let call_id = call_id_of(&r);
        let Some(c) = self.calls.get_mut(&call_id) else {
            return eprintln!("caller {local}: response for unknown call {call_id}");
        };
        if tx_key(&r) != tx_key(&c.invite) {
            return eprintln!("caller {local}: stray response {}", r.status_code);
        }
        let code = r.status_code.code();
        c.retx = None;
        if code > 100 && code < 300 && fields::to_tag(&r).ok().flatten().is_some() {
            c.dialog = Some(r.clone());
        }
        if code >= 200 {
            if c.ack.is_none() {
                match ack_for(&c.invite, &r) {
                    Ok(ack) => {
                        let dest = if code < 300 {
                            uri_addr(&ack.uri).unwrap_or(c.dest)
                        } else {
                            c.dest
                        };
                        c.ack = Some((ack, dest));
                    }
                    Err(e) => eprintln!("caller {local}: cannot build ACK: {e}"),
                }
            }
            if let Some((ack, dest)) = &c.ack {
                self.wire.send(ack, *dest).await;
            }
            if c.final_status.is_some() {
                return; // retransmitted final: ACKed again, not reported twice
            }
            c.final_status = Some(code);
        } else if c.final_status.is_some() {
            return;
        }
        let reply = SipReply {
            status: code,
            headers: headers_of(&r.headers),
            body: String::from_utf8_lossy(&r.body).into(),
        };
        emit(&c.events, local, CallerEvent::Response(reply));
    }

    async fn on_request(&mut self, req: rsip::Request, src: SocketAddr) {
        let local = self.wire.local;
        let call = self.calls.get(&call_id_of(&req));
        let code = match (&req.method, call) {
            (Method::Ack, _) => return,
            (Method::Options, _) => 200,
            (_, None) => 481,
            (Method::Cancel, _) => 481,
            (Method::Bye, Some(c)) => {
                emit(&c.events, local, CallerEvent::Bye);
                200
            }
            (m, Some(c)) => {
                let ev = CallerEvent::Request {
                    method: m.to_string(),
                    headers: headers_of(&req.headers),
                };
                emit(&c.events, local, ev);
                200
            }
        };
        let mut resp = response_for(&req, sip_status(code));
        if req.method == Method::Invite && code == 200 {
            add_contact(&mut resp, &format!("<sip:caller@{local}>"), None);
            let sdp = sdp_offer(local.ip(), local.port().wrapping_add(1));
            set_response_body(&mut resp, "application/sdp", sdp.into_bytes());
        }
        self.wire.send(&resp, src).await;
    }

    async fn request(
        &mut self,
        call_id: &str,
        kind: Outgoing,
        reply: oneshot::Sender<rsip::Response>,
    ) {
        let local = self.wire.local;
        let Some(c) = self.calls.get_mut(call_id) else {
            return eprintln!("caller {local}: no call {call_id}");
        };
        let confirmed = c.final_status.is_some_and(|s| (200..300).contains(&s));
        let dialog = c.dialog.clone();
        let built = match (&kind, dialog) {
            (Outgoing::Cancel, _) if c.final_status.is_none() => cancel_for(&c.invite)
                .map(|r| (r, c.dest))
                .map_err(|e| e.to_string()),
            (Outgoing::Bye, Some(d)) if confirmed => in_dialog(c, d, Method::Bye, local),
            (Outgoing::Notify(ev), Some(d)) => {
                in_dialog(c, d, Method::Notify, local).map(|(mut r, dest)| {
                    r.headers
                        .push(Header::Event(headers::Event::new(ev.as_str())));
                    r.headers
                        .push(Header::SubscriptionState(headers::SubscriptionState::new(
                            "active",
                        )));
                    (r, dest)
                })
            }
            _ => Err("not allowed in the call's state".into()),
        };
        match built {
            Ok((req, dest)) => self.wire.request(req, dest, reply).await,
            Err(e) => eprintln!("caller {local}: request in {call_id}: {e}"),
        }
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        self.wire.tick(now).await;
        let mut resend = Vec::new();
        for c in self.calls.values_mut() {
            let Some((clock, next)) = c.retx.as_mut().filter(|(_, next)| now >= *next) else {
                continue;
            };
            match clock.on_timer(&timers(), now) {
                Tick::Resend(at) => {
                    *next = at;
                    resend.push((c.invite.clone(), c.dest));
                }
                Tick::Wait(at) => *next = at,
                Tick::TimedOut => {
                    eprintln!("caller {}: INVITE timed out (Timer B)", self.wire.local);
                    c.retx = None;
                }
            }
        }
        for (r, dest) in resend {
            self.wire.send(&r, dest).await;
        }
    }
}

/// A request in the dialog `d` established by the call's INVITE (next CSeq, target = Contact).
fn in_dialog(
    c: &mut OutCall,
    d: rsip::Response,
    method: Method,
    local: SocketAddr,
) -> Result<(rsip::Request, SocketAddr), String> {
    let target = fields::contact_uri(&d)
        .ok()
        .flatten()
        .unwrap_or_else(|| c.invite.uri.clone());
    let dest = uri_addr(&target).unwrap_or(c.dest);
    let from = c
        .invite
        .from_header()
        .map_err(|e| e.to_string())?
        .value()
        .to_owned();
    let to = d.to_header().map_err(|e| e.to_string())?.value().to_owned();
    c.cseq += 1;
    RequestBuilder::new(method, target.to_string(), local)
        .from(&from)
        .to(&to)
        .call_id(call_id_of(&c.invite))
        .cseq(c.cseq)
        .build()
        .map(|r| (r, dest))
        .map_err(|e| e.to_string())
}
