//! Prometheus metrics, served at `GET /metrics` in the OpenMetrics text format.
//!
//! The registry is explicit and lives in [`AppState`] (no global recorder), so every server, and
//! every test, has its own. Two kinds of metrics:
//! - **Pushed on the request path** ([`Metrics`]): handles created and registered once at build
//!   time, so that recording costs an atomic increment (counters) or a short uncontended lock
//!   (histograms, the per-client count map). Nothing is locked across an `.await`.
//! - **Computed at scrape time** ([`render`]): the top-N per-client series, quota usage ratios
//!   (catalog + counter `peek`), log-stream backlog and deliveries (store queries, delivery
//!   health). They go into a registry built for that one scrape, so nothing stale lingers.
//!
//! Label cardinality is bounded: at most `top_clients` `client` series (the rest are summed under
//! `client="other"`) and at most `top_clients` quota usage series.
//!
//! `/metrics` is unauthenticated, as Prometheus scrapers expect. It names client ids,
//! organization ids and log-stream ids, so it must not be reachable from the public internet:
//! expose it only on an internal network, or block the path at the reverse proxy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use foldhash::HashMap;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use ration_domain::quota::{QuotaPlan, TokenQuota, Window};
use ration_domain::{BucketKey, EntityKind, Id, TokenError, UnixTime};
use ration_store::{EventQuery, Page};

use crate::state::AppState;

/// How many clients keep their own `client` series (and how many quota buckets get a usage
/// gauge) when the configuration does not say.
pub const DEFAULT_TOP_CLIENTS: usize = 50;

/// Registered counts past which the next registration first drops those of deleted clients (and
/// then only once the list has doubled since the last time, so that registering stays O(1)
/// amortized). Deleted clients would otherwise accumulate for the process's life.
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// Label value of the aggregate of every client outside the top N.
pub const OTHER_CLIENT: &str = "other";

/// Counter keys per `peek` at scrape time: keeps each call (a mutex hold in the embedded store, a
/// round trip with Redis) short, whatever the number of clients.
const PEEK_CHUNK: usize = 1024;

/// Organizations read per store page at scrape time.
const ORG_PAGE: u32 = 1000;

