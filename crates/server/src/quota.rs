//! Quota enforcement on the token path: consume, build Auth0's quota headers, write warning events.

use std::cmp::Reverse;
use std::sync::LazyLock;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use ration_counters::{Consumption, CounterError};
use ration_domain::quota::{
    Bucket, BucketState, QuotaPlan, Window, crossed_thresholds, states_for, write_header_entry,
};
use ration_domain::{Decision, EntityKind, TokenError, UnixTime};
use serde_json::json;

use crate::error::OAuthError;
use crate::events::RequestInfo;
use crate::state::AppState;

pub const CLIENT_HEADER: &str = "auth0-client-quota-limit";
pub const ORG_HEADER: &str = "auth0-organization-quota-limit";

// Constants, so that the names are checked at compile time rather than on every request.
const CLIENT_NAME: HeaderName = HeaderName::from_static(CLIENT_HEADER);
const ORG_NAME: HeaderName = HeaderName::from_static(ORG_HEADER);
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

pub type Headers = Vec<(HeaderName, HeaderValue)>;

/// A token response's headers, prebuilt for each set of quota headers a plan can produce (see
/// [`response_headers`]), with the fixed headers after them and a placeholder for each quota
/// header's value, which [`response_headers`] overwrites in place.
///
/// Why: every 200 inserted its three fixed and up to four quota headers into a new map, and each
/// insert hashes its name (the quota headers' custom names byte by byte): ~2 k instructions per
/// token with quotas in an instruction profile (`try_insert2`, `hash_elem_using`). A clone copies
/// the entries and their index without hashing anything.
static RESPONSE_HEADERS: LazyLock<[HeaderMap; 8]> = LazyLock::new(|| std::array::from_fn(response_template));

/// [`RESPONSE_HEADERS`]' index bits: which quota headers the template holds.
const HAS_CLIENT: usize = 1;
const HAS_ORG: usize = 2;
const HAS_RATELIMIT: usize = 4;

/// The quota headers a template may hold, with the index bit that puts each in, in
/// [`quota_headers`]' order: a template holds its own first, so that a plan's values go over them
/// in turn.
const QUOTA_HEADERS: [(usize, HeaderName); 4] =
    [(HAS_CLIENT, CLIENT_NAME), (HAS_ORG, ORG_NAME), (HAS_RATELIMIT, RATELIMIT_POLICY), (HAS_RATELIMIT, RATELIMIT)];

fn response_template(index: usize) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(7);
    for (bit, name) in QUOTA_HEADERS {
        if index & bit != 0 {
            headers.insert(name, HeaderValue::from_static(""));
        }
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers
}

/// Which quota headers `plan` produces: a client header for client buckets, an organization header
/// for organization buckets, the IETF pair when a bucket is enforced (as [`quota_headers`] does).
fn template_index(plan: &QuotaPlan) -> usize {
    plan.buckets.iter().fold(0, |index, bucket| {
        let entity = match bucket.key.entity {
            EntityKind::Client => HAS_CLIENT,
            EntityKind::Organization => HAS_ORG,
        };
        index | entity | if bucket.enforce { HAS_RATELIMIT } else { 0 }
    })
}

/// The headers of a 200 for `plan` at `counts`: its template, with each quota header's value
/// written over its placeholder, in order, with no name hashed or compared.
fn response_headers(plan: &QuotaPlan, counts: &[u64], now: UnixTime) -> HeaderMap {
    // The index is below 8, the array's length.
    let mut headers = RESPONSE_HEADERS[template_index(plan)].clone();
    let mut slots = headers.iter_mut();
    quota_headers(plan, counts, now, |name, value| {
        if let Some((slot_name, slot)) = slots.next() {
            debug_assert_eq!(*slot_name, name, "response templates follow quota_headers' order");
            *slot = value;
        }
    });
    headers
}

