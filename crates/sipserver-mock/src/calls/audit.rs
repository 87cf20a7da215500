//! The session audit (the node's stand-in for RFC 4028 session timers): a call whose leg
//! vanished is released rather than left up forever (scenario S4.1).

use serde_json::json;
use tlib::ConnId;
use tokio::time::Instant;

use super::{Outcome, Side};
use crate::call::{CallPhase, OutKind};
use crate::core::{NodeCore, TimerJob};

impl NodeCore {
    /// Session audit (the node's stand-in for RFC 4028 session timers): every
    /// `call_audit_interval` an in-dialog OPTIONS goes to both legs of an answered call; a leg
    /// that stops answering (Timer F) or answers 408/481 is gone, and the call is released —
    /// so a call whose phone vanished does not stay up forever (scenario S4.1).
    pub(crate) fn audit_call(&mut self, conn_id: ConnId, now: Instant) {
        let interval = self.config.call_audit_interval;
        let up = self
            .calls
            .get(&conn_id)
            .is_some_and(|c| matches!(c.phase, CallPhase::Established | CallPhase::Held));
        if !up {
            return;
        }
        self.send_in_dialog(conn_id, Side::A, "OPTIONS", OutKind::AuditA, "", now);
        self.send_in_dialog(conn_id, Side::B, "OPTIONS", OutKind::AuditB, "", now);
        self.schedule(now + interval, TimerJob::Audit { conn_id });
    }

    /// One leg of a call is gone: hang up the other one and release the call.
    pub(super) fn leg_lost(&mut self, conn_id: ConnId, kind: OutKind, now: Instant) {
        if !self.calls.contains(&conn_id) {
            return;
        }
        let side = if kind == OutKind::AuditA {
            "caller"
        } else {
            "phone"
        };
        self.journal.record(
            "call.leg_lost",
            json!({ "conn_id": conn_id.to_string(), "side": side }),
        );
        if kind == OutKind::AuditA {
            self.hang_up_b(conn_id, now);
        } else {
            self.hang_up_a(conn_id, now);
        }
        self.release(conn_id, Outcome::LegLost, None, now);
    }
}
