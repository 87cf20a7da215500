//! UDP under the fault layer, per datagram.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::time::{sleep_until, Instant};

use crate::capture::Dir;
use crate::set::{FaultStats, Faults, Verdict};

/// Most datagrams held back by `delay` per socket and direction; beyond that they are lost.
const MAX_DELAYED: usize = 16 * 1024;

/// A UDP socket whose traffic obeys the rules of its link. Datagrams may also be sent on behalf
/// of another link ([`FaultUdpSocket::send_to_link`]), for simulators that share one socket
/// between many phones.
pub struct FaultUdpSocket {
    socket: Arc<UdpSocket>,
    faults: Faults,
    link: Arc<str>,
    delayed_in: Mutex<VecDeque<(Instant, Vec<u8>, SocketAddr)>>,
    delayed_out: Arc<AtomicUsize>,
}

impl std::fmt::Debug for FaultUdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultUdpSocket")
            .field("link", &self.link)
            .finish()
    }
}

impl FaultUdpSocket {
    /// Binds `addr` for `link`.
    pub async fn bind(faults: &Faults, link: &str, addr: SocketAddr) -> io::Result<Self> {
        Ok(Self::from_socket(
            faults,
            link,
            UdpSocket::bind(addr).await?,
        ))
    }

    /// Wraps an already configured socket (e.g. one with a large `SO_RCVBUF`).
    pub fn from_socket(faults: &Faults, link: &str, socket: UdpSocket) -> Self {
        FaultUdpSocket {
            socket: Arc::new(socket),
            faults: faults.clone(),
            link: link.into(),
            delayed_in: Mutex::new(VecDeque::new()),
            delayed_out: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub fn link(&self) -> &str {
        &self.link
    }

    /// The socket underneath, for options; sending through it bypasses the fault layer.
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Sends one datagram on the socket's own link.
    pub async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        let verdict = self.faults.verdict(&self.link, Some(target));
        self.send_with(verdict, &self.link, buf, target).await
    }

    /// Sends one datagram as traffic of `link` (a simulated phone sharing this socket).
    pub async fn send_to_link(
        &self,
        link: &str,
        buf: &[u8],
        target: SocketAddr,
    ) -> io::Result<usize> {
        let verdict = self.faults.verdict(link, Some(target));
        self.send_with(verdict, link, buf, target).await
    }

    async fn send_with(
        &self,
        verdict: Verdict,
        link: &str,
        buf: &[u8],
        target: SocketAddr,
    ) -> io::Result<usize> {
        let capture = self.faults.capture();
        if verdict.is_clear() {
            let sent = self.socket.send_to(buf, target).await?;
            capture.datagram(link, Dir::Out, target, buf);
            return Ok(sent);
        }
        if verdict.reject {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("fault layer: link {link} rejects traffic"),
            ));
        }
        if verdict.loses_one() {
            self.count_dropped(buf.len());
            return Ok(buf.len());
        }
        if verdict.delay.is_zero() {
            let sent = self.socket.send_to(buf, target).await?;
            capture.datagram(link, Dir::Out, target, buf);
            return Ok(sent);
        }
        capture.datagram(link, Dir::Out, target, buf);
        if self.delayed_out.fetch_add(1, Ordering::Relaxed) >= MAX_DELAYED {
            self.delayed_out.fetch_sub(1, Ordering::Relaxed);
            self.count_dropped(buf.len());
            return Ok(buf.len());
        }
        FaultStats::bump(&self.faults.stats().delayed_datagrams, 1);
        let (socket, pending, datagram) =
            (self.socket.clone(), self.delayed_out.clone(), buf.to_vec());
        let at = Instant::now() + verdict.delay;
        tokio::spawn(async move {
            sleep_until(at).await;
            let _ = socket.send_to(&datagram, target).await;
            pending.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(buf.len())
    }

    /// Receives the next datagram that the link's rules let through (delayed ones when due).
    /// Meant for one receive loop per socket.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, from) = self.recv_admitted(buf).await?;
        self.faults
            .capture()
            .datagram(&self.link, Dir::In, from, &buf[..n]);
        Ok((n, from))
    }

    async fn recv_admitted(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let due = {
                let mut delayed = self.delayed_in.lock().unwrap_or_else(|e| e.into_inner());
                match delayed.front() {
                    Some((at, _, _)) if *at <= Instant::now() => {
                        if let Some((_, datagram, from)) = delayed.pop_front() {
                            let n = datagram.len().min(buf.len());
                            buf[..n].copy_from_slice(&datagram[..n]);
                            return Ok((n, from));
                        }
                        None
                    }
                    Some((at, _, _)) => Some(*at),
                    None => None,
                }
            };
            let (n, from) = tokio::select! {
                r = self.socket.recv_from(buf) => r?,
                _ = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => continue,
            };
            let verdict = self.faults.verdict(&self.link, Some(from));
            if verdict.is_clear() {
                return Ok((n, from));
            }
            if verdict.reject || verdict.loses_one() {
                self.count_dropped(n);
                continue;
            }
            if verdict.delay.is_zero() {
                return Ok((n, from));
            }
            let mut delayed = self.delayed_in.lock().unwrap_or_else(|e| e.into_inner());
            if delayed.len() >= MAX_DELAYED {
                drop(delayed);
                self.count_dropped(n);
                continue;
            }
            FaultStats::bump(&self.faults.stats().delayed_datagrams, 1);
            let at = (Instant::now() + verdict.delay).max(
                delayed
                    .back()
                    .map(|(at, _, _)| *at)
                    .unwrap_or_else(Instant::now),
            );
            delayed.push_back((at, buf[..n].to_vec(), from));
        }
    }

    fn count_dropped(&self, bytes: usize) {
        let stats = self.faults.stats();
        FaultStats::bump(&stats.dropped_datagrams, 1);
        FaultStats::bump(&stats.dropped_bytes, bytes as u64);
    }
}
