//! `ration serve` settings: flag > environment > TOML file > default (DESIGN.md §1).
//!
//! The file format (`FileConfig`) is `Deserialize` with unknown keys rejected; it is turned into
//! the server's validated `ServerConfig`, which is not.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// Flags of `ration serve`; each also reads its `RATION_*` variable (clap handles flag > env).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Address to bind; port 0 picks a free port (the chosen address is printed).
    #[arg(long, env = "RATION_LISTEN")]
    pub listen: Option<String>,
    /// The `iss` of every token (a trailing `/` is added if missing). Default: http://<listen>/
    #[arg(long, env = "RATION_ISSUER")]
    pub issuer: Option<String>,
    /// Directory of the embedded store and key material.
    #[arg(long, env = "RATION_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML configuration file.
    #[arg(long, env = "RATION_CONFIG")]
    pub config: Option<PathBuf>,
    /// Durability of acknowledged writes (counted tokens, events, configuration): `process`
    /// (survives kill -9; default) or `fsync` (also power loss, at the cost of a disk flush per
    /// group commit).
    #[arg(long, env = "RATION_DURABILITY")]
    pub durability: Option<String>,
    /// Days events are kept in the event log.
    #[arg(long, env = "RATION_LOG_RETENTION_DAYS")]
    pub log_retention_days: Option<u32>,
    /// Longest wait between log-stream delivery retries, in milliseconds.
    #[arg(long, env = "RATION_LOG_STREAM_RETRY_MAX_MS")]
    pub log_stream_retry_max_ms: Option<u64>,
    /// Continuous delivery failure for this many seconds suspends a log stream.
    #[arg(long, env = "RATION_LOG_STREAM_SUSPEND_AFTER_SECS")]
    pub log_stream_suspend_after_secs: Option<u64>,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, env = "RATION_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "RATION_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Longest lifetime (exp - now, seconds) accepted in a private_key_jwt assertion (default 300).
    #[arg(long, env = "RATION_CLIENT_ASSERTION_MAX_LIFETIME_SECS")]
    pub client_assertion_max_lifetime_secs: Option<i64>,
    /// Most connections served at once (default 10000).
    #[arg(long, env = "RATION_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Time a client has to send its request headers (and finish a TLS handshake), in
    /// milliseconds (default 10000).
    #[arg(long, env = "RATION_HEADER_READ_TIMEOUT_MS")]
    pub header_read_timeout_ms: Option<u64>,
    /// `postgres://…`: configuration and events in PostgreSQL instead of the embedded store.
    #[arg(long, env = "RATION_DATABASE_URL")]
    pub database_url: Option<String>,
    /// `redis://…`: quota counters in Redis (needed when several instances share a database).
    #[arg(long, env = "RATION_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key (separates installations sharing one Redis).
    #[arg(long, env = "RATION_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// When Redis is unreachable: `deny` (503 + Retry-After; default) or `allow` (issue, count
    /// locally, reconcile later).
    #[arg(long, env = "RATION_QUOTA_STORE_FAILURE")]
    pub quota_store_failure: Option<String>,
    /// Wall-clock limit of one Action execution, in milliseconds.
    #[arg(long, env = "RATION_ACTIONS_TIMEOUT_MS")]
    pub actions_timeout_ms: Option<u64>,
    /// Comma-separated `host[:port]` list that Actions may `fetch`.
    #[arg(long, env = "RATION_ACTIONS_FETCH_ALLOW")]
    pub actions_fetch_allow: Option<String>,
}

/// The TOML file. Every key is optional; unknown keys are an error that names the key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address to bind, e.g. `"127.0.0.1:8080"`.
    pub listen: Option<String>,
    /// Token issuer URL.
    pub issuer: Option<String>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// `"process"` (default: acknowledged writes survive `kill -9`) or `"fsync"` (also power loss).
    pub durability: Option<String>,
    /// Days events are kept (default 30).
    pub log_retention_days: Option<u32>,
    /// `[log_streams]` delivery settings.
    pub log_streams: Option<LogStreamsFile>,
    /// `[actions]` settings.
    pub actions: Option<ActionsFile>,
    /// PEM certificate chain (HTTPS).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// Most connections served at once.
    pub max_connections: Option<usize>,
    /// Longest accepted client-assertion lifetime in seconds.
    pub client_assertion_max_lifetime_secs: Option<i64>,
    /// Header read timeout in milliseconds.
    pub header_read_timeout_ms: Option<u64>,
    /// PostgreSQL URL.
    pub database_url: Option<String>,
    /// Redis URL.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key (default `ration`).
    pub redis_prefix: Option<String>,
    /// `"deny"` or `"allow"`.
    pub quota_store_failure: Option<String>,
    /// `[guard]`: settings of `ration guard` (`serve` ignores them).
    pub guard: Option<GuardFile>,
}

