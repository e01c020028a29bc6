//! `ration-bench`: how fast is Ration's token endpoint, and how close to the cost of a signature?
//!
//! Starts the release `ration` binary on fresh temporary data dirs, configures it through the
//! Management API, drives `POST /oauth/token` over keep-alive connections for each scenario,
//! measures the raw single-core signing rate of each algorithm in the same run, and prints a table
//! (issue 7). `--smoke` is the few-seconds variant CI runs so the tool cannot rot: it fails on any
//! setup error or non-200 response and asserts no timing.
//!
//! Server reuse: every small-population scenario (`--clients`, 10) runs against one server, set up
//! once with every algorithm's API and every client set (their quotas and counters do not interact).
//! The large population (`--many-clients`, 10 000) gets a server of its own; after setup it is
//! restarted on the same data dir so that startup time and idle RSS are those of a server that
//! loads 10 000 clients from its store, and its load scenarios then run on the restarted server.
//! Both servers are set up first and stay up: their scenarios take turns in the same rounds.

mod floor;
mod hist;
mod load;
mod report;
mod scenario;
mod server;
mod setup;
mod sign;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use clap::Parser;

use crate::report::{Table, num};
use crate::scenario::{Alg, Limits, LoadScenario, Plan, Population};
use crate::server::Server;
use crate::setup::{BenchClient, Mgmt};

#[derive(Parser, Debug, Clone)]
#[command(name = "ration-bench", about = "Benchmark of Ration's token endpoint (see docs/benchmarks.md)")]
struct Args {
    /// The server binary. Default: `ration` next to this binary (target/release/ration under
    /// `cargo run --release`).
    #[arg(long)]
    ration_bin: Option<PathBuf>,
    /// Comma-separated scenarios: `<alg>[-org|-quota][-action][-10k[-hot]]` (alg: es256, eddsa,
    /// rs256, hs256; `-org`: with the organization, no quotas; `-quota`: with it, client and
    /// organization quotas; `-action`: with one trivial credentials-exchange Action bound, run after
    /// the population's other scenarios; `-10k`: on the large population, every client sending in
    /// turn; `-hot`: only `--clients` of them sending), `startup-10k`, and `floor` and `floor-10k`
    /// (a bare ES256 handler, not Ration: what any token endpoint costs here, with one client or
    /// with `--many-clients` all sending in turn).
    #[arg(long, default_value = scenario::DEFAULT)]
    scenarios: String,
    /// A few seconds in total: 1 s per scenario, the smoke set (floor, floor-10k, es256, es256-quota,
    /// es256-quota-10k, es256-quota-10k-hot, es256-quota-action) unless --scenarios is given, 10
    /// clients, and at most 50 in the large population. Fails on any error; asserts no timing.
    #[arg(long)]
    smoke: bool,
    /// Keep-alive connections, one load task each.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Threads of the load generator (each drives its share of the connections on a
    /// single-threaded runtime). One is enough for the default load and leaves the most CPU to the
    /// server it shares the machine with.
    #[arg(long, default_value_t = 1)]
    load_threads: usize,
    /// Nice value of the load threads, so that a request goes out when it is due and an answer is
    /// read when it arrives rather than after the server's workers on the same cores: latency
    /// counts from when a request was due (see `load::set_own_nice`). Needs root or
    /// `CAP_SYS_NICE`; without, the run says so and goes on at the inherited priority. 0: the
    /// inherited priority.
    #[arg(long, default_value_t = -10, allow_negative_numbers = true)]
    load_nice: i32,
    /// Measured seconds per scenario (in all, over its rounds).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring (connections, caches, allocator, CPU frequency settle).
    /// Later rounds of a scenario warm up for at most half a second: the server is warm by then.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Each scenario's measured time is cut into this many slices, run in turns with the other
    /// scenarios, of its server and of the other population's (A B C A B C …), and added up. The VMs this runs on drift by several
    /// percent within a minute; run one after the other, two scenarios differ by that drift as
    /// well as by what they measure (the cost of quotas, 5 % at most, was lost in it).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Clients of the small population.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Clients of the large population (`-10k` scenarios and `startup-10k`).
    #[arg(long, default_value_t = 10_000)]
    many_clients: usize,
    /// Scenarios that also run paced at half of the throughput they just reached, for the latency
    /// at half load (issue 7: p99 ≤ 5 ms there). Comma-separated; empty: none.
    #[arg(long, default_value = "es256-quota")]
    half_load: String,
    /// Management API requests in flight during setup.
    #[arg(long, default_value_t = 8)]
    setup_concurrency: usize,
    /// Seconds of signing per algorithm for the raw single-core rate.
    #[arg(long, default_value_t = 1.0)]
    sign_secs: f64,
    /// Also write the results as Markdown to this file (`-`: stdout).
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Internal: run the bare floor handler (`floor` scenario) instead of benchmarking.
    #[arg(long, hide = true)]
    serve_floor: bool,
    /// Internal: the clients the floor handler knows.
    #[arg(long, hide = true, default_value_t = 1)]
    floor_clients: usize,
}

