//! `/api/v2/me` and its read-only sub-resources, StartContactCenterSession and
//! EndContactCenterSession (docs/protocols.md §5.2), plus the node-wide `/api/v2/services` and
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

use super::auth::{authenticate, respond};
use super::body::Operation;
use super::error::{code, ApiError};
use super::tlib_call;
use crate::ctx::Ctx;
use crate::device::AgentState;
use crate::notification;
use crate::session::Session;

/// The GWS version a real WWE 8.5.202.96 was seen talking to (in its browser log).
const GWS_VERSION: &str = "8.5.202.96";

/// `GET /api/v2/diagnostics/version` (no session needed: load balancers probe it).
pub async fn version() -> Response {
    axum::Json(json!({"statusCode": 0, "version": GWS_VERSION})).into_response()
}

/// `GET /api/v2/services`.
pub async fn services(State(ctx): State<Arc<Ctx>>, method: Method, headers: HeaderMap) -> Response {
    let authed = match authenticate(&ctx, &method, &headers) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let services = ctx.state().services();
    respond(
        &ctx,
        &authed,
        &method,
        json!({"statusCode": 0, "services": services}),
    )
}

fn user_json(s: &Session, subresources: &[&str], base: &str) -> Value {
    let mut user = json!({
        "id": format!("u-{}", s.user.name),
        "userName": s.user.name,
        "firstName": s.user.name,
        "lastName": "",
        "roles": ["ROLE_AGENT"],
        "enabled": true,
    });
    for sub in subresources {
        match *sub {
            "devices" => user["devices"] = json!([notification::device(&s.device, base)]),
            "calls" => {
                user["calls"] = Value::Array(
                    s.device
                        .calls
                        .iter()
                        .map(|c| notification::call(c, &s.device, base))
                        .collect(),
                )
            }
            "channels" => user["channels"] = channels_json(s),
            "features" => user["features"] = json!(["api-voice", "api-multimedia"]),
            // Resources this mock does not model are present and empty, as for a voice-only agent.
            "interactions" | "chats" | "emails" | "workitems" => user[*sub] = json!([]),
            _ => {}
        }
    }
    user
}

fn channels_json(s: &Session) -> Value {
    notification::channel_state_change(&s.device)["channels"].clone()
}

/// `GET /api/v2/me?subresources=devices,calls,…`.
pub async fn get(
    State(ctx): State<Arc<Ctx>>,
    method: Method,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let authed = match authenticate(&ctx, &method, &headers) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let subresources: Vec<&str> = query
        .get("subresources")
        .map(|s| s.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let user = {
        let st = ctx.state();
        match st.sessions.get(&authed.sid) {
            Some(s) => user_json(s, &subresources, &st.base),
            None => return ApiError::access_denied().into_response(),
        }
    };
    respond(
        &ctx,
        &authed,
        &method,
        json!({"statusCode": 0, "user": user}),
    )
}

/// `GET /api/v2/me/devices`.
pub async fn devices(State(ctx): State<Arc<Ctx>>, method: Method, headers: HeaderMap) -> Response {
    read_session(
        &ctx,
        &method,
        &headers,
        |s, base| json!({"statusCode": 0, "devices": [notification::device(&s.device, base)]}),
    )
}

/// `GET /api/v2/me/calls`.
pub async fn calls(State(ctx): State<Arc<Ctx>>, method: Method, headers: HeaderMap) -> Response {
    read_session(&ctx, &method, &headers, |s, base| {
        let calls: Vec<Value> = s
            .device
            .calls
            .iter()
            .map(|c| notification::call(c, &s.device, base))
            .collect();
        json!({"statusCode": 0, "calls": calls})
    })
}

fn read_session(
    ctx: &Ctx,
    method: &Method,
    headers: &HeaderMap,
    render: impl FnOnce(&Session, &str) -> Value,
) -> Response {
    let authed = match authenticate(ctx, method, headers) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let body = {
        let st = ctx.state();
        match st.sessions.get(&authed.sid) {
            Some(s) => render(s, &st.base),
            None => return ApiError::access_denied().into_response(),
        }
    };
    respond(ctx, &authed, method, body)
}

/// `POST /api/v2/me` StartContactCenterSession / EndContactCenterSession.
pub async fn post(
    State(ctx): State<Arc<Ctx>>,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let op = match Operation::parse(
        body,
        ctx.cfg.max_body_bytes,
        &["StartContactCenterSession", "EndContactCenterSession"],
    ) {
        Ok(op) => op,
        Err(e) => return e.into_response(),
    };
    let channels = match channels_of(&op) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let authed = match authenticate(&ctx, &method, &headers) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let Some(dn) = ctx
        .state()
        .sessions
        .get(&authed.sid)
        .map(|s| s.user.dn.clone())
    else {
        return ApiError::access_denied().into_response();
    };
    let result = if op.name == "StartContactCenterSession" {
        start(&ctx, &authed.sid, &dn, &channels).await
    } else {
        end(&ctx, &authed.sid, &dn).await
    };
    match result {
        Ok(body) => respond(&ctx, &authed, &method, body),
        Err(e) => e.into_response(),
    }
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
/// and succeed. A voice failure next to successes is a partial success (statusCode 7, observed).
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
        Err(e) if others.is_empty() => Err(e),
        Err(e) => Ok(json!({
            "statusCode": code::PARTIAL_SUCCESS,
            "failed": [e.channel_failure("voice")],
            "succeeded": others,
        })),
    }
}

async fn start_voice(ctx: &Ctx, sid: &str, dn: &str) -> Result<(), ApiError> {
    let registered = tlib_call::send(ctx, sid, dn, Request::register_address(dn)).await?;
    // From here the DN is registered for this session: it is unregistered when the session
    // ends, even if the login below is refused (R5: the desktop still sees and controls calls).
    let agent_id = {
        let mut st = ctx.state();
        let Some(s) = st.sessions.get_mut(sid) else {
            return Err(ApiError::access_denied());
        };
        s.contact_center = true;
        s.user.name.clone()
    };
    let in_service = registered
        .attrs
        .extensions
        .as_ref()
        .and_then(|e| e.get("DNStatus"))
        .is_none_or(|s| s != "OutOfService");
    if !in_service {
        return Err(ApiError::internal(format!(
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

/// AgentLogout and UnregisterAddress (unless another session of this node still uses the DN).
async fn end(ctx: &Ctx, sid: &str, dn: &str) -> Result<Value, ApiError> {
    let (was_started, shared, logged_in) = {
        let st = ctx.state();
        let s = st.sessions.get(sid);
        (
            s.is_some_and(|s| s.contact_center),
            st.sessions.dn_in_contact_center(dn, sid),
            s.is_some_and(|s| s.device.agent != AgentState::LoggedOut),
        )
    };
    if !was_started {
        return Ok(json!({"statusCode": 0}));
    }
    if logged_in {
        let logout = Request::AgentLogout {
            dn: dn.to_owned(),
            reasons: None,
            extensions: None,
        };
        // Already logged out (R4, or by another desktop) is fine: ending is what was asked.
        let _ = tlib_call::send(ctx, sid, dn, logout).await;
    }
    if !shared {
        let unregister = Request::UnregisterAddress { dn: dn.to_owned() };
        let _ = tlib_call::send(ctx, sid, dn, unregister).await;
    }
    if let Some(s) = ctx.state().sessions.get_mut(sid) {
        s.contact_center = false;
    }
    ctx.journal
        .record("session.contact_center_ended", json!({ "dn": dn }));
    Ok(json!({"statusCode": 0}))
}
