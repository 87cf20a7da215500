//! The SIP side of the core: dispatch, the registrar (docs/protocols.md §4.1; R1, R12)
//! and OPTIONS; calls are in `calls/`. Requests arrive parsed; answers go to the outbox.

use std::time::Duration;

use bytes::Bytes;
use rsip::prelude::*;
use rsip::{Method, SipMessage};
use serde_json::json;
use sipcore::builder::{self, status};
use sipcore::transport::{Incoming, IncomingMessage, Source, TransportKind};
use sipcore::{fields, response_for, TxKey, TxVerdict};
use tokio::time::Instant;

use crate::core::NodeCore;
use crate::dn::DnKind;
use crate::registrar::{RegisterAsk, RegisterOutcome, RegisterRefusal, SipTransport};

/// The methods this node handles.
const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, NOTIFY, UPDATE";

impl NodeCore {
    /// One message from the SIP transport; what it causes goes to the outbox.
    pub fn on_sip(&mut self, incoming: Incoming, now: Instant) {
        let source = incoming.source;
        let request = match incoming.msg {
            IncomingMessage::Sip(SipMessage::Request(req)) => req,
            IncomingMessage::Sip(SipMessage::Response(resp)) => return self.on_response(resp, now),
            IncomingMessage::Invalid { raw, error } => {
                self.metrics.sip_bad_requests.inc();
                tracing::debug!(node = %self.node, %error, from = %source.remote, "malformed SIP message");
                if let Some(b) = sipcore::bad_request_response(&raw, &error.to_string()) {
                    self.metrics.sip_responses(400);
                    self.outbox.push((source, b));
                }
                return;
            }
        };
        self.metrics.sip_requests.inc();
        let key = match self.transactions.on_request(&request, now.into_std()) {
            Ok(TxVerdict::New(key)) => key,
            Ok(TxVerdict::Retransmission(cached)) => {
                self.metrics.sip_retransmissions.inc();
                if let Some(b) = cached {
                    self.outbox.push((source, b));
                } else if request.method == Method::Invite {
                    self.resend_invite_response(&request, source);
                }
                return;
            }
            // An ACK for a non-2xx final the transaction layer already absorbed.
            Ok(TxVerdict::Ack(Some(_))) => return,
            Ok(TxVerdict::Ack(None)) => return self.on_ack(&request),
            Err(e) => {
                let b = self.reject(&request, 400, &e.reason());
                self.outbox.push((source, b));
                return;
            }
        };
        let response = match request.method {
            Method::Register => Some(self.on_register(&request, source, now)),
            Method::Options => {
                let mut resp = response_for(&request, status(200));
                builder::set_header(&mut resp, rsip::Header::Allow(ALLOW.into()));
                Some(resp)
            }
            Method::Invite => self.on_invite(&request, source, &key, now),
            Method::Bye => Some(self.on_bye(&request, now)),
            Method::Cancel => Some(self.on_cancel(&request, now)),
            Method::Update => Some(self.on_update(&request)),
            Method::Notify => Some(response_for(&request, status(200))),
            _ => {
                let mut resp = response_for(&request, status(405));
                builder::set_header(&mut resp, rsip::Header::Allow(ALLOW.into()));
                Some(resp)
            }
        };
        if let Some(response) = response {
            let bytes = Bytes::from(response.to_string());
            self.answer_tx(&key, source, bytes, now);
        }
    }

    /// Sends a response in server transaction `key` and lets the transaction layer keep it for
    /// retransmitted requests.
    pub(crate) fn answer_tx(&mut self, key: &TxKey, source: Source, bytes: Bytes, now: Instant) {
        if let Some(code) = status_code(&bytes) {
            self.metrics.sip_responses(code);
        }
        self.transactions.on_response(
            key,
            bytes.clone(),
            now.into_std(),
            source.transport.is_reliable(),
        );
        self.outbox.push((source, bytes));
    }

    fn reject(&self, req: &rsip::Request, code: u16, reason: &str) -> Bytes {
        self.metrics.sip_responses(code);
        Bytes::from(warned(req, code, reason).to_string())
    }

