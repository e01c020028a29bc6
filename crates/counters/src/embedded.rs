//! Embedded counters: exact and fast in memory, durable through a group-committed journal.
//!
//! Why this shape: a check-and-increment over a request's 1–6 buckets under one mutex is atomic and
//! takes well under a microsecond. Durability comes from group commit ([`ration_groupcommit`]):
//! the latest count of every bucket counted since the previous group is appended in one
//! `write(2)`, by the first request to wait, and every request waiting is released. A request's
//! token is returned only after a group that holds its bucket's count (or a higher one) is
//! written, so after `kill -9` and restart the replayed counts include every token any client
//! received.
//!
//! The token path already waits for one group commit, its `seccft` event's. The event log's writer
//! therefore also writes the lines owed here, at the start of each of its groups
//! ([`EmbeddedCounters::flusher`]), and a consumption's durable future looks first whether that
//! has already covered it: the token then waits for no second group, ticket or wake-up (about
//! 0.9 k instructions per token, a sixth of what quotas cost it). The future falls back to a group
//! of its own, so it is correct whoever else writes or fails to.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, TryLockError};

use async_trait::async_trait;
use ration_domain::quota::{Bucket, QuotaPlan};
use ration_domain::{BucketKey, UnixTime};
use ration_groupcommit::{GroupCommit, Sink};

use crate::journal;
use crate::{Consumption, CounterError, Counters};

pub use ration_domain::Durability;

/// Rewrite the journal once it grows past this, keeping only live buckets.
const COMPACT_AT_BYTES: u64 = 64 * 1024 * 1024;

use journal::{Counts, EntityKey, Owed, OwedLine};

/// The counts and the journal lines they owe, under one lock: a count and its owed line change
/// together, so the writer never takes a list that lacks an increment made before it.
#[derive(Default)]
struct Table {
    counts: Counts,
    owed: Owed,
    /// Grants so far: grant `n` owes its lines from the moment it gets this number.
    grants: u64,
}

pub struct EmbeddedCounters {
    /// std mutex: held for a few hash lookups, never across an `.await`.
    table: Arc<Mutex<Table>>,
    /// Shared by this instance's own group commit and the event log's ([`Self::flusher`]).
    writer: Arc<Mutex<Writer>>,
    /// Every grant up to this number is in the journal.
    durable: Arc<AtomicU64>,
    journal: Arc<GroupCommit<JournalSink>>,
}

impl EmbeddedCounters {
    /// Replays the journal at `path` (dropping buckets expired at `now`), compacts it and starts
    /// appending to it. Needs a tokio runtime.
    pub fn open(path: &Path, durability: Durability, now: UnixTime) -> Result<EmbeddedCounters, CounterError> {
        let io = |e: std::io::Error| CounterError::Unavailable(format!("counter journal {}: {e}", path.display()));
        let counts = journal::replay(path, now).map_err(io)?;
        let file = journal::rewrite(path, &counts, durability == Durability::Fsync).map_err(io)?;
        tracing::info!(n_entities = counts.len(), path = %path.display(), "counters recovered");
        let table = Arc::new(Mutex::new(Table { counts, ..Table::default() }));
        let durable = Arc::new(AtomicU64::new(0));
        let writer = Arc::new(Mutex::new(Writer {
            path: path.to_owned(),
            file,
            durability,
            table: table.clone(),
            durable: durable.clone(),
            written: 0,
            compact_at: COMPACT_AT_BYTES,
            spare: Vec::new(),
            text: String::new(),
        }));
        let journal = GroupCommit::start(JournalSink(writer.clone()));
        Ok(EmbeddedCounters { table, writer, durable, journal })
    }

