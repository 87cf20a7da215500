//! The event journal: every protocol event a node sent or received that matters to DR
//! (registrations, ownership moves, logins, T-Events, link up/down), numbered and timestamped,
//! kept in a bounded ring. `GET /events?since=SEQ` reads it; tests and scenarios wait on it
//! instead of sleeping.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::Notify;

/// One journal entry.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    /// Rises by one per entry, per node, from 1.
    pub seq: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub node: Arc<str>,
    /// What happened, in the domain's words: `dn.in_service`, `agent.logout`, `tlib.event`,
    /// `link.down`, `ownership.moved` … (a fixed vocabulary, so no allocation per entry).
    pub kind: &'static str,
    /// The details, shaped per kind, kept as compact JSON text: a ring of 100k entries stays
    /// small (a parsed `Value` map costs several times more). [`Entry::detail`] parses it.
    #[serde(rename = "detail")]
    pub detail_json: Box<RawValue>,
}

impl Entry {
    /// The details as a JSON value.
    pub fn detail(&self) -> Value {
        serde_json::from_str(self.detail_json.get()).unwrap_or(Value::Null)
    }
}

struct Ring {
    entries: VecDeque<Arc<Entry>>,
    next_seq: u64,
}

/// A node's journal. Cheap to clone.
#[derive(Clone)]
pub struct Journal {
    node: Arc<str>,
    capacity: usize,
    ring: Arc<Mutex<Ring>>,
    appended: Arc<Notify>,
}

/// Default number of entries kept; older ones are forgotten (their `seq`s stay taken).
pub const DEFAULT_CAPACITY: usize = 100_000;

impl Journal {
    pub fn new(node: &str, capacity: usize) -> Self {
        Journal {
            node: node.into(),
            capacity: capacity.max(1),
            ring: Arc::new(Mutex::new(Ring {
                entries: VecDeque::new(),
                next_seq: 1,
            })),
            appended: Arc::new(Notify::new()),
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Appends an entry and wakes every waiter; returns its `seq`.
    pub fn record(&self, kind: &'static str, detail: Value) -> u64 {
        // A `Value` always serializes; the fallback only satisfies the type.
        let detail_json = serde_json::value::to_raw_value(&detail)
            .unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap_or_default());
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let seq = {
            let mut ring = self.lock();
            let seq = ring.next_seq;
            ring.next_seq += 1;
            if ring.entries.len() == self.capacity {
                ring.entries.pop_front();
            }
            ring.entries.push_back(Arc::new(Entry {
                seq,
                at_ms,
                node: self.node.clone(),
                kind,
                detail_json,
            }));
            seq
        };
        tracing::debug!(node = %self.node, seq, kind, "journal");
        self.appended.notify_waiters();
        seq
    }

    /// The `seq` of the newest entry (0 when empty).
    pub fn last_seq(&self) -> u64 {
        self.lock().next_seq - 1
    }

    /// Entries with `seq > since`, oldest first, at most `limit`.
    pub fn since(&self, since: u64, limit: usize) -> Vec<Arc<Entry>> {
        let ring = self.lock();
        let first = ring.entries.front().map(|e| e.seq).unwrap_or(ring.next_seq);
        let skip = since.saturating_sub(first.saturating_sub(1)) as usize;
        ring.entries
            .iter()
            .skip(skip)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Waits until an entry with `seq > since` matches `pred`, or `timeout` passes.
    pub async fn wait_for(
        &self,
        since: u64,
        timeout: Duration,
        mut pred: impl FnMut(&Entry) -> bool,
    ) -> Option<Arc<Entry>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = since;
        loop {
            let notified = self.appended.notified();
            tokio::pin!(notified);
            // Register interest before looking, so an entry appended in between is not missed.
            notified.as_mut().enable();
            for entry in self.since(seen, usize::MAX) {
                seen = entry.seq;
                if pred(&entry) {
                    return Some(entry);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Waits until at least one entry newer than `since` exists, or `timeout` passes.
    pub async fn wait_newer(&self, since: u64, timeout: Duration) {
        let _ = self.wait_for(since, timeout, |_| true).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ring_is_bounded_and_sequenced() {
        let j = Journal::new("ss1", 3);
        for i in 0..5 {
            j.record("x", json!({ "i": i }));
        }
        assert_eq!(j.last_seq(), 5);
        let all: Vec<u64> = j.since(0, 100).iter().map(|e| e.seq).collect();
        assert_eq!(all, vec![3, 4, 5]);
        let newer: Vec<u64> = j.since(4, 100).iter().map(|e| e.seq).collect();
        assert_eq!(newer, vec![5]);
        assert!(j.since(5, 100).is_empty());
        assert_eq!(j.since(0, 1).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_wake_on_matching_entry() {
        let j = Journal::new("ss1", 100);
        let j2 = j.clone();
        let waiter = tokio::spawn(async move {
            j2.wait_for(0, Duration::from_secs(5), |e| e.kind == "dn.out_of_service")
                .await
        });
        tokio::task::yield_now().await;
        j.record("dn.in_service", json!({}));
        j.record("dn.out_of_service", json!({ "dn": "7001" }));
        let hit = waiter.await.unwrap().unwrap();
        assert_eq!(hit.seq, 2);
        assert_eq!(hit.detail(), json!({ "dn": "7001" }));
        let wire = serde_json::to_value(&*hit).unwrap();
        assert_eq!(
            wire["detail"]["dn"], "7001",
            "served as a JSON object: {wire}"
        );
        assert!(j
            .wait_for(2, Duration::from_secs(1), |_| true)
            .await
            .is_none());
    }
}
