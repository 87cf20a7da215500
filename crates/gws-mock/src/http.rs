//! The HTTP side (Jetty in a real GWS): the routes, and the accept loop that puts every
//! connection under the fault layer (link `http:<node>`) before hyper serves it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use netfault::Faults;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cometd::{long_polling, websocket};
use crate::cors;
use crate::ctx::Ctx;
use crate::rest::error::ApiError;
use crate::rest::{calls, devices, me, voice};

/// The session cookie.
pub const SESSION_COOKIE: &str = "JSESSIONID";

/// Request line and headers, at most.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The value of cookie `name` from the `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

/// Every route of the node.
pub fn router(ctx: Arc<Ctx>) -> Router {
    let limit = ctx.cfg.max_body_bytes;
    Router::new()
        // WWE sends the state-recovery GET with a trailing slash (`/api/v2/me/?subresources=…`).
        .route("/api/v2/me", get(me::get).post(me::post))
        .route("/api/v2/me/", get(me::get).post(me::post))
        .route("/api/v2/me/devices", get(me::devices))
        .route(
            "/api/v2/me/devices/{id}",
            get(devices::get).post(devices::post),
        )
        .route(
            "/api/v2/me/devices/{id}/settings/tserver",
            get(devices::tserver),
        )
        .route("/api/v2/me/calls", get(me::calls))
        .route(
            "/api/v2/me/calls/{id}",
            get(calls::get).post(calls::control),
        )
        .route("/api/v2/me/devices/{id}/calls", post(calls::dial))
        .route("/api/v2/me/channels", get(me::channels))
        .route("/api/v2/me/channels/voice", post(voice::post))
        .route(
            "/api/v2/settings/agent-states",
            get(me::agent_state_settings),
        )
        .route("/api/v2/services", get(me::services))
        .route("/api/v2/diagnostics/version", get(me::version))
        // CometD clients append the message type to the URL (`…/handshake`, `…/connect`) and
        // send other batches to the bare trailing slash; the wildcard does not match an empty
        // tail, so the slash has its own route.
        .route(
            "/api/v2/notifications",
            post(long_polling::post).get(websocket::upgrade),
        )
        .route(
            "/api/v2/notifications/",
            post(long_polling::post).get(websocket::upgrade),
        )
        .route(
            "/api/v2/notifications/{*message_type}",
            post(long_polling::post),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        // Outermost, so preflights of any path (and refused upgrades) never reach a route.
        .layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            cors::apply,
        ))
        .with_state(ctx)
}

async fn not_found() -> Response {
    ApiError::not_found("No such resource").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::method_not_allowed().into_response()
}

/// Accepts connections until `stop`; each is served by hyper (HTTP/1.1, upgrades for
/// WebSocket) through the fault layer.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    faults: Faults,
    link: String,
    header_read_timeout: Duration,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, typically: back off instead of spinning.
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(stream) = netfault::tcp::accept_stream(&faults, &link, stream) else {
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let stop = stop.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .max_buf_size(MAX_HEADER_BYTES)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!("HTTP connection: {e}");
                },
                _ = stop.cancelled() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookies_are_found_across_headers() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; JSESSIONID=abc"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("BAYEUX_BROWSER=\"b1\""),
        );
        assert_eq!(cookie(&h, "JSESSIONID"), Some("abc"));
        assert_eq!(cookie(&h, "BAYEUX_BROWSER"), Some("b1"));
        assert_eq!(cookie(&h, "a"), Some("1"));
        assert_eq!(cookie(&h, "missing"), None);
    }
}
