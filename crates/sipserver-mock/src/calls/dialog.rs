//! Requests from the endpoints inside a call's dialogs: ACK, BYE, CANCEL, UPDATE, re-INVITE,
//! and an INVITE retransmitted after its 2xx.

use rsip::prelude::*;
use sipcore::builder::status;
use sipcore::transport::Source;
use sipcore::{fields, response_for};
use tlib::ConnId;
use tokio::time::Instant;

use super::{warned_response, Outcome, Side};
use crate::core::NodeCore;

impl NodeCore {
    /// A retransmitted INVITE whose transaction already ended with a 2xx: resend the 2xx.
    pub(crate) fn resend_invite_response(&mut self, req: &rsip::Request, source: Source) {
        let Ok(call_id) = fields::call_id(req) else {
            return;
        };
        if let Some((conn, Side::A)) = self.calls.dialog(call_id) {
            if let Some(resp) = self
                .calls
                .get(&conn)
                .and_then(|c| c.a.last_response.clone())
            {
                self.outbox.push((source, resp));
            }
        }
    }

    /// The caller's ACK for our 2xx.
    pub(crate) fn on_ack(&mut self, req: &rsip::Request) {
        let Ok(call_id) = fields::call_id(req) else {
            return;
        };
        if let Some((conn, Side::A)) = self.calls.dialog(call_id) {
            if let Some(call) = self.calls.get_mut(&conn) {
                call.a.acked = true;
            }
        }
    }

    /// BYE from either side: answer it, hang up the other side, release the call.
    pub(crate) fn on_bye(&mut self, req: &rsip::Request, now: Instant) -> rsip::Response {
        let Ok(call_id) = fields::call_id(req) else {
            return warned_response(req, 400, "missing Call-ID");
        };
        let Some((conn, side)) = self.calls.dialog(call_id) else {
            return response_for(req, status(481));
        };
        match side {
            Side::A => self.hang_up_b(conn, now),
            Side::B => self.hang_up_a(conn, now),
        }
        self.release(conn, Outcome::Completed, None, now);
        let mut ok = response_for(req, status(200));
        // Keep the dialog's To tag in the answer (response_for only adds one when missing).
        if let Ok(to) = req.to_header() {
            sipcore::builder::set_header(&mut ok, rsip::Header::To(to.clone()));
        }
        ok
    }

    /// CANCEL from the caller before the phone answered.
    pub(crate) fn on_cancel(&mut self, req: &rsip::Request, now: Instant) -> rsip::Response {
        let Ok(call_id) = fields::call_id(req) else {
            return warned_response(req, 400, "missing Call-ID");
        };
        let Some((conn, Side::A)) = self.calls.dialog(call_id) else {
            return response_for(req, status(481));
        };
        let contact = self.contact();
        if let Some(call) = self.calls.get(&conn) {
            if call.b.answered {
                // Too late: the call is up; the caller will send BYE.
                return response_for(req, status(200));
            }
            let terminated = call.a_response(487, "Request Terminated", &contact, None);
            let (key, source) = (call.a.tx_key.clone(), call.a.source);
            self.send_a_final(key, source, terminated, now);
            self.cancel_b(conn, now);
            self.release(conn, Outcome::Cancelled, None, now);
        }
        response_for(req, status(200))
    }

    /// UPDATE (session refresh): accepted without a new offer.
    pub(crate) fn on_update(&mut self, req: &rsip::Request) -> rsip::Response {
        match fields::call_id(req).ok().and_then(|c| self.calls.dialog(c)) {
            Some(_) => response_for(req, status(200)),
            None => response_for(req, status(481)),
        }
    }

    pub(super) fn reinvite_answer(
        &self,
        req: &rsip::Request,
        conn: ConnId,
        side: Side,
    ) -> rsip::Response {
        let Some(call) = self.calls.get(&conn) else {
            return response_for(req, status(481));
        };
        let sdp = match side {
            Side::A => &call.b.sdp,
            Side::B => &call.a.sdp,
        };
        let mut ok = response_for(req, status(200));
        if let Ok(to) = req.to_header() {
            sipcore::builder::set_header(&mut ok, rsip::Header::To(to.clone()));
        }
        sipcore::builder::set_header(&mut ok, rsip::Header::Contact(self.contact().into()));
        if !sdp.is_empty() {
            sipcore::builder::set_response_body(&mut ok, "application/sdp", sdp.clone());
        }
        ok
    }
}
