//! RFC 3261 §17.2 server transactions as a pure state table (no sockets, no tasks).
//!
//! The table absorbs request retransmissions: a retransmitted REGISTER must get the *same* final
//! response again, not be processed twice (which would double-count registrations and break
//! "drop the Nth response" scenarios). The caller feeds requests and the responses it sent,
//! passes `now` explicitly (tests use plain `Instant`s) and calls [`ServerTransactions::purge`]
//! periodically.
//!
//! Non-INVITE (§17.2.2): Trying → Proceeding (provisional sent) → Completed (final sent, kept
//! for Timer J = 64·T1 on unreliable transports, 0 on reliable ones) → gone.
//! INVITE is only partly modelled for now: a non-2xx final is cached for Timer H = 64·T1 and the
//! matching ACK is absorbed; a 2xx ends the transaction at once (§17.2.1, the TU retransmits 2xx).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rsip::Method;
use serde::{Deserialize, Serialize};

use crate::fields::{self, FieldError};
use crate::ids::BRANCH_MAGIC;

/// RFC 3261 timer base values. Serialised as milliseconds (`t1 = 500`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimerConfig {
    /// RTT estimate (default 500 ms).
    #[serde(with = "millis")]
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses (default 4 s).
    #[serde(with = "millis")]
    pub t2: Duration,
    /// Maximum time a message stays in the network (default 5 s).
    #[serde(with = "millis")]
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64·T1: Timers B, F, H and J (32 s by default).
    pub fn t1_x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// §17.2.3 matching key: top Via branch + sent-by + method (ACK is filed under INVITE).
///
/// For pre-RFC 3261 peers (no `z9hG4bK` branch) the branch slot holds a composite of Call-ID,
/// CSeq number, From tag and Request-URI, an approximation of the §17.2.3 fallback rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxKey {
    pub branch: String,
    pub sent_by: String,
    pub method: Method,
}

impl Hash for TxKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // rsip::Method has no Hash; its discriminant does.
        self.branch.hash(state);
        self.sent_by.hash(state);
        std::mem::discriminant(&self.method).hash(state);
    }
}

impl TxKey {
    /// Key of a request; an ACK yields the key of the INVITE it acknowledges.
    pub fn of_request(req: &rsip::Request) -> Result<Self, FieldError> {
        let via = fields::top_via(req)?;
        let method = match req.method {
            Method::Ack => Method::Invite,
            m => m,
        };
        let branch = match via.branch {
            Some(b) if b.starts_with(BRANCH_MAGIC) => b.to_owned(),
            _ => {
                let (seq, _) = fields::cseq(req)?;
                let from_tag = fields::from_tag(req)?.unwrap_or_default();
                format!(
                    "rfc2543:{}:{seq}:{from_tag}:{}",
                    fields::call_id(req)?,
                    req.uri
                )
            }
        };
        Ok(Self {
            branch,
            sent_by: via.sent_by.to_ascii_lowercase(),
            method,
        })
    }
}

/// What to do with an incoming request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxVerdict {
    /// First sight: process it, then report the response with [`ServerTransactions::on_response`].
    New(TxKey),
    /// A retransmission: resend the cached response if there is one (the final response once
    /// Completed, the last provisional while Proceeding), otherwise just drop it.
    Retransmission(Option<Bytes>),
    /// An ACK. `Some(key)` when it acknowledged a cached non-2xx INVITE response (absorbed;
    /// drop it), `None` when it belongs to a 2xx / dialog and is for the TU.
    Ack(Option<TxKey>),
}

