//! One-line summaries of captured messages, one small pure function per protocol. They read
//! whatever bytes crossed the link, garbage included, and never panic: what they cannot make
//! sense of is summarised as such.

use serde_json::{Map, Value};

/// A message's one-line summary and its correlation key (a SIP Call-ID, a T-Lib ConnID).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub text: String,
    pub key: Option<String>,
}

impl Summary {
    fn text(text: impl Into<String>) -> Summary {
        Summary {
            text: text.into(),
            key: None,
        }
    }
}

/// Longest summary kept, in characters.
const MAX_SUMMARY: usize = 160;

/// `s` cut to at most `max` characters (an ellipsis marks the cut).
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The head of a text message (up to the blank line) as lines, lossily decoded.
fn head_lines(msg: &[u8]) -> Vec<String> {
    let end = find(msg, b"\r\n\r\n").unwrap_or(msg.len());
    String::from_utf8_lossy(&msg[..end])
        .split("\r\n")
        .map(str::to_owned)
        .collect()
}

/// The value of header `name` (or its compact form) in `lines`, case-insensitively.
fn header<'a>(lines: &'a [String], name: &str, compact: Option<&str>) -> Option<&'a str> {
    lines.iter().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        let n = n.trim();
        let hit =
            n.eq_ignore_ascii_case(name) || compact.is_some_and(|c| n.eq_ignore_ascii_case(c));
        hit.then(|| v.trim())
    })
}

/// Where `needle` first occurs in `hay`.
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A SIP message: `INVITE sip:8001@127.0.1.1 CSeq 1` or `200 OK CSeq 1 INVITE`; the Call-ID is the
/// key.
pub fn sip(msg: &[u8]) -> Summary {
    let lines = head_lines(msg);
    let first = lines.first().map(|l| l.trim()).unwrap_or("");
    if first.is_empty() {
        return Summary::text("(empty SIP message)");
    }
    let cseq = header(&lines, "CSeq", None);
    let call_id = header(&lines, "Call-ID", Some("i")).map(str::to_owned);
    let start = match first.strip_prefix("SIP/2.0 ") {
        Some(status) => status.to_owned(),
        None => first.strip_suffix(" SIP/2.0").unwrap_or(first).to_owned(),
    };
    let text = match (first.starts_with("SIP/2.0 "), cseq) {
        (_, None) => start,
        (false, Some(cseq)) => {
            // A request names its method already: the CSeq number is what is new.
            let number = cseq.split_whitespace().next().unwrap_or(cseq);
            format!("{start} CSeq {number}")
        }
        (true, Some(cseq)) => format!("{start} CSeq {cseq}"),
    };
    Summary {
        text: clip(&text, MAX_SUMMARY),
        key: call_id.map(|k| clip(&k, MAX_SUMMARY)),
    }
}

/// A JSON object frame, or why it is not one.
fn object(payload: &[u8]) -> Result<Map<String, Value>, Summary> {
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Summary::text("(frame is not a JSON object)")),
        Err(_) => Err(Summary::text(format!(
            "(frame of {} bytes is not JSON)",
            payload.len()
        ))),
    }
}

