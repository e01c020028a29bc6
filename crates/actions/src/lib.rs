//! Credentials-exchange Actions: Auth0 Action source code, run unchanged in sandboxed QuickJS.
//!
//! An [`ActionPool`] owns N worker OS threads. Each worker owns one QuickJS runtime and one
//! current-thread tokio runtime (for `fetch`); jobs arrive over one bounded channel shared by all
//! workers and answers go back on a oneshot, so async callers never touch QuickJS and never block
//! their executor.
//!
//! Architecture invariants:
//! - Every execution of an Action gets a fresh QuickJS context: nothing an Action does to its
//!   globals is seen by another Action or by a later execution. The only state shared across
//!   executions is `api.cache`, which lives in Rust, outside every JS runtime.
//! - A runtime that ends an execution in an abnormal state (timeout, out of memory, leftover
//!   promise jobs) is thrown away and rebuilt before the next execution.
//! - Time for the cache comes from [`Job::now_millis`]; the wall clock is read only to enforce
//!   [`Limits::timeout`].
//! - Nothing reaches the host except through the `host` object the prelude closes over: the
//!   sandbox has no filesystem, process, timers or modules.
//!
//! Cost: one trivial Action execution through the pool (channel hop, fresh context ≈ 60 µs,
//! prelude from bytecode ≈ 25 µs, compiling and running the Action) has a median of about
//! 0.14 ms on the reference 2-core machine in a release build (measured under a load average of
//! about 3.8); garbage collection (≈ 30–50 µs) runs after the reply. Compiling Action source
//! costs about 50 ns per byte on every execution, so a 100 kB Action adds about 5 ms.
//! `cargo run --release --example exec_cost -p ration-actions` measures it.

// One `unsafe` call, allowed where it is made: loading the prelude's bytecode (see
// `worker::load_prelude`); rquickjs offers no safe way to load bytecode.
#![deny(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cache;
mod claims;
mod fetch;
mod host;
mod scan;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// Resource limits applied to every Action execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget of one Action execution, including awaited `fetch` calls.
    pub timeout: Duration,
    /// Heap limit of each worker's QuickJS runtime.
    pub memory_bytes: usize,
    /// Native stack QuickJS may use for JS frames.
    pub stack_bytes: usize,
    /// Largest accepted Action source, in bytes (Auth0: 100 kB).
    pub max_code_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(20),
            memory_bytes: 64 * 1024 * 1024,
            stack_bytes: 512 * 1024,
            max_code_bytes: 100 * 1024,
        }
    }
}

/// Hosts the global `fetch` may reach.
///
/// An entry is `host` (the URL's default port only) or `host:port` (exactly that port); IPv6
/// literals are written in brackets (`[::1]:8080`). Matching is case-insensitive. An empty list
/// refuses every host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchPolicy {
    /// Allowed `host` or `host:port` entries.
    pub allow: Vec<String>,
}

/// One deployed Action as the runtime needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionCode {
    /// The Action's id.
    pub id: String,
    /// The Action's name, used in logs and error messages.
    pub name: String,
    /// CommonJS source exporting `onExecuteCredentialsExchange`.
    pub code: Arc<str>,
    /// Secrets, exposed to this Action only as `event.secrets[name]`.
    pub secrets: Vec<(String, String)>,
}

/// One credentials exchange: the bound Actions, in binding order, and the event they see.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Bound Actions in execution order.
    pub actions: Vec<Arc<ActionCode>>,
    /// The `event` object without `secrets` (set per Action from [`ActionCode::secrets`]).
    pub event: serde_json::Value,
    /// The request's time, in milliseconds since the Unix epoch; the cache expires entries by it.
    pub now_millis: i64,
}

/// The OAuth error codes `api.access.deny` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyCode {
    /// `invalid_scope` (HTTP 400).
    InvalidScope,
    /// `invalid_request` (HTTP 400).
    InvalidRequest,
    /// `server_error` (HTTP 500).
    ServerError,
}

impl DenyCode {
    /// The OAuth wire form, e.g. `"invalid_scope"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DenyCode::InvalidScope => "invalid_scope",
            DenyCode::InvalidRequest => "invalid_request",
            DenyCode::ServerError => "server_error",
        }
    }

    pub(crate) fn parse(code: &str) -> Option<DenyCode> {
        match code {
            "invalid_scope" => Some(DenyCode::InvalidScope),
            "invalid_request" => Some(DenyCode::InvalidRequest),
            "server_error" => Some(DenyCode::ServerError),
            _ => None,
        }
    }
}

