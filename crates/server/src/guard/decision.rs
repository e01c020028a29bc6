//! `POST /v1/quota/consume`: the decision endpoint a credentials-exchange Action calls before the
//! tenant issues a token (`examples/auth0-action.js`).
//!
//! The request carries what an Action has: `client_id`, `organization` (id or name) and
//! `audience`. One token is consumed atomically from every bucket that applies, by the same quota
//! engine as Ration's token endpoint, so this path is exact: an enforced quota of N allows N.
//! Quotas not configured mean allow, with no buckets.

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ration_counters::Consumption;
use ration_domain::EntityKind;
use ration_domain::quota::{QuotaPlan, states_for};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Guard, credential_matches, plan_for};
use crate::error::ApiError;
use crate::state::AppState;

/// The body is three short strings.
const BODY_LIMIT: usize = 16 * 1024;
/// Auth0's ids and names are far shorter; this only bounds what reaches the counters.
const MAX_ID_LEN: usize = 255;

/// The decision request. Unknown fields are ignored: an Action may send more than we read.
#[derive(Deserialize)]
struct ConsumeRequest {
    client_id: String,
    #[serde(default)]
    organization: Option<String>,
    #[serde(default)]
    audience: Option<String>,
}

pub async fn post_consume(
    State(state): State<AppState>,
    Extension(guard): Extension<Guard>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Some(secret) = &guard.config().decision_secret else {
        return Err(ApiError::unauthorized("The decision endpoint is not configured (decision_secret)"));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .unwrap_or_default();
    if !credential_matches(presented.as_bytes(), secret) {
        return Err(ApiError::unauthorized("Invalid bearer secret for the decision endpoint"));
    }
    let bytes = crate::body::read_limited(body, BODY_LIMIT).await.map_err(|e| match e {
        crate::body::ReadError::TooLarge => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body too large (limit {BODY_LIMIT} bytes)"),
            Some("payload_too_large"),
        ),
        crate::body::ReadError::Broken => ApiError::bad_request("The request body could not be read"),
    })?;
    let request: ConsumeRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("Expected {{client_id, organization?, audience?}}: {e}")))?;
    if request.client_id.is_empty() || request.client_id.len() > MAX_ID_LEN {
        return Err(ApiError::bad_request(format!("client_id must be 1 to {MAX_ID_LEN} characters")));
    }
    let organization = request.organization.as_deref().filter(|o| !o.is_empty());
    if organization.is_some_and(|o| o.len() > MAX_ID_LEN) {
        return Err(ApiError::bad_request(format!("organization must be at most {MAX_ID_LEN} characters")));
    }
    let now = state.now();
    // The tenant's Management API is exempt, as Ration's own is on its token endpoint.
    if request.audience.as_deref() == Some(guard.management_audience()) {
        return Ok(answer(true, None, &QuotaPlan::default(), &[], now));
    }
    let plan = plan_for(&state.catalog.load(), &request.client_id, organization, now);
    if plan.is_empty() {
        return Ok(answer(true, None, &plan, &[], now));
    }
    match state.counters.consume(&plan).await {
        Ok(Consumption::Granted { after, .. }) => Ok(answer(true, None, &plan, &after, now)),
        Ok(Consumption::Rejected { exhausted, used }) => {
            let reason = match plan.buckets.get(exhausted).map(|b| b.key.entity) {
                Some(EntityKind::Organization) => "Organization quota exceeded",
                _ => "Client quota exceeded",
            };
            Ok(answer(false, Some(reason), &plan, &used, now))
        }
        Err(e) => {
            tracing::error!(error = %e, "guard: quota counters unavailable for a decision");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Quota counters unavailable",
                Some("quota_store_unavailable"),
            ))
        }
    }
}

/// `{allow, reason?, buckets: {client: [...], organization: [...]}}`.
fn answer(
    allow: bool,
    reason: Option<&str>,
    plan: &QuotaPlan,
    counts: &[u64],
    now: ration_domain::UnixTime,
) -> Response {
    let buckets = |entity| -> Vec<Value> {
        states_for(plan, counts, entity, now)
            .iter()
            .map(|s| {
                json!({
                    "bucket": s.window.name(),
                    "quota": s.limit,
                    "used": s.used,
                    "remaining": s.remaining(),
                    "reset_in": s.reset_in,
                })
            })
            .collect()
    };
    let mut body = json!({
        "allow": allow,
        "buckets": { "client": buckets(EntityKind::Client), "organization": buckets(EntityKind::Organization) },
    });
    if let Some(reason) = reason {
        body["reason"] = json!(reason);
    }
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    // A decision is about one exchange; nothing in between may reuse it.
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}
