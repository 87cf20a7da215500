//! A lean HTTP/1.1 client for one desktop: its own keep-alive connections to its origin — one
//! for requests, a second only while a long-poll holds the first, as a browser does — and
//! requests written into reused buffers. A swarm of thousands costs little more than the bytes
//! on the wire (the simulator must never be the bottleneck).
//!
//! [`request`] and [`response`] are the pure encoding and parsing; [`link`] is one connection.

pub mod link;
pub mod origin;
pub mod request;
pub mod response;

use std::time::Duration;

pub use link::{Answer, Link};
pub use origin::Origin;
pub use request::{Method, Request};

use link::LinkError;

/// Idle connections a desktop keeps: the one for requests and the one a long-poll returns.
const MAX_IDLE: usize = 2;

/// The idle connections of one desktop.
#[derive(Default)]
pub struct Links {
    idle: Vec<Link>,
}

impl Links {
    /// The connection used last, if any is idle.
    pub fn take(&mut self) -> Option<Link> {
        self.idle.pop()
    }

    /// Gives back a connection that can carry another request.
    pub fn put(&mut self, link: Link) {
        if self.idle.len() < MAX_IDLE {
            self.idle.push(link);
        }
    }
}

/// An exchange done: the answer, and the connection when it can carry another request.
pub struct Exchanged {
    pub answer: Result<Answer, String>,
    pub link: Option<Link>,
}

/// Sends `request` on `link` (or a new connection to `origin`) and reads the answer, within
/// `timeout` in all. A kept-alive connection the server had closed meanwhile is replaced once, as
/// browsers do.
pub async fn exchange(
    origin: &Origin,
    link: Option<Link>,
    request: &[u8],
    timeout: Duration,
) -> Exchanged {
    let attempt = async {
        let mut link = link;
        loop {
            let mut current = match link.take() {
                Some(l) => l,
                None => Link::open(origin.authority())
                    .await
                    .map_err(|e| format!("connect failed: {e}"))?,
            };
            match current.exchange(request).await {
                Ok((answer, keep)) => return Ok((answer, keep.then_some(current))),
                Err(LinkError::ClosedBeforeAnswer(_)) if current.reused() => continue,
                Err(e) => return Err(e.text()),
            }
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok((answer, link))) => Exchanged {
            answer: Ok(answer),
            link,
        },
        Ok(Err(e)) => Exchanged {
            answer: Err(e),
            link: None,
        },
        Err(_) => Exchanged {
            answer: Err("timeout".into()),
            link: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n";

    /// A server that takes `connections` connections, reads one request on each, and answers it
    /// (`answer`) or not, then closes.
    async fn server(connections: usize, answer: bool) -> (Origin, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = Origin::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let task = tokio::spawn(async move {
            for _ in 0..connections {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf).await;
                if answer {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                        .await;
                }
            }
        });
        (origin, task)
    }

    #[tokio::test]
    async fn a_kept_connection_the_server_closed_meanwhile_is_replaced_once() {
        let (origin, server) = server(2, true).await;
        let timeout = Duration::from_secs(5);
        let first = exchange(&origin, None, REQUEST, timeout).await;
        assert_eq!(first.answer.unwrap().body, b"{}");
        let kept = first
            .link
            .expect("HTTP/1.1 with a length keeps the connection");
        let second = exchange(&origin, Some(kept), REQUEST, timeout).await;
        assert_eq!(
            second.answer.unwrap().status,
            200,
            "sent again on a new one"
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_new_connection_closed_without_an_answer_fails() {
        let (origin, server) = server(1, false).await;
        let done = exchange(&origin, None, REQUEST, Duration::from_secs(5)).await;
        assert!(done.answer.is_err());
        assert!(done.link.is_none());
        server.await.unwrap();
    }
}