/// Console output of one Action during one execution (at most 4 KiB, then a truncation note).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionLog {
    /// The Action's name.
    pub action: String,
    /// One entry per `console.*` call: its arguments joined with spaces.
    pub lines: Vec<String>,
}

/// How a [`Job`] ended.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// Every Action completed without denying: issue the token with these claims.
    Allowed {
        /// Custom claims accumulated over all Actions (reserved names already dropped).
        custom_claims: serde_json::Map<String, serde_json::Value>,
        /// Console output, one entry per Action that ran.
        logs: Vec<ActionLog>,
    },
    /// An Action called `api.access.deny`; later Actions did not run.
    Denied {
        /// Name of the denying Action.
        action: String,
        /// The deny code.
        code: DenyCode,
        /// The human-readable reason passed to `deny`.
        reason: String,
        /// Console output, one entry per Action that ran.
        logs: Vec<ActionLog>,
    },
    /// An Action threw, timed out, ran out of memory or misused the API; later Actions did not
    /// run.
    Failed {
        /// Name of the failing Action (empty when no Action could be started).
        action: String,
        /// What went wrong, e.g. `Action 'x' timed out after 20000 ms`.
        error: String,
        /// Console output, one entry per Action that ran.
        logs: Vec<ActionLog>,
    },
}

/// Why [`ActionPool::check`] rejected some code; the message says where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CheckError {
    /// E.g. `line 3: SyntaxError: unexpected token in expression: ';'`.
    pub message: String,
}

/// A message from the pool's callers to its workers.
pub(crate) enum Request {
    Run { job: Job, reply: oneshot::Sender<JobOutcome> },
    Check { code: Arc<str>, reply: oneshot::Sender<Result<(), CheckError>> },
}

/// What a caller reports when no worker answered (the pool is shut down or a worker panicked).
const WORKER_UNAVAILABLE: &str = "action worker unavailable";

/// A pool of JS worker threads that check and run Actions. Cheap to clone.
#[derive(Clone)]
pub struct ActionPool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    requests: mpsc::Sender<Request>,
    limits: Limits,
}

impl std::fmt::Debug for ActionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionPool").field("limits", &self.inner.limits).finish_non_exhaustive()
    }
}

impl ActionPool {
    /// Starts `workers` JS worker threads. They stop when the last clone of the pool is dropped.
    pub fn start(workers: usize, limits: Limits, fetch: FetchPolicy) -> Result<ActionPool, std::io::Error> {
        if workers == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "an action pool needs at least one worker",
            ));
        }
        // Bounded so that a flood of requests waits in the callers (backpressure) instead of
        // queueing without limit.
        let (requests, receiver) = mpsc::channel(workers * 64);
        worker::spawn_workers(workers, &limits, &fetch, receiver)?;
        Ok(ActionPool { inner: Arc::new(PoolInner { requests, limits }) })
    }

    /// Validates Action source at create/deploy time: size, syntax, `require` of modules we do
    /// not provide, and that the top level exports `onExecuteCredentialsExchange` as a function
    /// (the top level is evaluated in a sandbox under a short timeout).
    pub async fn check(&self, code: &str) -> Result<(), CheckError> {
        let limit = self.inner.limits.max_code_bytes;
        if code.len() > limit {
            return Err(CheckError { message: format!("code is {} bytes; the limit is {limit}", code.len()) });
        }
        let (reply, answer) = oneshot::channel();
        let request = Request::Check { code: Arc::from(code), reply };
        if self.inner.requests.send(request).await.is_err() {
            return Err(CheckError { message: WORKER_UNAVAILABLE.to_owned() });
        }
        answer.await.unwrap_or_else(|_| Err(CheckError { message: WORKER_UNAVAILABLE.to_owned() }))
    }

    /// Runs the job's Actions in order on one worker. Never panics; a dead or missing worker is
    /// reported as [`JobOutcome::Failed`].
    pub async fn run(&self, job: Job) -> JobOutcome {
        if job.actions.is_empty() {
            return JobOutcome::Allowed { custom_claims: serde_json::Map::new(), logs: Vec::new() };
        }
        let first = job.actions.first().map(|a| a.name.clone()).unwrap_or_default();
        let unavailable =
            move || JobOutcome::Failed { action: first, error: WORKER_UNAVAILABLE.to_owned(), logs: Vec::new() };
        let (reply, answer) = oneshot::channel();
        if self.inner.requests.send(Request::Run { job, reply }).await.is_err() {
            return unavailable();
        }
        answer.await.unwrap_or_else(|_| unavailable())
    }
}

#[cfg(test)]
mod tests;
