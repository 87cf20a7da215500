//! A node's rule set: what every socket of the node asks before it moves traffic.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::capture::{self, Capture};
use crate::glob;
use crate::rule::{FaultMode, FaultRule, RuleError};

/// The id a rule gets when it is added; `DELETE /faults/{id}` removes it.
pub type RuleId = u64;

/// A rule as stored, with its id.
#[derive(Clone, Debug, Serialize)]
pub struct StoredRule {
    pub id: RuleId,
    #[serde(flatten)]
    pub rule: FaultRule,
}

/// What the matching rules say about one link (and peer) right now.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Verdict {
    pub drop: bool,
    pub reject: bool,
    pub delay: Duration,
    pub loss: f64,
}

impl Verdict {
    /// No fault applies.
    pub fn is_clear(&self) -> bool {
        *self == Verdict::default()
    }

    /// Whether one datagram or segment is lost (or dropped) now.
    pub fn loses_one(&self) -> bool {
        self.drop || (self.loss > 0.0 && rand::random::<f64>() < self.loss)
    }
}

/// Counters of what the fault layer did, for `/metrics`.
#[derive(Debug, Default)]
pub struct FaultStats {
    pub dropped_datagrams: AtomicU64,
    pub dropped_bytes: AtomicU64,
    pub delayed_datagrams: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub reset_connections: AtomicU64,
}

impl FaultStats {
    pub(crate) fn bump(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

struct Inner {
    rules: RwLock<Vec<StoredRule>>,
    /// Fast path: most traffic flows with no rule at all.
    empty: AtomicBool,
    next_id: AtomicU64,
    /// Bumped on every rule change so open connections re-evaluate at once.
    generation: watch::Sender<u64>,
    /// Bumped by [`Faults::crash`]: every open TCP connection is reset.
    crashes: watch::Sender<u64>,
    /// Bumped after every rule change and crash, once the watch channels above carry it: the
    /// one-load check a TCP connection makes on each read and write.
    epoch: AtomicU64,
    stats: FaultStats,
    capture: Capture,
}

/// A node's fault rules. Cheap to clone; all clones share the rules.
#[derive(Clone)]
pub struct Faults(Arc<Inner>);

impl Default for Faults {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("rules", &self.list())
            .finish()
    }
}

impl Faults {
    pub fn new() -> Self {
        Faults(Arc::new(Inner {
            rules: RwLock::new(Vec::new()),
            empty: AtomicBool::new(true),
            next_id: AtomicU64::new(1),
            generation: watch::Sender::new(0),
            crashes: watch::Sender::new(0),
            epoch: AtomicU64::new(0),
            stats: FaultStats::default(),
            capture: Capture::new(capture::process_limit()),
        }))
    }

    /// Adds a rule after validating it; open connections obey it at once.
    pub fn add(&self, rule: FaultRule) -> Result<RuleId, RuleError> {
        rule.validate()?;
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        tracing::info!(id, link = %rule.link, mode = ?rule.mode, "fault added");
        self.update(|rules| rules.push(StoredRule { id, rule }));
        Ok(id)
    }

    /// Removes one rule; false if there was no such rule.
    pub fn remove(&self, id: RuleId) -> bool {
        let mut found = false;
        self.update(|rules| {
            let before = rules.len();
            rules.retain(|r| r.id != id);
            found = rules.len() != before;
        });
        found
    }

    /// Removes every rule (heal).
    pub fn clear(&self) {
        tracing::info!("faults cleared");
        self.update(Vec::clear);
    }

    pub fn list(&self) -> Vec<StoredRule> {
        self.read_rules().clone()
    }

    /// What applies to `link` towards `peer` now.
    pub fn verdict(&self, link: &str, peer: Option<SocketAddr>) -> Verdict {
        if self.0.empty.load(Ordering::Acquire) {
            return Verdict::default();
        }
        let mut v = Verdict::default();
        for stored in self.read_rules().iter() {
            let rule = &stored.rule;
            if !glob::matches(&rule.link, link) {
                continue;
            }
            if let (Some(filter), Some(peer)) = (&rule.peer, peer) {
                if !filter.matches(peer) {
                    continue;
                }
            } else if rule.peer.is_some() {
                continue;
            }
            match rule.mode {
                FaultMode::Drop => v.drop = true,
                FaultMode::Reject => v.reject = true,
                FaultMode::Delay => {
                    v.delay = v.delay.max(Duration::from_millis(rule.ms.unwrap_or(0)))
                }
                FaultMode::Loss => {
                    let rate = rule.rate.unwrap_or(0.0);
                    v.loss = 1.0 - (1.0 - v.loss) * (1.0 - rate);
                }
            }
        }
        v
    }

