//! Embedded counters: exact and fast in memory, durable through a group-committed journal.
//!
//! Why this shape: a check-and-increment over a request's 1–6 buckets under one mutex is atomic and
//! takes well under a microsecond. Durability comes from group commit ([`ration_groupcommit`]):
//! the new counts of every request waiting at that moment are appended in one `write(2)`, by the
//! first of them to wait, and all of them are released. A request's token is returned only after
//! its line is written, so after `kill -9` and restart the replayed counts include every token any
//! client received.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ration_domain::quota::QuotaPlan;
use ration_domain::{BucketKey, UnixTime};
use ration_groupcommit::{GroupCommit, Sink};

use crate::journal;
use crate::{Consumption, CounterError, Counters};

pub use ration_domain::Durability;

/// Rewrite the journal once it grows past this, keeping only live buckets.
const COMPACT_AT_BYTES: u64 = 64 * 1024 * 1024;

use journal::{Counts, Slot};

pub struct EmbeddedCounters {
    /// std mutex: held for a few hash lookups, never across an `.await`.
    counts: Arc<Mutex<Counts>>,
    journal: Arc<GroupCommit<Writer>>,
}

impl EmbeddedCounters {
    /// Replays the journal at `path` (dropping buckets expired at `now`), compacts it and starts
    /// appending to it. Needs a tokio runtime.
    pub fn open(path: &Path, durability: Durability, now: UnixTime) -> Result<EmbeddedCounters, CounterError> {
        let io = |e: std::io::Error| CounterError::Unavailable(format!("counter journal {}: {e}", path.display()));
        let counts = journal::replay(path, now).map_err(io)?;
        let file = journal::rewrite(path, &counts, durability == Durability::Fsync).map_err(io)?;
        tracing::info!(n_buckets = counts.len(), path = %path.display(), "counters recovered");
        let counts = Arc::new(Mutex::new(counts));
        let writer = Writer { path: path.to_owned(), file, durability, counts: counts.clone(), written: 0 };
        Ok(EmbeddedCounters { counts, journal: GroupCommit::start(writer) })
    }

    /// Forgets buckets whose window has ended; they can never be counted again.
    pub fn prune(&self, now: UnixTime) {
        let secs = now.secs();
        if let Ok(mut counts) = self.counts.lock() {
            counts.retain(|key, _| key.expires_at() > secs);
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Counts>, CounterError> {
        // A poisoned lock means a panic mid-update elsewhere; the counts may be half-written, so
        // refuse rather than risk over-issuing.
        self.counts.lock().map_err(|_| CounterError::Unavailable("counter state poisoned".into()))
    }
}

#[async_trait]
impl Counters for EmbeddedCounters {
    async fn peek(&self, keys: &[BucketKey]) -> Result<Vec<u64>, CounterError> {
        let counts = self.lock()?;
        Ok(keys.iter().map(|k| counts.get(k).map_or(0, |s| s.count)).collect())
    }

    /// Without cloning the keys: this runs on every token request with a quota.
    async fn peek_plan(&self, plan: &QuotaPlan) -> Result<Vec<u64>, CounterError> {
        let counts = self.lock()?;
        Ok(plan.buckets.iter().map(|b| counts.get(&b.key).map_or(0, |s| s.count)).collect())
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
        let (after, ticket) = {
            let mut counts = self.lock()?;
            let count = |b: &ration_domain::quota::Bucket| counts.get(&b.key).map_or(0, |s| s.count);
            // The counts are collected only for a rejection: a grant needs none but the new ones.
            if let Some(exhausted) = plan.buckets.iter().position(|b| b.is_full(count(b))) {
                let used: Vec<u64> = plan.buckets.iter().map(count).collect();
                return Ok((Consumption::Rejected { exhausted, used }, Box::pin(std::future::ready(Ok(())))));
            }
            let mut lines = String::with_capacity(64 * plan.buckets.len());
            let mut after = Vec::with_capacity(plan.buckets.len());
            for bucket in &plan.buckets {
                let slot = match counts.get_mut(&bucket.key) {
                    Some(slot) => slot,
                    None => counts.entry(bucket.key.clone()).or_insert_with_key(|key| Slot::new(key, 0)),
                };
                slot.count += 1;
                after.push(slot.count);
                slot.encode(&mut lines);
            }
            // Queued while the lock is held, so that a line never reaches the file after a
            // compaction snapshot that lacks its increment.
            (after, self.journal.append(lines))
        };
        // If the write fails the in-memory increment stays: counting a token that was never
        // issued is safe, issuing one that is not counted is not.
        let journal = self.journal.clone();
        let durable: crate::Durable =
            Box::pin(async move { journal.wait(ticket).await.map_err(CounterError::Unavailable) });
        Ok((Consumption::Granted { after, degraded: false }, durable))
    }

    async fn ping(&self) -> Result<(), CounterError> {
        self.lock().map(|_| ())
    }
}

struct Writer {
    path: PathBuf,
    file: File,
    durability: Durability,
    counts: Arc<Mutex<Counts>>,
    written: u64,
}

impl Sink for Writer {
    type Item = String;

    fn write(&mut self, lines: Vec<String>) -> Result<(), String> {
        self.write_lines(&lines).map_err(|e| {
            tracing::error!(error = %e, path = %self.path.display(), "counter journal write failed");
            format!("counter journal write failed: {e}")
        })?;
        if self.written >= COMPACT_AT_BYTES {
            self.compact();
        }
        Ok(())
    }
}

impl Writer {
    fn write_lines(&mut self, lines: &[String]) -> std::io::Result<()> {
        let len: usize = lines.iter().map(String::len).sum();
        let mut buf = Vec::with_capacity(len);
        for line in lines {
            buf.extend_from_slice(line.as_bytes());
        }
        self.file.write_all(&buf)?;
        if self.durability == Durability::Fsync {
            self.file.sync_data()?;
        }
        self.written += len as u64;
        Ok(())
    }

    /// Rewrites the file from a snapshot of the counts. Lines still queued (appended after their
    /// increment) may follow with counts the snapshot already holds: replay takes the maximum.
    fn compact(&mut self) {
        let snapshot = match self.counts.lock() {
            Ok(counts) => counts.clone(),
            Err(_) => return,
        };
        match journal::rewrite(&self.path, &snapshot, self.durability == Durability::Fsync) {
            Ok(file) => {
                self.file = file;
                self.written = 0;
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
