//! The load generator: C keep-alive HTTP/1.1 connections, each one task sending `POST
//! /oauth/token` back to back for a warm-up and then a measured window.
//!
//! It shares two cores with the server, so every microsecond it spends per request is taken from
//! the server and shows up as lower tokens/s. It therefore does what `wrk` does and no more: each
//! connection writes one pre-encoded request (head and body in one buffer, one `write(2)`), reads
//! until the response head parses (`httparse`, the parser hyper uses) and its `Content-Length`
//! bytes have arrived, and goes again. The connections run on one single-threaded runtime per load
//! thread (`threads`, default one), so an answer wakes its connection's task directly, with no
//! channel between a request handle and a connection driver and no work stealing between threads.
//! One connection per task makes the connection count exact (the "32 connections").
//!
//! Two modes: closed loop (the default: each connection sends its next request as soon as the
//! previous answer arrives, which finds the maximum throughput) and paced (`rate`: the connections
//! together send at a fixed rate, for latency at a given load). Paced latency is measured from
//! when a request was due, not when it went out, so a stalled server cannot hide its stall by
//! holding back the requests that would have queued behind it (coordinated omission).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::hist::Histogram;

/// What to send: one pre-encoded form body per configured client, used in rotation.
pub struct Workload {
    pub addr: SocketAddr,
    pub bodies: Vec<Bytes>,
    pub connections: usize,
    /// OS threads driving the connections (each a single-threaded runtime).
    pub threads: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Total requests per second over all connections; `None`: as fast as answers come.
    pub rate: Option<f64>,
    /// Scheduling priority of the load threads (see [`set_own_nice`]), already found permitted
    /// (`main`'s probe); 0 leaves the inherited one.
    pub nice: i32,
}

/// Latency above which a 200 counts in [`Outcome::slow`]: the bound on p99 at half load.
pub const SLOW: Duration = Duration::from_millis(5);

/// What the measured window saw (the warm-up is discarded).
#[derive(Default)]
pub struct Outcome {
    /// Latency of every 200 completed inside the window, in nanoseconds.
    pub latency: Histogram,
    /// 200s slower than [`SLOW`], by second of the window in which they completed. A paced run's
    /// p99 over the bound can be one stall of the machine or a tail spread over the whole run, and
    /// the histogram alone cannot tell which (docs/benchmarks.md, session 19).
    pub slow: Vec<u64>,
    pub ok: u64,
    /// Responses other than 200, by status (warm-up included: a failure is never excusable).
    pub non_200: BTreeMap<u16, u64>,
    /// Connection or protocol errors (warm-up included).
    pub errors: u64,
    /// The first failure, for the report.
    pub first_failure: Option<String>,
}

impl Outcome {
    pub fn failures(&self) -> u64 {
        self.non_200.values().sum::<u64>() + self.errors
    }

