//! `POST /v1/guard/log-stream`: the tenant's custom-webhook log stream (auth0.md §5.2).
//!
//! Bodies are `JSONLINES`, `JSONARRAY` or `JSONOBJECT` deliveries of `{log_id, data}` envelopes
//! (bare events carrying their own `log_id` are accepted too). Each `seccft` is counted once per
//! `log_id` (streams deliver at least once) against its client's and organization's quotas at the
//! event's own date. Counting never refuses: the tenant has already issued that token. When a
//! count reaches an enforced limit, a pause is persisted for the pauser before the answer goes out.
//!
//! Order of the steps, and why: claim the `log_id` first, then count. A redelivery racing the
//! first delivery can then never count twice. A failure after the claim (counter store down)
//! answers 503 and loses that one count, which is the price of never double counting; the pause
//! decision itself is not lost, because duplicates re-check the counts and re-request the pause.

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ration_counters::Consumption;
use ration_domain::quota::QuotaPlan;
use ration_domain::{EntityKind, UnixTime};
use serde_json::{Value, json};

use super::pauser::PauseRequest;
use super::{Guard, credential_matches, plan_for};
use crate::error::ApiError;
use crate::state::AppState;

/// Deliveries can batch many events; this is far above any batch seen in practice.
const BODY_LIMIT: usize = 16 * 1024 * 1024;
/// How long a `log_id` is remembered. Auth0 retries and replays within days; a stream recreated
/// with `startFrom` further back would be counted again, which is what its operator asked for.
const DEDUPE_MILLIS: i64 = 8 * 86_400_000;

pub async fn post_log_stream(
    State(state): State<AppState>,
    Extension(guard): Extension<Guard>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(expected) = &guard.config().log_stream_authorization else {
        return Err(ApiError::unauthorized("The log-stream receiver is not configured (log_stream_authorization)"));
    };
    let presented = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or_default();
    if !credential_matches(presented, expected) {
        return Err(ApiError::unauthorized("Invalid Authorization for the log-stream receiver"));
    }
    let bytes = crate::body::read_limited(body, BODY_LIMIT).await.map_err(|e| match e {
        crate::body::ReadError::TooLarge => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body too large (limit {BODY_LIMIT} bytes)"),
            Some("payload_too_large"),
        ),
        crate::body::ReadError::Broken => ApiError::bad_request("The request body could not be read"),
    })?;
    let items = parse_deliveries(&bytes).map_err(ApiError::bad_request)?;
    let now = state.now();
    let (mut counted, mut duplicates) = (0u64, 0u64);
    for item in &items {
        let Some((log_id, event)) = envelope(item) else { continue };
        let Some(token) = issued_token(event, guard.management_audience()) else { continue };
        let key = format!("guard:log:{log_id}");
        let first = state.store.claim_once(&key, UnixTime::from_millis(now.millis + DEDUPE_MILLIS), now).await?;
        let at = event.get("date").and_then(Value::as_str).and_then(UnixTime::parse_rfc3339).unwrap_or(now);
        let plan = plan_for(&state.catalog.load(), token.client_id, token.organization, at);
        let counts = if first {
            counted += 1;
            if plan.is_empty() {
                continue;
            }
            count(&state, &plan).await?
        } else {
            duplicates += 1;
            if plan.is_empty() {
                continue;
            }
            // Not counted again, but the pause it may have called for is requested again: the
            // first delivery may have failed right after counting.
            let keys: Vec<_> = plan.buckets.iter().map(|b| b.key.clone()).collect();
            state.counters.peek(&keys).await.map_err(unavailable)?
        };
        if let Some(request) = exhausted(&plan, &counts, token.client_id) {
            guard.pauses().request(&state, request).await?;
        }
    }
    let body = json!({ "accepted": items.len(), "counted": counted, "duplicates": duplicates });
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// The facts of a `seccft` the guard counts.
struct IssuedToken<'a> {
    client_id: &'a str,
    organization: Option<&'a str>,
}

