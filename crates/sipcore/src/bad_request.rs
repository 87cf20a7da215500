//! Best-effort `400 Bad Request` for requests rsip could not parse.
//!
//! RFC 3261 §18.3/§21.4.1 wants a 400 for a malformed request, but a response can only reach the
//! sender if we can copy Via, From, To, Call-ID and CSeq. This works on the raw header lines
//! (after the same normalisation the parser uses), so a message rsip choked on for an unrelated
//! reason (odd URI, unknown header syntax) still gets an answer. When the bytes do not look
//! like a request with those headers, there is nobody sensible to answer: `None`.

use bytes::Bytes;

use crate::framing::find_head_end;
use crate::ids;
use crate::normalize::{expand_compact, normalize};

/// Builds a 400 for `raw` with `reason` as reason phrase (control characters dropped; empty →
/// "Bad Request"). `None` for responses, ACKs (never answered, RFC 3261 §17.2.1), start lines
/// that are not `METHOD SP URI SP SIP/2.0`, or when a needed header is missing or not text.
pub fn bad_request_response(raw: &[u8], reason: &str) -> Option<Bytes> {
    let start = raw.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let norm = normalize(&raw[start..]);
    let head = match find_head_end(&norm, 0) {
        Some(end) => &norm[..end],
        None => &norm[..], // truncated: use what we have
    };
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let method = request_method(lines.next()?)?;
    if method.eq_ignore_ascii_case(b"ACK") {
        return None;
    }

    let mut vias: Vec<&[u8]> = Vec::new();
    let (mut from, mut to, mut call_id, mut cseq) = (None, None, None, None);
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        let name: &[u8] = expand_compact(name).map_or(name, str::as_bytes);
        let value = line[colon + 1..].trim_ascii();
        if value.is_empty() || !is_text(value) {
            continue;
        }
        let slot = if name.eq_ignore_ascii_case(b"Via") {
            vias.push(value);
            continue;
        } else if name.eq_ignore_ascii_case(b"From") {
            &mut from
        } else if name.eq_ignore_ascii_case(b"To") {
            &mut to
        } else if name.eq_ignore_ascii_case(b"Call-ID") {
            &mut call_id
        } else if name.eq_ignore_ascii_case(b"CSeq") {
            &mut cseq
        } else {
            continue;
        };
        slot.get_or_insert(value);
    }
    if vias.is_empty() {
        return None;
    }
    let (from, to, call_id, cseq) = (from?, to?, call_id?, cseq?);

    let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
    let reason = match reason.trim() {
        "" => "Bad Request",
        r => r,
    };
    let mut out = Vec::with_capacity(256 + head.len());
    out.extend_from_slice(b"SIP/2.0 400 ");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for via in vias {
        header(&mut out, "Via", via);
    }
    header(&mut out, "From", from);
    header(&mut out, "To", to);
    if !has_tag(to) {
        out.truncate(out.len() - 2);
        out.extend_from_slice(b";tag=");
        out.extend_from_slice(ids::tag().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    header(&mut out, "Call-ID", call_id);
    header(&mut out, "CSeq", cseq);
    out.extend_from_slice(b"Server: drlab\r\nContent-Length: 0\r\n\r\n");
    Some(Bytes::from(out))
}

fn header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Method token of a `METHOD SP Request-URI SP SIP/2.0` line, or `None` (responses included).
fn request_method(line: &[u8]) -> Option<&[u8]> {
    let mut parts = line.split(|&b| b == b' ').filter(|p| !p.is_empty());
    let method = parts.next()?;
    let uri = parts.next()?;
    let version = parts.next()?;
    let token = |b: &u8| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(b);
    if parts.next().is_some()
        || !method.iter().all(token)
        || method.len() > 32
        || !uri.contains(&b':')
        || !version.eq_ignore_ascii_case(b"SIP/2.0")
    {
        return None;
    }
    Some(method)
}

/// Printable text (UTF-8, no control characters but tab): safe to echo back.
fn is_text(v: &[u8]) -> bool {
    std::str::from_utf8(v).is_ok_and(|s| s.chars().all(|c| c == '\t' || !c.is_control()))
}

/// Whether a To value already carries a `tag` parameter (outside `<...>` and quotes).
pub(crate) fn has_tag(to: &[u8]) -> bool {
    let params = match to.iter().rposition(|&b| b == b'>') {
        Some(gt) => &to[gt + 1..],
        None => to,
    };
    params.split(|&b| b == b';').skip(1).any(|p| {
        let name = p.split(|&b| b == b'=').next().unwrap_or(p).trim_ascii();
        name.eq_ignore_ascii_case(b"tag")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsip::prelude::*;

    const BAD: &str = "INVITE sip:1001@[bad-uri SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.20:5060;branch=z9hG4bK1, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK0\r\n\
f: <sip:a@b>;tag=9\r\n\
To: <sip:1001@b>\r\n\
i: abc@h\r\n\
CSeq: 7 INVITE\r\n\
l: 0\r\n\r\n";

    #[test]
    fn answers_with_copied_headers_and_to_tag() {
        let out = bad_request_response(BAD.as_bytes(), "Bad Request-URI").unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        assert!(
            text.starts_with("SIP/2.0 400 Bad Request-URI\r\n"),
            "{text}"
        );
        let resp = match crate::parse::parse_message(&out).unwrap() {
            rsip::SipMessage::Response(r) => r,
            _ => panic!("not a response"),
        };
        assert_eq!(resp.status_code.code(), 400);
        let vias: Vec<_> = resp
            .headers
            .iter()
            .filter(|h| matches!(h, rsip::Header::Via(_)))
            .collect();
        assert_eq!(vias.len(), 2);
        assert_eq!(resp.call_id_header().unwrap().value(), "abc@h");
        assert_eq!(resp.cseq_header().unwrap().value(), "7 INVITE");
        assert!(resp.to_header().unwrap().typed().unwrap().tag().is_some());
        assert!(resp.from_header().unwrap().value().ends_with(";tag=9"));
    }

    #[test]
    fn existing_to_tag_kept() {
        let raw = BAD.replace("To: <sip:1001@b>", "To: <sip:1001@b>;tag=abc");
        let out = bad_request_response(raw.as_bytes(), "").unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.contains("To: <sip:1001@b>;tag=abc\r\n"));
        assert!(text.starts_with("SIP/2.0 400 Bad Request\r\n"));
    }

    #[test]
    fn refuses_responses_acks_garbage_and_incomplete() {
        assert!(bad_request_response(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", "x").is_none());
        let ack = BAD
            .replace("INVITE sip", "ACK sip")
            .replace("7 INVITE", "7 ACK");
        assert!(bad_request_response(ack.as_bytes(), "x").is_none());
        assert!(bad_request_response(&[0xff, 0, 1, 2, b'\n'], "x").is_none());
        assert!(bad_request_response(b"", "x").is_none());
        let no_cseq = BAD.replace("CSeq: 7 INVITE\r\n", "");
        assert!(bad_request_response(no_cseq.as_bytes(), "x").is_none());
        let no_via = BAD.replace("Via: ", "X-Via: ");
        assert!(bad_request_response(no_via.as_bytes(), "x").is_none());
        assert!(bad_request_response(b"HELLO WORLD\r\n\r\n", "x").is_none());
    }

    #[test]
    fn truncated_request_and_reason_sanitised() {
        let cut = &BAD[..BAD.find("l: 0").unwrap()];
        let out = bad_request_response(cut.as_bytes(), "bad\r\nInjected: yes").unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with("SIP/2.0 400 badInjected: yes\r\n"));
        assert!(!text.contains("\r\nInjected"));
    }

    #[test]
    fn tag_detection() {
        assert!(has_tag(b"<sip:a@b>;tag=1"));
        assert!(has_tag(b"sip:a@b ; TAG = 1"));
        assert!(!has_tag(b"<sip:a@b;tag=1>"));
        assert!(!has_tag(b"<sip:a@b>;tagx=1"));
        assert!(!has_tag(b"\"x;tag=1\" <sip:a@b>"));
    }
}
