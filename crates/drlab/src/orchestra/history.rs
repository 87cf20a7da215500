//! One merged history of a scenario: every node's and actor's journal, read in place, ordered by
//! wall-clock time. Checks read it (what happened, when) and wait on it (bounded, woken by new
//! entries, never by sleeping).

use std::future::Future;
use std::time::Duration;

use nodekit::{Entry, Journal};
use serde_json::Value;
use tokio::time::Instant;

/// One entry of the history.
#[derive(Clone, Debug)]
pub struct Event {
    /// The journal it came from (`ss1`, `gws2`, `desktops`, `caller`, `phone-7002` …).
    pub source: String,
    pub at_ms: u64,
    pub kind: &'static str,
    pub detail: Value,
}

impl Event {
    fn of(source: &str, e: &Entry) -> Event {
        Event {
            source: source.to_owned(),
            at_ms: e.at_ms,
            kind: e.kind,
            detail: e.detail(),
        }
    }

    /// A one-line description, for evidence.
    pub fn describe(&self) -> String {
        format!("{} {} {}", self.source, self.kind, self.detail)
    }
}

/// A point in the history: each journal's newest sequence number then (a journal added later
/// counts from its start).
#[derive(Clone, Debug)]
pub struct Mark(Vec<u64>);

impl Mark {
    fn seq(&self, source: usize) -> u64 {
        self.0.get(source).copied().unwrap_or(0)
    }
}

/// The journals of a scenario.
#[derive(Clone, Default)]
pub struct History {
    sources: Vec<(String, Journal)>,
}

/// Wall-clock milliseconds, the journals' clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl History {
    pub fn add(&mut self, source: &str, journal: &Journal) {
        self.sources.push((source.to_owned(), journal.clone()));
    }

    /// Now.
    pub fn mark(&self) -> Mark {
        Mark(self.sources.iter().map(|(_, j)| j.last_seq()).collect())
    }

    /// The beginning: every entry the journals still hold.
    pub fn mark_start(&self) -> Mark {
        Mark(vec![0; self.sources.len()])
    }

    /// Every entry after `mark`, merged in time order.
    pub fn since(&self, mark: &Mark) -> Vec<Event> {
        let mut all: Vec<Event> = self
            .sources
            .iter()
            .enumerate()
            .flat_map(|(i, (name, j))| {
                j.since(mark.seq(i), usize::MAX)
                    .iter()
                    .map(|e| Event::of(name, e))
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_by_key(|e| e.at_ms);
        all
    }

    /// The entries of `source` after `mark` that satisfy `pred`, oldest first.
    pub fn find_all(
        &self,
        mark: &Mark,
        source: &str,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> Vec<Event> {
        self.since(mark)
            .into_iter()
            .filter(|e| e.source == source && pred(e))
            .collect()
    }

    /// The first entry of `source` after `mark` that satisfies `pred`.
    pub fn find(
        &self,
        mark: &Mark,
        source: &str,
        pred: impl FnMut(&Event) -> bool,
    ) -> Option<Event> {
        self.find_all(mark, source, pred).into_iter().next()
    }

    /// Waits (at most `timeout`) for an entry of `source` after `mark` that satisfies `pred`.
    pub async fn wait_for(
        &self,
        mark: &Mark,
        source: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        let index = self.sources.iter().position(|(n, _)| n == source)?;
        let (_, journal) = &self.sources[index];
        let since = mark.seq(index);
        let found = journal
            .wait_for(
                since,
                deadline.saturating_duration_since(Instant::now()),
                |e| pred(&Event::of(source, e)),
            )
            .await?;
        Some(Event::of(source, &found))
    }

    /// Waits until `check` holds, re-checking whenever any journal grows (and at least every
    /// 50 ms, for state no journal reports), at most `timeout`; Err with the last answer.
    pub async fn eventually<T, F, Fut>(&self, timeout: Duration, mut check: F) -> Result<T, String>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let mark = self.mark();
            let last = match check().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(last);
            }
            self.wait_newer(&mark, left.min(Duration::from_millis(50)))
                .await;
        }
    }

    /// Returns when any journal has an entry after `mark`, or after `timeout`.
    pub async fn wait_newer(&self, mark: &Mark, timeout: Duration) {
        let waits: Vec<_> = self
            .sources
            .iter()
            .enumerate()
            .map(|(i, (_, j))| Box::pin(j.wait_newer(mark.seq(i), timeout)))
            .collect();
        if !waits.is_empty() {
            futures::future::select_all(waits).await;
        }
    }
}
