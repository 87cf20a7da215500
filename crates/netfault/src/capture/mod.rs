//! The capture tap: what crossed each link of a node, message by message, for the scenario
//! report's ladder diagram. Every socket of a node already goes through the fault layer under
//! the name of its link, so the tap sits here: a TCP connection cuts its two byte streams into
//! messages ([`framer`]), a UDP socket takes each datagram as one; media links only count.
//!
//! Off by default: a UDP datagram then costs one atomic load, and a TCP connection opened while
//! capture was off is never tapped (a byte stream cannot be framed from its middle). When on,
//! each message becomes a [`Record`] (time, link, direction, peer, a one-line [`summary`], the
//! message itself cut to [`MAX_MESSAGE_TEXT`]) in a ring of the node's `limit` newest records.
//! The hot path only copies the bytes into the ring; the summary is written when the record is
//! read (HTTP's excepted: a response is named after the request it answers, known only on the
//! connection).

pub mod framer;
pub mod summary;
mod tap;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

pub(crate) use tap::StreamTap;

use summary::Summary;

/// Longest message text kept per record, in bytes (the rest is cut, and the record says so).
pub const MAX_MESSAGE_TEXT: usize = 8 * 1024;
/// Most media counters a node keeps (one per link, direction and peer).
const MAX_MEDIA_COUNTERS: usize = 4096;

/// The capture limit new fault layers of this process start with (0: off); `--capture-limit`.
static PROCESS_LIMIT: AtomicUsize = AtomicUsize::new(0);

/// Sets the capture limit (records per node; 0 turns capture off) every fault layer created
/// afterwards in this process starts with.
pub fn set_process_limit(limit: usize) {
    PROCESS_LIMIT.store(limit, Ordering::Relaxed);
}

pub fn process_limit() -> usize {
    PROCESS_LIMIT.load(Ordering::Relaxed)
}

/// Which way a message went, seen from the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    In,
    Out,
}

/// The protocol of a link, from its name's prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Sip,
    Tlib,
    Tc,
    Http,
    Media,
    Other,
}

impl Proto {
    pub fn of_link(link: &str) -> Proto {
        match link.split(':').next() {
            Some("sip") => Proto::Sip,
            Some("tlib") => Proto::Tlib,
            Some("tc") => Proto::Tc,
            Some("http") => Proto::Http,
            Some("media") => Proto::Media,
            _ => Proto::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Proto::Sip => "sip",
            Proto::Tlib => "tlib",
            Proto::Tc => "tc",
            Proto::Http => "http",
            Proto::Media => "media",
            Proto::Other => "other",
        }
    }
}

/// One captured message.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    /// Rises by one per record, per node, from 1.
    pub seq: u64,
    /// Wall-clock milliseconds since the Unix epoch (the journals' clock).
    pub at_ms: u64,
    pub link: Arc<str>,
    pub dir: Dir,
    pub peer: SocketAddr,
    pub proto: &'static str,
    pub summary: String,
    /// The SIP Call-ID or T-Lib ConnID, to follow one call across links.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The message as text (lossy UTF-8), cut to [`MAX_MESSAGE_TEXT`].
    pub message: String,
}

/// Datagrams of one media stream.
#[derive(Clone, Debug, Serialize)]
pub struct MediaCounter {
    pub link: Arc<str>,
    pub dir: Dir,
    pub peer: SocketAddr,
    pub packets: u64,
    pub bytes: u64,
    pub first_ms: u64,
    pub last_ms: u64,
}

/// A message as the ring keeps it: the bytes, summarised when read.
struct Raw {
    seq: u64,
    at_ms: u64,
    link: Arc<str>,
    dir: Dir,
    peer: SocketAddr,
    proto: Proto,
    /// At most [`MAX_MESSAGE_TEXT`] bytes of it.
    message: Box<[u8]>,
    len: usize,
    /// Written at capture time when it cannot wait (HTTP, a message cut short).
    summary: Option<Summary>,
}

impl Raw {
    fn record(&self) -> Record {
        let summary = self
            .summary
            .clone()
            .unwrap_or_else(|| summarise(self.proto, &self.message));
        let mut message = String::from_utf8_lossy(&self.message).into_owned();
        if self.len > self.message.len() {
            message.push_str(&format!("\n… ({} bytes in all)", self.len));
        }
        Record {
            seq: self.seq,
            at_ms: self.at_ms,
            link: self.link.clone(),
            dir: self.dir,
            peer: self.peer,
            proto: self.proto.name(),
            summary: summary.text,
            key: summary.key,
            message,
        }
    }
}

/// The summary of a whole message of `proto`.
fn summarise(proto: Proto, message: &[u8]) -> Summary {
    match proto {
        Proto::Sip => summary::sip(message),
        Proto::Tlib => summary::tlib(message),
        Proto::Tc => summary::tc(message),
        Proto::Http => summary::http(message, &[], None),
        Proto::Media | Proto::Other => Summary {
            text: format!("{} bytes", message.len()),
            key: None,
        },
    }
}

#[derive(Default)]
struct Ring {
    records: VecDeque<Arc<Raw>>,
    next_seq: u64,
    media: BTreeMap<(Arc<str>, Dir, SocketAddr), MediaCounter>,
}

/// A node's capture: on when its limit is above 0.
pub struct Capture {
    limit: AtomicUsize,
    ring: Mutex<Ring>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("limit", &self.limit())
            .finish()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Capture {
    pub fn new(limit: usize) -> Self {
        Capture {
            limit: AtomicUsize::new(limit),
            ring: Mutex::new(Ring {
                next_seq: 1,
                ..Ring::default()
            }),
        }
    }

    /// Whether messages are recorded now: the one load a datagram pays when capture is off.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.limit.load(Ordering::Relaxed) > 0
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Turns capture on (records kept: `limit`) or off (0) for connections opened from now on
    /// and for every datagram.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
        let mut ring = self.lock();
        while ring.records.len() > limit {
            ring.records.pop_front();
        }
    }

