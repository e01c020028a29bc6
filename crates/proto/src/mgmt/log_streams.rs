//! Log streams: `POST/PATCH /api/v2/log-streams` bodies and the stream object (auth0.md §5.1).
//!
//! Types: Auth0's `http` (custom webhook) and Ration's `file` extension. The webhook's
//! `httpAuthorization` is a secret: accepted, never returned.

use ration_domain::logstream::CATEGORIES;
use ration_domain::{ContentFormat, HttpSink, LogStream, Sink, StreamStatus, UnixTime};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::BodyError;
use super::json::{check_len, non_null};

const MAX_NAME_LEN: usize = 200;
const DEFAULT_CONTENT_TYPE: &str = "application/json";
/// Headers Ration sets itself; a custom header must not override them.
const RESERVED_HEADERS: &[&str] = &["authorization", "content-type", "content-length", "host", "transfer-encoding"];

/// `sink` of a stream. Which fields apply depends on the stream type.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct SinkBody {
    /// Where events are POSTed: an absolute http(s) URL.
    #[serde(rename = "httpEndpoint", default, deserialize_with = "non_null")]
    pub http_endpoint: Option<String>,
    /// Sent as `Content-Type` (default `application/json`).
    #[serde(rename = "httpContentType", default, deserialize_with = "non_null")]
    pub http_content_type: Option<String>,
    /// `JSONLINES` (default), `JSONARRAY` or `JSONOBJECT`.
    #[serde(rename = "httpContentFormat", default, deserialize_with = "non_null")]
    pub http_content_format: Option<String>,
    /// Sent verbatim as `Authorization`; write-only.
    #[serde(rename = "httpAuthorization", default)]
    pub http_authorization: Option<String>,
    /// Extra headers on every delivery.
    #[serde(rename = "httpCustomHeaders", default, deserialize_with = "non_null")]
    pub http_custom_headers: Option<Vec<HeaderBody>>,
    /// `file` streams: absolute path of the JSON-lines file.
    #[serde(default, deserialize_with = "non_null")]
    pub path: Option<String>,
}

/// One of `httpCustomHeaders`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct HeaderBody {
    /// Header name.
    pub header: String,
    /// Header value.
    pub value: String,
}

/// One of `filters`: `{"type": "category", "name": …}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct FilterBody {
    /// Always `category`.
    #[serde(rename = "type")]
    pub kind: String,
    /// One of Auth0's categories.
    pub name: String,
}

/// `POST /api/v2/log-streams` body.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct LogStreamCreate {
    /// 1 to 200 characters.
    pub name: String,
    /// `http` or `file`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Required.
    #[serde(default, deserialize_with = "non_null")]
    pub sink: Option<SinkBody>,
    /// Categories to deliver; none: every event.
    #[serde(default, deserialize_with = "non_null")]
    pub filters: Option<Vec<FilterBody>>,
    /// `active` (default) or `paused`.
    #[serde(default, deserialize_with = "non_null")]
    pub status: Option<String>,
    /// Stored and returned.
    #[serde(rename = "isPriority", default, deserialize_with = "non_null")]
    pub is_priority: Option<bool>,
}

impl std::fmt::Debug for LogStreamCreate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStreamCreate").field("name", &self.name).field("type", &self.kind).finish_non_exhaustive()
    }
}

impl LogStreamCreate {
    /// Validates the body and builds the stream.
    pub fn into_log_stream(self, id: String, now: UnixTime) -> Result<LogStream, BodyError> {
        check_len("name", &self.name, 1, MAX_NAME_LEN)?;
        let sink_body = self.sink.ok_or_else(|| BodyError::field("sink", "is required"))?;
        let sink = match self.kind.as_str() {
            "http" => Sink::Http(http_sink(sink_body, None)?),
            "file" => Sink::File { path: file_path(sink_body)? },
            _ => return Err(BodyError::field("type", "must be one of: http, file")),
        };
        Ok(LogStream {
            id,
            name: self.name,
            sink,
            status: self.status.as_deref().map(settable_status).transpose()?.unwrap_or(StreamStatus::Active),
            filters: self.filters.map(check_filters).transpose()?.unwrap_or_default(),
            is_priority: self.is_priority.unwrap_or(false),
            created_at: now,
            updated_at: now,
        })
    }
}

