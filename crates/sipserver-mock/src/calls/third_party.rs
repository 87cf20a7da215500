//! `RequestMakeCall` (RFC 3725 flow I): the node calls the agent's phone without an offer, then
//! the destination with the phone's offer, and gives the phone the destination's answer.

use bytes::Bytes;
use rsip::prelude::*;
use sipcore::fields;
use tlib::{event, CallState, CallType, ConnId};
use tokio::time::Instant;

use super::{new_call_uuid, via_line, Outcome};
use crate::agent::{ClientId, Refusal};
use crate::call::{ALeg, BLeg, Call, CallPhase, Origin, OutKind};
use crate::core::NodeCore;

impl NodeCore {
    /// `RequestMakeCall` (RFC 3725 flow I): INVITE the agent's phone without an offer; when it
    /// answers, its offer goes to the destination.
    pub(crate) fn make_call(
        &mut self,
        client: ClientId,
        reference: Option<u32>,
        dn: &str,
        destination: &str,
        now: Instant,
    ) -> Result<(), Refusal> {
        let (phone_uri, phone) = self
            .reach(dn)
            .map_err(|e| Refusal::new(tlib::error_code::OUT_OF_SERVICE, e))?;
        let (dest_uri, dest) = self
            .reach(destination)
            .map_err(|e| Refusal::new(tlib::error_code::INV_CALD_DN, e))?;
        let internal = self.plan.lookup(destination).is_some();
        let conn_id = self.calls.new_conn_id();
        let uuid = new_call_uuid();
        let ip = self.config.sip_addr().ip();
        let (a_call_id, b_call_id, b_branch) = (
            sipcore::ids::call_id(),
            sipcore::ids::call_id(),
            sipcore::branch(),
        );
        let call = Call {
            conn_id,
            uuid,
            dn: dn.into(),
            ani: dn.to_string(),
            dnis: destination.to_string(),
            call_type: if internal {
                CallType::Internal
            } else {
                CallType::Outbound
            },
            calling_dn: None,
            origin: Origin::MakeCall,
            phase: CallPhase::Offering,
            a: ALeg {
                call_id: a_call_id,
                source: dest,
                response_headers: String::new(),
                local_to: format!("<sip:{dn}@{ip}>;tag={}", sipcore::tag()),
                remote_from: format!("<{dest_uri}>"),
                remote_target: dest_uri,
                invite_cseq: 1,
                next_cseq: 2,
                last_response: None,
                acked: true,
                tx_key: None,
                sdp: Vec::new(),
                invite: None,
            },
            b: BLeg::new(
                b_call_id,
                format!("<sip:{destination}@{ip}>;tag={}", sipcore::tag()),
                format!("<sip:{dn}@{ip}>"),
                phone_uri,
                phone,
                b_branch.clone(),
            ),
            started: now,
            answered_at: None,
            reported: true,
        };
        let bytes = self.invite_phone(&call, None);
        self.calls.insert(call);
        self.metrics.calls_active.set(self.calls.len() as i64);
        let requester = Some((client, reference));
        self.report_dialing(conn_id, dn, destination, requester, now);
        self.send_out(conn_id, OutKind::Invite, b_branch, bytes, phone, now);
        Ok(())
    }

    /// `RequestMakeCall`: the phone answered with its offer; call the destination with it.
    pub(super) fn invite_destination(&mut self, conn_id: ConnId, now: Instant) {
        let Some(call) = self.calls.get(&conn_id) else {
            return;
        };
        let branch = sipcore::branch();
        let sdp = (!call.b.sdp.is_empty()).then_some(call.b.sdp.as_slice());
        let bytes = self.invite_bytes(
            &call.a.remote_target,
            &call.a.local_to,
            &call.a.remote_from,
            &call.a.call_id,
            &branch,
            call.a.source,
            &call.uuid,
            sdp,
        );
        let dest = call.a.source;
        if let Some(call) = self.calls.get_mut(&conn_id) {
            call.a.invite = Some((branch.clone(), call.a.remote_target.clone()));
        }
        self.send_out(conn_id, OutKind::InviteA, branch, bytes, dest, now);
    }

    /// `RequestMakeCall`: the destination's answer to our INVITE.
    pub(super) fn on_destination_response(
        &mut self,
        branch: &str,
        conn_id: ConnId,
        resp: &rsip::Response,
        code: u16,
        now: Instant,
    ) {
        let addr = self.config.sip_addr();
        let Some(call) = self.calls.get_mut(&conn_id) else {
            if (200..300).contains(&code) {
                self.ack_and_bye_orphan(branch, resp);
            }
            return;
        };
        if let Ok(to) = resp.to_header() {
            if to.value().contains("tag=") {
                call.a.remote_from = to.value().to_string();
            }
        }
        if let Ok(Some(uri)) = fields::contact_uri(resp) {
            call.a.remote_target = uri.to_string();
        }
        let dest = call.a.source;
        if code < 200 {
            if code > 100 && call.phase == CallPhase::Offering {
                call.phase = CallPhase::Ringing;
                let info = call.info(Some(CallState::Ok));
                let (dn, conn_id) = (call.dn.clone(), call.conn_id);
                let reached = event::network_reached(None, &info);
                self.publish_call_event(&dn, conn_id, reached, None, None, now);
            }
            return;
        }
        // ACK the destination: a new transaction for a 2xx, the INVITE's own for an error.
        let ack_branch = if code < 300 {
            sipcore::branch()
        } else {
            branch.to_string()
        };
        let ack = Bytes::from(call.a_request(
            "ACK",
            &via_line(addr, dest.transport, &ack_branch),
            Some(1),
            "",
        ));
        if let Some(out) = self.out_requests.get_mut(branch) {
            out.ack = Some(ack.clone());
        }
        self.outbox.push((dest, ack));
        let Some(call) = self.calls.get_mut(&conn_id) else {
            return;
        };
        if code < 300 && call.phase != CallPhase::Releasing {
            call.a.sdp = resp.body().to_vec();
            let (phone_branch, answer) = (call.b.invite_branch.clone(), call.a.sdp.clone());
            // Now the phone gets its ACK, carrying the destination's answer.
            self.ack_phone(conn_id, &phone_branch, &sipcore::branch(), Some(&answer));
            self.call_established(conn_id, now);
        } else {
            if code < 300 {
                // Released while the destination was answering: hang it up again.
                self.hang_up_a(conn_id, now);
            }
            self.hang_up_b(conn_id, now);
            self.release(conn_id, Outcome::Rejected, None, now);
        }
    }
}
