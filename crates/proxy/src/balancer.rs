//! Peer selection and passive health state of one upstream group, exactly as nginx does it:
//! `ngx_http_upstream_round_robin.c` (smooth weighted round robin, `max_fails`/`fail_timeout`,
//! backup tier), `ngx_http_upstream_hash_module.c` (`hash … consistent`: ketama ring walk, 20
//! tries, empty key → round robin), `ngx_http_upstream_ip_hash_module.c` and NGINX Plus `sticky
//! learn` / `sticky cookie` (bound peer unusable → chosen "as if not bound", then rebound: no
//! fail-back). No sockets here; the clock is passed in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::config::{Sticky, UpstreamConfig};
use crate::crc32::crc32;
use crate::ring::Ring;

/// How long an unused learned session is kept (NGINX Plus `sticky learn … timeout=`).
pub const DEFAULT_STICKY_TIMEOUT: Duration = Duration::from_secs(3600);

/// Ring/ip-hash walk steps before falling back to round robin (nginx: 20).
pub const HASH_TRIES: u32 = 20;

/// Static description of one peer.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    pub name: String,
    /// The server text as configured (seeds the ring and the route cookie).
    pub server: String,
    pub weight: u32,
    pub max_fails: u32,
    pub fail_timeout: Duration,
    pub backup: bool,
    pub down: bool,
}

/// Health and counters of one peer (the fields of `ngx_http_upstream_rr_peer_t`).
#[derive(Debug, Clone, Default)]
struct PeerState {
    fails: u32,
    accessed: Option<Instant>,
    checked: Option<Instant>,
    current_weight: i64,
    effective_weight: i64,
    selected: u64,
    failures: u64,
}

/// What a request carries that stickiness looks at.
#[derive(Debug, Clone, Default)]
pub struct RouteKey {
    /// Value of the sticky cookie (hash, learn, cookie modes); `None` or empty = no key.
    pub cookie: Option<String>,
    /// Client address (ip_hash).
    pub client_ip: Option<IpAddr>,
}

/// Per-request selection state (`tried` bitmap, ring position, tries).
#[derive(Debug, Clone)]
pub struct Selection {
    key: RouteKey,
    tried: Vec<bool>,
    in_backup: bool,
    hash_tries: u32,
    ring_index: Option<usize>,
    ip_hash: u32,
    /// The peer the request was bound to by learn/cookie stickiness, if any.
    pub bound: Option<usize>,
    /// Attempts so far.
    pub attempts: u32,
}

/// A peer's state as `/status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PeerStatus {
    pub name: String,
    pub server: String,
    pub backup: bool,
    /// `up`, `unavail` (failed, skipped until fail_timeout passes) or `down`.
    pub state: &'static str,
    pub fails: u32,
    pub selected: u64,
    pub failures: u64,
}

impl Selection {
    /// What the request carries that stickiness looks at.
    pub fn key(&self) -> &RouteKey {
        &self.key
    }

    /// The sticky cookie's value; empty when there is none.
    fn cookie(&self) -> &str {
        self.key.cookie.as_deref().unwrap_or("")
    }
}

/// Selection and health of one upstream group.
#[derive(Debug)]
pub struct Balancer {
    mode: Sticky,
    peers: Vec<PeerSpec>,
    state: Vec<PeerState>,
    primary: Vec<usize>,
    backup: Vec<usize>,
    ring: Ring,
    routes: Vec<String>,
    learned: HashMap<String, (usize, Instant)>,
    sticky_timeout: Duration,
}

impl Balancer {
    pub fn new(mode: Sticky, peers: Vec<PeerSpec>) -> Self {
        let primary: Vec<usize> = (0..peers.len()).filter(|&i| !peers[i].backup).collect();
        let backup: Vec<usize> = (0..peers.len()).filter(|&i| peers[i].backup).collect();
        let ring = Ring::new(
            primary
                .iter()
                .map(|&i| (i, peers[i].server.as_str(), peers[i].weight)),
        );
        let routes = peers
            .iter()
            .map(|p| format!("{:08x}", crc32(p.server.as_bytes())))
            .collect();
        let state = peers
            .iter()
            .map(|p| PeerState {
                effective_weight: i64::from(p.weight),
                ..PeerState::default()
            })
            .collect();
        Balancer {
            mode,
            peers,
            state,
            primary,
            backup,
            ring,
            routes,
            learned: HashMap::new(),
            sticky_timeout: DEFAULT_STICKY_TIMEOUT,
        }
    }

