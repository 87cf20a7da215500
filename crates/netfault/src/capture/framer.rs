//! Cuts one direction of a captured TCP stream into messages: length-prefixed JSON frames
//! (T-Lib, TC) or text heads with a body (SIP, HTTP: Content-Length or chunked). Bounded: a
//! stream that stops making sense (an impossible length, a head that never ends, a WebSocket
//! after an upgrade) is no longer cut, and costs nothing more.

use super::summary::find;

/// Largest frame or message the framer waits for (T-Lib's own limit is 1 MiB).
const MAX_MESSAGE: usize = 1024 * 1024 + 4;
/// Largest head of a text message.
const MAX_HEAD: usize = 64 * 1024;

/// How the stream is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// A 4-byte big-endian length, then that many bytes.
    LengthPrefixed,
    /// A head ending in an empty line, then a body (SIP, HTTP/1.1).
    Text,
}

/// One message cut from the stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Cut {
    /// What crossed the link (the payload only, for length-prefixed frames).
    pub message: Vec<u8>,
    /// The body, de-chunked (empty for length-prefixed frames).
    pub body: Vec<u8>,
}

/// One direction of a stream being cut into messages.
#[derive(Debug)]
pub struct Framer {
    framing: Framing,
    buf: Vec<u8>,
    /// Lost track for good (see the module doc).
    lost: bool,
}

impl Framer {
    pub fn new(framing: Framing) -> Self {
        Framer {
            framing,
            buf: Vec::new(),
            lost: false,
        }
    }

    /// Whether the framer gave up on the stream.
    pub fn lost(&self) -> bool {
        self.lost
    }

    /// Takes the next bytes of the stream; returns the messages they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Cut> {
        if self.lost {
            return Vec::new();
        }
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let next = match self.framing {
                Framing::LengthPrefixed => length_prefixed(&self.buf),
                Framing::Text => text(&self.buf),
            };
            match next {
                Next::Message { len, cut, upgrade } => {
                    self.buf.drain(..len);
                    out.push(cut);
                    if upgrade {
                        self.give_up();
                        break;
                    }
                }
                Next::Skip(n) => {
                    self.buf.drain(..n);
                }
                Next::More if self.buf.len() > MAX_MESSAGE => {
                    self.give_up();
                    break;
                }
                Next::More => break,
                Next::Lost => {
                    self.give_up();
                    break;
                }
            }
        }
        out
    }

    fn give_up(&mut self) {
        self.lost = true;
        self.buf = Vec::new();
    }
}

/// What the front of the buffer holds.
enum Next {
    /// A whole message of `len` bytes; `upgrade`: the stream is something else after it.
    Message { len: usize, cut: Cut, upgrade: bool },
    /// Bytes between messages (a SIP keepalive CRLF).
    Skip(usize),
    /// Not a whole message yet.
    More,
    /// Not a stream of this framing.
    Lost,
}

fn length_prefixed(buf: &[u8]) -> Next {
    let Some(prefix) = buf.get(..4) else {
        return Next::More;
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if len + 4 > MAX_MESSAGE {
        return Next::Lost;
    }
    match buf.get(4..4 + len) {
        Some(payload) => Next::Message {
            len: 4 + len,
            cut: Cut {
                message: payload.to_vec(),
                body: Vec::new(),
            },
            upgrade: false,
        },
        None => Next::More,
    }
}

fn text(buf: &[u8]) -> Next {
    let blank = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    if blank > 0 {
        return Next::Skip(blank);
    }
    let Some(head_end) = find(buf, b"\r\n\r\n").map(|i| i + 4) else {
        return if buf.len() > MAX_HEAD {
            Next::Lost
        } else {
            Next::More
        };
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            (n.trim() == name).then(|| v.trim().to_owned())
        })
    };
    let upgrade = header("upgrade").is_some_and(|v| v.contains("websocket"))
        && (head.starts_with("http/1.1 101") || !head.starts_with("http/"));
    let status = head
        .strip_prefix("http/1.1 ")
        .or_else(|| head.strip_prefix("http/1.0 "))
        .and_then(|s| s.get(..3));
    let bodiless = status.is_some_and(|s| s.starts_with('1') || s == "204" || s == "304");
    let rest = &buf[head_end..];
    if !bodiless && header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return match dechunk(rest) {
            Chunked::Done { len, body } => Next::Message {
                len: head_end + len,
                cut: Cut {
                    message: buf[..head_end + len].to_vec(),
                    body,
                },
                upgrade,
            },
            Chunked::More => Next::More,
            Chunked::Bad => Next::Lost,
        };
    }
    let length = match header("content-length").or_else(|| header("l")) {
        _ if bodiless => 0,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if head_end + n <= MAX_MESSAGE => n,
            _ => return Next::Lost,
        },
        None => 0,
    };
    match rest.get(..length) {
        Some(body) => Next::Message {
            len: head_end + length,
            cut: Cut {
                message: buf[..head_end + length].to_vec(),
                body: body.to_vec(),
            },
            upgrade,
        },
        None => Next::More,
    }
}

