//! SIP over UDP and TCP on one address, through the `netfault` fault layer.
//!
//! A node binds one [`SipTransport`] per SIP address (`sip:ss1` link) and gets every parsed
//! message on one bounded channel, tagged with where it came from. Responses go back with
//! [`SipTransport::send`] to that [`Source`]: UDP via `send_to`, TCP on the connection the
//! request arrived on (connections are keyed by remote address, RFC 3261 §18.2.2), and a new
//! outgoing connection bound to the node's own IP when there is none (so iptables partitions
//! between loopback addresses apply: Linux filters those too).
//!
//! Design points:
//! * one UDP receive task for the socket (not a task per datagram), parsing in place;
//! * one task per TCP connection doing both reads and writes (no stream splitting locks);
//! * every queue is bounded: the incoming channel applies backpressure (UDP then overflows
//!   into the 8 MiB kernel buffer, like a busy real server), per-connection send queues fail
//!   fast instead of blocking the caller behind a blackholed peer;
//! * RFC 5626 pings are answered here; idle connections time out; the connection count is
//!   capped; dropping the last `SipTransport` handle (or [`SipTransport::close_all`]) closes
//!   every socket.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use netfault::{FaultStream, FaultUdpSocket, Faults};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_util::codec::Decoder;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, trace};

use crate::codec::{SipFrame, SipStreamCodec, PONG};
use crate::parse::{parse_datagram, Datagram, ParseError};

/// Transport tuning. Defaults suit a lab node doing >12k REGISTER/s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportOptions {
    /// Requested UDP `SO_RCVBUF` (the kernel caps it at `net.core.rmem_max`).
    pub udp_recv_buffer: usize,
    /// Largest message on TCP (header section + body); beyond it the connection is closed.
    pub max_message: usize,
    /// Capacity of the channel of incoming messages.
    pub incoming_capacity: usize,
    /// Messages queued per TCP connection before `send` fails with `WouldBlock`.
    pub conn_send_queue: usize,
    /// Open TCP connections (both directions) at most; further accepts are closed at once.
    pub max_connections: usize,
    /// A TCP connection with no traffic either way for this long is closed (seconds).
    pub idle_timeout_secs: u64,
    /// Give up an outgoing TCP connect after this long (seconds).
    pub connect_timeout_secs: u64,
    /// Run the UDP receive task that parses datagrams onto the incoming channel (the default).
    /// `false` leaves the UDP socket to the caller ([`SipTransport::udp_socket`]), for a
    /// simulator that reads batches of datagrams itself on its own task; TCP is unaffected.
    /// Code, not configuration: never read from or written to a file.
    #[serde(skip, default = "default_udp_receive_task")]
    pub udp_receive_task: bool,
}

fn default_udp_receive_task() -> bool {
    true
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            udp_recv_buffer: 8 * 1024 * 1024,
            max_message: crate::codec::DEFAULT_MAX_MESSAGE,
            incoming_capacity: 16 * 1024,
            conn_send_queue: 1024,
            max_connections: 10_000,
            idle_timeout_secs: 300,
            connect_timeout_secs: 5,
            udp_receive_task: true,
        }
    }
}

/// Which transport a message used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    Udp,
    Tcp,
}

impl TransportKind {
    /// RFC 3261 §18: TCP is reliable (no retransmissions, Timer J = 0).
    pub fn is_reliable(self) -> bool {
        self == TransportKind::Tcp
    }
}

/// Identifies one TCP connection for its lifetime (remote addresses can be reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

/// Where a message came from, and therefore where its response goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source {
    pub transport: TransportKind,
    pub remote: SocketAddr,
    /// The TCP connection it arrived on (`None` for UDP and for send targets).
    pub conn: Option<ConnId>,
}

impl Source {
    /// A UDP destination.
    pub fn udp(remote: SocketAddr) -> Self {
        Self {
            transport: TransportKind::Udp,
            remote,
            conn: None,
        }
    }

    /// A TCP destination (existing connection to `remote`, or a new one).
    pub fn tcp(remote: SocketAddr) -> Self {
        Self {
            transport: TransportKind::Tcp,
            remote,
            conn: None,
        }
    }
}

