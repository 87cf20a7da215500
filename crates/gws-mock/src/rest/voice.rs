//! `POST /api/v2/me/channels/voice`: the agent's voice-channel state (docs/protocols.md §5.2).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tlib::{AgentWorkMode, KvList, Request};

use super::auth::{authenticate, respond};
use super::body::Operation;
use super::error::ApiError;
use super::tlib_call;
use crate::ctx::Ctx;
use crate::device::DeviceState;

const OPERATIONS: &[&str] = &["Ready", "NotReady", "AfterCallWork", "AuxWork"];

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
    let reason = match op.opt_str("reasonCode") {
        Ok(r) => r.map(str::to_owned),
        Err(e) => return e.into_response(),
    };
    let authed = match authenticate(&ctx, &method, &headers) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let session = ctx.state().sessions.get(&authed.sid).map(|s| {
        let usable = s.contact_center && s.device.state == DeviceState::Active;
        (s.user.dn.clone(), usable)
    });
    let Some((dn, usable)) = session else {
        return ApiError::access_denied().into_response();
    };
    // Observed: NotReady while the DN is not registered (no session for it, or its phone is not
    // registered) is 500 / 4.
    if !usable {
        return ApiError::internal(format!("Device '{dn}' is not registered.")).into_response();
    }
    let request = agent_request(&op.name, &dn, reason);
    match tlib_call::send(&ctx, &authed.sid, &dn, request).await {
        Ok(_) => respond(&ctx, &authed, &method, json!({"statusCode": 0})),
        Err(e) => e.into_response(),
    }
}

/// The T-Library request for an operation (`Ready` or one of the NotReady flavours).
fn agent_request(operation: &str, dn: &str, reason: Option<String>) -> Request {
    let reasons = reason.map(|r| {
        let mut kv = KvList::new();
        kv.insert("ReasonCode".into(), json!(r));
        kv
    });
    let work_mode = match operation {
        "Ready" => {
            return Request::AgentReady {
                dn: dn.to_owned(),
                work_mode: None,
                reasons,
                extensions: None,
            }
        }
        "AfterCallWork" => Some(AgentWorkMode::AfterCallWork),
        "AuxWork" => Some(AgentWorkMode::AuxWork),
        _ => None,
    };
    Request::AgentNotReady {
        dn: dn.to_owned(),
        work_mode,
        reasons,
        extensions: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_map_to_agent_requests() {
        assert!(matches!(
            agent_request("Ready", "7001", None),
            Request::AgentReady { .. }
        ));
        let Request::AgentNotReady {
            work_mode, reasons, ..
        } = agent_request("AfterCallWork", "7001", Some("Wrap".into()))
        else {
            panic!("NotReady expected")
        };
        assert_eq!(work_mode, Some(AgentWorkMode::AfterCallWork));
        assert_eq!(reasons.unwrap()["ReasonCode"], "Wrap");
        assert!(matches!(
            agent_request("NotReady", "7001", None),
            Request::AgentNotReady {
                work_mode: None,
                ..
            }
        ));
    }
}
