//! The control plane every node serves on its control port (docs/protocols.md §6):
//!
//! | endpoint | does |
//! |---|---|
//! | `GET /state` (also `/status`) | the node's whole state as JSON |
//! | `GET /events?since=SEQ&limit=N&wait_ms=W` | journal entries after `SEQ`; with `wait_ms` it long-polls until one exists |
//! | `GET /metrics` | the node's metrics, fault-layer counters included, as OpenMetrics text |
//! | `GET /faults`, `POST /faults`, `DELETE /faults`, `DELETE /faults/{id}` | the fault layer |
//! | `GET /capture?since=SEQ&limit=N&full=true` | captured messages after `SEQ` (the message text with `full`) and media counters |
//! | `POST /crash` | close every socket abruptly, keep the process |
//! | `POST /restart` | start the node's services again (fresh state, as a real restart) |
//! | `GET /health` | liveness |
//!
//! Errors are JSON `{"error": "..."}` with a 4xx status. It binds to loopback unless a token is
//! configured; with a token every request needs `Authorization: Bearer <token>`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use netfault::{FaultRule, Faults};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::journal::Journal;

/// A boxed future, so that [`ControlTarget`] stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a node exposes to its control plane.
pub trait ControlTarget: Send + Sync + 'static {
    /// The node's name (`ss1`, `gws1`, `proxy-dc1`).
    fn node_name(&self) -> &str;
    /// The node's whole state, as `GET /state` returns it.
    fn state(&self) -> BoxFuture<'_, Value>;
    fn journal(&self) -> &Journal;
    fn faults(&self) -> &Faults;
    /// The node's whole OpenMetrics exposition, `# EOF` included: [`crate::Metrics::render`] of
    /// a registry that also holds the fault layer's counters ([`crate::Metrics::register_faults`]).
    fn metrics_text(&self) -> String;
    /// Closes every socket abruptly; the control plane stays up.
    fn crash(&self) -> BoxFuture<'_, ()>;
    /// Starts the node's services again after a crash (or restarts them).
    fn restart(&self) -> BoxFuture<'_, anyhow::Result<()>>;
}

/// A running control server.
pub struct ControlServer {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl ControlServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Why the control server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control address {0} is not loopback: set a control token to expose it")]
    NeedsToken(SocketAddr),
    #[error("cannot bind control address {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Largest accepted request body (fault rules are small).
const MAX_BODY: usize = 64 * 1024;
/// Longest `wait_ms` honoured by `GET /events`.
const MAX_EVENTS_WAIT: Duration = Duration::from_secs(60);

/// Serves the control plane for `target` on `addr` until the returned server is dropped.
pub async fn serve_control(
    addr: SocketAddr,
    target: Arc<dyn ControlTarget>,
    token: Option<String>,
) -> Result<ControlServer, ControlError> {
    if !addr.ip().is_loopback() && token.is_none() {
        return Err(ControlError::NeedsToken(addr));
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ControlError::Bind { addr, source })?;
    serve_control_on(listener, target, token)
}

/// Serves the control plane on an already bound listener (so callers learn the port first).
pub fn serve_control_on(
    listener: TcpListener,
    target: Arc<dyn ControlTarget>,
    token: Option<String>,
) -> Result<ControlServer, ControlError> {
    let local_addr = listener.local_addr().map_err(|source| ControlError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    if !local_addr.ip().is_loopback() && token.is_none() {
        return Err(ControlError::NeedsToken(local_addr));
    }
    let app = router(target, token);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %e, "control server ended");
        }
    });
    Ok(ControlServer {
        local_addr,
        stop: Some(stop),
    })
}

type Target = Arc<dyn ControlTarget>;

fn router(target: Target, token: Option<String>) -> Router {
    let token = token.map(Arc::<str>::from);
    Router::new()
        .route("/health", get(health))
        .route("/state", get(state))
        // What nginx users look for (the proxy's peer table); the same document as /state.
        .route("/status", get(state))
        .route("/events", get(events))
        .route("/metrics", get(metrics))
        .route(
            "/faults",
            get(list_faults).post(add_faults).delete(clear_faults),
        )
        .route("/faults/{id}", delete(remove_fault))
        .route("/capture", get(capture))
        .route("/crash", post(crash))
        .route("/restart", post(restart))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let token = token.clone();
            async move { authorize(token, req, next).await }
        }))
        .with_state(target)
}