    pub fn from_config(cfg: &UpstreamConfig) -> Self {
        let peers = cfg
            .servers
            .iter()
            .map(|s| PeerSpec {
                name: s.display_name().to_string(),
                server: s.address.clone(),
                weight: s.weight,
                max_fails: s.max_fails,
                fail_timeout: s.fail_timeout,
                backup: s.backup,
                down: s.down,
            })
            .collect();
        let mut b = Self::new(cfg.sticky, peers);
        b.set_sticky_timeout(cfg.sticky_timeout);
        b
    }

    pub fn mode(&self) -> Sticky {
        self.mode
    }

    pub fn peers(&self) -> &[PeerSpec] {
        &self.peers
    }

    /// The route cookie value of a peer (`sticky cookie` mode).
    pub fn route_of(&self, peer: usize) -> &str {
        &self.routes[peer]
    }

    /// nginx `peer.tries`: how many peers a request may try at most.
    pub fn max_tries(&self) -> u32 {
        self.peers.len() as u32
    }

    /// Starts the selection for one request.
    pub fn begin(&self, key: RouteKey) -> Selection {
        let ip_hash = 89;
        Selection {
            key,
            tried: vec![false; self.peers.len()],
            in_backup: false,
            hash_tries: 0,
            ring_index: None,
            ip_hash,
            bound: None,
            attempts: 0,
        }
    }

    /// Picks the next peer for `sel`, or `None` when no peer is usable ("no live upstreams").
    pub fn select(&mut self, sel: &mut Selection, now: Instant) -> Option<usize> {
        let chosen = match self.mode {
            Sticky::None => self.round_robin(sel, now),
            Sticky::Hash => self.chash(sel, now),
            Sticky::IpHash => self.ip_hash(sel, now),
            Sticky::Learn | Sticky::Cookie => self.sticky(sel, now),
        };
        if chosen.is_some() {
            sel.attempts += 1;
        }
        chosen
    }

    /// Reports the outcome of an attempt on `peer` (`ngx_http_upstream_free_round_robin_peer`).
    /// Returns true when this failure made the peer unavailable ("temporarily disabled").
    pub fn report(&mut self, peer: usize, ok: bool, now: Instant) -> bool {
        if self.is_single() {
            return false;
        }
        let spec = &self.peers[peer];
        let st = &mut self.state[peer];
        if ok {
            if st.accessed < st.checked {
                st.fails = 0;
            }
            return false;
        }
        st.fails += 1;
        st.failures += 1;
        st.accessed = Some(now);
        st.checked = Some(now);
        if let Some(step) = spec.weight.checked_div(spec.max_fails) {
            st.effective_weight -= i64::from(step);
        }
        if st.effective_weight < 0 {
            st.effective_weight = 0;
        }
        let disabled = spec.max_fails > 0 && st.fails >= spec.max_fails;
        if disabled {
            tracing::warn!(peer = %spec.name, "upstream server temporarily disabled");
        }
        disabled
    }

    /// `sticky learn`: the upstream `peer` issued session `key` (from its Set-Cookie), or served
    /// a request carrying `key` after its bound peer failed (rebind).
    pub fn learn(&mut self, key: &str, peer: usize, now: Instant) {
        if key.is_empty() {
            return;
        }
        if self.learned.len() >= 1024 && self.learned.len().is_power_of_two() {
            let timeout = self.sticky_timeout;
            self.learned
                .retain(|_, (_, used)| now.saturating_duration_since(*used) <= timeout);
        }
        self.learned.insert(key.to_string(), (peer, now));
    }

    /// Sets how long unused learned sessions are kept.
    pub fn set_sticky_timeout(&mut self, timeout: Duration) {
        self.sticky_timeout = timeout;
    }

    /// The peer a learned session is bound to, refreshing its last use; expired ones are gone.
    fn lookup_learned(&mut self, key: &str, now: Instant) -> Option<usize> {
        let timeout = self.sticky_timeout;
        match self.learned.get_mut(key) {
            Some((peer, used)) if now.saturating_duration_since(*used) <= timeout => {
                *used = now;
                Some(*peer)
            }
            Some(_) => {
                self.learned.remove(key);
                None
            }
            None => None,
        }
    }