/// `[actions]` in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionsFile {
    /// Wall-clock limit of one execution, in milliseconds (default 20000, like Auth0).
    pub timeout_ms: Option<u64>,
    /// `host[:port]` entries Actions may `fetch` (default: none).
    pub fetch_allow: Option<Vec<String>>,
}

/// `[log_streams]` in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogStreamsFile {
    /// Longest wait between delivery retries, in milliseconds (default 30000).
    pub retry_max_ms: Option<u64>,
    /// Continuous failure for this many seconds suspends a stream (default 604800, 7 days).
    pub suspend_after_secs: Option<u64>,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("config file {}: {}", path.display(), e.message()))
    }
}

/// Settings after merging, before binding.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// `None`: derived from the bound address.
    pub issuer: Option<String>,
    pub data_dir: PathBuf,
    pub durability: ration_domain::Durability,
    pub log_retention_days: u32,
    pub delivery: ration_server::DeliverySettings,
    pub action_limits: ration_actions::Limits,
    pub actions_fetch_allow: Vec<String>,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    /// Both or neither.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub assertion_max_lifetime_secs: i64,
    pub listener_limits: ration_server::listener::Limits,
    pub quota_store_failure: ration_counters::FailurePolicy,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

impl Settings {
    pub fn resolve(args: &ServeArgs) -> anyhow::Result<Settings> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let listen_text = args.listen.clone().or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = parse_listen(&listen_text)?;
        let issuer = args.issuer.clone().or(file.issuer).map(|i| normalize_issuer(&i)).transpose()?;
        let data_dir = args.data_dir.clone().or(file.data_dir).unwrap_or_else(|| PathBuf::from("./ration-data"));
        let durability = match args.durability.clone().or(file.durability).as_deref() {
            None | Some("process") => ration_domain::Durability::Process,
            Some("fsync") => ration_domain::Durability::Fsync,
            Some(other) => bail!("invalid durability {other:?}: expected \"process\" or \"fsync\""),
        };
        let log_retention_days = args.log_retention_days.or(file.log_retention_days).unwrap_or(30);
        if log_retention_days == 0 {
            bail!("log_retention_days must be at least 1");
        }
        let streams = file.log_streams.unwrap_or_default();
        let mut delivery = ration_server::DeliverySettings::default();
        if let Some(ms) = args.log_stream_retry_max_ms.or(streams.retry_max_ms) {
            delivery.retry_max = std::time::Duration::from_millis(ms.max(10));
            delivery.retry_base = delivery.retry_base.min(delivery.retry_max);
        }
        if let Some(secs) = args.log_stream_suspend_after_secs.or(streams.suspend_after_secs) {
            delivery.suspend_after = std::time::Duration::from_secs(secs);
        }
        let actions = file.actions.unwrap_or_default();
        let mut action_limits = ration_actions::Limits::default();
        if let Some(ms) = args.actions_timeout_ms.or(actions.timeout_ms) {
            if ms == 0 {
                bail!("actions timeout_ms must be at least 1");
            }
            action_limits.timeout = std::time::Duration::from_millis(ms);
        }
        let actions_fetch_allow = match &args.actions_fetch_allow {
            Some(list) => list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            None => actions.fetch_allow.unwrap_or_default(),
        };
        let database_url = args.database_url.clone().or(file.database_url).filter(|u| !u.is_empty());
        if let Some(url) = &database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            bail!("invalid database_url: expected postgres://… or postgresql://…");
        }
        let redis_url = args.redis_url.clone().or(file.redis_url).filter(|u| !u.is_empty());
        if let Some(url) = &redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            bail!("invalid redis_url: expected redis://… or rediss://…");
        }
        let tls = match (args.tls_cert.clone().or(file.tls_cert), args.tls_key.clone().or(file.tls_key)) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => bail!("set both tls_cert and tls_key (or neither)"),
        };
        let mut listener_limits = ration_server::listener::Limits::default();
        if let Some(n) = args.max_connections.or(file.max_connections) {
            if n == 0 {
                bail!("max_connections must be at least 1");
            }
            listener_limits.max_connections = n;
        }
        if let Some(ms) = args.header_read_timeout_ms.or(file.header_read_timeout_ms) {
            if ms == 0 {
                bail!("header_read_timeout_ms must be at least 1");
            }
            listener_limits.header_read_timeout = std::time::Duration::from_millis(ms);
        }
        let assertion_max_lifetime_secs =
            args.client_assertion_max_lifetime_secs.or(file.client_assertion_max_lifetime_secs).unwrap_or(300);
        if !(1..=86_400).contains(&assertion_max_lifetime_secs) {
            bail!("client_assertion_max_lifetime_secs must be between 1 and 86400");
        }
        let redis_prefix = args.redis_prefix.clone().or(file.redis_prefix).unwrap_or_else(|| "ration".to_owned());
        if redis_prefix.is_empty() || redis_prefix.contains(['{', '}', ' ']) {
            bail!("invalid redis_prefix {redis_prefix:?}: must be non-empty, without braces or spaces");
        }
        let quota_store_failure = match args.quota_store_failure.clone().or(file.quota_store_failure).as_deref() {
            None | Some("deny") => ration_counters::FailurePolicy::Deny,
            Some("allow") => ration_counters::FailurePolicy::Allow,
            Some(other) => bail!("invalid quota_store_failure {other:?}: expected \"deny\" or \"allow\""),
        };
        Ok(Settings {
            listen,
            database_url,
            redis_url,
            redis_prefix,
            tls,
            assertion_max_lifetime_secs,
            listener_limits,
            quota_store_failure,
            issuer,
            data_dir,
            durability,
            log_retention_days,
            delivery,
            action_limits,
            actions_fetch_allow,
        })
    }
}

