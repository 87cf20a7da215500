//! The proxy itself: accepts clients, picks a peer with the group's [`Balancer`], forwards over
//! pooled keep-alive connections (through the fault layer) and applies nginx's
//! `proxy_next_upstream` rules. A client connection starts on the fast path (`fast`) and moves
//! here, to hyper's server and client (the general path), at its first request that needs it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use netfault::tcp::FaultStream;
use netfault::Faults;
use nodekit::control::BoxFuture;
use nodekit::{serve_control, ControlServer, ControlTarget, Journal};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{timeout, Instant};

use crate::attempts::{AttemptError, Attempts, Failure};
use crate::balancer::{Balancer, RouteKey};
use crate::body::{full, ProxyBody, TimedBody};
use crate::config::{Config, UpstreamConfig};
use crate::fast;
use crate::h1;
use crate::link::Link;
use crate::pool::{Lease, Pool, Upstream};
use crate::rewind::Rewind;

/// Largest request head accepted (nginx `large_client_header_buffers 4 8k`); beyond it: 431.
pub(crate) const MAX_HEADER_BYTES: usize = 32 * 1024;

/// One upstream group at run time.
pub(crate) struct Group {
    pub(crate) cfg: UpstreamConfig,
    /// One balancer per worker (nginx without `zone`), or one shared by all (`zone`).
    balancers: Vec<Mutex<Balancer>>,
    pub(crate) addrs: Vec<SocketAddr>,
    links: Vec<String>,
    /// Idle connections of the general path (hyper's).
    pool: Arc<Pool<Upstream>>,
    /// Idle connections of the fast path (plain sockets).
    pub(crate) idle_links: Arc<Pool<Link>>,
}

impl Group {
    /// The balancer the worker serving a client connection uses.
    pub(crate) fn balancer(&self, worker: usize) -> &Mutex<Balancer> {
        &self.balancers[worker % self.balancers.len()]
    }

    /// The name of a peer in logs, journal and `/status`.
    pub(crate) fn peer_name(&self, peer: usize) -> &str {
        self.cfg.servers[peer].display_name()
    }
}

pub(crate) struct Shared {
    pub(crate) cfg: Config,
    faults: Faults,
    pub(crate) journal: Journal,
    pub(crate) group: Group,
    pub(crate) requests: AtomicU64,
    connections: AtomicU64,
}

/// The running services of a node (absent after a crash).
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The proxy node: configuration, fault layer, journal and its current services. It is the
/// [`ControlTarget`] of the control plane and backs [`ProxyHandle`].
pub struct ProxyNode {
    cfg: Config,
    faults: Faults,
    journal: Journal,
    local_addr: SocketAddr,
    shared: Mutex<Arc<Shared>>,
    running: tokio::sync::Mutex<Option<Running>>,
}

/// A running proxy.
pub struct ProxyHandle {
    node: Arc<ProxyNode>,
    control: Option<ControlServer>,
}

impl ProxyHandle {
    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.node.local_addr
    }

    /// The control port, when the configuration asks for one.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control.as_ref().map(|c| c.local_addr())
    }

    /// The fault layer of the proxy's upstream links (`http:{name}-{server}`).
    pub fn faults(&self) -> &Faults {
        &self.node.faults
    }

    pub fn journal(&self) -> &Journal {
        &self.node.journal
    }

    pub fn node(&self) -> Arc<ProxyNode> {
        self.node.clone()
    }

    /// Routing state as `GET /state` shows it: each peer's state and counters.
    pub fn status(&self) -> Value {
        self.node.status()
    }

    /// Closes every socket abruptly (clients and upstreams); `restart` brings it back.
    pub async fn crash(&self) {
        self.node.crash().await;
    }

    /// Starts again on the same address with fresh routing state.
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.node.restart().await
    }

    /// Stops accepting and closes every client connection.
    pub async fn shutdown(self) {
        self.node.stop().await;
    }
}

/// Starts the proxy with its own fault layer.
pub async fn start(config: Config) -> anyhow::Result<ProxyHandle> {
    start_with_faults(config, Faults::new()).await
}

