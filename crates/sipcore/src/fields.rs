//! Reading the fields every SIP side needs, with errors that say which header was wrong.
//!
//! rsip's accessors fail with "missing header: CallID" or an error carrying the whole header;
//! handlers want to turn a failure into a precise 400 reason or a counter label, so every reader
//! here names its header. The Via reader is a hand-written slice parser because it runs for
//! every request on the transaction hot path and needs no allocation.

use rsip::message::HeadersExt;
use rsip::prelude::*;

/// A header needed by the caller is missing or unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("invalid {header} header: {detail}")]
    Invalid {
        header: &'static str,
        detail: String,
    },
}

impl FieldError {
    fn invalid(header: &'static str, detail: impl std::fmt::Display) -> Self {
        let mut detail = detail.to_string();
        if detail.len() > 120 {
            let mut cut = 120;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
            detail.push('…');
        }
        FieldError::Invalid { header, detail }
    }

    /// A short text usable as a 400 reason phrase.
    pub fn reason(&self) -> String {
        match self {
            FieldError::Missing(h) => format!("Missing {h}"),
            FieldError::Invalid { header, .. } => format!("Invalid {header}"),
        }
    }
}

/// The pieces of one Via value needed for transaction matching and response routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViaParts<'a> {
    /// `UDP`, `TCP`, ... as written.
    pub transport: &'a str,
    /// `host[:port]` as written.
    pub sent_by: &'a str,
    pub branch: Option<&'a str>,
    pub received: Option<&'a str>,
    /// `Some(None)` for a bare `;rport`, `Some(Some(port))` when filled in.
    pub rport: Option<Option<&'a str>>,
}

/// Parses `SIP/2.0/UDP host:port;branch=...;rport` without allocating. `None` when the value
/// does not have that shape.
pub fn parse_via(value: &str) -> Option<ViaParts<'_>> {
    let value = value.trim();
    let (proto, rest) = value.split_once([' ', '\t'])?;
    let mut proto_parts = proto.split('/');
    let (name, version, transport) = (
        proto_parts.next()?,
        proto_parts.next()?,
        proto_parts.next()?,
    );
    if !name.trim().eq_ignore_ascii_case("SIP") || version.trim() != "2.0" || transport.is_empty() {
        return None;
    }
    let mut params = rest.trim_start().split(';');
    let sent_by = params.next()?.trim();
    if sent_by.is_empty() {
        return None;
    }
    let mut parts = ViaParts {
        transport: transport.trim(),
        sent_by,
        branch: None,
        received: None,
        rport: None,
    };
    for p in params {
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (p.trim(), None),
        };
        if k.eq_ignore_ascii_case("branch") {
            parts.branch = v;
        } else if k.eq_ignore_ascii_case("received") {
            parts.received = v;
        } else if k.eq_ignore_ascii_case("rport") {
            parts.rport = Some(v);
        }
    }
    Some(parts)
}

/// The top (first) Via value.
pub fn top_via<M: HeadersExt>(msg: &M) -> Result<ViaParts<'_>, FieldError> {
    let via = msg.via_header().map_err(|_| FieldError::Missing("Via"))?;
    parse_via(via.value()).ok_or_else(|| FieldError::invalid("Via", via.value()))
}

pub fn call_id<M: HeadersExt>(msg: &M) -> Result<&str, FieldError> {
    msg.call_id_header()
        .map(|h| h.value())
        .map_err(|_| FieldError::Missing("Call-ID"))
}

/// `(sequence number, method)` of CSeq.
pub fn cseq<M: HeadersExt>(msg: &M) -> Result<(u32, rsip::Method), FieldError> {
    let h = msg.cseq_header().map_err(|_| FieldError::Missing("CSeq"))?;
    let t = h
        .typed()
        .map_err(|_| FieldError::invalid("CSeq", h.value()))?;
    Ok((t.seq, t.method))
}

