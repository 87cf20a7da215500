//! ADDP-style keepalive as a pure state machine.
//!
//! TCP tells us about an RST or a FIN at once, but not about silent loss (an iptables `DROP`, a
//! cut cable, a frozen peer): the socket just goes quiet. ADDP closes that gap: a side that has
//! sent nothing for `interval` sends `{"message":"Ping"}`, the peer answers `{"message":"Pong"}`,
//! and a side that has received nothing for `timeout` declares the link dead.
//!
//! This module does no I/O and reads no clock: the connection task tells it when it sent and
//! received (`on_sent` / `on_received`), asks what to do (`poll`) and sleeps until
//! `next_deadline`. That keeps it testable with tokio's paused clock and usable by both the client
//! and the server side. Answering a `Ping` with a `Pong` is the connection task's job.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Keepalive timers. Serialized as `{"interval_ms": …, "timeout_ms": …}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddpConfig {
    /// Send a `Ping` after this long without sending anything.
    #[serde(rename = "interval_ms", with = "millis")]
    pub interval: Duration,
    /// Declare the link dead after this long without receiving anything. Should be comfortably
    /// larger than the PEER's interval (plus a round trip), or an idle but healthy link dies.
    #[serde(rename = "timeout_ms", with = "millis")]
    pub timeout: Duration,
}

impl Default for AddpConfig {
    /// 5 s interval, 15 s timeout: three missed probes.
    fn default() -> Self {
        AddpConfig {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
        }
    }
}

impl AddpConfig {
    /// A config from milliseconds.
    pub fn from_millis(interval_ms: u64, timeout_ms: u64) -> Self {
        AddpConfig {
            interval: Duration::from_millis(interval_ms),
            timeout: Duration::from_millis(timeout_ms),
        }
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

/// What the connection task should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddpAction {
    /// Nothing is due; sleep until [`Addp::next_deadline`].
    Idle,
    /// Nothing was sent for `interval`: send a `Ping` (and report it with `on_sent`).
    SendPing,
    /// Nothing was received for `timeout`: the link is dead, close it.
    Dead,
}

/// The keepalive state of one connection.
#[derive(Debug, Clone)]
pub struct Addp {
    cfg: AddpConfig,
    last_sent: Instant,
    last_received: Instant,
}

impl Addp {
    /// A fresh link: both timers start at `now`.
    pub fn new(cfg: AddpConfig, now: Instant) -> Self {
        Addp {
            cfg,
            last_sent: now,
            last_received: now,
        }
    }

    /// The configuration.
    pub fn config(&self) -> AddpConfig {
        self.cfg
    }

    /// Something (anything, not only a `Ping`) was sent.
    pub fn on_sent(&mut self, now: Instant) {
        self.last_sent = self.last_sent.max(now);
    }

    /// Something (anything, not only a `Pong`) was received.
    pub fn on_received(&mut self, now: Instant) {
        self.last_received = self.last_received.max(now);
    }

    /// When the send timer fires.
    pub fn ping_deadline(&self) -> Instant {
        self.last_sent + self.cfg.interval
    }

    /// When the receive timer fires.
    pub fn dead_deadline(&self) -> Instant {
        self.last_received + self.cfg.timeout
    }

    /// The earliest instant at which [`poll`](Self::poll) can return something else than
    /// `Idle`.
    pub fn next_deadline(&self) -> Instant {
        self.ping_deadline().min(self.dead_deadline())
    }

    /// What to do at `now`. `Dead` wins over `SendPing`.
    pub fn poll(&self, now: Instant) -> AddpAction {
        if now >= self.dead_deadline() {
            AddpAction::Dead
        } else if now >= self.ping_deadline() {
            AddpAction::SendPing
        } else {
            AddpAction::Idle
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::{advance, Instant};

    fn cfg() -> AddpConfig {
        AddpConfig::from_millis(1_000, 3_000)
    }

    #[tokio::test(start_paused = true)]
    async fn idle_then_ping_then_dead() {
        let start = Instant::now();
        let mut addp = Addp::new(cfg(), start);
        assert_eq!(addp.poll(Instant::now()), AddpAction::Idle);
        assert_eq!(addp.next_deadline(), start + Duration::from_secs(1));

        advance(Duration::from_millis(999)).await;
        assert_eq!(addp.poll(Instant::now()), AddpAction::Idle);
        advance(Duration::from_millis(1)).await;
        assert_eq!(addp.poll(Instant::now()), AddpAction::SendPing);

        addp.on_sent(Instant::now());
        assert_eq!(addp.poll(Instant::now()), AddpAction::Idle);
        assert_eq!(addp.next_deadline(), start + Duration::from_secs(2));

        // Keep pinging, never hear back: dead at exactly `timeout` after the last receive.
        advance(Duration::from_secs(1)).await;
        assert_eq!(addp.poll(Instant::now()), AddpAction::SendPing);
        addp.on_sent(Instant::now());
        advance(Duration::from_millis(999)).await;
        assert_eq!(addp.poll(Instant::now()), AddpAction::Idle);
        assert_eq!(addp.next_deadline(), start + Duration::from_secs(3));
        advance(Duration::from_millis(1)).await;
        assert_eq!(addp.poll(Instant::now()), AddpAction::Dead);
    }

    #[tokio::test(start_paused = true)]
    async fn receiving_keeps_the_link_alive_and_sending_suppresses_pings() {
        let mut addp = Addp::new(cfg(), Instant::now());
        for _ in 0..10 {
            advance(Duration::from_millis(900)).await;
            let now = Instant::now();
            addp.on_received(now);
            addp.on_sent(now);
            assert_eq!(addp.poll(now), AddpAction::Idle);
        }
        // Traffic in only: pings are still due (the peer needs to hear from us) but not death.
        for _ in 0..5 {
            advance(Duration::from_millis(900)).await;
            addp.on_received(Instant::now());
        }
        assert_eq!(addp.poll(Instant::now()), AddpAction::SendPing);
    }

    #[tokio::test(start_paused = true)]
    async fn sleeping_until_next_deadline_lands_on_an_action() {
        let mut addp = Addp::new(cfg(), Instant::now());
        let mut pings = 0;
        loop {
            tokio::time::sleep_until(addp.next_deadline()).await;
            match addp.poll(Instant::now()) {
                AddpAction::Idle => panic!("woke up for nothing"),
                AddpAction::SendPing => {
                    pings += 1;
                    addp.on_sent(Instant::now());
                }
                AddpAction::Dead => break,
            }
        }
        assert_eq!(pings, 2, "pings at 1 s and 2 s, dead at 3 s");
    }

    #[test]
    fn timestamps_never_go_backwards() {
        let now = Instant::now();
        let mut addp = Addp::new(cfg(), now + Duration::from_secs(5));
        addp.on_received(now);
        addp.on_sent(now);
        assert_eq!(
            addp.next_deadline(),
            now + Duration::from_secs(6),
            "older reports are ignored"
        );
    }

    #[test]
    fn config_serde_in_millis() {
        let c = AddpConfig::from_millis(250, 1_000);
        let v = serde_json::to_value(c).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"interval_ms": 250, "timeout_ms": 1000})
        );
        assert_eq!(serde_json::from_value::<AddpConfig>(v).unwrap(), c);
    }
}
