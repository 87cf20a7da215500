//! `/api/v2/me` and its read-only sub-resources, StartContactCenterSession,
//! EndContactCenterSession and the agent state on all channels (docs/protocols.md §5.2), plus
//! the node-wide `/api/v2/services`, `/api/v2/settings/agent-states` and
//! `/api/v2/diagnostics/version`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tlib::Request;

use tokio::time::Instant;

use super::auth::{answer, authenticate};
use super::body::Operation;
use super::error::{code, ApiError};
use super::{tlib_call, voice};
use crate::agent_states;
use crate::ctx::Ctx;
use crate::device::{AgentState, Device};
use crate::notification;
use crate::session::Session;
use crate::state::GwsState;

/// The GWS version a real WWE 8.5.202.96 was seen talking to (in its browser log).
const GWS_VERSION: &str = "8.5.202.96";

/// `GET /api/v2/diagnostics/version` (no session needed: load balancers probe it).
pub async fn version() -> Response {
    axum::Json(json!({"statusCode": 0, "version": GWS_VERSION})).into_response()
}

/// `GET /api/v2/services`.
pub async fn services(State(ctx): State<Arc<Ctx>>, method: Method, headers: HeaderMap) -> Response {
    read_session(
        &ctx,
        &method,
        &headers,
        |st, _, _| json!({"statusCode": 0, "services": st.services()}),
    )
    .await
}

/// Every sub-resource `subresources=*` stands for.
const SUBRESOURCES: &[&str] = &[
    "features",
    "devices",
    "calls",
    "channels",
    "settings",
    "interactions",
    "chats",
    "emails",
    "workitems",
];

/// `user.features`: what the account may use.
fn features() -> Value {
    json!([
        {"id": "api-voice", "displayName": "Voice", "description": "Voice channel: agent state and call control"},
        {"id": "api-multimedia", "displayName": "Multimedia", "description": "Multimedia channels"},
    ])
}

fn user_json(s: &Session, d: &Device, subresources: &[&str], base: &str) -> Value {
    let mut user = json!({
        "id": format!("u-{}", s.user.name),
        "userName": s.user.name,
        "firstName": s.user.name,
        "lastName": "",
        "roles": ["ROLE_AGENT"],
        "enabled": true,
    });
    let subresources: Vec<&str> = if subresources.contains(&"*") {
        SUBRESOURCES.to_vec()
    } else {
        subresources.to_vec()
    };
    let now = Instant::now();
    for sub in subresources {
        match sub {
            "devices" => user["devices"] = json!([notification::device(d, base)]),
            "calls" => user["calls"] = calls_json(d, base, now),
            "channels" => user["channels"] = channels_json(d),
            "features" => user["features"] = features(),
            "settings" => {
                user["settings"] = json!({"agent-states": agent_states::settings()["settings"]})
            }
            // Resources this mock does not model are present and empty, as for a voice-only agent.
            "interactions" | "chats" | "emails" | "workitems" => user[sub] = json!([]),
            _ => {}
        }
    }
    user
}

fn calls_json(d: &Device, base: &str, now: Instant) -> Value {
    Value::Array(
        d.calls
            .iter()
            .map(|c| notification::call(c, d, base, now))
            .collect(),
    )
}

fn channels_json(d: &Device) -> Value {
    notification::channel_state_change(d)["channels"].clone()
}

/// `GET /api/v2/me?subresources=devices,calls,…` (`*`: all of them).
pub async fn get(
    State(ctx): State<Arc<Ctx>>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let subresources: Vec<&str> = query
        .get("subresources")
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .take(SUBRESOURCES.len() + 1)
                .collect()
        })
        .unwrap_or_default();
    read_session(
        &ctx,
        &method,
        &headers,
        |st, s, d| json!({"statusCode": 0, "user": user_json(s, d, &subresources, &st.base)}),
    )
    .await
}

/// `GET /api/v2/me/devices`.
pub async fn devices(State(ctx): State<Arc<Ctx>>, method: Method, headers: HeaderMap) -> Response {
    read_session(
        &ctx,
        &method,
        &headers,
        |st, _, d| json!({"statusCode": 0, "devices": [notification::device(d, &st.base)]}),
    )
    .await
}

