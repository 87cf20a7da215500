//! Length-prefixed JSON framing.
//!
//! Every frame on a T-Lib port or a TC-layer link is a 4-byte unsigned big-endian length `N`
//! followed by `N` bytes of UTF-8 JSON holding exactly one JSON object. The codec only knows about
//! "one JSON object per frame": it hands out a raw [`serde_json::Map`] so that the same codec serves
//! the T-Library message family ([`crate::Message`]) and the TC-layer family, each of which does its
//! own second-phase decoding.
//!
//! Every [`FrameError`] is fatal for the connection: after a bad length prefix or a frame that is
//! not a JSON object there is no reliable way to find the next frame boundary again.

use bytes::{Buf, BufMut, BytesMut};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio_util::codec::{Decoder, Encoder};

use crate::message::Message;

/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Default (and contractual) maximum payload length: 1 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 1024 * 1024;

/// How much the decoder reserves up front for a frame whose header it has seen. Capping it means a
/// peer that declares a large (but legal) frame and then trickles bytes cannot make us allocate the
/// whole frame at once; the buffer still grows as data actually arrives.
const MAX_EAGER_RESERVE: usize = 64 * 1024;

/// A fatal framing error.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The declared (or, when encoding, the produced) payload length exceeds the limit.
    #[error("frame length {len} exceeds the maximum of {max} bytes")]
    TooLong { len: usize, max: usize },
    /// The payload is not valid UTF-8 JSON (this includes a zero-length payload).
    #[error("frame payload is not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The payload is valid JSON but not an object (an array, a string, a number …).
    #[error("frame payload is JSON but not an object")]
    NotObject,
    /// The peer closed the stream in the middle of a frame.
    #[error("stream ended inside a frame ({buffered} bytes of it received)")]
    Truncated { buffered: usize },
    /// The underlying transport failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// The tokio-util codec for length-prefixed JSON objects.
///
/// Decoding yields `serde_json::Map<String, Value>`; encoding accepts anything `Serialize` (by
/// reference) plus owned [`Message`]s and maps.
#[derive(Debug, Clone, Copy)]
pub struct JsonFrameCodec {
    max_len: usize,
}

impl Default for JsonFrameCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonFrameCodec {
    /// A codec with the contractual 1 MiB limit.
    pub fn new() -> Self {
        Self::with_max_len(DEFAULT_MAX_FRAME_LEN)
    }

    /// A codec with a custom payload limit (applies to both directions).
    pub fn with_max_len(max_len: usize) -> Self {
        Self { max_len }
    }

    /// The payload limit in bytes.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    fn parse_payload(payload: &[u8]) -> Result<Map<String, Value>, FrameError> {
        // Parse to a `Value` first so that "valid JSON but not an object" is told apart from
        // "not JSON at all". serde_json validates UTF-8 itself.
        match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(FrameError::NotObject),
            Err(e) => Err(FrameError::NotJson(e)),
        }
    }

    fn encode_value<T: Serialize + ?Sized>(
        &self,
        item: &T,
        dst: &mut BytesMut,
    ) -> Result<(), FrameError> {
        let start = dst.len();
        dst.reserve(HEADER_LEN + 128);
        dst.put_u32(0); // placeholder, patched below
        let res = serde_json::to_writer((&mut *dst).writer(), item);
        let len = dst.len() - start - HEADER_LEN;
        let check = match res {
            Err(e) => Err(FrameError::NotJson(e)),
            Ok(()) if dst.get(start + HEADER_LEN) != Some(&b'{') => Err(FrameError::NotObject),
            Ok(()) if len > self.max_len => Err(FrameError::TooLong {
                len,
                max: self.max_len,
            }),
            Ok(()) => Ok(()),
        };
        if let Err(e) = check {
            // Leave the buffer exactly as we found it: nothing half-written goes on the wire.
            dst.truncate(start);
            return Err(e);
        }
        // `len <= max_len`; the cast can only fail for a limit above 4 GiB.
        let header = u32::try_from(len).map_err(|_| FrameError::TooLong {
            len,
            max: self.max_len,
        })?;
        dst[start..start + HEADER_LEN].copy_from_slice(&header.to_be_bytes());
        Ok(())
    }
}

impl Decoder for JsonFrameCodec {
    type Item = Map<String, Value>;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        let Some(header) = src.get(..HEADER_LEN) else {
            src.reserve(HEADER_LEN);
            return Ok(None);
        };
        let mut len_bytes = [0u8; HEADER_LEN];
        len_bytes.copy_from_slice(header);
        let len = u32::from_be_bytes(len_bytes) as usize;
        if len > self.max_len {
            // Refuse at once: never buffer a frame we are going to reject anyway.
            return Err(FrameError::TooLong {
                len,
                max: self.max_len,
            });
        }
        let total = HEADER_LEN + len;
        if src.len() < total {
            src.reserve((total - src.len()).min(MAX_EAGER_RESERVE));
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let payload = src.split_to(len);
        // Ask for room for the next header so a steady stream of frames does not reallocate
        // on every read.
        src.reserve(HEADER_LEN);
        Self::parse_payload(&payload).map(Some)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(FrameError::Truncated {
                buffered: src.len(),
            }),
        }
    }
}

impl<T: Serialize + ?Sized> Encoder<&T> for JsonFrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: &T, dst: &mut BytesMut) -> Result<(), Self::Error> {
        self.encode_value(item, dst)
    }
}

impl Encoder<Message> for JsonFrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Message, dst: &mut BytesMut) -> Result<(), Self::Error> {
        self.encode_value(&item, dst)
    }
}

