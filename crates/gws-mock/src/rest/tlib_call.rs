//! A REST operation's T-Library request to the SIP node, and what its refusal means to the
//! desktop: an `ErrorMessage` on CometD and a REST error.

use tlib::{error_code, ClientError, Message, Request};

use super::error::ApiError;
use crate::ctx::Ctx;

/// Sends `request` for session `sid` and waits for its answer (`request_timeout`).
pub async fn send(ctx: &Ctx, sid: &str, dn: &str, request: Request) -> Result<Message, ApiError> {
    let Some(client) = ctx.tlib() else {
        return Err(ApiError::internal("Voice service is unavailable"));
    };
    let answer = client
        .request_with_timeout(request.to_message(None), ctx.cfg.request_timeout)
        .await;
    match answer {
        Ok(msg) if msg.is_error() => {
            let code = msg.attrs.error_code.unwrap_or(error_code::UNKNOWN_ERROR);
            let text = msg.attrs.error_message.clone().unwrap_or_default();
            let sent = ctx.state().report_error(sid, code, &text);
            ctx.metrics.notifications_sent.inc_by(sent as u64);
            Err(refusal(dn, code, &text))
        }
        Ok(msg) => Ok(msg),
        Err(ClientError::Timeout) => Err(ApiError::internal("No answer from the voice service")),
        Err(e) => Err(ApiError::internal(format!("Voice service error: {e}"))),
    }
}

/// The REST error for a T-Library error code (as GWS documents it: an unregistered DN is 500 / 4).
fn refusal(dn: &str, code: u32, text: &str) -> ApiError {
    match code {
        error_code::NOT_REGISTERED | error_code::OUT_OF_SERVICE | error_code::NOT_CONFIGURED => {
            ApiError::internal(format!("Device '{dn}' is not registered."))
        }
        error_code::SET_WRONG_STATE
        | error_code::INVALID_STATE
        | error_code::INV_CALL_STATE
        | error_code::CTL_INV_CALL_STATE
        | error_code::IN_SAME_STATE
        | error_code::SOFT_AGENT_ALREADY_LOGGED_IN
        | error_code::SOFT_AGENT_NOT_LOGGED_IN => ApiError::invalid_state(text.to_owned()),
        _ => ApiError::internal(text.to_owned()),
    }
}
