//! An async T-Library client over any byte stream.
//!
//! Connecting the socket (and choosing which node, and reconnecting) is the caller's job; this
//! module takes a connected stream, performs the `RequestRegisterClient` handshake, and spawns ONE
//! I/O task that owns the stream. That task:
//!
//! * writes what [`TlibClient::send`] / [`TlibClient::request`] queue (frames are encoded by the
//!   caller, so an oversized message fails at the call site and never reaches the task);
//! * reads frames, answers `Ping` with `Pong`, completes pending requests by `ReferenceID`, and
//!   forwards every other message to [`Events`] in arrival order;
//! * runs ADDP ([`crate::addp`]): pings when it has sent nothing for `interval`, and declares the
//!   link dead when it has received nothing for `timeout` (silent loss) — an EOF or RST is noticed
//!   at once by the read itself.
//!
//! # Boundedness
//!
//! * Commands from callers go through a bounded channel; when the socket does not drain, the
//!   write buffer stops accepting commands at a high-water mark, so callers wait instead of the
//!   task growing a buffer. A write buffer that does not drain for `addp.timeout` kills the link.
//! * At most `max_pending` requests can be outstanding; entries whose caller gave up (timeout) are
//!   purged when the map is full. Beyond that `request` fails with
//!   [`ClientError::TooManyPending`].
//! * [`Events`] is a bounded queue and the I/O task NEVER waits for its consumer: when it is full,
//!   new events are dropped and counted, and the consumer gets a [`ClientEvent::Lagged`] with the
//!   count as soon as there is room again. Waiting instead would stall reading (no pongs, no
//!   request responses) and would deadlock a caller that awaits a response without draining
//!   events; disconnecting a slow consumer would turn a local hiccup into a lost session.
//!   Responses are handed to their `request` caller directly, so they are never lost to lag.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, timeout_at, Instant};
use tokio_util::codec::{Encoder, FramedRead, FramedWrite};

use crate::addp::{Addp, AddpAction, AddpConfig};
use crate::event::ServerInfo;
use crate::frame::{FrameError, JsonFrameCodec};
use crate::message::{Message, MessageError};
use crate::names::MessageName;
use crate::request::Request;

/// Stop taking commands while this much is waiting to be written.
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// The handshake's `RequestRegisterClient` uses this `ReferenceID`; requests continue after it.
const HANDSHAKE_REFERENCE_ID: u32 = 1;
/// How long a local close waits to flush what is queued.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_millis(500);

/// Client settings. `ClientConfig::new(name)` gives sensible defaults.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Sent as `ApplicationName` in `RequestRegisterClient`.
    pub application_name: String,
    /// Keepalive timers.
    pub addp: AddpConfig,
    /// Limit for the whole handshake (default 5 s).
    pub handshake_timeout: Duration,
    /// Default limit for [`TlibClient::request`] (default 10 s).
    pub request_timeout: Duration,
    /// Capacity of the [`Events`] queue (default 1024).
    pub event_capacity: usize,
    /// Maximum outstanding requests (default 1024).
    pub max_pending: usize,
    /// Capacity of the command queue to the I/O task (default 256).
    pub command_capacity: usize,
    /// Frame payload limit in both directions (default 1 MiB).
    pub max_frame_len: usize,
}

impl ClientConfig {
    /// Defaults with the given application name.
    pub fn new(application_name: impl Into<String>) -> Self {
        ClientConfig {
            application_name: application_name.into(),
            addp: AddpConfig::default(),
            handshake_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            event_capacity: 1024,
            max_pending: 1024,
            command_capacity: 256,
            max_frame_len: crate::frame::DEFAULT_MAX_FRAME_LEN,
        }
    }
}