impl Encoder<Map<String, Value>> for JsonFrameCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Map<String, Value>, dst: &mut BytesMut) -> Result<(), Self::Error> {
        self.encode_value(&item, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("test value is not an object"),
        }
    }

    #[test]
    fn round_trip() {
        let mut codec = JsonFrameCodec::new();
        let value = obj(json!({"message": "Ping", "ReferenceID": 7, "UserData": {"a": [1, 2]}}));
        let mut buf = BytesMut::new();
        codec.encode(&value, &mut buf).unwrap();
        let declared = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
        assert_eq!(declared, buf.len() - 4);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(value));
        assert!(buf.is_empty());
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn owned_message_encodes_message_key_first() {
        let mut codec = JsonFrameCodec::new();
        let mut buf = BytesMut::new();
        codec
            .encode(crate::Message::new(crate::MessageName::Ping), &mut buf)
            .unwrap();
        assert_eq!(&buf[4..], br#"{"message":"Ping"}"#);
    }

    #[test]
    fn split_reads_byte_by_byte() {
        let mut codec = JsonFrameCodec::new();
        let bytes = frame(br#"{"message":"EventRinging","ThisDN":"7001"}"#);
        let mut buf = BytesMut::new();
        for (i, b) in bytes.iter().enumerate() {
            buf.put_u8(*b);
            let out = codec.decode(&mut buf).unwrap();
            if i + 1 < bytes.len() {
                assert_eq!(out, None, "frame complete too early at byte {i}");
            } else {
                assert_eq!(
                    out,
                    Some(obj(json!({"message":"EventRinging","ThisDN":"7001"})))
                );
            }
        }
    }

    #[test]
    fn two_frames_in_one_buffer() {
        let mut codec = JsonFrameCodec::new();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&frame(br#"{"a":1}"#));
        buf.extend_from_slice(&frame(br#"{"b":2}"#));
        buf.extend_from_slice(&frame(br#"{"c":3}"#)[..6]); // partial third
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(obj(json!({"a":1}))));
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(obj(json!({"b":2}))));
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn zero_length_frame_is_not_json() {
        let mut codec = JsonFrameCodec::new();
        let mut buf = BytesMut::from(&frame(b"")[..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::NotJson(_))
        ));
    }

    #[test]
    fn too_long_is_rejected_from_the_header_alone() {
        let mut codec = JsonFrameCodec::with_max_len(16);
        let mut buf = BytesMut::new();
        buf.put_u32(17);
        match codec.decode(&mut buf) {
            Err(FrameError::TooLong { len: 17, max: 16 }) => {}
            other => panic!("unexpected {other:?}"),
        }
        // The default limit is 1 MiB.
        let mut codec = JsonFrameCodec::new();
        let mut buf = BytesMut::new();
        buf.put_u32(DEFAULT_MAX_FRAME_LEN as u32 + 1);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::TooLong { .. })
        ));
        // A huge declared length does not make us reserve it.
        let mut buf = BytesMut::new();
        buf.put_u32(DEFAULT_MAX_FRAME_LEN as u32);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(buf.capacity() < DEFAULT_MAX_FRAME_LEN / 2);
    }

    #[test]
    fn encoder_refuses_oversized_and_leaves_buffer_untouched() {
        let mut codec = JsonFrameCodec::with_max_len(10);
        let mut buf = BytesMut::from(&b"xy"[..]);
        let big = obj(json!({"message": "EventRinging"}));
        assert!(matches!(
            codec.encode(&big, &mut buf),
            Err(FrameError::TooLong { .. })
        ));
        assert_eq!(&buf[..], b"xy");
    }

    #[test]
    fn encoder_refuses_non_objects() {
        let mut codec = JsonFrameCodec::new();
        let mut buf = BytesMut::new();
        assert!(matches!(
            codec.encode(&json!([1, 2]), &mut buf),
            Err(FrameError::NotObject)
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn invalid_utf8_is_not_json() {
        let mut codec = JsonFrameCodec::new();
        let mut buf = BytesMut::from(&frame(b"{\"a\":\"\xff\xfe\"}")[..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::NotJson(_))
        ));
    }

    #[test]
    fn garbage_is_not_json() {
        let mut codec = JsonFrameCodec::new();
        let mut buf = BytesMut::from(&frame(b"{\"a\":")[..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::NotJson(_))
        ));
    }

    #[test]
    fn array_is_not_an_object() {
        let mut codec = JsonFrameCodec::new();
        let mut buf = BytesMut::from(&frame(b"[{\"message\":\"Ping\"}]")[..]);
        assert!(matches!(codec.decode(&mut buf), Err(FrameError::NotObject)));
        let mut buf = BytesMut::from(&frame(b"\"Ping\"")[..]);
        assert!(matches!(codec.decode(&mut buf), Err(FrameError::NotObject)));
    }

    #[test]
    fn truncated_frame_at_eof_is_an_error() {
        let mut codec = JsonFrameCodec::new();
        let bytes = frame(br#"{"message":"Ping"}"#);
        let mut buf = BytesMut::from(&bytes[..bytes.len() - 3]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        match codec.decode_eof(&mut buf) {
            Err(FrameError::Truncated { buffered }) => assert_eq!(buffered, bytes.len() - 3),
            other => panic!("unexpected {other:?}"),
        }
        // A partial header is truncated too.
        let mut buf = BytesMut::from(&[0u8, 0][..]);
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(FrameError::Truncated { buffered: 2 })
        ));
        // A clean EOF between frames is fine.
        let mut buf = BytesMut::new();
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
    }

    #[test]
    fn decode_eof_still_yields_a_complete_last_frame() {
        let mut codec = JsonFrameCodec::new();
        let mut buf = BytesMut::from(&frame(br#"{"x":true}"#)[..]);
        assert_eq!(
            codec.decode_eof(&mut buf).unwrap(),
            Some(obj(json!({"x": true})))
        );
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
    }
}
