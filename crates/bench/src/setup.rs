//! Configuring a server through its Management API: APIs, clients, grants, the organization.
//!
//! Requests go out `--setup-concurrency` (8) at a time: the server serializes writes, but
//! overlapping the HTTP round trips with its store writes keeps 10 000 clients to seconds, not
//! minutes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::scenario::{Alg, Limits};
use crate::server::{ADMIN_ID, ADMIN_SECRET};

/// Huge, so that nothing is ever rejected, but every bucket is still checked and counted.
const QUOTA: i64 = 2_000_000_000;
pub const ORG_NAME: &str = "bench-org";
/// The organization of `-org` scenarios: no quota.
pub const ORG_PLAIN_NAME: &str = "bench-org-plain";
/// Auth0 (and Ration) cap an organization at 100 associated client grants; above that the grants
/// say `allow_any_organization` instead of being associated one by one.
const MAX_ORG_GRANTS: usize = 100;

/// A client the load generator authenticates as.
#[derive(Clone, Debug)]
pub struct BenchClient {
    pub client_id: String,
    pub client_secret: String,
}

/// What a population's setup produced.
pub struct Setup {
    /// Clients per set. `Off`: no quota, granted every API (organization_usage `deny`). `Org`: no
    /// quota, granted every API with organization_usage `allow`, usable with [`ORG_PLAIN_NAME`]
    /// (no quota either). `Quota`: like `Org` with a quota, usable with [`ORG_NAME`] (which has a
    /// quota too).
    pub clients: Vec<(Limits, Vec<BenchClient>)>,
    pub elapsed: Duration,
}

impl Setup {
    pub fn set(&self, limits: Limits) -> &[BenchClient] {
        self.clients.iter().find(|(l, _)| *l == limits).map_or(&[], |(_, c)| c.as_slice())
    }

    pub fn total(&self) -> usize {
        self.clients.iter().map(|(_, c)| c.len()).sum()
    }
}

/// A Management API session.
#[derive(Clone)]
pub struct Mgmt {
    http: reqwest::Client,
    base: String,
    token: Arc<str>,
}