/// What arrived.
// Not boxed: a message is the common case; boxing would add an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum IncomingMessage {
    Sip(rsip::SipMessage),
    /// Framed but unparseable: answer with [`crate::bad_request_response`] if it returns one.
    Invalid {
        raw: Bytes,
        error: ParseError,
    },
}

/// One received message with its origin.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub msg: IncomingMessage,
    pub source: Source,
}

/// Counters (monotonic) for metrics.
#[derive(Debug, Default)]
pub struct TransportStats {
    pub udp_received: AtomicU64,
    pub udp_sent: AtomicU64,
    pub tcp_received: AtomicU64,
    pub tcp_sent: AtomicU64,
    pub keepalives: AtomicU64,
    pub invalid: AtomicU64,
    pub tcp_accepted: AtomicU64,
    pub tcp_connected: AtomicU64,
    /// Accepts refused because of `max_connections`.
    pub tcp_refused: AtomicU64,
    pub tcp_idle_closed: AtomicU64,
    /// Connections closed for framing errors (oversized, bad Content-Length, ...).
    pub tcp_framing_errors: AtomicU64,
    /// Sends that failed because a connection's queue was full.
    pub send_queue_full: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

struct ConnEntry {
    id: ConnId,
    tx: mpsc::Sender<Bytes>,
    cancel: CancellationToken,
}

/// State shared by the handle and the tasks. It holds no drop guard, so tasks keeping it alive
/// do not keep the transport open; the socket and the incoming sender sit in `Option`s that
/// [`SipTransport::close_all`] empties, so a consumer still holding a handle does not keep the
/// port bound or its own receiver open.
struct Shared {
    udp: RwLock<Option<Arc<FaultUdpSocket>>>,
    faults: Faults,
    link: Arc<str>,
    local: SocketAddr,
    opts: TransportOptions,
    conns: Mutex<HashMap<SocketAddr, ConnEntry>>,
    next_conn: AtomicU64,
    stats: TransportStats,
    incoming: Mutex<Option<mpsc::Sender<Incoming>>>,
    shutdown: CancellationToken,
}

impl Shared {
    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, ConnEntry>> {
        // A poisoned lock means a panic while holding it; the map itself is still consistent.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn udp(&self) -> Option<Arc<FaultUdpSocket>> {
        self.udp.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn incoming(&self) -> Option<mpsc::Sender<Incoming>> {
        self.incoming
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn closed() -> io::Error {
        io::Error::new(io::ErrorKind::NotConnected, "SIP transport closed")
    }

    /// Outgoing connections originate from the node's own IP (unless bound to a wildcard).
    fn own_ip(&self) -> Option<IpAddr> {
        let ip = self.local.ip();
        (!ip.is_unspecified()).then_some(ip)
    }
}

/// UDP + TCP SIP transport on one address. Cheap to clone; the sockets close when the last
/// clone is dropped or on [`SipTransport::close_all`].
#[derive(Clone)]
pub struct SipTransport {
    shared: Arc<Shared>,
    _guard: Arc<DropGuard>,
}

impl std::fmt::Debug for SipTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipTransport")
            .field("link", &self.shared.link)
            .field("local", &self.shared.local)
            .finish()
    }
}

impl SipTransport {
    /// Binds UDP and TCP on `addr` (port 0: one free port for both) for fault link `link`,
    /// and starts the receive tasks. Returns the handle and the channel of incoming messages.
    pub async fn bind(
        faults: &Faults,
        link: &str,
        addr: SocketAddr,
        opts: TransportOptions,
    ) -> io::Result<(SipTransport, mpsc::Receiver<Incoming>)> {
        let (udp, listener) = bind_pair(addr, &opts)?;
        let local = udp.local_addr()?;
        let udp = Arc::new(FaultUdpSocket::from_socket(faults, link, udp));
        let (tx, rx) = mpsc::channel(opts.incoming_capacity.max(1));
        let shutdown = CancellationToken::new();
        let shared = Arc::new(Shared {
            udp: RwLock::new(Some(udp.clone())),
            faults: faults.clone(),
            link: link.into(),
            local,
            opts,
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            stats: TransportStats::default(),
            incoming: Mutex::new(Some(tx.clone())),
            shutdown: shutdown.clone(),
        });
        if shared.opts.udp_receive_task {
            tokio::spawn(udp_loop(shared.clone(), udp, tx.clone()));
        }
        tokio::spawn(accept_loop(shared.clone(), listener, tx));
        debug!(%local, link, "SIP transport bound (UDP+TCP)");
        Ok((
            SipTransport {
                shared,
                _guard: Arc::new(shutdown.drop_guard()),
            },
            rx,
        ))
    }