/// A `seccft` with a client id, unless it is a token for the tenant's Management API (never
/// counted, like Ration's own Management API tokens: a default quota must not lock out the
/// guard's own client).
fn issued_token<'a>(event: &'a Value, management_audience: &str) -> Option<IssuedToken<'a>> {
    if event.get("type").and_then(Value::as_str) != Some("seccft") {
        return None;
    }
    if event.get("audience").and_then(Value::as_str) == Some(management_audience) {
        return None;
    }
    let client_id = event.get("client_id").and_then(Value::as_str).filter(|s| !s.is_empty())?;
    let organization = event.get("organization_id").and_then(Value::as_str).filter(|s| !s.is_empty());
    Some(IssuedToken { client_id, organization })
}

/// Counts one token in every bucket of `plan`. Enforcement is off for the count itself: the
/// tenant already issued the token, and a refusal here would only make the counts wrong.
async fn count(state: &AppState, plan: &QuotaPlan) -> Result<Vec<u64>, ApiError> {
    let mut counting = plan.clone();
    for bucket in &mut counting.buckets {
        bucket.enforce = false;
    }
    match state.counters.consume(&counting).await.map_err(unavailable)? {
        Consumption::Granted { after, .. } => Ok(after),
        // Cannot happen without enforced buckets; the counts are still the truth.
        Consumption::Rejected { used, .. } => Ok(used),
    }
}

fn unavailable(e: ration_counters::CounterError) -> ApiError {
    tracing::error!(error = %e, "guard: quota counters unavailable; the log stream will redeliver");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Quota counters unavailable", Some("quota_store_unavailable"))
}

/// The pause `counts` call for: enforced buckets at or over their limit. The client's own quota
/// names the reason when it is exhausted; otherwise the organization's, and the client that
/// pushed it over is the one paused (other clients of the organization follow as their tokens
/// arrive). `None` when nothing enforced is exhausted.
pub fn exhausted(plan: &QuotaPlan, counts: &[u64], client_id: &str) -> Option<PauseRequest> {
    let over: Vec<_> = plan
        .buckets
        .iter()
        .zip(counts)
        .filter(|(b, n)| b.enforce && **n >= u64::from(b.limit))
        .map(|(b, _)| b)
        .collect();
    let entity = if over.iter().any(|b| b.key.entity == EntityKind::Client) {
        EntityKind::Client
    } else {
        over.first()?.key.entity
    };
    let theirs: Vec<_> = over.iter().filter(|b| b.key.entity == entity).collect();
    Some(PauseRequest {
        client_id: client_id.to_owned(),
        reason: match entity {
            EntityKind::Client => "Client quota exceeded",
            EntityKind::Organization => "Organization quota exceeded",
        },
        entity_type: entity.name(),
        entity_id: theirs.first().map(|b| b.key.entity_id.to_string()).unwrap_or_default(),
        buckets: theirs.iter().map(|b| b.key.window.name().to_owned()).collect(),
        // Every exhausted bucket must have reset before a token could be issued again.
        until: over.iter().map(|b| b.key.expires_at()).max().unwrap_or_default(),
    })
}

/// The delivered items: a JSON array (`JSONARRAY`), one object (`JSONOBJECT`, or a single-line
/// `JSONLINES` body) or one object per line (`JSONLINES`). Lines that are not JSON are skipped
/// (a redelivery cannot fix them); a body with nothing readable is an error.
fn parse_deliveries(body: &[u8]) -> Result<Vec<Value>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "The body is not UTF-8".to_owned())?.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return Ok(match value {
            Value::Array(items) => items,
            other => vec![other],
        });
    }
    let mut items = Vec::new();
    let mut bad = 0usize;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(v) => items.push(v),
            Err(_) => bad += 1,
        }
    }
    if items.is_empty() {
        return Err("The body is not JSON, a JSON array or JSON lines".to_owned());
    }
    if bad > 0 {
        tracing::warn!(bad, "guard: log-stream delivery had lines that are not JSON; skipped them");
    }
    Ok(items)
}

