//! The long-polling transport: each POST carries a batch; a `/meta/connect` in it is held until
//! a message is queued for the client or `advice.timeout` passes. CometD's JS client appends the
//! message type to the URL (`…/notifications/connect`), so any sub-path is accepted.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::bayeux::{self, Origin, Transport};
use super::{ready, Parked, BROWSER_COOKIE};
use crate::ctx::{random_id, Ctx};
use crate::http::cookie;
use crate::rest::auth::{notification_session, session_cookie};

/// `POST /api/v2/notifications[/…]`.
pub async fn post(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let status = rejection.status();
            return bayeux_error(
                status,
                &format!("{}::{}", status.as_u16(), rejection.body_text()),
            );
        }
    };
    let batch = match bayeux::parse_batch(&body, ctx.cfg.cometd.max_batch) {
        Ok(b) => b,
        Err(e) => return bayeux_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let session = notification_session(&ctx, &headers).await;
    let known_browser = cookie(&headers, BROWSER_COOKIE).is_some();
    let processed = {
        let mut st = ctx.state();
        let origin = Origin {
            session: session.as_ref().map(|(sid, _)| sid.as_str()),
            transport: Transport::LongPolling,
        };
        bayeux::process(&mut st, &origin, batch, Instant::now(), &mut random_id)
    };
    let mut replies = processed.replies;
    if let Some(connect) = processed.connect {
        if connect.hold {
            hold(&ctx, &connect.client_id).await;
        }
        let mut st = ctx.state();
        replies.extend(bayeux::finish_connect(&mut st, &connect, Instant::now()));
    }
    let mut response = axum::Json(Value::Array(replies)).into_response();
    if let Some((sid, true)) = &session {
        if let Some(v) = session_cookie(sid) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    if processed.handshaken && !known_browser {
        let cookie = format!("{BROWSER_COOKIE}={}; Path=/; HttpOnly", random_id());
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// Waits until the connect may return (see [`ready`]) or `advice.timeout` passes.
async fn hold(ctx: &Arc<Ctx>, client_id: &str) {
    let (notify, timeout) = {
        let st = ctx.state();
        let Some(c) = st.clients.get(client_id) else {
            return;
        };
        (c.notify.clone(), st.clients.settings().timeout)
    };
    let _parked = Parked::new(ctx, client_id);
    // Register interest before looking, so a message queued in between still wakes us.
    let notified = notify.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    if ready(ctx, client_id) {
        return;
    }
    let _ = tokio::time::timeout(timeout, notified).await;
}

/// A transport-level failure: the status and a one-message batch naming the error.
fn bayeux_error(status: StatusCode, error: &str) -> Response {
    (
        status,
        axum::Json(json!([{"successful": false, "error": error}])),
    )
        .into_response()
}