    fn on_register(&mut self, req: &rsip::Request, source: Source, now: Instant) -> rsip::Response {
        let bad = |reason: String| warned(req, 400, &reason);
        let from = req
            .from_header()
            .err()
            .map(|_| fields::FieldError::Missing("From"));
        let missing = [fields::call_id(req).err(), fields::cseq(req).err(), from];
        if let Some(e) = missing.into_iter().flatten().next() {
            return bad(e.reason());
        }
        let dn = match fields::dn_from_to_uri(req) {
            Ok(dn) => dn,
            Err(e) => return bad(e.reason()),
        };
        match self.plan.lookup(&dn).map(|i| i.kind) {
            None => return response_for(req, status(404)),
            Some(DnKind::Pstn) => {
                return warned(
                    req,
                    403,
                    &format!("DN {dn} is a PSTN DN; it is not SIP-registered"),
                );
            }
            Some(DnKind::Softphone) => {}
        }
        let expires_header = match fields::expires_header(req) {
            Ok(e) => e,
            Err(e) => return bad(e.reason()),
        };
        let ask = if fields::is_wildcard_contact(req) {
            if expires_header != Some(0) {
                return bad("Contact: * needs Expires: 0".into());
            }
            RegisterAsk::Remove
        } else {
            match fields::contact_uri(req) {
                Err(e) => return bad(e.reason()),
                Ok(None) => RegisterAsk::Query,
                Ok(Some(uri)) => {
                    let expires = match fields::expires_of_contact(req) {
                        Ok(e) => e.or(expires_header),
                        Err(e) => return bad(e.reason()),
                    };
                    RegisterAsk::Bind {
                        contact: format!("<{uri}>"),
                        expires: expires.map(|s| Duration::from_secs(u64::from(s))),
                        source: source.remote,
                        transport: match source.transport {
                            TransportKind::Udp => SipTransport::Udp,
                            TransportKind::Tcp => SipTransport::Tcp,
                        },
                    }
                }
            }
        };
        match self.registrar.register(&dn, ask, now) {
            Err(RegisterRefusal::IntervalTooBrief { min }) => {
                let mut resp = response_for(req, status(423));
                builder::set_min_expires(&mut resp, min.as_secs() as u32);
                resp
            }
            Ok(outcome) => {
                let mut resp = response_for(req, status(200));
                match outcome {
                    RegisterOutcome::Bound {
                        granted,
                        was_unbound,
                    } => {
                        let secs = granted.as_secs() as u32;
                        if let Some(b) = self.registrar.binding(&dn) {
                            let contact = b.contact.to_string();
                            builder::add_contact(&mut resp, &contact, Some(secs));
                        }
                        builder::set_expires(&mut resp, secs);
                        if was_unbound {
                            self.metrics.registrations_new.inc();
                            self.journal.record(
                                "sip.registered",
                                json!({ "dn": dn, "expires": secs, "from": source.remote.to_string() }),
                            );
                            self.softphone_bound(&dn, now);
                        } else {
                            self.metrics.registrations_refreshed.inc();
                        }
                    }
                    RegisterOutcome::Removed { was_bound } => {
                        if was_bound {
                            self.journal.record("sip.unregistered", json!({ "dn": dn }));
                            self.softphone_unbound(&dn, now);
                        }
                    }
                    RegisterOutcome::Current(Some((contact, left))) => {
                        builder::add_contact(&mut resp, &contact, Some(left.as_secs() as u32));
                    }
                    RegisterOutcome::Current(None) => {}
                }
                self.metrics.bindings.set(self.registrar.len() as i64);
                resp
            }
        }
    }
}

/// A response with a `Warning: 399 drlab "<reason>"` header saying what was wrong.
fn warned(req: &rsip::Request, code: u16, reason: &str) -> rsip::Response {
    let mut resp = response_for(req, status(code));
    builder::set_header(
        &mut resp,
        rsip::Header::Warning(format!("399 drlab \"{reason}\"").into()),
    );
    resp
}

/// The status code at the start of a response's bytes.
pub(crate) fn status_code(bytes: &[u8]) -> Option<u16> {
    let rest = bytes.strip_prefix(b"SIP/2.0 ")?;
    std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()
}