    /// Writes the lines owed so far, for a group commit that the token path waits for anyway (the
    /// event log's): grants it covers are then durable without a group of their own. Never waits:
    /// when this instance's own group is being written, it returns at once and leaves the rest to
    /// that group. A failure is logged and left to the grants' own groups, which retry it.
    pub fn flusher(&self) -> impl Fn() + Send + Sync + 'static {
        let writer = self.writer.clone();
        move || match writer.try_lock() {
            Ok(mut writer) => {
                let _ = writer.flush();
            }
            Err(TryLockError::WouldBlock) => {}
            // A panic mid-write elsewhere: the grants' own groups report it.
            Err(TryLockError::Poisoned(_)) => {}
        }
    }

    /// Forgets buckets whose window has ended; they can never be counted again.
    pub fn prune(&self, now: UnixTime) {
        let secs = now.secs();
        if let Ok(mut table) = self.table.lock() {
            table.counts.retain(|_, slot| slot.prune(secs));
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Table>, CounterError> {
        // A poisoned lock means a panic mid-update elsewhere; the counts may be half-written, so
        // refuse rather than risk over-issuing.
        self.table.lock().map_err(|_| CounterError::Unavailable("counter state poisoned".into()))
    }
}

#[async_trait]
impl Counters for EmbeddedCounters {
    async fn peek(&self, keys: &[BucketKey]) -> Result<Vec<u64>, CounterError> {
        let table = self.lock()?;
        Ok(keys.iter().map(|k| journal::count(&table.counts, k)).collect())
    }

    /// Without cloning the keys: this runs on every token request with a quota.
    async fn peek_plan(&self, plan: &QuotaPlan) -> Result<Vec<u64>, CounterError> {
        let table = self.lock()?;
        Ok(plan.buckets.iter().map(|b| journal::count(&table.counts, &b.key)).collect())
    }

    async fn consume(&self, plan: &QuotaPlan) -> Result<Consumption, CounterError> {
        let (consumption, durable) = self.consume_deferred(plan).await?;
        durable.await?;
        Ok(consumption)
    }

    async fn consume_deferred(&self, plan: &QuotaPlan) -> Result<(Consumption, crate::Durable), CounterError> {
        if plan.is_empty() {
            return Ok((
                Consumption::Granted { after: Vec::new(), degraded: false },
                Box::pin(std::future::ready(Ok(()))),
            ));
        }
        let (after, grant) = {
            let mut guard = self.lock()?;
            let Table { counts, owed, grants } = &mut *guard;
            // One pass, one lookup per entity (the plan lists an entity's buckets together, and
            // its slot holds them all): each bucket is checked and counted in turn, and a full one
            // undoes those counted before it. Checking them all first cost a second lookup on
            // every grant; the undo costs it only on a rejection.
            let mut after = Vec::with_capacity(plan.buckets.len());
            let same_entity =
                |a: &Bucket, b: &Bucket| a.key.entity == b.key.entity && a.key.entity_id == b.key.entity_id;
            for buckets in plan.buckets.chunk_by(same_entity) {
                let Some(first) = buckets.first() else { continue };
                let entity = EntityKey::of(&first.key);
                let slot = match counts.get_mut(&entity) {
                    Some(slot) => slot,
                    None => counts.entry(entity.clone()).or_default(),
                };
                for bucket in buckets {
                    let mut counter = slot.counter(&entity, &bucket.key);
                    if bucket.is_full(counter.get()) {
                        let exhausted = after.len();
                        undo(counts, owed, &plan.buckets[..exhausted]);
                        let used = plan.buckets.iter().map(|b| journal::count(counts, &b.key)).collect();
                        return Ok((Consumption::Rejected { exhausted, used }, Box::pin(std::future::ready(Ok(())))));
                    }
                    counter.add();
                    after.push(counter.get());
                    owed.note(&mut counter);
                }
            }
            *grants += 1;
            (after, *grants)
        };
        let (journal, written) = (self.journal.clone(), self.durable.clone());
        let durable: crate::Durable = Box::pin(async move {
            // A write that took the owed lines after this grant numbered itself wrote its lines
            // (or higher counts of its buckets): typically the event log's group, awaited first.
            if written.load(Ordering::Acquire) >= grant {
                return Ok(());
            }
            // Queued after the increments and their owed lines: the group that takes this ticket
            // takes the owed lines after it, so it writes them unless an earlier group already did.
            // If the write fails the in-memory increment stays: counting a token that was never
            // issued is safe, issuing one that is not counted is not.
            let ticket = journal.append(());
            journal.wait(ticket).await.map_err(CounterError::Unavailable)
        });
        Ok((Consumption::Granted { after, degraded: false }, durable))
    }

    async fn ping(&self) -> Result<(), CounterError> {
        self.lock().map(|_| ())
    }
}

/// Gives back the counts of `buckets`, taken by a grant that a later bucket refused.
fn undo(counts: &mut Counts, owed: &mut Owed, buckets: &[Bucket]) {
    for bucket in buckets {
        let entity = EntityKey::of(&bucket.key);
        if let Some(slot) = counts.get_mut(&entity) {
            let mut counter = slot.counter(&entity, &bucket.key);
            counter.undo();
            owed.note(&mut counter);
        }
    }
}

struct Writer {
    path: PathBuf,
    file: File,
    durability: Durability,
    table: Arc<Mutex<Table>>,
    /// [`EmbeddedCounters::durable`].
    durable: Arc<AtomicU64>,
    /// Bytes appended since the file was last rewritten.
    written: u64,
    /// [`COMPACT_AT_BYTES`]; lower in tests, which compact without writing 64 MiB.
    compact_at: u64,
    /// Buffers kept between groups, so that a warm writer does not allocate.
    spare: Vec<OwedLine>,
    text: String,
}

/// This instance's own group commit: a ticket only, since what a group writes is whatever the
/// table owes when the group is written.
struct JournalSink(Arc<Mutex<Writer>>);

impl Sink for JournalSink {
    type Item = ();

    fn write(&mut self, _tickets: Vec<()>) -> Result<(), String> {
        match self.0.lock() {
            Ok(mut writer) => writer.flush(),
            Err(_) => Err("counter journal writer poisoned".into()),
        }
    }
}

impl Writer {
    /// Writes every line owed so far; on success, every grant numbered by then is durable.
    fn flush(&mut self) -> Result<(), String> {
        let spare = std::mem::take(&mut self.spare);
        let (mut owed, grants) = match self.table.lock() {
            Ok(mut table) => (table.owed.take(spare), table.grants),
            Err(_) => return Err("counter state poisoned".into()),
        };
        let written = self.write_lines(&owed);
        if written.is_err() {
            // Still owed: the next group must write them before it releases anyone.
            if let Ok(mut table) = self.table.lock() {
                table.owed.restore(owed.drain(..));
            }
        }
        owed.clear();
        self.spare = owed;
        written.map_err(|e| {
            tracing::error!(error = %e, path = %self.path.display(), "counter journal write failed");
            format!("counter journal write failed: {e}")
        })?;
        // Writes are serialized by the writer's lock, so the number only grows.
        self.durable.store(grants, Ordering::Release);
        if self.written >= self.compact_at {
            self.compact();
        }
        Ok(())
    }

    fn write_lines(&mut self, owed: &[OwedLine]) -> std::io::Result<()> {
        if owed.is_empty() {
            // Every ticket of this group was covered by an earlier group's lines.
            return Ok(());
        }
        self.text.clear();
        journal::encode_owed(&mut self.text, owed);
        self.file.write_all(self.text.as_bytes())?;
        if self.durability == Durability::Fsync {
            self.file.sync_data()?;
        }
        self.written += self.text.len() as u64;
        Ok(())
    }

    /// Rewrites the file from a snapshot of the counts. Owed lines written later may repeat
    /// counts the snapshot already holds: replay takes the maximum.
    fn compact(&mut self) {
        let snapshot = match self.table.lock() {
            Ok(table) => table.counts.clone(),
            Err(_) => return,
        };
        match journal::rewrite(&self.path, &snapshot, self.durability == Durability::Fsync) {
            Ok(file) => {
                let replaced = std::mem::replace(&mut self.file, file);
                self.written = 0;
                // Closing the replaced journal frees its 64 MiB of page cache: 5–18 ms on session
                // 19's machine, while every token with a quota waited for this group. Close it on
                // tokio's blocking pool (as the event log deletes its journal segments), or here
                // outside a runtime.
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn_blocking(move || drop(replaced));
                }
            }
            Err(e) => tracing::error!(error = %e, "counter journal compaction failed; continuing to append"),
        }
    }
}

