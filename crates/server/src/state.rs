//! Shared server state: a cheap-clone handle (`AppState`) over everything a request needs.

use std::sync::Arc;

use arc_swap::ArcSwap;
use ration_domain::{Catalog, SigningAlg, UnixTime};
use ration_store::{ConfigStore, StoredKey};

use ration_counters::Counters;

use crate::clock::Clock;
use crate::events::EventLog;
use crate::keys::{KeyError, KeyRing, MasterKey, SigningKey};
use crate::secrets::SecretHasher;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

pub struct Inner {
    pub store: Arc<dyn ConfigStore>,
    /// The configuration the token path reads. Replaced wholesale on every change (readers never
    /// lock; a writer builds the next version while holding `writes`).
    pub catalog: ArcSwap<Catalog>,
    pub keys: ArcSwap<KeyRing>,
    pub master: MasterKey,
    pub secrets: SecretHasher,
    /// Always ends with `/`.
    pub issuer: String,
    /// Longest `exp - now` accepted in a client assertion, in seconds.
    pub assertion_max_lifetime_secs: i64,
    /// Random name of this process among instances sharing a store.
    pub instance_id: String,
    /// `<issuer>api/v2/`: the audience of Management API tokens.
    pub mgmt_audience: String,
    pub clock: Arc<dyn Clock>,
    /// Quota counters (embedded journal, or Redis in distributed mode).
    pub counters: Arc<dyn Counters>,
    pub events: EventLog,
    /// Failed client authentications per client id and address.
    pub bruteforce: crate::bruteforce::Guard,
    pub deliveries: ration_logstream::Deliveries,
    /// The credentials-exchange Actions runtime.
    pub actions: ration_actions::ActionPool,
    /// What runs on the token path: the deployed version of each bound action, in binding order.
    pub bound_actions: ArcSwap<Vec<Arc<ration_actions::ActionCode>>>,
    /// Serializes Management API writes, so that the store and the catalog change in the same
    /// order. A tokio mutex because the store write is awaited while it is held.
    pub writes: tokio::sync::Mutex<()>,
    /// Prometheus metrics (`GET /metrics`); recorded on the request path without awaiting.
    pub metrics: crate::metrics::Metrics,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl AppState {
    pub fn new(inner: Inner) -> AppState {
        AppState { inner: Arc::new(inner) }
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// Applies `change` to a copy of the catalog and publishes it. Call with `writes` held.
    pub fn update_catalog(&self, change: impl FnOnce(&mut Catalog)) {
        let mut next = Catalog::clone(&self.catalog.load());
        change(&mut next);
        self.catalog.store(Arc::new(next));
    }

    /// Makes sure `alg` has a current key and a published next one, generating and storing what is
    /// missing. Called when an API starts using an algorithm, never on the token path.
    pub async fn ensure_signing_key(&self, alg: SigningAlg) -> Result<(), crate::error::ApiError> {
        if alg == SigningAlg::HS256 {
            return Ok(());
        }
        let keys = self.keys.load();
        let (has_current, has_next) = (keys.has_current(alg), keys.has_next(alg));
        if has_current && has_next {
            return Ok(());
        }
        if !has_current {
            self.generate_key(alg, "current").await?;
        }
        if !has_next {
            self.generate_key(alg, "next").await?;
        }
        self.reload_keys().await
    }

    /// Generates, seals and stores a key for `alg` in `state`; returns its kid.
    pub async fn generate_key(&self, alg: SigningAlg, state: &str) -> Result<String, crate::error::ApiError> {
        let now = self.now();
        // RSA key generation takes tens to hundreds of milliseconds: keep it off the executor.
        let (key, pkcs8) = tokio::task::spawn_blocking(move || SigningKey::generate(alg, now))
            .await
            .map_err(|e| crate::error::ApiError::internal(format!("key generation task failed: {e}")))??;
        let stored = StoredKey {
            kid: key.kid.clone(),
            alg,
            sealed_private_key: self.master.seal(&pkcs8, key.kid.as_bytes())?,
            state: state.into(),
            created_at: now,
            state_changed_at: now,
        };
        self.store.insert_signing_key(&stored).await?;
        tracing::info!(kid = %stored.kid, alg = alg.as_str(), state, "generated signing key");
        Ok(stored.kid)
    }

    /// The longest `token_lifetime` of any API: how long a retired key must stay published.
    pub fn max_token_lifetime_secs(&self) -> i64 {
        self.catalog
            .load()
            .resource_servers()
            .map(|rs| i64::from(rs.token_lifetime))
            .max()
            .unwrap_or(86_400)
            .max(86_400)
    }

    pub async fn reload_keys(&self) -> Result<(), crate::error::ApiError> {
        let stored = self.store.list_signing_keys().await?;
        let ring = KeyRing::open(&stored, &self.master, self.now(), self.max_token_lifetime_secs())?;
        self.keys.store(Arc::new(ring));
        Ok(())
    }
}

impl From<KeyError> for crate::error::ApiError {
    fn from(e: KeyError) -> Self {
        crate::error::ApiError::internal(e.to_string())
    }
}
