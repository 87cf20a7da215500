//! Pre-pass over raw SIP bytes that turns what real peers send into what `rsip` 0.4 accepts.
//!
//! rsip 0.4 only understands one narrow dialect of SIP: CRLF line endings,
//! long header names, one value per Contact line, no header folding. Peers are less tidy:
//! FreeSWITCH sends compact names (`l:`, `k:`), some stacks fold long headers or send several
//! contacts on one line, test tools hand-write bare-LF messages. Rather than patching rsip we
//! rewrite the *header section* into the dialect rsip parses and leave the body untouched.
//!
//! The common case (SIPp, our own builders) needs no rewrite at all, so the pass is a single read
//! -only scan that returns the input borrowed; only a message that really needs fixing pays for a
//! copy. This matters on the REGISTER hot path (>12k/s per node).

use std::borrow::Cow;

/// Compact header forms (RFC 3261 §7.3.3 and the IANA registry) and their long names.
const COMPACT: &[(u8, &str)] = &[
    (b'a', "Accept-Contact"),
    (b'b', "Referred-By"),
    (b'c', "Content-Type"),
    (b'd', "Request-Disposition"),
    (b'e', "Content-Encoding"),
    (b'f', "From"),
    (b'i', "Call-ID"),
    (b'j', "Reject-Contact"),
    (b'k', "Supported"),
    (b'l', "Content-Length"),
    (b'm', "Contact"),
    (b'n', "Identity-Info"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b's', "Subject"),
    (b't', "To"),
    (b'u', "Allow-Events"),
    (b'v', "Via"),
    (b'x', "Session-Expires"),
    (b'y', "Identity"),
];

/// Long header name for a one-letter compact name, if it is one.
pub fn expand_compact(name: &[u8]) -> Option<&'static str> {
    match name {
        [c] => {
            let c = c.to_ascii_lowercase();
            COMPACT.iter().find(|(k, _)| *k == c).map(|(_, v)| *v)
        }
        _ => None,
    }
}

/// One physical line of the header section.
#[derive(Clone, Copy)]
struct Line<'a> {
    /// Line content without its terminator.
    text: &'a [u8],
    /// `true` when the line ended in a bare `\n` (or did not end at all).
    bare: bool,
}

/// Iterates the physical lines of the start line + header section, stopping after the blank line.
struct HeadLines<'a> {
    buf: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> HeadLines<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            done: false,
        }
    }

    /// Offset of the first byte after the blank line (the body), once iteration reached it.
    fn body_start(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for HeadLines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        if self.done || self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let line = match rest.iter().position(|&b| b == b'\n') {
            Some(nl) => {
                self.pos += nl + 1;
                let (text, bare) = match rest[..nl].strip_suffix(b"\r") {
                    Some(t) => (t, false),
                    None => (&rest[..nl], true),
                };
                Line { text, bare }
            }
            None => {
                // Unterminated last line: a truncated message. Report it as is, the parser fails.
                self.pos = self.buf.len();
                Line {
                    text: rest,
                    bare: false,
                }
            }
        };
        if line.text.is_empty() {
            self.done = true;
        }
        Some(line)
    }
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_ws(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_ws(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_ws(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Splits a header line into (name, value) at the first colon; both trimmed.
fn split_header(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    Some((trim_ws(&line[..colon]), trim_ws(&line[colon + 1..])))
}

/// Headers whose comma-separated values we split into one line each, because rsip's typed
/// parsers reject a list on one line ("left trailing input").
fn is_split_header(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"Contact") || name.eq_ignore_ascii_case(b"Via")
}

/// Offsets of the commas that separate list elements: not inside a quoted string (with `\`
/// escapes) nor inside `<...>`, where URIs may legally contain commas.
fn top_level_commas(value: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut in_quote = false;
    let mut escaped = false;
    let mut in_angle = false;
    value.iter().enumerate().filter_map(move |(i, &b)| {
        if in_quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quote = false;
            }
            return None;
        }
        match b {
            b'"' => in_quote = true,
            b'<' => in_angle = true,
            b'>' => in_angle = false,
            b',' if !in_angle => return Some(i),
            _ => {}
        }
        None
    })
}

/// Does this (clean, unfolded) header line need rewriting?
fn header_needs_rewrite(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false; // not a header: leave it to the parser to reject
    };
    let raw_name = &line[..colon];
    // rsip wants `Name:` with no whitespace before the colon (RFC 3261 allows it).
    if raw_name.last().is_some_and(|&b| is_ws(b)) {
        return true;
    }
    if expand_compact(raw_name).is_some() {
        return true;
    }
    is_split_header(raw_name) && top_level_commas(&line[colon + 1..]).next().is_some()
}