    /// Whether `peer` can be selected now: not down and not failed within its fail_timeout.
    pub fn usable(&self, peer: usize, now: Instant) -> bool {
        let spec = &self.peers[peer];
        let st = &self.state[peer];
        if spec.down {
            return false;
        }
        !(spec.max_fails > 0
            && st.fails >= spec.max_fails
            && st
                .checked
                .is_some_and(|c| now.saturating_duration_since(c) <= spec.fail_timeout))
    }

    pub fn status(&self, now: Instant) -> Vec<PeerStatus> {
        (0..self.peers.len())
            .map(|i| {
                let p = &self.peers[i];
                let st = &self.state[i];
                PeerStatus {
                    name: p.name.clone(),
                    server: p.server.clone(),
                    backup: p.backup,
                    state: if p.down {
                        "down"
                    } else if self.usable(i, now) {
                        "up"
                    } else {
                        "unavail"
                    },
                    fails: st.fails,
                    selected: st.selected,
                    failures: st.failures,
                }
            })
            .collect()
    }

    /// Number of learned sessions (`sticky learn`).
    pub fn learned_len(&self) -> usize {
        self.learned.len()
    }

    fn is_single(&self) -> bool {
        self.primary.len() == 1 && self.backup.is_empty()
    }

    /// Common bookkeeping when `peer` is chosen.
    fn take(&mut self, sel: &mut Selection, peer: usize, now: Instant) -> usize {
        let spec = &self.peers[peer];
        let st = &mut self.state[peer];
        if st
            .checked
            .is_none_or(|c| now.saturating_duration_since(c) > spec.fail_timeout)
        {
            st.checked = Some(now);
        }
        st.selected += 1;
        sel.tried[peer] = true;
        peer
    }

    fn candidate(&self, sel: &Selection, peer: usize, now: Instant) -> bool {
        !sel.tried[peer] && self.usable(peer, now)
    }

    /// `ngx_http_upstream_get_round_robin_peer`: primary tier, then the backup tier.
    fn round_robin(&mut self, sel: &mut Selection, now: Instant) -> Option<usize> {
        if self.is_single() {
            let p = self.primary[0];
            if self.peers[p].down || sel.tried[p] {
                return None;
            }
            return Some(self.take(sel, p, now));
        }
        if !sel.in_backup {
            let tier = self.primary.clone();
            if let Some(p) = self.smooth_wrr(sel, &tier, now) {
                return Some(p);
            }
            if self.backup.is_empty() {
                return None;
            }
            sel.in_backup = true;
        }
        let tier = self.backup.clone();
        self.smooth_wrr(sel, &tier, now)
    }

    /// `ngx_http_upstream_get_peer`: smooth weighted round robin over `tier`.
    fn smooth_wrr(&mut self, sel: &mut Selection, tier: &[usize], now: Instant) -> Option<usize> {
        let mut best: Option<usize> = None;
        let mut total = 0i64;
        for &i in tier {
            if !self.candidate(sel, i, now) {
                continue;
            }
            let weight = i64::from(self.peers[i].weight);
            let st = &mut self.state[i];
            st.current_weight += st.effective_weight;
            total += st.effective_weight;
            if st.effective_weight < weight {
                st.effective_weight += 1;
            }
            let cw = st.current_weight;
            if best.is_none_or(|b| cw > self.state[b].current_weight) {
                best = Some(i);
            }
        }
        let best = best?;
        self.state[best].current_weight -= total;
        Some(self.take(sel, best, now))
    }

    /// `ngx_http_upstream_get_chash_peer`.
    fn chash(&mut self, sel: &mut Selection, now: Instant) -> Option<usize> {
        if sel.hash_tries > HASH_TRIES || self.primary.len() < 2 || sel.cookie().is_empty() {
            return self.round_robin(sel, now);
        }
        let mut index = match sel.ring_index {
            Some(i) => i,
            None => self.ring.find(crc32(sel.cookie().as_bytes())),
        };
        loop {
            let peer = self.ring.point(index).peer;
            if self.candidate(sel, peer, now) {
                sel.ring_index = Some(index);
                sel.hash_tries += 1;
                return Some(self.take(sel, peer, now));
            }
            index += 1;
            sel.hash_tries += 1;
            if sel.hash_tries > HASH_TRIES {
                sel.ring_index = Some(index);
                return self.round_robin(sel, now);
            }
        }
    }

