//! Phones' registrations on the engine: REGISTERs out, responses in, what the pure
//! [`Registration`](crate::registration::Registration) decides applied, and reported in the
//! journal and metrics.

use std::net::SocketAddr;

use serde_json::json;
use sipcore::transport::{Source, TransportKind};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::engine::{Engine, RegisterTx, Timer, TxRef};
use crate::register_request::Register;
use crate::registration::Failure;
use crate::registration::{RegEvent, Step};
use sipcore::client_transaction::{Tick, TxClock};

impl Engine {
    pub(crate) fn apply(&mut self, line: usize, step: Step, now: Instant) {
        if let Some(at) = step.wake_at {
            self.timers.at(at, Timer::Registration(line));
        }
        if let Some(event) = step.event {
            self.record_registration(line, event);
        }
        if let Some((registrar, expires)) = step.send {
            self.send_register(line, registrar, expires, now);
        }
    }

    fn send_register(&mut self, line: usize, registrar: usize, expires: u32, now: Instant) {
        let Some(&addr) = self.registrars.get(registrar) else {
            return;
        };
        let l = &mut self.lines[line];
        l.cseq += 1;
        let reliable = self.transport.is_reliable();
        let (clock, wake) = TxClock::start(&self.config.sip_timers, reliable, false, now);
        let tx = RegisterTx {
            cseq: l.cseq,
            registrar,
            expires,
            clock,
        };
        if l.tx.replace(tx).is_none() {
            self.registers_in_flight += 1;
        }
        let (line, cseq) = (line as u32, tx.cseq);
        self.timers.at(wake, Timer::RegisterTx { line, cseq });
        self.send_register_bytes(line, tx, addr);
    }

    /// Shutdown: every phone stops (no refresh, no retry, no first REGISTER any more) and each
    /// registered one removes its binding with a REGISTER `Expires: 0` to its registrar, in the
    /// same Call-ID with the next CSeq (a refresh in flight is superseded). Returns how many
    /// were sent; `done` fires once each has a final response or timed out.
    pub(crate) fn unregister_all(&mut self, done: oneshot::Sender<()>, now: Instant) -> usize {
        self.next_start = self.lines.len();
        let mut sent = 0;
        for line in 0..self.lines.len() {
            let l = &mut self.lines[line];
            if l.tx.is_some_and(|tx| tx.expires == 0) {
                continue; // already unregistering (a second call)
            }
            let registrar = l.reg.registrar().filter(|_| l.reg.is_registered(now));
            l.reg.stop();
            if l.tx.take().is_some() {
                self.registers_in_flight -= 1;
            }
            let Some(registrar) = registrar else {
                continue;
            };
            self.metrics.registered.dec();
            sent += 1;
            self.send_register(line, registrar, 0, now);
        }
        if sent == 0 {
            let _ = done.send(());
        } else {
            self.unregistering = Some((sent, done));
        }
        sent
    }

    /// An unregistration (a REGISTER `Expires: 0`) ended: `outcome` is its final status code,
    /// or why it failed.
    fn unregistered(&mut self, line: u32, registrar: usize, outcome: Result<u16, Failure>) {
        if matches!(outcome, Ok(200..=299)) {
            self.metrics.unregistrations.inc();
        }
        let (code, reason) = match outcome {
            Ok(code) => (Some(code), None),
            Err(failure) => (None, Some(failure.describe())),
        };
        let registrar = self.registrar_names.get(registrar).map_or("", |a| a);
        self.journal.record(
            "phone.unregistered",
            json!({ "dn": self.lines[line as usize].dn, "registrar": registrar, "status": code, "reason": reason }),
        );
        if let Some((pending, _)) = &mut self.unregistering {
            *pending = pending.saturating_sub(1);
            if *pending == 0 {
                if let Some((_, done)) = self.unregistering.take() {
                    let _ = done.send(());
                }
            }
        }
    }

    /// Writes the REGISTER of `tx` (the first time or again, identical) and queues it.
    fn send_register_bytes(&mut self, line: u32, tx: RegisterTx, addr: SocketAddr) {
        let dn = &self.lines[line as usize].dn;
        // Cut off: the transaction runs, so Timer F notices, but nothing leaves.
        if self.phone_cut(dn, addr) {
            return;
        }
        let register = Register {
            dn,
            line,
            registrar: tx.registrar,
            cseq: tx.cseq,
            expires: tx.expires,
        };
        self.register_text.write(&mut self.out_buf, &register);
        let bytes = self.out_buf.split().freeze();
        let dest = match self.transport {
            TransportKind::Udp => Source::udp(addr),
            TransportKind::Tcp => Source::tcp(addr),
        };
        let cseq = tx.cseq;
        self.send(dest, bytes, Some(TxRef::Register { line, cseq }));
    }