    /// A 200 that took `latency` and completed in second `second` of the window.
    fn record_ok(&mut self, latency: Duration, second: u64) {
        self.ok += 1;
        self.latency.record(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
        if latency > SLOW {
            let second = usize::try_from(second).unwrap_or(usize::MAX);
            if self.slow.len() <= second {
                self.slow.resize(second + 1, 0);
            }
            self.slow[second] += 1;
        }
    }

    /// Adds the outcome of other connections over the same window.
    pub fn merge(&mut self, other: Outcome) {
        self.latency.merge(&other.latency);
        if self.slow.len() < other.slow.len() {
            self.slow.resize(other.slow.len(), 0);
        }
        for (sum, n) in self.slow.iter_mut().zip(other.slow) {
            *sum += n;
        }
        self.ok += other.ok;
        for (status, n) in other.non_200 {
            *self.non_200.entry(status).or_default() += n;
        }
        self.errors += other.errors;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
    }

    fn fail(&mut self, what: String) {
        self.errors += 1;
        if self.first_failure.is_none() {
            self.first_failure = Some(what);
        }
    }
}

/// The form body of a client-credentials request.
pub fn token_form(client_id: &str, client_secret: &str, audience: &str, organization: Option<&str>) -> Bytes {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials")
        .append_pair("client_id", client_id)
        .append_pair("client_secret", client_secret)
        .append_pair("audience", audience);
    if let Some(org) = organization {
        form.append_pair("organization", org);
    }
    Bytes::from(form.finish())
}

/// The whole HTTP/1.1 request carrying `body`, encoded once.
fn token_request(host: &str, body: &[u8]) -> Bytes {
    let head = format!(
        "POST /oauth/token HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/x-www-form-urlencoded\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    let mut request = Vec::with_capacity(head.len() + body.len());
    request.extend_from_slice(head.as_bytes());
    request.extend_from_slice(body);
    Bytes::from(request)
}

/// Runs the workload. `at_window_start` and `at_window_end` are called (on this task) when the
/// measured window opens and closes, to sample the server's CPU time.
pub async fn run(
    work: Workload,
    mut at_window_start: impl FnMut(),
    mut at_window_end: impl FnMut(),
) -> Result<Outcome> {
    let start = Instant::now();
    let window = (start + work.warmup, start + work.warmup + work.duration);
    let host = work.addr.to_string();
    let requests: Arc<Vec<Bytes>> = Arc::new(work.bodies.iter().map(|b| token_request(&host, b)).collect());
    if requests.is_empty() {
        bail!("no request bodies to send");
    }
    let threads = work.threads.clamp(1, work.connections.max(1));
    let mut results = Vec::with_capacity(threads);
    for thread in 0..threads {
        // Connection `c` runs on thread `c % threads`.
        let mine: Vec<usize> = (thread..work.connections).step_by(threads).collect();
        let (requests, addr, step, rate, nice) = (requests.clone(), work.addr, work.connections, work.rate, work.nice);
        let (done, result) = tokio::sync::oneshot::channel();
        results.push(result);
        std::thread::Builder::new()
            .name(format!("load-{thread}"))
            .spawn(move || {
                // Permitted (`main`'s probe, which turns a refusal into 0); should it fail all the
                // same, the run goes on at the inherited priority.
                if nice != 0 {
                    let _ = set_own_nice(nice);
                }
                let outcome = drive(mine, requests, addr, step, start, window, rate);
                // The receiver is gone only if `run` was dropped; nobody is left to tell.
                let _ = done.send(outcome);
            })
            .context("cannot start a load thread")?;
    }
    tokio::time::sleep_until(window.0).await;
    at_window_start();
    tokio::time::sleep_until(window.1).await;
    at_window_end();
    let mut total = Outcome::default();
    for result in results {
        total.merge(result.await.map_err(|_| anyhow!("a load thread died"))??);
    }
    Ok(total)
}

/// Sets the calling thread's nice value (Linux: per thread), for the load threads.
///
/// Why: the load threads share the two cores with the server. At the inherited priority the
/// kernel's fair scheduler lets them wait behind the server's busy workers, to send a request that
/// is due or to read an answer that has arrived, and since latency counts from when a request was
/// due, those waits count as the server's latency. In alternating runs of the paced row the p99
/// was ~8 ms (median of six) at nice 0 and ~3.5 ms at -10 (docs/benchmarks.md, session 20): on a
/// machine of its own, a client would not wait for the server's CPU. Lowering the value needs root
/// or `CAP_SYS_NICE`.
pub fn set_own_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: plain system calls about the calling thread itself; no memory is shared.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// One load thread: its connections as tasks of a single-threaded runtime.
fn drive(
    connections: Vec<usize>,
    requests: Arc<Vec<Bytes>>,
    addr: SocketAddr,
    step: usize,
    start: Instant,
    window: (Instant, Instant),
    rate: Option<f64>,
) -> Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for task in connections {
            // Each connection sends every `interval`, the connections staggered evenly within it.
            let pacing = rate.filter(|r| *r > 0.0).map(|rate| {
                let interval = Duration::from_secs_f64(step as f64 / rate);
                (start + interval.mul_f64(task as f64 / step as f64), interval)
            });
            tasks.spawn(connection_loop(addr, requests.clone(), task, step, window, pacing));
        }
        let mut total = Outcome::default();
        while let Some(joined) = tasks.join_next().await {
            total.merge(joined.context("a load task panicked")?);
        }
        Ok(total)
    })
}

