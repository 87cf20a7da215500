//! What the node reports on its calls: the T-Events of a call's life that are not a hang-up
//! (`EventDialing` on the calling DN, `EventEstablished` on every party) and the state of the
//! calls in progress on a DN.
//!
//! This is where R6 lives: a client that registers a DN gets, after `EventRegistered`, the
//! current state of every call in progress on the DN (`EventRinging`, `EventDialing`,
//! `EventEstablished` or `EventHeld`, with its ConnID) — calls of this node, and at the owner the
//! DN's calls on other nodes it can reach — so a desktop that reconnects shows the call and can
//! control it.

use serde_json::json;
use tlib::{event, CallState, ConnId};
use tokio::time::Instant;

use crate::agent::ClientId;
use crate::call::CallPhase;
use crate::core::{NodeCore, TimerJob};

impl NodeCore {
    /// The calling DN's side of a call begins: `EventDialing` to its clients (a
    /// `RequestMakeCall`, or a phone that dialled an internal call).
    pub(super) fn report_dialing(
        &mut self,
        conn_id: ConnId,
        dn: &str,
        destination: &str,
        requester: Option<(ClientId, Option<u32>)>,
        now: Instant,
    ) {
        let Some(call) = self.calls.get(&conn_id) else {
            return;
        };
        let dialing = event::dialing(None, &call.info_for(dn, Some(CallState::Ok)));
        self.dns.add_call(dn, conn_id);
        self.journal.record(
            "call.dialing",
            json!({ "conn_id": conn_id.to_string(), "dn": dn, "destination": destination }),
        );
        self.publish_call_event(dn, conn_id, dialing, requester, None, now);
    }

    /// The call is up: both parties answered. Reports it and starts the session audit.
    pub(super) fn call_established(&mut self, conn_id: ConnId, now: Instant) {
        let Some(call) = self.calls.get_mut(&conn_id) else {
            return;
        };
        call.phase = CallPhase::Established;
        call.answered_at = Some(now);
        call.reported = true;
        let dn = call.dn.clone();
        let parties: Vec<(Box<str>, tlib::CallInfo)> = call
            .parties()
            .map(|p| (p.into(), call.info_for(p, Some(CallState::Ok))))
            .collect();
        self.metrics.calls_answered.inc();
        if !self.config.call_audit_interval.is_zero() {
            let at = now + self.config.call_audit_interval;
            self.schedule(at, TimerJob::Audit { conn_id });
        }
        self.journal.record(
            "call.established",
            json!({ "conn_id": conn_id.to_string(), "dn": &*dn }),
        );
        for (party, info) in parties {
            let mut established = event::established(None, &info);
            established.attrs.extensions = Some(self.wrap_up_extensions());
            self.publish_call_event(&party, conn_id, established, None, None, now);
        }
    }

    /// The DN's calls, reported to a client that just registered the DN.
    pub(crate) fn report_calls(&mut self, client: ClientId, dn: &str) {
        let mut reports: Vec<tlib::Message> = self
            .dns
            .calls_on(dn)
            .iter()
            .filter_map(|conn| self.calls.get(conn))
            .map(|call| call.current_event(dn))
            .collect();
        if let Some(c) = self.dns.get(dn).and_then(|s| s.cluster.as_ref()) {
            reports.extend(c.reachable_remote_calls().map(|rc| rc.last_event.clone()));
        }
        for msg in reports {
            self.send(client, msg);
        }
    }
}