/// Normalises the start line and header section of one SIP message for rsip:
///
/// * bare-LF line endings become CRLF (header section only; the body is opaque),
/// * folded header lines (continuation starting with SP/HTAB) are joined with one space,
/// * compact header names are expanded (`l:` → `Content-Length:` …),
/// * `Contact`/`Via` lines carrying several comma-separated values become one line per value
///   (commas inside quotes or `<...>` do not split; `Contact: *` is left alone).
///
/// Returns the input borrowed when nothing needs rewriting, which is the common case.
/// Never fails: input it cannot make sense of is passed through for the parser to reject.
pub fn normalize(input: &[u8]) -> Cow<'_, [u8]> {
    let mut lines = HeadLines::new(input);
    let mut dirty = false;
    for (idx, line) in lines.by_ref().enumerate() {
        if line.bare {
            dirty = true;
            break;
        }
        if idx == 0 || line.text.is_empty() {
            continue;
        }
        if line.text.first().is_some_and(|&b| is_ws(b)) || header_needs_rewrite(line.text) {
            dirty = true;
            break;
        }
    }
    if !dirty {
        return Cow::Borrowed(input);
    }
    Cow::Owned(rewrite(input))
}

fn rewrite(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + 64);
    let mut lines = HeadLines::new(input);
    let mut saw_blank = false;
    // The logical header being assembled: first physical line plus continuation lines.
    let mut pending: Option<Vec<u8>> = None;
    let mut pending_line: Option<&[u8]> = None;

    let flush = |out: &mut Vec<u8>, line: Option<&[u8]>, folded: &mut Option<Vec<u8>>| {
        if let Some(buf) = folded.take() {
            emit_header(out, &buf);
        } else if let Some(line) = line {
            emit_header(out, line);
        }
    };

    for (idx, line) in lines.by_ref().enumerate() {
        if idx == 0 {
            out.extend_from_slice(line.text);
            out.extend_from_slice(b"\r\n");
            if line.text.is_empty() {
                saw_blank = true;
            }
            continue;
        }
        if line.text.is_empty() {
            flush(&mut out, pending_line.take(), &mut pending);
            out.extend_from_slice(b"\r\n");
            saw_blank = true;
            break;
        }
        if line.text.first().is_some_and(|&b| is_ws(b)) {
            let cont = trim_ws(line.text);
            match (&mut pending, pending_line) {
                (Some(buf), _) => {
                    buf.push(b' ');
                    buf.extend_from_slice(cont);
                }
                (None, Some(first)) => {
                    let mut buf = Vec::with_capacity(first.len() + cont.len() + 1);
                    buf.extend_from_slice(trim_trailing(first));
                    buf.push(b' ');
                    buf.extend_from_slice(cont);
                    pending = Some(buf);
                }
                (None, None) => {
                    // Continuation with nothing to continue: keep it for the parser to reject.
                    out.extend_from_slice(line.text);
                    out.extend_from_slice(b"\r\n");
                }
            }
            continue;
        }
        flush(&mut out, pending_line.take(), &mut pending);
        pending_line = Some(line.text);
    }
    if !saw_blank {
        // Truncated header section: emit what we have without inventing a blank line.
        flush(&mut out, pending_line.take(), &mut pending);
    }
    let body_start = lines.body_start();
    if saw_blank {
        out.extend_from_slice(&input[body_start..]);
    } else if !out.is_empty() && !input.ends_with(b"\n") {
        // The last line was unterminated: do not add a terminator the sender did not send.
        out.truncate(out.len() - 2);
    }
    out
}

