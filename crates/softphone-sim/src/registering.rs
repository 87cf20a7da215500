//! Phones' registrations on the engine: REGISTERs out, responses in, what the pure
//! [`Registration`](crate::registration::Registration) decides applied, and reported in the
//! journal and metrics.

use bytes::Bytes;
use rsip::Method;
use serde_json::json;
use sipcore::rsip;
use sipcore::transport::{Source, TransportKind};
use tokio::time::Instant;

use crate::dialog;
use crate::engine::{Engine, Timer, TxOwner};
use crate::register_request::Register;
use crate::registration::{RegEvent, Step};

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
        let branch = sipcore::branch();
        let l = &mut self.lines[line];
        l.cseq += 1;
        let text = Register {
            dn: &l.dn,
            registrar: addr,
            local: self.local,
            transport: self.transport,
            branch: &branch,
            call_id: &l.call_id,
            cseq: l.cseq,
            expires,
        }
        .to_text();
        let key = crate::client_tx::key(&branch, &Method::Register);
        l.pending = Some(key.clone());
        let dest = match self.transport {
            TransportKind::Udp => Source::udp(addr),
            TransportKind::Tcp => Source::tcp(addr),
        };
        let bytes = Bytes::from(text);
        let owner = TxOwner::Register(line);
        let cut = self.phone_cut(&self.lines[line].dn, addr);
        match self.txs.start(&key, owner, bytes.clone(), dest, false, now) {
            Ok(wake) => {
                self.timers.at(wake, Timer::Tx(key.clone()));
                // Cut off: the transaction runs, so Timer F notices, but nothing leaves.
                if !cut {
                    self.send(dest, bytes, Some(key));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "REGISTER not sent");
                self.lines[line].pending = None;
            }
        }
    }

    pub(crate) fn on_register_response(
        &mut self,
        line: usize,
        key: &str,
        resp: &rsip::Response,
        now: Instant,
    ) {
        let l = &mut self.lines[line];
        if l.pending.as_deref() != Some(key) {
            return; // a REGISTER we already gave up on
        }
        l.pending = None;
        let step = l.reg.on_response(
            &self.policy,
            resp.status_code.code(),
            dialog::granted_expires(resp),
            dialog::min_expires(resp),
            now,
            Self::random_unit(),
        );
        self.apply(line, step, now);
    }

    fn record_registration(&mut self, line: usize, event: RegEvent) {
        let dn = &self.lines[line].dn;
        let at = |i: usize| {
            self.registrars
                .get(i)
                .map(|a| a.to_string())
                .unwrap_or_default()
        };
        match event {
            RegEvent::Registered {
                registrar,
                granted,
                previous,
            } => {
                self.metrics.registrations.inc();
                self.metrics.registered.inc();
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
