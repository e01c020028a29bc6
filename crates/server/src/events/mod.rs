//! The event log writer: Auth0-shaped tenant log events with unique, increasing `log_id`s.
//!
//! Events are written in groups ([`ration_groupcommit`]: whoever waits first writes everything
//! queued). The group writer gives them their `log_id`s in the order it writes them (so the store
//! never receives a smaller id after a larger one, which a log-stream cursor would skip) and makes
//! each group durable with one write:
//!
//! - Embedded store: the group is appended to the [`journal`] (one `write(2)`), the events waiting
//!   on it are released, and a background task indexes the events into the store in large
//!   batches. Start-up replays what a crash left in the journal.
//! - Shared store (PostgreSQL): there is no local journal (another instance could not replay it);
//!   the group is committed to the store in one transaction before its events are released.
//!
//! Every event's `log_id` (the row's own column), and a `seccft`'s fixed texts and date, are
//! written packed into single bytes ([`ration_store::packed`]); the store's reads unpack them.
//!
//! Events that belong to an issued token or a stored change are awaited
//! ([`EventLog::emit_durable`]); others ([`EventLog::emit`]) are not, so a failing or flooding
//! caller cannot slow anyone down. Readers of the store call [`EventLog::flushed`] first, so that
//! an event emitted before a read is part of it. After each store commit a watch channel
//! announces how many events are in, which wakes the log-stream deliverers.

mod journal;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ration_domain::{Durability, UnixTime};
use ration_proto::json::write_string;
use ration_store::packed::Member;
use ration_store::{ConfigStore, StoredEvent};
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use journal::Segment;
use ration_groupcommit::{GroupCommit, Sink};

/// Where events go. Cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    group: Arc<GroupCommit<Writer>>,
    /// Whether a group is durable once written (journal), or only once in the store.
    journaled: bool,
    /// Events handed to the writer so far.
    sent: Arc<AtomicU64>,
    /// Events in the store so far (or given up on), in writer order.
    stored: watch::Receiver<u64>,
    /// Asks the indexing task to stop lingering: somebody is waiting to read.
    urgent: Arc<Notify>,
}

/// An event as its emitter built it: everything but the `log_id`, which the writer adds.
struct Pending {
    date: UnixTime,
    event_type: String,
    client_id: Option<String>,
    /// A JSON object with at least one member, without `log_id`; packed for a `seccft`
    /// (`ration_store::packed`, its date then left to `date`).
    body: String,
    /// Without a journal: released once the event is in the store.
    done: Option<oneshot::Sender<bool>>,
}

/// Request facts that Auth0 puts on every event.
#[derive(Clone, Debug, Default)]
pub struct RequestInfo {
    pub ip: String,
    pub user_agent: String,
    pub hostname: String,
}

/// The most events in one store transaction.
const MAX_TRANSACTION: usize = 8192;
/// How long a reader waits for earlier events to reach the store before reading anyway.
const FLUSH_WAIT: Duration = Duration::from_secs(5);
/// How long journaled events may wait to be indexed while more arrive: one large transaction
/// costs SQLite far less per event than many small ones (fewer WAL frames and commits). Readers
/// and log-stream deliveries see events this much later at most; a reader cuts it short.
const INGEST_LINGER: Duration = Duration::from_millis(100);

/// Work done at the start of each group's write ([`EventLog::open`]).
pub type BeforeGroup = Box<dyn Fn() + Send + Sync>;

/// Where the embedded store's events are journaled.
pub struct JournalConfig {
    pub dir: PathBuf,
    pub durability: Durability,
}

#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    #[error("event journal in {dir}: {error}")]
    Journal { dir: String, error: std::io::Error },
    #[error("cannot replay the event journal into the store: {0}")]
    Store(#[from] ration_store::StoreError),
}

