//! Log-stream delivery: every active stream has one worker that reads the event log after its
//! cursor and ships batches to the sink, in `log_id` order, at least once.
//!
//! Architecture invariants:
//! - The event log (in the store) is the outbox: events are durable before anyone delivers them,
//!   and a stream's cursor (its last delivered `log_id`) is saved only after the sink accepted the
//!   batch. A crash therefore re-delivers at most the last batch; receivers dedupe on `log_id`.
//! - Delivery never runs on the request path: a dead sink cannot slow token issuance.
//! - Failures back off exponentially with full jitter, capped; after continuous failure for the
//!   configured time the stream is suspended until an operator sets it active again.

mod sink;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ration_domain::{LogStream, StreamStatus, UnixTime};
use ration_store::{ConfigStore, EventQuery, Page, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Reads the wall clock; injected so that tests and the server's test clock agree.
pub type Now = Arc<dyn Fn() -> UnixTime + Send + Sync>;

/// Tunables of delivery.
#[derive(Clone, Debug)]
pub struct DeliverySettings {
    /// First retry delay (doubles per failed attempt).
    pub retry_base: Duration,
    /// Largest retry delay.
    pub retry_max: Duration,
    /// Continuous failure for this long suspends the stream.
    pub suspend_after: Duration,
    /// Events per request (`JSONOBJECT` sends one per request regardless).
    pub batch_size: u32,
    /// Time limit of one delivery request.
    pub request_timeout: Duration,
    /// With a shared store: deliver only events at least this old. Instances commit events with
    /// their own `log_id`s, so an event can become visible slightly after a later-numbered one; the
    /// delay keeps the cursor from passing it.
    pub settle: Duration,
}

impl Default for DeliverySettings {
    fn default() -> DeliverySettings {
        DeliverySettings {
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            // Auth0 pauses a stream after 7 days of unreachability.
            suspend_after: Duration::from_secs(7 * 24 * 3600),
            batch_size: 100,
            request_timeout: Duration::from_secs(10),
            settle: Duration::from_secs(2),
        }
    }
}

/// The delivery state of one stream, as shown on the stream object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    pub last_error: Option<String>,
    pub last_error_at: Option<UnixTime>,
    /// Start of the current run of failures; `None` while deliveries succeed.
    pub failing_since: Option<UnixTime>,
    pub delivered_total: u64,
    /// Delivery attempts that failed (metrics: `ration_log_stream_deliveries_total{outcome="failed"}`).
    pub failed_attempts: u64,
}

/// Runs and supervises the workers. Cheap to clone.
#[derive(Clone)]
pub struct Deliveries {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ConfigStore>,
    http: reqwest::Client,
    settings: DeliverySettings,
    committed: watch::Receiver<u64>,
    now: Now,
    /// This instance's name in stream leases.
    holder: String,
    /// std mutexes: held only to insert/remove/copy, never across an `.await`.
    workers: Mutex<HashMap<String, JoinHandle<()>>>,
    health: Mutex<HashMap<String, Health>>,
}