    /// The bound address (same port for UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    pub fn link(&self) -> &str {
        &self.shared.link
    }

    pub fn stats(&self) -> &TransportStats {
        &self.shared.stats
    }

    /// The UDP socket (`None` once closed). Receiving on it is only for a caller that turned
    /// [`TransportOptions::udp_receive_task`] off; sending on it directly bypasses the stats.
    pub fn udp_socket(&self) -> Option<Arc<FaultUdpSocket>> {
        self.shared.udp()
    }

    /// Open TCP connections.
    pub fn connection_count(&self) -> usize {
        self.shared.conns().len()
    }

    /// Sends `bytes` to `dest`: UDP datagram, or over the TCP connection to `dest.remote`.
    /// When there is none, a new connection is made from the node's own IP if `dest.conn` is
    /// `None` (a request to a peer); a reply whose connection is gone (`dest.conn` set) fails
    /// with `NotConnected`. TCP sends are queued; a full queue fails with `WouldBlock` rather
    /// than stalling the caller behind a blackholed peer.
    pub async fn send(&self, dest: &Source, bytes: Bytes) -> io::Result<()> {
        match dest.transport {
            TransportKind::Udp => {
                let udp = self.shared.udp().ok_or_else(Shared::closed)?;
                udp.send_to(&bytes, dest.remote).await?;
                bump(&self.shared.stats.udp_sent);
                Ok(())
            }
            TransportKind::Tcp => {
                let tx = match (self.existing_conn(dest.remote), dest.conn) {
                    (Some(tx), _) => tx,
                    // A reply for a connection that is gone: its remote port is ephemeral, so
                    // connecting back would be pointless (RFC 3261 §18.2.2 would fall back to
                    // the Via sent-by, which is the caller's call to make).
                    (None, Some(_)) => {
                        return Err(io::Error::new(
                            io::ErrorKind::NotConnected,
                            "TCP connection of the request is closed",
                        ))
                    }
                    (None, None) => self.connect(dest.remote).await?,
                };
                queue(&self.shared, &tx, bytes)
            }
        }
    }

