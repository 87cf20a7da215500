//! The general path: hyper's HTTP/1.1 server and client, for every request the fast path leaves
//! to it (chunked bodies, `Expect`, upgrades, HTTP/1.0, bad or oversized heads). Reads the whole
//! request body, then walks the peers ([`Attempts`]) over pooled hyper connections, and streams
//! the response back with `proxy_read_timeout` between reads.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use crate::accept::{log_timeout, Client, MAX_HEADER_BYTES};
use crate::attempts::{AttemptError, Attempts, Failure};
use crate::balancer::RouteKey;
use crate::body::{full, ProxyBody, TimedBody};
use crate::error_page::{closing_error, error_page};
use crate::h1;
use crate::headers::{field_values, strip_hop_by_hop, upgrade_requested, X_FORWARDED_FOR};
use crate::pool::{Lease, Upstream};
use crate::rewind::Rewind;
use crate::shared::Shared;
use crate::tunnel;

/// Serves a client connection with hyper's HTTP/1.1 server until it closes.
pub async fn serve(shared: Arc<Shared>, io: Rewind<TcpStream>, client: Client, worker: usize) {
    let header_timeout = shared.cfg.client_header_timeout;
    let addr = client.addr;
    let service = hyper::service::service_fn(move |req| {
        let (shared, client) = (shared.clone(), client.clone());
        async move { handle(&shared, req, &client, worker).await }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(2 * MAX_HEADER_BYTES)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    match conn.await {
        // nginx closes such a client without a word and logs 408. hyper runs the same timer
        // while a keep-alive client is idle between requests, so those end here too (nginx:
        // keepalive_timeout, not logged).
        Err(e) if e.is_timeout() => log_timeout(addr, "header"),
        Err(e) => tracing::debug!(client = %addr, "client connection: {e}"),
        Ok(()) => {}
    }
}

/// A client too slow to send its request body (`client_body_timeout`): the service fails, so
/// hyper closes the connection without a response, as nginx does.
#[derive(Debug, thiserror::Error)]
#[error("client timed out sending the request body")]
struct ClientTimeout;

/// One request, with its access line.
async fn handle(
    shared: &Shared,
    req: Request<Incoming>,
    client: &Client,
    worker: usize,
) -> Result<Response<ProxyBody>, ClientTimeout> {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    // The access line costs a copy of the method and URI and a formatted line per request:
    // skip it all when nobody listens (nginx `access_log off`).
    if !tracing::enabled!(target: "proxy::access", tracing::Level::INFO) {
        return proxy(shared, req, client, worker).await.map(|r| r.0);
    }
    let started = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let (resp, upstream, tries) = match proxy(shared, req, client, worker).await {
        Ok(r) => r,
        Err(e) => {
            log_timeout(client.addr, "body");
            return Err(e);
        }
    };
    tracing::info!(
        target: "proxy::access",
        client = %client.addr.ip(),
        method = %method,
        uri = %uri,
        upstream = upstream.map_or("-", |p| shared.group.peer_name(p)),
        status = resp.status().as_u16(),
        tries,
        ms = started.elapsed().as_millis() as u64,
    );
    Ok(resp)
}

/// The response, the peer that gave it and the number of attempts; an error when the client
/// was too slow with its body.
async fn proxy(
    shared: &Shared,
    mut req: Request<Incoming>,
    client: &Client,
    worker: usize,
) -> Result<(Response<ProxyBody>, Option<usize>, u32), ClientTimeout> {
    if head_len(&req) > MAX_HEADER_BYTES {
        return Ok((
            closing_error(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
            None,
            0,
        ));
    }
    // WebSocket (any `Upgrade`): passed on with `Connection: upgrade`, as nginx does with
    // `proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade`.
    let upgrade = upgrade_requested(req.headers());
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    // nginx reads the whole request body before it connects upstream
    // (proxy_request_buffering on), which is what lets it replay the request.
    let limit = shared.cfg.client_max_body_size;
    let body = match read_body(body, limit, shared.cfg.client_body_timeout).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return Ok((closing_error(StatusCode::PAYLOAD_TOO_LARGE), None, 0))
        }
        Err(BodyError::Bad) => return Ok((closing_error(StatusCode::BAD_REQUEST), None, 0)),
        Err(BodyError::Timeout) => return Err(ClientTimeout),
    };
    let mut headers = parts.headers;
    let g = &shared.group;
    let key = RouteKey {
        cookie: g
            .cfg
            .route_cookie()
            .and_then(|name| h1::request_cookie(field_values(&headers, header::COOKIE), name)),
        client_ip: Some(client.addr.ip()),
    };
    strip_hop_by_hop(&mut headers);
    // The body is already read (and `100 Continue` sent by hyper when it was asked for).
    headers.remove(header::EXPECT);
    if let Some(proto) = upgrade {
        headers.insert(header::UPGRADE, proto);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let xff = match headers.get(X_FORWARDED_FOR).map(HeaderValue::as_bytes) {
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + client.ip.len());
            v.extend_from_slice(prev);
            v.extend_from_slice(b", ");
            v.extend_from_slice(client.ip.as_bytes());
            HeaderValue::from_bytes(&v).ok()
        }
        None => Some(client.ip.clone()),
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    headers.remove(header::CONTENT_LENGTH);
    if !body.is_empty()
        || h1::is_non_idempotent(parts.method.as_str())
        || parts.method == Method::PUT
    {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    let mut out = Outgoing {
        method: parts.method,
        uri: origin_form(parts.uri),
        headers,
        body,
    };

    let mut attempts = Attempts::begin(shared, key, worker);
    loop {
        let Some(peer) = attempts.next_peer() else {
            let status = attempts.error_status();
            return Ok((error_page(status), attempts.last_peer(), attempts.tries()));
        };
        match attempt(shared, peer, out.request(attempts.is_last())).await {
            Ok((mut resp, lease)) => {
                attempts.succeeded(peer);
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    if let Some(client_upgrade) = client_upgrade {
                        // The connection becomes the tunnel: it never goes back to the pool.
                        drop(lease);
                        let upstream_upgrade = hyper::upgrade::on(&mut resp);
                        tunnel::spawn(
                            client_upgrade,
                            upstream_upgrade,
                            shared.cfg.proxy_read_timeout,
                            g.links[peer].clone(),
                        );
                        let (parts, _) = resp.into_parts();
                        return Ok((
                            Response::from_parts(parts, full(Bytes::new())),
                            Some(peer),
                            attempts.tries(),
                        ));
                    }
                }
                let resp = finish(shared, resp, lease, peer, &attempts);
                return Ok((resp, Some(peer), attempts.tries()));
            }
            Err(e) => {
                let uri = out.uri.to_string();
                if !attempts.failed(peer, &e, out.method.as_str(), &uri) {
                    let status = attempts.error_status();
                    return Ok((error_page(status), Some(peer), attempts.tries()));
                }
            }
        }
    }
}

/// Applies stickiness to a response from `peer` and turns it into the client response.
fn finish(
    shared: &Shared,
    resp: Response<Incoming>,
    lease: Lease,
    peer: usize,
    attempts: &Attempts,
) -> Response<ProxyBody> {
    let g = &shared.group;
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let session = g.cfg.learned_cookie().and_then(|name| {
        h1::response_cookie(field_values(&parts.headers, header::SET_COOKIE), name)
    });
    if let Some(c) = attempts.stick(peer, session.as_deref()) {
        if let Ok(v) = HeaderValue::try_from(c) {
            parts.headers.append(header::SET_COOKIE, v);
        }
    }
    let body = TimedBody::new(body, shared.cfg.proxy_read_timeout, lease);
    Response::from_parts(parts, BodyExt::boxed(body))
}

/// One attempt on `peer`: a pooled connection if one is idle, else a new one. The lease
/// returns the connection to the pool once the response body has been read.
async fn attempt(
    shared: &Shared,
    peer: usize,
    mut req: Request<Full<Bytes>>,
) -> Result<(Response<Incoming>, Lease), AttemptError> {
    let g = &shared.group;
    // Bounded: every pass that goes round again took one connection out of the pool.
    let mut pooled = g.pool.take(peer);
    loop {
        let reused = pooled.is_some();
        let mut conn = match pooled.take() {
            Some(mut c) => {
                // A pooled connection's last response is complete, so hyper is about to
                // accept the next request on it, or reports it closed.
                if c.ready().await.is_err() {
                    pooled = g.pool.take(peer);
                    continue;
                }
                c
            }
            None => connect(shared, peer).await?,
        };
        let sent = timeout(shared.cfg.proxy_read_timeout, conn.try_send_request(req)).await;
        match sent {
            Ok(Ok(resp)) => return Ok((resp, Lease::new(g.pool.clone(), peer, conn))),
            Ok(Err(mut e)) => {
                let unsent = e.take_message();
                let not_sent = unsent.is_some();
                if let (Some(back), true) = (unsent, reused) {
                    // A keep-alive connection the upstream closed: the next pooled one, or
                    // a fresh one.
                    req = back;
                    pooled = g.pool.take(peer);
                    continue;
                }
                let failure = if e.error().is_parse() {
                    Failure::InvalidHeader
                } else {
                    Failure::Error
                };
                tracing::debug!(peer, "upstream: {}", e.error());
                return Err(AttemptError {
                    failure,
                    sent: !not_sent,
                });
            }
            Err(_) => {
                return Err(AttemptError {
                    failure: Failure::Timeout,
                    sent: true,
                })
            }
        }
    }
}

/// A new hyper client connection to `peer`.
async fn connect(shared: &Shared, peer: usize) -> Result<Upstream, AttemptError> {
    let stream = shared.connect_stream(peer).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| AttemptError::unsent(Failure::Error))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("upstream connection: {e}");
        }
    });
    Ok(sender)
}