#[derive(Debug)]
struct Entry {
    /// Last response sent, if any.
    response: Option<Bytes>,
    completed: bool,
    /// Identifies the heap item currently responsible for this entry's expiry.
    deadline_id: u64,
    deadline: Instant,
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxStats {
    pub created: u64,
    pub retransmissions: u64,
    /// Entries dropped because the table was full.
    pub evicted: u64,
    /// Entries that expired without any final response (the TU never answered).
    pub abandoned: u64,
}

/// Table of server transactions with time-ordered expiry and a hard entry cap.
#[derive(Debug)]
pub struct ServerTransactions {
    timers: TimerConfig,
    max_entries: usize,
    map: HashMap<TxKey, Entry>,
    /// Min-heap of expiries. Items whose id no longer matches the entry's `deadline_id` are
    /// stale and skipped; this makes rescheduling O(log n) without searching.
    heap: BinaryHeap<HeapItem>,
    next_id: u64,
    stats: TxStats,
}

impl ServerTransactions {
    /// Table holding at most `max_entries` transactions (at least 1).
    pub fn new(timers: TimerConfig, max_entries: usize) -> Self {
        Self {
            timers,
            max_entries: max_entries.max(1),
            map: HashMap::new(),
            heap: BinaryHeap::new(),
            next_id: 0,
            stats: TxStats::default(),
        }
    }

    pub fn timers(&self) -> &TimerConfig {
        &self.timers
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn stats(&self) -> TxStats {
        self.stats
    }

    /// Earliest pending expiry (possibly of a stale item), to arm a purge timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|i| i.deadline)
    }

    /// Classifies a request. Errors only when the request lacks what matching needs (Via, and
    /// for pre-3261 peers CSeq/Call-ID/From): answer 400 in that case.
    pub fn on_request(
        &mut self,
        req: &rsip::Request,
        now: Instant,
    ) -> Result<TxVerdict, FieldError> {
        let key = TxKey::of_request(req)?;
        if req.method == Method::Ack {
            let completed = self
                .map
                .get(&key)
                .filter(|e| e.completed)
                .map(|e| e.deadline);
            return Ok(TxVerdict::Ack(completed.map(|deadline| {
                // Timer I (T4 on unreliable transports): keep absorbing ACK retransmits a
                // little longer, then go. 0 would do on reliable ones; T4 is harmless there.
                let until = now + self.timers.t4;
                if until < deadline {
                    self.schedule(&key, until);
                }
                key
            })));
        }
        if let Some(e) = self.map.get(&key) {
            self.stats.retransmissions += 1;
            return Ok(TxVerdict::Retransmission(e.response.clone()));
        }
        while self.map.len() >= self.max_entries {
            if !self.evict_oldest() {
                break;
            }
        }
        let id = self.bump_id();
        // A transaction the TU never answers must not live forever: give it the client's own
        // patience (Timer F = 64·T1), after which the client has given up anyway.
        let deadline = now + self.timers.t1_x64();
        self.map.insert(
            key.clone(),
            Entry {
                response: None,
                completed: false,
                deadline_id: id,
                deadline,
            },
        );
        self.heap.push(HeapItem {
            deadline,
            id,
            key: key.clone(),
        });
        self.stats.created += 1;
        Ok(TxVerdict::New(key))
    }

    /// Records the response sent for `key`. A provisional response (1xx, read from the status
    /// line) is cached for retransmissions while Proceeding; a final one completes the
    /// transaction: cached for Timer J = 64·T1 on unreliable transports, removed at once on
    /// reliable ones (where the peer never retransmits). Unknown keys are ignored.
    pub fn on_response(&mut self, key: &TxKey, response: Bytes, now: Instant, reliable: bool) {
        let code = status_of(&response);
        let Some(entry) = self.map.get_mut(key) else {
            return;
        };
        if entry.completed {
            // A second final response is a TU bug; keep the first (RFC 3261 §17.2.2).
            return;
        }
        if code.is_some_and(|c| c < 200) {
            entry.response = Some(response);
            return;
        }
        let is_invite = key.method == Method::Invite;
        let success = code.is_some_and(|c| (200..300).contains(&c));
        let linger = if is_invite {
            if success {
                None // §17.2.1: 2xx terminates the INVITE server transaction.
            } else {
                Some(self.timers.t1_x64()) // Timer H, waiting for the ACK.
            }
        } else if reliable {
            None
        } else {
            Some(self.timers.t1_x64()) // Timer J
        };
        match linger {
            None => {
                self.map.remove(key);
            }
            Some(d) => {
                entry.response = Some(response);
                entry.completed = true;
                self.schedule(key, now + d);
            }
        }
    }

