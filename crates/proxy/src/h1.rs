//! The HTTP/1.1 codec of the fast path ([`crate::fast`]): request and response heads parsed
//! with `httparse` straight from the connection buffers, the heads we send re-encoded as bytes
//! (no header map), and response body framing. Plain functions over byte slices, no I/O.
//!
//! Only the common case is handled here: a request this codec does not take (a chunked body,
//! `Expect`, an upgrade, HTTP/1.0, an absolute-form target, a malformed or oversized head) is
//! left to the general hyper path, which gives the same answer it always did.

use std::mem::MaybeUninit;

use httparse::{Header, ParserConfig, Status};

use crate::headers::{connection_named, is_hop_by_hop, tokens};

/// Header fields parsed per head; a head with more goes to the general path.
pub const MAX_HEADERS: usize = 64;

/// Room for the header fields of one head, left uninitialised (no memset per request).
pub type HeaderSlots<'b> = [MaybeUninit<Header<'b>>; MAX_HEADERS];

pub fn header_slots<'b>() -> HeaderSlots<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// A client request head the fast path can forward as it is.
pub struct RequestHead<'h, 'b> {
    /// Bytes of the head, blank line included.
    pub len: usize,
    /// Bytes of the body that follows the head (its `Content-Length`).
    pub body_len: u64,
    pub method: &'b str,
    pub target: &'b str,
    pub headers: &'h [Header<'b>],
    /// Whether the client keeps the connection open after the response (no `Connection: close`).
    pub keep_alive: bool,
}

impl RequestHead<'_, '_> {
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// `$cookie_NAME`: the first cookie of that name.
    pub fn cookie(&self, name: &str) -> Option<String> {
        request_cookie(field_values(self.headers, "cookie"), name)
    }
}

/// `$cookie_NAME`: the first cookie `name` in a request's `Cookie` field values. Byte-wise as
/// nginx's, so a field with other non-UTF-8 cookies in it still yields this one.
pub fn request_cookie<'a>(values: impl Iterator<Item = &'a [u8]>, name: &str) -> Option<String> {
    let value = values
        .flat_map(|v| v.split(|&b| b == b';'))
        .filter_map(|c| split_cookie(c.trim_ascii()))
        .find(|(n, _)| *n == name.as_bytes())?
        .1;
    cookie_value(value)
}

/// `$upstream_cookie_NAME`: the value of cookie `name` set by a response's `Set-Cookie` field
/// values, if any.
pub fn response_cookie<'a>(values: impl Iterator<Item = &'a [u8]>, name: &str) -> Option<String> {
    let value = values
        .filter_map(|v| v.split(|&b| b == b';').next())
        .filter_map(|c| split_cookie(c.trim_ascii()))
        .find(|(n, _)| *n == name.as_bytes())?
        .1;
    cookie_value(value)
}

/// `name=value` split at the first `=`.
fn split_cookie(c: &[u8]) -> Option<(&[u8], &[u8])> {
    let eq = c.iter().position(|&b| b == b'=')?;
    Some((&c[..eq], &c[eq + 1..]))
}

fn cookie_value(value: &[u8]) -> Option<String> {
    std::str::from_utf8(value.trim_ascii())
        .ok()
        .map(str::to_string)
}

/// The values of the fields called `name`.
fn field_values<'a>(headers: &'a [Header], name: &'a str) -> impl Iterator<Item = &'a [u8]> {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

pub enum Request<'h, 'b> {
    /// More bytes are needed.
    Partial,
    /// Not for the fast path: the general path takes the connection from here on.
    General,
    Ready(RequestHead<'h, 'b>),
}

/// Parses the request head at the start of `buf`.
pub fn parse_request<'h, 'b>(buf: &'b [u8], slots: &'h mut HeaderSlots<'b>) -> Request<'h, 'b> {
    let mut req = httparse::Request::new(&mut []);
    let len = match ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, slots)
    {
        Ok(Status::Complete(len)) => len,
        Ok(Status::Partial) => return Request::Partial,
        Err(_) => return Request::General,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Request::General;
    };
    let headers: &'h [Header<'b>] = req.headers;
    if !target.starts_with('/') {
        return Request::General;
    }
    let mut keep_alive = true;
    let mut body_len = None;
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            // One plain decimal length; lists, repeats and anything odd get hyper's answer.
            match (body_len, content_length(h.value)) {
                (None, Some(n)) => body_len = Some(n),
                _ => return Request::General,
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return Request::General;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in tokens(h.value) {
                if token.eq_ignore_ascii_case(b"upgrade") {
                    return Request::General;
                }
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                }
            }
        }
    }
    Request::Ready(RequestHead {
        len,
        body_len: body_len.unwrap_or(0),
        method,
        target,
        headers,
        keep_alive,
    })
}

/// A `Content-Length` value: 1 to 19 ASCII digits (so it fits a `u64`), nothing else.
fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Bytes of the request line's target and the header fields, as nginx counts them against
/// `large_client_header_buffers`.
pub fn nginx_head_len(head: &RequestHead) -> usize {
    head.target.len()
        + head
            .headers
            .iter()
            .map(|h| h.name.len() + h.value.len() + 4)
            .sum::<usize>()
}