/// Why a request body could not be read.
enum BodyError {
    TooLarge,
    Bad,
    Timeout,
}

/// Reads a whole request body, at most `limit` bytes, each read within `idle`.
async fn read_body(body: Incoming, limit: usize, idle: Duration) -> Result<Bytes, BodyError> {
    // Most requests (GET) have none: no timer to set up.
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let mut body = Limited::new(body, limit);
    let mut buf = bytes::BytesMut::new();
    loop {
        match timeout(idle, body.frame()).await {
            Err(_) => return Err(BodyError::Timeout),
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
            Ok(Some(Err(e))) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(BodyError::TooLarge)
            }
            Ok(Some(Err(_))) => return Err(BodyError::Bad),
        }
    }
}

/// The parts of the client request kept to replay it on the next peer.
struct Outgoing {
    method: Method,
    uri: hyper::Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Outgoing {
    /// The request for one attempt: a copy while another attempt may follow, else the headers
    /// themselves.
    fn request(&mut self, last: bool) -> Request<Full<Bytes>> {
        let headers = if last {
            std::mem::take(&mut self.headers)
        } else {
            self.headers.clone()
        };
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = headers;
        req
    }
}

/// The request target an upstream gets: the origin form (`/path?query`) whatever form the
/// client used.
fn origin_form(uri: hyper::Uri) -> hyper::Uri {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return uri;
    }
    let mut parts = hyper::http::uri::Parts::default();
    parts.path_and_query = Some(
        uri.path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    hyper::Uri::from_parts(parts).unwrap_or_else(|_| hyper::Uri::from_static("/"))
}

/// Bytes of the request line's target and the header fields, as nginx counts them against
/// `large_client_header_buffers`.
fn head_len<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(0, |pq| pq.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.scheme_str().map_or(0, |s| s.len() + 3);
    target
        + req
            .headers()
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>()
}