impl Mgmt {
    /// Gets a Management API token with the bootstrap admin's credentials.
    pub async fn login(base: &str) -> Result<Mgmt> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
        let audience = format!("{base}/api/v2/");
        let response = http
            .post(format!("{base}/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(crate::load::token_form(ADMIN_ID, ADMIN_SECRET, &audience, None))
            .send()
            .await
            .context("POST /oauth/token (Management API token)")?;
        let body = check(response, "POST /oauth/token (Management API token)").await?;
        let token = body["access_token"].as_str().ok_or_else(|| anyhow!("no access_token in {body}"))?;
        Ok(Mgmt { http, base: base.to_owned(), token: token.into() })
    }

    pub async fn call(&self, method: Method, path: &str, body: Value) -> Result<Value> {
        let what = format!("{method} {path}");
        let response = self
            .http
            .request(method, format!("{}/api/v2{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .with_context(|| what.clone())?;
        check(response, &what).await
    }
}

/// Fails with the status and body unless the response is a 2xx; else returns its JSON body.
async fn check(response: reqwest::Response, what: &str) -> Result<Value> {
    let status = response.status();
    let text = response.text().await.with_context(|| format!("{what}: reading the body"))?;
    if !status.is_success() {
        bail!("{what} failed: HTTP {status}: {text}");
    }
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).with_context(|| format!("{what}: the body is not JSON: {text}"))
}

/// The claim the bench's Action adds to every token, and its value: the preflight checks it.
pub const ACTION_CLAIM: &str = "https://bench.example/action";
pub const ACTION_CLAIM_VALUE: &str = "ran";

/// Creates, deploys and binds one trivial credentials-exchange Action (it sets one custom claim),
/// as Auth0's Management API does it. The binding applies to every later token request.
pub async fn bind_trivial_action(mgmt: &Mgmt) -> Result<()> {
    let code = format!(
        "exports.onExecuteCredentialsExchange = async (event, api) => {{\n  \
         api.accessToken.setCustomClaim({ACTION_CLAIM:?}, {ACTION_CLAIM_VALUE:?});\n}};\n"
    );
    let action = mgmt
        .call(
            Method::POST,
            "/actions/actions",
            json!({
                "name": "bench-trivial",
                "supported_triggers": [{"id": "credentials-exchange", "version": "v2"}],
                "code": code,
                "deploy": true,
            }),
        )
        .await?;
    let id = action["id"].as_str().ok_or_else(|| anyhow!("no id in the created action: {action}"))?;
    mgmt.call(
        Method::PATCH,
        "/actions/triggers/credentials-exchange/bindings",
        json!({"bindings": [{"ref": {"type": "action_id", "value": id}, "display_name": "bench-trivial"}]}),
    )
    .await?;
    Ok(())
}

fn quota_body() -> Value {
    json!({"client_credentials": {"per_hour": QUOTA, "per_day": QUOTA}})
}

/// Creates one API per algorithm, the organizations the sets need and `n` clients per requested
/// set, each with a grant to every API.
pub async fn populate(mgmt: &Mgmt, algs: &[Alg], n: usize, sets: &[Limits], concurrency: usize) -> Result<Setup> {
    let started = Instant::now();
    for &alg in algs {
        let mut body = json!({
            "name": format!("bench {}", alg.jose()),
            "identifier": alg.audience(),
            "signing_alg": alg.jose(),
            "scopes": [{"value": "read:x"}],
        });
        if alg == Alg::HS256 {
            body["signing_secret"] = json!("bench-hs256-secret-0123456789abc");
        }
        mgmt.call(Method::POST, "/resource-servers", body).await?;
    }
    let associate = n * algs.len() <= MAX_ORG_GRANTS;
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut clients = Vec::new();
    for &limits in sets {
        let org_id = match limits {
            Limits::Off => None,
            Limits::Org | Limits::Quota => {
                let mut body = json!({"name": org_name(limits).unwrap_or(ORG_NAME)});
                if limits == Limits::Quota {
                    body["token_quota"] = quota_body();
                }
                let org = mgmt.call(Method::POST, "/organizations", body).await?;
                Some(org["id"].as_str().ok_or_else(|| anyhow!("no id in the organization: {org}"))?.to_owned())
            }
        };
        let mut tasks = JoinSet::new();
        for i in 0..n {
            let (mgmt, limit, algs, org_id) = (mgmt.clone(), limit.clone(), algs.to_vec(), org_id.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await?;
                let client = create_client(&mgmt, i, limits, &algs, org_id.as_deref(), associate).await?;
                Ok::<_, anyhow::Error>((i, client))
            });
        }
        let mut made = Vec::with_capacity(n);
        while let Some(joined) = tasks.join_next().await {
            made.push(joined.context("a setup task panicked")??);
        }
        // Keep creation order, so client k is the same client from run to run.
        made.sort_by_key(|(i, _)| *i);
        clients.push((limits, made.into_iter().map(|(_, c)| c).collect()));
    }
    Ok(Setup { clients, elapsed: started.elapsed() })
}

/// The organization a set's requests name.
pub fn org_name(limits: Limits) -> Option<&'static str> {
    match limits {
        Limits::Off => None,
        Limits::Org => Some(ORG_PLAIN_NAME),
        Limits::Quota => Some(ORG_NAME),
    }
}

async fn create_client(
    mgmt: &Mgmt,
    i: usize,
    limits: Limits,
    algs: &[Alg],
    org_id: Option<&str>,
    associate: bool,
) -> Result<BenchClient> {
    let with_quota = limits == Limits::Quota;
    let with_org = limits != Limits::Off;
    let set = match limits {
        Limits::Off => "plain",
        Limits::Org => "org",
        Limits::Quota => "quota",
    };
    let mut body = json!({"name": format!("bench-{set}-{i}")});
    if with_quota {
        // The quota goes in with the creation (a valid Auth0 body): one write instead of two.
        body["token_quota"] = quota_body();
    }
    let created = mgmt.call(Method::POST, "/clients", body).await?;
    let field = |name: &str| {
        created[name].as_str().map(str::to_owned).ok_or_else(|| anyhow!("no {name} in the created client: {created}"))
    };
    let client = BenchClient { client_id: field("client_id")?, client_secret: field("client_secret")? };
    for &alg in algs {
        let mut grant = json!({"client_id": client.client_id, "audience": alg.audience(), "scope": ["read:x"]});
        if with_org {
            grant["organization_usage"] = json!("allow");
            if !associate {
                grant["allow_any_organization"] = json!(true);
            }
        }
        let grant = mgmt.call(Method::POST, "/client-grants", grant).await?;
        if let (true, true, Some(org_id)) = (with_org, associate, org_id) {
            let grant_id = grant["id"].as_str().ok_or_else(|| anyhow!("no id in the client grant: {grant}"))?;
            mgmt.call(Method::POST, &format!("/organizations/{org_id}/client-grants"), json!({"grant_id": grant_id}))
                .await?;
        }
    }
    Ok(client)
}