/// User part of the To URI: the DN a REGISTER or an INVITE is about.
pub fn dn_from_to_uri(req: &rsip::Request) -> Result<String, FieldError> {
    let h = req.to_header().map_err(|_| FieldError::Missing("To"))?;
    let to = h
        .typed()
        .map_err(|_| FieldError::invalid("To", h.value()))?;
    match to.uri.user() {
        Some(u) if !u.is_empty() => Ok(u.to_owned()),
        _ => Err(FieldError::invalid("To", "URI has no user part")),
    }
}

/// User part of the From URI.
pub fn from_user<M: HeadersExt>(msg: &M) -> Result<String, FieldError> {
    let h = msg.from_header().map_err(|_| FieldError::Missing("From"))?;
    let from = h
        .typed()
        .map_err(|_| FieldError::invalid("From", h.value()))?;
    match from.uri.user() {
        Some(u) if !u.is_empty() => Ok(u.to_owned()),
        _ => Err(FieldError::invalid("From", "URI has no user part")),
    }
}

/// Tag of the To header, if any.
pub fn to_tag<M: HeadersExt>(msg: &M) -> Result<Option<String>, FieldError> {
    let h = msg.to_header().map_err(|_| FieldError::Missing("To"))?;
    let to = h
        .typed()
        .map_err(|_| FieldError::invalid("To", h.value()))?;
    Ok(to.tag().map(|t| t.value().to_owned()))
}

/// Tag of the From header, if any.
pub fn from_tag<M: HeadersExt>(msg: &M) -> Result<Option<String>, FieldError> {
    let h = msg.from_header().map_err(|_| FieldError::Missing("From"))?;
    let from = h
        .typed()
        .map_err(|_| FieldError::invalid("From", h.value()))?;
    Ok(from.tag().map(|t| t.value().to_owned()))
}

/// `Contact: *` (RFC 3261 §10.2.2 remove-all bindings). rsip would parse it as a URI `*`.
pub fn is_wildcard_contact<M: HeadersExt>(msg: &M) -> bool {
    msg.contact_headers()
        .iter()
        .any(|c| c.value().trim() == "*")
}

/// URI of the first Contact, `None` when there is no Contact (or only `*`).
pub fn contact_uri<M: HeadersExt>(msg: &M) -> Result<Option<rsip::Uri>, FieldError> {
    let Some(c) = msg.contact_headers().into_iter().next() else {
        return Ok(None);
    };
    if c.value().trim() == "*" {
        return Ok(None);
    }
    let t = c
        .typed()
        .map_err(|_| FieldError::invalid("Contact", c.value()))?;
    Ok(Some(t.uri))
}

/// Expiry a REGISTER asks for: the first Contact's `;expires=` parameter, else the Expires
/// header (RFC 3261 §10.2.1.1), else `None` (registrar default applies).
pub fn expires_of_contact(req: &rsip::Request) -> Result<Option<u32>, FieldError> {
    if let Some(c) = req.contact_headers().into_iter().next() {
        if c.value().trim() != "*" {
            let t = c
                .typed()
                .map_err(|_| FieldError::invalid("Contact", c.value()))?;
            if let Some(e) = t.expires() {
                let v = e.value().trim();
                return v
                    .parse::<u32>()
                    .map(Some)
                    .map_err(|_| FieldError::invalid("Contact", format!("expires={v}")));
            }
        }
    }
    expires_header(req)
}

/// The Expires header in seconds, if present.
pub fn expires_header<M: HeadersExt>(msg: &M) -> Result<Option<u32>, FieldError> {
    match msg.expires_header() {
        None => Ok(None),
        Some(h) => h
            .value()
            .trim()
            .parse::<u32>()
            .map(Some)
            .map_err(|_| FieldError::invalid("Expires", h.value())),
    }
}

