//! Calls: `GET /api/v2/me/calls/{id}`, call control `POST /api/v2/me/calls/{id}` (Answer, Hangup,
//! Hold, Retrieve, ClearCall, AttachUserData, UpdateUserData, DeleteUserData, SendDtmf — allowed
//! when in the call's `capabilities`) and `POST /api/v2/me/devices/{id}/calls` (Dial).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tlib::{ConnId, KvList, MakeCallType, Request};
use tokio::time::Instant;

use super::auth::{answer, authenticate};
use super::body::Operation;
use super::error::ApiError;
use super::me::read_session_or;
use super::tlib_call;
use crate::ctx::Ctx;
use crate::device::CallOperation;
use crate::notification;

/// `GET /api/v2/me/calls/{id}`.
pub async fn get(
    State(ctx): State<Arc<Ctx>>,
    Path(call_id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    read_session_or(&ctx, &method, &headers, |st, _, d| match d.call(&call_id) {
        Some(c) => {
            Ok(json!({"statusCode": 0, "call": notification::call(c, d, &st.base, Instant::now())}))
        }
        None => Err(ApiError::not_found(format!("Call '{call_id}' not found"))),
    })
    .await
}

/// `POST /api/v2/me/calls/{id}`.
pub async fn control(
    State(ctx): State<Arc<Ctx>>,
    Path(call_id): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let names = CallOperation::ALL.map(CallOperation::as_str);
    let op = match Operation::parse(body, ctx.cfg.max_body_bytes, &names) {
        Ok(op) => op,
        Err(e) => return e.into_response(),
    };
    let Some(operation) = CallOperation::from_name(&op.name) else {
        return ApiError::validation(format!("Unsupported operationName '{}'", op.name))
            .into_response();
    };
    let request = match request_of(operation, &op) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let authed = match authenticate(&ctx, &method, &headers).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let result = control_call(&ctx, &authed.sid, &call_id, operation, request).await;
    answer(&ctx, &authed, &method, result)
}

/// Makes the T-Lib request of a call operation for the call's DN and ConnID.
type MakeRequest = Box<dyn FnOnce(String, ConnId) -> Request + Send>;

/// The T-Lib request of `operation`, with what its body carries checked first: `userData` (an
/// object) for AttachUserData and UpdateUserData, `dtmfDigits` for SendDtmf.
fn request_of(operation: CallOperation, op: &Operation) -> Result<MakeRequest, ApiError> {
    Ok(match operation {
        CallOperation::Answer => Box::new(|dn, conn_id| Request::AnswerCall { dn, conn_id }),
        CallOperation::Hangup => Box::new(|dn, conn_id| Request::ReleaseCall { dn, conn_id }),
        CallOperation::Hold => Box::new(|dn, conn_id| Request::HoldCall { dn, conn_id }),
        CallOperation::Retrieve => Box::new(|dn, conn_id| Request::RetrieveCall { dn, conn_id }),
        CallOperation::ClearCall => Box::new(|dn, conn_id| Request::ClearCall { dn, conn_id }),
        CallOperation::DeleteUserData => {
            Box::new(|dn, conn_id| Request::DeleteUserData { dn, conn_id })
        }
        CallOperation::AttachUserData | CallOperation::UpdateUserData => {
            let Some(user_data) = user_data_of(op)? else {
                return Err(ApiError::missing("userData"));
            };
            if operation == CallOperation::AttachUserData {
                Box::new(|dn, conn_id| Request::AttachUserData {
                    dn,
                    conn_id,
                    user_data,
                })
            } else {
                Box::new(|dn, conn_id| Request::UpdateUserData {
                    dn,
                    conn_id,
                    user_data,
                })
            }
        }
        CallOperation::SendDtmf => {
            let digits = match op.opt_str("dtmfDigits")? {
                None => return Err(ApiError::missing("dtmfDigits")),
                Some(d) if is_dtmf(d) => d.to_owned(),
                Some(_) => {
                    return Err(ApiError::validation(
                        "'dtmfDigits' must be 1 to 32 of 0-9 * # A-D",
                    ))
                }
            };
            Box::new(|dn, conn_id| Request::SendDtmf {
                dn,
                conn_id,
                digits,
            })
        }
    })
}

fn is_dtmf(digits: &str) -> bool {
    (1..=32).contains(&digits.len())
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || b"*#ABCD".contains(&b))
}