    /// Removes every transaction whose time is up; returns how many. Cost is proportional to
    /// the expired items, not to the table size.
    pub fn purge(&mut self, now: Instant) -> usize {
        let mut removed = 0;
        while self.heap.peek().is_some_and(|i| i.deadline <= now) {
            let Some(HeapItem { id, key, .. }) = self.heap.pop() else {
                break;
            };
            if self.map.get(&key).is_some_and(|e| e.deadline_id == id) {
                if let Some(e) = self.map.remove(&key) {
                    if !e.completed && e.response.is_none() {
                        self.stats.abandoned += 1;
                    }
                }
                removed += 1;
            }
        }
        // Stale heap items pile up when entries are removed early (reliable finals, 2xx);
        // rebuild when they dominate so memory stays proportional to live entries.
        if self.heap.len() > 64 && self.heap.len() > self.map.len() * 4 {
            self.compact();
        }
        // After a burst (a registration storm caches one response per REGISTER for 64·T1) give
        // the table's memory back once it has drained, or it stays at the peak for good.
        if self.map.capacity() > 4096 && self.map.capacity() > self.map.len() * 4 {
            self.map.shrink_to_fit();
            self.heap.shrink_to_fit();
        }
        removed
    }

    fn bump_id(&mut self) -> u64 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    fn schedule(&mut self, key: &TxKey, deadline: Instant) {
        let id = self.bump_id();
        if let Some(e) = self.map.get_mut(key) {
            e.deadline_id = id;
            e.deadline = deadline;
            self.heap.push(HeapItem {
                deadline,
                id,
                key: key.clone(),
            });
        }
    }

    /// Drops the live entry with the earliest deadline (≈ the oldest). Returns false when
    /// there was nothing to evict.
    fn evict_oldest(&mut self) -> bool {
        while let Some(HeapItem { id, key, .. }) = self.heap.pop() {
            if self.map.get(&key).is_some_and(|e| e.deadline_id == id) {
                self.map.remove(&key);
                self.stats.evicted += 1;
                return true;
            }
        }
        false
    }

    fn compact(&mut self) {
        let map = &self.map;
        let items: Vec<_> = std::mem::take(&mut self.heap)
            .into_vec()
            .into_iter()
            .filter(|i| map.get(&i.key).is_some_and(|e| e.deadline_id == i.id))
            .collect();
        self.heap = BinaryHeap::from(items);
    }
}

/// One scheduled expiry; ordered so that `BinaryHeap` (a max-heap) pops the earliest first.
#[derive(Debug)]
struct HeapItem {
    deadline: Instant,
    id: u64,
    key: TxKey,
}

impl Ord for HeapItem {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .deadline
            .cmp(&self.deadline)
            .then_with(|| other.id.cmp(&self.id))
    }
}

impl PartialOrd for HeapItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for HeapItem {
    fn eq(&self, other: &Self) -> bool {
        self.deadline == other.deadline && self.id == other.id
    }
}

impl Eq for HeapItem {}

