//! The one place where errors become HTTP responses: OAuth error JSON on `/oauth/token`, Auth0's
//! Management API error JSON everywhere else.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ration_domain::TokenError;
use ration_proto::mgmt::{BodyError, MgmtErrorBody};
use ration_proto::oauth::{token_error_body, token_error_status};
use ration_store::StoreError;

/// A Management API error: `{statusCode, error, message, errorCode}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub error_code: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>, error_code: Option<&'static str>) -> ApiError {
        ApiError { status, message: message.into(), error_code }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message, Some("invalid_body"))
    }

    pub fn not_found(message: impl Into<String>, code: &'static str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message, Some(code))
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message, Some("conflict"))
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message, None)
    }

    /// Logged in full here; the client sees only that something went wrong.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error", None)
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> ApiError {
        ApiError::bad_request(e.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound => ApiError::not_found("Not found", "inexistent_resource"),
            StoreError::Conflict(what) => ApiError::conflict(format!("Conflict: {what} already exists")),
            StoreError::Backend(_) => ApiError::internal(e),
        }
    }
}

impl From<aws_lc_rs::error::Unspecified> for ApiError {
    fn from(_: aws_lc_rs::error::Unspecified) -> ApiError {
        ApiError::internal("random generator failed")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = MgmtErrorBody::new(self.status.as_u16(), self.message, self.error_code);
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A token endpoint error with its extra headers (quota headers, `Retry-After`).
pub struct OAuthError {
    pub error: TokenError,
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl From<TokenError> for OAuthError {
    fn from(error: TokenError) -> OAuthError {
        OAuthError { error, headers: Vec::new() }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let (status, _) = token_error_status(&self.error);
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut response = (status, axum::Json(token_error_body(&self.error))).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"ration\""));
        }
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}
