//! Quota counters: how many tokens each bucket has counted, checked and consumed atomically.
//!
//! One trait, [`Counters`], with an embedded implementation ([`EmbeddedCounters`]: in memory,
//! journaled to disk with group commit) and, in distributed mode, a Redis one.
//!
//! Architecture invariants:
//! - `consume` is all or nothing over every bucket of a request: either every bucket is
//!   incremented, or none is.
//! - `consume` resolves `Granted` only once the increment is durable, so a token that reached a
//!   client is always counted after a crash and restart.
//! - Counters never read the clock: callers pass `now` (for pruning) and bucket keys carry their
//!   window.

mod embedded;
mod journal;
mod redis;

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use ration_domain::BucketKey;
use ration_domain::quota::QuotaPlan;

pub use embedded::{Durability, EmbeddedCounters};

pub use redis::{FailurePolicy, RedisCounters};

#[derive(Debug, thiserror::Error)]
pub enum CounterError {
    /// The counter store cannot be reached or written; the quota failure policy applies.
    #[error("counter store unavailable: {0}")]
    Unavailable(String),
}

/// Outcome of [`Counters::consume`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Consumption {
    /// Every bucket was incremented; counts after the increment, in the plan's order.
    /// `degraded`: the shared counter store was unreachable and the count is this instance's
    /// alone (failure policy `allow`).
    Granted { after: Vec<u64>, degraded: bool },
    /// Nothing was incremented: bucket `exhausted` (an enforced one) is full. `used` are the
    /// current counts, in the plan's order.
    Rejected { exhausted: usize, used: Vec<u64> },
}

/// Resolves when a consumption is durable (see [`Counters::consume_deferred`]).
pub type Durable = Pin<Box<dyn Future<Output = Result<(), CounterError>> + Send>>;

#[async_trait]
pub trait Counters: Send + Sync + 'static {
    /// Current counts (0 for a bucket never counted), in the order given.
    async fn peek(&self, keys: &[BucketKey]) -> Result<Vec<u64>, CounterError>;

    /// Current counts of every bucket of `plan`, in its order (the token path's pre-check).
    async fn peek_plan(&self, plan: &QuotaPlan) -> Result<Vec<u64>, CounterError> {
        let keys: Vec<BucketKey> = plan.buckets.iter().map(|b| b.key.clone()).collect();
        self.peek(&keys).await
    }

    /// Atomically: if no enforced bucket of `plan` is exhausted, increment every bucket (enforced
    /// or not) by one and return the new counts; else change nothing.
    async fn consume(&self, plan: &QuotaPlan) -> Result<Consumption, CounterError>;

    /// Like [`Counters::consume`], but answers as soon as the counts are decided (other requests
    /// already see them) and hands back a future that resolves once they are durable, so the
    /// caller can wait for it together with its other durable writes. The caller must not let a
    /// token out before that future resolved `Ok`.
    async fn consume_deferred(&self, plan: &QuotaPlan) -> Result<(Consumption, Durable), CounterError> {
        let consumption = self.consume(plan).await?;
        Ok((consumption, Box::pin(std::future::ready(Ok(())))))
    }

    /// Whether the counter store answers (readiness).
    async fn ping(&self) -> Result<(), CounterError>;
}
