//! Management API error bodies.

use serde::Serialize;

/// Auth0's Management API error body: `{statusCode, error, message, errorCode?}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MgmtErrorBody {
    /// The HTTP status, repeated in the body.
    #[serde(rename = "statusCode")]
    pub status_code: u16,
    /// The HTTP reason phrase, e.g. `Bad Request`.
    pub error: String,
    /// What went wrong, for a human.
    pub message: String,
    /// Machine-readable code such as `invalid_body` or `insufficient_scope`.
    #[serde(rename = "errorCode", skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

impl MgmtErrorBody {
    /// An error body for `status`, with `error` set to the status's reason phrase.
    pub fn new(status: u16, message: impl Into<String>, error_code: Option<&str>) -> Self {
        MgmtErrorBody {
            status_code: status,
            error: reason_phrase(status).to_owned(),
            message: message.into(),
            error_code: error_code.map(str::to_owned),
        }
    }
}

/// The standard reason phrase of an HTTP status (RFC 9110), `"Error"` for unknown codes.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// A request body (or query string) the Management API refuses: HTTP 400 with `errorCode`
/// `invalid_body` (or `invalid_query_string`). The message always names the offending field path,
/// e.g. `Payload validation error: 'token_quota.client_credentials.per_hour' must be an integer
/// between 1 and 2147483647`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct BodyError {
    /// The full message, ready for [`MgmtErrorBody::message`].
    pub message: String,
}

const PAYLOAD_PREFIX: &str = "Payload validation error: ";
const QUERY_PREFIX: &str = "Query validation error: ";

impl BodyError {
    /// A payload error with a complete problem text after Auth0's prefix.
    pub fn payload(problem: impl std::fmt::Display) -> BodyError {
        BodyError { message: format!("{PAYLOAD_PREFIX}{problem}") }
    }

    /// `Payload validation error: '<path>' <problem>`.
    pub fn field(path: &str, problem: impl std::fmt::Display) -> BodyError {
        BodyError::payload(format_args!("'{path}' {problem}"))
    }

    /// `Query validation error: '<param>' <problem>`.
    pub fn query(param: &str, problem: impl std::fmt::Display) -> BodyError {
        BodyError { message: format!("{QUERY_PREFIX}'{param}' {problem}") }
    }

    /// Auth0's `errorCode`: `invalid_query_string` for query errors, else `invalid_body`.
    pub fn error_code(&self) -> &'static str {
        if self.message.starts_with(QUERY_PREFIX) { "invalid_query_string" } else { "invalid_body" }
    }

    /// The 400 response body for this error.
    pub fn to_error_body(&self) -> MgmtErrorBody {
        MgmtErrorBody::new(400, self.message.clone(), Some(self.error_code()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_serialize_like_auth0() {
        let cases: &[(u16, Option<&str>, &str)] = &[
            (
                403,
                Some("insufficient_scope"),
                r#"{"statusCode":403,"error":"Forbidden","message":"m","errorCode":"insufficient_scope"}"#,
            ),
            (401, None, r#"{"statusCode":401,"error":"Unauthorized","message":"m"}"#),
            (413, None, r#"{"statusCode":413,"error":"Payload Too Large","message":"m"}"#),
            (429, None, r#"{"statusCode":429,"error":"Too Many Requests","message":"m"}"#),
            (503, None, r#"{"statusCode":503,"error":"Service Unavailable","message":"m"}"#),
            (599, None, r#"{"statusCode":599,"error":"Error","message":"m"}"#),
        ];
        for (status, code, want) in cases {
            let body = MgmtErrorBody::new(*status, "m", *code);
            assert_eq!(serde_json::to_string(&body).unwrap(), *want);
        }
    }

    #[test]
    fn body_error_codes() {
        let e = BodyError::field("name", "is required");
        assert_eq!(e.message, "Payload validation error: 'name' is required");
        assert_eq!(e.to_error_body().error_code.as_deref(), Some("invalid_body"));
        let e = BodyError::query("page", "must be an integer");
        assert_eq!(e.to_string(), "Query validation error: 'page' must be an integer");
        assert_eq!(e.to_error_body().error_code.as_deref(), Some("invalid_query_string"));
    }
}