impl EventLog {
    /// Replays what the journal holds into the store (with `journal`), then starts the writer.
    /// The store's newest `log_id` seeds the id sequence, so ids keep increasing across restarts
    /// even with a clock that stepped back.
    ///
    /// `before_group` runs at the start of every group's write: the embedded quota counters write
    /// their own journal there, so that a token, which waits for its `seccft` event's group
    /// anyway, needs no second group commit for its count (see `ration_counters::EmbeddedCounters`).
    pub async fn open(
        store: Arc<dyn ConfigStore>,
        journal: Option<JournalConfig>,
        before_group: Option<BeforeGroup>,
    ) -> Result<EventLog, EventLogError> {
        let segment = match journal {
            Some(config) => Some(replay(store.as_ref(), &config).await?),
            None => None,
        };
        let last_log_id = store.last_log_id().await?;
        // One past the stored newest id's millisecond: ids made in that same millisecond by this
        // process would compare by its random tag, which may be smaller than the last process's.
        let last_millis = last_log_id
            .as_deref()
            .and_then(|id| id.get(3..19))
            .and_then(|m| m.parse::<i64>().ok())
            .map_or(0, |m| m.saturating_add(1));
        // Random per process: instances sharing a store never make the same id in the same
        // millisecond (a duplicate would be dropped as a replay).
        let instance_tag =
            crate::secrets::random_bytes::<4>().map(u32::from_le_bytes).unwrap_or_default() % 100_000_000;
        let (stored_tx, stored) = watch::channel(0u64);
        let (ingest_tx, ingest_rx) = mpsc::unbounded_channel();
        let journaled = segment.is_some();
        let urgent = Arc::new(Notify::new());
        let linger = journaled.then_some(INGEST_LINGER);
        tokio::spawn(ingest_loop(store, ingest_rx, stored_tx, linger, urgent.clone()));
        let writer = Writer { segment, instance_tag, seq: 0, last_millis, ingest: ingest_tx, before_group };
        let group = GroupCommit::start(writer);
        Ok(EventLog { group, journaled, sent: Arc::new(AtomicU64::new(0)), stored, urgent })
    }

    /// A receiver that changes whenever events reach the store (its value counts them).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.stored.clone()
    }

    /// Resolves once every event emitted before the call is in the store (or after a few seconds
    /// if the store is failing), so that a read right after a write sees it.
    pub async fn flushed(&self) {
        let target = self.sent.load(Ordering::Acquire);
        let mut stored = self.stored.clone();
        if *stored.borrow() < target {
            self.group.kick();
            self.urgent.notify_one();
        }
        let _ = tokio::time::timeout(FLUSH_WAIT, stored.wait_for(|n| *n >= target)).await;
    }

    /// Records an event without waiting for it to be stored.
    pub fn emit(&self, now: UnixTime, info: &RequestInfo, fields: Value) {
        self.sent.fetch_add(1, Ordering::AcqRel);
        self.group.append_unawaited(prepare(now, info, fields));
    }

    /// Records an event and resolves once it is durable. `false`: it could not be stored.
    pub fn emit_durable(&self, now: UnixTime, info: &RequestInfo, fields: Value) -> impl Future<Output = bool> + use<> {
        self.append_durable(prepare(now, info, fields))
    }

    /// [`EventLog::emit_durable`] for the one event of every issued token, written straight to JSON.
    pub fn emit_seccft(
        &self,
        now: UnixTime,
        info: &RequestInfo,
        event: &Seccft<'_>,
    ) -> impl Future<Output = bool> + use<> {
        self.append_durable(prepare_seccft(now, info, event))
    }

    fn append_durable(&self, mut pending: Pending) -> impl Future<Output = bool> + use<> {
        let stored = (!self.journaled).then(|| {
            let (tx, rx) = oneshot::channel();
            pending.done = Some(tx);
            rx
        });
        // Counted before it is queued, so that `flushed` never misses it.
        self.sent.fetch_add(1, Ordering::AcqRel);
        let ticket = self.group.append(pending);
        let group = self.group.clone();
        async move {
            let written = group.wait(ticket).await.is_ok();
            match stored {
                Some(rx) => rx.await.unwrap_or(false),
                None => written,
            }
        }
    }
}

/// Fills in Auth0's common fields around the event's own (type, description, details…).
fn prepare(now: UnixTime, info: &RequestInfo, fields: Value) -> Pending {
    let mut map = match fields {
        Value::Object(map) => map,
        other => {
            tracing::error!(event = %other, "event fields are not an object");
            Map::new()
        }
    };
    map.remove("log_id");
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
    let text = |name: &str| map.get(name).and_then(Value::as_str).map(str::to_owned);
    let event_type = text("type").unwrap_or_default();
    let client_id = text("client_id");
    let value = Value::Object(map);
    // serde_json's writer, not `Display`: `to_string` on a `Value` goes through `fmt::Formatter`
    // piece by piece, which was half the cost of preparing an event (~18 k instructions of ~32 k,
    // on every token). Serializing a `Value` cannot fail; `Display` is the unreachable fallback.
    let body = serde_json::to_string(&value).unwrap_or_else(|_| value.to_string());
    Pending { date: now, event_type, client_id, body, done: None }
}

