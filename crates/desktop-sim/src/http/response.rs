//! Reading an HTTP/1.1 answer out of the bytes received so far: the head (status, how the body
//! is framed, whether the connection stays open, and the few headers a desktop keeps — cookies
//! and the CSRF token), then the body once it is complete. Pure: the socket is in
//! [`super::link`], which calls these again as more bytes arrive.

use std::borrow::Cow;

/// Longest head accepted.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Headers accepted per answer.
const MAX_HEADERS: usize = 32;
/// GWS hands the CSRF token out in this header…
const CSRF_TOKEN: &str = "X-CSRF-TOKEN";
/// …and may name the header a POST must echo it in with this one.
const CSRF_HEADER: &str = "X-CSRF-HEADER";

/// How the body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Length(usize),
    Chunked,
    /// No length: the body is everything until the server closes.
    UntilClose,
}

/// The head of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Bytes taken by the head (status line, headers, blank line).
    pub len: usize,
    pub framing: Framing,
    /// The connection may carry another request.
    pub keep_alive: bool,
    /// Every `Set-Cookie` value, in order.
    pub set_cookies: Vec<String>,
    /// `(header name, token)` when the answer hands out a CSRF token.
    pub csrf: Option<(String, String)>,
}

/// Parses the head at the start of `buf`: `Ok(None)` until all of it has arrived.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(format!("answer head larger than {MAX_HEAD_BYTES} bytes"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("malformed answer: {e}")),
    };
    let status = parsed.code.unwrap_or(0);
    let mut keep_alive = parsed.version == Some(1);
    let mut length = None;
    let mut chunked = false;
    let mut set_cookies = Vec::new();
    let (mut csrf_name, mut csrf_token) = (None, None);
    for h in parsed.headers.iter() {
        let text = || std::str::from_utf8(h.value).map(str::trim);
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = text().ok().and_then(|t| t.parse::<usize>().ok());
            length = Some(n.ok_or("malformed Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = text().is_ok_and(|t| t.eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            let t = text().unwrap_or("");
            keep_alive = if t.eq_ignore_ascii_case("close") {
                false
            } else {
                keep_alive || t.eq_ignore_ascii_case("keep-alive")
            };
        } else if name.eq_ignore_ascii_case("set-cookie") {
            if let Ok(t) = text() {
                set_cookies.push(t.to_owned());
            }
        } else if name.eq_ignore_ascii_case(CSRF_TOKEN) {
            csrf_token = text().ok().map(str::to_owned);
        } else if name.eq_ignore_ascii_case(CSRF_HEADER) {
            csrf_name = text().ok().map(str::to_owned);
        }
    }
    let framing = if matches!(status, 100..=199 | 204 | 304) {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        keep_alive = false;
        Framing::UntilClose
    };
    let csrf = csrf_token.map(|t| (csrf_name.unwrap_or_else(|| CSRF_TOKEN.to_owned()), t));
    Ok(Some(Head {
        status,
        len,
        framing,
        keep_alive,
        set_cookies,
        csrf,
    }))
}

/// A complete body.
#[derive(Debug, PartialEq, Eq)]
pub struct Body<'a> {
    pub bytes: Cow<'a, [u8]>,
    /// Bytes of `rest` it took (with chunk framing).
    pub used: usize,
}

/// The complete body in `rest` (the bytes after the head) and the bytes it took, or `Ok(None)`
/// until it has all arrived. `closed`: the server has closed (ends an [`Framing::UntilClose`]
/// body). Bodies over `max` bytes are refused.
pub fn body(
    framing: Framing,
    rest: &[u8],
    closed: bool,
    max: usize,
) -> Result<Option<Body<'_>>, String> {
    let too_big = || format!("answer body larger than {max} bytes");
    match framing {
        Framing::Length(n) if n > max => Err(too_big()),
        Framing::Length(n) if rest.len() >= n => Ok(Some(Body {
            bytes: Cow::Borrowed(&rest[..n]),
            used: n,
        })),
        Framing::Length(_) => Ok(None),
        Framing::UntilClose if rest.len() > max => Err(too_big()),
        Framing::UntilClose => Ok(closed.then_some(Body {
            bytes: Cow::Borrowed(rest),
            used: rest.len(),
        })),
        Framing::Chunked => dechunk(rest, max),
    }
}