    /// Closes the TCP connection to `remote`, if any.
    pub fn close_connection(&self, remote: SocketAddr) -> bool {
        match self.shared.conns().remove(&remote) {
            Some(e) => {
                e.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Stops all tasks and closes every socket (also done when the last handle drops). The
    /// incoming channel ends once the tasks are gone; later sends fail with `NotConnected`.
    pub fn close_all(&self) {
        self.shared.shutdown.cancel();
        *self.shared.udp.write().unwrap_or_else(|e| e.into_inner()) = None;
        *self
            .shared
            .incoming
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        for (_, e) in self.shared.conns().drain() {
            e.cancel.cancel();
        }
    }

    fn existing_conn(&self, remote: SocketAddr) -> Option<mpsc::Sender<Bytes>> {
        self.shared.conns().get(&remote).map(|e| e.tx.clone())
    }

    async fn connect(&self, remote: SocketAddr) -> io::Result<mpsc::Sender<Bytes>> {
        let shared = &self.shared;
        if shared.shutdown.is_cancelled() {
            return Err(Shared::closed());
        }
        if shared.conns().len() >= shared.opts.max_connections {
            return Err(io::Error::other("TCP connection limit reached"));
        }
        let timeout = Duration::from_secs(shared.opts.connect_timeout_secs.max(1));
        let stream = tokio::time::timeout(
            timeout,
            netfault::tcp::connect(&shared.faults, &shared.link, shared.own_ip(), remote),
        )
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TCP connect timed out"))??;
        bump(&shared.stats.tcp_connected);
        // Someone else may have connected meanwhile: keep theirs, ours closes on drop.
        if let Some(tx) = self.existing_conn(remote) {
            return Ok(tx);
        }
        let incoming = shared.incoming().ok_or_else(Shared::closed)?;
        Ok(register_conn(shared, stream, remote, incoming))
    }
}

fn queue(shared: &Shared, tx: &mpsc::Sender<Bytes>, bytes: Bytes) -> io::Result<()> {
    tx.try_send(bytes).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => {
            bump(&shared.stats.send_queue_full);
            io::Error::new(io::ErrorKind::WouldBlock, "TCP send queue full")
        }
        mpsc::error::TrySendError::Closed(_) => {
            io::Error::new(io::ErrorKind::NotConnected, "TCP connection closed")
        }
    })
}

/// Creates the UDP socket (large receive buffer) and the TCP listener on the same port.
fn bind_pair(addr: SocketAddr, opts: &TransportOptions) -> io::Result<(UdpSocket, TcpListener)> {
    // With port 0 the UDP port picked by the kernel may be taken on TCP: retry a few times.
    let attempts = if addr.port() == 0 { 8 } else { 1 };
    let mut last_err = None;
    for _ in 0..attempts {
        let udp = udp_socket(addr, opts.udp_recv_buffer)?;
        let local = udp.local_addr()?;
        match tcp_listener(local) {
            Ok(l) => return Ok((udp, l)),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("cannot bind TCP listener")))
}

fn udp_socket(addr: SocketAddr, rcvbuf: usize) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = s.set_recv_buffer_size(rcvbuf) {
        debug!(error = %e, "cannot set SO_RCVBUF");
    }
    if let Ok(got) = s.recv_buffer_size() {
        // Linux reports twice the usable size; warn only when clearly capped by rmem_max.
        if got < rcvbuf {
            debug!(
                requested = rcvbuf,
                got, "UDP SO_RCVBUF capped by the kernel (net.core.rmem_max)"
            );
        }
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
}

/// The single UDP receive loop: parse in place, forward, apply backpressure.
async fn udp_loop(shared: Arc<Shared>, udp: Arc<FaultUdpSocket>, incoming: mpsc::Sender<Incoming>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            r = udp.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors from earlier sends surface here on Linux; not fatal.
                    trace!(error = %e, "UDP recv error");
                    continue;
                }
            },
        };
        bump(&shared.stats.udp_received);
        let msg = match parse_datagram(&buf[..n]) {
            Ok(Datagram::Message(m)) => IncomingMessage::Sip(m),
            Ok(Datagram::KeepAlive) => {
                bump(&shared.stats.keepalives);
                continue;
            }
            Err(error) => {
                bump(&shared.stats.invalid);
                IncomingMessage::Invalid {
                    raw: Bytes::copy_from_slice(&buf[..n]),
                    error,
                }
            }
        };
        let item = Incoming {
            msg,
            source: Source::udp(from),
        };
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            r = incoming.send(item) => if r.is_err() { break },
        }
    }
    debug!(link = %shared.link, "UDP loop ended");
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, incoming: mpsc::Sender<Incoming>) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    debug!(error = %e, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if shared.conns().len() >= shared.opts.max_connections {
            bump(&shared.stats.tcp_refused);
            drop(stream);
            continue;
        }
        match netfault::tcp::accept_stream(&shared.faults, &shared.link, stream) {
            Ok(fs) => {
                bump(&shared.stats.tcp_accepted);
                register_conn(&shared, fs, peer, incoming.clone());
            }
            Err(e) => trace!(error = %e, %peer, "connection refused by the fault layer"),
        }
    }
}

/// Records a connection and starts its task; returns its send queue.
fn register_conn(
    shared: &Arc<Shared>,
    stream: FaultStream,
    remote: SocketAddr,
    incoming: mpsc::Sender<Incoming>,
) -> mpsc::Sender<Bytes> {
    let id = ConnId(shared.next_conn.fetch_add(1, Ordering::Relaxed));
    let (tx, rx) = mpsc::channel(shared.opts.conn_send_queue.max(1));
    let cancel = shared.shutdown.child_token();
    let old = shared.conns().insert(
        remote,
        ConnEntry {
            id,
            tx: tx.clone(),
            cancel: cancel.clone(),
        },
    );
    if let Some(old) = old {
        // Same remote address twice means the old one is dead (the port was reused).
        old.cancel.cancel();
    }
    let conn = Conn {
        remote,
        id,
        rx,
        cancel,
        incoming,
    };
    tokio::spawn(conn_task(shared.clone(), stream, conn));
    tx
}