/// Flags of `ration guard`: every `serve` flag, plus the `[guard]` settings, each also read from
/// its `RATION_GUARD_*` variable. No `Debug`: it carries secrets.
#[derive(Clone, Default, clap::Args)]
pub struct GuardArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Base URL of the guarded tenant, e.g. https://acme.eu.auth0.com.
    #[arg(long, env = "RATION_GUARD_TENANT_URL")]
    pub tenant_url: Option<String>,
    /// Audience of the tenant's Management API (default <tenant-url>/api/v2/).
    #[arg(long, env = "RATION_GUARD_MANAGEMENT_AUDIENCE")]
    pub management_audience: Option<String>,
    /// Client id of the tenant application the guard pauses clients with (read:clients
    /// update:clients).
    #[arg(long, env = "RATION_GUARD_MANAGEMENT_CLIENT_ID")]
    pub management_client_id: Option<String>,
    /// Its client secret (prefer the environment or the file: flags show in process lists).
    // Base64url: may start with `-` (see `ration token --secret`).
    #[arg(long, env = "RATION_GUARD_MANAGEMENT_CLIENT_SECRET", hide_env_values = true, allow_hyphen_values = true)]
    pub management_client_secret: Option<String>,
    /// The exact Authorization header value the tenant's log stream sends.
    #[arg(long, env = "RATION_GUARD_LOG_STREAM_AUTHORIZATION", hide_env_values = true)]
    pub log_stream_authorization: Option<String>,
    /// Bearer secret of the decision endpoint (POST /v1/quota/consume).
    #[arg(long, env = "RATION_GUARD_DECISION_SECRET", hide_env_values = true, allow_hyphen_values = true)]
    pub decision_secret: Option<String>,
    /// What the example Action does when Ration is unreachable: allow (true) or deny (false).
    /// Informational: the Action's RATION_FAIL_OPEN secret decides.
    #[arg(long, env = "RATION_GUARD_FAIL_OPEN")]
    pub fail_open: Option<bool>,
}

/// A secret in the file: read like a string, never shown by `Debug`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// `[guard]` in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardFile {
    pub tenant_url: Option<String>,
    pub management_audience: Option<String>,
    pub management_client_id: Option<String>,
    pub management_client_secret: Option<Secret>,
    pub log_stream_authorization: Option<Secret>,
    pub decision_secret: Option<Secret>,
    pub fail_open: Option<bool>,
    /// `[[guard.clients]]`: shadow clients (the tenant's client ids) with their quotas.
    #[serde(default)]
    pub clients: Vec<GuardClientFile>,
    /// `[[guard.organizations]]`: shadow organizations (the tenant's ids) with their quotas.
    #[serde(default)]
    pub organizations: Vec<GuardOrganizationFile>,
}