/// Why the link went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The peer closed the connection cleanly (EOF between frames).
    Eof,
    /// The transport failed (e.g. connection reset).
    Io(String),
    /// ADDP: nothing was received for the configured timeout (silent loss).
    AddpTimeout(Duration),
    /// Queued data could not be written for the ADDP timeout (the peer stopped reading).
    WriteStalled(Duration),
    /// The peer broke framing (bad length, not JSON, truncated frame).
    Protocol(String),
    /// Closed locally: [`TlibClient::close`] or every `TlibClient` handle dropped.
    Closed,
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DisconnectReason::Eof => write!(f, "peer closed the connection"),
            DisconnectReason::Io(e) => write!(f, "I/O error: {e}"),
            DisconnectReason::AddpTimeout(t) => write!(f, "nothing received for {t:?} (ADDP)"),
            DisconnectReason::WriteStalled(t) => write!(f, "writes stalled for {t:?}"),
            DisconnectReason::Protocol(e) => write!(f, "protocol error: {e}"),
            DisconnectReason::Closed => write!(f, "closed locally"),
        }
    }
}

impl DisconnectReason {
    fn from_frame_error(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => DisconnectReason::Io(e.to_string()),
            other => DisconnectReason::Protocol(other.to_string()),
        }
    }
}

/// What [`Events`] yields.
// `Message` is by far the most common variant, so boxing it would only add an allocation per
// event to shrink the rare ones.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// An incoming message (anything but `Ping`/`Pong`), responses included.
    Message(Message),
    /// An incoming JSON object that is not a valid message (logged, not fatal).
    Invalid(MessageError),
    /// This many events were dropped because the queue was full (see the module docs).
    Lagged { missed: u64 },
    /// The link is down; the last event.
    Disconnected { reason: DisconnectReason },
}

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The handshake or the request did not complete in time.
    #[error("timed out")]
    Timeout,
    /// The link is down (or went down while waiting).
    #[error("link down: {0}")]
    LinkDown(DisconnectReason),
    /// The server answered the handshake with `EventError` or `EventLinkDisconnected`.
    #[error("handshake rejected by the server with {}", .0.name)]
    Rejected(Box<Message>),
    /// `max_pending` requests are already outstanding.
    #[error("too many outstanding requests (limit {0})")]
    TooManyPending(usize),
    /// The response carrying our `ReferenceID` is not a valid message.
    #[error("invalid response: {0}")]
    InvalidResponse(MessageError),
    /// The message could not be encoded (e.g. larger than the frame limit).
    #[error(transparent)]
    Frame(#[from] FrameError),
}

type Reply = Result<Message, ClientError>;

enum Command {
    Send(Bytes),
    Request {
        reference_id: u32,
        frame: Bytes,
        reply: oneshot::Sender<Reply>,
    },
    Close,
}

#[derive(Debug)]
struct Shared {
    next_reference_id: AtomicU32,
    server_info: Message,
    request_timeout: Duration,
    codec: JsonFrameCodec,
}

/// A handle to a registered T-Lib session. Cheap to clone; the link is closed when the last
/// handle is dropped (or on [`close`](Self::close)).
#[derive(Debug, Clone)]
pub struct TlibClient {
    cmd_tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    state: watch::Receiver<Option<DisconnectReason>>,
}

/// Every incoming message in arrival order, then a final [`ClientEvent::Disconnected`].
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<ClientEvent>,
    state: watch::Receiver<Option<DisconnectReason>>,
    finished: bool,
}

fn current_reason(state: &watch::Receiver<Option<DisconnectReason>>) -> DisconnectReason {
    state.borrow().clone().unwrap_or(DisconnectReason::Closed)
}

