//! A registrar's response to our REGISTER, read straight from the datagram: the status code and
//! the few headers a phone acts on. A swarm gets tens of thousands of these in a storm, and a
//! full parse (normalisation, an rsip message with every header owned) cost more than the rest
//! of the phone's work. Anything this reader is not sure about — compact or folded forms it does
//! not handle, a header it cannot read — makes it return `None`, and the message takes the full
//! parser's path like any other (same answers, only slower).

/// What the phone needs from a final or provisional response to its REGISTER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisterReply<'a> {
    pub code: u16,
    /// The top Via's `branch` (it names the phone and the REGISTER, see `engine.rs`).
    pub branch: &'a str,
    pub call_id: &'a str,
    pub cseq: u32,
    /// The expiry granted: the first Contact's `expires` parameter, else the `Expires` header.
    pub granted: Option<u32>,
    /// A 423's `Min-Expires`.
    pub min_expires: Option<u32>,
}

/// Headers a registrar's response carries at most (bounds the loop on hostile input).
const MAX_HEADERS: usize = 64;

/// Reads a response to a REGISTER; `None` for anything else (requests, other methods) and for
/// whatever this reader does not handle.
pub fn parse(datagram: &[u8]) -> Option<RegisterReply<'_>> {
    let text = std::str::from_utf8(datagram).ok()?;
    let rest = text.strip_prefix("SIP/2.0 ")?;
    let code: u16 = rest.get(..3)?.parse().ok()?;
    if !(100..=699).contains(&code) {
        return None;
    }
    let (_status_line, mut rest) = split_at_byte(text, b'\n')?;
    let (mut branch, mut call_id, mut cseq) = (None, None, None);
    let (mut contact_expires, mut expires, mut min_expires) = (None, None, None);
    for i in 0.. {
        // Every line must end in CRLF: a bare LF is for the full parser, which normalises it.
        let (line, tail) = split_at_byte(rest, b'\n')?;
        let line = line.strip_suffix('\r')?;
        rest = tail;
        if line.is_empty() {
            break; // the end of the header section
        }
        if i >= MAX_HEADERS || line.starts_with([' ', '\t']) {
            return None; // folded (obsolete line folding): the full parser unfolds it
        }
        let (name, value) = split_at_byte(line, b':')?;
        let (name, value) = (name.trim_end(), value.trim());
        let is = |long: &str, short: &str| {
            name.eq_ignore_ascii_case(long)
                || (!short.is_empty() && name.eq_ignore_ascii_case(short))
        };
        if is("via", "v") {
            // Only the top Via: the first header's first value.
            if branch.is_none() {
                let top = split_at_byte(value, b',').map_or(value, |(first, _)| first);
                branch = Some(param(split_at_byte(top, b';')?.1, "branch")?);
            }
        } else if is("call-id", "i") {
            call_id = Some(value);
        } else if is("cseq", "") {
            let (number, method) = value.split_once([' ', '\t'])?;
            if !method.trim().eq_ignore_ascii_case("REGISTER") {
                return None;
            }
            cseq = Some(number.parse::<u32>().ok()?);
        } else if is("contact", "m") {
            // The first Contact value carrying `expires` wins, as with the full parser.
            if contact_expires.is_none() {
                contact_expires = contact_values(value)?
                    .into_iter()
                    .flatten()
                    .find_map(|params| param(params, "expires")?.parse().ok());
            }
        } else if is("expires", "") {
            expires = value.parse().ok();
        } else if is("min-expires", "") {
            min_expires = value.parse().ok();
        }
    }
    Some(RegisterReply {
        code,
        branch: branch?,
        call_id: call_id?,
        cseq: cseq?,
        granted: contact_expires.or(expires),
        min_expires,
    })
}

/// The parameter part of each value of a Contact header (after `>`, or after the URI when there
/// are no angle brackets); `None` when quoting makes the commas ambiguous.
fn contact_values(value: &str) -> Option<[Option<&str>; 8]> {
    if value.bytes().any(|b| b == b'"') {
        return None; // a display name may hold commas: leave it to the full parser
    }
    let mut out = [None; 8];
    let mut rest = value;
    for slot in out.iter_mut() {
        let (one, tail) = split_value(rest);
        *slot = Some(if one.bytes().any(|b| b == b'<') {
            split_at_byte(one, b'>')?.1
        } else {
            split_at_byte(one, b';').map_or("", |(_, p)| p)
        });
        match tail {
            Some(t) => rest = t,
            None => return Some(out),
        }
    }
    None // more values than we look at
}

/// The first value of a comma-separated header and what follows, ignoring commas inside `<>`.
fn split_value(value: &str) -> (&str, Option<&str>) {
    let mut depth = 0u32;
    for (i, b) in value.bytes().enumerate() {
        match b {
            b'<' => depth += 1,
            b'>' => depth = depth.saturating_sub(1),
            // ASCII, so `i` is a char boundary.
            b',' if depth == 0 => return (&value[..i], Some(&value[i + 1..])),
            _ => {}
        }
    }
    (value, None)
}