/// Joins the chunks of a chunked body (trailers are skipped).
fn dechunk(rest: &[u8], max: usize) -> Result<Option<Body<'_>>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let (start, size) = match httparse::parse_chunk_size(&rest[at..]) {
            Ok(httparse::Status::Complete((start, size))) => (at + start, size),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err("malformed chunk size".into()),
        };
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > max.saturating_sub(out.len()) {
            return Err(format!("answer body larger than {max} bytes"));
        }
        if size == 0 {
            // The trailer section ends with an empty line.
            return Ok(find_blank_line(&rest[start..]).map(|end| Body {
                bytes: Cow::Owned(out),
                used: start + end,
            }));
        }
        let end = start + size;
        if rest.len() < end + 2 {
            return Ok(None);
        }
        if &rest[end..end + 2] != b"\r\n" {
            return Err("malformed chunk".into());
        }
        out.extend_from_slice(&rest[start..end]);
        at = end + 2;
    }
}

/// The length up to and including the first empty line (`\r\n` at the start, or `\r\n\r\n`).
fn find_blank_line(buf: &[u8]) -> Option<usize> {
    if buf.starts_with(b"\r\n") {
        return Some(2);
    }
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1024;

    #[test]
    fn a_head_gives_status_framing_cookies_and_csrf() {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
            Set-Cookie: JSESSIONID=s1; Path=/\r\nset-cookie: srv=a\r\n\
            X-CSRF-HEADER: X-CSRF-TOKEN\r\nX-CSRF-TOKEN: t1\r\nContent-Length: 2\r\n\r\n{}";
        for cut in 0..answer.len() - 2 {
            assert_eq!(parse_head(&answer[..cut]), Ok(None), "partial at {cut}");
        }
        let head = parse_head(answer).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.len, answer.len() - 2);
        assert_eq!(head.framing, Framing::Length(2));
        assert!(head.keep_alive);
        assert_eq!(head.set_cookies, ["JSESSIONID=s1; Path=/", "srv=a"]);
        assert_eq!(head.csrf, Some(("X-CSRF-TOKEN".into(), "t1".into())));
        let rest = &answer[head.len..];
        assert_eq!(body(head.framing, &rest[..1], false, MAX), Ok(None));
        let b = body(head.framing, rest, false, MAX).unwrap().unwrap();
        assert_eq!((&*b.bytes, b.used), (&b"{}"[..], 2));
    }

    #[test]
    fn connection_close_and_missing_length_end_keep_alive() {
        let h = |t: &[u8]| parse_head(t).unwrap().unwrap();
        let close =
            h(b"HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        assert!(!close.keep_alive);
        let eof = h(b"HTTP/1.1 200 OK\r\n\r\nabc");
        assert_eq!((eof.framing, eof.keep_alive), (Framing::UntilClose, false));
        assert_eq!(body(eof.framing, b"abc", false, MAX), Ok(None));
        let b = body(eof.framing, b"abc", true, MAX).unwrap().unwrap();
        assert_eq!(&*b.bytes, b"abc");
        let old = h(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(!old.keep_alive);
        let old_kept = h(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n");
        assert!(old_kept.keep_alive);
        assert_eq!(
            h(b"HTTP/1.1 204 No Content\r\n\r\n").framing,
            Framing::Length(0)
        );
    }

    #[test]
    fn chunked_bodies_are_joined() {
        let rest = b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\nNEXT";
        let full = rest.len() - 4;
        for cut in 0..full {
            assert_eq!(
                body(Framing::Chunked, &rest[..cut], false, MAX),
                Ok(None),
                "{cut}"
            );
        }
        let b = body(Framing::Chunked, rest, false, MAX).unwrap().unwrap();
        assert_eq!((&*b.bytes, b.used), (&b"abcde"[..], full));
        let trailer = b"1\r\na\r\n0\r\nX-T: 1\r\n\r\n";
        let b = body(Framing::Chunked, trailer, false, MAX)
            .unwrap()
            .unwrap();
        assert_eq!((&*b.bytes, b.used), (&b"a"[..], trailer.len()));
    }

    #[test]
    fn garbage_and_oversize_are_refused() {
        assert!(parse_head(b"NOT HTTP\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        let long = [b'a'; MAX_HEAD_BYTES + 1];
        let mut head = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        head.extend_from_slice(&long);
        assert!(parse_head(&head).is_err());
        let many: String = (0..40).map(|i| format!("X-{i}: v\r\n")).collect();
        assert!(parse_head(format!("HTTP/1.1 200 OK\r\n{many}\r\n").as_bytes()).is_err());
        assert!(body(Framing::Length(MAX + 1), b"", false, MAX).is_err());
        assert!(body(Framing::UntilClose, &[0; MAX + 1], false, MAX).is_err());
        assert!(body(Framing::Chunked, b"zz\r\n", false, MAX).is_err());
        assert!(body(Framing::Chunked, b"ffffffff\r\n", false, MAX).is_err());
        assert!(body(Framing::Chunked, b"1\r\nabc", false, MAX).is_err());
    }
}
