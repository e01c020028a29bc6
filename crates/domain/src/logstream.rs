//! Log streams: where events are shipped, and which events go there.

use crate::time::UnixTime;

/// A configured log stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogStream {
    pub id: String,
    pub name: String,
    pub sink: Sink,
    pub status: StreamStatus,
    /// Event categories to deliver (see [`CATEGORIES`]); empty means every event.
    pub filters: Vec<String>,
    /// Auth0's `isPriority`: stored and returned; Ration delivers every stream the same way.
    pub is_priority: bool,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sink {
    /// Auth0's custom webhook.
    Http(HttpSink),
    /// Ration extension: JSON lines appended to a local file, for log shippers.
    File { path: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSink {
    pub endpoint: String,
    /// Sent verbatim as the `Authorization` header. A secret: never returned by the API.
    pub authorization: Option<String>,
    pub content_type: String,
    pub format: ContentFormat,
    pub custom_headers: Vec<(String, String)>,
}

/// Auth0's `httpContentFormat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentFormat {
    /// One `{"log_id", "data"}` object per line.
    JsonLines,
    /// A JSON array of them.
    JsonArray,
    /// One object per request.
    JsonObject,
}

impl ContentFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ContentFormat::JsonLines => "JSONLINES",
            ContentFormat::JsonArray => "JSONARRAY",
            ContentFormat::JsonObject => "JSONOBJECT",
        }
    }

    pub fn parse(s: &str) -> Option<ContentFormat> {
        Some(match s {
            "JSONLINES" => ContentFormat::JsonLines,
            "JSONARRAY" => ContentFormat::JsonArray,
            "JSONOBJECT" => ContentFormat::JsonObject,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamStatus {
    Active,
    /// Stopped by the operator; events queue up and are delivered on resume.
    Paused,
    /// Stopped by Ration after continuous delivery failure; resumed by setting it active.
    Suspended,
}

impl StreamStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Active => "active",
            StreamStatus::Paused => "paused",
            StreamStatus::Suspended => "suspended",
        }
    }

    pub fn parse(s: &str) -> Option<StreamStatus> {
        Some(match s {
            "active" => StreamStatus::Active,
            "paused" => StreamStatus::Paused,
            "suspended" => StreamStatus::Suspended,
            _ => return None,
        })
    }
}

/// Auth0's log-stream filter categories (`LogStreamFilterGroupNameEnum`).
pub const CATEGORIES: &[&str] = &[
    "auth.ancillary.fail",
    "auth.ancillary.success",
    "auth.login.fail",
    "auth.login.notification",
    "auth.login.success",
    "auth.logout.fail",
    "auth.logout.success",
    "auth.signup.fail",
    "auth.signup.success",
    "auth.silent_auth.fail",
    "auth.silent_auth.success",
    "auth.token_exchange.fail",
    "auth.token_exchange.success",
    "management.fail",
    "management.success",
    "scim.event",
    "system.notification",
    "user.fail",
    "user.notification",
    "user.success",
    "actions",
    "other",
];

/// The filter category of an event type. Auth0 does not document where
/// `token_quota_consumption_warning` belongs; it is a notification about the system's state, so
/// `system.notification`.
pub fn category_of(event_type: &str) -> &'static str {
    match event_type {
        "seccft" => "auth.token_exchange.success",
        "feccft" => "auth.token_exchange.fail",
        "sapi" | "mgmt_api_read" => "management.success",
        "fapi" => "management.fail",
        "token_quota_consumption_warning"
        | "api_limit"
        | "api_limit_warning"
        | "depnote"
        | "limit_wc"
        | "limit_mu"
        | "limit_sul"
        | "client_auth_lockout"
        | "quota_store_unavailable" => "system.notification",
        "actions_execution_failed" => "actions",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapped_category_is_a_known_category() {
        for t in
            ["seccft", "feccft", "sapi", "fapi", "token_quota_consumption_warning", "actions_execution_failed", "x"]
        {
            assert!(CATEGORIES.contains(&category_of(t)), "{t}");
        }
    }
}
