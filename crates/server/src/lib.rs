//! Ration's HTTP edge: `/oauth/token`, the Management API (`/api/v2`), `/.well-known`, health.
//!
//! Architecture invariants:
//! - This is the only crate that turns errors into HTTP responses (`error.rs`).
//! - The token path reads configuration from the in-memory catalog, never from the store.
//! - The clock is read once per request (`clock.rs`).

// One `unsafe` call, allowed where it is made: quota header values taken from a `String`'s bytes
// without `http` checking each byte again (`quota::quota_headers`).
#![deny(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo, clippy::unimplemented)]

pub mod actions;
pub mod body;
pub mod bootstrap;
pub mod bruteforce;
pub mod client_keys;
pub mod clock;
pub mod dashboard;
pub mod error;
pub mod events;
mod files;
pub mod guard;
pub mod keys;
pub mod listener;
pub mod metrics;
pub mod mgmt;
pub mod quota;
pub mod secrets;
pub mod state;
pub mod sync;
pub mod token;
pub mod wellknown;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use ration_counters::{Counters, Durability, EmbeddedCounters, FailurePolicy, RedisCounters};
use ration_domain::SigningAlg;
pub use ration_logstream::DeliverySettings;
use ration_store::{ConfigStore, SqliteStore, StoreError};
use tower_http::catch_panic::CatchPanicLayer;

pub use bootstrap::GeneratedCredentials;
use clock::SystemClock;
use keys::{KeyRing, MasterKey};
use secrets::SecretHasher;
use state::{AppState, Inner};

