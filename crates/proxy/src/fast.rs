//! The fast path of a client connection: requests without a body or with a `Content-Length`
//! one are read, forwarded and answered by the client connection's own task, upstream sockets
//! included, with the heads parsed and re-encoded as bytes ([`crate::h1`]). Per request that is one read and one write
//! on each side and no task hand-off, where hyper's server and client took two hand-offs, a
//! header map per head and a channel per body.
//!
//! The first request the fast path does not take ([`h1::Request::General`]) hands the
//! connection, with the bytes already read, to the general hyper path for good.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::accept::{log_timeout, Client, MAX_HEADER_BYTES};
use crate::attempts::{AttemptError, Attempts, Failure};
use crate::balancer::RouteKey;
use crate::deadline::Deadline;
use crate::error_page::error_page_body;
use crate::framing::BodyCodec;
use crate::h1::{self, Framing, RequestHead};
use crate::link::Link;
use crate::shared::Shared;

/// Largest upstream response head read; beyond it the answer is an invalid header.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// How a client connection left the fast path.
pub enum Outcome {
    Closed,
    /// For the general path, with the bytes read but not yet handled.
    General(BytesMut),
}

/// What one client connection's exchanges use, kept from request to request.
struct Buffers {
    /// `proxy_read_timeout` of the current upstream read.
    upstream_deadline: Deadline,
    /// Bytes from the upstream.
    upstream: BytesMut,
    /// The request sent upstream, body included (kept for the next peer's attempt).
    request: Vec<u8>,
    /// What goes to the client next.
    out: Vec<u8>,
}

/// Serves `stream` until it closes or needs the general path.
pub async fn serve(
    shared: &Shared,
    stream: &mut TcpStream,
    client: &Client,
    worker: usize,
) -> Outcome {
    // Bytes from the client. The buffers start small and grow to what the traffic needs: most
    // connections are idle keep-alive ones.
    let mut input = BytesMut::with_capacity(1024);
    let mut bufs = Buffers {
        upstream_deadline: Deadline::new(Instant::now() + shared.cfg.proxy_read_timeout),
        upstream: BytesMut::new(),
        request: Vec::new(),
        out: Vec::new(),
    };
    // nginx's client_header_timeout, which here also bounds an idle keep-alive client.
    let header_timeout = shared.cfg.client_header_timeout;
    let body_limit = shared.cfg.client_max_body_size;
    let mut deadline = Deadline::new(Instant::now() + header_timeout);
    loop {
        let mut slots = h1::header_slots();
        let step = match h1::parse_request(&input, &mut slots) {
            h1::Request::Partial => Step::Head,
            h1::Request::General => return Outcome::General(input),
            // nginx answers 431; the general path does it the same way.
            h1::Request::Ready(head) if h1::nginx_head_len(&head) > MAX_HEADER_BYTES => {
                return Outcome::General(input)
            }
            // nginx answers 413 and closes; so does the general path, and such requests are
            // too rare to answer twice.
            h1::Request::Ready(head) if head.body_len > body_limit as u64 => {
                return Outcome::General(input)
            }
            h1::Request::Ready(head) => {
                // At most the head and `client_max_body_size` (checked above).
                let end = head.len + head.body_len as usize;
                match input.get(head.len..end) {
                    // The head is parsed again once the body is in: the head borrows `input`,
                    // which has to grow, and a body spread over reads is the uncommon case.
                    None => Step::Body(end),
                    Some(body) => {
                        let keep =
                            forward(shared, stream, client, worker, &head, body, &mut bufs).await;
                        Step::Done(end, keep)
                    }
                }
            }
        };
        // What is read next, for the log line of a client that times out.
        let phase = match step {
            Step::Done(end, keep) => {
                if !keep {
                    return Outcome::Closed;
                }
                input.advance(end);
                deadline.set(Instant::now() + header_timeout);
                continue;
            }
            Step::Head => {
                if input.len() > MAX_HEADER_BYTES {
                    return Outcome::General(input);
                }
                reserve(&mut input, 1024);
                "header"
            }
            Step::Body(end) => {
                // nginx buffers the whole body before it connects upstream, which is what
                // lets it replay the request on the next peer.
                let missing = end - input.len();
                reserve(&mut input, missing);
                deadline.set(Instant::now() + shared.cfg.client_body_timeout);
                "body"
            }
        };
        // A client that closes, fails or times out is closed without a word (nginx:
        // `client_header_timeout` and `client_body_timeout`, logged as 408).
        match deadline.run(stream.read_buf(&mut input)).await {
            None => {
                log_timeout(client.addr, phase);
                return Outcome::Closed;
            }
            Some(Ok(0) | Err(_)) => return Outcome::Closed,
            Some(Ok(_)) => {}
        }
    }
}

