//! TCP under the fault layer: every connection is pumped between the real socket and an
//! in-memory pipe that the application uses, and the pump obeys the rules of its link.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use crate::set::{FaultStats, Faults, Verdict};
use crate::TCP_LOSS_STALL;

/// Size of the in-memory pipe between the pump and the application, per direction.
const PIPE_BYTES: usize = 64 * 1024;
/// Most bytes a pump holds back (delay) per direction before it stops reading.
const QUEUE_BYTES: usize = 256 * 1024;
/// A blackholed connection that its application closed is kept silent at most this long.
const ZOMBIE_MAX: Duration = Duration::from_secs(600);

/// A TCP connection as the application sees it under the fault layer.
pub struct FaultStream {
    pipe: DuplexStream,
    peer: SocketAddr,
    local: SocketAddr,
    link: Arc<str>,
}

impl FaultStream {
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn link(&self) -> &str {
        &self.link
    }
}

impl std::fmt::Debug for FaultStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultStream")
            .field("link", &self.link)
            .field("peer", &self.peer)
            .field("local", &self.local)
            .finish()
    }
}

impl AsyncRead for FaultStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_read(cx, buf)
    }
}

impl AsyncWrite for FaultStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.pipe).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_shutdown(cx)
    }
}

/// Opens a TCP connection for `link` from `local_ip` (the node's own address, port chosen by
/// the kernel) to `remote`. Under `reject` it fails at once with `ConnectionRefused`; under
/// `drop` it waits, like a SYN into a blackhole, until the rule goes (bound it with a timeout).
pub async fn connect(
    faults: &Faults,
    link: &str,
    local_ip: Option<IpAddr>,
    remote: SocketAddr,
) -> io::Result<FaultStream> {
    let mut rules = faults.watch_rules();
    loop {
        let verdict = faults.verdict(link, Some(remote));
        if verdict.reject {
            FaultStats::bump(&faults.stats().rejected_connections, 1);
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("fault layer: link {link} rejects connections"),
            ));
        }
        if verdict.drop {
            if rules.changed().await.is_err() {
                return Err(io::Error::other("fault layer dropped"));
            }
            continue;
        }
        if !verdict.delay.is_zero() {
            tokio::time::sleep(verdict.delay).await;
        }
        break;
    }
    let socket = if remote.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = local_ip {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(remote).await?;
    Ok(wrap(faults, link, stream))
}

/// Puts an accepted connection under the fault layer. Under `reject` the connection is reset at
/// once and `ConnectionRefused` returned; under `drop` it is held open and silent (the peer sees
/// a blackhole) and `ConnectionAborted` returned. Either way the caller just accepts the next one.
pub fn accept_stream(faults: &Faults, link: &str, stream: TcpStream) -> io::Result<FaultStream> {
    let peer = stream.peer_addr()?;
    let verdict = faults.verdict(link, Some(peer));
    if verdict.reject {
        FaultStats::bump(&faults.stats().rejected_connections, 1);
        let _ = stream.set_zero_linger();
        drop(stream);
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "fault layer: rejected",
        ));
    }
    if verdict.drop {
        let faults = faults.clone();
        let link: Arc<str> = link.into();
        let watches = Watches {
            rules: faults.watch_rules(),
            crashes: faults.watch_crashes(),
        };
        tokio::spawn(async move { blackhole(faults, watches, link, peer, stream).await });
        return Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "fault layer: blackholed",
        ));
    }
    Ok(wrap(faults, link, stream))
}

/// Puts a connected socket under the fault layer without any admission check.
pub fn wrap(faults: &Faults, link: &str, stream: TcpStream) -> FaultStream {
    let _ = stream.set_nodelay(true);
    let peer = stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let local = stream
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let (app, pump_side) = tokio::io::duplex(PIPE_BYTES);
    let link: Arc<str> = link.into();
    // Subscribe before spawning: a rule or crash right after this call must not be missed.
    let watches = Watches {
        rules: faults.watch_rules(),
        crashes: faults.watch_crashes(),
    };
    let ctx = PumpCtx {
        faults: faults.clone(),
        link: link.clone(),
        peer,
    };
    tokio::spawn(run_connection(ctx, watches, stream, pump_side));
    FaultStream {
        pipe: app,
        peer,
        local,
        link,
    }
}

/// The change signals a pump listens to.
#[derive(Clone)]
struct Watches {
    rules: watch::Receiver<u64>,
    crashes: watch::Receiver<u64>,
}

#[derive(Clone)]
struct PumpCtx {
    faults: Faults,
    link: Arc<str>,
    peer: SocketAddr,
}

impl PumpCtx {
    fn verdict(&self) -> Verdict {
        self.faults.verdict(&self.link, Some(self.peer))
    }
}

