//! Building responses and requests as rsip values.
//!
//! Servers need exactly one thing fast: a response that copies the RFC 3261 §8.2.6.2 headers
//! (Via, From, To, Call-ID, CSeq) from the request. Simulators and tests need requests that a
//! real registrar or UA accepts; [`RequestBuilder`] fills every mandatory header with sane
//! defaults so a test only states what it cares about.

use std::net::{IpAddr, SocketAddr};

use rsip::headers::{self, UntypedHeader};
use rsip::message::{HasHeaders, HeadersExt};
use rsip::{Header, Method, StatusCode};

use crate::bad_request::has_tag;
use crate::ids;

/// Server / User-Agent header value of every drlab SIP side.
pub const SERVER_NAME: &str = "drlab";

/// A response to `req`: all Via (in order), From, To, Call-ID and CSeq copied; a To tag added
/// for any status above 100 when the request had none (RFC 3261 §8.2.6.2; a fresh tag per call,
/// which is enough for non-dialog responses such as REGISTER); `Server: drlab` and
/// `Content-Length: 0`. Use [`set_response_body`] to attach a body.
pub fn response_for(req: &rsip::Request, status: StatusCode) -> rsip::Response {
    let needs_tag = status.code() > 100;
    let mut headers: Vec<Header> = Vec::with_capacity(req.headers.iter().count().min(12) + 2);
    for h in req.headers.iter() {
        match h {
            Header::Via(_) | Header::From(_) | Header::CallId(_) | Header::CSeq(_) => {
                headers.push(h.clone())
            }
            Header::To(to) if needs_tag && !has_tag(to.value().as_bytes()) => {
                let mut v = String::with_capacity(to.value().len() + 22);
                v.push_str(to.value());
                v.push_str(";tag=");
                v.push_str(&ids::tag());
                headers.push(Header::To(headers::To::new(v)));
            }
            Header::To(_) => headers.push(h.clone()),
            _ => {}
        }
    }
    headers.push(Header::Server(headers::Server::new(SERVER_NAME)));
    headers.push(Header::ContentLength(headers::ContentLength::new("0")));
    rsip::Response {
        status_code: status,
        version: rsip::Version::V2,
        headers: headers.into(),
        body: Vec::new(),
    }
}

/// rsip prints known codes with their Rust variant name (`404 NotFound`). This returns the code
/// with the RFC 3261 reason phrase for the codes drlab sends, so captures read naturally.
/// Compare received statuses with `.code()`, since `Other(404, ..)` ≠ `StatusCode::NotFound`.
pub fn status(code: u16) -> StatusCode {
    let phrase = match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Request Entity Too Large",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        486 => "Busy Here",
        487 => "Request Terminated",
        489 => "Bad Event",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        603 => "Decline",
        _ => return StatusCode::from(code),
    };
    StatusCode::Other(code, phrase.into())
}

/// Replaces every header of the same kind as `h` by `h` (single-valued headers).
pub fn set_header<M: HasHeaders>(msg: &mut M, h: Header) {
    msg.headers_mut().unique_push(h);
}

/// `Expires: secs` (replacing any).
pub fn set_expires<M: HasHeaders>(msg: &mut M, secs: u32) {
    set_header(msg, Header::Expires(secs.into()));
}

/// `Min-Expires: secs` (for 423 Interval Too Brief).
pub fn set_min_expires<M: HasHeaders>(msg: &mut M, secs: u32) {
    set_header(
        msg,
        Header::MinExpires(headers::MinExpires::new(secs.to_string())),
    );
}

/// `Retry-After: secs` (for 503 / 480 / 486).
pub fn set_retry_after<M: HasHeaders>(msg: &mut M, secs: u32) {
    set_header(
        msg,
        Header::RetryAfter(headers::RetryAfter::new(secs.to_string())),
    );
}

/// Appends a Contact. `contact` is a header value (`<sip:u@h>;q=1`) or a bare URI; with
/// `expires`, any `expires` parameter is replaced by `;expires=N` (registrar 200 OK).
pub fn add_contact<M: HasHeaders>(msg: &mut M, contact: &str, expires: Option<u32>) {
    let value = match expires {
        Some(e) => contact_with_expires(contact, e),
        None => contact.to_owned(),
    };
    msg.headers_mut()
        .push(Header::Contact(headers::Contact::new(value)));
}

