//! A call on this node (its Session Controller role): the caller's leg (A, where the node is the
//! UAS) and the agent phone's leg (B, where the node is the UAC), as plain data. The node is a
//! back-to-back UA that passes SDP through, so media flows directly between the endpoints.

use bytes::Bytes;
use serde::Serialize;
use sipcore::client_transaction::TxClock;
use sipcore::transport::Source;
use sipcore::TxKey;
use tlib::{event, CallInfo, CallState, CallType, ConnId, Message, MessageName};
use tokio::time::Instant;

/// Where a call is in its life, as the agent's desktop sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CallPhase {
    /// INVITE sent to the phone, nothing back yet.
    Offering,
    Ringing,
    Established,
    Held,
    /// BYE or CANCEL sent; waiting for the last answers.
    Releasing,
}

/// How a call began.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Origin {
    /// An INVITE arrived for the agent's DN (A = the caller, the node answers it).
    Inbound,
    /// `RequestMakeCall` (RFC 3725 flow I): the node calls the agent's phone (B) without an offer,
    /// then the destination (A) with the phone's offer; the node is the UAC on both legs.
    MakeCall,
}

/// The far party's side: the caller of an inbound call (the node answers it), or the
/// destination of a `RequestMakeCall` (the node calls it).
#[derive(Debug)]
pub struct ALeg {
    pub call_id: String,
    /// Where the caller's requests came from (responses and our BYE go there).
    pub source: Source,
    /// The caller's INVITE's Via lines, From, Call-ID and CSeq, ready to copy into responses.
    pub response_headers: String,
    /// Our To header towards the caller, with the tag the node chose.
    pub local_to: String,
    /// The caller's From header (with its tag): the To of requests we send it.
    pub remote_from: String,
    /// The caller's Contact URI.
    pub remote_target: String,
    pub invite_cseq: u32,
    /// CSeq of the next request the node sends in this leg.
    pub next_cseq: u32,
    /// The last response to the INVITE (resent for retransmitted INVITEs, 2xx until ACK).
    pub last_response: Option<Bytes>,
    pub acked: bool,
    /// The caller's INVITE server transaction, until its final response.
    pub tx_key: Option<TxKey>,
    /// The caller's SDP offer, or the destination's answer (answers a re-INVITE from the phone).
    pub sdp: Vec<u8>,
    /// `RequestMakeCall`: the branch and Request-URI of our INVITE to the destination (a CANCEL
    /// repeats both).
    pub invite: Option<(String, String)>,
}

/// The agent phone's side: the node called it.
#[derive(Debug)]
pub struct BLeg {
    pub call_id: String,
    pub local_from: String,
    /// The To header of our INVITE (no tag).
    pub remote_to_base: String,
    /// The phone's To header once it answered with a tag (early or confirmed dialog).
    pub remote_to: Option<String>,
    /// The Request-URI of our INVITE (the registered Contact, or the gateway number).
    pub request_uri: String,
    /// The phone's Contact from its 18x/2xx (in-dialog requests go there).
    pub remote_target: Option<String>,
    pub dest: Source,
    pub invite_branch: String,
    pub next_cseq: u32,
    /// The phone's 2xx arrived.
    pub answered: bool,
    /// The phone's SDP answer (answers a re-INVITE from the caller).
    pub sdp: Vec<u8>,
}

/// One call.
#[derive(Debug)]
pub struct Call {
    pub conn_id: ConnId,
    pub uuid: String,
    /// The agent DN the call is for: the called DN of an inbound call, the calling DN of a
    /// `RequestMakeCall`.
    pub dn: Box<str>,
    /// An internal call dialled by a registered phone: the calling DN, which gets the caller's
    /// side of the call (`EventDialing`, `EventEstablished`, `EventReleased`) with the same
    /// ConnID.
    pub calling_dn: Option<Box<str>>,
    pub ani: String,
    pub dnis: String,
    pub call_type: CallType,
    pub origin: Origin,
    pub phase: CallPhase,
    pub a: ALeg,
    pub b: BLeg,
    pub started: Instant,
    pub answered_at: Option<Instant>,
    /// The ringing was reported to the desktop (so a release must be reported too).
    pub reported: bool,
}

