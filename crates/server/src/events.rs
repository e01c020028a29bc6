//! The event log writer: Auth0-shaped tenant log events with unique, increasing `log_id`s.
//!
//! One background task appends events to the store in group commits (everything that queued while
//! the previous batch was written goes in one transaction). Events that belong to an issued token
//! or a stored change are awaited ([`EventLog::emit_durable`]): the response is sent only once
//! the batch holding them is committed. Others ([`EventLog::emit`]) are not awaited, so a failing
//! or flooding caller cannot slow anyone down. After each commit a watch channel announces the
//! newest `log_id`, which wakes the log-stream deliverers.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use ration_domain::UnixTime;
use ration_store::{ConfigStore, StoredEvent};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};

/// Where events go. Cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    ids: Arc<Ids>,
    tx: mpsc::UnboundedSender<Pending>,
    committed: watch::Receiver<u64>,
}

struct Pending {
    event: StoredEvent,
    done: Option<oneshot::Sender<bool>>,
}

struct Ids {
    /// Random per process: instances sharing a store never make the same id in the same
    /// millisecond (a duplicate would be dropped as a replay).
    instance_tag: u32,
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

/// The largest batch one transaction takes.
const MAX_BATCH: usize = 2000;

impl EventLog {
    /// Starts the background writer. `last_log_id` (the store's newest) seeds the sequence so ids
    /// keep increasing across restarts even with a clock that stepped back.
    pub fn start(store: Arc<dyn ConfigStore>, last_log_id: Option<&str>) -> EventLog {
        let (tx, rx) = mpsc::unbounded_channel::<Pending>();
        let (committed_tx, committed) = watch::channel(0u64);
        tokio::spawn(write_loop(store, rx, committed_tx));
        let last_millis = last_log_id.and_then(|id| id.get(3..19)).and_then(|m| m.parse().ok()).unwrap_or(0);
        let instance_tag =
            crate::secrets::random_bytes::<4>().map(u32::from_le_bytes).unwrap_or_default() % 100_000_000;
        let ids = Ids { instance_tag, seq: AtomicU64::new(0), last_millis: AtomicI64::new(last_millis) };
        EventLog { ids: Arc::new(ids), tx, committed }
    }

    /// A receiver that changes after every commit (its value counts commits).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// A new `log_id`: `900`, the time in milliseconds, this process's tag and a sequence number,
    /// fixed width, so that ids sort in the order they were made (as Auth0's do) and are unique
    /// across instances.
    pub fn new_log_id(&self, now: UnixTime) -> String {
        let millis = self.ids.last_millis.fetch_max(now.millis, Ordering::Relaxed).max(now.millis);
        let seq = self.ids.seq.fetch_add(1, Ordering::Relaxed);
        format!("900{millis:016}{:08}{seq:020}", self.ids.instance_tag)
    }

    /// Records an event without waiting for it to be stored.
    pub fn emit(&self, now: UnixTime, info: &RequestInfo, fields: Value) {
        let event = self.build(now, info, fields);
        if self.tx.send(Pending { event, done: None }).is_err() {
            tracing::error!("event writer stopped; event dropped");
        }
    }

    /// Records an event and resolves once it is committed. `false`: it could not be stored.
    pub fn emit_durable(&self, now: UnixTime, info: &RequestInfo, fields: Value) -> impl Future<Output = bool> + use<> {
        let event = self.build(now, info, fields);
        let (done_tx, done_rx) = oneshot::channel();
        let sent = self.tx.send(Pending { event, done: Some(done_tx) }).is_ok();
        async move { sent && done_rx.await.unwrap_or(false) }
    }

    /// Fills in Auth0's common fields around the event's own (type, description, details…).
    fn build(&self, now: UnixTime, info: &RequestInfo, mut fields: Value) -> StoredEvent {
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
        StoredEvent {
            log_id,
            date: now,
            event_type: fields.get("type").and_then(Value::as_str).unwrap_or_default().to_owned(),
            client_id: fields.get("client_id").and_then(Value::as_str).map(str::to_owned),
            json: fields.to_string(),
        }
    }
}

async fn write_loop(
    store: Arc<dyn ConfigStore>,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    committed: watch::Sender<u64>,
) {
    let mut batch: Vec<Pending> = Vec::new();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (events, dones): (Vec<StoredEvent>, Vec<_>) = batch.drain(..).map(|p| (p.event, p.done)).unzip();
        let ok = match store.append_events(&events).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, n = events.len(), "cannot store events");
                false
            }
        };
        for done in dones.into_iter().flatten() {
            let _ = done.send(ok);
        }
        if ok {
            committed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}
