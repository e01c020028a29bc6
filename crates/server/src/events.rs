//! The event log writer: Auth0-shaped tenant log events, with unique increasing `log_id`s,
//! appended to the store in batches by a background task so the token path never waits on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use ration_domain::UnixTime;
use ration_store::{ConfigStore, StoredEvent};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Where events go. Cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Ids>,
    tx: mpsc::UnboundedSender<StoredEvent>,
}

struct Ids {
    seq: AtomicU64,
    /// The last millisecond used in an id, so ids increase even if the clock steps back.
    last_millis: AtomicI64,
}

/// Request facts that Auth0 puts on every event.
#[derive(Clone, Debug, Default)]
pub struct RequestInfo {
    pub ip: String,
    pub user_agent: String,
    pub hostname: String,
}

impl EventLog {
    /// Starts the background writer. Events are appended in batches of whatever accumulated while
    /// the previous batch was written.
    pub fn start(store: Arc<dyn ConfigStore>) -> EventLog {
        let (tx, mut rx) = mpsc::unbounded_channel::<StoredEvent>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < 1000 {
                    match rx.try_recv() {
                        Ok(e) => batch.push(e),
                        Err(_) => break,
                    }
                }
                if let Err(e) = store.append_events(&batch).await {
                    tracing::error!(error = %e, n = batch.len(), "cannot store events");
                }
            }
        });
        EventLog { inner: Arc::new(Ids { seq: AtomicU64::new(0), last_millis: AtomicI64::new(0) }), tx }
    }

    /// A new `log_id`: `900`, the time in milliseconds and a sequence number, fixed width, so that
    /// ids sort in the order they were made (as Auth0's do).
    pub fn new_log_id(&self, now: UnixTime) -> String {
        let millis = self.inner.last_millis.fetch_max(now.millis, Ordering::Relaxed).max(now.millis);
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        format!("900{millis:016}{seq:020}")
    }

    /// Records an event. `fields` is the event's own part (type, description, details…); the
    /// common Auth0 fields are filled in here.
    pub fn emit(&self, now: UnixTime, info: &RequestInfo, mut fields: Value) {
        let log_id = self.new_log_id(now);
        if let Value::Object(map) = &mut fields {
            map.insert("log_id".into(), json!(log_id));
            map.insert("date".into(), json!(now.to_rfc3339()));
            map.entry("ip").or_insert(json!(info.ip));
            map.entry("client_ip").or_insert(json!(info.ip));
            map.entry("user_agent").or_insert(json!(info.user_agent));
            map.entry("hostname").or_insert(json!(info.hostname));
            map.entry("user_id").or_insert(json!(""));
            map.entry("user_name").or_insert(json!(""));
            map.entry("connection_id").or_insert(json!(""));
            map.entry("isMobile").or_insert(json!(false));
            map.insert("$event_schema".into(), json!({"version": "1.0.0"}));
        }
        let event = StoredEvent {
            log_id,
            date: now,
            event_type: fields.get("type").and_then(Value::as_str).unwrap_or_default().to_owned(),
            client_id: fields.get("client_id").and_then(Value::as_str).map(str::to_owned),
            json: fields.to_string(),
        };
        if self.tx.send(event).is_err() {
            tracing::error!("event writer stopped; event dropped");
        }
    }
}