/// One connection: request, whole response, next request, until the window closes. Task `first`
/// of `step` uses clients `first`, `first + step`, … so all tasks together cycle through every
/// client.
async fn connection_loop(
    addr: SocketAddr,
    requests: Arc<Vec<Bytes>>,
    first: usize,
    step: usize,
    (from, to): (Instant, Instant),
    mut pacing: Option<(Instant, Duration)>,
) -> Outcome {
    let mut out = Outcome::default();
    let mut next = first % requests.len();
    let mut stream: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(8192);
    loop {
        let begun = match &mut pacing {
            None => Instant::now(),
            Some((due, interval)) => {
                let this = *due;
                *due += *interval;
                if Instant::now() >= this {
                    // Behind because the server was slow: the wait counts as latency.
                    this
                } else {
                    // Early: sleep. The timer wakes up to a millisecond late, which is ours, not
                    // the server's, so measure from the actual send.
                    tokio::time::sleep_until(this).await;
                    Instant::now()
                }
            }
        };
        if begun >= to {
            break;
        }
        let conn = match stream.as_mut() {
            Some(s) => s,
            None => match connect(addr).await {
                Ok(s) => stream.insert(s),
                Err(e) => {
                    out.fail(format!("connect: {e:#}"));
                    // Do not spin when the server is gone.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let request = &requests[next];
        next = (next + step) % requests.len();
        match exchange(conn, request, &mut buf).await {
            Ok(answer) => {
                if answer.close {
                    stream = None;
                }
                let body = &buf[answer.body..];
                if answer.status == 200 && is_token(body) {
                    let done = Instant::now();
                    if done >= from && done <= to {
                        out.record_ok(done - begun, (done - from).as_secs());
                    }
                } else {
                    *out.non_200.entry(answer.status).or_default() += 1;
                    if out.first_failure.is_none() {
                        let text = String::from_utf8_lossy(body);
                        out.first_failure = Some(format!("HTTP {}: {text}", answer.status));
                    }
                }
            }
            Err(e) => {
                out.fail(format!("request: {e:#}"));
                stream = None;
            }
        }
    }
    out
}

/// A 200 that does not carry a token is a failure, not a fast answer.
fn is_token(body: &[u8]) -> bool {
    body.starts_with(b"{") && body.windows(15).any(|w| w == b"\"access_token\":")
}

async fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    // Requests are single small writes; Nagle would only add delay.
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A response read whole into the buffer: its status, where its body starts, and whether the
/// server closes the connection after it.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    body: usize,
    close: bool,
}

/// Sends `request` and reads its whole response into `buf` (cleared first).
async fn exchange(stream: &mut TcpStream, request: &[u8], buf: &mut Vec<u8>) -> Result<Answer> {
    stream.write_all(request).await?;
    buf.clear();
    loop {
        if stream.read_buf(buf).await? == 0 {
            bail!("the server closed the connection mid-response");
        }
        if let Some((answer, length)) = parse_head(buf)? {
            let end = answer.body + length;
            while buf.len() < end {
                if stream.read_buf(buf).await? == 0 {
                    bail!("the server closed the connection mid-body");
                }
            }
            if buf.len() > end {
                // Nothing was pipelined, so nothing may follow the response.
                bail!("{} unexpected bytes after a response", buf.len() - end);
            }
            return Ok(answer);
        }
    }
}

/// The response head in `buf`, once it is complete, with the body's length. Only
/// `Content-Length` bodies: the server sends nothing else to these requests.
fn parse_head(buf: &[u8]) -> Result<Option<(Answer, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = response.parse(buf)? else {
        return Ok(None);
    };
    let status = response.code.ok_or_else(|| anyhow!("a response without a status"))?;
    let (mut length, mut close) = (None, response.version == Some(0));
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(header.value).context("content-length")?;
            length = Some(text.trim().parse::<usize>().context("content-length")?);
        } else if header.name.eq_ignore_ascii_case("connection") {
            close = header.value.eq_ignore_ascii_case(b"close");
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("a response with transfer-encoding, which the load generator does not read");
        }
    }
    let length = length.ok_or_else(|| anyhow!("a response without content-length"))?;
    Ok(Some((Answer { status, body: head, close }, length)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Answer, Outcome, parse_head, set_own_nice, token_request};

    #[test]
    fn a_nice_value_applies_to_the_calling_thread_only() {
        fn own() -> i32 {
            // SAFETY: a plain system call about the calling thread.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
        }
        // Raising the value needs no privilege, so this runs as any user.
        let before = own();
        let inside = std::thread::spawn(move || {
            set_own_nice(before + 3).unwrap();
            own()
        })
        .join()
        .unwrap();
        assert_eq!(inside, before + 3);
        assert_eq!(own(), before, "the spawning thread keeps its priority");
    }

    #[test]
    fn slow_answers_count_by_second_and_merge_second_by_second() {
        let mut a = Outcome::default();
        a.record_ok(Duration::from_millis(2), 0);
        a.record_ok(Duration::from_millis(6), 0);
        a.record_ok(Duration::from_millis(30), 2);
        assert_eq!(a.slow, [1, 0, 1]);
        let mut b = Outcome::default();
        b.record_ok(Duration::from_millis(5), 1);
        b.record_ok(Duration::from_millis(7), 3);
        assert_eq!(b.slow, [0, 0, 0, 1], "5 ms itself is within the bound");
        a.merge(b);
        assert_eq!(a.slow, [1, 0, 1, 1]);
        assert_eq!(a.ok, 5);
    }

    #[test]
    fn form_bodies_are_encoded() {
        let body = super::token_form("abc", "s+/=", "https://a.example/", Some("bench-org"));
        assert_eq!(
            &body[..],
            b"grant_type=client_credentials&client_id=abc&client_secret=s%2B%2F%3D\
              &audience=https%3A%2F%2Fa.example%2F&organization=bench-org"
        );
    }

    #[test]
    fn requests_carry_their_body_length() {
        let request = token_request("127.0.0.1:9", b"a=1");
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut parsed = httparse::Request::new(&mut headers);
        let head = match parsed.parse(&request) {
            Ok(httparse::Status::Complete(head)) => head,
            other => panic!("{other:?}"),
        };
        assert_eq!(parsed.method, Some("POST"));
        assert_eq!(parsed.path, Some("/oauth/token"));
        let length = parsed.headers.iter().find(|h| h.name == "content-length").map(|h| h.value);
        assert_eq!(length, Some(&b"3"[..]));
        assert_eq!(&request[head..], b"a=1");
    }

    #[test]
    fn response_heads_parse_only_when_complete() {
        let whole = b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 2\r\nretry-after: 4\r\n\r\n{}";
        assert_eq!(parse_head(&whole[..20]).unwrap(), None);
        let (answer, length) = parse_head(whole).unwrap().unwrap();
        assert_eq!(answer, Answer { status: 429, body: whole.len() - 2, close: false });
        assert_eq!(length, 2);
        let closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 0\r\n\r\n";
        assert!(parse_head(closing).unwrap().unwrap().0.close);
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(parse_head(chunked).is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }
}
