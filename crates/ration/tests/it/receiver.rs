//! A real HTTP receiver for log-stream tests: a small hyper server on `127.0.0.1:0` that records
//! every request (method, path, headers, body, the status it answered) and can be switched between
//! answering 200 ("ok"), answering 500, and being down (not listening, every connection closed),
//! then brought up again on the same port.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// One request the receiver saw.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Header names lower-cased; repeated headers kept in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status the receiver answered.
    pub status: u16,
}

impl Recorded {
    /// The single value of a header (panics if it is repeated).
    pub fn header(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        let values: Vec<&String> = self.headers.iter().filter(|(k, _)| *k == name).map(|(_, v)| v).collect();
        assert!(values.len() <= 1, "header {name} sent {} times: {:?}", values.len(), self.headers);
        values.first().map(|v| (*v).clone())
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A delivered item: `{"log_id": …, "data": {event}}`.
#[derive(Clone, Debug)]
pub struct Item {
    pub log_id: String,
    pub data: Value,
}

/// The three `httpContentFormat`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `JSONLINES`
    Lines,
    /// `JSONARRAY`
    Array,
    /// `JSONOBJECT`
    Object,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Lines => "JSONLINES",
            Format::Array => "JSONARRAY",
            Format::Object => "JSONOBJECT",
        }
    }
}

/// Checks one `{"log_id", "data"}` envelope.
#[track_caller]
pub fn item_of(v: &Value) -> Item {
    let obj = v.as_object().unwrap_or_else(|| panic!("delivered item is a JSON object: {v}"));
    let log_id = obj
        .get("log_id")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("delivered item has a string log_id: {v}"))
        .to_owned();
    let data = obj.get("data").unwrap_or_else(|| panic!("delivered item has data: {v}")).clone();
    assert!(data.is_object(), "data is the event object: {v}");
    assert_eq!(data["log_id"], log_id.as_str(), "data.log_id equals the envelope's log_id: {v}");
    Item { log_id, data }
}

/// Parses a request body strictly in `format`.
#[track_caller]
pub fn parse_body(body: &[u8], format: Format) -> Vec<Item> {
    let text = std::str::from_utf8(body).unwrap_or_else(|_| panic!("delivery body is UTF-8"));
    match format {
        Format::Lines => {
            let lines: Vec<&str> =
                text.split('\n').map(|l| l.trim_end_matches('\r')).filter(|l| !l.is_empty()).collect();
            assert!(!lines.is_empty(), "JSONLINES body has at least one line: {text:?}");
            lines
                .iter()
                .map(|l| {
                    let v: Value =
                        serde_json::from_str(l).unwrap_or_else(|e| panic!("JSONLINES line is JSON ({e}): {l:?}"));
                    item_of(&v)
                })
                .collect()
        }
        Format::Array => {
            let v: Value =
                serde_json::from_str(text).unwrap_or_else(|e| panic!("JSONARRAY body is JSON ({e}): {text:?}"));
            let arr = v.as_array().unwrap_or_else(|| panic!("JSONARRAY body is an array: {text}"));
            assert!(!arr.is_empty(), "JSONARRAY body is not empty");
            arr.iter().map(item_of).collect()
        }
        Format::Object => {
            let v: Value = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("JSONOBJECT body is one JSON value ({e}): {text:?}"));
            vec![item_of(&v)]
        }
    }
}

/// Parses a body in whichever of the three formats it is in (for tests not about the format).
pub fn parse_any(body: &[u8]) -> Vec<Item> {
    let text = String::from_utf8_lossy(body);
    let t = text.trim_start();
    if t.starts_with('[') {
        return parse_body(body, Format::Array);
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(v) => vec![item_of(&v)],
        Err(_) => parse_body(body, Format::Lines),
    }
}

const MODE_OK: u16 = 200;
const MODE_500: u16 = 500;

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    /// The status to answer with.
    mode: AtomicU16,
}

pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// The accept loop and every connection task, while up.
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    up: bool,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