/// Whether nginx refuses to replay the method once sent (`non_idempotent`).
pub fn is_non_idempotent(method: &str) -> bool {
    matches!(method, "POST" | "PATCH" | "LOCK")
}

/// Writes the request sent upstream: the client's head without its hop-by-hop fields, with
/// `X-Forwarded-For` extended by `client_ip`, then `body` (the whole of it, read before the
/// request goes out, as nginx buffers it) with its length, which is also given, as 0, where
/// the method normally has a body (what the general path sends too).
pub fn encode_request(out: &mut Vec<u8>, head: &RequestHead, client_ip: &[u8], body: &[u8]) {
    out.clear();
    for part in [head.method, " ", head.target, " HTTP/1.1\r\n"] {
        out.extend_from_slice(part.as_bytes());
    }
    let named = connection_named(field_values(head.headers, "connection"));
    let mut xff: Option<&[u8]> = None;
    for h in head.headers {
        if h.name.eq_ignore_ascii_case("x-forwarded-for") {
            xff.get_or_insert(h.value);
        } else if !h.name.eq_ignore_ascii_case("content-length") && !is_hop_by_hop(h.name, &named) {
            put_header(out, h.name.as_bytes(), h.value);
        }
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if let Some(prev) = xff {
        out.extend_from_slice(prev);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(client_ip);
    out.extend_from_slice(b"\r\n");
    if !body.is_empty() {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    } else if is_non_idempotent(head.method) || head.method == "PUT" {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// How the body of a response is delimited on the upstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes; sent on to the client chunked.
    Close,
}

/// An upstream response head.
pub struct ResponseHead<'h, 'b> {
    pub len: usize,
    pub code: u16,
    pub reason: &'b str,
    pub headers: &'h [Header<'b>],
    pub framing: Framing,
    /// Whether the connection can carry another request once this body is read.
    pub reusable: bool,
}

impl ResponseHead<'_, '_> {
    /// The value of cookie `name` set by the response (`$upstream_cookie_NAME`), if any.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        response_cookie(field_values(self.headers, "set-cookie"), name)
    }
}

pub enum Response<'h, 'b> {
    Partial,
    Invalid,
    /// An interim `1xx` head of this many bytes, to skip.
    Interim(usize),
    Ready(ResponseHead<'h, 'b>),
}

/// Parses the response head at the start of `buf`, the answer to a request that was a `HEAD`
/// when `head_request`.
pub fn parse_response<'h, 'b>(
    buf: &'b [u8],
    slots: &'h mut HeaderSlots<'b>,
    head_request: bool,
) -> Response<'h, 'b> {
    let mut resp = httparse::Response::new(&mut []);
    let len =
        match ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, slots) {
            Ok(Status::Complete(len)) => len,
            Ok(Status::Partial) => return Response::Partial,
            Err(_) => return Response::Invalid,
        };
    let (Some(version), Some(code)) = (resp.version, resp.code) else {
        return Response::Invalid;
    };
    // Only the fast path sends requests here, and none of them asks for an upgrade.
    if code == 101 {
        return Response::Invalid;
    }
    if (100..200).contains(&code) {
        return Response::Interim(len);
    }
    let headers: &'h [Header<'b>] = resp.headers;
    let mut reusable = version == 1;
    let mut length: Option<u64> = None;
    let mut chunked = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let Some(n) = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
            else {
                return Response::Invalid;
            };
            if length.is_some_and(|l| l != n) {
                return Response::Invalid;
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding decides; anything but chunked is read until close.
            chunked = Some(
                tokens(h.value)
                    .last()
                    .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked")),
            );
        } else if h.name.eq_ignore_ascii_case("connection")
            && tokens(h.value).any(|t| t.eq_ignore_ascii_case(b"close"))
        {
            reusable = false;
        }
    }
    let framing = if head_request || code == 204 || code == 304 {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::Close,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::Close,
        }
    };
    Response::Ready(ResponseHead {
        len,
        code,
        reason: resp.reason.unwrap_or(""),
        headers,
        framing,
        reusable: reusable && framing != Framing::Close,
    })
}

