//! Locating message boundaries in raw bytes: end of the header section and Content-Length.
//!
//! Shared by the datagram parser and the stream codec. It works on the *raw* bytes (before
//! [`normalize`](crate::normalize::normalize)) so that framing a TCP stream never copies: it
//! accepts bare-LF line endings and the compact `l:` name, like the normaliser does.

use crate::parse::ParseError;

/// Finds the end of the header section, searching from `from` (an offset the caller already
/// knows holds no blank line; pass 0 otherwise).
///
/// Returns the offset of the first body byte, i.e. just past the blank line. Accepts `\r\n\r\n`,
/// `\n\n`, `\n\r\n` and `\r\n\n`. `None` means "not yet" on a stream, "truncated" on a datagram.
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from.min(buf.len());
    while let Some(off) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + off;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// Where a later [`find_head_end`] call may resume after it returned `None` on `buf`: the last
/// three bytes may be the start of a blank line that is still arriving.
pub fn resume_offset(buf: &[u8]) -> usize {
    buf.len().saturating_sub(3)
}

/// Upper bound on the digits we accept in Content-Length; anything longer is nonsense and
/// would only risk overflow.
const MAX_CL_DIGITS: usize = 10;

/// Reads Content-Length (long or compact `l` name, any case) from a raw header section.
///
/// `Ok(None)` when absent. Several Content-Length headers are fine when they agree (a proxy
/// bug we tolerate) and an error when they do not (a request-smuggling shape).
pub fn content_length(head: &[u8]) -> Result<Option<usize>, ParseError> {
    let mut found: Option<usize> = None;
    // Skip the start line; the blank line yields an empty slice and is harmless.
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if !(name.eq_ignore_ascii_case(b"Content-Length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let value = line[colon + 1..].trim_ascii();
        let n = parse_cl_value(value)?;
        match found {
            Some(prev) if prev != n => return Err(ParseError::ConflictingContentLength),
            _ => found = Some(n),
        }
    }
    Ok(found)
}

fn parse_cl_value(value: &[u8]) -> Result<usize, ParseError> {
    let invalid = || ParseError::InvalidContentLength(snippet(value));
    if value.is_empty() || value.len() > MAX_CL_DIGITS || !value.iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    value.iter().try_fold(0usize, |acc, &d| {
        acc.checked_mul(10)
            .and_then(|v| v.checked_add(usize::from(d - b'0')))
            .ok_or_else(invalid)
    })
}

/// A short, printable rendering of untrusted bytes for error messages.
pub(crate) fn snippet(bytes: &[u8]) -> String {
    const MAX: usize = 32;
    let cut = &bytes[..bytes.len().min(MAX)];
    let mut s: String = String::from_utf8_lossy(cut)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if bytes.len() > MAX {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_variants() {
        assert_eq!(find_head_end(b"A\r\nB: 1\r\n\r\nbody", 0), Some(11));
        assert_eq!(find_head_end(b"A\nB: 1\n\nbody", 0), Some(8));
        assert_eq!(find_head_end(b"A\nB: 1\n\r\nbody", 0), Some(9));
        assert_eq!(find_head_end(b"A\r\nB: 1\r\n\nbody", 0), Some(10));
        assert_eq!(find_head_end(b"A\r\nB: 1\r\n\r", 0), None);
        assert_eq!(find_head_end(b"A\r\nB: 1\r\n", 0), None);
        assert_eq!(find_head_end(b"", 0), None);
        assert_eq!(find_head_end(b"abc", 10), None);
        // Resuming from resume_offset still finds a blank line split across reads.
        let buf = b"A\r\nB: 1\r\n\r";
        let from = resume_offset(buf);
        let mut full = buf.to_vec();
        full.extend_from_slice(b"\nX");
        assert_eq!(find_head_end(&full, from), Some(11));
    }

    #[test]
    fn content_length_forms() {
        assert_eq!(
            content_length(b"A\r\nContent-Length: 12\r\n\r\n"),
            Ok(Some(12))
        );
        assert_eq!(content_length(b"A\r\nl:3\r\n\r\n"), Ok(Some(3)));
        assert_eq!(content_length(b"A\ncontent-length :  7 \n\n"), Ok(Some(7)));
        assert_eq!(content_length(b"A\r\nCall-ID: l: 5\r\n\r\n"), Ok(None));
        assert_eq!(
            content_length(b"A\r\nl: 1\r\nContent-Length: 1\r\n\r\n"),
            Ok(Some(1))
        );
        assert_eq!(
            content_length(b"A\r\nl: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(ParseError::ConflictingContentLength)
        );
        for bad in ["-1", "", "1a", "99999999999", "0x10", "1 2"] {
            let head = format!("A\r\nContent-Length: {bad}\r\n\r\n");
            assert!(
                matches!(
                    content_length(head.as_bytes()),
                    Err(ParseError::InvalidContentLength(_))
                ),
                "{bad:?}"
            );
        }
    }
}