impl TlibClient {
    /// Registers on a connected stream with default settings and the given ADDP timers.
    ///
    /// Sends `RequestRegisterClient`, waits (up to 5 s) for `EventServerInfo` and
    /// `EventLinkConnected`, then spawns the I/O task. Both handshake events are also the first
    /// two [`Events`].
    pub async fn handshake<S>(
        stream: S,
        application_name: impl Into<String>,
        addp: AddpConfig,
    ) -> Result<(TlibClient, Events), ClientError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let mut cfg = ClientConfig::new(application_name);
        cfg.addp = addp;
        Self::handshake_with(stream, cfg).await
    }

    /// [`handshake`](Self::handshake) with full settings.
    pub async fn handshake_with<S>(
        stream: S,
        cfg: ClientConfig,
    ) -> Result<(TlibClient, Events), ClientError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let codec = JsonFrameCodec::with_max_len(cfg.max_frame_len);
        let (r, w) = tokio::io::split(stream);
        let mut reader = FramedRead::new(r, codec);
        let mut writer = FramedWrite::new(w, codec);
        let mut addp = Addp::new(cfg.addp, Instant::now());
        let (events_tx, events_rx) = mpsc::channel(cfg.event_capacity.max(1));
        let mut events = EventSink::new(events_tx);
        let deadline = Instant::now() + cfg.handshake_timeout;

        let register = Request::RegisterClient {
            application_name: cfg.application_name.clone(),
            extensions: None,
        }
        .to_message(HANDSHAKE_REFERENCE_ID);
        write_within(&mut writer, &register, deadline).await?;
        addp.on_sent(Instant::now());

        let mut server_info = None;
        let mut link_connected = false;
        while server_info.is_none() || !link_connected {
            let obj = match timeout_at(deadline, reader.next()).await {
                Err(_) => return Err(ClientError::Timeout),
                Ok(None) => return Err(ClientError::LinkDown(DisconnectReason::Eof)),
                Ok(Some(Err(e))) => {
                    return Err(ClientError::LinkDown(DisconnectReason::from_frame_error(e)))
                }
                Ok(Some(Ok(obj))) => obj,
            };
            addp.on_received(Instant::now());
            let msg = match Message::from_object(obj) {
                Ok(msg) => msg,
                Err(e) => {
                    tracing::warn!(error = %e, "invalid message during T-Lib handshake");
                    events.push(ClientEvent::Invalid(e));
                    continue;
                }
            };
            match msg.name {
                MessageName::Ping => {
                    write_within(&mut writer, &Message::pong(), deadline).await?;
                    addp.on_sent(Instant::now());
                    continue;
                }
                MessageName::Pong => continue,
                MessageName::EventError | MessageName::EventLinkDisconnected => {
                    return Err(ClientError::Rejected(Box::new(msg)))
                }
                MessageName::EventServerInfo => server_info = Some(msg.clone()),
                MessageName::EventLinkConnected => link_connected = true,
                _ => {}
            }
            events.push(ClientEvent::Message(msg));
        }
        let Some(server_info) = server_info else {
            // Unreachable by the loop condition; kept total rather than panicking.
            return Err(ClientError::Timeout);
        };

        let (cmd_tx, cmd_rx) = mpsc::channel(cfg.command_capacity.max(1));
        let (state_tx, state_rx) = watch::channel(None);
        let task = IoTask {
            reader,
            writer,
            addp,
            cmd_rx,
            events,
            pending: HashMap::new(),
            max_pending: cfg.max_pending.max(1),
            stall_since: None,
            state_tx,
        };
        tokio::spawn(task.run());

        let client = TlibClient {
            cmd_tx,
            shared: Arc::new(Shared {
                next_reference_id: AtomicU32::new(HANDSHAKE_REFERENCE_ID + 1),
                server_info,
                request_timeout: cfg.request_timeout,
                codec,
            }),
            state: state_rx.clone(),
        };
        let events = Events {
            rx: events_rx,
            state: state_rx,
            finished: false,
        };
        Ok((client, events))
    }

    /// The `EventServerInfo` received during the handshake.
    pub fn server_info(&self) -> &Message {
        &self.shared.server_info
    }

    /// The node name, DC and role from `EventServerInfo`, when it carries them.
    pub fn server(&self) -> Option<ServerInfo> {
        ServerInfo::from_message(&self.shared.server_info)
    }

    /// A fresh `ReferenceID` (rising, never 0).
    pub fn next_reference_id(&self) -> u32 {
        loop {
            let id = self
                .shared
                .next_reference_id
                .fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    /// Sends a request with a fresh `ReferenceID` (overwriting any) and returns the first
    /// incoming message carrying it — `EventError` included, as `Ok`: inspect `name`. Uses the
    /// configured request timeout.
    pub async fn request(&self, msg: impl Into<Message>) -> Result<Message, ClientError> {
        self.request_with_timeout(msg, self.shared.request_timeout)
            .await
    }

    /// [`request`](Self::request) with an explicit timeout.
    pub async fn request_with_timeout(
        &self,
        msg: impl Into<Message>,
        timeout: Duration,
    ) -> Result<Message, ClientError> {
        let deadline = Instant::now() + timeout;
        let reference_id = self.next_reference_id();
        let msg = msg.into().with_reference_id(reference_id);
        let frame = self.encode(&msg)?;
        let (reply, response) = oneshot::channel();
        let cmd = Command::Request {
            reference_id,
            frame,
            reply,
        };
        match timeout_at(deadline, self.cmd_tx.send(cmd)).await {
            Err(_) => return Err(ClientError::Timeout),
            Ok(Err(_)) => return Err(ClientError::LinkDown(current_reason(&self.state))),
            Ok(Ok(())) => {}
        }
        match timeout_at(deadline, response).await {
            Err(_) => Err(ClientError::Timeout),
            Ok(Err(_)) => Err(ClientError::LinkDown(current_reason(&self.state))),
            Ok(Ok(reply)) => reply,
        }
    }

    /// Queues a message without waiting for any response (waits only for queue space). The
    /// message is sent as given: no `ReferenceID` is added.
    pub async fn send(&self, msg: impl Into<Message>) -> Result<(), ClientError> {
        let frame = self.encode(&msg.into())?;
        self.cmd_tx
            .send(Command::Send(frame))
            .await
            .map_err(|_| ClientError::LinkDown(current_reason(&self.state)))
    }

    /// Closes the link (flushing what is queued, briefly) and waits for the I/O task to end.
    pub async fn close(&self) {
        let _ = self.cmd_tx.send(Command::Close).await;
        self.closed().await;
    }

    /// Resolves when the link is down, with the reason.
    pub async fn closed(&self) -> DisconnectReason {
        let mut state = self.state.clone();
        let reason = match state.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or(DisconnectReason::Closed),
            Err(_) => current_reason(&self.state),
        };
        reason
    }

    /// False once the link is down.
    pub fn is_connected(&self) -> bool {
        self.state.borrow().is_none()
    }

    fn encode(&self, msg: &Message) -> Result<Bytes, ClientError> {
        let mut codec = self.shared.codec;
        let mut buf = BytesMut::new();
        codec.encode(msg, &mut buf)?;
        Ok(buf.freeze())
    }
}