    /// Timer E (resend) or F (give up) of a phone's REGISTER.
    pub(crate) fn register_tx_timer(&mut self, line: u32, cseq: u32, now: Instant) {
        let timers = self.config.sip_timers;
        let Some(tx) = self
            .lines
            .get_mut(line as usize)
            .and_then(|l| l.tx.as_mut())
        else {
            return;
        };
        if tx.cseq != cseq {
            return; // a wake-up of an earlier REGISTER
        }
        match tx.clock.on_timer(&timers, now) {
            Tick::Resend(next) => {
                let tx = *tx;
                self.timers.at(next, Timer::RegisterTx { line, cseq });
                if let Some(&addr) = self.registrars.get(tx.registrar) {
                    self.send_register_bytes(line, tx, addr);
                }
            }
            Tick::Wait(at) => self.timers.at(at, Timer::RegisterTx { line, cseq }),
            Tick::TimedOut => self.register_failed(line, cseq, Failure::Timeout, now),
        }
    }

    /// The REGISTER `cseq` of the phone timed out or could not be sent.
    pub(crate) fn register_failed(&mut self, line: u32, cseq: u32, failure: Failure, now: Instant) {
        let Some(l) = self.lines.get_mut(line as usize) else {
            return;
        };
        let Some(tx) = l.tx.filter(|tx| tx.cseq == cseq) else {
            return;
        };
        l.tx = None;
        self.registers_in_flight -= 1;
        if tx.expires == 0 {
            return self.unregistered(line, tx.registrar, Err(failure));
        }
        let step = l
            .reg
            .on_failure(&self.policy, failure, now, Self::random_unit());
        self.apply(line as usize, step, now);
    }

    /// A response to the phone's REGISTER `cseq`: `reply` is its status code, the expiry it
    /// grants and a 423's Min-Expires.
    pub(crate) fn on_register_reply(
        &mut self,
        line: u32,
        cseq: u32,
        from: SocketAddr,
        reply: (u16, Option<u32>, Option<u32>),
        now: Instant,
    ) {
        let (code, granted, min_expires) = reply;
        let timers = self.config.sip_timers;
        let Some(l) = self.lines.get(line as usize) else {
            return;
        };
        if self.phone_cut(&l.dn, from) {
            return;
        }
        let l = &mut self.lines[line as usize];
        let Some(tx) = l.tx.as_mut().filter(|tx| tx.cseq == cseq) else {
            return; // a REGISTER we already gave up on, or a retransmitted final response
        };
        if code < 200 {
            tx.clock.on_provisional(&timers);
            return;
        }
        let unregister = (tx.expires == 0).then_some(tx.registrar);
        l.tx = None;
        self.registers_in_flight -= 1;
        if let Some(registrar) = unregister {
            return self.unregistered(line, registrar, Ok(code));
        }
        let step = l.reg.on_response(
            &self.policy,
            code,
            granted,
            min_expires,
            now,
            Self::random_unit(),
        );
        self.apply(line as usize, step, now);
    }

    fn record_registration(&mut self, line: usize, event: RegEvent) {
        let dn = &self.lines[line].dn;
        let at = |i: usize| self.registrar_names.get(i).map_or("", |a| a);
        match event {
            RegEvent::Registered {
                registrar,
                granted,
                previous,
            } => {
                self.metrics.registrations.inc();
                if self.metrics.registered.inc() + 1 == self.lines.len() as i64 {
                    self.metrics.all_registered.notify_waiters();
                }
                let failover = previous.filter(|p| *p != registrar);
                if failover.is_some() {
                    self.metrics.failovers.inc();
                }
                self.journal.record(
                    "phone.registered",
                    json!({
                        "dn": dn, "registrar": at(registrar), "expires": granted.as_secs(),
                        "failover_from": failover.map(at),
                    }),
                );
            }
            RegEvent::Refreshed { registrar, granted } => {
                self.metrics.refreshes.inc();
                self.journal.record(
                    "phone.refreshed",
                    json!({ "dn": dn, "registrar": at(registrar), "expires": granted.as_secs() }),
                );
            }
            RegEvent::Failed {
                registrar,
                failure,
                was_registered,
                next,
                retry_in,
            } => {
                self.metrics.registration_failures.inc();
                if was_registered {
                    self.metrics.registered.dec();
                }
                self.journal.record(
                    "phone.registration_failed",
                    json!({
                        "dn": dn, "registrar": at(registrar), "reason": failure.describe(),
                        "was_registered": was_registered, "next": at(next),
                        "retry_in_ms": retry_in.as_millis() as u64,
                    }),
                );
            }
        }
    }
}