    /// Records with `seq > since`, oldest first, at most `max`; and the newest seq.
    pub fn since(&self, since: u64, max: usize) -> (Vec<Record>, u64) {
        let (raw, last): (Vec<Arc<Raw>>, u64) = {
            let ring = self.lock();
            let first = ring.records.front().map(|r| r.seq).unwrap_or(ring.next_seq);
            let skip = since.saturating_sub(first.saturating_sub(1)) as usize;
            let raw = ring.records.iter().skip(skip).take(max).cloned().collect();
            (raw, ring.next_seq - 1)
        };
        // Summarised outside the lock: the node's sockets keep recording meanwhile.
        (raw.iter().map(|r| r.record()).collect(), last)
    }

    /// Every media counter.
    pub fn media(&self) -> Vec<MediaCounter> {
        self.lock().media.values().cloned().collect()
    }

    /// A datagram that crossed `link` (SIP over UDP is one message per datagram; media counts).
    #[inline]
    pub(crate) fn datagram(&self, link: &str, dir: Dir, peer: SocketAddr, bytes: &[u8]) {
        if self.enabled() {
            self.record_datagram(link, dir, peer, bytes);
        }
    }

    fn record_datagram(&self, link: &str, dir: Dir, peer: SocketAddr, bytes: &[u8]) {
        match Proto::of_link(link) {
            Proto::Media => self.count_media(link, dir, peer, bytes.len()),
            Proto::Sip if bytes.iter().all(|b| *b == b'\r' || *b == b'\n') => {}
            proto => self.push(link.into(), dir, peer, proto, bytes, None),
        }
    }

    fn count_media(&self, link: &str, dir: Dir, peer: SocketAddr, len: usize) {
        let at = now_ms();
        let mut ring = self.lock();
        let key: (Arc<str>, Dir, SocketAddr) = (link.into(), dir, peer);
        if let Some(c) = ring.media.get_mut(&key) {
            c.packets += 1;
            c.bytes += len as u64;
            c.last_ms = at;
        } else if ring.media.len() < MAX_MEDIA_COUNTERS {
            let counter = MediaCounter {
                link: key.0.clone(),
                dir,
                peer,
                packets: 1,
                bytes: len as u64,
                first_ms: at,
                last_ms: at,
            };
            ring.media.insert(key, counter);
        }
    }

    /// Records one message; `summary` when it cannot be written from the bytes later.
    pub(crate) fn push(
        &self,
        link: Arc<str>,
        dir: Dir,
        peer: SocketAddr,
        proto: Proto,
        message: &[u8],
        summary: Option<Summary>,
    ) {
        let limit = self.limit();
        if limit == 0 {
            return;
        }
        let kept = &message[..message.len().min(MAX_MESSAGE_TEXT)];
        // A message cut short cannot be summarised from what is kept (a big JSON frame).
        let summary =
            summary.or_else(|| (kept.len() < message.len()).then(|| summarise(proto, message)));
        let mut raw = Raw {
            seq: 0,
            at_ms: now_ms(),
            link,
            dir,
            peer,
            proto,
            message: kept.into(),
            len: message.len(),
            summary,
        };
        let mut ring = self.lock();
        raw.seq = ring.next_seq;
        ring.next_seq += 1;
        while ring.records.len() >= limit {
            ring.records.pop_front();
        }
        ring.records.push_back(Arc::new(raw));
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // A poisoned lock only means a panic elsewhere mid-push; the ring is still usable.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "127.0.1.1:5060".parse().unwrap()
    }

    #[test]
    fn off_records_nothing_and_the_ring_is_bounded() {
        let c = Capture::new(0);
        c.datagram("sip:ss1", Dir::In, peer(), b"OPTIONS sip:a SIP/2.0\r\n\r\n");
        assert!(c.since(0, 10).0.is_empty());
        c.set_limit(2);
        for i in 0..3 {
            let msg = format!("OPTIONS sip:{i} SIP/2.0\r\nCSeq: {i} OPTIONS\r\n\r\n");
            c.datagram("sip:ss1", Dir::Out, peer(), msg.as_bytes());
        }
        c.datagram("sip:ss1", Dir::In, peer(), b"\r\n\r\n");
        let (records, last) = c.since(0, 10);
        assert_eq!(last, 3);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].summary, "OPTIONS sip:1 CSeq 1");
        assert_eq!(c.since(2, 10).0.len(), 1);
        assert_eq!(records[1].proto, "sip");
    }

    #[test]
    fn media_is_counted_not_recorded() {
        let c = Capture::new(10);
        for _ in 0..5 {
            c.datagram("media:7001", Dir::Out, peer(), &[0u8; 172]);
        }
        assert!(c.since(0, 10).0.is_empty());
        let media = c.media();
        assert_eq!(media.len(), 1);
        assert_eq!((media[0].packets, media[0].bytes), (5, 860));
    }

    #[test]
    fn protocols_by_link_name() {
        assert_eq!(Proto::of_link("tc:ss1-ss3"), Proto::Tc);
        assert_eq!(Proto::of_link("tlib:gws1-ss1"), Proto::Tlib);
        assert_eq!(Proto::of_link("http:proxy-dc1-gws1"), Proto::Http);
        assert_eq!(Proto::of_link("weird"), Proto::Other);
    }
}