    /// `ngx_http_upstream_get_ip_hash_peer`.
    fn ip_hash(&mut self, sel: &mut Selection, now: Instant) -> Option<usize> {
        if sel.hash_tries > HASH_TRIES || self.is_single() {
            return self.round_robin(sel, now);
        }
        let addr: Vec<u8> = match sel.key.client_ip {
            Some(IpAddr::V4(v4)) => v4.octets()[..3].to_vec(),
            Some(IpAddr::V6(v6)) => v6.octets().to_vec(),
            None => vec![0, 0, 0],
        };
        let total_weight: u32 = self.primary.iter().map(|&i| self.peers[i].weight).sum();
        let mut hash = sel.ip_hash;
        loop {
            for &b in &addr {
                hash = (hash * 113 + u32::from(b)) % 6271;
            }
            let mut w = hash % total_weight;
            let mut k = 0;
            while w >= self.peers[self.primary[k]].weight {
                w -= self.peers[self.primary[k]].weight;
                k += 1;
            }
            let peer = self.primary[k];
            if self.candidate(sel, peer, now) {
                sel.ip_hash = hash;
                return Some(self.take(sel, peer, now));
            }
            sel.hash_tries += 1;
            if sel.hash_tries > HASH_TRIES {
                sel.ip_hash = hash;
                return self.round_robin(sel, now);
            }
        }
    }

    /// NGINX Plus `sticky learn` / `sticky cookie`: the bound peer if it can serve, else round
    /// robin "as if the client has not been bound yet".
    fn sticky(&mut self, sel: &mut Selection, now: Instant) -> Option<usize> {
        if sel.attempts == 0 {
            sel.bound = match self.mode {
                Sticky::Learn => self.lookup_learned(sel.cookie(), now),
                _ => self.routes.iter().position(|r| r == sel.cookie()),
            };
            if let Some(p) = sel.bound {
                if self.candidate(sel, p, now) {
                    return Some(self.take(sel, p, now));
                }
            }
        }
        self.round_robin(sel, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn specs(n: usize, backups: usize) -> Vec<PeerSpec> {
        (0..n + backups)
            .map(|i| PeerSpec {
                name: format!("s{i}"),
                server: format!("127.0.0.1:{}", 8081 + i),
                weight: 1,
                max_fails: 1,
                fail_timeout: Duration::from_secs(10),
                backup: i >= n,
                down: false,
            })
            .collect()
    }

    fn pick(b: &mut Balancer, key: RouteKey, now: Instant) -> Option<usize> {
        let mut sel = b.begin(key);
        b.select(&mut sel, now)
    }

    fn cookie(v: &str) -> RouteKey {
        RouteKey {
            cookie: Some(v.into()),
            client_ip: None,
        }
    }

    #[test]
    fn round_robin_alternates_and_uses_backup_only_when_primaries_fail() {
        let mut b = Balancer::new(Sticky::None, specs(2, 1));
        let now = Instant::now();
        let seq: Vec<_> = (0..4)
            .map(|_| pick(&mut b, RouteKey::default(), now).unwrap())
            .collect();
        assert_eq!(seq, vec![0, 1, 0, 1]);
        b.report(0, false, now);
        b.report(1, false, now);
        assert_eq!(pick(&mut b, RouteKey::default(), now), Some(2));
    }

    #[test]
    fn a_request_never_tries_a_peer_twice() {
        let mut b = Balancer::new(Sticky::None, specs(3, 0));
        let now = Instant::now();
        let mut sel = b.begin(RouteKey::default());
        let mut seen: Vec<_> = (0..3).map(|_| b.select(&mut sel, now).unwrap()).collect();
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2]);
        assert_eq!(b.select(&mut sel, now), None);
    }