impl Args {
    /// The arguments of one round's slice of every scenario: its share of the measured time and of
    /// the raw-rate sampling; only the first round warms up for long (the server is warm after it).
    fn slice(&self, round: usize) -> Args {
        Args {
            duration: self.duration / self.rounds as f64,
            warmup: if round == 0 { self.warmup } else { self.warmup.min(0.5) },
            sign_secs: self.sign_secs / self.rounds as f64,
            ..self.clone()
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.serve_floor {
        return match floor::serve(args.floor_clients) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: floor server: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(failures) => {
            eprintln!("error: {failures} token requests failed (see the table); every request must succeed");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One row of the results.
struct Row {
    scenario: LoadScenario,
    /// The bare floor handler, not Ration (`scenario` then only says the algorithm).
    floor: bool,
    /// The paced rate (tokens/s) of a half-load run; `None`: closed loop, the maximum.
    paced: Option<f64>,
    /// Configured clients of the server.
    clients: usize,
    /// Clients sending (fewer than `clients` with `-hot`).
    senders: usize,
    outcome: load::Outcome,
    /// The measured window (tokens/s).
    window: Duration,
    /// Wall time between the CPU samples at the window's edges (CPU %); a hair off `window`.
    cpu_window: Duration,
    server_cpu: Duration,
    /// The part of `server_cpu` on SQLite's threads (the event indexer, under load).
    sqlite_cpu: Duration,
    bench_cpu: Duration,
    other_cpu: Duration,
    rss: u64,
    /// One core's raw signing rate for the row's algorithm, measured right before and right after
    /// its load (the mean; over rounds, weighted by their measured time): the VMs this runs on
    /// drift by several percent within minutes, and a divisor taken at the start of a long run
    /// would carry that drift into the ratio.
    raw: f64,
}

impl Row {
    /// Adds another round of the same scenario: counts, times and CPU add up, the raw rate is
    /// the mean weighted by measured time, memory is the latest.
    /// Adds a round's `row` to `total`, the scenario's rounds so far (`None` before the first).
    fn add_round(total: &mut Option<Row>, row: Row) {
        match total {
            Some(sum) => sum.absorb(row),
            None => *total = Some(row),
        }
    }

    fn absorb(&mut self, mut other: Row) {
        let (w0, w1) = (self.window.as_secs_f64(), other.window.as_secs_f64());
        self.raw = (self.raw * w0 + other.raw * w1) / (w0 + w1);
        // A later window: its seconds follow this one's rather than add to them.
        let later = std::mem::take(&mut other.outcome.slow);
        self.outcome.merge(other.outcome);
        self.outcome.slow.extend(later);
        self.window += other.window;
        self.cpu_window += other.cpu_window;
        self.server_cpu += other.server_cpu;
        self.sqlite_cpu += other.sqlite_cpu;
        self.bench_cpu += other.bench_cpu;
        self.other_cpu += other.other_cpu;
        self.rss = other.rss;
    }

    /// The scenario's name; a half-load run says so.
    fn label(&self) -> String {
        match self.paced {
            None if self.floor && self.scenario.population == Population::Large => "floor-10k".into(),
            None if self.floor => "floor".into(),
            None => self.scenario.name(),
            Some(rate) => format!("{} @ {rate:.0}/s", self.scenario.name()),
        }
    }
}

/// One server's life: how long setup and startup took, how much memory it held idle.
struct ServerFacts {
    population: &'static str,
    clients: usize,
    setup: Duration,
    startup_fresh: Duration,
    rss_idle_setup: u64,
    restart: Option<(Duration, u64)>,
}

/// Returns the number of failed token requests; errors are setup or infrastructure failures.
async fn run(mut args: Args) -> Result<u64> {
    if args.smoke {
        if args.scenarios == scenario::DEFAULT {
            args.scenarios = scenario::SMOKE.into();
        }
        args.duration = args.duration.min(1.0);
        args.rounds = 1;
        args.warmup = args.warmup.min(0.2);
        args.sign_secs = args.sign_secs.min(0.05);
        // Enough for the large population's server to be a second server taking turns with the
        // first; setting up 10 000 clients would take a debug build minutes.
        args.many_clients = args.many_clients.min(50);
    }
    let plan = scenario::parse(&args.scenarios)?;
    if args.concurrency == 0 || args.clients == 0 || args.many_clients == 0 || args.rounds == 0 {
        bail!("--concurrency, --clients, --many-clients and --rounds must be at least 1");
    }
    let bin = match &args.ration_bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()?.with_file_name("ration"),
    };
    if !bin.exists() {
        bail!("no server binary at {}: run `cargo build --release -p ration` or pass --ration-bin", bin.display());
    }
    if bin.components().any(|c| c.as_os_str() == "debug") && !args.smoke {
        eprintln!("warning: {} looks like a debug build; its numbers mean nothing", bin.display());
    }
    // The server inherits the environment: `RATION_REDIS_URL` and `RATION_DURABILITY` choose its
    // counters and its durability, and the table says which ran.
    let store = match (
        std::env::var("RATION_REDIS_URL").is_ok_and(|v| !v.is_empty()),
        std::env::var("RATION_DURABILITY").is_ok_and(|v| v == "fsync"),
    ) {
        (true, true) => "redis+fsync",
        (true, false) => "redis",
        (false, true) => "embedded+fsync",
        (false, false) => "embedded",
    };
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("server:  {}", bin.display());
    println!("store:   {store}   cores: {}   load average before: {}", cores(), loadavg.trim());
    let (nice, priority) = load_priority(args.load_nice);
    // What the load threads run at: 0 when the raised priority is refused.
    args.load_nice = nice;
    println!("load:    {} thread(s), {priority}", args.load_threads);

    // The floor, measured first, while nothing else of ours runs.
    let mut algs: Vec<Alg> = plan.load.iter().map(|s| s.alg).collect();
    if !plan.floors.is_empty() {
        algs.push(Alg::ES256);
    }
    algs.sort();
    algs.dedup();
    let mut raw = BTreeMap::new();
    for &alg in &algs {
        let rate = raw_rate(alg, args.sign_secs).await?;
        println!("raw {:<5} signs/s (one core, aws-lc-rs): {:.0}", alg.jose(), rate);
        raw.insert(alg, rate);
    }

    let temp = tempfile::Builder::new().prefix("ration-bench-").tempdir().context("cannot create a temporary dir")?;
    let mut rows = Vec::new();
    if !plan.floors.is_empty() {
        rows.append(&mut run_floors(&args, &plan.floors, temp.path()).await.context("the floor scenarios")?);
    }
    // Every population's server is set up first and all of them stay up, so that the rounds below
    // take turns across servers too: es256-quota and es256-quota-10k are then measured in the same
    // minutes, as pairs, instead of one server's rounds after the other's.
    let mut prepared = Vec::new();
    for population in [Population::Small, Population::Large] {
        if plan.needs(population) {
            prepared.push(prepare(&args, &plan, population, &bin, temp.path()).await?);
        }
    }
    rows.append(&mut run_rounds(&args, &plan, &prepared).await?);
    let mut servers = Vec::new();
    for p in prepared {
        p.srv.stop().await?;
        servers.push(p.facts);
    }

    let results = results_table(&rows, store, args.concurrency);
    let lifecycle = servers_table(&servers);
    if !results.rows.is_empty() {
        println!("\n{}", results.text());
    }
    if !lifecycle.rows.is_empty() {
        println!("{}", lifecycle.text());
    }
    let slow = slow_by_second(&rows);
    if !slow.is_empty() {
        println!("{slow}");
    }
    let failures: u64 = rows.iter().map(|r| r.outcome.failures()).sum();
    for row in rows.iter().filter(|r| r.outcome.failures() > 0) {
        eprintln!(
            "{}: {} failed requests (non-200 by status: {:?}, connection errors: {}); first: {}",
            row.scenario.name(),
            row.outcome.failures(),
            row.outcome.non_200,
            row.outcome.errors,
            row.outcome.first_failure.as_deref().unwrap_or("?")
        );
    }
    if let Some(path) = &args.markdown {
        let md = markdown(&args, &priority, &raw, &results, &lifecycle, &slow);
        if path.as_os_str() == "-" {
            println!("{md}");
        } else {
            std::fs::write(path, md).with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(failures)
}

/// A population's server, set up, measured idle and ready for load.
struct Prepared {
    population: Population,
    srv: Server,
    mgmt: Mgmt,
    setup: setup::Setup,
    facts: ServerFacts,
}

/// Starts and sets up one population's server and measures its startup and idle memory.
async fn prepare(args: &Args, plan: &Plan, population: Population, bin: &Path, temp: &Path) -> Result<Prepared> {
    let (label, n) = match population {
        Population::Small => ("small", args.clients),
        Population::Large => ("large", args.many_clients),
    };
    let data_dir = temp.join(label);
    let algs = plan.algs(population);
    println!(
        "\n== {label} population: {n} clients per set, APIs {:?}",
        algs.iter().map(|a| a.jose()).collect::<Vec<_>>()
    );
    let mut srv = Server::start(bin, &data_dir, 0).await?;
    let startup_fresh = srv.startup;
    let mgmt = Mgmt::login(&srv.base_url()).await?;
    let sets = plan.client_sets(population);
    let setup = setup::populate(&mgmt, &algs, n, &sets, args.setup_concurrency)
        .await
        .with_context(|| format!("setting up the {label} population; server log:\n{}", srv.log_tail()))?;
    println!("setup: {} clients in {:.1} s", setup.total(), setup.elapsed.as_secs_f64());
    settle().await;
    let rss_idle_setup = srv.rss()?;

    let mut restart = None;
    if population == Population::Large {
        // Same port: the Management API's audience (and the issuer) contain it.
        let port = srv.port;
        srv.stop().await?;
        srv = Server::start(bin, &data_dir, port).await.context("restarting on the same data dir")?;
        settle().await;
        restart = Some((srv.startup, srv.rss()?));
        println!("restart with {n} clients per set: listening after {:.0} ms", srv.startup.as_secs_f64() * 1e3);
    }
    let facts =
        ServerFacts { population: label, clients: n, setup: setup.elapsed, startup_fresh, rss_idle_setup, restart };
    Ok(Prepared { population, srv, mgmt, setup, facts })
}

/// Runs every load scenario on its population's server: in rounds that take turns across all
/// scenarios and servers, then the half-load runs, then the scenarios with an Action.
async fn run_rounds(args: &Args, plan: &Plan, prepared: &[Prepared]) -> Result<Vec<Row>> {
    let half_load = if args.half_load.trim().is_empty() { Plan::default() } else { scenario::parse(&args.half_load)? };
    let mut rows = Vec::new();
    // An Action binding applies to every client of its server, so the scenarios with one run
    // last, in rounds of their own.
    for bind in [false, true] {
        let group: Vec<(&Prepared, LoadScenario)> = prepared
            .iter()
            .flat_map(|p| plan.load.iter().filter(move |s| s.population == p.population).map(move |&s| (p, s)))
            .filter(|(_, s)| s.action == bind)
            .collect();
        if group.is_empty() {
            continue;
        }
        if bind {
            for p in prepared.iter().filter(|p| group.iter().any(|(q, _)| q.population == p.population)) {
                setup::bind_trivial_action(&p.mgmt)
                    .await
                    .with_context(|| format!("binding the Action; server log:\n{}", p.srv.log_tail()))?;
            }
        }
        let mut merged: Vec<Option<Row>> = group.iter().map(|_| None).collect();
        for round in 0..args.rounds {
            let slice = args.slice(round);
            for (&(p, scenario), merged) in group.iter().zip(&mut merged) {
                let clients = p.setup.set(scenario.limits);
                let context = || format!("scenario {}; server log:\n{}", scenario.name(), p.srv.log_tail());
                let row = run_scenario(&slice, &p.srv, scenario, clients, None).await.with_context(context)?;
                Row::add_round(merged, row);
            }
        }
        for (&(p, scenario), max) in group.iter().zip(merged.into_iter().flatten()) {
            let half = max.outcome.ok as f64 / max.window.as_secs_f64() / 2.0;
            rows.push(max);
            if half_load.load.contains(&scenario) && half >= 1.0 {
                let clients = p.setup.set(scenario.limits);
                let context =
                    || format!("scenario {} at half load; server log:\n{}", scenario.name(), p.srv.log_tail());
                rows.push(run_scenario(args, &p.srv, scenario, clients, Some(half)).await.with_context(context)?);
            }
        }
    }
    Ok(rows)
}

/// Lets background work of setup (journal, event log, allocator) settle before reading RSS. Two
/// seconds: the server's allocator returns pages left unused for one second (jemalloc's decay), and
/// an idle server is one that has been idle for longer than that.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// Runs one scenario closed-loop (`paced: None`, the maximum) or at a fixed total rate.
async fn run_scenario(
    args: &Args,
    srv: &Server,
    scenario: LoadScenario,
    clients: &[BenchClient],
    paced: Option<f64>,
) -> Result<Row> {
    let audience = scenario.alg.audience();
    let org = setup::org_name(scenario.limits);
    preflight(srv, scenario, &clients[0], org).await?;
    // `-hot`: the population stays configured, only the first `--clients` of it send.
    let senders = if scenario.hot { &clients[..args.clients.min(clients.len())] } else { clients };
    let bodies =
        senders.iter().map(|c| load::token_form(&c.client_id, &c.client_secret, &audience, org)).collect::<Vec<_>>();
    measure(args, srv, scenario, bodies, clients.len(), paced, false).await
}

/// The bare handler of `floor.rs`, under the same load as Ration's scenarios: one server per
/// population asked for (one client, or `--many-clients` all sending in turn), taking turns in
/// rounds like Ration's scenarios, so that the two are compared in the same minutes.
async fn run_floors(args: &Args, floors: &[Population], temp: &Path) -> Result<Vec<Row>> {
    let mut servers = Vec::new();
    for &population in floors {
        let (label, n) = match population {
            Population::Small => ("floor", 1),
            Population::Large => ("floor-10k", args.many_clients),
        };
        let srv = Server::start_floor(&temp.join(format!("{label}.log")), n).await?;
        let bodies = (0..n)
            .map(|i| {
                let (id, secret) = floor::client(i);
                load::token_form(&id, &secret, floor::AUDIENCE, None)
            })
            .collect::<Vec<_>>();
        let scenario = LoadScenario { alg: Alg::ES256, limits: Limits::Off, population, action: false, hot: false };
        servers.push((srv, scenario, bodies));
    }
    let mut merged: Vec<Option<Row>> = servers.iter().map(|_| None).collect();
    for round in 0..args.rounds {
        let slice = args.slice(round);
        for ((srv, scenario, bodies), merged) in servers.iter().zip(&mut merged) {
            let row = measure(&slice, srv, *scenario, bodies.clone(), bodies.len(), None, true).await?;
            Row::add_round(merged, row);
        }
    }
    for (srv, _, _) in servers {
        srv.stop().await?;
    }
    Ok(merged.into_iter().flatten().collect())
}

/// The nice value the load threads can run at, `nice` or else 0 (the inherited priority), and how
/// the run's header says it. Tried on a thread of its own: the value is per thread on Linux, and
/// the server, spawned later, must not inherit it.
fn load_priority(nice: i32) -> (i32, String) {
    if nice == 0 {
        return (0, "at the inherited priority".into());
    }
    match std::thread::spawn(move || load::set_own_nice(nice)).join() {
        Ok(Ok(())) => (nice, format!("at nice {nice}")),
        Ok(Err(e)) => {
            eprintln!(
                "warning: cannot run the load threads at nice {nice} ({e}; needs root or CAP_SYS_NICE): \
                 they wait behind the server's workers for CPU, and the latencies include those waits"
            );
            (0, format!("at the inherited priority (nice {nice} refused: {e})"))
        }
        Err(_) => (0, "at the inherited priority (the priority probe panicked)".into()),
    }
}

/// Drives `bodies` (one per client, in rotation) at `srv` and samples CPU at the window's edges.
async fn measure(
    args: &Args,
    srv: &Server,
    scenario: LoadScenario,
    bodies: Vec<bytes::Bytes>,
    clients: usize,
    paced: Option<f64>,
    floor: bool,
) -> Result<Row> {
    let senders = bodies.len();
    let addr: SocketAddr = format!("127.0.0.1:{}", srv.port).parse()?;
    let work = load::Workload {
        addr,
        bodies,
        connections: args.concurrency,
        threads: args.load_threads,
        nice: args.load_nice,
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        rate: paced,
    };
    // (server cpu, its SQLite threads' cpu, own cpu, whole machine's busy cpu, wall clock) at the
    // window's edges.
    type Sample = (Option<Duration>, Option<Duration>, Option<Duration>, Option<Duration>, std::time::Instant);
    let sample = || -> Sample {
        (
            srv.cpu().ok(),
            srv.sqlite_cpu().ok(),
            server::cpu_of("/proc/self/stat").ok(),
            server::machine_busy().ok(),
            std::time::Instant::now(),
        )
    };
    let raw_before = raw_rate(scenario.alg, args.sign_secs / 2.0).await?;
    let (mut first, mut last) = (None, None);
    let outcome = load::run(work, || first = Some(sample()), || last = Some(sample())).await?;
    let raw_after = raw_rate(scenario.alg, args.sign_secs / 2.0).await?;
    let ((s0, q0, b0, m0, t0), (s1, q1, b1, m1, t1)) =
        first.zip(last).ok_or_else(|| anyhow!("the measured window never ran"))?;
    let window = Duration::from_secs_f64(args.duration);
    let delta =
        |a: Option<Duration>, b: Option<Duration>| b.zip(a).map(|(b, a)| b.saturating_sub(a)).unwrap_or_default();
    let row = Row {
        scenario,
        floor,
        paced,
        clients,
        senders,
        server_cpu: delta(s0, s1),
        sqlite_cpu: delta(q0, q1),
        bench_cpu: delta(b0, b1),
        // Everything else the machine did meanwhile (other builds, daemons): the noise indicator.
        other_cpu: delta(m0, m1).saturating_sub(delta(s0, s1) + delta(b0, b1)),
        rss: srv.rss()?,
        raw: (raw_before + raw_after) / 2.0,
        window,
        cpu_window: t1 - t0,
        outcome,
    };
    println!(
        "{:<24} {:>9.0} tokens/s  p99 {:>6.2} ms  server CPU {:>4.0}%  raw {:>8.0}/s  failures {}  \
         server {:.1} us/token (SQLite {:.1})",
        row.label(),
        row.outcome.ok as f64 / window.as_secs_f64(),
        ms(row.outcome.latency.quantile(0.99)),
        pct(row.server_cpu, row.cpu_window),
        row.raw,
        row.outcome.failures(),
        per_token_us(row.server_cpu, row.outcome.ok),
        per_token_us(row.sqlite_cpu, row.outcome.ok),
    );
    Ok(row)
}

/// One core's signing rate for `alg` over about `secs` (on a blocking thread: it spins).
async fn raw_rate(alg: Alg, secs: f64) -> Result<f64> {
    let budget = Duration::from_secs_f64(secs);
    tokio::task::spawn_blocking(move || sign::rate(alg, budget)).await?
}

/// One token before the load: the setup really gives the scenario what it claims (the right
/// algorithm, quota headers exactly when quotas are on, the Action's claim exactly when it is
/// bound), so a mistake cannot pass as a fast run.
async fn preflight(srv: &Server, scenario: LoadScenario, client: &BenchClient, org: Option<&str>) -> Result<()> {
    let body = load::token_form(&client.client_id, &client.client_secret, &scenario.alg.audience(), org);
    let response = reqwest::Client::new()
        .post(format!("{}/oauth/token", srv.base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .context("preflight token request")?;
    let status = response.status();
    let has = |name: &str| response.headers().contains_key(name);
    let quota_headers = (has("auth0-client-quota-limit"), has("auth0-organization-quota-limit"));
    let text = response.text().await?;
    if status != 200 {
        bail!("preflight token request: HTTP {status}: {text}");
    }
    let json: serde_json::Value = serde_json::from_str(&text).context("preflight: token response is not JSON")?;
    let token = json["access_token"].as_str().ok_or_else(|| anyhow!("preflight: no access_token in {text}"))?;
    let header = token.split('.').next().and_then(|h| B64.decode(h).ok()).unwrap_or_default();
    let header: serde_json::Value = serde_json::from_slice(&header).context("preflight: unreadable JOSE header")?;
    if header["alg"] != scenario.alg.jose() {
        bail!("preflight: token signed with {} instead of {}", header["alg"], scenario.alg.jose());
    }
    let quota = scenario.limits == Limits::Quota;
    if quota_headers != (quota, quota) {
        bail!("preflight: quota headers (client, organization) present = {quota_headers:?}, expected both {quota}");
    }
    let claims = token.split('.').nth(1).and_then(|c| B64.decode(c).ok()).unwrap_or_default();
    let claims: serde_json::Value = serde_json::from_slice(&claims).context("preflight: unreadable claims")?;
    if claims.get("org_id").is_some() != (scenario.limits != Limits::Off) {
        bail!("preflight: org_id claim present = {}, for scenario {}", claims.get("org_id").is_some(), scenario.name());
    }
    let ran = claims.get(setup::ACTION_CLAIM) == Some(&serde_json::json!(setup::ACTION_CLAIM_VALUE));
    if ran != scenario.action {
        bail!("preflight: the Action's claim present = {ran}, for scenario {}", scenario.name());
    }
    Ok(())
}

fn ms(ns: Option<u64>) -> f64 {
    ns.map_or(f64::NAN, |v| v as f64 / 1e6)
}

/// CPU time per issued token, in µs. On these noisy VMs it ranks two builds where tokens/s
/// cannot: the host's drift moves throughput by more than a few µs of work per token does, and
/// a thread's own CPU time separates what changed (docs/benchmarks.md, session 14).
fn per_token_us(cpu: Duration, tokens: u64) -> f64 {
    cpu.as_secs_f64() * 1e6 / tokens.max(1) as f64
}

/// CPU time as a percentage of one core over `wall`.
fn pct(cpu: Duration, wall: Duration) -> f64 {
    100.0 * cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9)
}

fn mib(bytes: u64) -> String {
    num(bytes as f64 / (1024.0 * 1024.0))
}

fn results_table(rows: &[Row], store: &str, concurrency: usize) -> Table {
    let header = vec![
        "scenario",
        "alg",
        "quotas",
        "store",
        "clients",
        "conns",
        "tokens/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "server CPU %",
        "server CPU µs/token",
        "SQLite CPU µs/token",
        "server RSS MiB",
        "bench CPU %",
        "other CPU %",
        "raw signs/s (1 core, beside the row)",
        "tokens/s ÷ raw",
        "failed",
    ];
    let rows = rows
        .iter()
        .map(|r| {
            let rate = r.outcome.ok as f64 / r.window.as_secs_f64();
            let raw = r.raw;
            let q = |q| num(ms(r.outcome.latency.quantile(q)));
            let (quotas, store) = match r.floor {
                true => ("- (bare handler)", "-"),
                false => (r.scenario.limits.describe(), store),
            };
            vec![
                r.label(),
                r.scenario.alg.jose().into(),
                quotas.into(),
                store.into(),
                if r.senders < r.clients {
                    format!("{} ({} send)", r.clients, r.senders)
                } else {
                    r.clients.to_string()
                },
                concurrency.to_string(),
                format!("{rate:.0}"),
                q(0.5),
                q(0.99),
                q(0.999),
                format!("{:.0}", pct(r.server_cpu, r.cpu_window)),
                format!("{:.1}", per_token_us(r.server_cpu, r.outcome.ok)),
                format!("{:.1}", per_token_us(r.sqlite_cpu, r.outcome.ok)),
                mib(r.rss),
                format!("{:.0}", pct(r.bench_cpu, r.cpu_window)),
                format!("{:.0}", pct(r.other_cpu, r.cpu_window)),
                format!("{raw:.0}"),
                format!("{:.2}", rate / raw),
                r.outcome.failures().to_string(),
            ]
        })
        .collect();
    Table { header, left: 4, rows }
}

fn servers_table(servers: &[ServerFacts]) -> Table {
    let header = vec![
        "server",
        "clients per set",
        "setup s",
        "first start ms",
        "idle RSS after setup MiB",
        "restart ms",
        "idle RSS after restart MiB",
    ];
    let rows = servers
        .iter()
        .map(|s| {
            let (restart, rss) = match s.restart {
                Some((t, rss)) => (format!("{:.0}", t.as_secs_f64() * 1e3), mib(rss)),
                None => ("-".into(), "-".into()),
            };
            vec![
                s.population.into(),
                s.clients.to_string(),
                format!("{:.1}", s.setup.as_secs_f64()),
                format!("{:.0}", s.startup_fresh.as_secs_f64() * 1e3),
                mib(s.rss_idle_setup),
                restart,
                rss,
            ]
        })
        .collect();
    Table { header, left: 1, rows }
}

fn markdown(
    args: &Args,
    priority: &str,
    raw: &BTreeMap<Alg, f64>,
    results: &Table,
    lifecycle: &Table,
    slow: &str,
) -> String {
    let command: Vec<String> = std::env::args().collect();
    let mut out = format!("Command: `{}`\n\n", command.join(" "));
    out.push_str(&format!(
        "{} connections on {} load thread(s) {priority}, {} s warm-up, {} s measured per scenario in \
         {} rounds (all scenarios, of both servers, take turns).\n\n",
        args.concurrency, args.load_threads, args.warmup, args.duration, args.rounds
    ));
    if !results.rows.is_empty() {
        out.push_str(&results.markdown());
        out.push('\n');
    }
    if !lifecycle.rows.is_empty() {
        out.push_str(&lifecycle.markdown());
    }
    out.push_str(
        "\nEach row's raw rate is one core's, measured right before and right after each of its rounds \
         (for half of `--sign-secs` over all of them, each way); at the start of the run (aws-lc-rs, \
         in-process):",
    );
    for (alg, rate) in raw {
        out.push_str(&format!(" {} {rate:.0}/s;", alg.jose()));
    }
    out.push('\n');
    if !slow.is_empty() {
        out.push('\n');
        out.push_str(slow);
    }
    out
}

/// For each paced row, its 200s slower than [`load::SLOW`] in each second of its window: a p99
/// over the bound made of one stall shows as one busy second, a spread tail as many.
fn slow_by_second(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows.iter().filter(|r| r.paced.is_some()) {
        let slow = &row.outcome.slow;
        let seconds = usize::try_from(row.window.as_secs()).unwrap_or(usize::MAX).max(slow.len());
        let counts: Vec<String> = (0..seconds).map(|i| slow.get(i).copied().unwrap_or(0).to_string()).collect();
        let total: u64 = slow.iter().sum();
        out.push_str(&format!(
            "`{}`: 200s over {} ms by second of the window: {} ({total} of {}, {:.2} %)\n",
            row.label(),
            load::SLOW.as_millis(),
            counts.join(" "),
            row.outcome.ok,
            100.0 * total as f64 / row.outcome.ok.max(1) as f64,
        ));
    }
    out
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(ok: u64, secs: u64, server_cpu_ms: u64, raw: f64, latency_us: u64) -> Row {
        let mut outcome = load::Outcome { ok, ..Default::default() };
        for _ in 0..ok {
            outcome.latency.record(latency_us * 1000);
        }
        Row {
            scenario: LoadScenario {
                alg: Alg::ES256,
                limits: Limits::Off,
                population: Population::Small,
                action: false,
                hot: false,
            },
            floor: false,
            paced: None,
            clients: 10,
            senders: 10,
            outcome,
            window: Duration::from_secs(secs),
            cpu_window: Duration::from_secs(secs),
            server_cpu: Duration::from_millis(server_cpu_ms),
            sqlite_cpu: Duration::from_millis(server_cpu_ms / 10),
            bench_cpu: Duration::from_millis(server_cpu_ms / 8),
            other_cpu: Duration::ZERO,
            rss: ok,
            raw,
        }
    }

    #[test]
    fn the_clients_column_says_how_many_of_them_send() {
        let all = slice(100, 2, 3000, 60_000.0, 500);
        let mut hot = slice(100, 2, 3000, 60_000.0, 500);
        hot.clients = 10_000;
        hot.scenario.hot = true;
        let table = results_table(&[all, hot], "embedded", 32);
        let clients = table.header.iter().position(|h| *h == "clients").expect("a clients column");
        let column: Vec<&str> = table.rows.iter().map(|r| r[clients].as_str()).collect();
        assert_eq!(column, ["10", "10000 (10 send)"]);
    }

    #[test]
    fn a_round_gets_its_share_and_only_the_first_warms_up_long() {
        let args = Args::parse_from(["ration-bench", "--duration", "10", "--rounds", "5", "--warmup", "2"]);
        let (first, later) = (args.slice(0), args.slice(3));
        assert_eq!((first.duration, first.warmup), (2.0, 2.0));
        assert_eq!((later.duration, later.warmup), (2.0, 0.5));
        assert_eq!(later.sign_secs, args.sign_secs / 5.0);
    }

    #[test]
    fn a_paced_row_s_slow_answers_follow_second_after_second_across_its_rounds() {
        let mut row = slice(100, 2, 3000, 60_000.0, 500);
        row.outcome.slow = vec![3, 0];
        let mut later = slice(100, 2, 3000, 60_000.0, 500);
        later.outcome.slow = vec![0, 7];
        row.absorb(later);
        assert_eq!(row.outcome.slow, [3, 0, 0, 7], "the second round's seconds come after the first's");
        row.paced = Some(50.0);
        let text = slow_by_second(&[row]);
        assert!(text.contains(": 3 0 0 7 (10 of 200, 5.00 %)"), "{text}");
    }

    #[test]
    fn rounds_of_a_scenario_add_up_to_one_row() {
        let mut row = slice(100, 2, 3000, 60_000.0, 500);
        row.absorb(slice(300, 2, 3400, 70_000.0, 900));
        row.absorb(slice(200, 4, 6000, 64_000.0, 700));
        assert_eq!(row.outcome.ok, 600);
        assert_eq!(row.window, Duration::from_secs(8), "the measured windows add up");
        assert_eq!(row.outcome.ok as f64 / row.window.as_secs_f64(), 75.0, "tokens/s over all rounds");
        assert_eq!(pct(row.server_cpu, row.cpu_window), 155.0, "CPU % over all rounds");
        // 12.4 s of server CPU (1.24 s of it SQLite's) for 600 tokens.
        assert!((per_token_us(row.server_cpu, row.outcome.ok) - 12_400_000.0 / 600.0).abs() < 1e-6);
        assert!((per_token_us(row.sqlite_cpu, row.outcome.ok) - 1_240_000.0 / 600.0).abs() < 1e-6);
        // Weighted by measured time: (60 k · 2 + 70 k · 2 + 64 k · 4) / 8.
        assert_eq!(row.raw, 64_500.0);
        assert_eq!(row.rss, 200, "memory is the latest round's");
        let p50 = row.outcome.latency.quantile(0.5).unwrap_or(0);
        assert!((700_000..=900_000).contains(&p50), "latencies of every round in one histogram: p50 {p50}");
    }
}