impl Deliveries {
    /// Starts a worker for every active stream. `committed` changes whenever new events are
    /// committed, which wakes idle workers at once.
    pub async fn start(
        store: Arc<dyn ConfigStore>,
        committed: watch::Receiver<u64>,
        settings: DeliverySettings,
        now: Now,
        holder: String,
    ) -> Result<Deliveries, StoreError> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            // A sink that redirects is misconfigured; following it could leak the Authorization
            // header to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot build the HTTP client: {e}")))?;
        let deliveries = Deliveries {
            inner: Arc::new(Inner {
                store,
                http,
                settings,
                committed,
                now,
                holder,
                workers: Mutex::new(HashMap::new()),
                health: Mutex::new(HashMap::new()),
            }),
        };
        for (stream, position) in deliveries.inner.store.list_log_streams().await? {
            deliveries.spawn(stream, position.cursor);
        }
        Ok(deliveries)
    }

    /// Restarts (or stops) the worker of `id` after its configuration changed or it was deleted.
    pub async fn reload(&self, id: &str) -> Result<(), StoreError> {
        if let Some(handle) = self.inner.workers.lock().ok().and_then(|mut w| w.remove(id)) {
            handle.abort();
        }
        match self.inner.store.get_log_stream(id).await? {
            Some((stream, position)) => self.spawn(stream, position.cursor),
            None => {
                if let Ok(mut health) = self.inner.health.lock() {
                    health.remove(id);
                }
            }
        }
        Ok(())
    }

    /// The current delivery state of a stream.
    pub fn health(&self, id: &str) -> Health {
        self.inner.health.lock().ok().and_then(|h| h.get(id).cloned()).unwrap_or_default()
    }

    fn spawn(&self, stream: LogStream, cursor: String) {
        if stream.status != StreamStatus::Active {
            return;
        }
        let id = stream.id.clone();
        if let Ok(mut health) = self.inner.health.lock() {
            // Resuming starts a fresh failure window.
            let h = health.entry(id.clone()).or_default();
            h.failing_since = None;
        }
        let handle = tokio::spawn(run(self.inner.clone(), stream, cursor));
        if let Ok(mut workers) = self.inner.workers.lock() {
            workers.insert(id, handle);
        }
    }
}

/// How long a delivery lease lasts; renewed well before it runs out.
const LEASE: Duration = Duration::from_secs(15);

/// With a shared store: holds the stream's lease (taking it when free). `Ok(true)` when this
/// instance may deliver; a fresh acquisition re-reads the cursor another holder may have moved.
async fn hold_lease(
    inner: &Inner,
    stream: &LogStream,
    cursor: &mut String,
    lease_until: &mut Option<UnixTime>,
) -> bool {
    if !inner.store.is_shared() {
        return true;
    }
    let now = (inner.now)();
    if lease_until.is_some_and(|until| until.millis - now.millis > (LEASE / 3).as_millis() as i64) {
        return true;
    }
    let until = UnixTime::from_millis(now.millis + LEASE.as_millis() as i64);
    match inner.store.try_lease(&format!("log_stream:{}", stream.id), &inner.holder, now, until).await {
        Ok(true) => {
            if lease_until.is_none() {
                match inner.store.get_log_stream(&stream.id).await {
                    Ok(Some((_, position))) => *cursor = position.cursor,
                    Ok(None) => return false,
                    Err(e) => {
                        tracing::error!(stream = %stream.id, error = %e, "cannot read the stream position");
                        return false;
                    }
                }
            }
            *lease_until = Some(until);
            true
        }
        Ok(false) => {
            *lease_until = None;
            false
        }
        Err(e) => {
            tracing::error!(stream = %stream.id, error = %e, "cannot take the delivery lease");
            *lease_until = None;
            false
        }
    }
}