/// Writes unless the connection is cancelled or the peer stops reading for `limit` (a
/// blackholed peer would otherwise park the task forever once the pipe is full).
async fn write_guarded(
    stream: &mut FaultStream,
    data: &[u8],
    cancel: &CancellationToken,
    limit: Duration,
) -> Result<(), String> {
    tokio::select! {
        _ = cancel.cancelled() => Err("closed".into()),
        r = tokio::time::timeout(limit, stream.write_all(data)) => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("write stalled".into()),
        },
    }
}

/// Why a connection ended, for the log.
enum End {
    Closed,
    Idle,
    Error(String),
}

/// What one connection task owns besides the stream.
struct Conn {
    remote: SocketAddr,
    id: ConnId,
    rx: mpsc::Receiver<Bytes>,
    cancel: CancellationToken,
    incoming: mpsc::Sender<Incoming>,
}

async fn conn_task(shared: Arc<Shared>, mut stream: FaultStream, conn: Conn) {
    let Conn {
        remote,
        id,
        mut rx,
        cancel,
        incoming,
    } = conn;
    let idle = Duration::from_secs(shared.opts.idle_timeout_secs.max(1));
    let mut codec = SipStreamCodec::new(shared.opts.max_message);
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut deadline = Instant::now() + idle;
    let source = Source {
        transport: TransportKind::Tcp,
        remote,
        conn: Some(id),
    };
    let end = 'conn: loop {
        tokio::select! {
            _ = cancel.cancelled() => break End::Closed,
            _ = sleep_until(deadline) => {
                bump(&shared.stats.tcp_idle_closed);
                break End::Idle;
            }
            out = rx.recv() => {
                let Some(out) = out else { break End::Closed };
                if let Err(e) = write_guarded(&mut stream, &out, &cancel, idle).await {
                    break End::Error(e);
                }
                bump(&shared.stats.tcp_sent);
                deadline = Instant::now() + idle;
            }
            r = stream.read_buf(&mut buf) => {
                match r {
                    Ok(0) => {
                        if let Err(e) = codec.decode_eof(&mut buf) {
                            break End::Error(e.to_string());
                        }
                        break End::Closed;
                    }
                    Ok(_) => {}
                    Err(e) => break End::Error(e.to_string()),
                }
                deadline = Instant::now() + idle;
                loop {
                    let frame = match codec.decode(&mut buf) {
                        Ok(Some(f)) => f,
                        Ok(None) => break,
                        Err(e) => {
                            bump(&shared.stats.tcp_framing_errors);
                            break 'conn End::Error(e.to_string());
                        }
                    };
                    let msg = match frame {
                        SipFrame::Message(m) => {
                            bump(&shared.stats.tcp_received);
                            IncomingMessage::Sip(m)
                        }
                        SipFrame::Invalid { raw, error } => {
                            bump(&shared.stats.invalid);
                            IncomingMessage::Invalid { raw, error }
                        }
                        SipFrame::Ping => {
                            bump(&shared.stats.keepalives);
                            if let Err(e) = write_guarded(&mut stream, PONG, &cancel, idle).await {
                                break 'conn End::Error(e);
                            }
                            continue;
                        }
                        SipFrame::Pong => {
                            bump(&shared.stats.keepalives);
                            continue;
                        }
                    };
                    let item = Incoming { msg, source };
                    tokio::select! {
                        _ = cancel.cancelled() => break 'conn End::Closed,
                        r = incoming.send(item) => if r.is_err() { break 'conn End::Closed },
                    }
                }
            }
        }
    };
    {
        let mut conns = shared.conns();
        if conns.get(&remote).is_some_and(|e| e.id == id) {
            conns.remove(&remote);
        }
    }
    let _ = stream.shutdown().await;
    match end {
        End::Closed => trace!(%remote, "TCP connection closed"),
        End::Idle => debug!(%remote, "TCP connection idle, closed"),
        End::Error(e) => debug!(%remote, error = %e, "TCP connection ended"),
    }
}
