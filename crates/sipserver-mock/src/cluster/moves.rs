//! R8 and R9: when a DN moves to another node, and when it does not.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use crate::core::{NodeCore, TimerJob};
use crate::dn::DnKind;
use crate::tc::TcMessage;

impl NodeCore {
    /// Keeps this node's standing at the owner in line with its controlling registration:
    /// asks for the DN (R8), withdraws the ask, or takes an unowned DN (R1).
    pub(crate) fn sync_move_request(&mut self, dn: &str) {
        let controlling = self.has_controlling_registration(dn);
        let Some(state) = self.dns.get(dn) else {
            return;
        };
        let requested = state.cluster.as_ref().is_some_and(|c| c.move_requested);
        match state.owner.clone() {
            None if controlling => self.take_ownership(dn, "controlling_registration"),
            Some(owner) if !self.is_me(Some(&owner)) => {
                if controlling && !requested && self.link_up(&owner) {
                    if self.send_tc(&owner, TcMessage::MoveRequest { dn: dn.into() }) {
                        self.set_move_requested(dn, true);
                    }
                } else if !controlling && requested {
                    self.send_tc(&owner, TcMessage::MoveCancel { dn: dn.into() });
                    self.set_move_requested(dn, false);
                }
            }
            _ => {}
        }
    }

    pub(super) fn set_move_requested(&mut self, dn: &str, requested: bool) {
        if let Some(state) = self.dns.get_mut(dn) {
            state.cluster_mut().move_requested = requested;
        }
    }

    /// R8 at the owner: starts the move when every condition holds, cancels it when one stops.
    pub(crate) fn consider_move(&mut self, dn: &str, now: Instant) {
        if !self.owns(dn) {
            return;
        }
        let blocker = self.move_blocker(dn);
        let Some(state) = self.dns.get_mut(dn) else {
            return;
        };
        let cluster = state.cluster_mut();
        match (blocker, cluster.move_pending) {
            (Ok(to), None) => {
                cluster.move_serial += 1;
                let serial = cluster.move_serial;
                cluster.move_pending = Some(serial);
                // A softphone DN whose registration here is gone moves at once.
                let delay = match self.plan.lookup(dn).map(|i| i.kind) {
                    Some(DnKind::Softphone) => Duration::ZERO,
                    _ => self.config.options.ownership_move_delay,
                };
                self.journal.record(
                    "ownership.move_scheduled",
                    json!({ "dn": dn, "to": &*to, "delay_ms": delay.as_millis() as u64, "rule": "R8" }),
                );
                self.schedule(
                    now + delay,
                    TimerJob::OwnershipMove {
                        dn: dn.into(),
                        serial,
                    },
                );
            }
            (Err(reason), Some(_)) => {
                cluster.move_pending = None;
                self.journal.record(
                    "ownership.move_cancelled",
                    json!({ "dn": dn, "reason": reason, "rule": "R8" }),
                );
            }
            _ => {}
        }
    }

    /// The node to move `dn` to, or what keeps it here.
    pub(super) fn move_blocker(&self, dn: &str) -> Result<Arc<str>, &'static str> {
        let candidate = self
            .dns
            .get(dn)
            .and_then(|s| s.cluster.as_ref())
            .and_then(|c| c.move_candidates.iter().find(|n| self.link_up(n)).cloned())
            .ok_or("no other node asks for the DN")?;
        if self.has_controlling_registration(dn) {
            return Err("a registration remains at the owner");
        }
        if self.busy_for_login(dn).is_some() {
            return Err("a call or after-call work is in progress");
        }
        Ok(candidate)
    }

    /// The move delay of `dn` is over: log the agent out and hand the DN over (R8).
    pub(crate) fn ownership_move_due(&mut self, dn: &str, serial: u64, now: Instant) {
        let pending = self
            .dns
            .get(dn)
            .and_then(|s| s.cluster.as_ref())
            .and_then(|c| c.move_pending);
        if pending != Some(serial) || !self.owns(dn) {
            return;
        }
        if let Some(c) = self.dns.get_mut(dn).and_then(|s| s.cluster.as_mut()) {
            c.move_pending = None;
        }
        match self.move_blocker(dn) {
            Ok(to) => {
                // Even an agent that logged in through the new owner meanwhile is logged out:
                // that is why agents may have to log on twice.
                self.logout_agent(dn, "ownership_move", "R8");
                self.metrics.ownership_moves.inc();
                self.give_up_ownership(dn, Some(to), "ownership_move");
            }
            Err(_) => self.consider_move(dn, now),
        }
    }
}
