//! tokio-util codec framing SIP over a byte stream (TCP), RFC 3261 §18.3 + RFC 5626 §4.4.1.
//!
//! Framing is by Content-Length (absent = 0 on a stream). Framing errors are fatal because the
//! stream position is lost; a well-framed message that rsip cannot parse is *not*: it comes out
//! as [`SipFrame::Invalid`] so the server can answer 400 and keep the connection, as a real SIP
//! server does.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::framing::{content_length, find_head_end, resume_offset};
use crate::parse::{parse_frame, ParseError};

/// Default cap on one message (header section + body) on a stream.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;

/// The RFC 5626 pong a server writes when it receives a [`SipFrame::Ping`].
pub const PONG: &[u8] = b"\r\n";
/// The RFC 5626 ping a client writes to probe the flow.
pub const PING: &[u8] = b"\r\n\r\n";

/// One unit read from a SIP stream.
#[derive(Debug, Clone)]
pub enum SipFrame {
    Message(rsip::SipMessage),
    /// `\r\n\r\n` keep-alive ping: answer with [`PONG`].
    Ping,
    /// A lone `\r\n`: the pong answering our ping (or a bare CRLF keep-alive). Nothing to do.
    Pong,
    /// Correctly framed but unparseable: answer 400 (see [`crate::bad_request`]) and go on.
    Invalid {
        raw: Bytes,
        error: ParseError,
    },
}

/// Fatal stream errors: after one of these the connection must be closed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("message exceeds the {max}-byte cap ({size} bytes seen or announced)")]
    TooLarge { size: usize, max: usize },
    /// Content-Length missing a usable value: the frame boundary is unknown.
    #[error("cannot frame message: {0}")]
    Framing(ParseError),
    #[error("stream closed in the middle of a message ({0} bytes pending)")]
    Truncated(usize),
}

/// Decoder + encoder for SIP over TCP.
#[derive(Debug, Clone)]
pub struct SipStreamCodec {
    max_message: usize,
    /// Where to resume looking for the blank line, so partial reads do not rescan the whole
    /// buffer (a slow sender would otherwise cost O(n²)).
    scan_from: usize,
    /// Header section length of the message being waited for, once known.
    pending: Option<Pending>,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    total: usize,
}

impl Default for SipStreamCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MESSAGE)
    }
}

impl SipStreamCodec {
    /// Codec with a cap of `max_message` bytes per message (header section + body).
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            scan_from: 0,
            pending: None,
        }
    }

    pub fn max_message(&self) -> usize {
        self.max_message
    }

    fn keep_alive(&self, src: &mut BytesMut) -> Option<Option<SipFrame>> {
        if !src.starts_with(b"\r\n") {
            // A lone "\n" or "\r" between messages is noise some stacks emit: skip it.
            return None;
        }
        if src.starts_with(PING) {
            let _ = src.split_to(4);
            return Some(Some(SipFrame::Ping));
        }
        match src.get(2) {
            // Could be the first half of a ping split across segments: wait for one more byte.
            Some(b'\r') if src.len() == 3 => Some(None),
            // Exactly "\r\n" buffered: report a pong now rather than stall a client waiting for
            // it. A ping split after its first CRLF (practically never seen) reads as 2 pongs.
            _ => {
                let _ = src.split_to(2);
                Some(Some(SipFrame::Pong))
            }
        }
    }
}

impl Decoder for SipStreamCodec {
    type Item = SipFrame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<SipFrame>, CodecError> {
        if self.pending.is_none() && self.scan_from == 0 {
            // Between messages: keep-alives and stray line feeds.
            while src.first() == Some(&b'\n') {
                let _ = src.split_to(1);
            }
            if let Some(ka) = self.keep_alive(src) {
                return Ok(ka);
            }
            if src.is_empty() {
                return Ok(None);
            }
        }

        let total = match self.pending {
            Some(p) => p.total,
            None => {
                let Some(head_end) = find_head_end(src, self.scan_from) else {
                    if src.len() > self.max_message {
                        return Err(CodecError::TooLarge {
                            size: src.len(),
                            max: self.max_message,
                        });
                    }
                    self.scan_from = resume_offset(src);
                    return Ok(None);
                };
                let body = content_length(&src[..head_end])
                    .map_err(CodecError::Framing)?
                    .unwrap_or(0);
                let total = head_end.saturating_add(body);
                if total > self.max_message {
                    return Err(CodecError::TooLarge {
                        size: total,
                        max: self.max_message,
                    });
                }
                self.pending = Some(Pending { total });
                total
            }
        };

        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        self.pending = None;
        self.scan_from = 0;
        let raw = src.split_to(total).freeze();
        Ok(Some(match parse_frame(&raw) {
            Ok(msg) => SipFrame::Message(msg),
            Err(error) => SipFrame::Invalid { raw, error },
        }))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<SipFrame>, CodecError> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        if src.iter().all(|&b| b == b'\r' || b == b'\n') {
            src.clear();
            return Ok(None);
        }
        Err(CodecError::Truncated(src.len()))
    }
}

impl Encoder<&rsip::SipMessage> for SipStreamCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &rsip::SipMessage, dst: &mut BytesMut) -> Result<(), CodecError> {
        use std::fmt::Write;
        write!(dst, "{item}").map_err(|_| std::io::Error::other("formatting SIP message"))?;
        Ok(())
    }
}