impl Events {
    /// The next event; after the final [`ClientEvent::Disconnected`], `None`.
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        if self.finished {
            return None;
        }
        match self.rx.recv().await {
            Some(ev) => Some(ev),
            None => self.finish(),
        }
    }

    /// The next event if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<ClientEvent> {
        if self.finished {
            return None;
        }
        match self.rx.try_recv() {
            Ok(ev) => Some(ev),
            Err(mpsc::error::TryRecvError::Empty) => None,
            Err(mpsc::error::TryRecvError::Disconnected) => self.finish(),
        }
    }

    fn finish(&mut self) -> Option<ClientEvent> {
        self.finished = true;
        Some(ClientEvent::Disconnected {
            reason: current_reason(&self.state),
        })
    }

    /// Consumes events until a message matches `pred` and returns it. Non-matching events are
    /// discarded. Fails with `Timeout`, or `LinkDown` when the link goes down first.
    pub async fn wait_for(
        &mut self,
        mut pred: impl FnMut(&Message) -> bool,
        timeout: Duration,
    ) -> Result<Message, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            match timeout_at(deadline, self.recv()).await {
                Err(_) => return Err(ClientError::Timeout),
                Ok(None) => return Err(ClientError::LinkDown(current_reason(&self.state))),
                Ok(Some(ClientEvent::Disconnected { reason })) => {
                    return Err(ClientError::LinkDown(reason))
                }
                Ok(Some(ClientEvent::Message(m))) if pred(&m) => return Ok(m),
                Ok(Some(_)) => {}
            }
        }
    }

    /// [`wait_for`](Self::wait_for) a message by name.
    pub async fn wait_for_name(
        &mut self,
        name: MessageName,
        timeout: Duration,
    ) -> Result<Message, ClientError> {
        self.wait_for(|m| m.name == name, timeout).await
    }
}

async fn write_within<W>(
    writer: &mut FramedWrite<W, JsonFrameCodec>,
    msg: &Message,
    deadline: Instant,
) -> Result<(), ClientError>
where
    W: AsyncWrite + Unpin,
{
    match timeout_at(deadline, writer.send(msg)).await {
        Err(_) => Err(ClientError::Timeout),
        Ok(Err(FrameError::Io(e))) => {
            Err(ClientError::LinkDown(DisconnectReason::Io(e.to_string())))
        }
        Ok(Err(e)) => Err(ClientError::Frame(e)),
        Ok(Ok(())) => Ok(()),
    }
}

