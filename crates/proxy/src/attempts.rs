//! One request's walk over the peers of the group, the same on the fast and the general path:
//! peer selection, passive health reports, nginx's `proxy_next_upstream` rules, the journal of
//! failed attempts and the stickiness learnt from the answer.

use std::sync::Mutex;

use hyper::StatusCode;
use serde_json::json;
use tokio::time::Instant;

use crate::balancer::{Balancer, RouteKey, Selection};
use crate::config::{NextUpstream, Sticky};
use crate::shared::Shared;

/// Why an attempt on a peer failed, in `proxy_next_upstream` terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Error,
    Timeout,
    InvalidHeader,
}

impl Failure {
    fn status(self) -> StatusCode {
        match self {
            Failure::Timeout => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    fn next_upstream(self) -> NextUpstream {
        match self {
            Failure::Error => NextUpstream::Error,
            Failure::Timeout => NextUpstream::Timeout,
            Failure::InvalidHeader => NextUpstream::InvalidHeader,
        }
    }
}

/// The outcome of one attempt that did not produce a response.
pub struct AttemptError {
    pub failure: Failure,
    /// Whether the request was (possibly) written to the upstream (`u->request_sent`).
    pub sent: bool,
}

impl AttemptError {
    pub fn unsent(failure: Failure) -> Self {
        AttemptError {
            failure,
            sent: false,
        }
    }

    pub fn sent(failure: Failure) -> Self {
        AttemptError {
            failure,
            sent: true,
        }
    }
}

pub struct Attempts<'a> {
    shared: &'a Shared,
    bal: &'a Mutex<Balancer>,
    sel: Selection,
    max_tries: u32,
    first_try: Instant,
    last: StatusCode,
    last_peer: Option<usize>,
}

impl<'a> Attempts<'a> {
    /// The attempts of a request routed by `key`, from a client connection of `worker`.
    pub fn begin(shared: &'a Shared, key: RouteKey, worker: usize) -> Self {
        let bal = shared.group.balancer(worker);
        let sel = lock(bal).begin(key);
        let peers = shared.group.addrs.len() as u32;
        let max_tries = match shared.cfg.proxy_next_upstream_tries {
            0 => peers,
            n => n.min(peers),
        };
        Attempts {
            shared,
            bal,
            sel,
            max_tries,
            first_try: Instant::now(),
            last: StatusCode::BAD_GATEWAY,
            last_peer: None,
        }
    }

    /// The peer of the next attempt; `None` once none is left.
    pub fn next_peer(&mut self) -> Option<usize> {
        let picked = lock(self.bal).select(&mut self.sel, Instant::now());
        match picked {
            Some(peer) => self.last_peer = Some(peer),
            None if self.sel.attempts == 0 => {
                tracing::error!(upstream = %self.shared.group.cfg.name, "no live upstreams");
            }
            None => {}
        }
        picked
    }

    /// Whether the current attempt is the last one allowed (`proxy_next_upstream_tries`).
    pub fn is_last(&self) -> bool {
        self.sel.attempts >= self.max_tries
    }

    pub fn tries(&self) -> u32 {
        self.sel.attempts
    }

    pub fn last_peer(&self) -> Option<usize> {
        self.last_peer
    }

    pub fn peer_name(&self, peer: usize) -> &str {
        self.shared.group.peer_name(peer)
    }

    /// The status of the error page once no attempt is left.
    pub fn error_status(&self) -> StatusCode {
        self.last
    }

    pub fn succeeded(&self, peer: usize) {
        lock(self.bal).report(peer, true, Instant::now());
    }

    /// Reports and journals a failed attempt of `method uri` on `peer`; whether to try the next
    /// peer.
    pub fn failed(&mut self, peer: usize, e: &AttemptError, method: &str, uri: &str) -> bool {
        let (shared, g) = (self.shared, &self.shared.group);
        let disabled = lock(self.bal).report(peer, false, Instant::now());
        let name = g.peer_name(peer);
        shared.journal.record(
            "upstream.failed",
            json!({
                "upstream": g.cfg.name,
                "peer": name,
                "failure": format!("{:?}", e.failure).to_lowercase(),
                "request_sent": e.sent,
                "method": method,
                "uri": uri,
                "disabled": disabled,
            }),
        );
        self.last = e.failure.status();
        tracing::warn!(
            upstream = %name,
            failure = ?e.failure,
            sent = e.sent,
            "upstream attempt failed"
        );
        let cfg = &shared.cfg;
        let budget = cfg.proxy_next_upstream_timeout;
        cfg.next_upstream(e.failure.next_upstream())
            && self.sel.attempts < self.max_tries
            && (budget.is_zero() || self.first_try.elapsed() < budget)
            && !(e.sent
                && crate::h1::is_non_idempotent(method)
                && !cfg.next_upstream(NextUpstream::NonIdempotent))
    }

    /// Applies learn/cookie stickiness to the answer of `peer`, whose response set the sticky
    /// cookie to `session` (if it did); the `Set-Cookie` value to add to the response, if any.
    pub fn stick(&self, peer: usize, session: Option<&str>) -> Option<String> {
        let g = &self.shared.group;
        let cookie = self.sel.key().cookie.as_deref();
        match g.cfg.sticky {
            Sticky::Learn => {
                let mut b = lock(self.bal);
                if let Some(session) = session {
                    b.learn(session, peer, Instant::now());
                } else if let (Some(k), Some(old)) = (cookie, self.sel.bound) {
                    if old != peer {
                        b.learn(k, peer, Instant::now());
                    }
                }
                drop(b);
                self.record_rebind(peer);
                None
            }
            Sticky::Cookie => {
                self.record_rebind(peer);
                let b = lock(self.bal);
                let route = b.route_of(peer);
                (cookie != Some(route)).then(|| format!("{}={route}; Path=/", g.cfg.cookie_name()))
            }
            _ => None,
        }
    }

    /// Journals a learn/cookie client moved off the peer it was bound to.
    fn record_rebind(&self, peer: usize) {
        if let Some(old) = self.sel.bound.filter(|&o| o != peer) {
            let g = &self.shared.group;
            self.shared.journal.record(
                "sticky.rebind",
                json!({"upstream": g.cfg.name, "from": g.peer_name(old), "to": g.peer_name(peer)}),
            );
        }
    }
}

fn lock(bal: &Mutex<Balancer>) -> std::sync::MutexGuard<'_, Balancer> {
    // Poisoning only means a panic elsewhere mid-update; the state is still usable.
    bal.lock().unwrap_or_else(|e| e.into_inner())
}
