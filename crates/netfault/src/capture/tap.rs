//! The tap on one TCP connection: both directions cut into messages and recorded, HTTP
//! responses paired with the requests they answer.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use super::framer::{Framer, Framing};
use super::summary::{self, Summary};
use super::{Capture, Dir, Proto};

/// Requests remembered per direction for the responses that answer them (HTTP pipelining is
/// rare; a stale entry is dropped rather than kept).
const MAX_PENDING: usize = 16;

pub(crate) struct StreamTap {
    link: Arc<str>,
    peer: SocketAddr,
    proto: Proto,
    inbound: Framer,
    outbound: Framer,
    /// Requests seen going in / out, oldest first, for the responses going the other way.
    requests_in: VecDeque<String>,
    requests_out: VecDeque<String>,
}

impl StreamTap {
    /// A tap for a new connection on `link`, when capture is on and the link carries messages.
    pub(crate) fn new(capture: &Capture, link: &Arc<str>, peer: SocketAddr) -> Option<Box<Self>> {
        if !capture.enabled() {
            return None;
        }
        let proto = Proto::of_link(link);
        let framing = match proto {
            Proto::Tlib | Proto::Tc => Framing::LengthPrefixed,
            Proto::Sip | Proto::Http => Framing::Text,
            Proto::Media | Proto::Other => return None,
        };
        Some(Box::new(StreamTap {
            link: link.clone(),
            peer,
            proto,
            inbound: Framer::new(framing),
            outbound: Framer::new(framing),
            requests_in: VecDeque::new(),
            requests_out: VecDeque::new(),
        }))
    }

    /// Bytes that crossed the connection in direction `dir`.
    pub(crate) fn feed(&mut self, capture: &Capture, dir: Dir, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let framer = match dir {
            Dir::In => &mut self.inbound,
            Dir::Out => &mut self.outbound,
        };
        for cut in framer.push(bytes) {
            let summary = self.summarise(dir, &cut.message, &cut.body);
            capture.push(
                self.link.clone(),
                dir,
                self.peer,
                self.proto,
                &cut.message,
                summary,
            );
        }
    }

    /// HTTP's summary, which needs the connection (the request a response answers); None for
    /// the others, summarised when read.
    fn summarise(&mut self, dir: Dir, message: &[u8], body: &[u8]) -> Option<Summary> {
        if self.proto != Proto::Http {
            return None;
        }
        let (mine, theirs) = match dir {
            Dir::In => (&mut self.requests_in, &mut self.requests_out),
            Dir::Out => (&mut self.requests_out, &mut self.requests_in),
        };
        Some(match summary::http_request_line(message) {
            Some(request) => {
                if mine.len() == MAX_PENDING {
                    mine.pop_front();
                }
                mine.push_back(request);
                summary::http(message, body, None)
            }
            None => {
                let answers = theirs.pop_front();
                summary::http(message, body, answers.as_deref())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_responses_name_their_request() {
        let capture = Capture::new(10);
        let link: Arc<str> = "http:gws1".into();
        let peer = "127.0.1.10:40000".parse().unwrap();
        let mut tap = StreamTap::new(&capture, &link, peer).unwrap();
        tap.feed(
            &capture,
            Dir::In,
            b"GET /api/v2/me HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        tap.feed(
            &capture,
            Dir::Out,
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",
        );
        let (records, _) = capture.since(0, 10);
        let summaries: Vec<_> = records.iter().map(|r| r.summary.as_str()).collect();
        assert_eq!(summaries, ["GET /api/v2/me", "GET /api/v2/me 200"]);
        assert_eq!(records[1].dir, Dir::Out);
        assert!(StreamTap::new(&Capture::new(0), &link, peer).is_none());
        assert!(StreamTap::new(&capture, &"media:7001".into(), peer).is_none());
    }
}