enum Chunked {
    /// The chunked body takes `len` bytes; `body` is its content.
    Done {
        len: usize,
        body: Vec<u8>,
    },
    More,
    Bad,
}

/// Reads a chunked body from the start of `buf`.
fn dechunk(buf: &[u8]) -> Chunked {
    let mut at = 0;
    let mut body = Vec::new();
    loop {
        let Some(line_end) = find(&buf[at..], b"\r\n") else {
            return if buf.len() - at > 1024 {
                Chunked::Bad
            } else {
                Chunked::More
            };
        };
        let line = String::from_utf8_lossy(&buf[at..at + line_end]);
        let size = line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size, 16) else {
            return Chunked::Bad;
        };
        if size > MAX_MESSAGE {
            return Chunked::Bad;
        }
        at += line_end + 2;
        if size == 0 {
            // Trailers, then the empty line.
            return match find(&buf[at..], b"\r\n\r\n") {
                _ if buf[at..].starts_with(b"\r\n") => Chunked::Done { len: at + 2, body },
                Some(end) => Chunked::Done {
                    len: at + end + 4,
                    body,
                },
                None => Chunked::More,
            };
        }
        let Some(data) = buf.get(at..at + size) else {
            return Chunked::More;
        };
        body.extend_from_slice(data);
        at += size;
        match buf.get(at..at + 2) {
            Some(b"\r\n") => at += 2,
            Some(_) => return Chunked::Bad,
            None => return Chunked::More,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &str) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(payload.as_bytes());
        v
    }

    #[test]
    fn length_prefixed_frames_across_reads() {
        let mut f = Framer::new(Framing::LengthPrefixed);
        let mut bytes = frame(r#"{"message":"Ping"}"#);
        bytes.extend(frame(r#"{"message":"Pong"}"#));
        assert!(f.push(&bytes[..3]).is_empty());
        let cuts = f.push(&bytes[3..25]);
        assert_eq!(cuts.len(), 1);
        assert_eq!(cuts[0].message, br#"{"message":"Ping"}"#);
        assert_eq!(f.push(&bytes[25..]).len(), 1);
        // An impossible length: the framer gives up instead of buffering.
        assert!(f.push(&[0xff, 0xff, 0xff, 0xff, 1]).is_empty());
        assert!(f.lost());
        assert!(f.push(&frame("{}")).is_empty());
    }

    #[test]
    fn sip_over_tcp_with_keepalives_and_bodies() {
        let mut f = Framer::new(Framing::Text);
        let msg = "INVITE sip:a SIP/2.0\r\nl: 3\r\n\r\nabcSIP/2.0 100 Trying\r\n\r\n";
        let mut bytes = b"\r\n\r\n".to_vec();
        bytes.extend_from_slice(msg.as_bytes());
        let cuts = f.push(&bytes);
        assert_eq!(cuts.len(), 2);
        assert_eq!(cuts[0].body, b"abc");
        assert!(cuts[1].message.starts_with(b"SIP/2.0 100"));
    }

    #[test]
    fn http_chunked_and_upgrade() {
        let mut f = Framer::new(Framing::Text);
        let msg = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let (a, b) = msg.split_at(50);
        assert!(f.push(a).is_empty());
        let cuts = f.push(b);
        assert_eq!(cuts.len(), 1);
        assert_eq!(cuts[0].body, b"abcde");
        assert_eq!(cuts[0].message.len(), msg.len());
        let up = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello";
        assert_eq!(f.push(up).len(), 1);
        assert!(f.lost());
    }

    #[test]
    fn garbage_is_bounded() {
        let mut f = Framer::new(Framing::Text);
        for _ in 0..20 {
            assert!(f.push(&[b'x'; 8192]).is_empty());
        }
        assert!(f.lost());
        let mut f = Framer::new(Framing::Text);
        assert!(f
            .push(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n")
            .is_empty());
        assert!(f.lost());
        let mut f = Framer::new(Framing::Text);
        assert!(f
            .push(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
            .is_empty());
        assert!(f.lost());
    }
}
