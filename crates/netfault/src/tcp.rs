//! TCP under the fault layer. A connection whose link no rule touches is the socket itself: reads
//! and writes go straight to it and only look at the rule epoch (one atomic load) on the way. The
//! moment a rule applies to the link (or the node crashes), the connection leaves that fast path
//! for good: a reject or crash resets it, any other rule hands the socket to a pump task that
//! moves bytes between it and an in-memory pipe the application then uses, obeying the rules.
//! A small watcher task per fast-path connection makes that switch happen at once even while the
//! application is not touching the socket (a reset must reach the peer without waiting).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::{sleep_until, Instant};

use crate::capture::{Dir, StreamTap};
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
    state: Arc<Mutex<State>>,
    peer: SocketAddr,
    local: SocketAddr,
    link: Arc<str>,
    /// Whether the connection is tapped (capture was on when it opened): when not, reads and
    /// writes never look at the tap.
    tapped: bool,
}

/// What the application's reads and writes go to, shared with the connection's watcher.
struct State {
    io: Io,
    ctx: PumpCtx,
    /// [`Faults::epoch`] when the rules were last looked at.
    seen: u64,
    /// The crash count when the connection was opened.
    crashes: u64,
    /// Tasks parked on the socket, woken when it is switched away under them.
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    watcher: Option<AbortHandle>,
    /// The capture tap, when capture was on as the connection opened.
    tap: Option<Box<StreamTap>>,
}

impl State {
    /// Hands bytes that crossed the connection to the tap.
    fn tap(&mut self, dir: Dir, bytes: &[u8]) {
        if let Some(tap) = &mut self.tap {
            tap.feed(self.ctx.faults.capture(), dir, bytes);
        }
    }
}

enum Io {
    /// No rule applies: the socket itself.
    Direct(TcpStream),
    /// A rule applies or applied: the pump owns the socket and the application uses this pipe.
    Piped(DuplexStream),
    /// Reset by a reject rule or a crash: reads see the end, writes fail.
    Reset,
}

impl State {
    /// Leaves the fast path if a rule now applies to the link or the node crashed. `force`
    /// looks even when the epoch has not moved (the watcher may run between a watch channel's
    /// change and the epoch bump).
    fn check(&mut self, force: bool) {
        let epoch = self.ctx.faults.epoch();
        if (epoch == self.seen && !force) || !matches!(self.io, Io::Direct(_)) {
            return;
        }
        self.seen = epoch;
        // Subscribe before looking: a change right after is then seen by the pump.
        let watches = Watches::subscribe(&self.ctx.faults);
        let crashed = *watches.crashes.borrow() != self.crashes;
        let verdict = self.ctx.verdict();
        if !crashed && verdict.is_clear() {
            return;
        }
        let Io::Direct(stream) = std::mem::replace(&mut self.io, Io::Reset) else {
            return;
        };
        if crashed || verdict.reject {
            reset(&self.ctx, stream);
        } else {
            // Bytes the kernel already holds arrived before the rule: the application gets
            // them as they are (the pump would have read them into the pipe already).
            let early = read_received(&stream);
            self.io = Io::Piped(start_pump(self.ctx.clone(), watches, stream, early));
        }
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        for w in [self.read_waker.take(), self.write_waker.take()]
            .into_iter()
            .flatten()
        {
            w.wake();
        }
    }
}

/// Remembers the task parked on the socket (cloning its waker only when it changed).
fn park(slot: &mut Option<Waker>, cx: &Context<'_>) {
    if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        *slot = Some(cx.waker().clone());
    }
}

/// Resets a connection (RST to the peer).
fn reset(ctx: &PumpCtx, stream: TcpStream) {
    FaultStats::bump(&ctx.faults.stats().reset_connections, 1);
    let _ = stream.set_zero_linger();
    drop(stream);
    tracing::debug!(link = %ctx.link, peer = %ctx.peer, "connection reset by fault layer");
}