    #[tokio::test(start_paused = true)]
    async fn max_fails_within_fail_timeout_then_probe_by_real_request() {
        let mut sp = specs(2, 0);
        sp[0].max_fails = 2;
        let mut b = Balancer::new(Sticky::Hash, sp);
        let key = (0..)
            .map(|i| format!("k{i}"))
            .find(|k| pick(&mut b, cookie(k), Instant::now()) == Some(0))
            .unwrap();
        let t0 = Instant::now();
        b.report(0, false, t0);
        assert_eq!(
            pick(&mut b, cookie(&key), t0),
            Some(0),
            "1 of 2 fails: still used"
        );
        b.report(0, false, t0);
        assert_eq!(pick(&mut b, cookie(&key), t0), Some(1), "2 of 2: skipped");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            pick(&mut b, cookie(&key), Instant::now()),
            Some(1),
            "still within 10s"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        let t1 = Instant::now();
        assert_eq!(
            pick(&mut b, cookie(&key), t1),
            Some(0),
            "probe after fail_timeout"
        );
        // The probe fails again: skipped for another fail_timeout, fails still >= max_fails.
        b.report(0, false, t1);
        assert_eq!(pick(&mut b, cookie(&key), t1), Some(1));
        assert_eq!(b.status(t1)[0].state, "unavail");
        tokio::time::advance(Duration::from_secs(11)).await;
        let t2 = Instant::now();
        assert_eq!(pick(&mut b, cookie(&key), t2), Some(0));
        b.report(0, true, t2);
        assert_eq!(b.status(t2)[0].fails, 0, "a successful probe clears fails");
        assert_eq!(b.status(t2)[0].state, "up");
    }

    #[test]
    fn success_within_fail_timeout_does_not_clear_fails() {
        let mut sp = specs(2, 0);
        sp[0].max_fails = 3;
        let mut b = Balancer::new(Sticky::None, sp);
        let now = Instant::now();
        assert!(!b.report(0, false, now));
        b.report(0, true, now);
        assert_eq!(b.status(now)[0].fails, 1);
        assert!(!b.report(0, false, now));
        assert!(b.report(0, false, now), "third failure disables");
    }

    #[test]
    fn down_server_keeps_the_ring_mapping_of_the_others() {
        let now = Instant::now();
        let mut all = Balancer::new(Sticky::Hash, specs(3, 0));
        let mut sp = specs(3, 0);
        sp[1].down = true;
        let mut one_down = Balancer::new(Sticky::Hash, sp);
        for k in 0..200 {
            let key = format!("K{k}");
            let a = pick(&mut all, cookie(&key), now).unwrap();
            let b = pick(&mut one_down, cookie(&key), now).unwrap();
            assert_ne!(b, 1);
            if a != 1 {
                assert_eq!(a, b, "only the down server's keys move");
            }
        }
        assert_eq!(one_down.status(now)[1].state, "down");
    }

    #[test]
    fn single_server_is_never_marked_failed() {
        let mut b = Balancer::new(Sticky::None, specs(1, 0));
        let now = Instant::now();
        b.report(0, false, now);
        assert_eq!(pick(&mut b, RouteKey::default(), now), Some(0));
    }