/// `contact` with its header-level `expires` parameter set to `secs`.
pub fn contact_with_expires(contact: &str, secs: u32) -> String {
    let contact = contact.trim();
    // Header parameters start after `>` when the URI is bracketed; otherwise every `;`
    // parameter is a header parameter (RFC 3261 §20.10).
    let (base, params) = if contact.contains('<') {
        match contact.rfind('>') {
            Some(gt) => contact.split_at(gt + 1),
            None => (contact, ""),
        }
    } else {
        match contact.find(';') {
            Some(semi) => contact.split_at(semi),
            None => (contact, ""),
        }
    };
    let mut out = String::with_capacity(contact.len() + 24);
    if base.contains('<') || base.trim().is_empty() {
        out.push_str(base);
    } else {
        out.push('<');
        out.push_str(base.trim());
        out.push('>');
    }
    for p in params.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let name = p.split('=').next().unwrap_or("").trim();
        if !name.eq_ignore_ascii_case("expires") {
            out.push(';');
            out.push_str(p);
        }
    }
    out.push_str(";expires=");
    out.push_str(&secs.to_string());
    out
}

fn set_body_headers<M: HasHeaders>(msg: &mut M, content_type: &str, len: usize) {
    set_header(
        msg,
        Header::ContentType(headers::ContentType::new(content_type)),
    );
    set_header(
        msg,
        Header::ContentLength(headers::ContentLength::new(len.to_string())),
    );
}

/// Sets a response body with the matching Content-Type / Content-Length.
pub fn set_response_body(resp: &mut rsip::Response, content_type: &str, body: Vec<u8>) {
    set_body_headers(resp, content_type, body.len());
    resp.body = body;
}

/// Sets a request body with the matching Content-Type / Content-Length.
pub fn set_request_body(req: &mut rsip::Request, content_type: &str, body: Vec<u8>) {
    set_body_headers(req, content_type, body.len());
    req.body = body;
}

/// Why a request could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("invalid Request-URI {0:?}")]
    InvalidUri(String),
    #[error("cannot derive request from {what}: {detail}")]
    From { what: &'static str, detail: String },
}

/// A minimal PCMU/telephone-event SDP offer/answer for `ip:rtp_port`.
pub fn sdp_offer(ip: IpAddr, rtp_port: u16) -> String {
    let (net, sess) = match ip {
        IpAddr::V4(_) => ("IP4", rand::random::<u32>()),
        IpAddr::V6(_) => ("IP6", rand::random::<u32>()),
    };
    format!(
        "v=0\r\no=drlab {sess} {sess} IN {net} {ip}\r\ns=drlab\r\nc=IN {net} {ip}\r\nt=0 0\r\n\
m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\na=sendrecv\r\n"
    )
}

/// Builder for requests sent by simulators and tests. Every mandatory header gets a default:
/// a fresh branch, a From with a fresh tag, To = Request-URI, a fresh Call-ID, CSeq 1,
/// Max-Forwards 70, UDP.
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    method: Method,
    uri: String,
    transport: rsip::Transport,
    sent_by: String,
    branch: String,
    from: String,
    from_tag: Option<String>,
    to: String,
    to_tag: Option<String>,
    call_id: String,
    cseq: u32,
    max_forwards: u32,
    contact: Option<String>,
    /// User part for a Contact generated at build time (so `.transport()` after a preset is
    /// reflected in it).
    contact_user: Option<String>,
    extra: Vec<Header>,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// The `<...>`-wrapped form of a URI or header value.
fn bracket(uri: &str) -> String {
    let uri = uri.trim();
    if uri.contains('<') {
        uri.to_owned()
    } else {
        format!("<{uri}>")
    }
}

/// User part of `sip:user@host`, if any.
fn uri_user(uri: &str) -> Option<&str> {
    let uri = uri.trim().trim_start_matches('<');
    let rest = uri.split_once(':').map_or(uri, |(_, r)| r);
    rest.split_once('@').map(|(u, _)| u)
}