/// Refuses early, without consuming, when an enforced bucket is already full: run before the bound
/// Actions, so that a runaway client over its quota does not run them. Without Actions the token
/// path skips it (consume is the same check). The consume step still decides.
pub async fn precheck(state: &AppState, plan: &QuotaPlan, now: UnixTime) -> Result<(), OAuthError> {
    if plan.is_empty() {
        return Ok(());
    }
    match state.counters.peek_plan(plan).await {
        Ok(used) => match plan.first_exhausted(&used) {
            Some(exhausted) => {
                state.metrics.quota_rejected(plan, exhausted);
                Err(rejection(plan, &used, exhausted, now))
            }
            None => Ok(()),
        },
        Err(e) => {
            state.metrics.counter_store_error();
            Err(unavailable(e))
        }
    }
}

fn unavailable(CounterError::Unavailable(detail): CounterError) -> OAuthError {
    tracing::error!(error = %detail, "quota counters unavailable; refusing (policy: deny)");
    let mut e = OAuthError::from(TokenError::QuotaStoreUnavailable);
    e.headers.push((HeaderName::from_static("retry-after"), HeaderValue::from_static("1")));
    e
}

/// Consumes one token from every bucket of `plan`. On success returns the 200's headers, fixed
/// ones and quota headers ([`response_headers`]); on rejection, the 429 with its headers.
///
/// The returned future resolves once the consumption is durable; the caller must not answer 200
/// before it resolved `Ok`. Awaited after the request's `seccft` event, it usually finds the
/// event's group commit already wrote the count (see `ration_counters::EmbeddedCounters`).
pub async fn consume(
    state: &AppState,
    decision: &Decision<'_>,
    plan: &QuotaPlan,
    now: UnixTime,
    info: &RequestInfo,
) -> Result<(ration_counters::Durable, HeaderMap), OAuthError> {
    if plan.is_empty() {
        return Ok((Box::pin(std::future::ready(Ok(()))), response_headers(plan, &[], now)));
    }
    match state.counters.consume_deferred(plan).await {
        Ok((Consumption::Granted { after, degraded }, durable)) => {
            if degraded {
                // Policy `allow` hid a counter store failure from the client, not from operators.
                state.metrics.counter_store_error();
                degraded_warning(state, decision, now, info);
            }
            warn_on_thresholds(state, decision, plan, &after, now, info);
            Ok((durable, response_headers(plan, &after, now)))
        }
        Ok((Consumption::Rejected { exhausted, used }, _)) => {
            state.metrics.quota_rejected(plan, exhausted);
            Err(rejection(plan, &used, exhausted, now))
        }
        Err(e) => {
            state.metrics.counter_store_error();
            Err(unavailable(e))
        }
    }
}