    #[test]
    fn hash_is_sticky_empty_key_round_robins() {
        let mut b = Balancer::new(Sticky::Hash, specs(3, 0));
        let now = Instant::now();
        let first = pick(&mut b, cookie("ABC123"), now).unwrap();
        for _ in 0..10 {
            assert_eq!(pick(&mut b, cookie("ABC123"), now), Some(first));
        }
        let rr: Vec<_> = (0..3)
            .map(|_| pick(&mut b, cookie(""), now).unwrap())
            .collect();
        let mut sorted = rr.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2], "empty key goes round robin: {rr:?}");
        let rr2: Vec<_> = (0..3)
            .map(|_| pick(&mut b, RouteKey::default(), now).unwrap())
            .collect();
        assert_eq!(rr2, rr);
    }

    #[tokio::test(start_paused = true)]
    async fn hash_walks_ring_on_failure_and_fails_back() {
        let mut b = Balancer::new(Sticky::Hash, specs(3, 0));
        let t0 = Instant::now();
        let home = pick(&mut b, cookie("S1"), t0).unwrap();
        // Expected next peer: the ring walk clockwise from the key's point.
        let ring = Ring::new((0..3).map(|i| (i, b.peers[i].server.as_str(), 1)));
        let mut idx = ring.find(crc32(b"S1"));
        while ring.point(idx).peer == home {
            idx += 1;
        }
        let next = ring.point(idx).peer;
        b.report(home, false, t0);
        assert_eq!(pick(&mut b, cookie("S1"), t0), Some(next));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(
            pick(&mut b, cookie("S1"), Instant::now()),
            Some(home),
            "fail-back"
        );
    }

    #[test]
    fn hash_falls_back_to_round_robin_and_backup_when_all_primaries_fail() {
        let mut b = Balancer::new(Sticky::Hash, specs(2, 1));
        let now = Instant::now();
        b.report(0, false, now);
        b.report(1, false, now);
        assert_eq!(pick(&mut b, cookie("X"), now), Some(2));
        b.report(2, false, now);
        assert_eq!(pick(&mut b, cookie("X"), now), None);
    }

    #[test]
    fn ip_hash_uses_first_three_octets() {
        let mut b = Balancer::new(Sticky::IpHash, specs(3, 0));
        let now = Instant::now();
        let ip = |d| RouteKey {
            cookie: None,
            client_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, d))),
        };
        let p = pick(&mut b, ip(1), now).unwrap();
        for d in 2..50 {
            assert_eq!(pick(&mut b, ip(d), now), Some(p));
        }
        // nginx: hash = 89; for each of 10,1,2: hash = (hash*113 + b) % 6271; peer = hash % 3.
        let mut h = 89u32;
        for o in [10u32, 1, 2] {
            h = (h * 113 + o) % 6271;
        }
        assert_eq!(p, (h % 3) as usize);
        // Failure rehashes (continuing from the previous hash) to another peer.
        b.report(p, false, now);
        let q = pick(&mut b, ip(1), now).unwrap();
        assert_ne!(q, p);
        let mut h2 = h;
        loop {
            for o in [10u32, 1, 2] {
                h2 = (h2 * 113 + o) % 6271;
            }
            if (h2 % 3) as usize != p {
                break;
            }
        }
        assert_eq!(q, (h2 % 3) as usize);
    }

    #[tokio::test(start_paused = true)]
    async fn learn_binds_rebinds_and_never_fails_back() {
        let mut b = Balancer::new(Sticky::Learn, specs(3, 0));
        let t0 = Instant::now();
        b.learn("J1", 2, t0);
        let mut sel = b.begin(cookie("J1"));
        assert_eq!(b.select(&mut sel, t0), Some(2));
        assert_eq!(sel.bound, Some(2));
        b.report(2, false, t0);
        let mut sel = b.begin(cookie("J1"));
        let q = b.select(&mut sel, t0).unwrap();
        assert_ne!(q, 2);
        b.report(q, true, t0);
        b.learn("J1", q, t0);
        tokio::time::advance(Duration::from_secs(30)).await;
        let t1 = Instant::now();
        assert!(b.usable(2, t1));
        for _ in 0..5 {
            assert_eq!(pick(&mut b, cookie("J1"), t1), Some(q), "no fail-back");
        }
        assert_eq!(b.learned_len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn learned_sessions_expire_after_sticky_timeout_unused() {
        let mut b = Balancer::new(Sticky::Learn, specs(3, 0));
        b.set_sticky_timeout(Duration::from_secs(60));
        b.learn("J", 2, Instant::now());
        tokio::time::advance(Duration::from_secs(50)).await;
        assert_eq!(pick(&mut b, cookie("J"), Instant::now()), Some(2));
        tokio::time::advance(Duration::from_secs(50)).await;
        assert_eq!(
            pick(&mut b, cookie("J"), Instant::now()),
            Some(2),
            "use refreshed it"
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        let mut sel = b.begin(cookie("J"));
        b.select(&mut sel, Instant::now());
        assert_eq!(sel.bound, None, "expired");
        assert_eq!(b.learned_len(), 0);
    }

    #[test]
    fn cookie_mode_routes_by_route_value_and_unknown_round_robins() {
        let mut b = Balancer::new(Sticky::Cookie, specs(3, 0));
        let now = Instant::now();
        let route1 = b.route_of(1).to_string();
        for _ in 0..5 {
            assert_eq!(pick(&mut b, cookie(&route1), now), Some(1));
        }
        let mut sel = b.begin(cookie("nonsense"));
        assert!(b.select(&mut sel, now).is_some());
        assert_eq!(sel.bound, None);
        b.report(1, false, now);
        assert_ne!(pick(&mut b, cookie(&route1), now), Some(1));
    }
}