/// One `[[guard.clients]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardClientFile {
    pub client_id: String,
    pub name: Option<String>,
    pub per_minute: Option<u32>,
    pub per_hour: Option<u32>,
    pub per_day: Option<u32>,
    /// Default `true`, as in Auth0.
    pub enforce: Option<bool>,
}

/// One `[[guard.organizations]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardOrganizationFile {
    pub id: String,
    pub name: Option<String>,
    pub per_minute: Option<u32>,
    pub per_hour: Option<u32>,
    pub per_day: Option<u32>,
    /// Default `true`, as in Auth0.
    pub enforce: Option<bool>,
}

/// The quota of a `[guard]` entry (Auth0's `token_quota.client_credentials` fields, flat);
/// `None` without limits (the guard's tenant default then applies).
fn entry_quota(
    what: &str,
    limits: ration_domain::QuotaLimits,
    enforce: Option<bool>,
) -> anyhow::Result<Option<ration_domain::TokenQuota>> {
    let max = ration_domain::quota::MAX_QUOTA;
    for (window, limit) in limits.iter() {
        if !(1..=max).contains(&limit) {
            bail!("{what}: {window} must be between 1 and {max}");
        }
    }
    if limits == ration_domain::QuotaLimits::default() {
        if enforce.is_some() {
            bail!("{what}: enforce needs per_minute, per_hour or per_day");
        }
        return Ok(None);
    }
    // Auth0 documents `enforce` as defaulting to true.
    Ok(Some(ration_domain::TokenQuota { enforce: enforce.unwrap_or(true), limits }))
}

/// Merges `ration guard`'s settings (flag > environment > `[guard]` in the file) and validates
/// them. The serve settings are resolved separately, by [`Settings::resolve`].
pub fn resolve_guard(args: &GuardArgs) -> anyhow::Result<ration_server::guard::GuardConfig> {
    let file = match &args.serve.config {
        Some(path) => FileConfig::load(path)?.guard.unwrap_or_default(),
        None => GuardFile::default(),
    };
    let pick = |flag: &Option<String>, file: Option<String>| flag.clone().or(file).filter(|v| !v.is_empty());
    let secret = |flag: &Option<String>, file: Option<Secret>| pick(flag, file.map(|s| s.0));
    let Some(tenant_url) = pick(&args.tenant_url, file.tenant_url) else {
        bail!(
            "ration guard needs tenant_url ([guard] tenant_url or RATION_GUARD_TENANT_URL), e.g. https://acme.eu.auth0.com"
        );
    };
    if !(tenant_url.starts_with("https://") || tenant_url.starts_with("http://")) {
        bail!("invalid guard tenant_url {tenant_url:?}: must be an absolute http(s) URL");
    }
    let mut clients = Vec::with_capacity(file.clients.len());
    for c in file.clients {
        if c.client_id.is_empty()
            || clients.iter().any(|x: &ration_server::guard::ShadowClient| x.client_id == c.client_id)
        {
            bail!("[[guard.clients]]: client_id {:?} is empty or listed twice", c.client_id);
        }
        let limits = ration_domain::QuotaLimits { per_minute: c.per_minute, per_hour: c.per_hour, per_day: c.per_day };
        let token_quota = entry_quota(&format!("[[guard.clients]] {}", c.client_id), limits, c.enforce)?;
        clients.push(ration_server::guard::ShadowClient { client_id: c.client_id, name: c.name, token_quota });
    }
    let mut organizations = Vec::with_capacity(file.organizations.len());
    for o in file.organizations {
        if o.id.is_empty() || organizations.iter().any(|x: &ration_server::guard::ShadowOrganization| x.id == o.id) {
            bail!("[[guard.organizations]]: id {:?} is empty or listed twice", o.id);
        }
        let limits = ration_domain::QuotaLimits { per_minute: o.per_minute, per_hour: o.per_hour, per_day: o.per_day };
        let token_quota = entry_quota(&format!("[[guard.organizations]] {}", o.id), limits, o.enforce)?;
        organizations.push(ration_server::guard::ShadowOrganization { id: o.id, name: o.name, token_quota });
    }
    Ok(ration_server::guard::GuardConfig {
        tenant_url: tenant_url.trim_end_matches('/').to_owned(),
        management_audience: pick(&args.management_audience, file.management_audience),
        management_client_id: pick(&args.management_client_id, file.management_client_id),
        management_client_secret: secret(&args.management_client_secret, file.management_client_secret),
        log_stream_authorization: secret(&args.log_stream_authorization, file.log_stream_authorization),
        decision_secret: secret(&args.decision_secret, file.decision_secret),
        fail_open: args.fail_open.or(file.fail_open).unwrap_or(false),
        clients,
        organizations,
    })
}

