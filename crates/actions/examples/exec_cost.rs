//! Measures what one trivial Action execution costs through the pool: a fresh QuickJS context,
//! the prelude, compiling the Action, running its handler, and the hop to and from the worker.
//!
//! `cargo run --release --example exec_cost -p ration-actions`

use std::sync::Arc;
use std::time::{Duration, Instant};

use ration_actions::{ActionCode, ActionPool, FetchPolicy, Job, JobOutcome, Limits};

const RUNS: usize = 3000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = ActionPool::start(1, Limits::default(), FetchPolicy::default())?;
    let action = Arc::new(ActionCode {
        id: "act_trivial".into(),
        name: "trivial".into(),
        code: Arc::from(
            "exports.onExecuteCredentialsExchange = async (event, api) => {\n\
             \x20 if (event.client.metadata.tier === 'pro') api.accessToken.setCustomClaim('https://example.com/tier', 'pro');\n\
             };",
        ),
        secrets: vec![("API_KEY".into(), "secret".into())],
    });
    let job = Job {
        actions: vec![action],
        event: serde_json::json!({
            "client": {"client_id": "cid", "name": "job", "metadata": {"tier": "pro"}},
            "resource_server": {"identifier": "https://api.example.com"},
            "request": {"ip": "203.0.113.7", "method": "POST", "body": {}},
            "transaction": {"requested_scopes": []},
            "tenant": {"id": "ration"},
            "accessToken": {"customClaims": {}, "scope": []}
        }),
        now_millis: 0,
    };
    for _ in 0..200 {
        pool.run(job.clone()).await;
    }
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        let outcome = pool.run(job.clone()).await;
        times.push(start.elapsed());
        if !matches!(outcome, JobOutcome::Allowed { .. }) {
            return Err(format!("unexpected outcome: {outcome:?}").into());
        }
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q) as usize];
    let mean = times.iter().sum::<Duration>() / RUNS as u32;
    println!(
        "one trivial Action, {RUNS} runs: median {:?}, p90 {:?}, p99 {:?}, mean {:?}",
        at(0.5),
        at(0.9),
        at(0.99),
        mean
    );
    Ok(())
}