/// Writes the client's response head without its closing blank line (the caller may add
/// fields): the upstream's status and fields less the hop-by-hop ones, and `chunked` framing
/// when the upstream's body is chunked or runs until close.
pub fn encode_response(out: &mut Vec<u8>, head: &ResponseHead) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa3(head.code).as_slice());
    out.push(b' ');
    out.extend_from_slice(head.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let named = connection_named(field_values(head.headers, "connection"));
    for h in head.headers {
        if !is_hop_by_hop(h.name, &named) {
            put_header(out, h.name.as_bytes(), h.value);
        }
    }
    if matches!(head.framing, Framing::Chunked | Framing::Close) {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
}

pub fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn itoa3(code: u16) -> [u8; 3] {
    let c = code.min(999);
    [
        b'0' + (c / 100) as u8,
        b'0' + (c / 10 % 10) as u8,
        b'0' + (c % 10) as u8,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_byte_wise_as_nginx_finds_them() {
        let cookie = |fields: &[&[u8]], name| request_cookie(fields.iter().copied(), name);
        assert_eq!(
            cookie(&[b"a=1; JSESSIONID= s1 ; JSESSIONID=s2"], "JSESSIONID"),
            Some("s1".into())
        );
        assert_eq!(
            cookie(&[b"x=\xff", b"other=\xfe; JSESSIONID=s3"], "JSESSIONID"),
            Some("s3".into())
        );
        assert_eq!(cookie(&[b"JSESSIONIDX=1; noequals"], "JSESSIONID"), None);
        let set = |fields: &[&[u8]], name| response_cookie(fields.iter().copied(), name);
        assert_eq!(
            set(
                &[b"a=1; Path=/", b"JSESSIONID=s4; HttpOnly; JSESSIONID=x"],
                "JSESSIONID"
            ),
            Some("s4".into())
        );
        assert_eq!(set(&[b"Path=/; JSESSIONID=s5"], "JSESSIONID"), None);
    }

    fn request(raw: &str, f: impl FnOnce(Option<&RequestHead>)) {
        let mut slots = header_slots();
        match parse_request(raw.as_bytes(), &mut slots) {
            Request::Ready(h) => f(Some(&h)),
            _ => f(None),
        }
    }

    #[test]
    fn forwards_a_get_without_hop_by_hop_fields_and_with_xff() {
        let raw = "GET /a?b HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Secret\r\n\
                   X-Secret: 1\r\nKeep-Alive: 5\r\nX-Forwarded-For: 10.0.0.1\r\n\
                   Cookie: a=1; JSESSIONID=s1\r\n\r\n";
        request(raw, |h| {
            let h = h.expect("fast path");
            assert!(h.keep_alive);
            assert_eq!(h.len, raw.len());
            assert_eq!(h.cookie("JSESSIONID").as_deref(), Some("s1"));
            let mut out = Vec::new();
            encode_request(&mut out, h, b"127.0.0.1", b"");
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "GET /a?b HTTP/1.1\r\nHost: x\r\nCookie: a=1; JSESSIONID=s1\r\n\
                 x-forwarded-for: 10.0.0.1, 127.0.0.1\r\n\r\n"
            );
        });
    }

    #[test]
    fn leaves_chunked_bodies_upgrades_and_http10_to_the_general_path() {
        for raw in [
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
            "POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc",
            "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\n\r\n",
            "GARBAGE\r\n\r\n",
        ] {
            request(raw, |h| assert!(h.is_none(), "{raw}"));
        }
        let mut slots = header_slots();
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nHost:", &mut slots),
            Request::Partial
        ));
    }

    #[test]
    fn empty_post_gets_an_explicit_length_and_close_is_seen() {
        request(
            "POST /x HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            |h| {
                let h = h.expect("fast path");
                assert!(!h.keep_alive);
                let mut out = Vec::new();
                encode_request(&mut out, h, b"1.2.3.4", b"");
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    "POST /x HTTP/1.1\r\nx-forwarded-for: 1.2.3.4\r\ncontent-length: 0\r\n\r\n"
                );
            },
        );
    }

    #[test]
    fn a_body_goes_upstream_after_the_head_with_its_length() {
        let raw = "POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n{\"a\":1}GET";
        request(raw, |h| {
            let h = h.expect("fast path");
            assert_eq!((h.len, h.body_len), (raw.len() - 10, 7));
            let mut out = Vec::new();
            encode_request(&mut out, h, b"1.2.3.4", b"{\"a\":1}");
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "POST /api HTTP/1.1\r\nHost: x\r\nx-forwarded-for: 1.2.3.4\r\n\
                 content-length: 7\r\n\r\n{\"a\":1}"
            );
        });
    }

    fn response(raw: &str, head_request: bool) -> Option<(Framing, bool, String)> {
        let mut slots = header_slots();
        match parse_response(raw.as_bytes(), &mut slots, head_request) {
            Response::Ready(h) => {
                let mut out = Vec::new();
                encode_response(&mut out, &h);
                Some((h.framing, h.reusable, String::from_utf8(out).unwrap()))
            }
            _ => None,
        }
    }

    #[test]
    fn response_framing_and_reuse() {
        let r = response(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nKeep-Alive: x\r\n\r\nok\n",
            false,
        );
        assert_eq!(
            r,
            Some((
                Framing::Length(3),
                true,
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n".into()
            ))
        );
        let r = response(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!(
            r,
            Some((
                Framing::Chunked,
                true,
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n".into()
            ))
        );
        let r = response("HTTP/1.1 200 OK\r\n\r\n", false).unwrap();
        assert_eq!((r.0, r.1), (Framing::Close, false));
        let r = response(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!((r.0, r.1), (Framing::Length(1), false));
        let r = response("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true).unwrap();
        assert_eq!((r.0, r.1), (Framing::Empty, true));
        assert!(response("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_none());
        let mut slots = header_slots();
        assert!(matches!(
            parse_response(b"HTTP/1.1 100 Continue\r\n\r\n", &mut slots, false),
            Response::Interim(25)
        ));
    }
}