/// `Auth0-Client-Quota-Limit`, `Auth0-Organization-Quota-Limit` (only for quotas that apply), and
/// the IETF `RateLimit-Policy` / `RateLimit` fields for the tightest enforced bucket, each handed
/// to `add`.
///
/// Every token with a quota pays for this, so it is one pass over the plan writing straight into
/// one buffer, integers through `itoa`, each window's reset computed once and the fixed parts as
/// static text: an instruction profile had this function at a third of the quota path's cost with
/// `format!`, and still at the largest part of it with a pass per entity. The values are slices
/// of that one buffer: copied into a header value each, they cost an allocation and a copy per
/// header, and a temporary list of them another allocation.
fn quota_headers(plan: &QuotaPlan, counts: &[u64], now: UnixTime, mut add: impl FnMut(HeaderName, HeaderValue)) {
    // At most four values: both entities' quota headers and the two IETF fields.
    let mut spans: [Option<(HeaderName, usize)>; 4] = [const { None }; 4];
    let mut n_spans = 0;
    let mut end_span = |buf: &String, name: HeaderName| {
        if let Some(span) = spans.get_mut(n_spans) {
            *span = Some((name, buf.len()));
            n_spans += 1;
        }
    };
    // A client's and its organization's buckets of one window reset together.
    let resets = Window::ALL.map(|w| w.secs_to_reset(now));
    // One buffer for every value, never grown: three entries of at most 56 bytes per entity and the
    // two IETF values fit. The plan lists an entity's buckets together (client first), so a value
    // is complete when the entity changes.
    let mut buf = String::with_capacity(512);
    let mut entity = None;
    // Tightest: fewest tokens left; among equals, the one that resets last (the first one wins
    // a full tie).
    let rank = |bucket: &Bucket, remaining: u64| (remaining, Reverse(bucket.key.window.len_secs()));
    let mut tightest: Option<(&Bucket, u64)> = None;
    for (bucket, &used) in plan.buckets.iter().zip(counts) {
        let window = bucket.key.window;
        let remaining = u64::from(bucket.limit).saturating_sub(used);
        if entity == Some(bucket.key.entity) {
            buf.push(',');
        } else if let Some(done) = entity.replace(bucket.key.entity) {
            end_span(&buf, header_name(done));
        }
        write_header_entry(&mut buf, window, bucket.limit, remaining, resets[window.index()]);
        if bucket.enforce && tightest.is_none_or(|(best, left)| rank(bucket, remaining) < rank(best, left)) {
            tightest = Some((bucket, remaining));
        }
    }
    if let Some(done) = entity {
        end_span(&buf, header_name(done));
    }
    if let Some((bucket, remaining)) = tightest {
        let mut num = itoa::Buffer::new();
        let window = bucket.key.window;
        let name = ratelimit_name(bucket.key.entity, window);
        buf.push_str(name);
        buf.push_str(";q=");
        buf.push_str(num.format(bucket.limit));
        buf.push_str(";w=");
        buf.push_str(window.len_secs_str());
        end_span(&buf, RATELIMIT_POLICY);
        buf.push_str(name);
        buf.push_str(";r=");
        buf.push_str(num.format(remaining));
        buf.push_str(";t=");
        buf.push_str(num.format(resets[window.index()]));
        end_span(&buf, RATELIMIT);
    }
    let all = Bytes::from(buf);
    let mut start = 0;
    for (name, end) in spans.into_iter().flatten() {
        // SAFETY: the function's one requirement is valid UTF-8; `all` is a `String`'s bytes, all
        // ASCII, so any slice of it is. (The text is static ASCII and digits, so also a valid field
        // value; debug builds check that.)
        #[allow(unsafe_code)]
        let value = unsafe { HeaderValue::from_maybe_shared_unchecked(all.slice(start..end)) };
        add(name, value);
        start = end;
    }
}

fn header_name(entity: EntityKind) -> HeaderName {
    match entity {
        EntityKind::Client => CLIENT_NAME,
        EntityKind::Organization => ORG_NAME,
    }
}

/// The IETF policy name of a bucket (`"client_per_hour"`), quoted as the field syntax wants.
fn ratelimit_name(entity: EntityKind, window: Window) -> &'static str {
    match (entity, window) {
        (EntityKind::Client, Window::Minute) => "\"client_per_minute\"",
        (EntityKind::Client, Window::Hour) => "\"client_per_hour\"",
        (EntityKind::Client, Window::Day) => "\"client_per_day\"",
        (EntityKind::Organization, Window::Minute) => "\"organization_per_minute\"",
        (EntityKind::Organization, Window::Hour) => "\"organization_per_hour\"",
        (EntityKind::Organization, Window::Day) => "\"organization_per_day\"",
    }
}

fn push(headers: &mut Headers, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.push((name, value));
    }
}

