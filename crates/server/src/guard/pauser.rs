//! Pausing and resuming tenant clients, durably.
//!
//! A pause is a record in the store's metadata (`guard:pause:<client_id>`, JSON) that moves
//! through `pausing` → `paused` → `done`. The receiver writes the record (the *intent*) before it
//! answers the log stream, so nothing the guard decided is lost if the tenant is down or the guard
//! restarts; the background task started here does the tenant calls, retrying with exponential
//! backoff (honouring `Retry-After`), and resumes at `until`, the latest reset among the exhausted
//! enforced buckets. `guard:pauses` lists the clients whose record is not `done` (the store has no
//! prefix scan).
//!
//! Resuming restores the grant types the client had only if they are still exactly what the
//! guard set: anything else means an operator changed the client meanwhile (paused it for another
//! reason, resumed it early, deleted it), and the guard leaves it alone and records that.

use std::time::Duration;

use ration_domain::{CLIENT_CREDENTIALS, UnixTime};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{Mutex, Notify};

use super::Guard;
use super::tenant::{TenantError, without_client_credentials};
use crate::events::RequestInfo;
use crate::state::AppState;

/// Metadata key listing the client ids with a pause in progress.
const INDEX_KEY: &str = "guard:pauses";
/// Only one instance sharing a store does the tenant calls.
const LEASE: &str = "guard-pauser";
/// How often due work is looked for when nothing wakes the task earlier.
const TICK: Duration = Duration::from_secs(1);
/// First retry delay; doubled per failed attempt up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

fn record_key(client_id: &str) -> String {
    format!("guard:pause:{client_id}")
}

/// Where a pause stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseState {
    /// Decided and persisted; the tenant has not confirmed the PATCH yet.
    Pausing,
    /// `client_credentials` removed on the tenant; waiting for `until`.
    Paused,
    /// Resumed, or left alone (see `outcome`).
    Done,
}

/// One client's pause, as persisted.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PauseRecord {
    pub client_id: String,
    pub state: PauseState,
    /// `Client quota exceeded` or `Organization quota exceeded`.
    pub reason: String,
    /// The exhausted quota's owner: `client` or `organization`, and its id.
    pub entity_type: String,
    pub entity_id: String,
    /// Names of the exhausted enforced buckets (`per_hour`, …).
    pub buckets: Vec<String>,
    /// Unix seconds: when the guard resumes the client (the latest reset of those buckets).
    pub until: i64,
    /// The client's `grant_types` before the pause (known once the tenant answered).
    pub original_grant_types: Option<Vec<String>>,
    /// The `grant_types` the guard set.
    pub paused_grant_types: Option<Vec<String>>,
    /// Failed tenant calls since the last success.
    pub attempts: u32,
    /// Unix milliseconds before which the next tenant call is not tried.
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub requested_at: String,
    pub paused_at: Option<String>,
    pub finished_at: Option<String>,
    /// How a `done` record ended: `resumed`, `changed_by_operator`, `client_deleted`,
    /// `already_without_client_credentials` or `window_reset_before_pause`.
    pub outcome: Option<String>,
}

/// What the receiver asks for when a counted token exhausted an enforced quota.
#[derive(Clone, Debug)]
pub struct PauseRequest {
    pub client_id: String,
    pub reason: &'static str,
    pub entity_type: &'static str,
    pub entity_id: String,
    pub buckets: Vec<String>,
    /// Unix seconds.
    pub until: i64,
}

/// Serializes record and index updates, and wakes the task when new work is persisted.
#[derive(Default)]
pub struct Pauses {
    lock: Mutex<()>,
    wake: Notify,
}

