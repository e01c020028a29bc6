//! Issue 3 acceptance: quota counts survive `kill -9`. Requests are driven concurrently, the server
//! is SIGKILLed twice mid-load and once between requests, and restarted on the same data directory
//! each time; until the quota's 429, no more than N tokens are ever received and every received
//! token is counted. Management API tokens are never counted.
//!
//! Exactness and the kill: a token is counted (durably) before its response leaves the process, so
//! a request in flight at the instant of `kill -9` can be counted without its response ever
//! arriving. No implementation can avoid that window, only narrow it. The test therefore keeps an
//! exact ledger: after each restart, `counted - received` (tokens lost with the process) must not
//! exceed the requests that were cut off by that kill (sent, never answered); a kill with nothing
//! in flight must lose nothing; and at the end `received + lost == N` exactly.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;
use crate::quota::{OFFSET_ENV, cc_pairs, offset_for, to_resp};

const API: &str = "https://crash.example.com/";
/// The quota under test.
const N: u64 = 150;
const TASKS: usize = 8;

/// What every task saw, across runs.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    rejected: AtomicU64,
    /// Requests that were sent but got no complete response (cut off by a kill).
    cut: AtomicU64,
    tokens: Mutex<Vec<String>>,
    /// Responses that are neither a token nor the quota 429 (status, body).
    unexpected: Mutex<Vec<(u16, String)>>,
}