/// A string or number attribute, as text.
fn attr(map: &Map<String, Value>, key: &str) -> Option<String> {
    match map.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A T-Lib message: `EventRinging ConnID 00000000000000ff DN 8001`; the ConnID is the key.
fn tlib_object(map: &Map<String, Value>) -> Summary {
    let name = attr(map, "message").unwrap_or_else(|| "(no message name)".into());
    let conn_id = attr(map, "ConnID");
    let mut text = name;
    if let Some(c) = &conn_id {
        text.push_str(&format!(" ConnID {c}"));
    }
    if let Some(dn) = attr(map, "ThisDN") {
        text.push_str(&format!(" DN {dn}"));
    }
    Summary {
        text: clip(&text, MAX_SUMMARY),
        key: conn_id,
    }
}

/// The payload of a T-Lib frame (the JSON after the length prefix).
pub fn tlib(payload: &[u8]) -> Summary {
    match object(payload) {
        Ok(map) => tlib_object(&map),
        Err(s) => s,
    }
}

/// The payload of a TC-layer frame: its message type, and the T-Lib message it relays if any
/// (`Event EventRinging ConnID …`, `OwnershipClaim DN 7002`).
pub fn tc(payload: &[u8]) -> Summary {
    let map = match object(payload) {
        Ok(map) => map,
        Err(s) => return s,
    };
    let kind = attr(&map, "message").unwrap_or_else(|| "(no message type)".into());
    let inner = ["event", "request"]
        .iter()
        .find_map(|k| map.get(*k).and_then(Value::as_object));
    match inner {
        Some(inner) => {
            let relayed = tlib_object(inner);
            Summary {
                text: clip(&format!("{kind} {}", relayed.text), MAX_SUMMARY),
                key: relayed.key,
            }
        }
        None => {
            let mut text = kind;
            if let Some(dn) = attr(&map, "dn") {
                text.push_str(&format!(" DN {dn}"));
            }
            Summary::text(clip(&text, MAX_SUMMARY))
        }
    }
}

/// An HTTP request's `METHOD /path` (the query left out), None for anything else.
pub fn http_request_line(msg: &[u8]) -> Option<String> {
    let lines = head_lines(msg);
    let mut parts = lines.first()?.split_whitespace();
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if !version.starts_with("HTTP/") {
        return None;
    }
    let path = target.split('?').next().unwrap_or(target);
    Some(clip(&format!("{method} {path}"), MAX_SUMMARY))
}

/// An HTTP message with its (decoded) `body`. A request: `POST /api/v2/me`; a response: the
/// request it answers (when known) and the status, `POST /api/v2/me 200`. CometD messages are
/// named by their channel and count the events they carry: `/meta/connect 200 (2 events)`.
pub fn http(msg: &[u8], body: &[u8], answers: Option<&str>) -> Summary {
    let cometd = cometd(body);
    if let Some(request) = http_request_line(msg) {
        return Summary::text(match cometd {
            Some((channel, events)) => with_events(channel, events),
            None => request,
        });
    }
    let lines = head_lines(msg);
    let first = lines.first().map(String::as_str).unwrap_or("");
    let status = match first.strip_prefix("HTTP/") {
        Some(rest) => rest.split_whitespace().nth(1).unwrap_or("?").to_owned(),
        None => return Summary::text(format!("(not HTTP: {})", clip(first, 40))),
    };
    let text = match (cometd, answers) {
        (Some((channel, events)), _) => with_events(format!("{channel} {status}"), events),
        (None, Some(request)) => format!("{request} {status}"),
        (None, None) => status,
    };
    Summary::text(clip(&text, MAX_SUMMARY))
}

fn with_events(prefix: String, events: usize) -> String {
    match events {
        0 => prefix,
        1 => format!("{prefix} (1 event)"),
        n => format!("{prefix} ({n} events)"),
    }
}

/// A CometD body: the channel that names it (the first `/meta/` one, else the first) and how many
/// of its messages are events (not `/meta/`).
pub fn cometd(body: &[u8]) -> Option<(String, usize)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let messages = match &value {
        Value::Array(items) => items.iter().collect::<Vec<_>>(),
        Value::Object(_) => vec![&value],
        _ => return None,
    };
    let channels: Vec<&str> = messages
        .iter()
        .filter_map(|m| m.get("channel").and_then(Value::as_str))
        .collect();
    let name = channels
        .iter()
        .find(|c| c.starts_with("/meta/"))
        .or_else(|| channels.first())?;
    let events = channels.iter().filter(|c| !c.starts_with("/meta/")).count();
    Some((clip(name, MAX_SUMMARY), events))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_requests_and_responses() {
        let invite = b"INVITE sip:8001@127.0.1.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP x\r\n\
                       Call-ID: c1@h\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let s = sip(invite);
        assert_eq!(s.text, "INVITE sip:8001@127.0.1.1:5060 CSeq 1");
        assert_eq!(s.key.as_deref(), Some("c1@h"));
        let ok = b"SIP/2.0 200 OK\r\ni: c1@h\r\ncseq: 1 INVITE\r\n\r\n";
        let s = sip(ok);
        assert_eq!(s.text, "200 OK CSeq 1 INVITE");
        assert_eq!(s.key.as_deref(), Some("c1@h"));
    }

    #[test]
    fn tlib_and_tc_frames() {
        let s = tlib(br#"{"message":"EventRinging","ConnID":"00000000000000ff","ThisDN":"8001"}"#);
        assert_eq!(s.text, "EventRinging ConnID 00000000000000ff DN 8001");
        assert_eq!(s.key.as_deref(), Some("00000000000000ff"));
        let s = tc(
            br#"{"message":"Event","client":3,"event":{"message":"EventReleased","ConnID":"a"}}"#,
        );
        assert_eq!(s.text, "Event EventReleased ConnID a");
        assert_eq!(tc(br#"{"message":"TcHello","node":"ss1"}"#).text, "TcHello");
        assert_eq!(
            tc(br#"{"message":"Owner","dn":"7002"}"#).text,
            "Owner DN 7002"
        );
    }

    #[test]
    fn http_with_and_without_cometd() {
        let req = b"POST /api/v2/me?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(http(req, b"{}", None).text, "POST /api/v2/me");
        assert_eq!(http_request_line(req).as_deref(), Some("POST /api/v2/me"));
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            http(resp, b"", Some("POST /api/v2/me")).text,
            "POST /api/v2/me 200"
        );
        assert_eq!(http(resp, b"", None).text, "200");
        let body = br#"[{"channel":"/v2/me/calls","data":{}},{"channel":"/meta/connect","successful":true},{"channel":"/v2/me/devices"}]"#;
        assert_eq!(http(resp, body, None).text, "/meta/connect 200 (2 events)");
        let connect = br#"[{"channel":"/meta/connect","clientId":"1"}]"#;
        assert_eq!(http(req, connect, None).text, "/meta/connect");
    }

    #[test]
    fn garbage_never_panics() {
        let samples: [&[u8]; 8] = [
            b"",
            b"\xff\xfe\x00",
            b"SIP/2.0",
            b"\r\n\r\n",
            b"{\"message\":",
            b"[1,2,3]",
            b"HTTP/1.1",
            "INVITE \u{00e9}\u{00e9}\u{00e9} SIP/2.0\r\nCSeq:\r\n\r\n".as_bytes(),
        ];
        for s in samples {
            let _ = (sip(s), tlib(s), tc(s), http(s, s, Some("GET /")), cometd(s));
            let _ = http_request_line(s);
        }
        assert_eq!(tlib(b"[1]").text, "(frame is not a JSON object)");
        assert!(sip(&[b'x'; 1000]).text.chars().count() <= MAX_SUMMARY);
        assert_eq!(clip("ééé", 2), "é…");
    }
}