/// `PATCH /api/v2/log-streams/{id}` body. Given sink fields replace the stored ones; the type
/// cannot change.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct LogStreamPatch {
    /// New name.
    #[serde(default, deserialize_with = "non_null")]
    pub name: Option<String>,
    /// `active` (resumes a paused or suspended stream) or `paused`.
    #[serde(default, deserialize_with = "non_null")]
    pub status: Option<String>,
    /// New filters (replace the old ones).
    #[serde(default, deserialize_with = "non_null")]
    pub filters: Option<Vec<FilterBody>>,
    /// Sink fields to change.
    #[serde(default, deserialize_with = "non_null")]
    pub sink: Option<SinkBody>,
    /// New priority flag.
    #[serde(rename = "isPriority", default, deserialize_with = "non_null")]
    pub is_priority: Option<bool>,
}

impl std::fmt::Debug for LogStreamPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStreamPatch").field("name", &self.name).field("status", &self.status).finish_non_exhaustive()
    }
}

impl LogStreamPatch {
    /// Validates every field, then applies them all (nothing changes on error).
    pub fn apply(self, stream: &mut LogStream, now: UnixTime) -> Result<(), BodyError> {
        if let Some(name) = &self.name {
            check_len("name", name, 1, MAX_NAME_LEN)?;
        }
        let status = self.status.as_deref().map(settable_status).transpose()?;
        let filters = self.filters.map(check_filters).transpose()?;
        let sink = match (self.sink, &stream.sink) {
            (None, _) => None,
            (Some(body), Sink::Http(current)) => Some(Sink::Http(http_sink(body, Some(current))?)),
            (Some(body), Sink::File { path }) => {
                let body = SinkBody { path: body.path.clone().or_else(|| Some(path.clone())), ..body };
                Some(Sink::File { path: file_path(body)? })
            }
        };
        if let Some(v) = self.name {
            stream.name = v;
        }
        if let Some(v) = status {
            stream.status = v;
        }
        if let Some(v) = filters {
            stream.filters = v;
        }
        if let Some(v) = sink {
            stream.sink = v;
        }
        if let Some(v) = self.is_priority {
            stream.is_priority = v;
        }
        stream.updated_at = now;
        Ok(())
    }
}

/// Operators may pause and resume; `suspended` is Ration's to set.
fn settable_status(s: &str) -> Result<StreamStatus, BodyError> {
    match StreamStatus::parse(s) {
        Some(StreamStatus::Suspended) | None => Err(BodyError::field("status", "must be one of: active, paused")),
        Some(status) => Ok(status),
    }
}

fn check_filters(filters: Vec<FilterBody>) -> Result<Vec<String>, BodyError> {
    let mut out = Vec::with_capacity(filters.len());
    for (idx, f) in filters.into_iter().enumerate() {
        if f.kind != "category" {
            return Err(BodyError::field(&format!("filters[{idx}].type"), "must be \"category\""));
        }
        if !CATEGORIES.contains(&f.name.as_str()) {
            return Err(BodyError::field(
                &format!("filters[{idx}].name"),
                format!("must be one of: {}", CATEGORIES.join(", ")),
            ));
        }
        if !out.contains(&f.name) {
            out.push(f.name);
        }
    }
    Ok(out)
}

fn file_path(body: SinkBody) -> Result<String, BodyError> {
    if body.http_endpoint.is_some() || body.http_content_format.is_some() || body.http_authorization.is_some() {
        return Err(BodyError::field("sink", "a file stream takes only 'path'"));
    }
    let path = body.path.ok_or_else(|| BodyError::field("sink.path", "is required"))?;
    if !path.starts_with('/') || path.contains('\0') {
        return Err(BodyError::field("sink.path", "must be an absolute file path"));
    }
    Ok(path)
}

