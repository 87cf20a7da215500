//! Why an exchange with GWS failed, in the terms the desktop reacts to (R13, docs/protocols.md
//! §5): the link is gone (retry), the CometD client is unknown (handshake again), the session
//! is unknown (log in again), or the server refused one operation (show it, stay connected).

use crate::json::{Message, RestAnswer};

/// A failed exchange.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// No usable answer: connect refused, reset, timeout, a proxy's 5xx, a malformed body.
    #[error("connection lost: {0}")]
    Network(String),
    /// CometD `402::Unknown client` (the node forgot the client, or it is another node).
    #[error("unknown CometD client")]
    UnknownClient,
    /// REST 403 `statusCode` 20 or CometD `403::Unknown session`: the GWS session is gone (the
    /// node restarted, ended it, or the proxy moved the desktop to a node that never knew it).
    #[error("session unknown to the server")]
    SessionGone,
    /// The server answered and refused this one request (wrong state, bad credentials …).
    #[error("refused ({status}, statusCode {code}): {message}")]
    Refused {
        status: u16,
        code: i64,
        message: String,
    },
}

/// GWS `statusCode` 20, "not authenticated".
const NOT_AUTHENTICATED: i64 = 20;

impl Failure {
    /// Whether this failure means the desktop lost its connection (as opposed to one refused
    /// request).
    pub fn is_loss(&self) -> bool {
        !matches!(self, Failure::Refused { .. })
    }

    /// Classifies a REST answer: 2xx with `statusCode` 0 or 7 (partial success) is fine.
    pub fn of_rest(status: u16, body: &RestAnswer) -> Result<(), Failure> {
        let code = body.status_code;
        if status == 403 && code == Some(NOT_AUTHENTICATED) {
            return Err(Failure::SessionGone);
        }
        if status >= 500 && code.is_none() {
            // Not a GWS answer: the proxy's 502/503/504 for a node that is gone.
            return Err(Failure::Network(format!("HTTP {status}")));
        }
        if (200..300).contains(&status) && matches!(code, None | Some(0) | Some(7)) {
            return Ok(());
        }
        Err(Failure::Refused {
            status,
            code: code.unwrap_or(-1),
            message: body.status_message.clone().unwrap_or_default(),
        })
    }

    /// A partly successful answer (`statusCode` 7) to an operation on the voice channel alone
    /// failed where it mattered: the agent login was refused (R5: a call or ACW on the DN).
    pub fn of_voice_partial(answer: RestAnswer) -> Result<RestAnswer, Failure> {
        match (answer.status_code, answer.failed.first()) {
            (Some(7), Some(failed)) => Err(Failure::Refused {
                status: 200,
                code: 7,
                message: failed.status_message.clone().unwrap_or_default(),
            }),
            _ => Ok(answer),
        }
    }

    /// Classifies a Bayeux reply message (`successful` and `error`).
    pub fn of_bayeux(reply: &Message) -> Result<(), Failure> {
        if reply.successful == Some(true) {
            return Ok(());
        }
        let error = reply.error.as_deref().unwrap_or("");
        if error.starts_with("402::") {
            return Err(Failure::UnknownClient);
        }
        if error.starts_with("403::Unknown session") {
            return Err(Failure::SessionGone);
        }
        let code = error
            .split("::")
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or(-1);
        Err(Failure::Refused {
            status: 200,
            code,
            message: error.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn rest(v: Value) -> RestAnswer {
        serde_json::from_value(v).unwrap()
    }

    fn bayeux(v: Value) -> Message {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn rest_answers_are_classified() {
        assert_eq!(
            Failure::of_rest(200, &rest(json!({"statusCode": 0}))),
            Ok(())
        );
        assert_eq!(
            Failure::of_rest(200, &rest(json!({"statusCode": 7}))),
            Ok(())
        );
        assert_eq!(
            Failure::of_rest(403, &rest(json!({"statusCode": 20}))),
            Err(Failure::SessionGone)
        );
        let refused =
            rest(json!({"statusCode": 7, "failed": [{"statusMessage": "call in progress"}]}));
        assert_eq!(
            Failure::of_voice_partial(refused),
            Err(Failure::Refused {
                status: 200,
                code: 7,
                message: "call in progress".into()
            })
        );
        assert!(Failure::of_voice_partial(rest(json!({"statusCode": 0}))).is_ok());
        assert_eq!(
            Failure::of_rest(403, &rest(json!({"statusCode": 20}))),
            Err(Failure::SessionGone)
        );
        assert!(matches!(
            Failure::of_rest(502, &RestAnswer::default()),
            Err(Failure::Network(_))
        ));
        let refused = Failure::of_rest(
            400,
            &rest(json!({"statusCode": 2, "statusMessage": "Invalid state"})),
        )
        .unwrap_err();
        assert!(!refused.is_loss());
        assert_eq!(
            refused.to_string(),
            "refused (400, statusCode 2): Invalid state"
        );
        assert!(!Failure::of_rest(500, &rest(json!({"statusCode": 4})))
            .unwrap_err()
            .is_loss());
    }

    #[test]
    fn bayeux_replies_are_classified() {
        let of = |v: Value| Failure::of_bayeux(&bayeux(v));
        assert_eq!(of(json!({"successful": true})), Ok(()));
        assert_eq!(
            of(json!({"successful": false, "error": "402::Unknown client"})),
            Err(Failure::UnknownClient)
        );
        assert_eq!(
            of(json!({"successful": false, "error": "403::Unknown session"})),
            Err(Failure::SessionGone)
        );
        assert!(matches!(
            of(json!({"successful": false, "error": "403::Subscription denied"})),
            Err(Failure::Refused { code: 403, .. })
        ));
        assert!(matches!(of(json!({})), Err(Failure::Refused { .. })));
    }
}
