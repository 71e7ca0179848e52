//! What a request's failure looks like to an HTTP client: a status and `{"error", "status"}`.
//! `prism_ops::Error` maps here as the CLI maps it to exit codes.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub code: StatusCode,
    pub error: String,
    pub status: u16,
}

impl ApiError {
    pub fn new(code: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            error: message.into(),
            status: code.as_u16(),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// The management cluster failed to answer.
    pub fn upstream(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_GATEWAY, message)
    }
}

impl From<prism_ops::Error> for ApiError {
    fn from(error: prism_ops::Error) -> ApiError {
        use prism_ops::Error;
        let code = match &error {
            Error::Api(_) => StatusCode::BAD_GATEWAY,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Refused(_) | Error::RolledBack(_) => StatusCode::CONFLICT,
            Error::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        };
        ApiError::new(code, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code, Json(self)).into_response()
    }
}