/// Status code of a response in wire form (`SIP/2.0 200 OK`), if readable.
fn status_of(resp: &[u8]) -> Option<u16> {
    let rest = resp.get(..12)?;
    if !rest[..8].eq_ignore_ascii_case(b"SIP/2.0 ") {
        return None;
    }
    std::str::from_utf8(&rest[8..11]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{response_for, RequestBuilder};
    use rsip::StatusCode;

    fn local() -> std::net::SocketAddr {
        "198.51.100.20:5060".parse().unwrap()
    }

    fn register() -> rsip::Request {
        RequestBuilder::register("sip:198.51.100.10", "sip:1001@example.com", local(), 60)
            .build()
            .unwrap()
    }

    fn bytes_of(req: &rsip::Request, code: StatusCode) -> Bytes {
        Bytes::from(response_for(req, code).to_string())
    }

    fn table() -> ServerTransactions {
        ServerTransactions::new(TimerConfig::default(), 1000)
    }

    #[test]
    fn retransmission_gets_cached_final_until_timer_j() {
        let mut t = table();
        let t0 = Instant::now();
        let req = register();
        let TxVerdict::New(key) = t.on_request(&req, t0).unwrap() else {
            panic!("expected new")
        };
        // Retransmitted before any response: absorbed, nothing to resend.
        assert_eq!(
            t.on_request(&req, t0).unwrap(),
            TxVerdict::Retransmission(None)
        );
        let ok = bytes_of(&req, StatusCode::OK);
        t.on_response(&key, ok.clone(), t0, false);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(
            t.on_request(&req, later).unwrap(),
            TxVerdict::Retransmission(Some(ok.clone()))
        );
        assert_eq!(t.purge(t0 + Duration::from_secs(31)), 0);
        assert_eq!(t.len(), 1);
        assert_eq!(t.purge(t0 + Duration::from_secs(32)), 1);
        assert!(t.is_empty());
        // After Timer J the same request is new again.
        assert!(matches!(
            t.on_request(&req, later).unwrap(),
            TxVerdict::New(_)
        ));
        assert_eq!(t.stats().retransmissions, 2);
    }

    #[test]
    fn provisional_is_resent_while_proceeding_and_final_wins() {
        let mut t = table();
        let now = Instant::now();
        let req = register();
        let TxVerdict::New(key) = t.on_request(&req, now).unwrap() else {
            panic!()
        };
        let trying = bytes_of(&req, StatusCode::Trying);
        t.on_response(&key, trying.clone(), now, false);
        assert_eq!(
            t.on_request(&req, now).unwrap(),
            TxVerdict::Retransmission(Some(trying))
        );
        let ok = bytes_of(&req, StatusCode::OK);
        t.on_response(&key, ok.clone(), now, false);
        t.on_response(&key, bytes_of(&req, StatusCode::BusyHere), now, false);
        assert_eq!(
            t.on_request(&req, now).unwrap(),
            TxVerdict::Retransmission(Some(ok))
        );
    }

    #[test]
    fn reliable_transport_has_no_timer_j() {
        let mut t = table();
        let now = Instant::now();
        let req = register();
        let TxVerdict::New(key) = t.on_request(&req, now).unwrap() else {
            panic!()
        };
        t.on_response(&key, bytes_of(&req, StatusCode::OK), now, true);
        assert!(t.is_empty());
        assert_eq!(t.purge(now + Duration::from_secs(100)), 0);
    }

    #[test]
    fn unanswered_transactions_expire_and_are_counted() {
        let mut t = table();
        let now = Instant::now();
        t.on_request(&register(), now).unwrap();
        assert_eq!(t.purge(now + Duration::from_secs(32)), 1);
        assert_eq!(t.stats().abandoned, 1);
    }

    #[test]
    fn key_uses_branch_sent_by_and_method() {
        let mut t = table();
        let now = Instant::now();
        let req = register();
        t.on_request(&req, now).unwrap();
        // Same branch from another sent-by: a different transaction.
        let mut other = req.clone();
        let v = fields::top_via(&req).unwrap();
        let new_via = format!(
            "SIP/2.0/UDP 198.51.100.99:5060;branch={}",
            v.branch.unwrap()
        );
        other
            .headers
            .unique_push(rsip::Header::Via(rsip::headers::Via::from(
                new_via.as_str(),
            )));
        assert!(matches!(
            t.on_request(&other, now).unwrap(),
            TxVerdict::New(_)
        ));
        // Same branch, other method (CANCEL shares the INVITE branch): different.
        let mut cancel = req.clone();
        cancel.method = Method::Cancel;
        assert!(matches!(
            t.on_request(&cancel, now).unwrap(),
            TxVerdict::New(_)
        ));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn invite_non_2xx_absorbs_ack_and_2xx_ends() {
        let mut t = table();
        let now = Instant::now();
        let invite = RequestBuilder::invite("sip:1001@x", "sip:2002@y", local(), "v=0\r\n")
            .build()
            .unwrap();
        let TxVerdict::New(key) = t.on_request(&invite, now).unwrap() else {
            panic!()
        };
        let busy = bytes_of(&invite, StatusCode::BusyHere);
        t.on_response(&key, busy.clone(), now, true);
        assert_eq!(
            t.on_request(&invite, now).unwrap(),
            TxVerdict::Retransmission(Some(busy))
        );
        let mut ack = invite.clone();
        ack.method = Method::Ack;
        assert_eq!(t.on_request(&ack, now).unwrap(), TxVerdict::Ack(Some(key)));
        // Timer I (T4) then ends it.
        assert_eq!(t.purge(now + Duration::from_secs(5)), 1);

        let invite2 = RequestBuilder::invite("sip:1001@x", "sip:2002@y", local(), "v=0\r\n")
            .build()
            .unwrap();
        let TxVerdict::New(key2) = t.on_request(&invite2, now).unwrap() else {
            panic!()
        };
        t.on_response(&key2, bytes_of(&invite2, StatusCode::OK), now, false);
        assert!(t.is_empty());
        let mut ack2 = invite2.clone();
        ack2.method = Method::Ack;
        assert_eq!(t.on_request(&ack2, now).unwrap(), TxVerdict::Ack(None));
    }

    #[test]
    fn cap_evicts_oldest() {
        let mut t = ServerTransactions::new(TimerConfig::default(), 3);
        let t0 = Instant::now();
        let reqs: Vec<_> = (0..4).map(|_| register()).collect();
        for (i, r) in reqs.iter().enumerate() {
            t.on_request(r, t0 + Duration::from_millis(i as u64))
                .unwrap();
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.stats().evicted, 1);
        // The first one was evicted: it is new again; the last one is still known.
        assert!(matches!(
            t.on_request(&reqs[3], t0).unwrap(),
            TxVerdict::Retransmission(None)
        ));
        assert!(matches!(
            t.on_request(&reqs[0], t0).unwrap(),
            TxVerdict::New(_)
        ));
    }

    #[test]
    fn stale_heap_items_are_compacted() {
        let mut t = table();
        let now = Instant::now();
        for _ in 0..500 {
            let r = register();
            let TxVerdict::New(k) = t.on_request(&r, now).unwrap() else {
                panic!()
            };
            t.on_response(&k, bytes_of(&r, StatusCode::OK), now, true);
        }
        assert!(t.is_empty());
        t.purge(now);
        assert!(t.heap.len() <= 64);
    }

    #[test]
    fn legacy_branch_key_and_missing_via() {
        let mut req = register();
        req.headers
            .unique_push(rsip::Header::Via(rsip::headers::Via::from(
                "SIP/2.0/UDP 198.51.100.20:5060;branch=1234",
            )));
        let k = TxKey::of_request(&req).unwrap();
        assert!(k.branch.starts_with("rfc2543:"));
        req.headers.retain(|h| !matches!(h, rsip::Header::Via(_)));
        assert_eq!(
            TxKey::of_request(&req).unwrap_err(),
            FieldError::Missing("Via")
        );
    }

    #[test]
    fn timer_config_serde_in_millis() {
        let c: TimerConfig = serde_json::from_str(r#"{"t1": 100}"#).unwrap();
        assert_eq!(c.t1, Duration::from_millis(100));
        assert_eq!(c.t2, Duration::from_secs(4));
        let s = serde_json::to_string(&TimerConfig::default()).unwrap();
        assert_eq!(s, r#"{"t1":500,"t2":4000,"t4":5000}"#);
        let c: TimerConfig = toml::from_str("t4 = 1000").unwrap();
        assert_eq!(c.t4, Duration::from_secs(1));
        assert_eq!(c.t1_x64(), Duration::from_secs(32));
    }
}