/// Starts the proxy with the given fault layer (shared with the node's control plane).
pub async fn start_with_faults(mut config: Config, faults: Faults) -> anyhow::Result<ProxyHandle> {
    config.validate()?;
    let journal = Journal::new(&config.name, nodekit::journal::DEFAULT_CAPACITY);
    let listener = TcpListener::bind(config.listen).await?;
    let local_addr = listener.local_addr()?;
    config.listen = local_addr;
    let shared = build_shared(&config, &faults, &journal).await?;
    let node = Arc::new(ProxyNode {
        cfg: config,
        faults,
        journal,
        local_addr,
        shared: Mutex::new(shared.clone()),
        running: tokio::sync::Mutex::new(None),
    });
    *node.running.lock().await = Some(run(listener, shared));
    let control = match node.cfg.control {
        Some(addr) => Some(
            serve_control(addr, node.clone(), node.cfg.control_token.clone())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
        None => None,
    };
    tracing::info!(name = %node.cfg.name, %local_addr, "proxy listening");
    Ok(ProxyHandle { node, control })
}

async fn build_shared(
    config: &Config,
    faults: &Faults,
    journal: &Journal,
) -> anyhow::Result<Arc<Shared>> {
    let gcfg = config
        .pass_group()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no upstream group to proxy to"))?;
    let mut addrs = Vec::new();
    for s in &gcfg.servers {
        let addr = tokio::net::lookup_host(s.address.as_str())
            .await
            .map_err(|e| anyhow::anyhow!("server {}: {e}", s.address))?
            .next()
            .ok_or_else(|| anyhow::anyhow!("server {}: no address", s.address))?;
        addrs.push(addr);
    }
    let links = gcfg
        .servers
        .iter()
        .map(|s| format!("http:{}-{}", config.name, s.display_name()))
        .collect();
    let group = Group {
        balancers: (0..if gcfg.zone {
            1
        } else {
            config.worker_processes.max(1)
        })
            .map(|_| Mutex::new(Balancer::from_config(&gcfg)))
            .collect(),
        pool: Pool::new(addrs.len(), gcfg.keepalive),
        idle_links: Pool::new(addrs.len(), gcfg.keepalive),
        addrs,
        links,
        cfg: gcfg,
    };
    Ok(Arc::new(Shared {
        cfg: config.clone(),
        faults: faults.clone(),
        journal: journal.clone(),
        group,
        requests: AtomicU64::new(0),
        connections: AtomicU64::new(0),
    }))
}

fn run(listener: TcpListener, shared: Arc<Shared>) -> Running {
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, shared, stop_rx));
    Running { stop, task }
}

impl ProxyNode {
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn status(&self) -> Value {
        let shared = self.shared.lock().unwrap().clone();
        let mut v = shared.status();
        v["listen"] = json!(self.local_addr.to_string());
        v["running"] = json!(self.running.try_lock().map(|r| r.is_some()).unwrap_or(true));
        v
    }

    async fn stop(&self) {
        if let Some(r) = self.running.lock().await.take() {
            let _ = r.stop.send(true);
            let _ = r.task.await;
        }
    }

    /// Closes the listener, every client connection and (through the fault layer) every
    /// upstream connection.
    pub async fn crash(&self) {
        self.stop().await;
        self.faults.crash();
        self.journal
            .record("node.crashed", json!({ "node": self.cfg.name }));
    }

    /// Listens again on the same address with fresh routing state (a real restart).
    pub async fn restart(&self) -> anyhow::Result<()> {
        let mut running = self.running.lock().await;
        if let Some(r) = running.take() {
            let _ = r.stop.send(true);
            let _ = r.task.await;
        }
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.local_addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    tracing::debug!("rebind {}: {e}", self.local_addr);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let shared = build_shared(&self.cfg, &self.faults, &self.journal).await?;
        *self.shared.lock().unwrap() = shared.clone();
        *running = Some(run(listener, shared));
        self.journal
            .record("node.started", json!({ "node": self.cfg.name }));
        Ok(())
    }

    /// Prometheus text of the proxy's counters.
    pub fn metrics_text(&self) -> String {
        let shared = self.shared.lock().unwrap().clone();
        shared.metrics_text()
    }
}