/// The I/O task's end of [`Events`], with the drop-and-count policy.
struct EventSink {
    tx: mpsc::Sender<ClientEvent>,
    missed: u64,
}

impl EventSink {
    fn new(tx: mpsc::Sender<ClientEvent>) -> Self {
        EventSink { tx, missed: 0 }
    }

    fn push(&mut self, ev: ClientEvent) {
        use mpsc::error::TrySendError;
        if self.missed > 0 {
            match self.tx.try_send(ClientEvent::Lagged {
                missed: self.missed,
            }) {
                Ok(()) => self.missed = 0,
                Err(TrySendError::Full(_)) => {
                    self.missed += 1;
                    return;
                }
                Err(TrySendError::Closed(_)) => return,
            }
        }
        match self.tx.try_send(ev) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(_)) => {
                if self.missed == 0 {
                    tracing::warn!("T-Lib event queue full; dropping events until it drains");
                }
                self.missed += 1;
            }
        }
    }
}

struct IoTask<S> {
    reader: FramedRead<ReadHalf<S>, JsonFrameCodec>,
    writer: FramedWrite<WriteHalf<S>, JsonFrameCodec>,
    addp: Addp,
    cmd_rx: mpsc::Receiver<Command>,
    events: EventSink,
    pending: HashMap<u32, oneshot::Sender<Reply>>,
    max_pending: usize,
    /// Since when the write buffer has been non-empty.
    stall_since: Option<Instant>,
    state_tx: watch::Sender<Option<DisconnectReason>>,
}