impl RequestBuilder {
    /// A request for `request_uri` (e.g. `sip:1001@198.51.100.10:5060`) sent from `local`.
    pub fn new(method: Method, request_uri: impl Into<String>, local: SocketAddr) -> Self {
        let uri = request_uri.into();
        Self {
            method,
            to: bracket(&uri),
            uri,
            transport: rsip::Transport::Udp,
            sent_by: local.to_string(),
            branch: ids::branch(),
            from: format!("<sip:{SERVER_NAME}@{local}>"),
            from_tag: Some(ids::tag()),
            to_tag: None,
            call_id: ids::call_id(),
            cseq: 1,
            max_forwards: 70,
            contact: None,
            contact_user: None,
            extra: Vec::new(),
            content_type: None,
            body: Vec::new(),
        }
    }

    /// REGISTER of `aor` (`sip:1001@example.com`) at `registrar` (`sip:198.51.100.10:5060`)
    /// with `Contact: <sip:1001@local>` and `Expires: expires`, like Genesys Softphone.
    pub fn register(registrar: &str, aor: &str, local: SocketAddr, expires: u32) -> Self {
        let mut b = Self::new(Method::Register, registrar, local)
            .from(aor)
            .to(aor)
            .expires(expires);
        b.contact_user = Some(uri_user(aor).unwrap_or(SERVER_NAME).to_owned());
        b
    }

    /// INVITE from `from_aor` to `to_uri` with an SDP body and a Contact at `local`.
    pub fn invite(
        from_aor: &str,
        to_uri: &str,
        local: SocketAddr,
        sdp: impl Into<Vec<u8>>,
    ) -> Self {
        let mut b = Self::new(Method::Invite, to_uri, local)
            .from(from_aor)
            .body("application/sdp", sdp);
        b.contact_user = Some(uri_user(from_aor).unwrap_or(SERVER_NAME).to_owned());
        b
    }

    /// OPTIONS ping to `uri`.
    pub fn options(uri: &str, local: SocketAddr) -> Self {
        Self::new(Method::Options, uri, local)
    }

    /// NOTIFY carrying `Event: event` (e.g. Genesys 3pcc `talk` / `hold`) with
    /// `Subscription-State: active`.
    pub fn notify(uri: &str, local: SocketAddr, event: &str) -> Self {
        let mut b =
            Self::new(Method::Notify, uri, local)
                .event(event)
                .header(Header::SubscriptionState(headers::SubscriptionState::new(
                    "active",
                )));
        b.contact_user = Some(SERVER_NAME.to_owned());
        b
    }