impl Receiver {
    /// A receiver answering 200, on a free port.
    pub async fn start() -> Receiver {
        let listener = bind("127.0.0.1:0".parse().unwrap()).expect("bind receiver");
        let addr = listener.local_addr().expect("receiver address");
        let mut r = Receiver {
            addr,
            shared: Arc::new(Shared { requests: Mutex::new(Vec::new()), mode: AtomicU16::new(MODE_OK) }),
            tasks: Arc::new(Mutex::new(Vec::new())),
            up: false,
        };
        r.serve(listener);
        r
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let shared = self.shared.clone();
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(x) => x,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let handle = tokio::spawn(serve_conn(stream, shared.clone()));
                let mut t = tasks.lock().unwrap();
                t.retain(|h| !h.is_finished());
                t.push(handle);
            }
        });
        self.tasks.lock().unwrap().push(accept);
        self.up = true;
    }

    /// Answer every request with 200.
    pub fn set_ok(&self) {
        self.shared.mode.store(MODE_OK, Ordering::SeqCst);
    }

    /// Answer every request with 500.
    pub fn set_500(&self) {
        self.shared.mode.store(MODE_500, Ordering::SeqCst);
    }

    /// Stops listening and closes every open connection: connections are refused until [`up`].
    pub async fn down(&mut self) {
        let tasks: Vec<JoinHandle<()>> = self.tasks.lock().unwrap().drain(..).collect();
        // The accept loop first (it is the first pushed, but abort all, then wait for all).
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        // Tasks spawned by the accept loop between the drain and its abort.
        let late: Vec<JoinHandle<()>> = self.tasks.lock().unwrap().drain(..).collect();
        for t in &late {
            t.abort();
        }
        for t in late {
            let _ = t.await;
        }
        self.up = false;
        // Prove it: a connection attempt is refused.
        assert!(TcpStream::connect(self.addr).await.is_err(), "receiver still accepts connections after down()");
    }

    /// Listens again on the same port.
    pub async fn up(&mut self) {
        assert!(!self.up, "receiver already up");
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match bind(self.addr) {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot re-bind the receiver on {}: {e}", self.addr);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        self.serve(listener);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Requests answered 2xx (the ones that count as delivered).
    pub fn ok_requests(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(Recorded::ok).collect()
    }

    pub fn ok_requests_to(&self, path: &str) -> Vec<Recorded> {
        self.ok_requests().into_iter().filter(|r| r.path == path).collect()
    }

    /// Delivered items (2xx-answered requests, any format), in arrival order, duplicates kept.
    pub fn items(&self) -> Vec<Item> {
        self.ok_requests().iter().flat_map(|r| parse_any(&r.body)).collect()
    }

    pub fn items_to(&self, path: &str) -> Vec<Item> {
        self.ok_requests_to(path).iter().flat_map(|r| parse_any(&r.body)).collect()
    }

    /// Delivered items deduplicated by `log_id` (first arrival kept), keyed by `log_id`.
    pub fn unique_items_to(&self, path: &str) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for it in self.items_to(path) {
            out.entry(it.log_id).or_insert(it.data);
        }
        out
    }

    /// Polls until `done(self)` holds; panics with `what` (and what arrived) after `timeout`.
    pub async fn wait_until(&self, timeout: Duration, what: &str, mut done: impl FnMut(&Receiver) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if done(self) {
                return;
            }
            if Instant::now() > deadline {
                let reqs = self.requests();
                let statuses: BTreeSet<u16> = reqs.iter().map(|r| r.status).collect();
                panic!(
                    "receiver: {what} not seen within {timeout:?}; {} requests so far (statuses {statuses:?}), \
                     {} items delivered",
                    reqs.len(),
                    self.items().len()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

async fn serve_conn(stream: TcpStream, shared: Arc<Shared>) {
    let service = service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        async move {
            let method = req.method().to_string();
            let path = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
            let headers: Vec<(String, String)> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect();
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes().to_vec(),
                Err(_) => {
                    return Ok::<_, Infallible>(Response::builder().status(400).body(Full::new(Bytes::new())).unwrap());
                }
            };
            let status = shared.mode.load(Ordering::SeqCst);
            shared.requests.lock().unwrap().push(Recorded { method, path, headers, body, status });
            let text = if status == 200 { "ok" } else { "receiver failing on purpose" };
            Ok::<_, Infallible>(Response::builder().status(status).body(Full::new(Bytes::from(text))).unwrap())
        }
    });
    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
}