/// The 429. Its `feccft` event is written by the token handler, like every other failure's.
fn rejection(plan: &QuotaPlan, used: &[u64], exhausted: usize, now: UnixTime) -> OAuthError {
    let mut headers = Vec::with_capacity(8);
    quota_headers(plan, used, now, |name, value| headers.push((name, value)));
    let Some(bucket) = plan.buckets.get(exhausted) else {
        return OAuthError { error: TokenError::QuotaExceeded(EntityKind::Client), headers };
    };
    // Retry only helps once every exhausted enforced bucket has reset.
    let (reset_in, reset_at) = plan
        .buckets
        .iter()
        .zip(used)
        .filter(|(b, n)| b.enforce && **n >= u64::from(b.limit))
        .map(|(b, _)| (b.key.window.secs_to_reset(now), b.key.expires_at()))
        .max()
        .unwrap_or((bucket.key.window.secs_to_reset(now), bucket.key.expires_at()));
    push(&mut headers, X_RATELIMIT_LIMIT, &bucket.limit.to_string());
    headers.push((X_RATELIMIT_REMAINING, HeaderValue::from_static("0")));
    push(&mut headers, X_RATELIMIT_RESET, &reset_at.to_string());
    push(&mut headers, axum::http::header::RETRY_AFTER, &reset_in.to_string());
    let error = TokenError::QuotaExceeded(bucket.key.entity);
    OAuthError { error, headers }
}

/// Policy `allow` issued a token while the shared counters were unreachable: counted by this
/// instance only until they are back. Operators should know.
fn degraded_warning(state: &AppState, decision: &Decision<'_>, now: UnixTime, info: &RequestInfo) {
    state.events.emit(
        now,
        info,
        json!({
            "type": "quota_store_unavailable",
            "description": "Quota counters unreachable: token issued and counted locally (quota_store_failure = allow)",
            "client_id": decision.client_id,
            "client_name": decision.client.name,
            "details": {"policy": "allow"},
        }),
    );
}

/// Auth0 writes `token_quota_consumption_warning` when a bucket first reaches 60, 80 and 100 %.
fn warn_on_thresholds(
    state: &AppState,
    decision: &Decision<'_>,
    plan: &QuotaPlan,
    after: &[u64],
    now: UnixTime,
    info: &RequestInfo,
) {
    for (bucket, &count) in plan.buckets.iter().zip(after) {
        for pct in crossed_thresholds(bucket.limit, count.saturating_sub(1), count) {
            let entity = bucket.key.entity.name();
            let window = bucket.key.window.name();
            state.events.emit(
                now,
                info,
                json!({
                    "type": "token_quota_consumption_warning",
                    "description": format!("{pct}% of {entity} {window} quota consumed"),
                    "client_id": decision.client_id,
                    "client_name": decision.client.name,
                    "details": {
                        "bucket": window,
                        "entity_type": entity,
                        "entity_id": bucket.key.entity_id.as_str(),
                        "quota": bucket.limit,
                        "quota_consumption_percentage": pct,
                        "quota_consumption": count,
                        "enforce": bucket.enforce,
                    },
                }),
            );
        }
    }
}

/// Live state of an entity's buckets in the current windows (the quota-usage endpoints).
pub async fn usage(
    state: &AppState,
    plan: &QuotaPlan,
    entity: EntityKind,
    now: UnixTime,
) -> Result<Vec<BucketState>, CounterError> {
    let used = state.counters.peek_plan(plan).await.inspect_err(|_| state.metrics.counter_store_error())?;
    Ok(states_for(plan, &used, entity, now))
}

#[cfg(test)]
mod tests {
    use ration_domain::{QuotaLimits, TokenQuota};

    use super::*;

    fn values(headers: &Headers) -> Vec<(&str, &str)> {
        headers.iter().map(|(n, v)| (n.as_str(), v.to_str().unwrap())).collect()
    }

    fn headers_of(plan: &QuotaPlan, counts: &[u64], now: UnixTime) -> Headers {
        let mut headers = Vec::new();
        quota_headers(plan, counts, now, |name, value| headers.push((name, value)));
        headers
    }