    pub fn transport(mut self, t: rsip::Transport) -> Self {
        self.transport = t;
        self
    }
    /// Overrides the Via sent-by (default: the local address).
    pub fn sent_by(mut self, sent_by: impl Into<String>) -> Self {
        self.sent_by = sent_by.into();
        self
    }
    pub fn branch(mut self, branch: impl Into<String>) -> Self {
        self.branch = branch.into();
        self
    }
    /// From URI or value (a fresh tag is still added unless [`Self::from_tag`] changes it).
    pub fn from(mut self, uri: &str) -> Self {
        self.from = bracket(uri);
        self
    }
    /// `None` sends a From without tag (malformed on purpose).
    pub fn from_tag(mut self, tag: Option<String>) -> Self {
        self.from_tag = tag;
        self
    }
    pub fn to(mut self, uri: &str) -> Self {
        self.to = bracket(uri);
        self
    }
    pub fn to_tag(mut self, tag: Option<String>) -> Self {
        self.to_tag = tag;
        self
    }
    pub fn call_id(mut self, id: impl Into<String>) -> Self {
        self.call_id = id.into();
        self
    }
    pub fn cseq(mut self, n: u32) -> Self {
        self.cseq = n;
        self
    }
    pub fn max_forwards(mut self, n: u32) -> Self {
        self.max_forwards = n;
        self
    }
    /// Explicit Contact value (URI or full value).
    pub fn contact(mut self, contact: &str) -> Self {
        self.contact = Some(bracket(contact));
        self
    }
    /// No Contact at all.
    pub fn no_contact(mut self) -> Self {
        self.contact = None;
        self.contact_user = None;
        self
    }
    pub fn expires(self, secs: u32) -> Self {
        self.header(Header::Expires(secs.into()))
    }
    pub fn event(self, event: &str) -> Self {
        self.header(Header::Event(headers::Event::new(event)))
    }
    /// Any additional header (appended after the mandatory ones).
    pub fn header(mut self, h: Header) -> Self {
        self.extra.push(h);
        self
    }
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.content_type = Some(content_type.to_owned());
        self.body = body.into();
        self
    }

    /// The rsip request; fails only when the Request-URI does not parse.
    pub fn build(self) -> Result<rsip::Request, BuildError> {
        let uri = rsip::Uri::try_from(self.uri.as_str())
            .map_err(|_| BuildError::InvalidUri(self.uri.clone()))?;
        let mut h: Vec<Header> = Vec::with_capacity(10 + self.extra.len());
        h.push(Header::Via(headers::Via::new(format!(
            "SIP/2.0/{} {};branch={};rport",
            self.transport, self.sent_by, self.branch
        ))));
        h.push(Header::MaxForwards(headers::MaxForwards::new(
            self.max_forwards.to_string(),
        )));
        h.push(Header::From(headers::From::new(with_tag(
            self.from,
            self.from_tag.as_deref(),
        ))));
        h.push(Header::To(headers::To::new(with_tag(
            self.to,
            self.to_tag.as_deref(),
        ))));
        h.push(Header::CallId(headers::CallId::new(self.call_id)));
        h.push(Header::CSeq(headers::CSeq::new(format!(
            "{} {}",
            self.cseq, self.method
        ))));
        let contact = self.contact.or_else(|| {
            self.contact_user.map(|user| {
                let transport = match self.transport {
                    rsip::Transport::Udp => "",
                    rsip::Transport::Tcp => ";transport=tcp",
                    _ => "",
                };
                format!("<sip:{user}@{}{transport}>", self.sent_by)
            })
        });
        if let Some(c) = contact {
            h.push(Header::Contact(headers::Contact::new(c)));
        }
        h.push(Header::UserAgent(headers::UserAgent::new(SERVER_NAME)));
        h.extend(self.extra);
        if let Some(ct) = self.content_type {
            h.push(Header::ContentType(headers::ContentType::new(ct)));
        }
        h.push(Header::ContentLength(headers::ContentLength::new(
            self.body.len().to_string(),
        )));
        Ok(rsip::Request {
            method: self.method,
            uri,
            version: rsip::Version::V2,
            headers: h.into(),
            body: self.body,
        })
    }
}

fn with_tag(mut value: String, tag: Option<&str>) -> String {
    if let Some(tag) = tag {
        if !has_tag(value.as_bytes()) {
            value.push_str(";tag=");
            value.push_str(tag);
        }
    }
    value
}

fn from_err(what: &'static str, e: impl std::fmt::Display) -> BuildError {
    BuildError::From {
        what,
        detail: e.to_string(),
    }
}

/// Headers copied unchanged from `req`, by kind.
fn copy<M: HasHeaders>(src: &M, keep: impl Fn(&Header) -> bool) -> Vec<Header> {
    src.headers().iter().filter(|h| keep(h)).cloned().collect()
}

