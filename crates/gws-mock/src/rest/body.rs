//! Request bodies of the POST operations: `{"operationName": …, …}`, checked before anything
//! else happens so bad input changes nothing.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::error::ApiError;

/// A parsed operation body.
#[derive(Debug)]
pub struct Operation {
    pub name: String,
    pub fields: Map<String, Value>,
}

impl Operation {
    /// Parses the body and checks `operationName` against the resource's `allowed` names.
    pub fn parse(
        body: Result<Bytes, BytesRejection>,
        limit: usize,
        allowed: &[&str],
    ) -> Result<Operation, ApiError> {
        let body = body.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(limit)
            } else {
                ApiError::validation(r.body_text())
            }
        })?;
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::validation(format!("Malformed JSON: {e}")))?;
        let Value::Object(mut fields) = value else {
            return Err(ApiError::validation("The body must be a JSON object"));
        };
        let name = match fields.remove("operationName") {
            None | Some(Value::Null) => return Err(ApiError::missing("operationName")),
            Some(Value::String(s)) => s,
            Some(_) => return Err(ApiError::validation("'operationName' must be a string")),
        };
        if !allowed.contains(&name.as_str()) {
            return Err(ApiError::validation(format!(
                "Unsupported operationName '{name}'"
            )));
        }
        Ok(Operation { name, fields })
    }

    /// An optional string field; any other type is a validation error.
    pub fn opt_str(&self, field: &str) -> Result<Option<&str>, ApiError> {
        match self.fields.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::validation(format!("'{field}' must be a string"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Operation, ApiError> {
        Operation::parse(
            Ok(Bytes::from(body.to_owned())),
            100,
            &["Ready", "NotReady"],
        )
    }

    #[test]
    fn bad_bodies_get_their_status_codes() {
        assert_eq!(parse("{").unwrap_err().code, 10);
        assert_eq!(parse("[]").unwrap_err().code, 10);
        assert_eq!(parse("{}").unwrap_err().code, 1);
        assert_eq!(parse(r#"{"operationName": 3}"#).unwrap_err().code, 10);
        let e = parse(r#"{"operationName": "Dance"}"#).unwrap_err();
        assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, 10));
        assert!(e.message.contains("Dance"));
        let op = parse(r#"{"operationName": "NotReady", "reasonCode": "Lunch", "x": 1}"#).unwrap();
        assert_eq!(op.name, "NotReady");
        assert_eq!(op.opt_str("reasonCode").unwrap(), Some("Lunch"));
        assert_eq!(op.opt_str("missing").unwrap(), None);
        assert_eq!(op.opt_str("x").unwrap_err().code, 10);
    }
}