impl Encoder<Bytes> for SipStreamCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.extend_from_slice(&item);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &str = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h:5060;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    fn decode_all(codec: &mut SipStreamCodec, buf: &mut BytesMut) -> Vec<SipFrame> {
        let mut out = Vec::new();
        while let Some(f) = codec.decode(buf).unwrap() {
            out.push(f);
        }
        out
    }

    #[test]
    fn frames_back_to_back_messages_with_bodies() {
        let with_body = OPTIONS.replace("Content-Length: 0", "Content-Length: 4") + "abcd";
        let mut buf = BytesMut::from(format!("{OPTIONS}{with_body}{OPTIONS}").as_bytes());
        let mut c = SipStreamCodec::default();
        let frames = decode_all(&mut c, &mut buf);
        assert_eq!(frames.len(), 3);
        match &frames[1] {
            SipFrame::Message(rsip::SipMessage::Request(r)) => assert_eq!(r.body, b"abcd"),
            other => panic!("{other:?}"),
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn byte_by_byte_delivery() {
        let msg = OPTIONS.replace("Content-Length: 0", "l: 3") + "xyz";
        let mut c = SipStreamCodec::default();
        let mut buf = BytesMut::from(PING);
        let mut frames = decode_all(&mut c, &mut buf);
        for b in format!("{msg}\r\n").bytes() {
            buf.extend_from_slice(&[b]);
            frames.extend(decode_all(&mut c, &mut buf));
        }
        assert!(matches!(frames[0], SipFrame::Ping));
        assert!(matches!(frames[1], SipFrame::Message(_)));
        assert!(matches!(frames[2], SipFrame::Pong));
        assert_eq!(frames.len(), 3);
    }

    #[test]
    fn missing_content_length_means_empty_body() {
        let msg = OPTIONS.replace("Content-Length: 0\r\n", "");
        let mut buf = BytesMut::from(format!("{msg}{OPTIONS}").as_bytes());
        let frames = decode_all(&mut SipStreamCodec::default(), &mut buf);
        assert_eq!(frames.len(), 2);
        assert!(frames.iter().all(|f| matches!(f, SipFrame::Message(_))));
    }

    #[test]
    fn unparseable_but_framed_is_invalid_not_fatal() {
        let bad = "FROB sip:a SIP/2.0\r\nVia: x\r\nContent-Length: 2\r\n\r\nhi";
        let mut buf = BytesMut::from(format!("{bad}{OPTIONS}").as_bytes());
        let frames = decode_all(&mut SipStreamCodec::default(), &mut buf);
        match &frames[0] {
            SipFrame::Invalid { raw, error } => {
                assert_eq!(&raw[..], bad.as_bytes());
                assert!(matches!(error, ParseError::Malformed(_)));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(frames[1], SipFrame::Message(_)));
    }

    #[test]
    fn oversized_is_fatal() {
        let mut c = SipStreamCodec::new(1024);
        let big = OPTIONS.replace("Content-Length: 0", "Content-Length: 5000");
        let mut buf = BytesMut::from(big.as_bytes());
        assert!(matches!(
            c.decode(&mut buf),
            Err(CodecError::TooLarge { .. })
        ));

        // Headers that never end.
        let mut c = SipStreamCodec::new(1024);
        let mut buf = BytesMut::from(&b"OPTIONS sip:a SIP/2.0\r\n"[..]);
        for _ in 0..100 {
            buf.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert!(matches!(
            c.decode(&mut buf),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn binary_garbage_hits_the_cap() {
        let mut c = SipStreamCodec::new(4096);
        let mut buf = BytesMut::from(&[0u8, 0xff, 0x13, 0x37][..]);
        assert!(c.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&vec![0xab; 5000]);
        assert!(matches!(
            c.decode(&mut buf),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn bad_content_length_is_fatal() {
        let bad = OPTIONS.replace("Content-Length: 0", "Content-Length: -3");
        let mut buf = BytesMut::from(bad.as_bytes());
        assert!(matches!(
            SipStreamCodec::default().decode(&mut buf),
            Err(CodecError::Framing(ParseError::InvalidContentLength(_)))
        ));
    }

    #[test]
    fn eof_in_the_middle_is_an_error_but_trailing_crlf_is_not() {
        let mut c = SipStreamCodec::default();
        let mut buf = BytesMut::from(&OPTIONS.as_bytes()[..40]);
        assert!(matches!(
            c.decode_eof(&mut buf),
            Err(CodecError::Truncated(_))
        ));
        let mut c = SipStreamCodec::default();
        let mut buf = BytesMut::from(&b"\r\n\r"[..]);
        assert!(c.decode_eof(&mut buf).unwrap().is_none());
    }

    #[test]
    fn encoder_round_trip() {
        let msg = crate::parse::parse_message(OPTIONS.as_bytes()).unwrap();
        let mut c = SipStreamCodec::default();
        let mut buf = BytesMut::new();
        c.encode(&msg, &mut buf).unwrap();
        c.encode(Bytes::from_static(PING), &mut buf).unwrap();
        let frames = decode_all(&mut c, &mut buf);
        assert_eq!(frames.len(), 2);
        assert!(matches!(&frames[0], SipFrame::Message(m) if m == &msg));
        assert!(matches!(frames[1], SipFrame::Ping));
    }
}