impl ControlTarget for ProxyNode {
    fn node_name(&self) -> &str {
        &self.cfg.name
    }
    fn state(&self) -> BoxFuture<'_, Value> {
        Box::pin(async { self.status() })
    }
    fn journal(&self) -> &Journal {
        &self.journal
    }
    fn faults(&self) -> &Faults {
        &self.faults
    }
    fn metrics_text(&self) -> String {
        ProxyNode::metrics_text(self)
    }
    fn crash(&self) -> BoxFuture<'_, ()> {
        Box::pin(ProxyNode::crash(self))
    }
    fn restart(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(ProxyNode::restart(self))
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut accepted: usize = 0;
    // The client connections: dropped with the set when the node stops, which closes them all
    // (cheaper than each connection also waiting on `stop`, which costs on every wake-up).
    let mut connections = JoinSet::new();
    loop {
        let (stream, client) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            // Reaps finished connections.
            Some(_) = connections.join_next() => continue,
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        // nginx hands each connection to one worker; here they take turns.
        let worker = accepted;
        accepted = accepted.wrapping_add(1);
        connections.spawn(serve_client(shared, stream, Client::new(client), worker));
    }
}

/// A client connection: on the fast path while its requests allow, then on hyper's.
async fn serve_client(shared: Arc<Shared>, mut stream: TcpStream, client: Client, worker: usize) {
    if let fast::Outcome::General(read) = fast::serve(&shared, &mut stream, &client, worker).await {
        serve_general(shared, Rewind::new(read.freeze(), stream), client, worker).await;
    }
}

