//! RFC 3261 §17.1 client transactions as pure state (no sockets, no tasks; `now` passed in):
//! what to retransmit when, and when to give up. [`TxClock`] is one transaction's timers,
//! [`ClientTxs`] a bounded table of them with their requests, keyed by the Via branch and the
//! CSeq method (§17.1.3: a CANCEL shares its INVITE's branch but is a transaction of its own);
//! the owner (a phone's REGISTER, a call's INVITE or BYE) is whatever the user needs to route the
//! outcome. The SIP node keeps its own table of requests and uses [`TxClock`] for their timers.
//!
//! Over UDP a non-INVITE request is resent at T1, doubling up to T2 (Timer E; at T2 once a
//! provisional came) and an INVITE at T1 doubling (Timer A) until any response. Over TCP nothing
//! is resent. Either way the transaction times out after 64·T1 (Timers B and F).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::transaction::TimerConfig;
use crate::transport::Source;

/// The §17.1.3 key of a request we send or a response we receive: `branch/METHOD`.
pub fn key_of<M: rsip::message::HeadersExt>(msg: &M) -> Option<Box<str>> {
    let branch = crate::fields::top_via(msg).ok()?.branch?;
    let (_, method) = crate::fields::cseq(msg).ok()?;
    Some(key(branch, &method))
}

/// The key of a request we are about to send with this branch and method.
pub fn key(branch: &str, method: &impl std::fmt::Display) -> Box<str> {
    format!("{branch}/{method}").into()
}

/// What a timer found.
#[derive(Debug, PartialEq, Eq)]
pub enum TxTimer<O> {
    /// Send these bytes again and wake again at the instant.
    Resend(Source, Bytes, Instant),
    /// Nothing due yet: wake again at the instant.
    Wait(Instant),
    /// No final response in time; the transaction is gone.
    TimedOut(O),
    /// Nothing to do (stale wake-up).
    Idle,
}

#[derive(Debug)]
struct Tx<O> {
    owner: O,
    bytes: Bytes,
    dest: Source,
    clock: TxClock,
}

/// What a transaction's timer found (the bytes are the caller's to keep).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Send the request again; wake again at the instant.
    Resend(Instant),
    /// Nothing due yet: wake again at the instant.
    Wait(Instant),
    /// No final response in time.
    TimedOut,
}

/// The timers of one client transaction (Timers A/B or E/F), without the request: the table
/// below keeps the bytes with it, a phone's REGISTER rebuilds its identical bytes instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxClock {
    invite: bool,
    /// Next retransmission and its interval; `None` when not retransmitting.
    retransmit: Option<(Instant, Duration)>,
    deadline: Instant,
}

impl TxClock {
    /// A request sent now; returns the clock and when to call [`TxClock::on_timer`].
    pub fn start(
        timers: &TimerConfig,
        reliable: bool,
        invite: bool,
        now: Instant,
    ) -> (Self, Instant) {
        let deadline = now + timers.t1_x64();
        let retransmit = (!reliable).then(|| (now + timers.t1, timers.t1));
        let wake = retransmit.map_or(deadline, |(at, _)| at);
        (
            TxClock {
                invite,
                retransmit,
                deadline,
            },
            wake,
        )
    }

    /// A provisional response slows (non-INVITE: to T2) or stops (INVITE) resending.
    pub fn on_provisional(&mut self, timers: &TimerConfig) {
        if self.invite {
            self.retransmit = None;
        } else if let Some((at, _)) = self.retransmit {
            self.retransmit = Some((at, timers.t2));
        }
    }

    pub fn on_timer(&mut self, timers: &TimerConfig, now: Instant) -> Tick {
        if now >= self.deadline {
            return Tick::TimedOut;
        }
        match self.retransmit {
            Some((at, interval)) if now >= at => {
                let interval = if self.invite {
                    interval.saturating_mul(2)
                } else {
                    interval.saturating_mul(2).min(timers.t2)
                };
                let next = (now + interval).min(self.deadline);
                self.retransmit = Some((next, interval));
                Tick::Resend(next)
            }
            Some((at, _)) => Tick::Wait(at),
            None => Tick::Wait(self.deadline),
        }
    }
}

/// The table. At most `capacity` transactions; [`ClientTxs::start`] refuses beyond.
#[derive(Debug)]
pub struct ClientTxs<O> {
    timers: TimerConfig,
    capacity: usize,
    map: HashMap<Box<str>, Tx<O>>,
}

/// The table is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many client transactions in flight")]
pub struct Full;