#[cfg(test)]
mod tests {
    use ration_domain::quota::QuotaPlan;
    use ration_domain::{QuotaLimits, TokenQuota};

    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ration-counters-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("counters.journal")
    }

    fn plan(now: UnixTime, hour: u32, enforce: bool) -> QuotaPlan {
        let q =
            TokenQuota { enforce, limits: QuotaLimits { per_minute: None, per_hour: Some(hour), per_day: Some(1000) } };
        QuotaPlan::new(Some(("c1", &q)), None, now)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_consumers_never_exceed_the_limit() {
        let now = UnixTime::from_secs(1_800_000_000);
        let counters = Arc::new(EmbeddedCounters::open(&temp_path("conc"), Durability::Process, now).unwrap());
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let c = counters.clone();
            tasks.push(tokio::spawn(async move {
                let mut granted = 0;
                for _ in 0..4 {
                    if let Consumption::Granted { .. } = c.consume(&plan(now, 37, true)).await.unwrap() {
                        granted += 1;
                    }
                }
                granted
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        assert_eq!(total, 37);
        let p = plan(now, 37, true);
        let keys: Vec<_> = p.buckets.iter().map(|b| b.key.clone()).collect();
        assert_eq!(counters.peek(&keys).await.unwrap(), vec![37, 37], "rejections consume nothing");
    }

    #[tokio::test]
    async fn a_full_bucket_undoes_the_buckets_counted_before_it_even_after_restart() {
        let now = UnixTime::from_secs(1_800_000_000);
        let path = temp_path("undo");
        let client =
            TokenQuota { enforce: true, limits: QuotaLimits { per_minute: None, per_hour: Some(100), per_day: None } };
        let org =
            TokenQuota { enforce: true, limits: QuotaLimits { per_minute: None, per_hour: Some(2), per_day: None } };
        let plan = QuotaPlan::new(Some(("c1", &client)), Some(("o1", &org)), now);
        let keys: Vec<_> = plan.buckets.iter().map(|b| b.key.clone()).collect();
        {
            let counters = EmbeddedCounters::open(&path, Durability::Process, now).unwrap();
            for n in 1..=2u64 {
                assert_eq!(
                    counters.consume(&plan).await.unwrap(),
                    Consumption::Granted { after: vec![n, n], degraded: false }
                );
            }
            for _ in 0..3 {
                assert_eq!(
                    counters.consume(&plan).await.unwrap(),
                    Consumption::Rejected { exhausted: 1, used: vec![2, 2] },
                    "the client bucket, counted first, is given back"
                );
            }
            // A grant of another plan writes a group, which carries the undone count too.
            let other = QuotaPlan::new(Some(("c2", &client)), None, now);
            assert!(matches!(counters.consume(&other).await.unwrap(), Consumption::Granted { .. }));
        }
        let counters = EmbeddedCounters::open(&path, Durability::Process, now).unwrap();
        assert_eq!(counters.peek(&keys).await.unwrap(), vec![2, 2]);
    }

    #[tokio::test]
    async fn a_flush_by_the_event_log_makes_grants_durable_without_a_group_of_their_own() {
        use std::task::{Context, Poll, Waker};

        let now = UnixTime::from_secs(1_800_000_000);
        let path = temp_path("flusher");
        let mut cx = Context::from_waker(Waker::noop());
        {
            let counters = EmbeddedCounters::open(&path, Durability::Process, now).unwrap();
            let flush = counters.flusher();
            let (granted, mut durable) = counters.consume_deferred(&plan(now, 10, true)).await.unwrap();
            assert_eq!(granted, Consumption::Granted { after: vec![1, 1], degraded: false });
            flush();
            assert!(
                matches!(durable.as_mut().poll(&mut cx), Poll::Ready(Ok(()))),
                "written by the flush: durable at once, with no ticket and no wait"
            );
            // Not covered by a flush: it joins a group of its own.
            let (_, mut durable) = counters.consume_deferred(&plan(now, 10, true)).await.unwrap();
            assert!(durable.as_mut().poll(&mut cx).is_pending());
            durable.await.unwrap();
            // A flush with nothing owed writes nothing and keeps what was written.
            flush();
        }
        let counters = EmbeddedCounters::open(&path, Durability::Process, now).unwrap();
        let keys: Vec<_> = plan(now, 10, true).buckets.iter().map(|b| b.key.clone()).collect();
        assert_eq!(counters.peek(&keys).await.unwrap(), vec![2, 2]);
    }

    #[tokio::test]
    async fn compactions_while_running_keep_every_count_across_a_restart() {
        let now = UnixTime::from_secs(1_800_000_000);
        let path = temp_path("compact");
        let p = plan(now, 100, true);
        let other = QuotaPlan::new(
            Some((
                "c2",
                &TokenQuota {
                    enforce: true,
                    limits: QuotaLimits { per_minute: None, per_hour: Some(9), per_day: None },
                },
            )),
            None,
            now,
        );
        {
            let counters = EmbeddedCounters::open(&path, Durability::Process, now).unwrap();
            // Compact after every group that writes a line.
            counters.writer.lock().unwrap().compact_at = 1;
            assert!(matches!(counters.consume(&other).await.unwrap(), Consumption::Granted { .. }));
            for _ in 0..5 {
                assert!(matches!(counters.consume(&p).await.unwrap(), Consumption::Granted { .. }));
            }
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(text.lines().count(), 3, "rewritten to one line per live bucket:\n{text}");
            assert_eq!(counters.writer.lock().unwrap().written, 0);
        }
        let counters = EmbeddedCounters::open(&path, Durability::Process, now).unwrap();
        let keys: Vec<_> = p.buckets.iter().chain(&other.buckets).map(|b| b.key.clone()).collect();
        assert_eq!(counters.peek(&keys).await.unwrap(), vec![5, 5, 1]);
    }

    #[tokio::test]
    async fn unenforced_counts_past_the_limit_and_restart_recovers() {
        let now = UnixTime::from_secs(1_800_000_000);
        let path = temp_path("restart");
        {
            let counters = EmbeddedCounters::open(&path, Durability::Fsync, now).unwrap();
            for n in 1..=5u64 {
                assert_eq!(
                    counters.consume(&plan(now, 3, false)).await.unwrap(),
                    Consumption::Granted { after: vec![n, n], degraded: false }
                );
            }
        }
        let counters = EmbeddedCounters::open(&path, Durability::Process, now).unwrap();
        match counters.consume(&plan(now, 3, true)).await.unwrap() {
            Consumption::Rejected { exhausted: 0, used } => assert_eq!(used, vec![5, 5]),
            other => panic!("expected rejection, got {other:?}"),
        }
        // The next hour starts from zero; the day bucket carries on.
        let later = UnixTime::from_secs(1_800_000_000 + 3600);
        assert_eq!(
            counters.consume(&plan(later, 3, true)).await.unwrap(),
            Consumption::Granted { after: vec![1, 6], degraded: false }
        );
        counters.prune(UnixTime::from_secs(1_800_000_000 + 86_400 * 2));
        assert_eq!(counters.peek(&[plan(later, 3, true).buckets[0].key.clone()]).await.unwrap(), vec![0]);
    }
}