/// `s` cut at the first `byte` (ASCII, so a char boundary), without it. A plain loop: on the
/// short lines of a header section it costs less than the general search `split_once` does.
fn split_at_byte(s: &str, byte: u8) -> Option<(&str, &str)> {
    let i = s.bytes().position(|b| b == byte)?;
    Some((&s[..i], &s[i + 1..]))
}

/// The value of `;name=value` in a parameter list such as `transport=udp;expires=60`.
fn param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = Some(params);
    while let Some(list) = rest {
        let (one, tail) = split_at_byte(list, b';').map_or((list, None), |(a, b)| (a, Some(b)));
        rest = tail;
        if let Some((k, v)) = split_at_byte(one, b'=') {
            if k.trim().eq_ignore_ascii_case(name) {
                return Some(v.trim().trim_matches('"'));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(text: &str) -> (u16, Option<u32>, Option<u32>) {
        match sipcore::parse_message(text.as_bytes()) {
            Ok(sipcore::rsip::SipMessage::Response(r)) => (
                r.status_code.code(),
                crate::dialog::granted_expires(&r),
                crate::dialog::min_expires(&r),
            ),
            other => panic!("{other:?}"),
        }
    }

    const OK: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 127.0.7.9:40000;branch=z9hG4bKab12.7.3;rport=40000;received=127.0.7.9\r\n\
From: <sip:7001@127.0.7.1>;tag=cid\r\n\
To: <sip:7001@127.0.7.1>;tag=x1\r\n\
Call-ID: ab12-7\r\n\
CSeq: 3 REGISTER\r\n\
Contact: <sip:7001@127.0.7.9:40000>;expires=1800\r\n\
Expires: 3600\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn reads_a_registrar_200_like_the_full_parser() {
        let r = parse(OK.as_bytes()).unwrap();
        assert_eq!(
            r,
            RegisterReply {
                code: 200,
                branch: "z9hG4bKab12.7.3",
                call_id: "ab12-7",
                cseq: 3,
                granted: Some(1800),
                min_expires: None,
            }
        );
        assert_eq!(full(OK), (200, Some(1800), None));
    }

    #[test]
    fn header_forms_and_fallbacks_agree_with_the_full_parser() {
        let cases = [
            // Expires header only; compact names; odd case.
            OK.replace("Contact: <sip:7001@127.0.7.9:40000>;expires=1800\r\n", "m: <sip:7001@127.0.7.9:40000>\r\n")
                .replace("Via:", "v:")
                .replace("Call-ID:", "i:")
                .replace("CSeq:", "cseq:"),
            // Two bindings of the AOR: the first with expires wins.
            OK.replace(
                "Contact: <sip:7001@127.0.7.9:40000>;expires=1800",
                "Contact: <sip:7001@10.0.0.1:5060;transport=tcp>;q=0.5, <sip:7001@127.0.7.9:40000>;expires=90",
            ),
            // 423 with Min-Expires.
            OK.replace("200 OK", "423 Interval Too Brief")
                .replace("Expires: 3600\r\n", "Min-Expires: 120\r\n")
                .replace("Contact: <sip:7001@127.0.7.9:40000>;expires=1800\r\n", ""),
            // 503 with Retry-After and a body-less Warning.
            OK.replace("200 OK", "503 Service Unavailable")
                .replace("Expires: 3600\r\n", "Retry-After: 5\r\nWarning: 399 ss1 \"down\"\r\n"),
        ];
        for text in &cases {
            let r = parse(text.as_bytes()).unwrap_or_else(|| panic!("{text}"));
            assert_eq!((r.code, r.granted, r.min_expires), full(text), "{text}");
        }
        assert_eq!(parse(cases[1].as_bytes()).unwrap().granted, Some(90));
        assert_eq!(parse(cases[2].as_bytes()).unwrap().min_expires, Some(120));
    }

    #[test]
    fn leaves_what_it_does_not_handle_to_the_full_parser() {
        let folded = OK.replace("CSeq: 3 REGISTER", "CSeq:\r\n 3 REGISTER");
        let quoted = OK.replace("Contact: <", "Contact: \"A, B\" <");
        let invite = OK.replace("3 REGISTER", "3 INVITE");
        let request = "REGISTER sip:x SIP/2.0\r\n\r\n";
        for text in [
            &folded,
            &quoted,
            &invite,
            request,
            "SIP/2.0 2xx OK\r\n\r\n",
            "SIP/2.0 200 OK\r\n",
        ] {
            assert_eq!(parse(text.as_bytes()), None, "{text}");
        }
        assert_eq!(parse(&[0xff, 0xfe]), None);
        let no_branch = OK.replace(";branch=z9hG4bKab12.7.3", "");
        assert_eq!(parse(no_branch.as_bytes()), None);
    }
}
