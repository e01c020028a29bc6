//! Acceptance tests for issue 5, outbound calls: an Action's global `fetch` reaches a local JSON
//! "quota store" on the allow-list (`RATION_ACTIONS_FETCH_ALLOW`) and decides from its answer;
//! a host or port not on the list fails the Action with a 500 that names it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::actions::*;
use crate::harness::*;

/// One request the JSON server saw.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A tiny "quota store": `/quota/allow` → `{allowed: true, tier: "gold", remaining: 7}`,
/// `/quota/deny` → `{allowed: false, reason: …}`, `/quota/broken` → 503, anything else → 404.
struct JsonServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for JsonServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JsonServer {
    async fn start() -> JsonServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind JSON server");
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let log = log.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let log = log.clone();
                        async move {
                            let method = req.method().to_string();
                            let path = req.uri().path().to_owned();
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.to_str().unwrap_or("").to_owned()))
                                .collect();
                            let body =
                                req.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
                            log.lock().unwrap().push(Seen { method, path: path.clone(), headers, body });
                            let (status, answer) = match path.as_str() {
                                "/quota/allow" => (200, json!({ "allowed": true, "tier": "gold", "remaining": 7 })),
                                "/quota/deny" => (200, json!({ "allowed": false, "reason": "Quota store says no." })),
                                "/quota/broken" => (503, json!({ "error": "unavailable" })),
                                _ => (404, json!({ "error": "not found" })),
                            };
                            let resp = Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .header("x-store", "test")
                                .body(Full::new(Bytes::from(answer.to_string())))
                                .unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        JsonServer { addr, seen, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn fetch_reaches_allowed_hosts_only() {
    let store = JsonServer::start().await;
    // A second, live server that is not on the list: a refusal is not a connection error.
    let unlisted = JsonServer::start().await;
    let port = store.addr.port();
    let allow = format!("127.0.0.1:{port}");
    let s = TestServer::start_with(&[], &[("RATION_ACTIONS_FETCH_ALLOW", &allow)]).await;
    setup_api(&s).await;

    let refused_host = format!("http://127.0.0.2:{port}/quota/allow");
    let refused_port = format!("{}/quota/allow", unlisted.url());
    let code = handler(&format!(
        "const mode = (event.client.metadata || {{}}).mode;\n\
         if (!mode) return;\n\
         if (mode === 'refused-host') {{ await fetch({refused_host}); return; }}\n\
         if (mode === 'refused-port') {{ await fetch({refused_port}); return; }}\n\
         const res = await fetch({base} + '/quota/' + mode, {{\n\
           method: 'POST',\n\
           headers: {{ 'content-type': 'application/json', 'x-api-key': event.secrets.STORE_KEY }},\n\
           body: JSON.stringify({{ client_id: event.client.client_id }}),\n\
         }});\n\
         console.log('quota store answered ' + res.status + ' ' + res.headers.get('x-store'));\n\
         if (!res.ok) {{ api.access.deny('server_error', 'quota store status ' + res.status); return; }}\n\
         const data = await res.json();\n\
         if (!data.allowed) {{ api.access.deny('invalid_request', data.reason); return; }}\n\
         api.accessToken.setCustomClaim('https://example.com/tier', data.tier);\n\
         api.accessToken.setCustomClaim('https://example.com/remaining', data.remaining);",
        refused_host = js(&refused_host),
        refused_port = js(&refused_port),
        base = js(&store.url()),
    ));
    let name = unique("quota-store-");
    deployed_action(&s, &name, &code, json!({ "secrets": [{ "name": "STORE_KEY", "value": "k-123" }] })).await;
    bind(&s, &[&name]).await;
    let mk = |mode: &'static str| {
        let s = &s;
        async move { client(s, &unique(&format!("{mode}-")), json!({ "client_metadata": { "mode": mode } })).await }
    };

    // Allowed host, the store says yes: claims from its JSON.
    let (id, secret) = mk("allow").await;
    let c = verified_claims(&s, &tok(&s, &id, &secret, Some("read")).await, &id).await;
    assert_eq!(c["https://example.com/tier"], "gold", "{c}");
    assert_eq!(c["https://example.com/remaining"], 7, "{c}");
    let seen = store.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/quota/allow");
    assert_eq!(seen[0].header("x-api-key"), Some("k-123"), "headers are sent: {:?}", seen[0].headers);
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    let sent: Value = serde_json::from_slice(&seen[0].body).expect("JSON body sent");
    assert_eq!(sent, json!({ "client_id": id }));
    let ev = wait_client_events(&s, "seccft", &id, 1).await;
    assert!(action_logs_text(&ev[0]).contains("quota store answered 200 test"), "{}", ev[0]);

    // Allowed host, the store says no: denied with its reason.
    let (id, secret) = mk("deny").await;
    assert_denied(&tok(&s, &id, &secret, Some("read")).await, 400, "invalid_request", "Quota store says no.");
    // Allowed host, the store fails: the Action sees the status.
    let (id, secret) = mk("broken").await;
    assert_denied(&tok(&s, &id, &secret, Some("read")).await, 500, "server_error", "quota store status 503");
    assert_eq!(store.seen().len(), 3);

    // Not on the list: another address, another port.
    let (id, secret) = mk("refused-host").await;
    assert_server_error(&tok(&s, &id, &secret, Some("read")).await, &[&name, &format!("127.0.0.2:{port}")]);
    let (id, secret) = mk("refused-port").await;
    let unlisted_port = unlisted.addr.port().to_string();
    assert_server_error(&tok(&s, &id, &secret, Some("read")).await, &[&name, &unlisted_port]);
    let evs = wait_client_events(&s, "feccft", &id, 1).await;
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert!(unlisted.seen().is_empty(), "the unlisted server got requests: {:?}", unlisted.seen());
    assert_eq!(store.seen().len(), 3, "refused fetches sent nothing");

    // Still serving.
    let (id, secret) = mk("allow").await;
    verified_claims(&s, &tok(&s, &id, &secret, Some("read")).await, &id).await;
}

#[tokio::test]
async fn fetch_is_refused_by_default() {
    let store = JsonServer::start().await;
    let s = TestServer::start().await;
    setup_api(&s).await;
    let (id, secret) = client(&s, &unique("nofetch-"), json!({})).await;
    let name = unique("fetcher-");
    let url = format!("{}/quota/allow", store.url());
    bound_action(
        &s,
        &name,
        &handler(&format!(
            "const res = await fetch({});\n\
             api.accessToken.setCustomClaim('https://example.com/tier', (await res.json()).tier);",
            js(&url)
        )),
    )
    .await;
    let r = tok(&s, &id, &secret, Some("read")).await;
    assert_server_error(&r, &[&name, &format!("127.0.0.1:{}", store.addr.port())]);
    assert!(store.seen().is_empty(), "no allow-list: nothing may be fetched: {:?}", store.seen());
}
