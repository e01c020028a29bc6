//! `/api/v2/logs`: the event log, in Auth0's two paging modes.
//!
//! Search mode: `q` (a subset of Auth0's Lucene syntax: `field:value` terms joined by `AND`, for
//! `type`, `client_id` and `date` ranges), `page`/`per_page`/`include_totals`, newest first.
//! Checkpoint mode: `from` (a `log_id`) and `take`, oldest first after it; other parameters ignored.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ration_domain::UnixTime;
use ration_store::{EventQuery, Page, StoredEvent};
use serde_json::Value;

use super::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

fn query_error(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message, Some("invalid_query_string"))
}

fn event_json(e: &StoredEvent) -> Value {
    serde_json::from_str(&e.json).unwrap_or(Value::Null)
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    principal.require("read:logs")?;
    let pairs: Vec<(String, String)> =
        form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes()).into_owned().collect();
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let number = |name: &str, default: u32, max: u32| -> Result<u32, ApiError> {
        match get(name) {
            None => Ok(default),
            Some(v) => v.parse::<u32>().ok().filter(|n| *n <= max).ok_or_else(|| {
                query_error(format!("Query validation error: '{name}' must be an integer between 0 and {max}"))
            }),
        }
    };

    if let Some(from) = get("from") {
        let take = number("take", 50, 100)?.max(1);
        let q = EventQuery {
            types: Vec::new(),
            categories: Vec::new(),
            client_id: None,
            date_from: None,
            date_to: None,
            after_log_id: Some(from.to_owned()),
            newest_first: false,
            with_total: false,
            page: Page { page: 0, per_page: take },
        };
        state.events.flushed().await;
        let listing = state.store.list_events(&q).await?;
        let items: Vec<Value> = listing.items.iter().map(event_json).collect();
        let next = listing.items.last().map(|e| e.log_id.clone()).unwrap_or_else(|| from.to_owned());
        let link = format!("<{}api/v2/logs?from={next}&take={take}>; rel=\"next\"", state.issuer);
        let mut response = Json(items).into_response();
        if let Ok(v) = axum::http::HeaderValue::from_str(&link) {
            response.headers_mut().insert(axum::http::header::LINK, v);
        }
        return Ok(response);
    }

    let per_page = number("per_page", 50, 100)?.max(1);
    let page = number("page", 0, u32::MAX)?;
    let mut q = EventQuery {
        types: Vec::new(),
        categories: Vec::new(),
        client_id: None,
        date_from: None,
        date_to: None,
        after_log_id: None,
        newest_first: !matches!(get("sort"), Some("date:1")),
        with_total: get("include_totals") == Some("true"),
        page: Page { page, per_page },
    };
    if let Some(text) = get("q").or_else(|| get("search")) {
        apply_lucene(&mut q, text)?;
    }
    state.events.flushed().await;
    let listing = state.store.list_events(&q).await?;
    let items: Vec<Value> = listing.items.iter().map(event_json).collect();
    if get("include_totals") == Some("true") {
        return Ok(Json(serde_json::json!({
            "start": u64::from(page) * u64::from(per_page),
            "limit": per_page,
            "length": items.len(),
            "total": listing.total,
            "logs": items,
        }))
        .into_response());
    }
    Ok(Json(items).into_response())
}

pub async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    principal.require("read:logs")?;
    state.events.flushed().await;
    let event =
        state.store.get_event(&id).await?.ok_or_else(|| ApiError::not_found("log not found", "inexistent_log"))?;
    Ok(Json(event_json(&event)).into_response())
}

/// `type:seccft AND client_id:"abc" AND date:[2025-01-01 TO *]`.
fn apply_lucene(q: &mut EventQuery, text: &str) -> Result<(), ApiError> {
    for term in text.split(" AND ").map(str::trim).filter(|t| !t.is_empty()) {
        let (field, value) = term
            .split_once(':')
            .ok_or_else(|| query_error(format!("Query validation error: cannot parse term {term:?}")))?;
        let value = value.trim().trim_matches('"');
        match field.trim() {
            "type" => {
                q.types.extend(value.trim_matches(|c| c == '(' || c == ')').split(" OR ").map(|s| s.trim().to_owned()))
            }
            "client_id" => q.client_id = Some(value.to_owned()),
            "date" => {
                let (from, to) = parse_range(value)?;
                q.date_from = from;
                q.date_to = to;
            }
            other => return Err(query_error(format!("Query validation error: field '{other}' is not searchable"))),
        }
    }
    Ok(())
}

/// `[a TO b]` inclusive, `{a TO b}` exclusive (mixed allowed), `*` open; dates `YYYY-MM-DD` or a
/// single day.
fn parse_range(value: &str) -> Result<(Option<UnixTime>, Option<UnixTime>), ApiError> {
    let bad = || query_error(format!("Query validation error: invalid date range {value:?}"));
    let day = |s: &str| -> Result<i64, ApiError> {
        let mut parts = s.split('-');
        let (y, m, d) = (parts.next(), parts.next(), parts.next());
        let y: i64 = y.and_then(|v| v.parse().ok()).ok_or_else(bad)?;
        let m: u32 = m.and_then(|v| v.parse().ok()).filter(|m| (1..=12).contains(m)).ok_or_else(bad)?;
        let d: u32 = d.and_then(|v| v.parse().ok()).filter(|d| (1..=31).contains(d)).ok_or_else(bad)?;
        Ok(ration_domain::time::days_from_civil(y, m, d) * 86_400)
    };
    let Some(first) = value.chars().next() else { return Err(bad()) };
    if first != '[' && first != '{' {
        let start = day(value)?;
        return Ok((Some(UnixTime::from_secs(start)), Some(UnixTime::from_secs(start + 86_400))));
    }
    let last = value.chars().last().ok_or_else(bad)?;
    let inner = value.get(1..value.len() - 1).ok_or_else(bad)?;
    let (a, b) = inner.split_once(" TO ").ok_or_else(bad)?;
    let from = match a.trim() {
        "*" => None,
        s => Some(UnixTime::from_secs(day(s)? + if first == '{' { 86_400 } else { 0 })),
    };
    let to = match b.trim() {
        "*" => None,
        s => Some(UnixTime::from_secs(day(s)? + if last == ']' { 86_400 } else { 0 })),
    };
    Ok((from, to))
}