/// A JSON error body with `status`.
pub fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

async fn authorize(token: Option<Arc<str>>, req: Request, next: Next) -> Response {
    if let Some(token) = token {
        let expected = format!("Bearer {token}");
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        }
    }
    next.run(req).await
}

async fn health(State(t): State<Target>) -> Json<Value> {
    Json(json!({ "node": t.node_name(), "ok": true }))
}

async fn state(State(t): State<Target>) -> Json<Value> {
    Json(t.state().await)
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    since: u64,
    limit: Option<usize>,
    wait_ms: Option<u64>,
}

async fn events(
    State(t): State<Target>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let journal = t.journal();
    if let Some(wait) = q.wait_ms {
        journal
            .wait_newer(q.since, Duration::from_millis(wait).min(MAX_EVENTS_WAIT))
            .await;
    }
    let entries = journal.since(q.since, q.limit.unwrap_or(10_000).min(100_000));
    Json(json!({ "node": t.node_name(), "last_seq": journal.last_seq(), "events": entries }))
        .into_response()
}

#[derive(Deserialize)]
struct CaptureQuery {
    #[serde(default)]
    since: u64,
    limit: Option<usize>,
    #[serde(default)]
    full: bool,
}

/// Most records one `GET /capture` returns; page on with `since`.
const MAX_CAPTURE_PAGE: usize = 50_000;

async fn capture(
    State(t): State<Target>,
    query: Result<Query<CaptureQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let capture = t.faults().capture();
    let limit = q.limit.unwrap_or(MAX_CAPTURE_PAGE).min(MAX_CAPTURE_PAGE);
    let (records, last_seq) = capture.since(q.since, limit);
    let records: Vec<Value> = records
        .iter()
        .map(|r| {
            let mut v = json!(r);
            if !q.full {
                if let Some(o) = v.as_object_mut() {
                    o.remove("message");
                }
            }
            v
        })
        .collect();
    Json(json!({
        "node": t.node_name(),
        "enabled": capture.enabled(),
        "limit": capture.limit(),
        "last_seq": last_seq,
        "records": records,
        "media": capture.media(),
    }))
    .into_response()
}

async fn metrics(State(t): State<Target>) -> Response {
    let mut resp = t.metrics_text().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    resp
}

async fn list_faults(State(t): State<Target>) -> Json<Value> {
    Json(json!({ "node": t.node_name(), "faults": t.faults().list() }))
}

/// Accepts one rule or an array of rules; all are validated before any is added.
async fn add_faults(State(t): State<Target>, body: Bytes) -> Response {
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")),
    };
    let items = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut rules = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let rule: FaultRule = match serde_json::from_value(item) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("rule {i}: {e}")),
        };
        if let Err(e) = rule.validate() {
            return error(StatusCode::BAD_REQUEST, format!("rule {i}: {e}"));
        }
        rules.push(rule);
    }
    let mut ids = Vec::with_capacity(rules.len());
    for rule in rules {
        let link = rule.link.clone();
        let mode = rule.mode;
        match t.faults().add(rule) {
            Ok(id) => {
                t.journal().record(
                    "fault.added",
                    json!({ "id": id, "link": link, "mode": mode }),
                );
                ids.push(id);
            }
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        }
    }
    (StatusCode::CREATED, Json(json!({ "ids": ids }))).into_response()
}

async fn clear_faults(State(t): State<Target>) -> Json<Value> {
    t.faults().clear();
    t.journal().record("fault.cleared", json!({}));
    Json(json!({ "ok": true }))
}

async fn remove_fault(State(t): State<Target>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("fault id `{id}` is not a number"),
        );
    };
    if t.faults().remove(id) {
        t.journal().record("fault.removed", json!({ "id": id }));
        Json(json!({ "ok": true })).into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no fault with id {id}"))
    }
}

async fn crash(State(t): State<Target>) -> Json<Value> {
    t.crash().await;
    Json(json!({ "ok": true }))
}

async fn restart(State(t): State<Target>) -> Response {
    match t.restart().await {
        Ok(()) => Json(json!({ "ok": true })).into_response(),
        Err(e) => error(StatusCode::CONFLICT, format!("restart failed: {e:#}")),
    }
}
