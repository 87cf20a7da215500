//! One keep-alive HTTP/1.1 connection of a desktop: writes a request, reads its answer into a
//! buffer that lives only while the answer is read, and says whether the connection can carry
//! another. One request at a time (no pipelining, as browsers do).

use std::io;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::response::{self, Head, MAX_HEAD_BYTES};

/// Largest answer body read; a bigger one is a broken answer.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Receive buffer an answer starts with: every GWS answer a desktop gets but the biggest
/// notification batches fits, so one read takes it whole.
const INITIAL_BUFFER: usize = 2048;

/// An answer, detached from the connection.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub set_cookies: Vec<String>,
    pub csrf: Option<(String, String)>,
    /// The body, parsed by whoever knows what it should hold.
    pub body: Vec<u8>,
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum LinkError {
    /// The connection ended before any byte of an answer: on a connection that already carried
    /// a request, the server had closed it while idle, and the request can go on a new one.
    ClosedBeforeAnswer(String),
    Failed(String),
}

impl LinkError {
    pub fn text(self) -> String {
        match self {
            LinkError::ClosedBeforeAnswer(t) | LinkError::Failed(t) => t,
        }
    }
}

pub struct Link {
    stream: TcpStream,
    /// The answer being read. It exists only while one is read: a long-poll parked for
    /// seconds, on each of thousands of desktops, holds none.
    buf: Vec<u8>,
    /// Requests carried so far.
    used: u32,
}

impl Link {
    /// Opens a connection to `authority` (`host:port`; an IP literal is not looked up).
    pub async fn open(authority: &str) -> io::Result<Link> {
        let stream = TcpStream::connect(authority).await?;
        // Requests are written whole; Nagle would only hold the next one back.
        stream.set_nodelay(true)?;
        Ok(Link {
            stream,
            buf: Vec::new(),
            used: 0,
        })
    }

    /// Whether the connection already carried a request (so an early close may be a stale
    /// keep-alive connection rather than a failed server).
    pub fn reused(&self) -> bool {
        self.used > 0
    }

    /// Sends `request` and reads its answer. Returns whether the connection can be kept.
    pub async fn exchange(&mut self, request: &[u8]) -> Result<(Answer, bool), LinkError> {
        self.used += 1;
        self.buf.clear();
        if let Err(e) = self.stream.write_all(request).await {
            return Err(LinkError::ClosedBeforeAnswer(format!("send failed: {e}")));
        }
        let head = loop {
            if let Some(head) = response::parse_head(&self.buf).map_err(LinkError::Failed)? {
                break head;
            }
            if !self.fill(MAX_HEAD_BYTES + 1).await? {
                return Err(if self.buf.is_empty() {
                    LinkError::ClosedBeforeAnswer("connection closed by the server".into())
                } else {
                    LinkError::Failed("closed in the middle of an answer".into())
                });
            }
        };
        let answer = self.read_body(head).await;
        self.buf = Vec::new();
        answer
    }

    async fn read_body(&mut self, head: Head) -> Result<(Answer, bool), LinkError> {
        let mut closed = false;
        loop {
            let rest = &self.buf[head.len..];
            let body = response::body(head.framing, rest, closed, MAX_BODY_BYTES)
                .map_err(LinkError::Failed)?;
            if let Some(body) = body {
                // Bytes after the answer were never asked for: the connection is out of step.
                let keep = head.keep_alive && !closed && body.used == rest.len();
                let answer = Answer {
                    status: head.status,
                    set_cookies: head.set_cookies,
                    csrf: head.csrf,
                    body: body.bytes.into_owned(),
                };
                return Ok((answer, keep));
            }
            if closed {
                return Err(LinkError::Failed(
                    "closed in the middle of an answer".into(),
                ));
            }
            closed = !self.fill(head.len + MAX_BODY_BYTES + 1).await?;
        }
    }

    /// Reads more into the buffer, at most `limit` bytes in all; false at the end of the stream.
    /// The buffer is allocated once bytes are there to read.
    async fn fill(&mut self, limit: usize) -> Result<bool, LinkError> {
        if self.buf.len() >= limit {
            return Err(LinkError::Failed("answer too large".into()));
        }
        loop {
            let ready = self.stream.readable().await;
            if let Err(e) = ready {
                return Err(self.receive_failed(e));
            }
            if self.buf.capacity() == 0 {
                self.buf.reserve(INITIAL_BUFFER);
            } else if self.buf.len() == self.buf.capacity() {
                self.buf
                    .reserve(self.buf.capacity().min(limit - self.buf.len()));
            }
            match self.stream.try_read_buf(&mut self.buf) {
                Ok(n) => return Ok(n > 0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(self.receive_failed(e)),
            }
        }
    }

    fn receive_failed(&self, e: io::Error) -> LinkError {
        let text = format!("receive failed: {e}");
        if self.buf.is_empty() {
            LinkError::ClosedBeforeAnswer(text)
        } else {
            LinkError::Failed(text)
        }
    }
}
