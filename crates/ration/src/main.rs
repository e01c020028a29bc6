//! The `ration` binary: `ration serve` runs the server, `ration guard` runs it as the guard of an
//! existing Auth0 tenant (docs/guard.md); further subcommands form the operator CLI.

mod cli;
mod config;

use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use ration_server::{Server, ServerConfig};

#[derive(Parser)]
#[command(name = "ration", version, about = "OAuth 2.0 client-credentials server with exact token quotas")]
struct Cli {
    #[command(flatten)]
    global: cli::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the `serve` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(config::ServeArgs),
    /// Run the server as the guard of an existing Auth0 tenant: everything `serve` does, plus a
    /// log-stream receiver that pauses over-quota clients on the tenant and a decision endpoint
    /// for credentials-exchange Actions (docs/guard.md).
    Guard(config::GuardArgs),
    #[command(flatten)]
    Operator(cli::Command),
}

/// The subcommands that run a server process.
// Built once per process, like `Command`: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum ServerMode {
    Serve(config::ServeArgs),
    Guard(config::GuardArgs),
}

/// jemalloc instead of glibc's malloc: the token path allocates a few dozen small objects per
/// request on two threads, freed on others; glibc spent ~13 % of the server's CPU in `malloc` and
/// `free` (with a quota's larger header map just past its thread cache's size limit), and jemalloc
/// raised ES256 throughput with quotas by ~15-20 % here (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options (its `malloc_conf` symbol, prefixed like the rest of this build). Freed pages
/// go back to the OS after about a second unused, from a background thread, instead of being kept
/// for ten: an idle server with 10 000 clients otherwise holds ~10 MiB more than it uses.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: MallocConf =
    MallocConf(c"background_thread:true,max_background_threads:1,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr());

#[repr(transparent)]
struct MallocConf(*const std::ffi::c_char);

// SAFETY: a pointer to a constant, NUL-terminated string that nothing ever writes.
unsafe impl Sync for MallocConf {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (mode, name) = match cli.command {
        Command::Serve(args) => (ServerMode::Serve(args), "serve"),
        Command::Guard(args) => (ServerMode::Guard(args), "guard"),
        Command::Operator(command) => return cli::run(cli.global, command),
    };
    if cli.global.any() {
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                format!("--profile and --json are operator CLI flags; `{name}` does not take them"),
            )
            .exit();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RATION_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match mode {
            ServerMode::Serve(args) => serve(args).await,
            ServerMode::Guard(args) => guard(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: config::ServeArgs) -> anyhow::Result<()> {
    let settings = config::Settings::resolve(&args)?;
    run(settings, async |_: &mut Server, _: &str| Ok(Vec::new())).await
}

/// `serve`, plus the guard's shadows, pauser and endpoints.
async fn guard(args: config::GuardArgs) -> anyhow::Result<()> {
    let settings = config::Settings::resolve(&args.serve)?;
    // Before anything is bound or opened, so a bad `[guard]` section fails fast.
    let guard_config = config::resolve_guard(&args)?;
    run(settings, async move |server: &mut Server, base_url: &str| {
        let mut lines = Vec::new();
        if guard_config.log_stream_authorization.is_some() {
            lines.push(format!("guard: log-stream receiver {base_url}{}", ration_server::guard::LOG_STREAM_PATH));
        }
        if guard_config.decision_secret.is_some() {
            lines.push(format!(
                "guard: decision endpoint {base_url}{} (give the Action RATION_FAIL_OPEN={})",
                ration_server::guard::DECISION_PATH,
                guard_config.fail_open
            ));
        }
        server.start_guard(guard_config).await?;
        Ok(lines)
    })
    .await
}

/// The startup and shutdown `serve` and `guard` share: bind, load the certificate, build the
/// server, let `extend` add to it (its lines are printed before `listening on`, which tells
/// scripts the server is ready), then serve until SIGINT/SIGTERM.
async fn run(
    settings: config::Settings,
    extend: impl AsyncFnOnce(&mut Server, &str) -> anyhow::Result<Vec<String>>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot bind {}", settings.listen))?;
    let local = listener.local_addr()?;
    // Load the certificate before anything else, so a bad one fails fast with a clear message.
    let tls = match &settings.tls {
        Some((cert, key)) => Some(ration_server::listener::tls_acceptor(cert, key).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let base_url = format!("{scheme}://{local}");
    let issuer = settings.issuer.clone().unwrap_or_else(|| format!("{base_url}/"));

    let bootstrap_credentials = match (
        std::env::var("RATION_BOOTSTRAP_CLIENT_ID").ok().filter(|v| !v.is_empty()),
        std::env::var("RATION_BOOTSTRAP_CLIENT_SECRET").ok().filter(|v| !v.is_empty()),
    ) {
        (Some(id), Some(secret)) => Some((id, secret)),
        (None, None) => None,
        _ => anyhow::bail!("set both RATION_BOOTSTRAP_CLIENT_ID and RATION_BOOTSTRAP_CLIENT_SECRET, or neither"),
    };
    let config = ServerConfig {
        issuer: issuer.clone(),
        data_dir: settings.data_dir.clone(),
        master_key_hex: std::env::var("RATION_MASTER_KEY").ok().filter(|v| !v.is_empty()),
        bootstrap_credentials,
        durability: settings.durability,
        log_retention_days: settings.log_retention_days,
        delivery: settings.delivery.clone(),
        action_limits: settings.action_limits.clone(),
        actions_fetch_allow: settings.actions_fetch_allow.clone(),
        database_url: settings.database_url.clone(),
        redis_url: settings.redis_url.clone(),
        redis_prefix: settings.redis_prefix.clone(),
        quota_store_failure: settings.quota_store_failure,
        assertion_max_lifetime_secs: settings.assertion_max_lifetime_secs,
        metrics_top_clients: match std::env::var("RATION_METRICS_TOP_CLIENTS") {
            Ok(v) if !v.is_empty() => v.parse().context("RATION_METRICS_TOP_CLIENTS must be a non-negative integer")?,
            _ => ration_server::metrics::DEFAULT_TOP_CLIENTS,
        },
        clock_offset_millis: match std::env::var("RATION_TEST_CLOCK_OFFSET_MS") {
            Ok(v) if !v.is_empty() => v.parse().context("RATION_TEST_CLOCK_OFFSET_MS must be an integer")?,
            _ => 0,
        },
    };
    let mut server = Server::build(config).await?;
    let extra = extend(&mut server, &base_url).await?;

    if let Some(creds) = &server.generated_credentials {
        println!(
            "generated admin credentials (shown once; also in {}):",
            settings.data_dir.join(ration_server::bootstrap::CREDENTIALS_FILE).display()
        );
        println!("  client_id:     {}", creds.client_id);
        println!("  client_secret: {}", creds.client_secret);
    }
    for line in extra {
        println!("{line}");
    }
    println!("listening on {base_url}");
    println!(
        "first token: curl -s {base_url}/oauth/token -d grant_type=client_credentials -d client_id=<client_id> \
         -d client_secret=<client_secret> -d audience={issuer}api/v2/"
    );
    tracing::info!(%issuer, data_dir = %settings.data_dir.display(), "ration started");

    ration_server::serve(listener, server.router(), tls, settings.listener_limits.clone(), shutdown_signal()).await?;
    // Journaled events would be replayed at the next start anyway; indexing them now leaves a
    // stopped server's store complete for whoever reads it next.
    server.state.events.flushed().await;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. axum then stops accepting and lets in-flight requests finish.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    /// Secrets are base64url, so one in 64 starts with `-`; clap must take it as the flag's value
    /// rather than as an unknown flag (a CI run once drew such a secret).
    #[test]
    fn secrets_starting_with_a_hyphen_are_values() {
        for args in [
            &["ration", "token", "--app", "a1", "--secret", "-baFSMy0vqShAGij"][..],
            &["ration", "login", "--url", "http://127.0.0.1:1", "--client-id", "c1", "--client-secret", "-x9"],
            &["ration", "guard", "--management-client-secret", "-x9", "--decision-secret", "-y8"],
        ] {
            if let Err(e) = Cli::try_parse_from(args) {
                panic!("{args:?}: {e}");
            }
        }
    }
}
