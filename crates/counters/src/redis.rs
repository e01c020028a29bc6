//! Redis counters for several instances: one atomic server-side script checks and consumes every
//! bucket of a request in one round trip.
//!
//! Key naming: `{<prefix>}:q:<entity>:<id>:<window>:<start>`. The braces are a Redis Cluster hash
//! tag, so every key of one call (client and organization buckets alike) lands in one slot, as a
//! script requires. Keys expire a minute after their window ends.
//!
//! Failure policy: when Redis cannot be reached, `Deny` refuses (the token endpoint answers 503),
//! `Allow` issues anyway and counts locally; the local counts are added to Redis as soon as it
//! answers again, so nothing issued is forgotten.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ration_domain::BucketKey;
use ration_domain::quota::QuotaPlan;
use redis::aio::ConnectionManager;

use crate::{Consumption, CounterError, Counters};

/// Check every enforced bucket first; only if all have room, increment every bucket.
/// KEYS: bucket keys. ARGV per key: limit, enforce ('1'/'0'), expire-at (unix seconds).
/// Returns {1, count1, count2, …} (new counts) or {0, index, count1, …} (current counts).
const CONSUME: &str = r"
local n = #KEYS
local counts = {}
for i = 1, n do counts[i] = tonumber(redis.call('GET', KEYS[i]) or '0') end
for i = 1, n do
  local base = (i - 1) * 3
  if ARGV[base + 2] == '1' and counts[i] >= tonumber(ARGV[base + 1]) then
    local out = {0, i}
    for j = 1, n do out[#out + 1] = counts[j] end
    return out
  end
end
local out = {1}
for i = 1, n do
  local v = redis.call('INCR', KEYS[i])
  if v == 1 then redis.call('EXPIREAT', KEYS[i], ARGV[(i - 1) * 3 + 3]) end
  out[#out + 1] = v
end
return out
";

/// Grace after a window ends before its key expires (clock skew between instances and Redis).
const EXPIRY_GRACE_SECS: i64 = 60;
/// A counter call slower than this counts as Redis being unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// What to do when Redis cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Refuse token requests that need a counter (503 + `Retry-After`).
    Deny,
    /// Issue, count locally, reconcile into Redis when it is back.
    Allow,
}

pub struct RedisCounters {
    conn: ConnectionManager,
    script: redis::Script,
    prefix: String,
    policy: FailurePolicy,
    /// Tokens issued while Redis was unreachable (policy `Allow`), not yet added to Redis.
    /// std mutex: never held across an `.await`. Shared with the background reconciler.
    local: Arc<Mutex<HashMap<BucketKey, u64>>>,
    down: Arc<AtomicBool>,
}

/// How often an instance with unreconciled outage counts tries Redis again on its own, so that an
/// instance that gets no traffic after an outage still hands its counts over.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);

impl RedisCounters {
    /// Connects (the connection manager reconnects by itself later). `prefix` separates
    /// installations or test runs sharing one Redis.
    pub async fn connect(url: &str, prefix: &str, policy: FailurePolicy) -> Result<RedisCounters, CounterError> {
        let client =
            redis::Client::open(url).map_err(|e| CounterError::Unavailable(format!("invalid Redis URL: {e}")))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(CALL_TIMEOUT * 2, ConnectionManager::new_with_config(client, config))
            .await
            .map_err(|_| CounterError::Unavailable("Redis did not answer".into()))?
            .map_err(|e| CounterError::Unavailable(format!("cannot connect to Redis: {e}")))?;
        let counters = RedisCounters {
            conn,
            script: redis::Script::new(CONSUME),
            prefix: prefix.to_owned(),
            policy,
            local: Arc::new(Mutex::new(HashMap::new())),
            down: Arc::new(AtomicBool::new(false)),
        };
        if policy == FailurePolicy::Allow {
            let background = RedisCounters {
                conn: counters.conn.clone(),
                script: redis::Script::new(CONSUME),
                prefix: counters.prefix.clone(),
                policy,
                local: counters.local.clone(),
                down: counters.down.clone(),
            };
            let weak = Arc::downgrade(&counters.local);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(RECONCILE_EVERY).await;
                    // Stop when the counters this task serves are gone.
                    if weak.strong_count() <= 1 {
                        return;
                    }
                    let pending = background.local.lock().map(|l| !l.is_empty()).unwrap_or(false);
                    if pending && background.ping().await.is_ok() {
                        background.reconcile().await;
                        if background.local.lock().map(|l| l.is_empty()).unwrap_or(false) {
                            background.down.store(false, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        Ok(counters)
    }

    fn key(&self, key: &BucketKey) -> String {
        format!(
            "{{{}}}:q:{}:{}:{}:{}",
            self.prefix,
            key.entity.name(),
            key.entity_id,
            key.window.name(),
            key.window_start
        )
    }

    /// Whether the last call failed.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    async fn remote_consume(&self, plan: &QuotaPlan) -> Result<Consumption, CounterError> {
        let mut invocation = self.script.prepare_invoke();
        for bucket in &plan.buckets {
            invocation
                .key(self.key(&bucket.key))
                .arg(bucket.limit)
                .arg(if bucket.enforce { "1" } else { "0" })
                .arg(bucket.key.expires_at() + EXPIRY_GRACE_SECS);
        }
        let mut conn = self.conn.clone();
        // One retry on a dropped connection: the manager reconnects lazily, so the first call
        // after an outage fails. If the lost reply hid an executed script, the retry counts the
        // token twice: an over-count, never an over-issue.
        let mut reply: Result<Vec<i64>, CounterError> = Err(CounterError::Unavailable(String::new()));
        for attempt in 0..2 {
            reply = match tokio::time::timeout(CALL_TIMEOUT, invocation.invoke_async(&mut conn)).await {
                Err(_) => Err(CounterError::Unavailable("Redis timed out".into())),
                Ok(Err(e)) if attempt == 0 && (e.is_connection_dropped() || e.is_io_error()) => continue,
                Ok(Err(e)) => Err(CounterError::Unavailable(format!("Redis: {e}"))),
                Ok(Ok(r)) => Ok(r),
            };
            break;
        }
        let reply = reply?;
        let counts = |from: usize| reply.iter().skip(from).map(|&c| u64::try_from(c).unwrap_or(0)).collect::<Vec<_>>();
        match reply.first() {
            Some(1) => Ok(Consumption::Granted { after: counts(1), degraded: false }),
            Some(0) => {
                let index = reply.get(1).copied().unwrap_or(1);
                Ok(Consumption::Rejected { exhausted: usize::try_from(index - 1).unwrap_or(0), used: counts(2) })
            }
            _ => Err(CounterError::Unavailable("unexpected reply from the quota script".into())),
        }
    }

    async fn remote_peek(&self, keys: &[BucketKey]) -> Result<Vec<u64>, CounterError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        let mut conn = self.conn.clone();
        for attempt in 0..2 {
            match tokio::time::timeout(
                CALL_TIMEOUT,
                redis::cmd("MGET").arg(&names).query_async::<Vec<Option<u64>>>(&mut conn),
            )
            .await
            {
                Err(_) => return Err(CounterError::Unavailable("Redis timed out".into())),
                Ok(Err(e)) if attempt == 0 && (e.is_connection_dropped() || e.is_io_error()) => continue,
                Ok(Err(e)) => return Err(CounterError::Unavailable(format!("Redis: {e}"))),
                Ok(Ok(values)) => return Ok(values.into_iter().map(Option::unwrap_or_default).collect()),
            }
        }
        Err(CounterError::Unavailable("Redis connection lost".into()))
    }

    /// Adds the tokens counted locally during an outage to Redis. On failure they stay local.
    async fn reconcile(&self) {
        let pending: Vec<(BucketKey, u64)> = match self.local.lock() {
            Ok(mut local) => local.drain().collect(),
            Err(_) => return,
        };
        if pending.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (key, n) in &pending {
            let name = self.key(key);
            pipe.cmd("INCRBY").arg(&name).arg(*n).ignore();
            pipe.cmd("EXPIREAT").arg(&name).arg(key.expires_at() + EXPIRY_GRACE_SECS).ignore();
        }
        let mut conn = self.conn.clone();
        let done: Result<Result<(), redis::RedisError>, _> =
            tokio::time::timeout(CALL_TIMEOUT, pipe.query_async(&mut conn)).await;
        match done {
            Ok(Ok(())) => tracing::info!(n_buckets = pending.len(), "reconciled locally counted tokens into Redis"),
            _ => {
                tracing::warn!("cannot reconcile local counts yet; will retry");
                if let Ok(mut local) = self.local.lock() {
                    for (key, n) in pending {
                        *local.entry(key).or_insert(0) += n;
                    }
                }
                self.down.store(true, Ordering::Relaxed);
            }
        }
    }

    /// The `Allow` policy: enforce against what this instance counted during the outage.
    fn consume_locally(&self, plan: &QuotaPlan) -> Result<Consumption, CounterError> {
        let mut local = self.local.lock().map_err(|_| CounterError::Unavailable("local counts poisoned".into()))?;
        let used: Vec<u64> = plan.buckets.iter().map(|b| local.get(&b.key).copied().unwrap_or(0)).collect();
        if let Some(exhausted) = plan.first_exhausted(&used) {
            return Ok(Consumption::Rejected { exhausted, used });
        }
        let after = plan
            .buckets
            .iter()
            .map(|b| {
                let slot = local.entry(b.key.clone()).or_insert(0);
                *slot += 1;
                *slot
            })
            .collect();
        Ok(Consumption::Granted { after, degraded: true })
    }

    fn went_down(&self, error: &CounterError) {
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::error!(%error, policy = ?self.policy, "Redis unreachable");
        }
    }
}

#[async_trait]
impl Counters for RedisCounters {
    async fn peek(&self, keys: &[BucketKey]) -> Result<Vec<u64>, CounterError> {
        match self.remote_peek(keys).await {
            Ok(remote) => {
                // Include what this instance counted during an outage and has not reconciled yet.
                let local = self.local.lock().map_err(|_| CounterError::Unavailable("local counts poisoned".into()))?;
                Ok(keys.iter().zip(remote).map(|(k, n)| n + local.get(k).copied().unwrap_or(0)).collect())
            }
            Err(e) => {
                self.went_down(&e);
                match self.policy {
                    FailurePolicy::Deny => Err(e),
                    FailurePolicy::Allow => {
                        let local =
                            self.local.lock().map_err(|_| CounterError::Unavailable("local counts poisoned".into()))?;
                        Ok(keys.iter().map(|k| local.get(k).copied().unwrap_or(0)).collect())
                    }
                }
            }
        }
    }

    async fn consume(&self, plan: &QuotaPlan) -> Result<Consumption, CounterError> {
        if plan.is_empty() {
            return Ok(Consumption::Granted { after: Vec::new(), degraded: false });
        }
        if self.is_down() || self.local.lock().map(|l| !l.is_empty()).unwrap_or(false) {
            // Fold outage counts back in before counting anew, so Redis sees them first.
            self.reconcile().await;
        }
        match self.remote_consume(plan).await {
            Ok(consumption) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!("Redis reachable again");
                }
                Ok(consumption)
            }
            Err(e) => {
                self.went_down(&e);
                match self.policy {
                    FailurePolicy::Deny => Err(e),
                    FailurePolicy::Allow => self.consume_locally(plan),
                }
            }
        }
    }

    async fn ping(&self) -> Result<(), CounterError> {
        let mut conn = self.conn.clone();
        for attempt in 0..2 {
            match tokio::time::timeout(CALL_TIMEOUT, redis::cmd("PING").query_async::<String>(&mut conn)).await {
                Err(_) => return Err(CounterError::Unavailable("Redis timed out".into())),
                Ok(Err(e)) if attempt == 0 && (e.is_connection_dropped() || e.is_io_error()) => continue,
                Ok(Err(e)) => return Err(CounterError::Unavailable(format!("Redis: {e}"))),
                Ok(Ok(_)) => return Ok(()),
            }
        }
        Err(CounterError::Unavailable("Redis connection lost".into()))
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;

    use ration_domain::{QuotaLimits, TokenQuota, UnixTime};

    use super::*;

    const SHARED_REDIS: &str = "redis://127.0.0.1:6379/";

    fn prefix(name: &str) -> String {
        format!("ration-test-{}-{name}-{}", std::process::id(), UnixTime::from_secs(0).millis)
    }

    fn plan(now: UnixTime, client: &str, per_hour: u32, org: Option<(&str, u32)>) -> QuotaPlan {
        let q = TokenQuota {
            enforce: true,
            limits: QuotaLimits { per_minute: None, per_hour: Some(per_hour), per_day: None },
        };
        let oq = org.map(|(_, h)| TokenQuota {
            enforce: true,
            limits: QuotaLimits { per_minute: None, per_hour: Some(h), per_day: None },
        });
        QuotaPlan::new(Some((client, &q)), org.zip(oq.as_ref()).map(|((id, _), q)| (id, q)), now)
    }

    async fn shared(name: &str) -> RedisCounters {
        RedisCounters::connect(SHARED_REDIS, &prefix(name), FailurePolicy::Deny).await.unwrap_or_else(|e| {
            panic!("the shared Redis at 127.0.0.1:6379 is needed ({e}); start it with: redis-server --daemonize yes --port 6379 --save '' --appendonly no")
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_connections_never_exceed_the_limit_and_org_is_shared() {
        let now = UnixTime::from_secs(1_800_000_000);
        let p = prefix("conc");
        // Two managers: two "instances" sharing one Redis.
        let a = Arc::new(RedisCounters::connect(SHARED_REDIS, &p, FailurePolicy::Deny).await.unwrap());
        let b = Arc::new(RedisCounters::connect(SHARED_REDIS, &p, FailurePolicy::Deny).await.unwrap());
        let mut tasks = Vec::new();
        for i in 0..40 {
            let c = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                let mut granted = 0;
                for _ in 0..5 {
                    // Two clients, one organization quota of 37 between them.
                    let client = if granted % 2 == 0 { "c1" } else { "c2" };
                    if let Consumption::Granted { .. } =
                        c.consume(&plan(now, client, 1000, Some(("o1", 37)))).await.unwrap()
                    {
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
        let keys: Vec<_> = plan(now, "c1", 1000, Some(("o1", 37))).buckets.iter().map(|b| b.key.clone()).collect();
        assert_eq!(a.peek(&keys).await.unwrap()[1], 37);
    }

    #[tokio::test]
    async fn rejection_reports_counts_and_keys_expire_after_their_window() {
        let c = shared("expire").await;
        let now = UnixTime::from_secs(1_800_000_000);
        for n in 1..=2u64 {
            assert_eq!(
                c.consume(&plan(now, "c", 2, None)).await.unwrap(),
                Consumption::Granted { after: vec![n], degraded: false }
            );
        }
        assert_eq!(
            c.consume(&plan(now, "c", 2, None)).await.unwrap(),
            Consumption::Rejected { exhausted: 0, used: vec![2] }
        );
        let key = c.key(&plan(now, "c", 2, None).buckets[0].key);
        let mut conn = c.conn.clone();
        let expire_at: i64 = redis::cmd("EXPIRETIME").arg(&key).query_async(&mut conn).await.unwrap();
        assert_eq!(expire_at, Window::Hour.reset_at(now) + EXPIRY_GRACE_SECS);
        let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await.unwrap();
    }

    use ration_domain::Window;

    /// A private redis-server on a free port, so the test can kill it (never the shared one).
    struct OwnRedis {
        port: u16,
        child: Option<Child>,
    }

    impl OwnRedis {
        fn start(port: u16) -> OwnRedis {
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("redis-server must be installed for this test: {e}"));
            let started = std::time::Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(started.elapsed() < std::time::Duration::from_secs(10), "redis-server did not start");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            OwnRedis { port, child: Some(child) }
        }

        fn kill(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    impl Drop for OwnRedis {
        fn drop(&mut self) {
            self.kill();
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap()
    }

    #[tokio::test]
    async fn outage_deny_refuses_allow_counts_locally_and_reconciles() {
        let port = free_port();
        let mut redis = OwnRedis::start(port);
        let url = format!("redis://127.0.0.1:{}/", redis.port);
        let now = UnixTime::from_secs(1_800_000_000);
        let deny = RedisCounters::connect(&url, "t", FailurePolicy::Deny).await.unwrap();
        let allow = RedisCounters::connect(&url, "t", FailurePolicy::Allow).await.unwrap();
        assert!(matches!(
            allow.consume(&plan(now, "c", 5, None)).await.unwrap(),
            Consumption::Granted { degraded: false, .. }
        ));

        redis.kill();
        assert!(deny.consume(&plan(now, "c", 5, None)).await.is_err(), "deny refuses while Redis is down");
        assert!(deny.ping().await.is_err());
        for expected in 1..=2u64 {
            assert_eq!(
                allow.consume(&plan(now, "c", 5, None)).await.unwrap(),
                Consumption::Granted { after: vec![expected], degraded: true },
                "allow counts locally"
            );
        }

        let _redis = OwnRedis::start(port);
        // Back: the two local tokens are added before counting anew (1 + 2 + 1 = 4).
        let mut answer = allow.consume(&plan(now, "c", 5, None)).await;
        let started = std::time::Instant::now();
        while answer.is_err() || matches!(answer, Ok(Consumption::Granted { degraded: true, .. })) {
            assert!(started.elapsed() < std::time::Duration::from_secs(10), "no recovery: {answer:?}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            answer = allow.consume(&plan(now, "c", 5, None)).await;
        }
        // The restarted server kept nothing (no persistence): only what Ration reconciled counts.
        // Degraded retries during recovery also counted locally, so the final count is at least 3.
        let keys = vec![plan(now, "c", 5, None).buckets[0].key.clone()];
        let n = allow.peek(&keys).await.unwrap()[0];
        assert!((3..=5).contains(&n), "reconciled count {n}");
        assert!(deny.ping().await.is_ok(), "the deny instance reconnects by itself");
        // No over-issue after recovery: the limit of 5 holds across both instances.
        let mut granted = n;
        for _ in 0..10 {
            if let Ok(Consumption::Granted { .. }) = deny.consume(&plan(now, "c", 5, None)).await {
                granted += 1;
            }
        }
        assert_eq!(granted, 5);
    }
}

#[cfg(test)]
mod idle_tests {
    use std::process::{Command, Stdio};

    use ration_domain::{QuotaLimits, TokenQuota, UnixTime};

    use super::*;

    #[tokio::test]
    async fn an_idle_instance_hands_over_its_outage_counts_by_itself() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap();
        let start = || {
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let t = std::time::Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(t.elapsed() < std::time::Duration::from_secs(10));
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            child
        };
        let mut redis = start();
        let url = format!("redis://127.0.0.1:{port}/");
        let now = UnixTime::from_secs(1_800_000_000);
        let q =
            TokenQuota { enforce: true, limits: QuotaLimits { per_minute: None, per_hour: Some(100), per_day: None } };
        let plan = QuotaPlan::new(Some(("idle", &q)), None, now);
        let counters = RedisCounters::connect(&url, "idle", FailurePolicy::Allow).await.unwrap();
        let _ = redis.kill();
        let _ = redis.wait();
        for _ in 0..3 {
            assert!(matches!(counters.consume(&plan).await.unwrap(), Consumption::Granted { degraded: true, .. }));
        }
        let mut redis = start();
        // No further calls on `counters`: the background task must reconcile by itself.
        let observer = RedisCounters::connect(&url, "idle", FailurePolicy::Deny).await.unwrap();
        let key = vec![plan.buckets[0].key.clone()];
        let t = std::time::Instant::now();
        loop {
            if observer.peek(&key).await.unwrap_or_default().first() == Some(&3) {
                break;
            }
            assert!(t.elapsed() < std::time::Duration::from_secs(10), "outage counts never reached Redis");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let _ = redis.kill();
        let _ = redis.wait();
    }
}
