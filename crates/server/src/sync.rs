//! Keeping every instance's in-memory view current when several share one store.
//!
//! A Management API write applies to the writer's own catalog at once, then publishes a change
//! notification through the store (PostgreSQL NOTIFY). Every other instance reloads the catalog,
//! the signing keys, the bound Actions and the log-stream workers from the store. Notifications are
//! coalesced (a burst of writes costs one reload) and a periodic full refresh covers any missed
//! notification.

use std::time::Duration;

use crate::state::AppState;

/// Wait this long after a notification for more before reloading: bursts cost one reload.
const COALESCE: Duration = Duration::from_millis(50);
/// Reload everything this often even without notifications.
pub const FULL_REFRESH: Duration = Duration::from_secs(30);

/// The payload an instance publishes: its id, so that it can ignore its own notifications.
pub fn payload(state: &AppState) -> String {
    state.instance_id.clone()
}

/// Publishes a change notification (no-op on a store nobody shares).
pub async fn publish(state: &AppState) {
    if let Err(e) = state.store.publish_change(&payload(state)).await {
        // The periodic refresh will still carry the change to the other instances.
        tracing::warn!(error = %e, "cannot publish a change notification");
    }
}

/// Starts the listener and the periodic refresh when the store is shared.
pub async fn start(state: AppState) -> Result<(), crate::StartError> {
    if !state.store.is_shared() {
        return Ok(());
    }
    let mut changes = state.store.subscribe_changes().await?;
    tokio::spawn(async move {
        let mut refresh = tokio::time::interval(FULL_REFRESH);
        refresh.tick().await;
        loop {
            let reload = match changes.as_mut() {
                Some(rx) => tokio::select! {
                    msg = rx.recv() => match msg {
                        Some(origin) => origin != state.instance_id,
                        None => {
                            tracing::warn!("change notifications ended; relying on the periodic refresh");
                            changes = None;
                            false
                        }
                    },
                    _ = refresh.tick() => true,
                },
                None => {
                    refresh.tick().await;
                    true
                }
            };
            if !reload {
                continue;
            }
            tokio::time::sleep(COALESCE).await;
            if let Some(rx) = changes.as_mut() {
                while rx.try_recv().is_ok() {}
            }
            if let Err(e) = reload_all(&state).await {
                tracing::error!(error = %e.message, "reloading the configuration failed; keeping the previous one");
            }
        }
    });
    Ok(())
}

/// Replaces the in-memory view with the store's.
pub async fn reload_all(state: &AppState) -> Result<(), crate::error::ApiError> {
    {
        // Read and replaced under the write lock. Local writes (Management API, key rotation,
        // bindings) hold it while they change the store and then the in-memory view, so each one
        // either committed before these reads (and is in them) or waits for the reload. Taking
        // the lock only to replace let a copy read before a local write overwrite it afterwards,
        // and the writer's own notification does not reload it: the write was lost until the
        // next full refresh (seen as a grant made on an instance refused there for seconds).
        let _writes = state.writes.lock().await;
        let catalog = state.store.load_catalog().await?;
        state.catalog.store(std::sync::Arc::new(catalog));
        state.reload_keys().await?;
        crate::actions::reload_bound(state).await?;
    }
    for (stream, _) in state.store.list_log_streams().await? {
        state.deliveries.reload(&stream.id).await?;
    }
    Ok(())
}
