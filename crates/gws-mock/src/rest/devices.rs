//! One device: `GET /api/v2/me/devices/{id}`, its T-Server settings (the DN's annex, which WWE
//! reads at login) and `POST /api/v2/me/devices/{id}` with the device operations its
//! `capabilities` name: Do Not Disturb and call forwarding. The T-Lib link has no request for
//! them, so they are kept by this node only: shown on the device and its channel, to every
//! session of the user, and not seen by the SIP node.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::auth::{answer, authenticate};
use super::body::Operation;
use super::error::ApiError;
use super::me::read_session_or;
use crate::ctx::Ctx;
use crate::device::Device;
use crate::notification;

const OPERATIONS: &[&str] = &[
    "DoNotDisturbOn",
    "DoNotDisturbOff",
    "ForwardCallsOn",
    "CancelForward",
];

/// The DN's T-Server annex as this mock's SIP node behaves: 3pcc answers and holds through
/// the phone (`NOTIFY talk` / `hold`), calls are offered whatever the agent state.
fn tserver_settings() -> Value {
    json!([
        {"name": "sip-cti-control", "value": "talk,hold"},
        {"name": "reject-call-notready", "value": "false"},
        {"name": "contact", "value": "*"},
    ])
}

fn found<'a>(d: &'a Device, id: &str) -> Result<&'a Device, ApiError> {
    if d.id == id {
        Ok(d)
    } else {
        Err(ApiError::not_found(format!("Device '{id}' not found")))
    }
}

/// `GET /api/v2/me/devices/{id}`.
pub async fn get(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    read_session_or(&ctx, &method, &headers, |st, _, d| {
        let d = found(d, &id)?;
        Ok(json!({"statusCode": 0, "device": notification::device(d, &st.base)}))
    })
    .await
}

/// `GET /api/v2/me/devices/{id}/settings/tserver`.
pub async fn tserver(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    read_session_or(&ctx, &method, &headers, |_, _, d| {
        found(d, &id)?;
        Ok(json!({"statusCode": 0, "settings": tserver_settings()}))
    })
    .await
}

/// `POST /api/v2/me/devices/{id}`: `DoNotDisturbOn`, `DoNotDisturbOff`, `ForwardCallsOn`
/// `{"forwardTo": "…"}`, `CancelForward`.
pub async fn post(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let op = match Operation::parse(body, ctx.cfg.max_body_bytes, OPERATIONS) {
        Ok(op) => op,
        Err(e) => return e.into_response(),
    };
    let forward_to = match op.opt_str("forwardTo") {
        Ok(Some(n)) if !n.is_empty() && n.len() <= 64 => Some(n.to_owned()),
        Ok(None) if op.name == "ForwardCallsOn" => {
            return ApiError::missing("forwardTo").into_response()
        }
        Ok(None) => None,
        Ok(Some(_)) => {
            return ApiError::validation("'forwardTo' must be a phone number").into_response()
        }
        Err(e) => return e.into_response(),
    };
    let authed = match authenticate(&ctx, &method, &headers).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let result = operate(&ctx, &authed.sid, &id, &op.name, forward_to);
    answer(&ctx, &authed, &method, result)
}

fn operate(
    ctx: &Ctx,
    sid: &str,
    id: &str,
    operation: &str,
    forward_to: Option<String>,
) -> Result<Value, ApiError> {
    let mut st = ctx.state();
    let Some(d) = st.sessions.device_of_mut(sid) else {
        return Err(ApiError::access_denied());
    };
    if d.id != id {
        return Err(ApiError::not_found(format!("Device '{id}' not found")));
    }
    if !d.capabilities().contains(&operation) {
        return Err(ApiError::invalid_state(format!(
            "Operation '{operation}' is not allowed for the device now"
        )));
    }
    apply(d, operation, forward_to);
    let dn = d.dn.clone();
    ctx.journal.record(
        "device.operation",
        json!({ "dn": dn, "operation": operation, "forward_to": d.forward_to }),
    );
    let sent = st.notify_dn(&dn);
    ctx.metrics.notifications_sent.inc_by(sent as u64);
    Ok(json!({"statusCode": 0}))
}

/// A device operation, already checked against the device's capabilities.
fn apply(d: &mut Device, operation: &str, forward_to: Option<String>) {
    match operation {
        "DoNotDisturbOn" => d.dnd = true,
        "DoNotDisturbOff" => d.dnd = false,
        "ForwardCallsOn" => d.forward_to = forward_to,
        _ => d.forward_to = None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_flip_the_capabilities() {
        let mut d = Device::new("7001");
        assert_eq!(d.capabilities(), ["DoNotDisturbOn", "ForwardCallsOn"]);
        apply(&mut d, "DoNotDisturbOn", None);
        apply(&mut d, "ForwardCallsOn", Some("5000".into()));
        assert_eq!(d.capabilities(), ["DoNotDisturbOff", "CancelForward"]);
        let v = notification::device(&d, "http://gws");
        assert_eq!(v["doNotDisturb"], "On");
        assert_eq!(v["callForwardingDestination"], "5000");
        apply(&mut d, "DoNotDisturbOff", None);
        apply(&mut d, "CancelForward", None);
        assert_eq!(d.capabilities(), ["DoNotDisturbOn", "ForwardCallsOn"]);
    }
}