/// Builds an HTTP sink from `body`, taking absent fields from `current` (PATCH) or defaults.
fn http_sink(body: SinkBody, current: Option<&HttpSink>) -> Result<HttpSink, BodyError> {
    if body == SinkBody::default() && current.is_none() {
        return Err(BodyError::field("sink", "must not be empty: 'httpEndpoint' is required"));
    }
    if body.path.is_some() {
        return Err(BodyError::field("sink.path", "applies only to file streams"));
    }
    let endpoint = match (body.http_endpoint, current) {
        (Some(e), _) => check_endpoint(e)?,
        (None, Some(c)) => c.endpoint.clone(),
        (None, None) => return Err(BodyError::field("sink.httpEndpoint", "is required")),
    };
    let content_type = match (body.http_content_type, current) {
        (Some(ct), _) => {
            if ct.is_empty() || !is_header_value(&ct) {
                return Err(BodyError::field("sink.httpContentType", "must be a non-empty media type"));
            }
            ct
        }
        (None, Some(c)) => c.content_type.clone(),
        (None, None) => DEFAULT_CONTENT_TYPE.to_owned(),
    };
    let format = match (body.http_content_format, current) {
        (Some(f), _) => ContentFormat::parse(&f).ok_or_else(|| {
            BodyError::field("sink.httpContentFormat", "must be one of: JSONLINES, JSONARRAY, JSONOBJECT")
        })?,
        (None, Some(c)) => c.format,
        (None, None) => ContentFormat::JsonLines,
    };
    let authorization = match (body.http_authorization, current) {
        (Some(a), _) if a.is_empty() => None,
        (Some(a), _) => {
            if !is_header_value(&a) {
                return Err(BodyError::field("sink.httpAuthorization", "must be a valid header value"));
            }
            Some(a)
        }
        (None, Some(c)) => c.authorization.clone(),
        (None, None) => None,
    };
    let custom_headers = match (body.http_custom_headers, current) {
        (Some(headers), _) => {
            let mut out = Vec::with_capacity(headers.len());
            for (idx, h) in headers.into_iter().enumerate() {
                let valid_name = !h.header.is_empty()
                    && h.header.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !valid_name {
                    return Err(BodyError::field(
                        &format!("sink.httpCustomHeaders[{idx}].header"),
                        "must be a header name",
                    ));
                }
                if RESERVED_HEADERS.contains(&h.header.to_ascii_lowercase().as_str()) {
                    return Err(BodyError::field(
                        &format!("sink.httpCustomHeaders[{idx}].header"),
                        "is set by Ration (use httpAuthorization / httpContentType)",
                    ));
                }
                if !is_header_value(&h.value) {
                    return Err(BodyError::field(
                        &format!("sink.httpCustomHeaders[{idx}].value"),
                        "must be a header value",
                    ));
                }
                out.push((h.header, h.value));
            }
            out
        }
        (None, Some(c)) => c.custom_headers.clone(),
        (None, None) => Vec::new(),
    };
    Ok(HttpSink { endpoint, authorization, content_type, format, custom_headers })
}

/// An absolute `http` or `https` URL with a host. Plain `http` is allowed for sinks on private
/// networks (DESIGN.md §1).
fn check_endpoint(endpoint: String) -> Result<String, BodyError> {
    let bad = || BodyError::field("sink.httpEndpoint", "must be an absolute http(s) URL");
    let url = url::Url::parse(&endpoint).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    Ok(endpoint)
}