impl BLeg {
    /// The phone's leg as our INVITE starts it; `remote_to_base` is that INVITE's To.
    pub fn new(
        call_id: String,
        local_from: String,
        remote_to_base: String,
        request_uri: String,
        dest: Source,
        invite_branch: String,
    ) -> Self {
        BLeg {
            call_id,
            local_from,
            remote_to_base,
            remote_to: None,
            request_uri,
            remote_target: None,
            dest,
            invite_branch,
            next_cseq: 2,
            answered: false,
            sdp: Vec::new(),
        }
    }
}

impl Call {
    /// The phone's 2xx: keeps its SDP the first time (true); a retransmission changes nothing.
    pub fn phone_answered(&mut self, sdp: &[u8]) -> bool {
        if self.b.answered {
            return false;
        }
        self.b.answered = true;
        self.b.sdp = sdp.to_vec();
        true
    }

    /// The DNs whose clients hear of the call: its DN, and the calling DN of an internal call.
    pub fn parties(&self) -> impl Iterator<Item = &str> {
        std::iter::once(&*self.dn).chain(self.calling_dn.as_deref())
    }

    /// Whether `dn` is the calling party's DN of an internal call.
    pub fn is_calling_party(&self, dn: &str) -> bool {
        self.calling_dn.as_deref() == Some(dn)
    }

    /// The event that tells a client of `dn` the call's current state (R6, and the TC layer's
    /// calls snapshot).
    pub fn current_event(&self, dn: &str) -> Message {
        let name = match self.phase {
            CallPhase::Offering | CallPhase::Ringing if self.is_calling_party(dn) => {
                MessageName::EventDialing
            }
            CallPhase::Offering | CallPhase::Ringing => MessageName::EventRinging,
            CallPhase::Held => MessageName::EventHeld,
            CallPhase::Established | CallPhase::Releasing => MessageName::EventEstablished,
        };
        event::call_event(name, None, &self.info_for(dn, Some(CallState::Ok)))
    }

    /// The attributes every T-Event of this call carries, for the call's DN.
    pub fn info(&self, state: Option<CallState>) -> CallInfo {
        CallInfo {
            conn_id: self.conn_id,
            call_uuid: Some(self.uuid.clone()),
            this_dn: self.dn.to_string(),
            other_dn: Some(self.ani.clone()),
            ani: Some(self.ani.clone()),
            dnis: Some(self.dnis.clone()),
            call_type: Some(self.call_type),
            call_state: state,
            user_data: None,
        }
    }

    /// The attributes for the events of party `dn`: the calling DN of an internal call sees
    /// the called DN as the other party.
    pub fn info_for(&self, dn: &str, state: Option<CallState>) -> CallInfo {
        let mut info = self.info(state);
        if self.is_calling_party(dn) {
            info.this_dn = dn.to_string();
            info.other_dn = Some(self.dn.to_string());
        }
        info
    }

    /// A request inside the A leg (`local_to` is the node's side, `remote_from` the far party's);
    /// `cseq` None takes the next number.
    pub fn a_request(&mut self, method: &str, via: &str, cseq: Option<u32>, extra: &str) -> String {
        let cseq = cseq.unwrap_or_else(|| {
            let n = self.a.next_cseq;
            self.a.next_cseq += 1;
            n
        });
        format!(
            "{method} {target} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n{extra}Content-Length: 0\r\n\r\n",
            target = self.a.remote_target,
            from = self.a.local_to,
            to = self.a.remote_from,
            call_id = self.a.call_id,
        )
    }