/// Token request latency: from a cached-key HS256 signature (tens of µs) to a slow Action or a
/// congested disk commit (up to a second).
const REQUEST_BUCKETS: [f64; 14] =
    [0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// Action runs: a trivial script takes well under a millisecond, the time limit is seconds.
const ACTION_BUCKETS: [f64; 15] =
    [0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The result of one `POST /oauth/token`, as the `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Issued,
    /// 400/413: malformed request, unsupported grant type, organization misuse.
    InvalidRequest,
    /// 401: bad client authentication (and the 429 of too many failed authentications).
    Unauthorized,
    /// 403: paused client, unknown audience, no grant, scopes, organization not associated.
    Forbidden,
    QuotaExceeded,
    ActionDenied,
    ActionFailed,
    /// 503: the quota counters are unreachable (policy deny).
    Unavailable,
    /// 500: our fault.
    Error,
}

impl Outcome {
    const ALL: [Outcome; 9] = [
        Outcome::Issued,
        Outcome::InvalidRequest,
        Outcome::Unauthorized,
        Outcome::Forbidden,
        Outcome::QuotaExceeded,
        Outcome::ActionDenied,
        Outcome::ActionFailed,
        Outcome::Unavailable,
        Outcome::Error,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Issued => "issued",
            Outcome::InvalidRequest => "invalid_request",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Forbidden => "forbidden",
            Outcome::QuotaExceeded => "quota_exceeded",
            Outcome::ActionDenied => "action_denied",
            Outcome::ActionFailed => "action_failed",
            Outcome::Unavailable => "unavailable",
            Outcome::Error => "error",
        }
    }

    /// The outcome of a refused request.
    pub fn of(error: &TokenError) -> Outcome {
        match error {
            TokenError::InvalidRequest(_)
            | TokenError::BodyTooLarge(_)
            | TokenError::UnsupportedGrantType
            | TokenError::OrganizationNotAllowed { .. }
            | TokenError::OrganizationRequired { .. } => Outcome::InvalidRequest,
            // Throttled after repeated bad authentication: still a client-authentication refusal,
            // and counting it as a quota 429 would mislead quota dashboards.
            TokenError::Unauthorized | TokenError::InvalidClientAssertion(_) | TokenError::TooManyFailedAttempts => {
                Outcome::Unauthorized
            }
            TokenError::GrantTypeNotAllowed
            | TokenError::NoAudience
            | TokenError::UnknownAudience(_)
            | TokenError::NoClientGrant { .. }
            | TokenError::ScopesNotGranted(_)
            | TokenError::UnknownOrganization(_)
            | TokenError::OrganizationNotAssociated { .. } => Outcome::Forbidden,
            TokenError::QuotaExceeded(_) => Outcome::QuotaExceeded,
            TokenError::ActionDenied { .. } => Outcome::ActionDenied,
            TokenError::ActionFailed(_) => Outcome::ActionFailed,
            TokenError::QuotaStoreUnavailable => Outcome::Unavailable,
            TokenError::ServerError => Outcome::Error,
        }
    }

    fn index(self) -> usize {
        Outcome::ALL.iter().position(|o| *o == self).unwrap_or(0)
    }
}

const ENTITIES: [EntityKind; 2] = [EntityKind::Client, EntityKind::Organization];

/// Index of a (entity, window) pair in [`Metrics::quota_rejections`].
fn bucket_index(entity: EntityKind, window: Window) -> usize {
    let e = ENTITIES.iter().position(|x| *x == entity).unwrap_or(0);
    let w = Window::ALL.iter().position(|x| *x == window).unwrap_or(0);
    e * Window::ALL.len() + w
}

/// Exact per-client issued counts. Each count lives in its client's catalog entry
/// (`Decision::issued`), where a token finds it with the rest of its client; the first token of a
/// client registers it here, for the scrape.
///
/// Why not a map here: it was a probe of a map of every client under one lock on every token.
/// With 10 000 clients sending in turn that cost ~2.6 cache misses a token in a cache simulation,
/// and the lock's line moved between the two cores on every token (docs/benchmarks.md, session 18).
#[derive(Default)]
struct IssuedByClient {
    counts: Vec<(Id, Arc<AtomicU64>)>,
    /// What the counts dropped from `counts` (their clients deleted) had reached; part of `other`.
    retired: u64,
    /// `counts.len()` after the last drop.
    kept: usize,
}

impl IssuedByClient {
    /// Drops the counts nobody else holds: their client is gone from every catalog, so they can
    /// no longer grow, and their total moves to `retired`.
    fn drop_deleted(&mut self) {
        let retired = &mut self.retired;
        self.counts.retain(|(_, count)| {
            let live = Arc::strong_count(count) > 1;
            if !live {
                *retired += count.load(Ordering::Relaxed);
            }
            live
        });
        self.kept = self.counts.len();
    }
}

/// The metrics recorded on the request path. Lives in `AppState` as `state.metrics`.
pub struct Metrics {
    /// Everything registered at build time; scrape-time families are added per scrape.
    registry: Registry,
    /// One pre-created handle per [`Outcome`], in `Outcome::ALL` order.
    outcomes: [Counter; 9],
    request_duration: Histogram,
    /// Per (entity, window), see [`bucket_index`].
    quota_rejections: [Counter; 6],
    action_duration: Histogram,
    action_failures: Counter,
    counter_store_errors: Counter,
    /// A std mutex: held for one hash lookup and increment, never across an `.await`.
    issued_by_client: Mutex<IssuedByClient>,
    top_clients: usize,
}

impl Metrics {
    /// Registers every request-path metric. `top_clients` bounds the per-client and per-bucket
    /// series (capped at the number of tracked clients).
    pub fn new(top_clients: usize) -> Metrics {
        let mut registry = Registry::default();

        let requests = Family::<[(&'static str, &'static str); 1], Counter>::default();
        registry.register(
            "ration_token_requests",
            "Token requests by outcome (issued, invalid_request, unauthorized, forbidden, quota_exceeded, \
             action_denied, action_failed, unavailable, error)",
            requests.clone(),
        );
        // Creating every outcome now means each is exported from the start (at 0), so rate()
        // works from the first scrape, and the request path never touches the family's lock.
        let outcomes = Outcome::ALL.map(|o| requests.get_or_create_owned(&[("outcome", o.name())]));

        let request_duration = Histogram::new(REQUEST_BUCKETS);
        registry.register(
            "ration_token_request_duration_seconds",
            "Time to answer POST /oauth/token, whatever the outcome",
            request_duration.clone(),
        );

        let rejections = Family::<[(&'static str, &'static str); 2], Counter>::default();
        registry.register(
            "ration_quota_rejections",
            "Token requests refused with 429, by the exhausted bucket's entity and window",
            rejections.clone(),
        );
        let quota_rejections = [0, 1, 2, 3, 4, 5].map(|i| {
            let entity = ENTITIES.get(i / Window::ALL.len()).copied().unwrap_or(EntityKind::Client);
            let window = Window::ALL.get(i % Window::ALL.len()).copied().unwrap_or(Window::Minute);
            rejections.get_or_create_owned(&[("entity", entity.name()), ("bucket", window.name())])
        });

        let action_duration = Histogram::new(ACTION_BUCKETS);
        registry.register(
            "ration_action_duration_seconds",
            "Time to run the bound credentials-exchange Actions of one token request",
            action_duration.clone(),
        );
        let action_failures = Counter::default();
        registry.register(
            "ration_action_failures",
            "Action runs that threw, timed out or ran out of memory (denials are not failures)",
            action_failures.clone(),
        );
        let counter_store_errors = Counter::default();
        registry.register(
            "ration_counter_store_errors",
            "Quota counter store calls that failed (the quota failure policy applied)",
            counter_store_errors.clone(),
        );

        Metrics {
            registry,
            outcomes,
            request_duration,
            quota_rejections,
            action_duration,
            action_failures,
            counter_store_errors,
            issued_by_client: Mutex::new(IssuedByClient::default()),
            top_clients: top_clients.min(MAX_TRACKED_CLIENTS),
        }
    }

    /// A token went out (counted for its client by [`Metrics::client_issued`]).
    pub fn token_issued(&self, started: Instant) {
        self.token_request(Outcome::Issued, started);
    }

    /// A token went out to `client_id`, whose catalog entry keeps `count`.
    pub fn client_issued(&self, client_id: &str, count: &Arc<AtomicU64>) {
        if count.fetch_add(1, Ordering::Relaxed) > 0 {
            return;
        }
        // The client's first token: one registration per count, so the lock is off the path.
        let mut issued = self.issued_by_client.lock().unwrap_or_else(PoisonError::into_inner);
        if issued.counts.len() >= MAX_TRACKED_CLIENTS.max(2 * issued.kept) {
            issued.drop_deleted();
        }
        issued.counts.push((Id::from(client_id), Arc::clone(count)));
    }

    /// A token request was refused with `error`.
    pub fn token_refused(&self, error: &TokenError, started: Instant) {
        self.token_request(Outcome::of(error), started);
    }

    fn token_request(&self, outcome: Outcome, started: Instant) {
        if let Some(counter) = self.outcomes.get(outcome.index()) {
            counter.inc();
        }
        self.request_duration.observe(started.elapsed().as_secs_f64());
    }

    /// Bucket `exhausted` of `plan` refused a request.
    pub fn quota_rejected(&self, plan: &QuotaPlan, exhausted: usize) {
        if let Some(bucket) = plan.buckets.get(exhausted)
            && let Some(counter) = self.quota_rejections.get(bucket_index(bucket.key.entity, bucket.key.window))
        {
            counter.inc();
        }
    }

    /// The bound Actions of one request ran for the time since `started`; `failed`: one threw,
    /// timed out or ran out of memory.
    pub fn action_ran(&self, started: Instant, failed: bool) {
        self.action_duration.observe(started.elapsed().as_secs_f64());
        if failed {
            self.action_failures.inc();
        }
    }

    /// A call to the quota counter store failed.
    pub fn counter_store_error(&self) {
        self.counter_store_errors.inc();
    }

    /// The per-client series to export: the `top_clients` largest counts (ties broken by id, so
    /// the choice is stable), and `other` with everything else, so that the series always sum to
    /// the tokens issued. `other` is always present.
    ///
    /// A client entering or leaving the top N moves its count between its own series and
    /// `other`, which then looks like a counter reset to Prometheus; `sum()` over the family is
    /// always exact.
    fn exported_clients(&self) -> (Vec<(String, u64)>, u64) {
        let (counts, retired) = {
            let issued = self.issued_by_client.lock().unwrap_or_else(PoisonError::into_inner);
            (issued.counts.clone(), issued.retired)
        };
        // Outside the lock, so that scrapes do not stall first tokens. A client id deleted and
        // created again has two counts: one series.
        let mut by_id: HashMap<Id, u64> = HashMap::default();
        for (id, count) in counts {
            *by_id.entry(id).or_default() += count.load(Ordering::Relaxed);
        }
        let mut all: Vec<(String, u64)> = by_id.into_iter().map(|(id, n)| (id.to_string(), n)).collect();
        all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let rest = all.split_off(self.top_clients.min(all.len()));
        let other = retired + rest.iter().map(|(_, n)| n).sum::<u64>();
        (all, other)
    }
}

/// `GET /metrics`.
pub async fn get_metrics(State(state): State<AppState>) -> Response {
    let body = render(&state).await;
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

/// The complete exposition: the build-time registry, then the scrape-time families.
pub async fn render(state: &AppState) -> String {
    let metrics = &state.metrics;
    let mut scrape = Registry::default();

    let by_client = Family::<[(&'static str, String); 1], Counter>::default();
    let (top, other) = metrics.exported_clients();
    for (client_id, n) in top {
        by_client.get_or_create(&[("client", client_id)]).inc_by(n);
    }
    by_client.get_or_create(&[("client", OTHER_CLIENT.to_owned())]).inc_by(other);
    scrape.register(
        "ration_tokens_issued",
        "Tokens issued, per client for the top clients by count, the rest under client=\"other\"",
        by_client,
    );

    let usage = Family::<[(&'static str, String); 3], Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for bucket in quota_usage(state, metrics.top_clients).await {
        usage
            .get_or_create(&[
                ("entity", bucket.entity.name().to_owned()),
                ("id", bucket.id),
                ("bucket", bucket.window.name().to_owned()),
            ])
            .set(bucket.ratio);
    }
    scrape.register(
        "ration_quota_usage_ratio",
        "Current use / quota of the most used quota buckets in their current window",
        usage,
    );

    let deliveries = Family::<[(&'static str, String); 2], Counter>::default();
    let backlog = Family::<[(&'static str, String); 1], Gauge>::default();
    log_streams(state, &deliveries, &backlog).await;
    scrape.register(
        "ration_log_stream_deliveries",
        "Log-stream events delivered (outcome=delivered) and failed delivery attempts (outcome=failed)",
        deliveries,
    );
    scrape.register("ration_log_stream_backlog", "Events not yet delivered to the log stream", backlog);

    let mut text = String::new();
    // Writing to a String cannot fail; a failure here would be an encoder bug, and a partial
    // exposition is still more useful to an operator than none.
    let encoded = encode_registry(&mut text, &metrics.registry)
        .and_then(|()| encode_registry(&mut text, &scrape))
        .and_then(|()| encode_eof(&mut text));
    if let Err(e) = encoded {
        tracing::error!(error = %e, "cannot encode the metrics");
    }
    text
}

/// One quota bucket's current use.
struct BucketUsage {
    entity: EntityKind,
    id: String,
    window: Window,
    ratio: f64,
}

/// The `top` most used buckets (by use ÷ quota) of every client and organization with a quota,
/// in their current windows. Buckets with no use are left out. Errors are logged and leave
/// gaps rather than failing the scrape.
async fn quota_usage(state: &AppState, top: usize) -> Vec<BucketUsage> {
    if top == 0 {
        return Vec::new();
    }
    let now = state.now();
    let catalog = state.catalog.load_full();
    let defaults = &catalog.tenant().default_token_quota;
    let mut buckets: Vec<(BucketKey, u32)> = Vec::new();
    for client in catalog.clients() {
        if let Some(quota) = client.token_quota.as_ref().or(defaults.clients.as_ref()) {
            push_buckets(&mut buckets, EntityKind::Client, &client.client_id, quota, now);
        }
    }
    // The catalog indexes organizations by id but cannot list them; the store can (scrapes are
    // rare, so a read here costs the token path nothing).
    let mut page = 0;
    loop {
        match state.store.list_organizations(Page { page, per_page: ORG_PAGE }).await {
            Ok(listing) => {
                for org in &listing.items {
                    if let Some(quota) = org.token_quota.as_ref().or(defaults.organizations.as_ref()) {
                        push_buckets(&mut buckets, EntityKind::Organization, &org.id, quota, now);
                    }
                }
                let seen = u64::from(page + 1) * u64::from(ORG_PAGE);
                if listing.items.len() < ORG_PAGE as usize || seen >= listing.total {
                    break;
                }
                page += 1;
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot list organizations");
                break;
            }
        }
    }

    let mut used = Vec::new();
    for chunk in buckets.chunks(PEEK_CHUNK) {
        let keys: Vec<BucketKey> = chunk.iter().map(|(key, _)| key.clone()).collect();
        match state.counters.peek(&keys).await {
            Ok(counts) => {
                for ((key, limit), n) in chunk.iter().zip(counts) {
                    if n > 0 {
                        used.push((key, n as f64 / f64::from((*limit).max(1))));
                    }
                }
            }
            Err(e) => {
                state.metrics.counter_store_error();
                tracing::warn!(error = %e, "metrics: cannot read the quota counters");
                break;
            }
        }
    }
    used.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    used.truncate(top);
    used.into_iter()
        .map(|(key, ratio)| BucketUsage {
            entity: key.entity,
            id: key.entity_id.to_string(),
            window: key.window,
            ratio,
        })
        .collect()
}

fn push_buckets(out: &mut Vec<(BucketKey, u32)>, entity: EntityKind, id: &str, quota: &TokenQuota, now: UnixTime) {
    for (window, limit) in quota.limits.iter() {
        out.push((BucketKey { entity, entity_id: id.into(), window, window_start: window.start(now) }, limit));
    }
}

/// Per stream: deliveries and failed attempts by this instance (from delivery health), and the
/// backlog (the same store count as the stream view's `delivery.backlog`).
async fn log_streams(
    state: &AppState,
    deliveries: &Family<[(&'static str, String); 2], Counter>,
    backlog: &Family<[(&'static str, String); 1], Gauge>,
) {
    let streams = match state.store.list_log_streams().await {
        Ok(streams) => streams,
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot list log streams");
            return;
        }
    };
    for (stream, position) in streams {
        let health = state.deliveries.health(&stream.id);
        for (outcome, n) in [("delivered", health.delivered_total), ("failed", health.failed_attempts)] {
            deliveries.get_or_create(&[("stream", stream.id.clone()), ("outcome", outcome.to_owned())]).inc_by(n);
        }
        let query = EventQuery {
            types: Vec::new(),
            categories: stream.filters.clone(),
            client_id: None,
            date_from: None,
            date_to: None,
            after_log_id: Some(position.cursor.clone()),
            newest_first: false,
            with_total: true,
            page: Page { page: 0, per_page: 0 },
        };
        match state.store.list_events(&query).await {
            Ok(listing) => {
                backlog
                    .get_or_create(&[("stream", stream.id.clone())])
                    .set(i64::try_from(listing.total).unwrap_or(i64::MAX));
            }
            Err(e) => tracing::warn!(stream = %stream.id, error = %e, "metrics: cannot count the backlog"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_clients_keeps_n_and_sums_the_rest_into_other() {
        let metrics = Metrics::new(2);
        let counts: Vec<_> = ["a", "b", "c", "d"].map(|id| (id, Arc::new(AtomicU64::new(0)))).into();
        for ((id, count), n) in counts.iter().zip([5, 1, 3, 2]) {
            for _ in 0..n {
                metrics.client_issued(id, count);
            }
        }
        // "b" deleted and created again: a second count under the same id.
        let again = Arc::new(AtomicU64::new(0));
        metrics.client_issued("b", &again);
        let (top, other) = metrics.exported_clients();
        assert_eq!(top, vec![("a".to_owned(), 5), ("c".to_owned(), 3)]);
        assert_eq!(other, 2 + 2, "b (both of its counts) and d");
    }

    /// The counts of deleted clients are dropped once there are many, and their tokens still add
    /// up under `other`.
    #[test]
    fn deleted_clients_counts_move_to_other_when_dropped() {
        let metrics = Metrics::new(1);
        let kept = Arc::new(AtomicU64::new(0));
        metrics.client_issued("kept", &kept);
        metrics.client_issued("kept", &kept);
        for i in 0..MAX_TRACKED_CLIENTS + 10 {
            // Each count's only other holder (its catalog entry) is gone at once.
            metrics.client_issued(&format!("gone{i}"), &Arc::new(AtomicU64::new(0)));
        }
        let registered = metrics.issued_by_client.lock().unwrap().counts.len();
        assert!(registered < 20, "{registered} counts still registered");
        let (top, other) = metrics.exported_clients();
        assert_eq!(top, vec![("kept".to_owned(), 2)]);
        assert_eq!(other, (MAX_TRACKED_CLIENTS + 10) as u64);
    }

    #[test]
    fn every_token_error_maps_to_its_outcome() {
        assert_eq!(Outcome::of(&TokenError::Unauthorized), Outcome::Unauthorized);
        assert_eq!(Outcome::of(&TokenError::NoAudience), Outcome::Forbidden);
        assert_eq!(Outcome::of(&TokenError::QuotaExceeded(EntityKind::Client)), Outcome::QuotaExceeded);
        assert_eq!(Outcome::of(&TokenError::BodyTooLarge(1)), Outcome::InvalidRequest);
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
        }
    }
}