fn is_header_value(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// Auth0's stream object (without `httpAuthorization`), plus Ration's `delivery` state.
pub fn log_stream_view(stream: &LogStream, delivery: Value) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(stream.id));
    o.insert("name".into(), json!(stream.name));
    let (kind, sink) = match &stream.sink {
        Sink::Http(h) => (
            "http",
            json!({
                "httpEndpoint": h.endpoint,
                "httpContentType": h.content_type,
                "httpContentFormat": h.format.as_str(),
                "httpCustomHeaders": h.custom_headers.iter()
                    .map(|(header, value)| json!({"header": header, "value": value}))
                    .collect::<Vec<_>>(),
            }),
        ),
        Sink::File { path } => ("file", json!({ "path": path })),
    };
    o.insert("type".into(), json!(kind));
    o.insert("status".into(), json!(stream.status.as_str()));
    o.insert("sink".into(), sink);
    o.insert(
        "filters".into(),
        Value::Array(stream.filters.iter().map(|name| json!({"type": "category", "name": name})).collect()),
    );
    o.insert("isPriority".into(), json!(stream.is_priority));
    o.insert("delivery".into(), delivery);
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mgmt::parse_body;

    fn create(body: Value) -> Result<LogStream, BodyError> {
        parse_body::<LogStreamCreate>(body.to_string().as_bytes())?
            .into_log_stream("lst_1".into(), UnixTime::from_secs(1))
    }

    #[test]
    fn invalid_bodies_name_the_field() {
        let rows = [
            (json!({"name": "a", "type": "http", "sink": {"httpEndpoint": "ftp://x"}}), "sink.httpEndpoint"),
            (json!({"name": "a", "type": "http", "sink": {"httpEndpoint": "not a url"}}), "sink.httpEndpoint"),
            (json!({"name": "a", "type": "http", "sink": {"httpEndpoint": ""}}), "sink.httpEndpoint"),
            (json!({"name": "a", "type": "http", "sink": {}}), "sink"),
            (json!({"name": "a", "type": "http"}), "sink"),
            (
                json!({"name": "a", "type": "http", "sink": {"httpEndpoint": "https://x", "httpContentFormat": "XML"}}),
                "httpContentFormat",
            ),
            (json!({"name": "a", "type": "datadog", "sink": {"httpEndpoint": "https://x"}}), "type"),
            (
                json!({"name": "a", "type": "http", "sink": {"httpEndpoint": "https://x"}, "filters": [{"type": "category", "name": "nope"}]}),
                "filters[0].name",
            ),
            (json!({"name": "a", "type": "file", "sink": {"path": "relative.log"}}), "sink.path"),
            (
                json!({"name": "a", "type": "http", "sink": {"httpEndpoint": "https://x"}, "status": "suspended"}),
                "status",
            ),
            (
                json!({"name": "a", "type": "http", "sink": {"httpEndpoint": "https://x", "httpCustomHeaders": [{"header": "Authorization", "value": "x"}]}}),
                "httpCustomHeaders[0].header",
            ),
            (json!({"name": "a", "type": "http", "sink": {"httpEndpoint": "https://x", "bogus": 1}}), "bogus"),
        ];
        for (body, field) in rows {
            let err = create(body.clone()).expect_err(&body.to_string());
            assert!(err.message.contains(field), "{body}: {}", err.message);
        }
    }

    #[test]
    fn defaults_and_view_hide_the_authorization() {
        let s = create(json!({"name": "a", "type": "http", "sink": {"httpEndpoint": "http://10.0.0.1:8080/in", "httpAuthorization": "Bearer s3cret"}}))
            .unwrap();
        let Sink::Http(h) = &s.sink else { panic!("http sink") };
        assert_eq!((h.format, h.content_type.as_str()), (ContentFormat::JsonLines, "application/json"));
        assert_eq!(s.status, StreamStatus::Active);
        let view = log_stream_view(&s, json!({}));
        assert!(!view.to_string().contains("s3cret"));
        assert_eq!(view["sink"]["httpEndpoint"], "http://10.0.0.1:8080/in");
    }

    #[test]
    fn patch_merges_sink_fields_and_keeps_the_secret() {
        let mut s = create(
            json!({"name": "a", "type": "http", "sink": {"httpEndpoint": "https://x", "httpAuthorization": "k"}}),
        )
        .unwrap();
        let patch: LogStreamPatch =
            parse_body(json!({"sink": {"httpContentFormat": "JSONARRAY"}, "status": "paused"}).to_string().as_bytes())
                .unwrap();
        patch.apply(&mut s, UnixTime::from_secs(2)).unwrap();
        let Sink::Http(h) = &s.sink else { panic!("http sink") };
        assert_eq!(
            (h.format, h.authorization.as_deref(), h.endpoint.as_str()),
            (ContentFormat::JsonArray, Some("k"), "https://x")
        );
        assert_eq!(s.status, StreamStatus::Paused);
        let bad: LogStreamPatch = parse_body(json!({"status": "bogus", "name": "b"}).to_string().as_bytes()).unwrap();
        let before = s.clone();
        assert!(bad.apply(&mut s, UnixTime::from_secs(3)).is_err());
        assert_eq!(s, before, "nothing partial");
    }
}