/// The Event header value without parameters (`talk`, `hold`, `presence`...).
pub fn event<M: HasHeaders>(msg: &M) -> Option<&str> {
    msg.headers().iter().find_map(|h| match h {
        rsip::Header::Event(e) => Some(e.value().split(';').next().unwrap_or("").trim()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_message;

    fn req(s: &str) -> rsip::Request {
        match parse_message(s.as_bytes()).unwrap() {
            rsip::SipMessage::Request(r) => r,
            rsip::SipMessage::Response(_) => panic!("expected a request"),
        }
    }

    const REG: &str = "REGISTER sip:198.51.100.10 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.20:5060;rport;branch=z9hG4bKabc;received=10.0.0.1\r\n\
From: <sip:1001@example.com>;tag=f1\r\n\
To: \"Agent\" <sip:1001@example.com>\r\n\
Call-ID: cid-1\r\n\
CSeq: 5 REGISTER\r\n\
Contact: <sip:1001@198.51.100.20>;expires=60\r\n\
Expires: 1800\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn reads_common_fields() {
        let r = req(REG);
        assert_eq!(dn_from_to_uri(&r).unwrap(), "1001");
        assert_eq!(from_user(&r).unwrap(), "1001");
        assert_eq!(call_id(&r).unwrap(), "cid-1");
        assert_eq!(cseq(&r).unwrap(), (5, rsip::Method::Register));
        assert_eq!(to_tag(&r).unwrap(), None);
        assert_eq!(from_tag(&r).unwrap().as_deref(), Some("f1"));
        assert_eq!(expires_of_contact(&r).unwrap(), Some(60));
        let v = top_via(&r).unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.sent_by, "198.51.100.20:5060");
        assert_eq!(v.branch, Some("z9hG4bKabc"));
        assert_eq!(v.received, Some("10.0.0.1"));
        assert_eq!(v.rport, Some(None));
        assert!(contact_uri(&r).unwrap().is_some());
    }

    #[test]
    fn expires_falls_back_to_header_then_none() {
        let r = req(&REG.replace(";expires=60", ""));
        assert_eq!(expires_of_contact(&r).unwrap(), Some(1800));
        let r = req(&REG
            .replace(";expires=60", "")
            .replace("Expires: 1800\r\n", ""));
        assert_eq!(expires_of_contact(&r).unwrap(), None);
        let r = req(&REG
            .replace("<sip:1001@198.51.100.20>;expires=60", "*")
            .replace("1800", "0"));
        assert!(is_wildcard_contact(&r));
        assert_eq!(expires_of_contact(&r).unwrap(), Some(0));
        assert_eq!(contact_uri(&r).unwrap(), None);
    }

    #[test]
    fn clear_errors() {
        let r = req(&REG.replace("Call-ID: cid-1\r\n", ""));
        assert_eq!(call_id(&r).unwrap_err(), FieldError::Missing("Call-ID"));
        let r = req(&REG
            .replace("Expires: 1800", "Expires: soon")
            .replace(";expires=60", ""));
        let e = expires_of_contact(&r).unwrap_err();
        assert!(
            matches!(
                e,
                FieldError::Invalid {
                    header: "Expires",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(e.reason(), "Invalid Expires");
        let r = req(&REG.replace("<sip:1001@example.com>\r\n", "<sip:example.com>\r\n"));
        assert!(matches!(
            dn_from_to_uri(&r).unwrap_err(),
            FieldError::Invalid { header: "To", .. }
        ));
        let r = req(&REG.replace("Via: SIP/2.0/UDP ", "Via: garbage"));
        assert!(matches!(
            top_via(&r).unwrap_err(),
            FieldError::Invalid { header: "Via", .. }
        ));
    }

    #[test]
    fn via_parser_shapes() {
        let v = parse_via("SIP/2.0/TCP [2001:db8::1]:5070 ;branch=z9hG4bK9 ; rport=5070").unwrap();
        assert_eq!(v.sent_by, "[2001:db8::1]:5070");
        assert_eq!(v.branch, Some("z9hG4bK9"));
        assert_eq!(v.rport, Some(Some("5070")));
        assert!(parse_via("SIP/2.0/UDP").is_none());
        assert!(parse_via("HTTP/1.1/UDP h").is_none());
        assert!(parse_via("").is_none());
    }
}