/// Validated settings the server runs with (the binary builds it from flags, env and file).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The `iss` of every token; must end with `/`.
    pub issuer: String,
    pub data_dir: PathBuf,
    /// 64 hex characters; `None`: a generated key file in the data dir.
    pub master_key_hex: Option<String>,
    /// `RATION_BOOTSTRAP_CLIENT_ID` / `RATION_BOOTSTRAP_CLIENT_SECRET`.
    pub bootstrap_credentials: Option<(String, String)>,
    /// How far acknowledged writes (counted tokens, events, configuration) are guaranteed to
    /// survive: a process crash, or also a power loss.
    pub durability: Durability,
    /// Events older than this many days are deleted.
    pub log_retention_days: u32,
    /// Log-stream delivery tunables.
    pub delivery: DeliverySettings,
    /// Shifts the server's clock (tests only: crossing UTC windows without waiting).
    pub clock_offset_millis: i64,
    /// Limits of one Action execution.
    pub action_limits: ration_actions::Limits,
    /// `host[:port]` entries Actions may `fetch`.
    pub actions_fetch_allow: Vec<String>,
    /// `postgres://…`: configuration and events in PostgreSQL (shared by instances).
    pub database_url: Option<String>,
    /// `redis://…`: quota counters in Redis (shared by instances).
    pub redis_url: Option<String>,
    /// Prefix of every Redis key.
    pub redis_prefix: String,
    /// What to do when Redis is unreachable.
    pub quota_store_failure: FailurePolicy,
    /// Clients with their own `/metrics` series (the rest are summed under `client="other"`);
    /// also the number of quota usage gauges. Default [`metrics::DEFAULT_TOP_CLIENTS`].
    pub metrics_top_clients: usize,
    /// Longest `exp - now` accepted in a `private_key_jwt` assertion (Auth0: 5 minutes; some
    /// client libraries default to an hour).
    pub assertion_max_lifetime_secs: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Io(String),
    #[error("configuration store: {0}")]
    Store(#[from] StoreError),
    #[error("keys: {0}")]
    Keys(#[from] keys::KeyError),
    #[error("random generator failed")]
    Random,
    #[error("{0}")]
    Setup(String),
}

impl From<aws_lc_rs::error::Unspecified> for StartError {
    fn from(_: aws_lc_rs::error::Unspecified) -> StartError {
        StartError::Random
    }
}

/// A built server: its router, and the admin credentials if they were generated on this start.
pub struct Server {
    pub state: AppState,
    pub generated_credentials: Option<GeneratedCredentials>,
    /// Set by [`Server::start_guard`] (`ration guard`): its endpoints join the router.
    pub guard: Option<guard::Guard>,
}

impl Server {
    /// Opens the data dir, migrates, bootstraps and loads everything into memory.
    pub async fn build(config: ServerConfig) -> Result<Server, StartError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StartError::Io(format!("cannot create data dir {}: {e}", config.data_dir.display())))?;
        let master = match &config.master_key_hex {
            Some(hex) => MasterKey::from_hex(hex)?,
            None => MasterKey::load_or_create(&config.data_dir)?,
        };
        // The backends are chosen here, once; nothing else knows which one runs.
        let store: Arc<dyn ConfigStore> = match &config.database_url {
            Some(url) => Arc::new(ration_store::PgStore::connect(url, config.durability).await?),
            None => Arc::new(SqliteStore::open(&config.data_dir.join("ration.db"), config.durability).await?),
        };
        let secrets = SecretHasher::new(master.pepper());
        let clock = Arc::new(SystemClock::default());
        if config.clock_offset_millis != 0 {
            tracing::warn!(offset_ms = config.clock_offset_millis, "clock offset set: for tests only");
            clock.set_offset_millis(config.clock_offset_millis);
        }
        let now = clock::Clock::now(clock.as_ref());
        let mut counter_flush: Option<events::BeforeGroup> = None;
        let counters: Arc<dyn Counters> = match &config.redis_url {
            Some(url) => Arc::new(
                RedisCounters::connect(url, &config.redis_prefix, config.quota_store_failure)
                    .await
                    .map_err(|e| StartError::Setup(e.to_string()))?,
            ),
            None => {
                let embedded = Arc::new(
                    EmbeddedCounters::open(&config.data_dir.join("counters.journal"), config.durability, now)
                        .map_err(|e| StartError::Setup(e.to_string()))?,
                );
                spawn_pruning(embedded.clone(), clock.clone());
                counter_flush = Some(Box::new(embedded.flusher()));
                embedded
            }
        };
        if config.database_url.is_some() && config.redis_url.is_none() {
            tracing::warn!(
                "PostgreSQL without Redis: quota counters are this instance's own; run one instance, or set --redis-url"
            );
        }
        let instance_id = secrets::random_alnum(12)?;
        // The embedded store's events are journaled in the data dir; a shared store's go straight
        // to it (another instance could not replay this one's journal).
        let journal = (!store.is_shared())
            .then(|| events::JournalConfig { dir: config.data_dir.clone(), durability: config.durability });
        let events = events::EventLog::open(store.clone(), journal, counter_flush)
            .await
            .map_err(|e| StartError::Setup(e.to_string()))?;
        let clock_for_streams = clock.clone();
        let deliveries = ration_logstream::Deliveries::start(
            store.clone(),
            events.subscribe(),
            config.delivery.clone(),
            Arc::new(move || clock::Clock::now(clock_for_streams.as_ref())),
            instance_id.clone(),
        )
        .await?;
        spawn_retention(store.clone(), clock.clone(), config.log_retention_days);
        // QuickJS is single-threaded and Actions must never run on the async executor, so they get
        // worker threads. More workers than cores: a runaway Action holds its worker until the
        // timeout, and the others must keep serving meanwhile.
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).saturating_mul(4).max(4);
        let actions = ration_actions::ActionPool::start(
            workers,
            config.action_limits.clone(),
            ration_actions::FetchPolicy { allow: config.actions_fetch_allow.clone() },
        )
        .map_err(|e| StartError::Setup(format!("cannot start the Actions workers: {e}")))?;
        let mgmt_audience = format!("{}api/v2/", config.issuer);

        // Instances starting together on a fresh shared store would each bootstrap and each generate
        // keys; one at a time, the later ones find everything in place.
        let setup_lease = SetupLease::acquire(store.as_ref(), &instance_id, clock.as_ref()).await?;
        let generated = bootstrap::run(
            store.as_ref(),
            &secrets,
            &mgmt_audience,
            config.bootstrap_credentials.clone(),
            &config.data_dir,
            now,
        )
        .await?;

        let catalog = store.load_catalog().await?;
        let max_lifetime =
            catalog.resource_servers().map(|rs| i64::from(rs.token_lifetime)).max().unwrap_or(86_400).max(86_400);
        let keys = KeyRing::open(&store.list_signing_keys().await?, &master, now, max_lifetime)?;
        let state = AppState::new(Inner {
            store,
            catalog: ArcSwap::from_pointee(catalog),
            keys: ArcSwap::from_pointee(keys),
            master,
            secrets,
            issuer: config.issuer.clone(),
            assertion_max_lifetime_secs: config.assertion_max_lifetime_secs,
            instance_id,
            mgmt_audience,
            clock,
            counters,
            events,
            bruteforce: bruteforce::Guard::new(bruteforce::Settings::default()),
            deliveries,
            actions,
            bound_actions: ArcSwap::from_pointee(Vec::new()),
            writes: tokio::sync::Mutex::new(()),
            metrics: metrics::Metrics::new(config.metrics_top_clients),
        });

        // Every algorithm in use needs a current key (the Management API's RS256 on first start).
        let mut algs: Vec<SigningAlg> = state.catalog.load().resource_servers().map(|rs| rs.signing_alg).collect();
        algs.push(SigningAlg::RS256);
        algs.sort();
        algs.dedup();
        for alg in algs {
            state.ensure_signing_key(alg).await.map_err(|e| StartError::Setup(e.message))?;
        }
        setup_lease.release(state.store.as_ref(), state.clock.as_ref()).await;
        actions::reload_bound(&state).await.map_err(|e| StartError::Setup(e.message))?;
        sync::start(state.clone()).await?;
        spawn_key_refresh(state.clone());
        Ok(Server { state, generated_credentials: generated, guard: None })
    }

    pub fn router(&self) -> Router {
        let app = router(self.state.clone());
        match &self.guard {
            Some(guard) => guard::routes(guard.clone()).with_state(self.state.clone()).merge(app),
            None => app,
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/oauth/token", post(token::post_token))
        .route("/.well-known/jwks.json", get(wellknown::jwks))
        .route("/.well-known/openid-configuration", get(wellknown::discovery))
        .route("/.well-known/oauth-authorization-server", get(wellknown::discovery))
        .route("/healthz", get(wellknown::healthz))
        .route("/readyz", get(wellknown::readyz))
        // Unauthenticated, as Prometheus expects: keep it off the public internet (see metrics.rs).
        .route("/metrics", get(metrics::get_metrics))
        .nest("/api/v2", mgmt::router(state.clone()))
        .merge(dashboard::router())
        .fallback(|| async { error::ApiError::not_found("Not Found", "inexistent_path") })
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed", None)
        })
        // A bug must cost one request a 500, never the process.
        .layer(CatchPanicLayer::new())
        .with_state(state)
}

