//! A REST operation's T-Library request to the SIP node, and what its refusal means to the
//! desktop: an `ErrorMessage` on CometD and a REST error.

use tlib::{error_code, ClientError, Message, Request};

use super::error::ApiError;
use crate::ctx::Ctx;

/// Sends `request` for session `sid` and waits for its answer (`request_timeout`).
pub async fn send(ctx: &Ctx, sid: &str, dn: &str, request: Request) -> Result<Message, ApiError> {
    let Some(client) = ctx.tlib() else {
        return Err(ApiError::back_end("Voice service is unavailable"));
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
        Err(ClientError::Timeout) => Err(ApiError::back_end("No answer from the voice service")),
        Err(e) => Err(ApiError::back_end(format!("Voice service error: {e}"))),
    }
}

/// The REST error for a T-Library error code. GWS documents an unregistered DN as 500 / 4; here
/// every refusal by the SIP node is a 4xx (statusCode kept), since none is a fault of this node
/// and the DR scenarios expect most of them (R5, R10).
fn refusal(dn: &str, code: u32, text: &str) -> ApiError {
    match code {
        error_code::NOT_REGISTERED | error_code::NOT_CONFIGURED => {
            ApiError::back_end(format!("Device '{dn}' is not registered."))
        }
        error_code::OUT_OF_SERVICE => {
            ApiError::back_end(format!("Device '{dn}' is out of service: {text}"))
        }
        error_code::SET_WRONG_STATE
        | error_code::INVALID_STATE
        | error_code::INV_CALL_STATE
        | error_code::CTL_INV_CALL_STATE
        | error_code::IN_SAME_STATE
        | error_code::SOFT_AGENT_ALREADY_LOGGED_IN
        | error_code::SOFT_AGENT_NOT_LOGGED_IN => ApiError::invalid_state(text.to_owned()),
        _ => ApiError::back_end(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_refusal_by_the_sip_node_is_a_server_error() {
        for (code, _, text) in error_code::ALL {
            let e = refusal("7001", *code, text);
            assert!(e.status.is_client_error(), "{code}: {e:?}");
        }
        let owner_lost = refusal("7001", error_code::OUT_OF_SERVICE, "owner unreachable");
        assert_eq!((owner_lost.status.as_u16(), owner_lost.code), (400, 4));
        assert!(owner_lost.message.contains("owner unreachable"));
        assert_eq!(
            refusal("7001", error_code::CTL_INV_CALL_STATE, "call").code,
            2
        );
        assert_eq!(refusal("7001", error_code::INTERNAL, "boom").code, 4);
    }
}