/// What the connection does after parsing what it has read.
enum Step {
    /// Reads more of the request head.
    Head,
    /// Reads more of the body, which ends at this offset of the input.
    Body(usize),
    /// A request of this many bytes was answered; whether the connection stays open.
    Done(usize, bool),
}

/// Forwards one request and passes its response on; whether the client connection stays open.
async fn forward(
    shared: &Shared,
    stream: &mut TcpStream,
    client: &Client,
    worker: usize,
    head: &RequestHead<'_, '_>,
    body: &[u8],
    bufs: &mut Buffers,
) -> bool {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let g = &shared.group;
    let key = RouteKey {
        cookie: g.cfg.route_cookie().and_then(|name| head.cookie(name)),
        client_ip: Some(client.addr.ip()),
    };
    let learn = g.cfg.learned_cookie();
    h1::encode_request(&mut bufs.request, head, client.ip.as_bytes(), body);
    let access_log = tracing::enabled!(target: "proxy::access", tracing::Level::INFO);
    let started = access_log.then(Instant::now);

    let mut attempts = Attempts::begin(shared, key, worker);
    let answered = loop {
        let Some(peer) = attempts.next_peer() else {
            break None;
        };
        match exchange(shared, peer, head, bufs, learn).await {
            Ok(a) => break Some((peer, a)),
            Err(e) => {
                if !attempts.failed(peer, &e, head.method, head.target) {
                    break None;
                }
            }
        }
    };
    let Some((peer, (mut link, answer))) = answered else {
        let status = attempts.error_status();
        if let Some(started) = started {
            access(client, head, &attempts, status.as_u16(), started);
        }
        return write_error(stream, status, head.keep_alive, &mut bufs.out).await;
    };
    attempts.succeeded(peer);
    let out = &mut bufs.out;
    if let Some(cookie) = attempts.stick(peer, answer.session.as_deref()) {
        h1::put_header(out, b"set-cookie", cookie.as_bytes());
    }
    if !head.keep_alive {
        h1::put_header(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    if let Some(started) = started {
        access(client, head, &attempts, answer.code, started);
    }
    bufs.upstream.advance(answer.head_len);
    let read_timeout = shared.cfg.proxy_read_timeout;
    match pass_body(stream, &mut link, answer.framing, bufs, read_timeout).await {
        Ok(clean) => {
            if clean && answer.reusable {
                link.reused = true;
                g.idle_links.put(peer, link);
            }
            head.keep_alive
        }
        Err(()) => false,
    }
}

/// What the fast path keeps of an upstream response head (the client's head is in `out`).
struct Answer {
    head_len: usize,
    code: u16,
    framing: Framing,
    reusable: bool,
    /// The sticky cookie the response sets, for `sticky learn`.
    session: Option<String>,
}

/// One attempt on `peer`: a pooled connection if one is idle, else a new one. On success the
/// response head is at the front of `bufs.upstream` and the client's head (without its blank
/// line) in `bufs.out`.
async fn exchange(
    shared: &Shared,
    peer: usize,
    head: &RequestHead<'_, '_>,
    bufs: &mut Buffers,
    learn: Option<&str>,
) -> Result<(Link, Answer), AttemptError> {
    let g = &shared.group;
    // Bounded: every pass that goes round again took one connection out of the pool.
    let mut pooled = g.idle_links.take(peer);
    if pooled.is_none() {
        // Under load, responses and requests come in batches: the responses of this turn of the
        // event loop are about to give their connections back, and taking a new one before
        // they do makes the pool overflow and close as many as it opens (nginx pays for that
        // at -c200 too). One turn later one of them is usually there.
        tokio::task::yield_now().await;
        pooled = g.idle_links.take(peer);
    }
    loop {
        let mut link = match pooled.take() {
            Some(l) => l,
            None => Link {
                stream: shared.connect_stream(peer).await?,
                reused: false,
            },
        };
        bufs.upstream.clear();
        let deadline = &mut bufs.upstream_deadline;
        deadline.set(Instant::now() + shared.cfg.proxy_read_timeout);
        let read = send_and_read_head(
            &mut link,
            head.is_head(),
            &bufs.request,
            &mut bufs.upstream,
            &mut bufs.out,
            learn,
        );
        match deadline.run(read).await {
            None => return Err(AttemptError::sent(Failure::Timeout)),
            Some(Ok(answer)) => return Ok((link, answer)),
            // A kept-alive connection the upstream closed just before it got the request: the
            // next pooled one, or a fresh one, unless the request may not be sent twice.
            Some(Err(HeadError::Closed)) if link.reused && !h1::is_non_idempotent(head.method) => {
                pooled = g.idle_links.take(peer);
            }
            Some(Err(HeadError::Closed | HeadError::Broken)) => {
                return Err(AttemptError::sent(Failure::Error))
            }
            Some(Err(HeadError::Invalid)) => {
                return Err(AttemptError::sent(Failure::InvalidHeader))
            }
        }
    }
}

enum HeadError {
    /// The connection failed before a single byte of response.
    Closed,
    /// It failed in the middle of the head.
    Broken,
    Invalid,
}

/// Sends `request` and reads the response head into `upstream`; the client's head goes to
/// `out`.
async fn send_and_read_head(
    link: &mut Link,
    head_request: bool,
    request: &[u8],
    upstream: &mut BytesMut,
    out: &mut Vec<u8>,
    learn: Option<&str>,
) -> Result<Answer, HeadError> {
    link.stream
        .write_all(request)
        .await
        .map_err(|_| HeadError::Closed)?;
    let mut received = false;
    loop {
        reserve(upstream, 4096);
        match link.stream.read_buf(upstream).await {
            Ok(0) | Err(_) if !received => return Err(HeadError::Closed),
            Ok(0) | Err(_) => return Err(HeadError::Broken),
            Ok(_) => received = true,
        }
        loop {
            let mut slots = h1::header_slots();
            let interim = match h1::parse_response(upstream, &mut slots, head_request) {
                h1::Response::Partial if upstream.len() > MAX_RESPONSE_HEAD => {
                    return Err(HeadError::Invalid)
                }
                h1::Response::Partial => break,
                h1::Response::Invalid => return Err(HeadError::Invalid),
                h1::Response::Interim(len) => len,
                h1::Response::Ready(resp) => {
                    h1::encode_response(out, &resp);
                    return Ok(Answer {
                        head_len: resp.len,
                        code: resp.code,
                        framing: resp.framing,
                        reusable: resp.reusable,
                        session: learn.and_then(|name| resp.set_cookie(name)),
                    });
                }
            };
            upstream.advance(interim);
        }
    }
}

/// Passes the response body on, `bufs.out` (the head) first, with `proxy_read_timeout` between
/// two reads; whether the upstream connection ended clean (nothing read beyond the body). An
/// error closes the client connection, as the response cannot be completed.
async fn pass_body(
    client: &mut TcpStream,
    link: &mut Link,
    framing: Framing,
    bufs: &mut Buffers,
    idle: Duration,
) -> Result<bool, ()> {
    let mut body = BodyCodec::new(framing);
    loop {
        let taken = body.pass(&bufs.upstream, &mut bufs.out).map_err(drop)?;
        bufs.upstream.advance(taken);
        if !bufs.out.is_empty() {
            client.write_all(&bufs.out).await.map_err(drop)?;
            bufs.out.clear();
        }
        if body.done() {
            return Ok(bufs.upstream.is_empty());
        }
        reserve(&mut bufs.upstream, 4096);
        bufs.upstream_deadline.set(Instant::now() + idle);
        let read = link.stream.read_buf(&mut bufs.upstream);
        match bufs.upstream_deadline.run(read).await {
            None => {
                tracing::warn!("upstream timed out while reading response body");
                return Err(());
            }
            Some(Ok(0)) => {
                body.eof(&mut bufs.out).map_err(drop)?;
                client.write_all(&bufs.out).await.map_err(drop)?;
                bufs.out.clear();
                return Ok(false);
            }
            Some(Ok(_)) => {}
            Some(Err(_)) => return Err(()),
        }
    }
}

/// Answers with nginx's error page; whether the client connection stays open.
async fn write_error(
    stream: &mut TcpStream,
    status: StatusCode,
    keep_alive: bool,
    out: &mut Vec<u8>,
) -> bool {
    let page = error_page_body(status);
    out.clear();
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {}\r\ncontent-type: text/html\r\ncontent-length: {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            page.len()
        )
        .as_bytes(),
    );
    if !keep_alive {
        h1::put_header(out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(page.as_bytes());
    let ok = stream.write_all(out).await.is_ok();
    out.clear();
    ok && keep_alive
}

/// The access line of a request (`proxy::access` target), as the general path writes it.
fn access(client: &Client, head: &RequestHead, attempts: &Attempts, status: u16, started: Instant) {
    tracing::info!(
        target: "proxy::access",
        client = %client.addr.ip(),
        method = %head.method,
        uri = %head.target,
        upstream = attempts.last_peer().map_or("-", |p| attempts.peer_name(p)),
        status,
        tries = attempts.tries(),
        ms = started.elapsed().as_millis() as u64,
    );
}

/// Makes room for at least `n` more bytes (reusing the space of consumed ones when it can).
fn reserve(buf: &mut BytesMut, n: usize) {
    if buf.capacity() - buf.len() < n {
        buf.reserve(n);
    }
}