/// `GET /api/v2/me/calls`.
pub async fn calls(State(ctx): State<Arc<Ctx>>, method: Method, headers: HeaderMap) -> Response {
    read_session(
        &ctx,
        &method,
        &headers,
        |st, _, d| json!({"statusCode": 0, "calls": calls_json(d, &st.base, Instant::now())}),
    )
    .await
}

/// `GET /api/v2/me/channels`.
pub async fn channels(State(ctx): State<Arc<Ctx>>, method: Method, headers: HeaderMap) -> Response {
    read_session(
        &ctx,
        &method,
        &headers,
        |_, _, d| json!({"statusCode": 0, "channels": channels_json(d)}),
    )
    .await
}

/// `GET /api/v2/settings/agent-states`.
pub async fn agent_state_settings(
    State(ctx): State<Arc<Ctx>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    read_session(&ctx, &method, &headers, |_, _, _| agent_states::settings()).await
}

/// A GET answered from the caller's session and device; `render` may refuse with an error.
pub async fn read_session_or(
    ctx: &Ctx,
    method: &Method,
    headers: &HeaderMap,
    render: impl FnOnce(&GwsState, &Session, &Device) -> Result<Value, ApiError>,
) -> Response {
    let authed = match authenticate(ctx, method, headers).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let body = {
        let st = ctx.state();
        match st.sessions.with_device(&authed.sid) {
            Some((s, d)) => render(&st, s, d),
            None => Err(ApiError::access_denied()),
        }
    };
    answer(ctx, &authed, method, body)
}

async fn read_session(
    ctx: &Ctx,
    method: &Method,
    headers: &HeaderMap,
    render: impl FnOnce(&GwsState, &Session, &Device) -> Value,
) -> Response {
    read_session_or(ctx, method, headers, |st, s, d| Ok(render(st, s, d))).await
}

/// The operations of `POST /api/v2/me`: the contact-center session, and the agent state on
/// every channel (only voice is modelled).
const OPERATIONS: &[&str] = &[
    "StartContactCenterSession",
    "EndContactCenterSession",
    "Ready",
    "NotReady",
    "AfterCallWork",
    "AuxWork",
    "Offline",
];

/// `POST /api/v2/me`.
pub async fn post(
    State(ctx): State<Arc<Ctx>>,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let op = match Operation::parse(body, ctx.cfg.max_body_bytes, OPERATIONS) {
        Ok(op) => op,
        Err(e) => return e.into_response(),
    };
    let channels = match channels_of(&op) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let target = match op.name.as_str() {
        "StartContactCenterSession" | "EndContactCenterSession" => None,
        _ => match voice::target_of(&op) {
            Ok(t) => Some(t),
            Err(e) => return e.into_response(),
        },
    };
    let authed = match authenticate(&ctx, &method, &headers).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let dn = ctx
        .state()
        .sessions
        .get(&authed.sid)
        .map(|s| s.user.dn.clone());
    let result = match (dn, target) {
        (None, _) => Err(ApiError::access_denied()),
        (Some(_), Some(target)) => voice::set_agent_state(&ctx, &authed.sid, target).await,
        (Some(dn), None) if op.name == "StartContactCenterSession" => {
            start(&ctx, &authed.sid, &dn, &channels).await
        }
        (Some(dn), None) => end(&ctx, &authed.sid, &dn).await,
    };
    answer(&ctx, &authed, &method, result)
}

/// `channels`: a list of channel names, `["voice"]` when absent.
fn channels_of(op: &Operation) -> Result<Vec<String>, ApiError> {
    match op.fields.get("channels") {
        None | Some(Value::Null) => Ok(vec!["voice".into()]),
        Some(Value::Array(items)) if items.len() <= 16 => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::validation("'channels' must be a list of strings"))
            })
            .collect(),
        Some(_) => Err(ApiError::validation("'channels' must be a list of strings")),
    }
}

