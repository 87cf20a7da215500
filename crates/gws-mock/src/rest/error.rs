//! REST failures as GWS reports them: an HTTP status and `{"statusCode", "statusMessage"}`
//! with GWS's documented `statusCode` values (the ones we use: docs/protocols.md §5.1).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// GWS `statusCode` values used here.
pub mod code {
    pub const MISSING_PARAMETER: u32 = 1;
    pub const INVALID_STATE: u32 = 2;
    pub const FORBIDDEN: u32 = 3;
    pub const INTERNAL: u32 = 4;
    pub const NOT_FOUND: u32 = 6;
    pub const PARTIAL_SUCCESS: u32 = 7;
    pub const VALIDATION: u32 = 10;
    pub const NOT_AUTHENTICATED: u32 = 20;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// No (or an unknown) session and no credentials: WWE goes to its login page.
    pub fn access_denied() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            code::NOT_AUTHENTICATED,
            "Access denied",
        )
    }

    /// Basic credentials that match no user.
    pub fn bad_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            code::NOT_AUTHENTICATED,
            "Bad credentials",
        )
    }

    pub fn csrf() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            code::FORBIDDEN,
            "Missing or invalid Csrf token",
        )
    }

    pub fn missing(parameter: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            code::MISSING_PARAMETER,
            format!("Missing parameter '{parameter}'"),
        )
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code::VALIDATION, message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::VALIDATION,
            format!("Request body larger than {limit} bytes"),
        )
    }

    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code::INVALID_STATE, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, code::INTERNAL, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code::NOT_FOUND, message)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            code::VALIDATION,
            "Method not allowed",
        )
    }

    pub fn too_many_sessions() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code::INTERNAL,
            "Too many sessions on this node",
        )
    }

    /// The body of a channel that failed in a multi-channel operation.
    pub fn channel_failure(&self, channel: &str) -> serde_json::Value {
        json!({"statusCode": self.code, "statusMessage": self.message, "channel": channel})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"statusCode": self.code, "statusMessage": self.message});
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"GWS\""),
            );
        }
        response
    }
}