impl Pauses {
    /// Persists the intent to pause (or extends a pause in progress to a later reset), then wakes
    /// the task. Resolves once the intent is durable.
    pub async fn request(&self, state: &AppState, request: PauseRequest) -> Result<(), ration_store::StoreError> {
        let now = state.now();
        // A window that has already reset needs no pause (a late delivery of an old event).
        if request.until * 1000 <= now.millis {
            return Ok(());
        }
        {
            let _guard = self.lock.lock().await;
            let existing = load(state, &request.client_id).await?;
            match existing {
                Some(mut record) if record.state != PauseState::Done => {
                    if request.until <= record.until {
                        return Ok(());
                    }
                    // A longer window ran out too (e.g. the day after the hour): stay paused until
                    // that one resets.
                    record.until = request.until;
                    record.buckets = request.buckets;
                    record.reason = request.reason.to_owned();
                    record.entity_type = request.entity_type.to_owned();
                    record.entity_id = request.entity_id;
                    store(state, &record).await?;
                }
                _ => {
                    let record = PauseRecord {
                        client_id: request.client_id.clone(),
                        state: PauseState::Pausing,
                        reason: request.reason.to_owned(),
                        entity_type: request.entity_type.to_owned(),
                        entity_id: request.entity_id,
                        buckets: request.buckets,
                        until: request.until,
                        original_grant_types: None,
                        paused_grant_types: None,
                        attempts: 0,
                        next_attempt_at: 0,
                        last_error: None,
                        requested_at: now.to_rfc3339(),
                        paused_at: None,
                        finished_at: None,
                        outcome: None,
                    };
                    store(state, &record).await?;
                    let mut index = load_index(state).await?;
                    if !index.contains(&request.client_id) {
                        index.push(request.client_id.clone());
                        store_index(state, &index).await?;
                    }
                    tracing::info!(client_id = %request.client_id, reason = request.reason, "guard: pause requested");
                }
            }
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Applies `change` to the stored record under the lock (so that an extension written by the
    /// receiver meanwhile is kept) and drops finished records from the index.
    async fn update(
        &self,
        state: &AppState,
        client_id: &str,
        change: impl FnOnce(&mut PauseRecord),
    ) -> Result<Option<PauseRecord>, ration_store::StoreError> {
        let _guard = self.lock.lock().await;
        let Some(mut record) = load(state, client_id).await? else { return Ok(None) };
        change(&mut record);
        store(state, &record).await?;
        if record.state == PauseState::Done {
            let mut index = load_index(state).await?;
            index.retain(|id| id != client_id);
            store_index(state, &index).await?;
        }
        Ok(Some(record))
    }
}

async fn load(state: &AppState, client_id: &str) -> Result<Option<PauseRecord>, ration_store::StoreError> {
    let Some(text) = state.store.get_meta(&record_key(client_id)).await? else { return Ok(None) };
    match serde_json::from_str(&text) {
        Ok(record) => Ok(Some(record)),
        Err(e) => {
            tracing::error!(client_id, error = %e, "guard: unreadable pause record; ignoring it");
            Ok(None)
        }
    }
}

async fn store(state: &AppState, record: &PauseRecord) -> Result<(), ration_store::StoreError> {
    let text = serde_json::to_string(record).map_err(|e| ration_store::StoreError::Backend(e.to_string()))?;
    state.store.set_meta(&record_key(&record.client_id), &text).await
}

async fn load_index(state: &AppState) -> Result<Vec<String>, ration_store::StoreError> {
    Ok(state.store.get_meta(INDEX_KEY).await?.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default())
}

async fn store_index(state: &AppState, index: &[String]) -> Result<(), ration_store::StoreError> {
    let text = serde_json::to_string(index).map_err(|e| ration_store::StoreError::Backend(e.to_string()))?;
    state.store.set_meta(INDEX_KEY, &text).await
}

/// Starts the task that does the tenant calls: every second, and whenever an intent is
/// persisted. Records persisted before a restart are picked up on the first round.
pub fn spawn(state: AppState, guard: Guard) {
    tokio::spawn(async move {
        loop {
            if let Err(e) = round(&state, &guard).await {
                tracing::error!(error = %e, "guard: pause bookkeeping failed; retrying");
            }
            // Either a new intent or the next tick, whichever comes first.
            let _ = tokio::time::timeout(TICK, guard.pauses().wake.notified()).await;
        }
    });
}

/// One pass over the pauses in progress: each that is due gets its tenant call.
async fn round(state: &AppState, guard: &Guard) -> Result<(), ration_store::StoreError> {
    let now = state.now();
    let until = UnixTime::from_millis(now.millis + 5_000);
    if !state.store.try_lease(LEASE, &state.instance_id, now, until).await? {
        return Ok(());
    }
    for client_id in load_index(state).await? {
        let Some(record) = load(state, &client_id).await? else {
            // Lost or unreadable: nothing to act on; keep the index clean.
            let _guard = guard.pauses().lock.lock().await;
            let mut index = load_index(state).await?;
            index.retain(|id| id != &client_id);
            store_index(state, &index).await?;
            continue;
        };
        let now = state.now();
        if now.millis < record.next_attempt_at {
            continue;
        }
        match record.state {
            // The tenant was unreachable for the whole rest of the window: pausing now would
            // only be undone on the next round.
            PauseState::Pausing if now.secs() >= record.until => {
                finish(state, guard, &record, "window_reset_before_pause", "guard_client_pause_skipped").await?
            }
            PauseState::Pausing => pause(state, guard, &record).await?,
            PauseState::Paused if now.secs() >= record.until => resume(state, guard, &record).await?,
            PauseState::Paused | PauseState::Done => {}
        }
    }
    Ok(())
}

async fn pause(state: &AppState, guard: &Guard, record: &PauseRecord) -> Result<(), ration_store::StoreError> {
    let Some(tenant) = guard.tenant() else {
        return failed(state, guard, record, &no_tenant()).await;
    };
    let current = match tenant.grant_types(&record.client_id).await {
        Ok(Some(current)) => current,
        Ok(None) => return finish(state, guard, record, "client_deleted", "guard_client_pause_skipped").await,
        Err(e) => return failed(state, guard, record, &e).await,
    };
    if !current.iter().any(|g| g == CLIENT_CREDENTIALS) {
        // Already paused by someone else: not ours to resume later.
        return finish(state, guard, record, "already_without_client_credentials", "guard_client_pause_skipped").await;
    }
    let paused = without_client_credentials(&current);
    match tenant.set_grant_types(&record.client_id, &paused).await {
        Ok(true) => {}
        Ok(false) => return finish(state, guard, record, "client_deleted", "guard_client_pause_skipped").await,
        Err(e) => return failed(state, guard, record, &e).await,
    }
    let now = state.now();
    let updated = guard
        .pauses()
        .update(state, &record.client_id, |r| {
            r.state = PauseState::Paused;
            r.original_grant_types = Some(current.clone());
            r.paused_grant_types = Some(paused.clone());
            r.attempts = 0;
            r.next_attempt_at = 0;
            r.last_error = None;
            r.paused_at = Some(now.to_rfc3339());
        })
        .await?;
    let until = updated.as_ref().map_or(record.until, |r| r.until);
    tracing::info!(client_id = %record.client_id, reason = %record.reason, until, "guard: client paused on the tenant");
    emit(
        state,
        "guard_client_paused",
        &format!("Client paused (client_credentials removed): {}", record.reason),
        record,
        json!({
            "reason": record.reason,
            "entity_type": record.entity_type,
            "entity_id": record.entity_id,
            "buckets": record.buckets,
            "until": UnixTime::from_secs(until).to_rfc3339(),
            "original_grant_types": current,
            "grant_types": paused,
        }),
    );
    Ok(())
}

async fn resume(state: &AppState, guard: &Guard, record: &PauseRecord) -> Result<(), ration_store::StoreError> {
    let Some(tenant) = guard.tenant() else {
        return failed(state, guard, record, &no_tenant()).await;
    };
    let current = match tenant.grant_types(&record.client_id).await {
        Ok(Some(current)) => current,
        Ok(None) => return finish(state, guard, record, "client_deleted", "guard_client_resume_skipped").await,
        Err(e) => return failed(state, guard, record, &e).await,
    };
    let ours = record.paused_grant_types.clone().unwrap_or_default();
    if !same_set(&current, &ours) {
        return finish(state, guard, record, "changed_by_operator", "guard_client_resume_skipped").await;
    }
    let original = record.original_grant_types.clone().unwrap_or_else(|| vec![CLIENT_CREDENTIALS.to_owned()]);
    match tenant.set_grant_types(&record.client_id, &original).await {
        Ok(true) => finish(state, guard, record, "resumed", "guard_client_resumed").await,
        Ok(false) => finish(state, guard, record, "client_deleted", "guard_client_resume_skipped").await,
        Err(e) => failed(state, guard, record, &e).await,
    }
}

fn no_tenant() -> TenantError {
    TenantError { message: "no Management API credentials for the tenant are configured".into(), retry_after: None }
}

/// Grant types compare as sets: the tenant may reorder them.
fn same_set(a: &[String], b: &[String]) -> bool {
    let mut a: Vec<&String> = a.iter().collect();
    let mut b: Vec<&String> = b.iter().collect();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    a == b
}

/// Ends a pause with `outcome` and records it in the event log as `event_type`.
async fn finish(
    state: &AppState,
    guard: &Guard,
    record: &PauseRecord,
    outcome: &str,
    event_type: &str,
) -> Result<(), ration_store::StoreError> {
    let now = state.now();
    guard
        .pauses()
        .update(state, &record.client_id, |r| {
            r.state = PauseState::Done;
            r.outcome = Some(outcome.to_owned());
            r.finished_at = Some(now.to_rfc3339());
            r.last_error = None;
        })
        .await?;
    tracing::info!(client_id = %record.client_id, outcome, "guard: pause finished");
    let description = match outcome {
        "resumed" => "Client resumed (client_credentials restored) at the quota window reset".to_owned(),
        "changed_by_operator" => {
            "Client left alone: its grant_types were changed by someone else while it was paused".to_owned()
        }
        "client_deleted" => "Client left alone: it no longer exists on the tenant".to_owned(),
        "window_reset_before_pause" => {
            "Client not paused: the quota window reset before the tenant accepted".to_owned()
        }
        other => format!("Client left alone: {other}"),
    };
    emit(
        state,
        event_type,
        &description,
        record,
        json!({
            "outcome": outcome,
            "reason": record.reason,
            "original_grant_types": record.original_grant_types,
            "paused_grant_types": record.paused_grant_types,
        }),
    );
    Ok(())
}

/// Schedules the next attempt after a failed tenant call.
async fn failed(
    state: &AppState,
    guard: &Guard,
    record: &PauseRecord,
    error: &TenantError,
) -> Result<(), ration_store::StoreError> {
    let attempts = record.attempts.saturating_add(1);
    let delay = error.retry_after.unwrap_or_else(|| backoff(attempts));
    let next = state.now().millis.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
    tracing::warn!(
        client_id = %record.client_id, attempts, retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), error = %error,
        "guard: tenant call failed; will retry"
    );
    guard
        .pauses()
        .update(state, &record.client_id, |r| {
            r.attempts = attempts;
            r.next_attempt_at = next;
            r.last_error = Some(error.message.clone());
        })
        .await?;
    Ok(())
}

/// Exponential: 0.5 s, 1 s, 2 s, … capped at a minute.
fn backoff(attempts: u32) -> Duration {
    let factor = 1u32.checked_shl(attempts.saturating_sub(1).min(16)).unwrap_or(u32::MAX);
    BASE_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

fn emit(state: &AppState, event_type: &str, description: &str, record: &PauseRecord, details: serde_json::Value) {
    state.events.emit(
        state.now(),
        &RequestInfo::default(),
        json!({
            "type": event_type,
            "description": description,
            "client_id": record.client_id,
            "details": details,
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(2));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }

    #[test]
    fn grant_types_compare_as_sets() {
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(same_set(&g(&["a", "b"]), &g(&["b", "a"])));
        assert!(same_set(&g(&[]), &g(&[])));
        assert!(!same_set(&g(&["a"]), &g(&[])));
    }
}