/// Accepts `host:port` and `:port` (all interfaces is not assumed: `:0` means 127.0.0.1:0).
fn parse_listen(text: &str) -> anyhow::Result<SocketAddr> {
    let full = if text.starts_with(':') { format!("127.0.0.1{text}") } else { text.to_owned() };
    full.parse().with_context(|| format!("invalid listen address {text:?}: expected host:port, e.g. 127.0.0.1:8080"))
}

fn normalize_issuer(issuer: &str) -> anyhow::Result<String> {
    if !(issuer.starts_with("http://") || issuer.starts_with("https://")) {
        bail!("invalid issuer {issuer:?}: must be an absolute http(s) URL");
    }
    Ok(if issuer.ends_with('/') { issuer.to_owned() } else { format!("{issuer}/") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let err = toml::from_str::<FileConfig>("listen = \"x\"\nlisten_port = 3\n").unwrap_err();
        assert!(err.message().contains("listen_port"), "{}", err.message());
    }

    #[test]
    fn issuer_gets_trailing_slash() {
        assert_eq!(normalize_issuer("https://a.example").unwrap(), "https://a.example/");
        assert!(normalize_issuer("a.example").is_err());
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let dir = std::env::temp_dir().join(format!("ration-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9999\"\ndata_dir = \"/tmp/from-file\"\n").unwrap();
        let args = ServeArgs { listen: Some(":0".into()), config: Some(path), ..Default::default() };
        let s = Settings::resolve(&args).unwrap();
        assert_eq!(s.listen.port(), 0);
        assert_eq!(s.data_dir, PathBuf::from("/tmp/from-file"));
        assert_eq!(Settings::resolve(&ServeArgs::default()).unwrap().listen.port(), 8080);
    }

    #[test]
    fn guard_section_parses_validates_and_yields_to_flags() {
        let dir = std::env::temp_dir().join(format!("ration-guard-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("g.toml");
        let text = "[guard]\ntenant_url = \"https://acme.eu.auth0.com/\"\ndecision_secret = \"file-secret\"\n\
                    [[guard.clients]]\nclient_id = \"abc\"\nper_hour = 3\n\
                    [[guard.organizations]]\nid = \"org_1\"\nper_day = 9\nenforce = false\n";
        std::fs::write(&path, text).unwrap();
        let mut args =
            GuardArgs { serve: ServeArgs { config: Some(path.clone()), ..Default::default() }, ..Default::default() };
        let g = resolve_guard(&args).unwrap();
        assert_eq!(g.tenant_url, "https://acme.eu.auth0.com");
        assert_eq!(g.management_audience(), "https://acme.eu.auth0.com/api/v2/");
        assert_eq!(g.decision_secret.as_deref(), Some("file-secret"));
        let quota = g.clients[0].token_quota.unwrap();
        assert_eq!((quota.enforce, quota.limits.per_hour), (true, Some(3)));
        let quota = g.organizations[0].token_quota.unwrap();
        assert_eq!((quota.enforce, quota.limits.per_day), (false, Some(9)));
        args.decision_secret = Some("flag-secret".into());
        assert_eq!(resolve_guard(&args).unwrap().decision_secret.as_deref(), Some("flag-secret"));

        std::fs::write(
            &path,
            "[guard]\ntenant_url = \"https://a.example\"\n[[guard.clients]]\nclient_id = \"c\"\nper_hour = 0\n",
        )
        .unwrap();
        assert!(resolve_guard(&args).unwrap_err().to_string().contains("per_hour"));
        std::fs::write(
            &path,
            "[guard]\ntenant_url = \"https://a.example\"\n[[guard.clients]]\nclient_id = \"c\"\nlimit = 1\n",
        )
        .unwrap();
        assert!(resolve_guard(&args).unwrap_err().to_string().contains("limit"));
        std::fs::write(&path, "[guard]\n").unwrap();
        assert!(resolve_guard(&args).unwrap_err().to_string().contains("tenant_url"));
        let secret = format!("{:?}", toml::from_str::<FileConfig>("[guard]\ndecision_secret = \"s3cret\"\n").unwrap());
        assert!(!secret.contains("s3cret"), "{secret}");
    }
}