impl<O: Clone> ClientTxs<O> {
    pub fn new(timers: TimerConfig, capacity: usize) -> Self {
        ClientTxs {
            timers,
            capacity: capacity.max(1),
            map: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Records a request just sent; returns when to call [`ClientTxs::on_timer`] for it.
    pub fn start(
        &mut self,
        branch: &str,
        owner: O,
        bytes: Bytes,
        dest: Source,
        invite: bool,
        now: Instant,
    ) -> Result<Instant, Full> {
        if self.map.len() >= self.capacity && !self.map.contains_key(branch) {
            return Err(Full);
        }
        let (clock, wake) = TxClock::start(&self.timers, dest.transport.is_reliable(), invite, now);
        self.map.insert(
            branch.into(),
            Tx {
                owner,
                bytes,
                dest,
                clock,
            },
        );
        Ok(wake)
    }

    /// A response arrived. Returns its owner when the transaction was live; a final response
    /// ends the transaction, a provisional one slows (non-INVITE) or stops (INVITE) resending.
    pub fn on_response(&mut self, branch: &str, code: u16) -> Option<O> {
        if code >= 200 {
            return self.map.remove(branch).map(|tx| tx.owner);
        }
        let tx = self.map.get_mut(branch)?;
        tx.clock.on_provisional(&self.timers);
        Some(tx.owner.clone())
    }

    /// The owner of a live transaction.
    pub fn owner(&self, branch: &str) -> Option<&O> {
        self.map.get(branch).map(|tx| &tx.owner)
    }

    /// Ends a transaction whose request could not be sent at all.
    pub fn abandon(&mut self, branch: &str) -> Option<O> {
        self.map.remove(branch).map(|tx| tx.owner)
    }

    pub fn on_timer(&mut self, branch: &str, now: Instant) -> TxTimer<O> {
        let Some(tx) = self.map.get_mut(branch) else {
            return TxTimer::Idle;
        };
        match tx.clock.on_timer(&self.timers, now) {
            Tick::Resend(next) => TxTimer::Resend(tx.dest, tx.bytes.clone(), next),
            Tick::Wait(at) => TxTimer::Wait(at),
            Tick::TimedOut => match self.map.remove(branch) {
                Some(tx) => TxTimer::TimedOut(tx.owner),
                None => TxTimer::Idle,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timers() -> TimerConfig {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn udp() -> Source {
        Source::udp("127.0.0.1:5060".parse().unwrap())
    }

    /// Drives the table like the engine: returns the instants at which bytes were resent.
    fn resends(txs: &mut ClientTxs<u8>, mut wake: Instant) -> (Vec<Instant>, Instant) {
        let mut sent = Vec::new();
        loop {
            match txs.on_timer("b1", wake) {
                TxTimer::Resend(_, _, next) => {
                    sent.push(wake);
                    wake = next;
                }
                TxTimer::Wait(next) => wake = next,
                TxTimer::TimedOut(_) => return (sent, wake),
                TxTimer::Idle => panic!("idle"),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn non_invite_over_udp_doubles_to_t2_and_times_out_at_64_t1() {
        let t0 = Instant::now();
        let mut txs = ClientTxs::new(timers(), 8);
        let wake = txs
            .start("b1", 7u8, Bytes::from_static(b"REGISTER"), udp(), false, t0)
            .unwrap();
        assert_eq!(wake, t0 + MS(500));
        let (sent, end) = resends(&mut txs, wake);
        let offsets: Vec<u128> = sent.iter().map(|t| (*t - t0).as_millis()).collect();
        assert_eq!(
            &offsets[..6],
            &[500, 1500, 3500, 7500, 11500, 15500],
            "E: 500, 1000, 2000, 4000, 4000 …"
        );
        assert_eq!(end, t0 + MS(32_000));
        assert!(txs.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn responses_end_or_slow_transactions_and_reliable_ones_never_resend() {
        let t0 = Instant::now();
        let mut txs = ClientTxs::new(timers(), 8);
        txs.start("b1", 1u8, Bytes::from_static(b"INVITE"), udp(), true, t0)
            .unwrap();
        assert_eq!(txs.on_response("b1", 180), Some(1));
        assert_eq!(
            txs.on_timer("b1", t0 + MS(500)),
            TxTimer::Wait(t0 + MS(32_000)),
            "an INVITE stops resending after a provisional"
        );
        assert_eq!(txs.on_response("b1", 200), Some(1));
        assert_eq!(txs.on_response("b1", 200), None, "retransmitted final");
        assert_eq!(txs.on_timer("b1", t0 + MS(500)), TxTimer::Idle);

        let tcp = Source::tcp("127.0.0.1:5060".parse().unwrap());
        let wake = txs
            .start("b1", 2u8, Bytes::from_static(b"BYE"), tcp, false, t0)
            .unwrap();
        assert_eq!(wake, t0 + MS(32_000));
        assert_eq!(txs.on_timer("b1", wake), TxTimer::TimedOut(2));
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_is_bounded() {
        let t0 = Instant::now();
        let mut txs = ClientTxs::new(timers(), 1);
        txs.start("b1", 1u8, Bytes::new(), udp(), false, t0)
            .unwrap();
        assert_eq!(
            txs.start("b2", 2u8, Bytes::new(), udp(), false, t0),
            Err(Full)
        );
        assert_eq!(txs.abandon("b1"), Some(1));
        assert!(txs.start("b2", 2u8, Bytes::new(), udp(), false, t0).is_ok());
    }
}