    /// Resets every open TCP connection of the node (the `/crash` of the control plane).
    pub fn crash(&self) {
        self.0.crashes.send_modify(|g| *g += 1);
        self.0.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Changes whenever the rules change or the node crashes (after the watch channels do).
    pub(crate) fn epoch(&self) -> u64 {
        self.0.epoch.load(Ordering::Acquire)
    }

    /// A receiver that changes whenever the rules change.
    pub fn watch_rules(&self) -> watch::Receiver<u64> {
        self.0.generation.subscribe()
    }

    /// A receiver that changes on every [`Faults::crash`].
    pub fn watch_crashes(&self) -> watch::Receiver<u64> {
        self.0.crashes.subscribe()
    }

    pub fn stats(&self) -> &FaultStats {
        &self.0.stats
    }

    /// The node's capture tap (on when the process's `--capture-limit` was set, or later).
    pub fn capture(&self) -> &Capture {
        &self.0.capture
    }

    fn read_rules(&self) -> std::sync::RwLockReadGuard<'_, Vec<StoredRule>> {
        // A poisoned lock only means a panic elsewhere mid-update of a Vec; the data is usable.
        self.0.rules.read().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Vec<StoredRule>)) {
        {
            let mut rules = self.0.rules.write().unwrap_or_else(|e| e.into_inner());
            f(&mut rules);
            self.0.empty.store(rules.is_empty(), Ordering::Release);
        }
        self.0.generation.send_modify(|g| *g += 1);
        self.0.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::PeerFilter;

    #[test]
    fn verdicts_combine_matching_rules() {
        let f = Faults::new();
        assert!(f.verdict("tc:ss1-ss3", None).is_clear());
        let id = f.add(FaultRule::new("tc:*ss3*", FaultMode::Drop)).unwrap();
        f.add(FaultRule::delay("tc:*", 50)).unwrap();
        f.add(FaultRule::delay("tc:*", 20)).unwrap();
        let v = f.verdict("tc:ss1-ss3", None);
        assert!(v.drop && !v.reject);
        assert_eq!(v.delay, Duration::from_millis(50));
        assert!(!f.verdict("tc:ss1-ss2", None).drop);
        assert!(f.remove(id));
        assert!(!f.remove(id));
        assert!(!f.verdict("tc:ss1-ss3", None).drop);
        f.clear();
        assert!(f.verdict("tc:ss1-ss3", None).is_clear());
    }

    #[test]
    fn peer_filter_limits_a_rule() {
        let f = Faults::new();
        let dc1: PeerFilter = "127.0.1.0/24".parse().unwrap();
        f.add(FaultRule::new("sip:7002", FaultMode::Drop).with_peer(dc1))
            .unwrap();
        assert!(
            f.verdict("sip:7002", Some("127.0.1.1:5060".parse().unwrap()))
                .drop
        );
        assert!(
            !f.verdict("sip:7002", Some("127.0.2.1:5060".parse().unwrap()))
                .drop
        );
        // A peer-scoped rule never applies where the peer is unknown.
        assert!(!f.verdict("sip:7002", None).drop);
    }

    #[test]
    fn losses_combine() {
        let f = Faults::new();
        f.add(FaultRule::loss("media:*", 0.5)).unwrap();
        f.add(FaultRule::loss("media:7001", 0.5)).unwrap();
        assert!((f.verdict("media:7001", None).loss - 0.75).abs() < 1e-9);
        assert!(f.add(FaultRule::loss("media:*", 2.0)).is_err());
    }

    #[test]
    fn rule_changes_are_signalled() {
        let f = Faults::new();
        let mut rx = f.watch_rules();
        f.add(FaultRule::new("x", FaultMode::Reject)).unwrap();
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        f.clear();
        assert!(rx.has_changed().unwrap());
    }
}