/// The general path: hyper's HTTP/1.1 server, for every request the fast path leaves to it.
async fn serve_general(shared: Arc<Shared>, io: Rewind<TcpStream>, client: Client, worker: usize) {
    let header_timeout = shared.cfg.client_header_timeout;
    let addr = client.addr;
    let service = hyper::service::service_fn(move |req| {
        let (shared, client) = (shared.clone(), client.clone());
        async move { shared.handle(req, &client, worker).await }
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

/// The client end of a connection.
#[derive(Clone)]
pub(crate) struct Client {
    pub(crate) addr: SocketAddr,
    /// Its address as `X-Forwarded-For` text, formatted once per connection.
    pub(crate) ip: HeaderValue,
}

impl Client {
    fn new(addr: SocketAddr) -> Self {
        let ip = HeaderValue::try_from(addr.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Client { addr, ip }
    }
}

/// The access line nginx writes for a client that timed out (`client_header_timeout`,
/// `client_body_timeout`): status 408, and the connection closed without a response.
pub(crate) fn log_timeout(client: SocketAddr, phase: &'static str) {
    tracing::info!(target: "proxy::access", client = %client.ip(), status = 408, phase, "client timed out");
}

/// A client too slow to send its request body (`client_body_timeout`): the service fails, so
/// hyper closes the connection without a response, as nginx does.
#[derive(Debug, thiserror::Error)]
#[error("client timed out sending the request body")]
struct ClientTimeout;

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

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The hop-by-hop headers (RFC 9110 §7.6.1), as names so that removing them parses nothing.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes the hop-by-hop headers and those named by `Connection`.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The `Upgrade` header of a request that asks for a protocol switch (`Connection: upgrade`).
fn upgrade_requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if asks {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// The blind tunnel after `101 Switching Protocols`: bytes both ways, half-closes passed on,
/// closed after `idle` without traffic in either direction (nginx `proxy_read_timeout`).
async fn tunnel<A, B>(a: A, b: B, idle: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let mut abuf = vec![0u8; 16 * 1024];
    let mut bbuf = vec![0u8; 16 * 1024];
    let (mut a_open, mut b_open) = (true, true);
    while a_open || b_open {
        tokio::select! {
            r = ar.read(&mut abuf), if a_open => match r {
                Ok(0) | Err(_) => {
                    a_open = false;
                    let _ = bw.shutdown().await;
                }
                Ok(n) => if bw.write_all(&abuf[..n]).await.is_err() { return },
            },
            r = br.read(&mut bbuf), if b_open => match r {
                Ok(0) | Err(_) => {
                    b_open = false;
                    let _ = aw.shutdown().await;
                }
                Ok(n) => if aw.write_all(&bbuf[..n]).await.is_err() { return },
            },
            _ = tokio::time::sleep(idle) => {
                tracing::debug!("tunnel idle for {idle:?}: closed");
                return;
            }
        }
    }
}

/// The values of the fields called `name`, as bytes.
fn field_values(headers: &HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &[u8]> {
    headers.get_all(name).into_iter().map(HeaderValue::as_bytes)
}

/// An error page after which the client connection is closed (its request was not read whole).
fn closing_error(status: StatusCode) -> Response<ProxyBody> {
    let mut resp = error_page(status);
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn error_page(status: StatusCode) -> Response<ProxyBody> {
    let mut resp = Response::new(full(error_page_body(status)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    resp
}

/// nginx's error page for `status`.
pub(crate) fn error_page_body(status: StatusCode) -> String {
    let line = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    format!(
        "<html>\r\n<head><title>{line}</title></head>\r\n<body>\r\n<center><h1>{line}</h1></center>\r\n<hr><center>drlab-proxy</center>\r\n</body>\r\n</html>\r\n"
    )
}

impl Shared {
    fn metrics_text(&self) -> String {
        let g = &self.group;
        let node = &self.cfg.name;
        let per_worker = g.balancers.len() > 1;
        let peers: Vec<(usize, crate::balancer::PeerStatus)> = g
            .balancers
            .iter()
            .enumerate()
            .flat_map(|(w, b)| {
                b.lock()
                    .unwrap()
                    .status(Instant::now())
                    .into_iter()
                    .map(move |p| (w, p))
            })
            .collect();
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, u64)>| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, v) in rows {
                out.push_str(&format!("{name}{{node=\"{node}\"{labels}}} {v}\n"));
            }
        };
        let peer_label = |(w, p): &(usize, crate::balancer::PeerStatus)| {
            let worker = if per_worker {
                format!(",worker=\"{w}\"")
            } else {
                String::new()
            };
            format!(",upstream=\"{}\",peer=\"{}\"{worker}", g.cfg.name, p.name)
        };
        family(
            "proxy_requests_total",
            "counter",
            "Client requests received.",
            vec![(String::new(), self.requests.load(Ordering::Relaxed))],
        );
        family(
            "proxy_upstream_connections_total",
            "counter",
            "Upstream connections opened.",
            vec![(String::new(), self.connections.load(Ordering::Relaxed))],
        );
        family(
            "proxy_peer_selected_total",
            "counter",
            "Times a peer was selected.",
            peers
                .iter()
                .map(|p| (peer_label(p), p.1.selected))
                .collect(),
        );
        family(
            "proxy_peer_failures_total",
            "counter",
            "Failed attempts (error, timeout, invalid header) per peer.",
            peers
                .iter()
                .map(|p| (peer_label(p), p.1.failures))
                .collect(),
        );
        family(
            "proxy_peer_up",
            "gauge",
            "1 when the peer can be selected, 0 while skipped or down.",
            peers
                .iter()
                .map(|p| (peer_label(p), u64::from(p.1.state == "up")))
                .collect(),
        );
        out
    }

    fn status(&self) -> Value {
        let g = &self.group;
        let now = Instant::now();
        let b = g.balancers[0].lock().unwrap();
        let peers = b.status(now);
        let workers: Vec<Value> = g
            .balancers
            .iter()
            .skip(1)
            .map(|w| json!(w.lock().unwrap().status(now)))
            .collect();
        json!({
            "name": self.cfg.name,
            "requests": self.requests.load(Ordering::Relaxed),
            "upstream_connections": self.connections.load(Ordering::Relaxed),
            "upstreams": [{
                "name": g.cfg.name,
                "sticky": g.cfg.sticky,
                "sticky_cookie": g.cfg.cookie_name(),
                "learned": b.learned_len(),
                "zone": g.balancers.len() == 1,
                // Worker 0's view; `other_workers` holds the rest when state is per worker.
                "peers": peers,
                "other_workers": workers,
            }],
        })
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        client: &Client,
        worker: usize,
    ) -> Result<Response<ProxyBody>, ClientTimeout> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        // The access line costs a copy of the method and URI and a formatted line per request:
        // skip it all when nobody listens (nginx `access_log off`).
        if !tracing::enabled!(target: "proxy::access", tracing::Level::INFO) {
            return self.proxy(req, client, worker).await.map(|r| r.0);
        }
        let started = Instant::now();
        let method = req.method().clone();
        let uri = req.uri().clone();
        let (resp, upstream, tries) = match self.proxy(req, client, worker).await {
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
            upstream = upstream.map_or("-", |p| self.group.peer_name(p)),
            status = resp.status().as_u16(),
            tries,
            ms = started.elapsed().as_millis() as u64,
        );
        Ok(resp)
    }

    /// The response, the peer that gave it and the number of attempts; an error when the client
    /// was too slow with its body.
    async fn proxy(
        &self,
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
        let limit = self.cfg.client_max_body_size;
        let body = match read_body(body, limit, self.cfg.client_body_timeout).await {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                return Ok((closing_error(StatusCode::PAYLOAD_TOO_LARGE), None, 0))
            }
            Err(BodyError::Bad) => return Ok((closing_error(StatusCode::BAD_REQUEST), None, 0)),
            Err(BodyError::Timeout) => return Err(ClientTimeout),
        };
        let mut headers = parts.headers;
        let g = &self.group;
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

        let mut attempts = Attempts::begin(self, key, worker);
        loop {
            let Some(peer) = attempts.next_peer() else {
                let status = attempts.error_status();
                return Ok((error_page(status), attempts.last_peer(), attempts.tries()));
            };
            match self.attempt(peer, out.request(attempts.is_last())).await {
                Ok((mut resp, lease)) => {
                    attempts.succeeded(peer);
                    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                        if let Some(client_upgrade) = client_upgrade {
                            // The connection becomes the tunnel: it never goes back to the pool.
                            drop(lease);
                            let upstream_upgrade = hyper::upgrade::on(&mut resp);
                            let idle = self.cfg.proxy_read_timeout;
                            let link = g.links[peer].clone();
                            tokio::spawn(async move {
                                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                                    Ok((c, u)) => {
                                        tunnel(TokioIo::new(c), TokioIo::new(u), idle).await;
                                        tracing::debug!(%link, "tunnel closed");
                                    }
                                    Err(e) => tracing::debug!(%link, "upgrade failed: {e}"),
                                }
                            });
                            let (parts, _) = resp.into_parts();
                            return Ok((
                                Response::from_parts(parts, full(Bytes::new())),
                                Some(peer),
                                attempts.tries(),
                            ));
                        }
                    }
                    let resp = self.finish(resp, lease, peer, &attempts);
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
        &self,
        resp: Response<Incoming>,
        lease: Lease,
        peer: usize,
        attempts: &Attempts,
    ) -> Response<ProxyBody> {
        let g = &self.group;
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
        let body = TimedBody::new(body, self.cfg.proxy_read_timeout, lease);
        Response::from_parts(parts, BodyExt::boxed(body))
    }

    /// One attempt on `peer`: a pooled connection if one is idle, else a new one. The lease
    /// returns the connection to the pool once the response body has been read.
    async fn attempt(
        &self,
        peer: usize,
        mut req: Request<Full<Bytes>>,
    ) -> Result<(Response<Incoming>, Lease), AttemptError> {
        let g = &self.group;
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
                None => self.connect(peer).await?,
            };
            let sent = timeout(self.cfg.proxy_read_timeout, conn.try_send_request(req)).await;
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

    async fn connect(&self, peer: usize) -> Result<Upstream, AttemptError> {
        let stream = self.connect_stream(peer).await?;
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

    /// A new connection to `peer` through the fault layer, within `proxy_connect_timeout`.
    pub(crate) async fn connect_stream(&self, peer: usize) -> Result<FaultStream, AttemptError> {
        let g = &self.group;
        let stream = match timeout(
            self.cfg.proxy_connect_timeout,
            netfault::tcp::connect(
                &self.faults,
                &g.links[peer],
                self.cfg.proxy_bind,
                g.addrs[peer],
            ),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(peer = %g.links[peer], "connect: {e}");
                return Err(AttemptError::unsent(Failure::Error));
            }
            Err(_) => return Err(AttemptError::unsent(Failure::Timeout)),
        };
        self.connections.fetch_add(1, Ordering::Relaxed);
        Ok(stream)
    }
}