/// A `seccft` event's own fields (Auth0's "Success Exchange": Client Credentials for Access Token).
pub struct Seccft<'a> {
    pub client_id: &'a str,
    pub client_name: &'a str,
    pub audience: &'a str,
    /// The granted scopes, space-separated.
    pub scope: &'a str,
    pub jti: &'a str,
    /// The organization's id and name, when the token is for one.
    pub organization: Option<(&'a str, &'a str)>,
    /// `details.actions.logs`, when Actions ran.
    pub action_logs: Option<&'a Value>,
}

/// What [`prepare`] makes of a `seccft`'s fields, byte for byte once unpacked (a test compares
/// the two), without building a `serde_json::Value` map: that map, its ~20 string keys and its
/// serialization were ~24 k instructions of every issued token. Members are written in the map's
/// order (sorted keys); values go through serde_json's string escaping. Member names, fixed
/// values and the date are written packed ([`ration_store::packed`]): one byte each instead of
/// ~370 bytes of every issued token's event, which the journal writes and the embedded store
/// indexes.
fn prepare_seccft(now: UnixTime, info: &RequestInfo, e: &Seccft<'_>) -> Pending {
    fn text(out: &mut Vec<u8>, member: Member, value: &str) {
        out.push(member.code());
        write_string(out, value);
    }
    let mut out = Vec::with_capacity(320);
    out.push(b'{');
    out.push(Member::EventSchema.code());
    text(&mut out, Member::Audience, e.audience);
    text(&mut out, Member::ClientId, e.client_id);
    text(&mut out, Member::ClientIp, &info.ip);
    text(&mut out, Member::ClientName, e.client_name);
    out.push(Member::NoConnectionId.code());
    // The date is the row's column (`Pending::date`), written out when the event is read.
    out.push(Member::Date.code());
    out.push(Member::SeccftDescription.code());
    text(&mut out, Member::AccessTokenJti, e.jti);
    if let Some(logs) = e.action_logs {
        out.extend_from_slice(br#","actions":{"logs":"#);
        if serde_json::to_writer(&mut out, logs).is_err() {
            out.extend_from_slice(b"[]");
        }
        out.push(b'}');
    }
    out.push(b'}');
    text(&mut out, Member::Hostname, &info.hostname);
    text(&mut out, Member::Ip, &info.ip);
    out.push(Member::NotMobile.code());
    if let Some((id, name)) = e.organization {
        text(&mut out, Member::OrganizationId, id);
        text(&mut out, Member::OrganizationName, name);
    }
    text(&mut out, Member::Scope, e.scope);
    out.push(Member::SeccftType.code());
    text(&mut out, Member::UserAgent, &info.user_agent);
    out.push(Member::NoUserId.code());
    out.push(Member::NoUserName.code());
    out.push(b'}');
    // Only whole UTF-8 strings and ASCII went in; the fallback is unreachable.
    let body = String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    Pending { date: now, event_type: "seccft".to_owned(), client_id: Some(e.client_id.to_owned()), body, done: None }
}

/// Replays every journal segment into the store, deletes them and starts the next one.
async fn replay(store: &dyn ConfigStore, config: &JournalConfig) -> Result<Segment, EventLogError> {
    let io = |error| EventLogError::Journal { dir: config.dir.display().to_string(), error };
    let segments = journal::segments(&config.dir).map_err(io)?;
    let next = segments.last().map_or(0, |(n, _)| n + 1);
    let mut replayed = 0usize;
    for (_, path) in &segments {
        let events = journal::read_segment(path).map_err(io)?;
        for chunk in events.chunks(MAX_TRANSACTION) {
            store.append_events(chunk).await?;
        }
        replayed += events.len();
        std::fs::remove_file(path).map_err(io)?;
    }
    if !segments.is_empty() {
        tracing::info!(segments = segments.len(), events = replayed, "event journal replayed into the store");
    }
    Segment::create(&config.dir, next, config.durability).map_err(io)
}

/// A group on its way from the writer to the store.
struct Group {
    events: Vec<StoredEvent>,
    /// Waiters released when the group is in the store (shared store only).
    acks: Vec<oneshot::Sender<bool>>,
    /// A journal segment that holds nothing after this group: delete it once the group is stored.
    finished_segment: Option<PathBuf>,
}

struct Writer {
    /// `None` with a shared store.
    segment: Option<Segment>,
    instance_tag: u32,
    seq: u64,
    /// The last millisecond used in an id, so ids increase even if the clock steps back.
    last_millis: i64,
    ingest: mpsc::UnboundedSender<Group>,
    before_group: Option<BeforeGroup>,
}

impl Sink for Writer {
    type Item = Pending;

    fn write(&mut self, group: Vec<Pending>) -> Result<(), String> {
        if let Some(before_group) = &self.before_group {
            before_group();
        }
        let mut events = Vec::with_capacity(group.len());
        let mut acks = Vec::new();
        for pending in group {
            let (event, done) = self.finish(pending);
            events.push(event);
            acks.extend(done);
        }
        let mut result = Ok(());
        let mut finished_segment = None;
        if let Some(segment) = &mut self.segment {
            if let Err(e) = segment.append(&events) {
                // The events still go to the store; only their durability before it is lost.
                tracing::error!(error = %e, path = %segment.path().display(), "event journal write failed");
                result = Err(format!("event journal write failed: {e}"));
            }
            if segment.is_full() {
                match segment.next() {
                    Ok(next) => finished_segment = Some(std::mem::replace(segment, next).path()),
                    Err(e) => tracing::error!(error = %e, "cannot start a new event journal segment"),
                }
            }
        }
        if let Err(mpsc::error::SendError(group)) = self.ingest.send(Group { events, acks, finished_segment }) {
            for ack in group.acks {
                let _ = ack.send(false);
            }
        }
        result
    }
}

impl Writer {
    /// A `log_id` (`900`, the time in milliseconds, this process's tag and a sequence number, fixed
    /// width, so that ids sort in the order they were made, as Auth0's do) and the final JSON.
    fn finish(&mut self, pending: Pending) -> (StoredEvent, Option<oneshot::Sender<bool>>) {
        self.last_millis = self.last_millis.max(pending.date.millis);
        self.seq += 1;
        let log_id = log_id(self.last_millis, self.instance_tag, self.seq);
        // `body` is an object with at least one member: put `log_id` first, packed
        // (`ration_store::packed`): the id is the row's column and the journal line's.
        let rest = pending.body.strip_prefix('{').unwrap_or(&pending.body);
        let mut json = String::with_capacity(rest.len() + 2);
        json.push('{');
        json.push(char::from(Member::LogId.code()));
        json.push_str(rest);
        let event = StoredEvent {
            log_id,
            date: pending.date,
            event_type: pending.event_type,
            client_id: pending.client_id,
            json,
        };
        (event, pending.done)
    }
}

/// `900`, then `millis`, `tag` and `seq` zero-padded to 16, 8 and 20 digits. Written with `itoa`
/// rather than `format!`'s padded integers, which cost ~3 k instructions on every event.
fn log_id(millis: i64, tag: u32, seq: u64) -> String {
    let Ok(millis) = u64::try_from(millis) else {
        // A clock before 1970: `format!` puts the sign where Rust always has.
        return format!("900{millis:016}{tag:08}{seq:020}");
    };
    let mut id = String::with_capacity(47);
    id.push_str("900");
    for (value, width) in [(millis, 16), (u64::from(tag), 8), (seq, 20)] {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(value);
        id.extend(std::iter::repeat_n('0', width - digits.len().min(width)));
        id.push_str(digits);
    }
    id
}

/// Moves groups into the store, merging whatever queued meanwhile into one transaction. With
/// `linger` (journaled events, already durable), it waits that long for more before committing,
/// unless a reader is waiting (`urgent`).
async fn ingest_loop(
    store: Arc<dyn ConfigStore>,
    mut rx: mpsc::UnboundedReceiver<Group>,
    stored: watch::Sender<u64>,
    linger: Option<Duration>,
    urgent: Arc<Notify>,
) {
    let mut groups: Vec<Group> = Vec::new();
    while rx.recv_many(&mut groups, 64).await > 0 {
        if let Some(linger) = linger {
            // One timer for the whole linger, not one per arriving group.
            let deadline = tokio::time::sleep(linger);
            tokio::pin!(deadline);
            let mut open = true;
            // Counted as groups arrive: summing the whole list on every arrival was quadratic in
            // the groups of one linger (thousands when groups are small), 1.4 % of the server's
            // CPU in a profile.
            let mut queued: usize = groups.iter().map(|g| g.events.len()).sum();
            while open && queued < MAX_TRANSACTION {
                let before = groups.len();
                tokio::select! {
                    _ = &mut deadline => break,
                    _ = urgent.notified() => break,
                    n = rx.recv_many(&mut groups, 64) => open = n > 0,
                }
                queued += groups.iter().skip(before).map(|g| g.events.len()).sum::<usize>();
            }
        }
        let mut events = Vec::new();
        let mut acks = Vec::new();
        let mut finished = Vec::new();
        for group in groups.drain(..) {
            events.extend(group.events);
            acks.extend(group.acks);
            finished.extend(group.finished_segment);
        }
        let mut ok = true;
        for chunk in events.chunks(MAX_TRANSACTION) {
            ok &= commit(store.as_ref(), chunk, linger.is_some()).await;
        }
        for ack in acks {
            let _ = ack.send(ok);
        }
        if !finished.is_empty() {
            // On a blocking thread: unlinking a 32 MiB segment drops its pages from the page
            // cache, ~1.7 ms on session 19's machine, which on this worker stalled every request
            // queued behind it (docs/benchmarks.md, session 19). A segment that a shutdown leaves
            // undeleted is replayed at the next start, its events skipped as already stored.
            tokio::task::spawn_blocking(move || {
                for path in finished {
                    if let Err(e) = std::fs::remove_file(&path) {
                        tracing::warn!(error = %e, path = %path.display(), "cannot delete a stored event journal segment");
                    }
                }
            });
        }
        stored.send_modify(|n| *n += events.len() as u64);
    }
}

/// Stores one transaction. Journaled events are durable already and must reach the store, so they
/// are retried until they do; without a journal the waiting requests are told it failed.
async fn commit(store: &dyn ConfigStore, events: &[StoredEvent], journaled: bool) -> bool {
    let mut backoff = Duration::from_millis(50);
    loop {
        match store.append_events(events).await {
            Ok(()) => return true,
            Err(e) => {
                tracing::error!(error = %e, n = events.len(), "cannot store events");
                if !journaled {
                    return false;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same event through the generic path, as the token endpoint built it before.
    fn generic(now: UnixTime, info: &RequestInfo, e: &Seccft<'_>) -> String {
        let mut fields = json!({
            "type": "seccft",
            "description": "Client Credentials for Access Token",
            "client_id": e.client_id,
            "client_name": e.client_name,
            "audience": e.audience,
            "scope": e.scope,
            "details": {"access_token_jti": e.jti},
        });
        if let Some((id, name)) = e.organization {
            fields["organization_id"] = json!(id);
            fields["organization_name"] = json!(name);
        }
        if let Some(logs) = e.action_logs {
            fields["details"]["actions"] = json!({"logs": logs});
        }
        prepare(now, info, fields).body
    }

    #[tokio::test]
    async fn ids_keep_increasing_after_a_restart_with_a_clock_that_stepped_back() {
        let store: Arc<dyn ConfigStore> = Arc::new(ration_store::SqliteStore::open_in_memory().await.expect("store"));
        let stored_millis = 1_796_404_777_123;
        // The newest stored id has the largest possible tag: a new process's random tag is smaller.
        let last = log_id(stored_millis, 99_999_999, 7);
        let event = StoredEvent {
            log_id: last.clone(),
            date: UnixTime::from_millis(stored_millis),
            event_type: "sapi".into(),
            client_id: None,
            json: "{}".into(),
        };
        store.append_events(&[event]).await.expect("append");
        let events = EventLog::open(store.clone(), None, None).await.expect("open");
        let info = RequestInfo::default();
        for back in [3_600_000, 0] {
            assert!(
                events.emit_durable(UnixTime::from_millis(stored_millis - back), &info, json!({"type": "sapi"})).await
            );
        }
        let newest = store.last_log_id().await.expect("last").expect("some");
        let all = store
            .list_events(&ration_store::EventQuery {
                types: Vec::new(),
                categories: Vec::new(),
                client_id: None,
                date_from: None,
                date_to: None,
                after_log_id: Some(last.clone()),
                newest_first: false,
                with_total: true,
                page: ration_store::Page { page: 0, per_page: 10 },
            })
            .await
            .expect("list");
        assert_eq!(all.total, 2, "both new events sort after the stored one ({newest} vs {last})");
    }

    /// The wiring `Server::build` makes for the embedded counters: the event group a token waits
    /// for writes its count too, so the count's own wait resolves at its first poll.
    #[tokio::test]
    async fn an_event_group_writes_the_counts_owed_before_it() {
        use std::task::{Context, Poll, Waker};

        use ration_counters::{Counters, Durability, EmbeddedCounters};
        use ration_domain::{QuotaLimits, TokenQuota, quota::QuotaPlan};

        let dir = std::env::temp_dir().join(format!("ration-events-flush-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let now = UnixTime::from_secs(1_800_000_000);
        let counters =
            EmbeddedCounters::open(&dir.join("counters.journal"), Durability::Process, now).expect("counters");
        let store: Arc<dyn ConfigStore> = Arc::new(ration_store::SqliteStore::open_in_memory().await.expect("store"));
        let events = EventLog::open(store, None, Some(Box::new(counters.flusher()))).await.expect("open");
        let quota =
            TokenQuota { enforce: true, limits: QuotaLimits { per_minute: None, per_hour: Some(5), per_day: None } };
        let plan = QuotaPlan::new(Some(("c1", &quota)), None, now);

        let (_, mut counted) = counters.consume_deferred(&plan).await.expect("consume");
        assert!(events.emit_durable(now, &RequestInfo::default(), json!({"type": "seccft"})).await);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(counted.as_mut().poll(&mut cx), Poll::Ready(Ok(()))), "written with the event's group");
        drop(counters);
        let reopened = EmbeddedCounters::open(&dir.join("counters.journal"), Durability::Process, now).expect("reopen");
        assert_eq!(reopened.peek_plan(&plan).await.expect("peek"), vec![1], "the count reached the journal");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn log_ids_are_what_format_would_print() {
        for (millis, tag, seq) in [
            (0, 0, 0),
            (1_796_404_777_123, 12_345_678, 1),
            (9_999_999_999_999_999, u32::MAX, u64::MAX),
            (10_000_000_000_000_000, 99_999_999, 42),
            (-1, 7, 7),
        ] {
            assert_eq!(log_id(millis, tag, seq), format!("900{millis:016}{tag:08}{seq:020}"), "{millis} {tag} {seq}");
        }
    }

    #[test]
    fn seccft_is_written_exactly_as_the_generic_path_writes_it() {
        let now = UnixTime::from_millis(1_796_404_777_123);
        let plain = RequestInfo { ip: "127.0.0.1".into(), user_agent: "curl/8".into(), hostname: "h".into() };
        let odd = RequestInfo {
            ip: "::1".into(),
            user_agent: "a \"quoted\" \\ agent\n\u{1}é🦀".into(),
            hostname: "ex\u{7f}ample".into(),
        };
        let logs = json!([{"action": "a \"b\"", "lines": ["x", "y\n"]}]);
        for info in [&plain, &odd] {
            for organization in [None, Some(("org_1", "Org \"One\""))] {
                for action_logs in [None, Some(&logs)] {
                    let e = Seccft {
                        client_id: "cid\\",
                        client_name: "Name \u{0}\t中",
                        audience: "https://api.example/",
                        scope: "read:x write:y",
                        jti: "b3J0aG9n",
                        organization,
                        action_logs,
                    };
                    let typed = prepare_seccft(now, info, &e);
                    let columns = ration_store::packed::Columns { log_id: "", date: now };
                    let unpacked = ration_store::packed::unpack(&typed.body, columns);
                    assert_eq!(unpacked, generic(now, info, &e));
                    assert!(typed.body.len() + 270 < unpacked.len(), "the fixed texts and the date are packed");
                    assert_eq!(typed.event_type, "seccft");
                    assert_eq!(typed.client_id.as_deref(), Some("cid\\"));
                    assert_eq!(typed.date, now);
                    let parsed: Value = serde_json::from_str(&unpacked).expect("valid JSON");
                    assert_eq!(parsed["user_agent"], json!(info.user_agent));
                }
            }
        }
    }
}
