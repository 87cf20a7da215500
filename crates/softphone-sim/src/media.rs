//! A call's media heartbeat on its own UDP socket, tagged `media:<dn>` in the fault layer so a
//! scenario can cut one phone's media. The task sends a heartbeat packet every `interval` to the
//! address of the remote SDP, counts what arrives, and reports once when nothing has arrived for
//! `timeout` — the phone then drops the call (docs/scenarios.md S4.1).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use netfault::{FaultUdpSocket, Faults};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::heartbeat::{self, LossTracker};

/// Heartbeat timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MediaTimers {
    /// One packet every `interval` (20 ms is one RTP packet of G.711).
    #[serde(with = "nodekit::duration")]
    pub interval: Duration,
    /// Nothing received for this long drops the call.
    #[serde(with = "nodekit::duration")]
    pub timeout: Duration,
}

impl Default for MediaTimers {
    fn default() -> Self {
        MediaTimers {
            interval: Duration::from_millis(20),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Process-wide media counters (shared handles into the metrics registry).
#[derive(Clone, Default, Debug)]
pub struct MediaCounters {
    pub sent: Counter,
    pub received: Counter,
    pub lost: Counter,
}

/// What a media task tells the call's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSilent {
    pub call_id: Arc<str>,
}

/// A bound media socket; [`MediaSession::start`] begins the heartbeat. Dropping it stops the
/// task and closes the socket.
pub struct MediaSession {
    socket: Option<FaultUdpSocket>,
    port: u16,
    stats: Arc<std::sync::Mutex<LossTracker>>,
    stop: CancellationToken,
    _guard: DropGuard,
}

impl std::fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSession")
            .field("port", &self.port)
            .finish()
    }
}

impl MediaSession {
    /// Binds a free UDP port on `ip` for fault link `link`. Synchronous (a UDP bind does not
    /// block), so a phone's state machine can put the port in its SDP right away.
    pub fn bind(faults: &Faults, link: &str, ip: IpAddr) -> io::Result<MediaSession> {
        let std_socket = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
        std_socket.set_nonblocking(true)?;
        let port = std_socket.local_addr()?.port();
        let socket = tokio::net::UdpSocket::from_std(std_socket)?;
        let stop = CancellationToken::new();
        Ok(MediaSession {
            socket: Some(FaultUdpSocket::from_socket(faults, link, socket)),
            port,
            stats: Arc::default(),
            _guard: stop.clone().drop_guard(),
            stop,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What has arrived so far.
    pub fn stats(&self) -> LossTracker {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the heartbeat towards `remote`; false when it was already started.
    pub fn start(
        &mut self,
        remote: SocketAddr,
        timers: MediaTimers,
        call_id: Arc<str>,
        counters: MediaCounters,
        silent: mpsc::Sender<MediaSilent>,
    ) -> bool {
        let Some(socket) = self.socket.take() else {
            return false;
        };
        let task = Heartbeat {
            socket,
            remote,
            timers,
            call_id,
            counters,
            stats: self.stats.clone(),
            silent,
        };
        let stop = self.stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = task.run() => {}
            }
        });
        true
    }
}

struct Heartbeat {
    socket: FaultUdpSocket,
    remote: SocketAddr,
    timers: MediaTimers,
    call_id: Arc<str>,
    counters: MediaCounters,
    stats: Arc<std::sync::Mutex<LossTracker>>,
    silent: mpsc::Sender<MediaSilent>,
}

impl Heartbeat {
    async fn run(self) {
        let ssrc = rand::random::<u32>();
        let mut seq = rand::random::<u16>();
        let mut timestamp = rand::random::<u32>();
        let interval = self.timers.interval.max(Duration::from_millis(1));
        let samples = u32::try_from(interval.as_millis() * 8).unwrap_or(u32::MAX); // 8 kHz clock
        let mut next_send = Instant::now();
        let mut last_heard = Instant::now();
        let mut buf = [0u8; 2048];
        loop {
            let silent_at = last_heard + self.timers.timeout;
            tokio::select! {
                _ = sleep_until(next_send) => {
                    let p = heartbeat::packet(seq, timestamp, ssrc);
                    // A send refused by the fault layer or the kernel is media loss, not an error.
                    if self.socket.send_to(&p, self.remote).await.is_ok() {
                        self.counters.sent.inc();
                    }
                    seq = seq.wrapping_add(1);
                    timestamp = timestamp.wrapping_add(samples);
                    next_send += interval;
                }
                _ = sleep_until(silent_at) => {
                    let _ = self.silent.send(MediaSilent { call_id: self.call_id.clone() }).await;
                    return;
                }
                r = self.socket.recv_from(&mut buf) => {
                    // ICMP errors surface as receive errors on Linux; only packets count.
                    let Ok((n, _)) = r else { continue };
                    let Some(seq) = heartbeat::sequence(&buf[..n]) else { continue };
                    last_heard = Instant::now();
                    self.counters.received.inc();
                    let lost = self.stats.lock().unwrap_or_else(|e| e.into_inner()).on_packet(seq);
                    self.counters.lost.inc_by(lost);
                }
            }
        }
    }
}
