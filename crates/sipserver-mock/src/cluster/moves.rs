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

    /// The DN's last registration at its owner (this node) is gone: a T-Lib client unregistered
    /// or vanished (R4), or the phone's binding expired or was removed (R12). With a call or ACW
    /// on the DN the owner keeps it, whatever happens to its registrations: a registration
    /// elsewhere meanwhile is remote (R2) and its login is refused (R5). Once the call and ACW
    /// are over the DN moves to a node that asked for it (R8) or, with no registration left
    /// anywhere, is released ([`Self::consider_move`]).
    pub(crate) fn last_registration_gone(&mut self, dn: &str, cause: &str, now: Instant) {
        if let Some(busy) = self.busy_for_login(dn) {
            self.journal.record(
                "ownership.kept",
                json!({ "dn": dn, "cause": cause, "reason": busy.text, "rule": "R8" }),
            );
        }
        self.consider_move(dn, now);
    }

    /// R8 at the owner: starts the move when every condition holds, cancels it when one stops;
    /// releases a DN nothing holds here any more once it has no call and no ACW.
    pub(crate) fn consider_move(&mut self, dn: &str, now: Instant) {
        if !self.owns(dn) {
            return;
        }
        let blocker = self.move_blocker(dn);
        let release = blocker.is_err() && self.unheld_and_idle(dn);
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
        if release {
            self.give_up_ownership(dn, None, "no_registration");
        }
    }

    /// Nothing registers `dn` here (no T-Lib client of a PSTN DN, no binding of a softphone DN)
    /// and it has no call and no ACW: the owner lets it go.
    fn unheld_and_idle(&self, dn: &str) -> bool {
        let held = match self.plan.lookup(dn).map(|i| i.kind) {
            Some(DnKind::Softphone) => self.registrar.binding(dn).is_some(),
            Some(DnKind::Pstn) => self.dns.get(dn).is_some_and(|s| !s.clients.is_empty()),
            None => true,
        };
        !held && self.busy_for_login(dn).is_none()
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
                // The DN leaves this node: its clients here (remote registrations of other
                // nodes) hear it go out of service; they get it back from the new owner.
                self.service_event(dn, false, "ownership_move");
                self.metrics.ownership_moves.inc();
                self.give_up_ownership(dn, Some(to), "ownership_move");
            }
            Err(_) => self.consider_move(dn, now),
        }
    }
}