/// One stream's delivery loop.
async fn run(inner: Arc<Inner>, mut stream: LogStream, mut cursor: String) {
    let mut committed = inner.committed.clone();
    let mut attempt: u32 = 0;
    let idle_poll = Duration::from_secs(1);
    let mut lease_until: Option<UnixTime> = None;
    loop {
        if !hold_lease(&inner, &stream, &mut cursor, &mut lease_until).await {
            // Another instance delivers this stream; check again in a while (it may go away).
            tokio::time::sleep(LEASE / 3).await;
            continue;
        }
        let settle_before = inner.store.is_shared().then(|| {
            let now = (inner.now)();
            UnixTime::from_millis(now.millis - inner.settings.settle.as_millis() as i64)
        });
        let query = EventQuery {
            types: Vec::new(),
            categories: stream.filters.clone(),
            client_id: None,
            date_from: None,
            date_to: settle_before,
            after_log_id: Some(cursor.clone()),
            newest_first: false,
            with_total: false,
            page: Page { page: 0, per_page: inner.settings.batch_size },
        };
        let batch = match inner.store.list_events(&query).await {
            Ok(listing) => listing.items,
            Err(e) => {
                tracing::error!(stream = %stream.id, error = %e, "cannot read the event log");
                tokio::time::sleep(idle_poll).await;
                continue;
            }
        };
        if batch.is_empty() {
            // Woken by the next commit; the timeout guards against a missed notification (and,
            // with a shared store, lets settled events from other instances through).
            let wait = if settle_before.is_some() { Duration::from_millis(250) } else { idle_poll };
            let _ = tokio::time::timeout(wait, committed.changed()).await;
            continue;
        }

        let outcome = sink::deliver(&inner.http, &stream.sink, &batch).await;
        if let Some(last) = outcome.delivered.checked_sub(1).and_then(|i| batch.get(i)) {
            cursor = last.log_id.clone();
            if let Err(e) = inner.store.set_log_stream_cursor(&stream.id, &cursor).await {
                // Not fatal: at worst the batch is delivered again after a restart.
                tracing::error!(stream = %stream.id, error = %e, "cannot save the delivery cursor");
            }
        }
        let now = (inner.now)();
        match outcome.error {
            None => {
                if attempt > 0 {
                    tracing::info!(stream = %stream.id, "log stream delivering again");
                }
                attempt = 0;
                update_health(&inner, &stream.id, |h| {
                    h.failing_since = None;
                    h.delivered_total += outcome.delivered as u64;
                });
            }
            Some(error) => {
                tracing::warn!(stream = %stream.id, %error, attempt, "log stream delivery failed");
                let mut failing_since = now;
                update_health(&inner, &stream.id, |h| {
                    h.delivered_total += outcome.delivered as u64;
                    h.failed_attempts += 1;
                    h.last_error = Some(error.clone());
                    h.last_error_at = Some(now);
                    failing_since = *h.failing_since.get_or_insert(now);
                });
                let failing_for = Duration::from_millis(u64::try_from(now.millis - failing_since.millis).unwrap_or(0));
                if failing_for >= inner.settings.suspend_after {
                    suspend(&inner, &mut stream).await;
                    return;
                }
                attempt = attempt.saturating_add(1);
                tokio::time::sleep(backoff(&inner.settings, attempt, outcome.retry_after)).await;
            }
        }
    }
}

async fn suspend(inner: &Inner, stream: &mut LogStream) {
    stream.status = StreamStatus::Suspended;
    stream.updated_at = (inner.now)();
    tracing::warn!(stream = %stream.id, "log stream suspended after continuous delivery failure");
    if let Err(e) = inner.store.update_log_stream(stream).await {
        tracing::error!(stream = %stream.id, error = %e, "cannot mark the stream suspended");
    }
    if let Ok(mut workers) = inner.workers.lock() {
        workers.remove(&stream.id);
    }
}

fn update_health(inner: &Inner, id: &str, change: impl FnOnce(&mut Health)) {
    if let Ok(mut health) = inner.health.lock() {
        change(health.entry(id.to_owned()).or_default());
    }
}

/// "Full jitter": a uniformly random delay between zero and the exponential ceiling, so that many
/// streams failing together do not retry in lockstep. A sink's `Retry-After` is honoured up to the
/// cap.
fn backoff(settings: &DeliverySettings, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let ceiling = settings
        .retry_base
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(20)))
        .min(settings.retry_max);
    let mut bytes = [0u8; 8];
    let fraction = match aws_lc_rs::rand::fill(&mut bytes) {
        Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    };
    let jittered = ceiling.mul_f64(fraction).max(Duration::from_millis(10));
    match retry_after {
        Some(wait) => jittered.max(wait.min(settings.retry_max)),
        None => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_the_exponential_ceiling_and_the_cap() {
        let s = DeliverySettings {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(2),
            ..Default::default()
        };
        for attempt in 1..40 {
            let ceiling = Duration::from_millis(100 * 2u64.pow((attempt - 1).min(20))).min(Duration::from_secs(2));
            for _ in 0..20 {
                let d = backoff(&s, attempt, None);
                assert!(d <= ceiling.max(Duration::from_millis(10)), "{attempt}: {d:?}");
            }
        }
        assert_eq!(backoff(&s, 1, Some(Duration::from_secs(60))), Duration::from_secs(2), "Retry-After capped");
    }
}