/// What the kernel has received and the application not read yet, at most a pipe's worth.
fn read_received(stream: &TcpStream) -> Vec<u8> {
    let sock = socket2::SockRef::from(stream);
    let mut early = vec![0u8; PIPE_BYTES];
    let mut got = 0;
    // The socket is non-blocking: this ends with WouldBlock once the kernel's queue is empty.
    while got < early.len() {
        match (&*sock).read(&mut early[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    early.truncate(got);
    early
}

/// Hands `stream` to a pump task; the returned pipe end is the application's. `early` bytes are
/// put in the pipe first.
fn start_pump(ctx: PumpCtx, watches: Watches, stream: TcpStream, early: Vec<u8>) -> DuplexStream {
    let (app, mut pump_side) = tokio::io::duplex(PIPE_BYTES);
    tokio::spawn(async move {
        // At most PIPE_BYTES into an empty pipe of that size: this does not wait.
        if !early.is_empty() && pump_side.write_all(&early).await.is_err() {
            return;
        }
        run_connection(ctx, watches, stream, pump_side).await;
    });
    app
}

/// Switches a fast-path connection as soon as the rules change or the node crashes.
async fn watch_direct(state: Weak<Mutex<State>>, mut watches: Watches) {
    loop {
        let changed = tokio::select! {
            r = watches.crashes.changed() => r,
            r = watches.rules.changed() => r,
        };
        let Some(state) = state.upgrade() else { return };
        let mut st = lock(&state);
        // A closed channel cannot happen while the state (holding the Faults) lives; leaving
        // then only stops the proactive switch, the reads and writes still check.
        if changed.is_err() {
            return;
        }
        st.check(true);
        if !matches!(st.io, Io::Direct(_)) {
            return;
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A poisoned lock only means a panic elsewhere; the state is still consistent.
    state.lock().unwrap_or_else(|e| e.into_inner())
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

    /// Hands the first `n` bytes of `bufs` (what a write took) to the tap.
    fn tap_written(&self, bufs: &[IoSlice<'_>], mut n: usize) {
        let mut st = lock(&self.state);
        for b in bufs {
            if n == 0 {
                break;
            }
            let take = n.min(b.len());
            st.tap(Dir::Out, &b[..take]);
            n -= take;
        }
    }
}

impl Drop for FaultStream {
    fn drop(&mut self) {
        let mut st = lock(&self.state);
        // A rule that came before the close decides how the close goes out (a FIN into a
        // blackhole stays in the pump), even if the watcher has not run yet. Handing over to a
        // pump needs a runtime; without one (dropped outside it) the socket just closes.
        if tokio::runtime::Handle::try_current().is_ok() {
            st.check(false);
        }
        if let Some(w) = st.watcher.take() {
            w.abort();
        }
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
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut st = lock(&self.state);
        st.check(false);
        let st = &mut *st;
        let before = buf.filled().len();
        let r = match &mut st.io {
            Io::Direct(s) => {
                let r = Pin::new(s).poll_read(cx, buf);
                if r.is_pending() {
                    park(&mut st.read_waker, cx);
                }
                r
            }
            Io::Piped(p) => Pin::new(p).poll_read(cx, buf),
            Io::Reset => Poll::Ready(Ok(())),
        };
        if self.tapped && matches!(r, Poll::Ready(Ok(()))) {
            st.tap(Dir::In, &buf.filled()[before..]);
        }
        r
    }
}

/// Runs one write-side operation on whatever the connection is now.
fn poll_write_side<T>(
    state: &Mutex<State>,
    cx: &mut Context<'_>,
    direct: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    piped: impl FnOnce(Pin<&mut DuplexStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    reset: impl FnOnce() -> io::Result<T>,
) -> Poll<io::Result<T>> {
    let mut st = lock(state);
    st.check(false);
    let st = &mut *st;
    match &mut st.io {
        Io::Direct(s) => {
            let r = direct(Pin::new(s), cx);
            if r.is_pending() {
                park(&mut st.write_waker, cx);
            }
            r
        }
        Io::Piped(p) => piped(Pin::new(p), cx),
        Io::Reset => Poll::Ready(reset()),
    }
}

fn broken_pipe<T>() -> io::Result<T> {
    Err(io::Error::new(
        io::ErrorKind::BrokenPipe,
        "fault layer: connection reset",
    ))
}

impl AsyncWrite for FaultStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = poll_write_side(
            &self.state,
            cx,
            |s, cx| s.poll_write(cx, buf),
            |p, cx| p.poll_write(cx, buf),
            broken_pipe,
        );
        if let (true, Poll::Ready(Ok(n))) = (self.tapped, &r) {
            self.tap_written(&[IoSlice::new(buf)], *n);
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = poll_write_side(
            &self.state,
            cx,
            |s, cx| s.poll_write_vectored(cx, bufs),
            |p, cx| p.poll_write_vectored(cx, bufs),
            broken_pipe,
        );
        if let (true, Poll::Ready(Ok(n))) = (self.tapped, &r) {
            self.tap_written(bufs, *n);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        // True of the socket; the pipe takes the first slice at a time, which is still correct.
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_write_side(
            &self.state,
            cx,
            |s, cx| s.poll_flush(cx),
            |p, cx| p.poll_flush(cx),
            || Ok(()),
        )
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_write_side(
            &self.state,
            cx,
            |s, cx| s.poll_shutdown(cx),
            |p, cx| p.poll_shutdown(cx),
            || Ok(()),
        )
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
        let watches = Watches::subscribe(&faults);
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
    let link: Arc<str> = link.into();
    let ctx = PumpCtx {
        faults: faults.clone(),
        link: link.clone(),
        peer,
    };
    // Subscribe before looking at the rules: a rule or crash right after this must not be missed.
    let seen = faults.epoch();
    let watches = Watches::subscribe(faults);
    let crashes = *watches.crashes.borrow();
    let clear = ctx.verdict().is_clear();
    let tap = StreamTap::new(faults.capture(), &link, peer);
    let tapped = tap.is_some();
    let io = if clear {
        Io::Direct(stream)
    } else {
        Io::Piped(start_pump(ctx.clone(), watches.clone(), stream, Vec::new()))
    };
    let state = Arc::new(Mutex::new(State {
        io,
        ctx,
        seen,
        crashes,
        read_waker: None,
        write_waker: None,
        watcher: None,
        tap,
    }));
    if clear {
        let watcher = tokio::spawn(watch_direct(Arc::downgrade(&state), watches));
        lock(&state).watcher = Some(watcher.abort_handle());
    }
    FaultStream {
        state,
        peer,
        local,
        link,
        tapped,
    }
}

/// The change signals a pump listens to.
#[derive(Clone)]
struct Watches {
    rules: watch::Receiver<u64>,
    crashes: watch::Receiver<u64>,
}

impl Watches {
    fn subscribe(faults: &Faults) -> Self {
        Watches {
            rules: faults.watch_rules(),
            crashes: faults.watch_crashes(),
        }
    }
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