fn trim_trailing(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., last] = s {
        if is_ws(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Writes one logical header line (without terminator in `line`) in rsip's dialect.
fn emit_header(out: &mut Vec<u8>, line: &[u8]) {
    let Some((name, value)) = split_header(line) else {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        return;
    };
    let name: &[u8] = expand_compact(name).map_or(name, str::as_bytes);
    if is_split_header(name) {
        let mut start = 0;
        let mut any = false;
        let commas: Vec<usize> = top_level_commas(value).collect();
        for end in commas.into_iter().chain(std::iter::once(value.len())) {
            let part = trim_ws(&value[start..end]);
            start = end + 1;
            if part.is_empty() {
                continue;
            }
            any = true;
            push_line(out, name, part);
        }
        if !any {
            push_line(out, name, value);
        }
    } else {
        push_line(out, name, value);
    }
}

fn push_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        String::from_utf8(normalize(s.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn clean_message_is_borrowed() {
        let msg = b"REGISTER sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h:5060;branch=z9hG4bK1\r\nContact: <sip:a@b>\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(normalize(msg), Cow::Borrowed(_)));
    }

    #[test]
    fn body_with_bare_lf_and_commas_is_not_touched() {
        let msg = "INVITE sip:a SIP/2.0\r\nContent-Length: 12\r\n\r\nv=0\nm: a, b\n";
        assert!(matches!(normalize(msg.as_bytes()), Cow::Borrowed(_)));
        let lf = "INVITE sip:a SIP/2.0\nl: 12\n\nv=0\nm: a, b\n";
        assert_eq!(
            norm(lf),
            "INVITE sip:a SIP/2.0\r\nContent-Length: 12\r\n\r\nv=0\nm: a, b\n"
        );
    }

    #[test]
    fn bare_lf_becomes_crlf() {
        assert_eq!(
            norm("OPTIONS sip:a SIP/2.0\nCall-ID: x\n\n"),
            "OPTIONS sip:a SIP/2.0\r\nCall-ID: x\r\n\r\n"
        );
        // Mixed endings.
        assert_eq!(
            norm("OPTIONS sip:a SIP/2.0\r\nCall-ID: x\n\r\n"),
            "OPTIONS sip:a SIP/2.0\r\nCall-ID: x\r\n\r\n"
        );
    }

    #[test]
    fn compact_names_expand() {
        let out = norm(
            "INVITE sip:a SIP/2.0\r\nv: SIP/2.0/UDP h\r\ni: abc\r\nf: <sip:x@y>;tag=1\r\nt: <sip:z@y>\r\nm: <sip:x@h>\r\nl: 0\r\nk: timer\r\nc: application/sdp\r\ns: hi\r\ne: gzip\r\no: talk\r\nr: <sip:r@y>\r\nu: talk\r\nx: 1800\r\na: *;audio\r\nb: <sip:b@y>\r\nj: *;video\r\nd: proxy\r\ny: abc\r\nn: <http://i>\r\n\r\n",
        );
        for long in [
            "Via:",
            "Call-ID:",
            "From:",
            "To:",
            "Contact:",
            "Content-Length:",
            "Supported:",
            "Content-Type:",
            "Subject:",
            "Content-Encoding:",
            "Event:",
            "Refer-To:",
            "Allow-Events:",
            "Session-Expires:",
            "Accept-Contact:",
            "Referred-By:",
            "Reject-Contact:",
            "Request-Disposition:",
            "Identity:",
            "Identity-Info:",
        ] {
            assert!(
                out.contains(&format!("\r\n{long} ")),
                "{long} missing in {out}"
            );
        }
        // Upper-case compact names too; long names are left alone.
        assert_eq!(
            norm("OPTIONS sip:a SIP/2.0\r\nL: 0\r\nTo: <sip:t@x>\r\n\r\n"),
            "OPTIONS sip:a SIP/2.0\r\nContent-Length: 0\r\nTo: <sip:t@x>\r\n\r\n"
        );
    }

    #[test]
    fn folded_lines_are_joined() {
        assert_eq!(
            norm("OPTIONS sip:a SIP/2.0\r\nSubject: I know you're there,\r\n   pick up the phone\r\n\tand talk to me!\r\nCall-ID: 1\r\n\r\n"),
            "OPTIONS sip:a SIP/2.0\r\nSubject: I know you're there, pick up the phone and talk to me!\r\nCall-ID: 1\r\n\r\n"
        );
    }

    #[test]
    fn multi_contact_and_via_split() {
        let out = norm("REGISTER sip:a SIP/2.0\r\nContact: \"Doe, John\" <sip:a@b;x=1,2>;expires=30, <sip:c@d>, sip:e@f;q=0.5\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b;branch=z9hG4bK2\r\n\r\n");
        assert_eq!(
            out,
            "REGISTER sip:a SIP/2.0\r\nContact: \"Doe, John\" <sip:a@b;x=1,2>;expires=30\r\nContact: <sip:c@d>\r\nContact: sip:e@f;q=0.5\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: SIP/2.0/TCP b;branch=z9hG4bK2\r\n\r\n"
        );
    }

    #[test]
    fn star_contact_and_other_lists_stay() {
        let msg = "REGISTER sip:a SIP/2.0\r\nContact: *\r\nAllow: INVITE, ACK, BYE\r\n\r\n";
        assert!(matches!(normalize(msg.as_bytes()), Cow::Borrowed(_)));
    }

    #[test]
    fn whitespace_before_colon_is_removed() {
        assert_eq!(
            norm("OPTIONS sip:a SIP/2.0\r\nCall-ID : 1\r\n\r\n"),
            "OPTIONS sip:a SIP/2.0\r\nCall-ID: 1\r\n\r\n"
        );
    }

    #[test]
    fn garbage_and_truncation_pass_through() {
        let garbage = [0u8, 159, 146, 150, 255, b'\n', b' ', 1, 2];
        let _ = normalize(&garbage); // must not panic
        assert!(matches!(normalize(b"\x00\x01\x02"), Cow::Borrowed(_)));
        assert_eq!(
            norm("OPTIONS sip:a SIP/2.0\nl: 0"),
            "OPTIONS sip:a SIP/2.0\r\nContent-Length: 0"
        );
        assert_eq!(norm(""), "");
        assert_eq!(norm("\n"), "\r\n");
        assert_eq!(norm(" folded-first\nx"), " folded-first\r\nx");
        assert_eq!(norm("A\n continuation\n\n"), "A\r\n continuation\r\n\r\n");
    }
}