impl<S> IoTask<S>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    async fn run(mut self) {
        let reason = self.run_loop().await;
        tracing::debug!(%reason, "T-Lib link down");
        // Publish the reason first, so every error produced below can report it.
        self.state_tx.send_replace(Some(reason.clone()));
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(ClientError::LinkDown(reason.clone())));
        }
        self.cmd_rx.close();
        while let Ok(cmd) = self.cmd_rx.try_recv() {
            if let Command::Request { reply, .. } = cmd {
                let _ = reply.send(Err(ClientError::LinkDown(reason.clone())));
            }
        }
        if reason == DisconnectReason::Closed {
            let close = SinkExt::<Message>::close(&mut self.writer);
            let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, close).await;
        }
        // Dropping `self` closes the stream and ends `Events` with `Disconnected`.
    }

    async fn run_loop(&mut self) -> DisconnectReason {
        loop {
            let write_pending = !self.writer.write_buffer().is_empty();
            let accept_commands = self.writer.write_buffer().len() < WRITE_HIGH_WATER;
            let deadline = self.deadline();
            tokio::select! {
                frame = self.reader.next() => match frame {
                    None => return DisconnectReason::Eof,
                    Some(Err(e)) => return DisconnectReason::from_frame_error(e),
                    Some(Ok(obj)) => self.on_frame(obj),
                },
                res = SinkExt::<Message>::flush(&mut self.writer), if write_pending => match res {
                    Ok(()) => {
                        self.stall_since = None;
                        self.addp.on_sent(Instant::now());
                    }
                    Err(e) => return DisconnectReason::from_frame_error(e),
                },
                cmd = self.cmd_rx.recv(), if accept_commands => match cmd {
                    None | Some(Command::Close) => return DisconnectReason::Closed,
                    Some(cmd) => self.on_command(cmd),
                },
                () = sleep_until(deadline) => {
                    if let Some(reason) = self.on_timer() {
                        return reason;
                    }
                }
            }
        }
    }

    fn deadline(&self) -> Instant {
        match self.stall_since {
            // Pings are pointless while a write is pending: it will reset the send timer.
            Some(since) => self
                .addp
                .dead_deadline()
                .min(since + self.addp.config().timeout),
            None => self.addp.next_deadline(),
        }
    }

    fn on_timer(&mut self) -> Option<DisconnectReason> {
        let now = Instant::now();
        let timeout = self.addp.config().timeout;
        if let Some(since) = self.stall_since {
            if now >= since + timeout {
                return Some(DisconnectReason::WriteStalled(timeout));
            }
        }
        match self.addp.poll(now) {
            AddpAction::Dead => Some(DisconnectReason::AddpTimeout(timeout)),
            AddpAction::SendPing if self.stall_since.is_none() => {
                self.queue_message(&Message::ping());
                None
            }
            AddpAction::SendPing | AddpAction::Idle => None,
        }
    }

    fn queue_bytes(&mut self, frame: &[u8]) {
        if self.writer.write_buffer().is_empty() {
            self.stall_since = Some(Instant::now());
        }
        self.writer.write_buffer_mut().extend_from_slice(frame);
    }

    fn queue_message(&mut self, msg: &Message) {
        let mut codec = *self.writer.encoder();
        if self.writer.write_buffer().is_empty() {
            self.stall_since = Some(Instant::now());
        }
        if let Err(e) = codec.encode(msg, self.writer.write_buffer_mut()) {
            // Only our own tiny keepalives come through here; they always fit.
            tracing::error!(error = %e, "cannot encode {}", msg.name);
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Send(frame) => self.queue_bytes(&frame),
            Command::Request {
                reference_id,
                frame,
                reply,
            } => {
                if self.pending.len() >= self.max_pending {
                    // Drop the entries of callers that gave up (timed out) before refusing.
                    self.pending.retain(|_, r| !r.is_closed());
                }
                if self.pending.len() >= self.max_pending {
                    let _ = reply.send(Err(ClientError::TooManyPending(self.max_pending)));
                    return;
                }
                self.pending.insert(reference_id, reply);
                self.queue_bytes(&frame);
            }
            Command::Close => {}
        }
    }

    fn on_frame(&mut self, obj: serde_json::Map<String, serde_json::Value>) {
        self.addp.on_received(Instant::now());
        let msg = match Message::from_object(obj) {
            Ok(msg) => msg,
            Err(e) => {
                tracing::warn!(error = %e, "invalid T-Lib message from server");
                if let Some(reply) = e.reference_id().and_then(|r| self.pending.remove(&r)) {
                    let _ = reply.send(Err(ClientError::InvalidResponse(e.clone())));
                }
                self.events.push(ClientEvent::Invalid(e));
                return;
            }
        };
        match msg.name {
            MessageName::Ping => {
                // A peer that pings while we cannot even drain our buffer will see our data
                // (or our death) soon enough; do not grow the buffer for it.
                if self.writer.write_buffer().len() < WRITE_HIGH_WATER {
                    self.queue_message(&Message::pong());
                }
            }
            MessageName::Pong => {}
            _ => {
                if let Some(reply) = msg.reference_id().and_then(|r| self.pending.remove(&r)) {
                    let _ = reply.send(Ok(msg.clone()));
                }
                self.events.push(ClientEvent::Message(msg));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: u32) -> ClientEvent {
        ClientEvent::Message(Message::new(MessageName::EventACK).with_reference_id(n))
    }

    #[test]
    fn event_sink_drops_counts_and_reports_lag() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut sink = EventSink::new(tx);
        for i in 0..5 {
            sink.push(msg(i));
        }
        assert_eq!(rx.try_recv().ok(), Some(msg(0)));
        assert_eq!(rx.try_recv().ok(), Some(msg(1)));
        assert!(rx.try_recv().is_err());
        sink.push(msg(5));
        assert_eq!(rx.try_recv().ok(), Some(ClientEvent::Lagged { missed: 3 }));
        assert_eq!(rx.try_recv().ok(), Some(msg(5)));
        // With one free slot the marker goes first and the event is counted for next time.
        sink.push(msg(6));
        sink.push(msg(7));
        sink.push(msg(8));
        assert_eq!(rx.try_recv().ok(), Some(msg(6)));
        assert_eq!(rx.try_recv().ok(), Some(msg(7)));
        sink.push(msg(9));
        assert_eq!(rx.try_recv().ok(), Some(ClientEvent::Lagged { missed: 1 }));
        assert_eq!(rx.try_recv().ok(), Some(msg(9)));
    }
}