/// The optional `userData` object of a body.
fn user_data_of(op: &Operation) -> Result<Option<KvList>, ApiError> {
    match op.fields.get("userData") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(kv)) => Ok(Some(kv.clone())),
        Some(_) => Err(ApiError::validation("'userData' must be an object")),
    }
}

async fn control_call(
    ctx: &Ctx,
    sid: &str,
    call_id: &str,
    operation: CallOperation,
    request: MakeRequest,
) -> Result<Value, ApiError> {
    let (dn, conn_id) = {
        let st = ctx.state();
        let Some((s, d)) = st.sessions.with_device(sid) else {
            return Err(ApiError::access_denied());
        };
        match d.call(call_id) {
            None => return Err(ApiError::not_found(format!("Call '{call_id}' not found"))),
            Some(c) if !c.allows(operation) => {
                return Err(ApiError::invalid_state(format!(
                    "Operation '{}' is not allowed for a call in state {}",
                    operation.as_str(),
                    c.state.as_str()
                )))
            }
            Some(c) => (s.user.dn.clone(), c.conn_id),
        }
    };
    let request = request(dn.clone(), conn_id);
    // Answer has no response event of its own at the SIP node (the phone answers, then
    // EventEstablished comes): the result is on CometD, as GWS's statusCode 0 means.
    if operation == CallOperation::Answer {
        let Some(client) = ctx.tlib() else {
            return Err(ApiError::back_end("Voice service is unavailable"));
        };
        return client
            .send(request.to_message(client.next_reference_id()))
            .await
            .map(|()| json!({"statusCode": 0}))
            .map_err(|e| ApiError::back_end(format!("Voice service error: {e}")));
    }
    tlib_call::send(ctx, sid, &dn, request)
        .await
        .map(|_| json!({"statusCode": 0}))
}

/// `POST /api/v2/me/devices/{id}/calls` Dial `{"destination": {"phoneNumber": …}}`.
pub async fn dial(
    State(ctx): State<Arc<Ctx>>,
    Path(device_id): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let op = match Operation::parse(body, ctx.cfg.max_body_bytes, &["Dial"]) {
        Ok(op) => op,
        Err(e) => return e.into_response(),
    };
    let destination = match op.fields.get("destination").map(|d| d.get("phoneNumber")) {
        None | Some(None) | Some(Some(Value::Null)) => {
            return ApiError::missing("destination.phoneNumber").into_response()
        }
        Some(Some(Value::String(n))) if !n.is_empty() && n.len() <= 64 => n.clone(),
        Some(Some(_)) => {
            return ApiError::validation("'destination.phoneNumber' must be a phone number")
                .into_response()
        }
    };
    let user_data = match user_data_of(&op) {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let authed = match authenticate(&ctx, &method, &headers).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let result = dial_from(&ctx, &authed.sid, &device_id, destination, user_data).await;
    answer(&ctx, &authed, &method, result)
}

async fn dial_from(
    ctx: &Ctx,
    sid: &str,
    device_id: &str,
    destination: String,
    user_data: Option<KvList>,
) -> Result<Value, ApiError> {
    let dn = {
        let st = ctx.state();
        let Some((s, d)) = st.sessions.with_device(sid) else {
            return Err(ApiError::access_denied());
        };
        if d.id != device_id {
            return Err(ApiError::not_found(format!(
                "Device '{device_id}' not found"
            )));
        }
        s.user.dn.clone()
    };
    let request = Request::MakeCall {
        dn: dn.clone(),
        destination,
        make_call_type: MakeCallType::Regular,
        user_data,
    };
    tlib_call::send(ctx, sid, &dn, request)
        .await
        .map(|_| json!({"statusCode": 0}))
}