/// `(log_id, event)` of an item: Auth0's envelope `{log_id, data}`, or a bare event with its own
/// `log_id`.
fn envelope(item: &Value) -> Option<(&str, &Value)> {
    fn nonempty(v: Option<&Value>) -> Option<&str> {
        v.and_then(Value::as_str).filter(|s| !s.is_empty())
    }
    match item.get("data").filter(|d| d.is_object()) {
        Some(data) => Some((nonempty(item.get("log_id")).or_else(|| nonempty(data.get("log_id")))?, data)),
        None => Some((nonempty(item.get("log_id"))?, item)),
    }
}

#[cfg(test)]
mod tests {
    use ration_domain::{QuotaLimits, TokenQuota};

    use super::*;

    #[test]
    fn every_content_format_parses() {
        let a = json!({"log_id": "1", "data": {"type": "seccft", "client_id": "c"}});
        let b = json!({"log_id": "2", "data": {"type": "feccft", "client_id": "c"}});
        let lines = format!("{a}\n{b}\n");
        assert_eq!(parse_deliveries(lines.as_bytes()).unwrap(), vec![a.clone(), b.clone()]);
        assert_eq!(parse_deliveries(format!("[{a},{b}]").as_bytes()).unwrap(), vec![a.clone(), b.clone()]);
        assert_eq!(parse_deliveries(a.to_string().as_bytes()).unwrap(), vec![a.clone()]);
        assert_eq!(parse_deliveries(format!("{a}\nnot json\n").as_bytes()).unwrap(), vec![a.clone()]);
        assert!(parse_deliveries(b"nope").is_err());
        assert!(parse_deliveries(b"  \n").unwrap().is_empty());
        assert_eq!(envelope(&a).map(|(id, _)| id), Some("1"));
        let bare = json!({"log_id": "3", "type": "seccft"});
        assert_eq!(envelope(&bare).map(|(id, e)| (id, e == &bare)), Some(("3", true)));
        assert!(envelope(&json!({"type": "seccft"})).is_none());
    }

    #[test]
    fn management_api_tokens_are_not_counted() {
        let aud = "https://t.example/api/v2/";
        let ev = json!({"type": "seccft", "client_id": "c", "audience": aud});
        assert!(issued_token(&ev, aud).is_none());
        let ev = json!({"type": "seccft", "client_id": "c", "audience": "https://api", "organization_id": "org_1"});
        let t = issued_token(&ev, aud).unwrap();
        assert_eq!((t.client_id, t.organization), ("c", Some("org_1")));
    }

    #[test]
    fn exhausted_enforced_buckets_name_the_pause() {
        let now = UnixTime::from_secs(1_796_404_777);
        let q = |enforce, h| TokenQuota { enforce, limits: QuotaLimits { per_hour: Some(h), ..Default::default() } };
        let client = q(true, 3);
        let org = q(true, 5);
        let plan = QuotaPlan::new(Some(("c", &client)), Some(("o", &org)), now);
        assert!(exhausted(&plan, &[2, 4], "c").is_none());
        let p = exhausted(&plan, &[3, 4], "c").unwrap();
        assert_eq!(
            (p.reason, p.entity_id.as_str(), p.until),
            ("Client quota exceeded", "c", plan.buckets[0].key.expires_at())
        );
        let p = exhausted(&plan, &[1, 5], "c").unwrap();
        assert_eq!(
            (p.reason, p.entity_type, p.entity_id.as_str()),
            ("Organization quota exceeded", "organization", "o")
        );
        let monitoring = q(false, 1);
        let plan = QuotaPlan::new(Some(("c", &monitoring)), None, now);
        assert!(exhausted(&plan, &[9], "c").is_none(), "unenforced quotas never pause");
    }
}