/// The ACK for `invite` answered by the final `response` (RFC 3261 §17.1.1.3 / §13.2.2.4):
/// same Call-ID and CSeq number, To from the response (with its tag). For a non-2xx the ACK
/// reuses the INVITE's top Via (same transaction); for a 2xx it gets a fresh branch and targets
/// the response's Contact (a new transaction).
pub fn ack_for(
    invite: &rsip::Request,
    response: &rsip::Response,
) -> Result<rsip::Request, BuildError> {
    let success = (200..300).contains(&response.status_code.code());
    let (seq, _) = crate::fields::cseq(invite).map_err(|e| from_err("INVITE", e))?;
    let to = response
        .to_header()
        .map_err(|e| from_err("response", e))?
        .clone();
    let mut uri = invite.uri.clone();
    let mut headers: Vec<Header> = Vec::with_capacity(8);
    let top_via = invite.via_header().map_err(|e| from_err("INVITE", e))?;
    if success {
        if let Ok(Some(contact)) = crate::fields::contact_uri(response) {
            uri = contact;
        }
        let v = crate::fields::parse_via(top_via.value())
            .ok_or_else(|| from_err("INVITE", "unparseable Via"))?;
        headers.push(Header::Via(headers::Via::new(format!(
            "SIP/2.0/{} {};branch={};rport",
            v.transport,
            v.sent_by,
            ids::branch()
        ))));
    } else {
        headers.push(Header::Via(top_via.clone()));
    }
    headers.extend(copy(invite, |h| {
        matches!(
            h,
            Header::MaxForwards(_) | Header::From(_) | Header::CallId(_) | Header::Route(_)
        )
    }));
    headers.push(Header::To(to));
    headers.push(Header::CSeq(headers::CSeq::new(format!("{seq} ACK"))));
    headers.push(Header::ContentLength(headers::ContentLength::new("0")));
    Ok(rsip::Request {
        method: Method::Ack,
        uri,
        version: rsip::Version::V2,
        headers: headers.into(),
        body: Vec::new(),
    })
}

/// CANCEL for a pending `invite` (RFC 3261 §9.1): same Request-URI, top Via, From, To, Call-ID
/// and CSeq number.
pub fn cancel_for(invite: &rsip::Request) -> Result<rsip::Request, BuildError> {
    let (seq, _) = crate::fields::cseq(invite).map_err(|e| from_err("INVITE", e))?;
    let top_via = invite
        .via_header()
        .map_err(|e| from_err("INVITE", e))?
        .clone();
    let mut headers = vec![Header::Via(top_via)];
    headers.extend(copy(invite, |h| {
        matches!(
            h,
            Header::MaxForwards(_)
                | Header::From(_)
                | Header::To(_)
                | Header::CallId(_)
                | Header::Route(_)
        )
    }));
    headers.push(Header::CSeq(headers::CSeq::new(format!("{seq} CANCEL"))));
    headers.push(Header::ContentLength(headers::ContentLength::new("0")));
    Ok(rsip::Request {
        method: Method::Cancel,
        uri: invite.uri.clone(),
        version: rsip::Version::V2,
        headers: headers.into(),
        body: Vec::new(),
    })
}

