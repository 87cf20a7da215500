//! `POST /api/v2/me/channels/voice`: the agent's voice-channel state (docs/protocols.md §5.2),
//! also set on all channels through `POST /api/v2/me`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tlib::{KvList, Request};

use super::auth::{answer, authenticate};
use super::body::Operation;
use super::error::ApiError;
use super::tlib_call;
use crate::agent_states::{self, Target};
use crate::ctx::Ctx;
use crate::device::DeviceState;

pub async fn post(
    State(ctx): State<Arc<Ctx>>,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let op = match Operation::parse(body, ctx.cfg.max_body_bytes, agent_states::OPERATIONS) {
        Ok(op) => op,
        Err(e) => return e.into_response(),
    };
    let target = match target_of(&op) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let authed = match authenticate(&ctx, &method, &headers).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let result = set_agent_state(&ctx, &authed.sid, target).await;
    answer(&ctx, &authed, &method, result)
}

/// The state an operation body asks for: `operationName` and an optional `reason` (a configured
/// agent state's name or id, `GET /api/v2/settings/agent-states`).
pub fn target_of(op: &Operation) -> Result<Target, ApiError> {
    let reason = op.opt_str("reason")?;
    agent_states::target(&op.name, reason).map_err(ApiError::validation)
}

/// Sets the agent state of the session's device (shared by every session of the user).
pub async fn set_agent_state(
    ctx: &Ctx,
    sid: &str,
    target: Target,
) -> Result<serde_json::Value, ApiError> {
    let device = ctx.state().sessions.with_device(sid).map(|(s, d)| {
        (
            s.user.dn.clone(),
            d.contact_center && d.state == DeviceState::Active,
        )
    });
    let Some((dn, usable)) = device else {
        return Err(ApiError::access_denied());
    };
    // Observed: NotReady while the DN is not registered (no contact-center session for it, or
    // its phone is not registered) is 500 / 4; a 4xx here (see `ApiError::back_end`).
    if !usable {
        return Err(ApiError::back_end(format!(
            "Device '{dn}' is not registered."
        )));
    }
    tlib_call::send(ctx, sid, &dn, agent_request(target, &dn))
        .await
        .map(|_| json!({"statusCode": 0}))
}

/// The T-Library request for a target state.
fn agent_request(target: Target, dn: &str) -> Request {
    let dn = dn.to_owned();
    match target {
        Target::Ready => Request::AgentReady {
            dn,
            work_mode: None,
            reasons: None,
            extensions: None,
        },
        Target::Offline => Request::AgentLogout {
            dn,
            reasons: None,
            extensions: None,
        },
        Target::NotReady { work_mode, reason } => Request::AgentNotReady {
            dn,
            work_mode,
            reasons: reason.map(|r| {
                let mut kv = KvList::new();
                kv.insert("ReasonCode".into(), json!(r));
                kv
            }),
            extensions: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tlib::AgentWorkMode;

    #[test]
    fn targets_map_to_agent_requests() {
        assert!(matches!(
            agent_request(Target::Ready, "7001"),
            Request::AgentReady { .. }
        ));
        assert!(matches!(
            agent_request(Target::Offline, "7001"),
            Request::AgentLogout { .. }
        ));
        let Request::AgentNotReady {
            work_mode, reasons, ..
        } = agent_request(
            Target::NotReady {
                work_mode: Some(AgentWorkMode::AfterCallWork),
                reason: Some("Lunch".into()),
            },
            "7001",
        )
        else {
            panic!("NotReady expected")
        };
        assert_eq!(work_mode, Some(AgentWorkMode::AfterCallWork));
        assert_eq!(reasons.unwrap()["ReasonCode"], "Lunch");
    }
}