/// Exclusive first-start setup among instances sharing a store.
struct SetupLease {
    holder: String,
}

const SETUP_LEASE: &str = "setup";

impl SetupLease {
    async fn acquire(
        store: &dyn ConfigStore,
        holder: &str,
        clock: &dyn clock::Clock,
    ) -> Result<SetupLease, StartError> {
        let started = std::time::Instant::now();
        loop {
            let now = clock.now();
            // Long enough for an RSA key generation on a slow machine; released as soon as done.
            let until = ration_domain::UnixTime::from_millis(now.millis + 60_000);
            if store.try_lease(SETUP_LEASE, holder, now, until).await? {
                return Ok(SetupLease { holder: holder.to_owned() });
            }
            if started.elapsed() > std::time::Duration::from_secs(120) {
                return Err(StartError::Setup("another instance has held the setup lease for 2 minutes".into()));
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    async fn release(self, store: &dyn ConfigStore, clock: &dyn clock::Clock) {
        let now = clock.now();
        if let Err(e) = store.try_lease(SETUP_LEASE, &self.holder, now, now).await {
            tracing::warn!(error = %e, "cannot release the setup lease; it expires by itself");
        }
    }
}

/// Expired buckets can never count again; drop them once a minute so memory tracks live windows.
fn spawn_pruning(counters: Arc<EmbeddedCounters>, clock: Arc<SystemClock>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            counters.prune(clock::Clock::now(clock.as_ref()));
        }
    });
}

/// Previous signing keys leave the JWKS once every token they signed has expired; reloading the
/// ring hourly applies that without a restart.
fn spawn_key_refresh(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = state.reload_keys().await {
                tracing::error!(error = %e.message, "cannot reload signing keys");
            }
        }
    });
}

/// Deletes events past the retention period: at start, then hourly.
fn spawn_retention(store: Arc<dyn ConfigStore>, clock: Arc<SystemClock>, days: u32) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let now = clock::Clock::now(clock.as_ref());
            let cutoff = ration_domain::UnixTime::from_millis(now.millis - i64::from(days) * 86_400_000);
            match store.prune_events(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(n, days, "pruned events past retention"),
                Err(e) => tracing::error!(error = %e, "event retention pruning failed"),
            }
            if let Err(e) = store.prune_once(now).await {
                tracing::error!(error = %e, "pruning used assertion ids failed");
            }
        }
    });
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish (see `listener`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: listener::Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener::serve(listener, router, tls, limits, shutdown).await
}