    fn pairs(headers: &HeaderMap) -> Vec<(String, String)> {
        headers.iter().map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned())).collect()
    }

    fn fixed() -> Vec<(String, String)> {
        [("content-type", "application/json"), ("cache-control", "no-store"), ("pragma", "no-cache")]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .to_vec()
    }

    fn plans(now: UnixTime) -> Vec<QuotaPlan> {
        let quota = |enforce| TokenQuota {
            enforce,
            limits: QuotaLimits { per_minute: Some(100), per_hour: Some(10), per_day: Some(50) },
        };
        let (on, off) = (quota(true), quota(false));
        vec![
            QuotaPlan::default(),
            QuotaPlan::new(Some(("c1", &on)), None, now),
            QuotaPlan::new(Some(("c1", &off)), None, now),
            QuotaPlan::new(None, Some(("o1", &on)), now),
            QuotaPlan::new(Some(("c1", &off)), Some(("o1", &off)), now),
            QuotaPlan::new(Some(("c1", &on)), Some(("o1", &off)), now),
            QuotaPlan::new(Some(("c1", &on)), Some(("o1", &on)), now),
        ]
    }

    #[test]
    fn a_response_map_holds_the_plan_s_quota_headers_in_order_then_the_fixed_ones() {
        let now = UnixTime::from_millis(1_800_000_030_250);
        for plan in plans(now) {
            let counts = vec![3; plan.buckets.len()];
            let headers = response_headers(&plan, &counts, now);
            let mut expected: Vec<_> = values(&headers_of(&plan, &counts, now))
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect();
            expected.extend(fixed());
            assert_eq!(pairs(&headers), expected, "{plan:?}");
            assert!(pairs(&headers).iter().all(|(_, v)| !v.is_empty()), "no placeholder left: {plan:?}");
        }
    }

    #[test]
    fn headers_carry_both_entities_and_the_tightest_enforced_bucket() {
        // 30.25 s past an hour (3570 s to its reset, 57570 s to the day's).
        let now = UnixTime::from_millis(1_800_000_030_250);
        let quota = |enforce, hour, day| TokenQuota {
            enforce,
            limits: QuotaLimits { per_minute: None, per_hour: hour, per_day: day },
        };
        let (client, org) = (quota(true, Some(10), Some(50)), quota(true, Some(5), None));
        let plan = QuotaPlan::new(Some(("c1", &client)), Some(("o1", &org)), now);
        let (hour, day) = (Window::Hour.secs_to_reset(now), Window::Day.secs_to_reset(now));
        assert_eq!(
            values(&headers_of(&plan, &[3, 3, 3], now)),
            vec![
                (CLIENT_HEADER, format!("b=per_hour;q=10;r=7;t={hour},b=per_day;q=50;r=47;t={day}").as_str()),
                (ORG_HEADER, format!("b=per_hour;q=5;r=2;t={hour}").as_str()),
                ("ratelimit-policy", "\"organization_per_hour\";q=5;w=3600"),
                ("ratelimit", format!("\"organization_per_hour\";r=2;t={hour}").as_str()),
            ]
        );

        // Equal room left: the bucket that resets last is the tighter. Unenforced ones never are.
        let (client, org) = (quota(true, Some(10), Some(10)), quota(false, Some(1), None));
        let plan = QuotaPlan::new(Some(("c1", &client)), Some(("o1", &org)), now);
        let headers = headers_of(&plan, &[3, 3, 1], now);
        assert_eq!(values(&headers)[2], ("ratelimit-policy", "\"client_per_day\";q=10;w=86400"));
        assert_eq!(values(&headers)[3].1, format!("\"client_per_day\";r=7;t={day}"));

        // No organization quota: no organization header.
        let plan = QuotaPlan::new(Some(("c1", &client)), None, now);
        assert!(headers_of(&plan, &[0, 0], now).iter().all(|(n, _)| n.as_str() != ORG_HEADER));
    }
}