    /// A request inside the B leg's (early or confirmed) dialog.
    pub fn b_request(&mut self, method: &str, via: &str, cseq: Option<u32>, extra: &str) -> String {
        let cseq = cseq.unwrap_or_else(|| {
            let n = self.b.next_cseq;
            self.b.next_cseq += 1;
            n
        });
        let target = self
            .b
            .remote_target
            .as_deref()
            .unwrap_or(&self.b.request_uri);
        let to = self
            .b
            .remote_to
            .as_deref()
            .unwrap_or(&self.b.remote_to_base);
        format!(
            "{method} {target} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n{extra}Content-Length: 0\r\n\r\n",
            from = self.b.local_from,
            call_id = self.b.call_id,
        )
    }

    /// The ACK of the phone's 2xx carrying the SDP answer (late offer, RFC 3725 flow I).
    pub fn b_ack_with_sdp(&mut self, via: &str, sdp: &[u8]) -> Bytes {
        let head = self.b_request("ACK", via, Some(1), "");
        let head = head
            .strip_suffix("Content-Length: 0\r\n\r\n")
            .unwrap_or(&head);
        let mut bytes = format!(
            "{head}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n",
            sdp.len()
        )
        .into_bytes();
        bytes.extend_from_slice(sdp);
        Bytes::from(bytes)
    }

    /// A response to the caller's INVITE, with an optional SDP body.
    pub fn a_response(&self, code: u16, reason: &str, contact: &str, sdp: Option<&[u8]>) -> Bytes {
        let mut text = format!(
            "SIP/2.0 {code} {reason}\r\n{headers}To: {to}\r\nContact: {contact}\r\nServer: drlab\r\n",
            headers = self.a.response_headers,
            to = self.a.local_to,
        );
        match sdp {
            Some(body) if !body.is_empty() => {
                text.push_str(&format!(
                    "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                ));
                let mut bytes = text.into_bytes();
                bytes.extend_from_slice(body);
                Bytes::from(bytes)
            }
            _ => {
                text.push_str("Content-Length: 0\r\n\r\n");
                Bytes::from(text)
            }
        }
    }
}

/// What an outgoing request of the node is for, so its answer finds its way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutKind {
    /// Our INVITE to the phone.
    Invite,
    /// Our INVITE to the destination of a `RequestMakeCall`.
    InviteA,
    /// BYE to the phone (B) or the caller (A).
    ByeB,
    ByeA,
    CancelA,
    CancelB,
    /// NOTIFY `Event: talk` / `Event: hold` to the phone.
    Notify,
    /// Session-audit OPTIONS to the caller (A) or the phone (B).
    AuditA,
    AuditB,
}

impl OutKind {
    /// An INVITE client transaction (Timers A/B), not a non-INVITE one (E/F).
    pub fn is_invite(self) -> bool {
        matches!(self, OutKind::Invite | OutKind::InviteA)
    }
}

/// A request the node sent and may have to retransmit (UDP) until answered or timed out.
#[derive(Debug)]
pub struct OutRequest {
    pub conn_id: ConnId,
    pub kind: OutKind,
    pub bytes: Bytes,
    pub dest: Source,
    /// When to resend (RFC 3261 Timers A and E).
    pub clock: TxClock,
    /// The answer that ends the transaction's retransmissions and its timeout (Timers B and F):
    /// any response to an INVITE (a ringing phone may ring on), a final one otherwise.
    pub answered: bool,
    /// For our INVITE: the ACK sent for its final response, resent if the final is.
    pub ack: Option<Bytes>,
}

/// Checks that a body is a usable SDP offer: a version line, a connection and a media line.
pub fn sdp_is_valid(body: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines.first().is_some_and(|l| *l == "v=0")
        && lines.iter().any(|l| l.starts_with("c=IN "))
        && lines.iter().any(|l| l.starts_with("m="))
}

#[cfg(test)]
mod tests {
    use super::sdp_is_valid;

    #[test]
    fn sdp_checks() {
        let good = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert!(sdp_is_valid(good.as_bytes()));
        assert!(!sdp_is_valid(b"hello"));
        assert!(!sdp_is_valid(b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n"));
        assert!(!sdp_is_valid(&[0xff, 0xfe]));
    }
}