/// BYE from the caller side of the dialog set up by `invite` and its 2xx `response`: fresh
/// branch, CSeq + 1, To with the callee's tag, Request-URI = the callee's Contact.
pub fn bye_for(
    invite: &rsip::Request,
    response: &rsip::Response,
) -> Result<rsip::Request, BuildError> {
    let (seq, _) = crate::fields::cseq(invite).map_err(|e| from_err("INVITE", e))?;
    let top_via = invite.via_header().map_err(|e| from_err("INVITE", e))?;
    let v = crate::fields::parse_via(top_via.value())
        .ok_or_else(|| from_err("INVITE", "unparseable Via"))?;
    let to = response
        .to_header()
        .map_err(|e| from_err("response", e))?
        .clone();
    let uri = match crate::fields::contact_uri(response) {
        Ok(Some(u)) => u,
        _ => invite.uri.clone(),
    };
    let mut headers = vec![Header::Via(headers::Via::new(format!(
        "SIP/2.0/{} {};branch={};rport",
        v.transport,
        v.sent_by,
        ids::branch()
    )))];
    headers.extend(copy(invite, |h| {
        matches!(
            h,
            Header::MaxForwards(_) | Header::From(_) | Header::CallId(_)
        )
    }));
    headers.push(Header::To(to));
    headers.push(Header::CSeq(headers::CSeq::new(format!(
        "{} BYE",
        seq.wrapping_add(1)
    ))));
    headers.push(Header::UserAgent(headers::UserAgent::new(SERVER_NAME)));
    headers.push(Header::ContentLength(headers::ContentLength::new("0")));
    Ok(rsip::Request {
        method: Method::Bye,
        uri,
        version: rsip::Version::V2,
        headers: headers.into(),
        body: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields;
    use crate::parse::parse_message;
    use rsip::prelude::*;

    fn local() -> SocketAddr {
        "198.51.100.20:5060".parse().unwrap()
    }

    fn round_trip_req(r: &rsip::Request) -> rsip::Request {
        let text = r.to_string();
        match parse_message(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}")) {
            rsip::SipMessage::Request(r) => r,
            _ => panic!("not a request"),
        }
    }

    fn round_trip_resp(r: &rsip::Response) -> rsip::Response {
        let text = r.to_string();
        match parse_message(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}")) {
            rsip::SipMessage::Response(r) => r,
            _ => panic!("not a response"),
        }
    }

    #[test]
    fn register_round_trip_and_response() {
        let req = RequestBuilder::register(
            "sip:198.51.100.10:5060",
            "sip:1001@example.com",
            local(),
            1800,
        )
        .build()
        .unwrap();
        let parsed = round_trip_req(&req);
        assert_eq!(parsed, req);
        assert_eq!(fields::dn_from_to_uri(&parsed).unwrap(), "1001");
        assert_eq!(fields::expires_of_contact(&parsed).unwrap(), Some(1800));
        assert!(fields::top_via(&parsed)
            .unwrap()
            .branch
            .unwrap()
            .starts_with("z9hG4bK"));
        assert_eq!(
            parsed.contact_header().unwrap().value(),
            "<sip:1001@198.51.100.20:5060>"
        );

        let mut resp = response_for(&parsed, StatusCode::OK);
        add_contact(
            &mut resp,
            parsed.contact_header().unwrap().value(),
            Some(1800),
        );
        set_expires(&mut resp, 1800);
        let back = round_trip_resp(&resp);
        assert_eq!(back.status_code, StatusCode::OK);
        assert_eq!(
            fields::call_id(&back).unwrap(),
            fields::call_id(&parsed).unwrap()
        );
        assert_eq!(fields::cseq(&back).unwrap(), (1, Method::Register));
        assert!(fields::to_tag(&back).unwrap().is_some());
        assert_eq!(
            fields::from_tag(&back).unwrap(),
            fields::from_tag(&parsed).unwrap()
        );
        assert_eq!(
            back.contact_header()
                .unwrap()
                .typed()
                .unwrap()
                .expires()
                .unwrap()
                .value(),
            "1800"
        );
        assert_eq!(fields::expires_header(&back).unwrap(), Some(1800));
        assert!(back
            .to_string()
            .contains("Server: drlab\r\nContent-Length: 0\r\n"));
    }

    #[test]
    fn response_copies_every_via_and_keeps_existing_tag() {
        let raw = "BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP p1;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP p2;branch=z9hG4bK2\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\nX-Other: 1\r\nContent-Length: 0\r\n\r\n";
        let rsip::SipMessage::Request(req) = parse_message(raw.as_bytes()).unwrap() else {
            panic!()
        };
        let resp = response_for(&req, status(481));
        let text = resp.to_string();
        assert!(
            text.starts_with("SIP/2.0 481 Call/Transaction Does Not Exist\r\n"),
            "{text}"
        );
        assert!(text.contains(
            "Via: SIP/2.0/UDP p1;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP p2;branch=z9hG4bK2\r\n"
        ));
        assert!(text.contains("To: <sip:a@b>;tag=2\r\n"));
        assert!(!text.contains("X-Other"));
        // 100 Trying gets no tag.
        let rsip::SipMessage::Request(req) =
            parse_message(raw.replace(";tag=2", "").as_bytes()).unwrap()
        else {
            panic!()
        };
        let trying = response_for(&req, StatusCode::Trying);
        assert_eq!(fields::to_tag(&trying).unwrap(), None);
        let mut busy = response_for(&req, status(503));
        set_retry_after(&mut busy, 30);
        set_retry_after(&mut busy, 31);
        set_min_expires(&mut busy, 60);
        let back = round_trip_resp(&busy);
        assert_eq!(back.status_code.code(), 503);
        assert!(back.to_string().contains("Retry-After: 31\r\n"));
        assert!(!back.to_string().contains("Retry-After: 30"));
        assert!(back.to_string().contains("Min-Expires: 60\r\n"));
    }

    #[test]
    fn contact_expires_rewrite() {
        assert_eq!(
            contact_with_expires("<sip:a@b>", 60),
            "<sip:a@b>;expires=60"
        );
        assert_eq!(
            contact_with_expires("\"A\" <sip:a@b;transport=tcp>;expires=3600;q=0.5", 60),
            "\"A\" <sip:a@b;transport=tcp>;q=0.5;expires=60"
        );
        assert_eq!(
            contact_with_expires("sip:a@b;expires=5", 0),
            "<sip:a@b>;expires=0"
        );
    }

    #[test]
    fn invite_ack_cancel_bye_notify_options_round_trip() {
        let sdp = sdp_offer(local().ip(), 40000);
        let invite = RequestBuilder::invite(
            "sip:1001@example.com",
            "sip:2002@198.51.100.10:5060",
            local(),
            sdp.clone(),
        )
        .transport(rsip::Transport::Tcp)
        .build()
        .unwrap();
        let parsed = round_trip_req(&invite);
        assert_eq!(parsed.body, sdp.as_bytes());
        assert_eq!(parsed, invite);
        assert!(parsed
            .contact_header()
            .unwrap()
            .value()
            .contains("transport=tcp"));

        let mut ok = response_for(&parsed, StatusCode::OK);
        add_contact(&mut ok, "<sip:2002@198.51.100.30:5060>", None);
        set_response_body(&mut ok, "application/sdp", sdp.clone().into_bytes());
        let ok = round_trip_resp(&ok);
        assert_eq!(ok.body, sdp.as_bytes());

        let ack = round_trip_req(&ack_for(&parsed, &ok).unwrap());
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.uri.to_string(), "sip:2002@198.51.100.30:5060");
        assert_eq!(fields::cseq(&ack).unwrap(), (1, Method::Ack));
        assert_ne!(
            fields::top_via(&ack).unwrap().branch,
            fields::top_via(&parsed).unwrap().branch
        );
        assert_eq!(fields::to_tag(&ack).unwrap(), fields::to_tag(&ok).unwrap());

        let busy = round_trip_resp(&response_for(&parsed, status(486)));
        let ack = ack_for(&parsed, &busy).unwrap();
        assert_eq!(
            fields::top_via(&ack).unwrap().branch,
            fields::top_via(&parsed).unwrap().branch
        );
        assert_eq!(ack.uri, parsed.uri);

        let cancel = round_trip_req(&cancel_for(&parsed).unwrap());
        assert_eq!(fields::cseq(&cancel).unwrap(), (1, Method::Cancel));
        assert_eq!(
            fields::top_via(&cancel).unwrap().branch,
            fields::top_via(&parsed).unwrap().branch
        );

        let bye = round_trip_req(&bye_for(&parsed, &ok).unwrap());
        assert_eq!(fields::cseq(&bye).unwrap(), (2, Method::Bye));
        assert_eq!(
            fields::call_id(&bye).unwrap(),
            fields::call_id(&parsed).unwrap()
        );

        let notify = RequestBuilder::notify("sip:1001@198.51.100.20:5060", local(), "talk")
            .call_id(fields::call_id(&parsed).unwrap())
            .cseq(7)
            .build()
            .unwrap();
        let notify = round_trip_req(&notify);
        assert_eq!(fields::event(&notify), Some("talk"));
        assert_eq!(fields::cseq(&notify).unwrap(), (7, Method::Notify));

        let options = round_trip_req(
            &RequestBuilder::options("sip:198.51.100.10", local())
                .build()
                .unwrap(),
        );
        assert_eq!(options.method, Method::Options);
        assert!(options.contact_header().is_err());
    }

    #[test]
    fn invalid_uri_is_an_error() {
        assert!(matches!(
            RequestBuilder::options("", local()).build(),
            Err(BuildError::InvalidUri(_))
        ));
    }
}