/// How one direction of a connection ended.
#[derive(Debug, PartialEq)]
enum Ending {
    /// The source closed and everything was delivered; the destination was shut down.
    Closed,
    /// The connection must be reset (reject rule, crash, socket error, healed blackhole).
    Reset,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Direction {
    /// Application to network.
    Out,
    /// Network to application.
    In,
}

async fn run_connection(ctx: PumpCtx, watches: Watches, mut stream: TcpStream, pipe: DuplexStream) {
    let span = tracing::debug_span!("tcp", link = %ctx.link, peer = %ctx.peer);
    let reset = {
        let (sock_r, sock_w) = stream.split();
        let (app_r, app_w) = tokio::io::split(pipe);
        let out = pump(&ctx, watches.clone(), Direction::Out, app_r, sock_w);
        let inbound = pump(&ctx, watches, Direction::In, sock_r, app_w);
        tokio::pin!(out, inbound);
        let first = tokio::select! {
            e = &mut out => (e, true),
            e = &mut inbound => (e, false),
        };
        match first {
            (Ending::Reset, _) => true,
            (Ending::Closed, out_done) => {
                let second = if out_done { inbound.await } else { out.await };
                second == Ending::Reset
            }
        }
    };
    if reset {
        FaultStats::bump(&ctx.faults.stats().reset_connections, 1);
        let _ = stream.set_zero_linger();
        tracing::debug!(parent: &span, "connection reset by fault layer");
    }
}

async fn pump<R, W>(
    ctx: &PumpCtx,
    watches: Watches,
    dir: Direction,
    mut src: R,
    mut dst: W,
) -> Ending
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Watches {
        mut rules,
        mut crashes,
    } = watches;
    let mut verdict = ctx.verdict();
    let mut queue: VecDeque<(Instant, Bytes)> = VecDeque::new();
    let mut queued = 0usize;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut src_done = false;
    loop {
        if src_done && verdict.drop {
            // A FIN into a blackhole is never seen: stay silent until the rule goes.
            if hold_silent(ctx, &mut rules, &mut crashes).await == Ending::Reset {
                return Ending::Reset;
            }
            verdict = ctx.verdict();
            continue;
        }
        if src_done && queue.is_empty() {
            let _ = dst.shutdown().await;
            return Ending::Closed;
        }
        // Under `drop` nothing moves: inbound bytes stay in the kernel (the peer's window fills,
        // as when its segments vanish) and outbound bytes queue up like an unacknowledged send
        // buffer. On heal they flow again, as TCP retransmission would deliver them.
        let due = if verdict.drop {
            None
        } else {
            queue.front().map(|(at, _)| *at)
        };
        let may_read = !src_done && queued < QUEUE_BYTES && !(verdict.drop && dir == Direction::In);
        tokio::select! {
            biased;
            _ = crashes.changed() => return Ending::Reset,
            changed = rules.changed() => {
                if changed.is_err() { return Ending::Reset; }
                verdict = ctx.verdict();
                if verdict.reject { return Ending::Reset; }
            }
            _ = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                if let Some((_, chunk)) = queue.pop_front() {
                    queued -= chunk.len();
                    if dst.write_all(&chunk).await.is_err() {
                        return Ending::Reset;
                    }
                }
            }
            read = src.read_buf(&mut buf), if may_read => match read {
                Ok(0) => src_done = true,
                Ok(_) => {
                    let chunk = buf.split().freeze();
                    let mut at = Instant::now() + verdict.delay;
                    if verdict.loss > 0.0 && rand::random::<f64>() < verdict.loss {
                        at += TCP_LOSS_STALL;
                    }
                    // Bytes keep their order whatever the delay of each chunk.
                    if let Some((last, _)) = queue.back() {
                        at = at.max(*last);
                    }
                    if queue.is_empty() && !verdict.drop && at <= Instant::now() {
                        if dst.write_all(&chunk).await.is_err() {
                            return Ending::Reset;
                        }
                    } else {
                        queued += chunk.len();
                        queue.push_back((at, chunk));
                    }
                    if buf.capacity() < 4096 {
                        buf.reserve(16 * 1024);
                    }
                }
                Err(_) => return Ending::Reset,
            },
        }
    }
}

/// Waits while a closed side's link stays blackholed. `Closed` when the rule goes (the rest is
/// then delivered and the close passed on, as TCP would after a heal), `Reset` on crash or when
/// the blackhole outlives [`ZOMBIE_MAX`].
async fn hold_silent(
    ctx: &PumpCtx,
    rules: &mut watch::Receiver<u64>,
    crashes: &mut watch::Receiver<u64>,
) -> Ending {
    let deadline = Instant::now() + ZOMBIE_MAX;
    loop {
        tokio::select! {
            _ = crashes.changed() => return Ending::Reset,
            _ = sleep_until(deadline) => return Ending::Reset,
            changed = rules.changed() => {
                if changed.is_err() {
                    return Ending::Reset;
                }
                let verdict = ctx.verdict();
                if verdict.reject {
                    return Ending::Reset;
                }
                if !verdict.drop {
                    return Ending::Closed;
                }
            }
        }
    }
}

/// An accepted connection that arrived while its link is blackholed: nothing is read (the
/// peer's data waits in the kernel, as its segments would vanish), and once the rule goes the
/// connection is reset, as the peer's retransmission would meet a socket nobody accepted.
async fn blackhole(
    faults: Faults,
    watches: Watches,
    link: Arc<str>,
    peer: SocketAddr,
    stream: TcpStream,
) {
    let ctx = PumpCtx { faults, link, peer };
    let Watches {
        mut rules,
        mut crashes,
    } = watches;
    let _ = hold_silent(&ctx, &mut rules, &mut crashes).await;
    let _ = stream.set_zero_linger();
}