/// Token requests in a loop until the server goes away (transport error) or answers 429.
async fn drive(http: reqwest::Client, url: String, body: String, tally: Arc<Tally>) {
    loop {
        let sent =
            http.post(&url).header("content-type", "application/x-www-form-urlencoded").body(body.clone()).send().await;
        let resp = match sent {
            Ok(resp) => resp,
            // Connection refused: the request never reached a server.
            Err(e) if e.is_connect() => return,
            Err(_) => {
                tally.cut.fetch_add(1, Ordering::SeqCst);
                return;
            }
        };
        // A response counts as received only with its whole body.
        let Ok(r) = to_resp(resp).await else {
            tally.cut.fetch_add(1, Ordering::SeqCst);
            return;
        };
        match r.status {
            200 => {
                let token = r.json["access_token"].as_str().map(str::to_owned);
                match token {
                    Some(t) => {
                        tally.tokens.lock().unwrap().push(t);
                        tally.ok.fetch_add(1, Ordering::SeqCst);
                    }
                    None => tally.unexpected.lock().unwrap().push((200, r.json.to_string())),
                }
            }
            429 => {
                assert_eq!(
                    r.json,
                    json!({ "error": "too_many_requests", "error_description": "Client quota exceeded" })
                );
                let h = r.headers.get("auth0-client-quota-limit").map(|v| v.to_str().unwrap().to_owned());
                let h = h.expect("quota header on 429");
                assert!(h.starts_with(&format!("b=per_hour;q={N};r=0;t=")), "429 quota header {h}");
                tally.rejected.fetch_add(1, Ordering::SeqCst);
                return;
            }
            status => {
                tally.unexpected.lock().unwrap().push((status, r.json.to_string()));
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

fn spawn_load(s: &TestServer, pairs: &[(String, String)], tally: &Arc<Tally>) -> Vec<tokio::task::JoinHandle<()>> {
    let url = s.url("/oauth/token");
    let body = form_body(&pairs_ref(pairs));
    (0..TASKS).map(|_| tokio::spawn(drive(s.http.clone(), url.clone(), body.clone(), tally.clone()))).collect()
}

async fn join_all(handles: Vec<tokio::task::JoinHandle<()>>) {
    for h in handles {
        tokio::time::timeout(Duration::from_secs(60), h).await.expect("load task finishes").expect("load task");
    }
}

async fn usage(s: &TestServer, id: &str) -> Value {
    s.mgmt(Method::GET, &format!("/clients/{id}/quota-usage"), None).await.expect(200)
}

fn bucket_used(u: &Value, name: &str) -> u64 {
    u["buckets"]
        .as_array()
        .unwrap_or_else(|| panic!("buckets in {u}"))
        .iter()
        .find(|b| b["bucket"] == name)
        .unwrap_or_else(|| panic!("{name} in {u}"))["used"]
        .as_u64()
        .expect("used")
}

/// Management API tokens: always issued, no quota headers, even under a tenant-wide default.
async fn admin_tokens_are_free(s: &TestServer, n: usize) {
    let (id, secret) = s.admin_credentials();
    for _ in 0..n {
        let r = s
            .token_form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
                ("audience", &s.mgmt_audience()),
            ])
            .await;
        assert_eq!(r.status, 200, "Management API token: {}", r.json);
        assert!(r.header("auth0-client-quota-limit").is_none(), "Management API tokens are not counted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_mid_load_never_overruns_and_counts_every_received_token() {
    // 10:00:05 on a future day: the hour bucket cannot roll during the test.
    let offset = offset_for(10 * 3_600_000 + 5_000);
    let mut s = TestServer::builder().issuer(FIXED_ISSUER).env(OFFSET_ENV, &offset.to_string()).start().await;
    s.create_api(API, json!({ "scopes": [{ "value": "read", "description": "r" }] })).await;
    let (id, secret) = s
        .create_client(
            &unique("crash-"),
            json!({ "token_quota": { "client_credentials": { "per_hour": N, "per_day": 10_000 } } }),
        )
        .await;
    s.create_grant(&id, API, &["read"]).await;
    // A tenant default of 2 per hour would apply to the admin client if its tokens counted.
    s.mgmt(
        Method::PATCH,
        "/tenants/settings",
        Some(json!({ "default_token_quota": { "clients": { "client_credentials": { "per_hour": 2 } } } })),
    )
    .await
    .expect(200);
    admin_tokens_are_free(&s, 5).await;
    let (admin_id, _) = s.admin_credentials();

    let pairs = cc_pairs(&id, &secret, API, None);
    let tally = Arc::new(Tally::default());
    // Tokens counted by the server whose responses died with a killed process.
    let mut lost = 0u64;
    for kill_at in [40u64, 90] {
        let handles = spawn_load(&s, &pairs, &tally);
        let deadline = Instant::now() + Duration::from_secs(30);
        while tally.ok.load(Ordering::SeqCst) < kill_at {
            assert!(Instant::now() < deadline, "load too slow: {} tokens", tally.ok.load(Ordering::SeqCst));
            assert!(handles.iter().any(|h| !h.is_finished()), "all load tasks stopped early");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let cut_before = tally.cut.load(Ordering::SeqCst);
        s.kill9();
        join_all(handles).await;
        let received = tally.ok.load(Ordering::SeqCst);
        let cut = tally.cut.load(Ordering::SeqCst) - cut_before;
        assert_eq!(tally.rejected.load(Ordering::SeqCst), 0, "quota exhausted before the kill: not mid-load");
        assert!(received < N, "quota exhausted before the kill ({received} tokens): not mid-load");
        assert!(s.data_dir().join("counters.journal").exists(), "counters.journal in the data dir");

        s.restart().await;
        let used = bucket_used(&usage(&s, &id).await, "per_hour");
        // Every token any client received is counted ...
        assert!(
            used >= received + lost,
            "kill -9 at {kill_at}: {received} received (+{lost} lost before), only {used} counted"
        );
        // ... and the only tokens counted but not received are those of requests the kill cut off.
        let lost_now = used - received - lost;
        assert!(
            lost_now <= cut,
            "kill -9 at {kill_at}: {used} counted, {received} received, {lost} lost before; {lost_now} more lost but only {cut} requests were in flight"
        );
        lost += lost_now;
        eprintln!("kill -9 at {kill_at}: received {received}, counted {used}, in flight {cut}, lost {lost_now}");
        admin_tokens_are_free(&s, 3).await;
    }

    // A kill with nothing in flight loses nothing and adds nothing.
    for _ in 0..5 {
        let r = s.token_form(&pairs_ref(&pairs)).await;
        assert_eq!(r.status, 200, "{}", r.json);
        tally.tokens.lock().unwrap().push(r.json["access_token"].as_str().expect("access_token").to_owned());
        tally.ok.fetch_add(1, Ordering::SeqCst);
    }
    let before = bucket_used(&usage(&s, &id).await, "per_hour");
    assert_eq!(before, tally.ok.load(Ordering::SeqCst) + lost, "live count = received + lost");
    s.kill9();
    s.restart().await;
    assert_eq!(bucket_used(&usage(&s, &id).await, "per_hour"), before, "a quiescent kill -9 keeps the count exactly");

    let handles = spawn_load(&s, &pairs, &tally);
    join_all(handles).await;
    let unexpected = tally.unexpected.lock().unwrap().clone();
    assert!(unexpected.is_empty(), "unexpected responses: {unexpected:?}");
    assert_eq!(tally.rejected.load(Ordering::SeqCst), TASKS as u64, "every task ends on a 429");
    let total = tally.ok.load(Ordering::SeqCst);
    let u = usage(&s, &id).await;
    assert!(total <= N, "never more than N tokens: {total} received");
    assert_eq!(total + lost, N, "tokens received ({total}) + lost in kills ({lost}) == quota; counted: {u}");
    assert_eq!(bucket_used(&u, "per_hour"), N, "{u}");
    assert_eq!(bucket_used(&u, "per_day"), N, "{u}");

    // Every token is real, distinct, and verifies against the (persisted) keys.
    let jwks = s.jwks().await;
    let tokens = tally.tokens.lock().unwrap().clone();
    let mut jtis = BTreeSet::new();
    for t in &tokens {
        let (_, claims) = verify_with_jwks(&jwks, t, FIXED_ISSUER, API);
        assert_eq!(claims["azp"], id.as_str());
        jtis.insert(claims["jti"].as_str().expect("jti").to_owned());
    }
    assert_eq!(jtis.len() as u64, total, "distinct tokens");

    // One more run still refuses, and the admin client was never counted.
    s.kill9();
    s.restart().await;
    let r = s.token_form(&pairs_ref(&pairs)).await;
    assert_eq!(r.status, 429, "still exhausted after another kill -9: {}", r.json);
    admin_tokens_are_free(&s, 3).await;
    let admin_usage = usage(&s, &admin_id).await;
    assert_eq!(admin_usage["source"], "tenant_default", "{admin_usage}");
    assert_eq!(bucket_used(&admin_usage, "per_hour"), 0, "Management API tokens are not counted: {admin_usage}");
}