/// RegisterAddress then AgentLogin for the voice channel; other channels have no back end here
/// and succeed. A voice channel that cannot start (its DN out of service because the owner is
/// unreachable, R10; a call in progress, R5; no SIP node) is reported as GWS reports a channel
/// that failed beside others (observed): HTTP 200, statusCode 7, the channel in `failed` — also
/// when voice was the only channel, so `succeeded` may be empty. The session stays, and the
/// desktop sees the voice channel's state (out of service, or logged out) on its views and CometD.
async fn start(ctx: &Ctx, sid: &str, dn: &str, channels: &[String]) -> Result<Value, ApiError> {
    let others: Vec<Value> = channels
        .iter()
        .filter(|c| c.as_str() != "voice")
        .map(|c| json!({"statusCode": 0, "channel": c}))
        .collect();
    if !channels.iter().any(|c| c == "voice") {
        return Ok(json!({"statusCode": 0}));
    }
    let voice = start_voice(ctx, sid, dn).await;
    ctx.journal.record(
        "session.contact_center_started",
        json!({ "dn": dn, "ok": voice.is_ok(), "error": voice.as_ref().err().map(|e| e.message.clone()) }),
    );
    match voice {
        Ok(()) => Ok(json!({"statusCode": 0})),
        Err(e) if e.code == code::NOT_AUTHENTICATED => Err(e),
        Err(e) => Ok(json!({
            "statusCode": code::PARTIAL_SUCCESS,
            "failed": [e.channel_failure("voice")],
            "succeeded": others,
        })),
    }
}

async fn start_voice(ctx: &Ctx, sid: &str, dn: &str) -> Result<(), ApiError> {
    let registered = tlib_call::send(ctx, sid, dn, Request::register_address(dn)).await?;
    // From here the DN is registered for the user: it is unregistered when the contact-center
    // session or the DN's last session ends, even if the login below is refused (R5: the
    // desktop still sees and controls calls).
    let agent_id = {
        let mut st = ctx.state();
        let Some(s) = st.sessions.get(sid) else {
            return Err(ApiError::access_denied());
        };
        let agent_id = s.user.name.clone();
        if let Some(d) = st.sessions.device_of_mut(sid) {
            d.contact_center = true;
        }
        agent_id
    };
    let in_service = registered
        .attrs
        .extensions
        .as_ref()
        .and_then(|e| e.get("DNStatus"))
        .is_none_or(|s| s != "OutOfService");
    if !in_service {
        return Err(ApiError::back_end(format!(
            "Device '{dn}' is not registered."
        )));
    }
    let login = Request::AgentLogin {
        dn: dn.to_owned(),
        agent_id: Some(agent_id),
        password: None,
        work_mode: ctx.cfg.agent_login_work_mode,
        queue: None,
        reasons: None,
        extensions: None,
    };
    tlib_call::send(ctx, sid, dn, login).await.map(|_| ())
}

/// AgentLogout and UnregisterAddress, then the session is invalidated (its cookie answers
/// 403 / 20 from now on). A logout the SIP node refuses — during a call or after-call work
/// (R5) — is the answer, with its statusCode: the agent, the registration and the session stay.
async fn end(ctx: &Ctx, sid: &str, dn: &str) -> Result<Value, ApiError> {
    let (was_started, logged_in) = {
        let st = ctx.state();
        let d = st.sessions.with_device(sid).map(|(_, d)| d);
        (
            d.is_some_and(|d| d.contact_center),
            d.is_some_and(|d| d.agent != AgentState::LoggedOut),
        )
    };
    if was_started {
        if logged_in {
            let logout = Request::AgentLogout {
                dn: dn.to_owned(),
                reasons: None,
                extensions: None,
            };
            tlib_call::send(ctx, sid, dn, logout).await?;
        }
        let unregister = Request::UnregisterAddress { dn: dn.to_owned() };
        let _ = tlib_call::send(ctx, sid, dn, unregister).await;
        ctx.journal
            .record("session.contact_center_ended", json!({ "dn": dn }));
    }
    let ended = {
        let mut st = ctx.state();
        if let Some(d) = st.sessions.device_of_mut(sid) {
            d.contact_center = false;
            // The logout's event may come after the session is gone: say it now.
            if was_started {
                d.agent = AgentState::LoggedOut;
            }
        }
        let sent = st.notify_dn(dn);
        ctx.metrics.notifications_sent.inc_by(sent as u64);
        st.end_session(sid, "contact_center_ended")
    };
    ctx.sessions_ended(ended.into_iter().collect()).await;
    Ok(json!({"statusCode": 0}))
}
