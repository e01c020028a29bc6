//! The load generator: C keep-alive HTTP/1.1 connections, each one task sending `POST
//! /oauth/token` back to back for a warm-up and then a measured window.
//!
//! Why hyper's connection API and not a pooled client: one connection per task makes the
//! connection count exact (the "32 connections"), and skipping the pool keeps the load
//! generator's own CPU cost low, which matters when it shares two cores with the server.
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

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::hist::Histogram;

/// What to send: one pre-encoded form body per configured client, used in rotation.
pub struct Workload {
    pub addr: SocketAddr,
    pub bodies: Vec<Bytes>,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Total requests per second over all connections; `None`: as fast as answers come.
    pub rate: Option<f64>,
}

/// What the measured window saw (the warm-up is discarded).
#[derive(Default)]
pub struct Outcome {
    /// Latency of every 200 completed inside the window, in nanoseconds.
    pub latency: Histogram,
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

    fn merge(&mut self, other: Outcome) {
        self.latency.merge(&other.latency);
        self.ok += other.ok;
        for (status, n) in other.non_200 {
            *self.non_200.entry(status).or_default() += n;
        }
        self.errors += other.errors;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
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

/// Runs the workload. `at_window_start` and `at_window_end` are called (on this task) when the
/// measured window opens and closes, to sample the server's CPU time.
pub async fn run(
    work: Workload,
    mut at_window_start: impl FnMut(),
    mut at_window_end: impl FnMut(),
) -> Result<Outcome> {
    let start = Instant::now();
    let window = (start + work.warmup, start + work.warmup + work.duration);
    let bodies = Arc::new(work.bodies);
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..work.connections {
        let bodies = bodies.clone();
        let (addr, step) = (work.addr, work.connections);
        // Each connection sends every `interval`, the connections staggered evenly within it.
        let pacing = work.rate.filter(|r| *r > 0.0).map(|rate| {
            let interval = Duration::from_secs_f64(step as f64 / rate);
            (start + interval.mul_f64(task as f64 / step as f64), interval)
        });
        tasks.spawn(connection_loop(addr, bodies, task, step, window, pacing));
    }
    tokio::time::sleep_until(window.0).await;
    at_window_start();
    tokio::time::sleep_until(window.1).await;
    at_window_end();
    let mut total = Outcome::default();
    while let Some(joined) = tasks.join_next().await {
        total.merge(joined.context("a load task panicked")?);
    }
    Ok(total)
}

/// One connection: request, whole response, next request, until the window closes. Task `first`
/// of `step` uses clients `first`, `first + step`, … so all tasks together cycle through every
/// client.
async fn connection_loop(
    addr: SocketAddr,
    bodies: Arc<Vec<Bytes>>,
    first: usize,
    step: usize,
    (from, to): (Instant, Instant),
    mut pacing: Option<(Instant, Duration)>,
) -> Outcome {
    let mut out = Outcome::default();
    let host = addr.to_string();
    let mut next = first % bodies.len();
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
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
        let conn = match sender.as_mut() {
            Some(s) => s,
            None => match connect(addr).await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    out.fail(format!("connect: {e:#}"));
                    // Do not spin when the server is gone.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let body = bodies[next].clone();
        next = (next + step) % bodies.len();
        match exchange(conn, &host, body).await {
            Ok((200, _)) => {
                let done = Instant::now();
                if done >= from && done <= to {
                    out.ok += 1;
                    out.latency.record(u64::try_from((done - begun).as_nanos()).unwrap_or(u64::MAX));
                }
            }
            Ok((status, text)) => {
                *out.non_200.entry(status).or_default() += 1;
                if out.first_failure.is_none() {
                    out.first_failure = Some(format!("HTTP {status}: {}", String::from_utf8_lossy(&text)));
                }
            }
            Err(e) => {
                out.fail(format!("request: {e:#}"));
                sender = None;
            }
        }
    }
    out
}

impl Outcome {
    fn fail(&mut self, what: String) {
        self.errors += 1;
        if self.first_failure.is_none() {
            self.first_failure = Some(what);
        }
    }
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    // Requests are single small writes; Nagle would only add delay.
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes; errors surface on the sender.
        let _ = connection.await;
    });
    Ok(sender)
}

async fn exchange(sender: &mut SendRequest<Full<Bytes>>, host: &str, body: Bytes) -> Result<(u16, Bytes)> {
    sender.ready().await?;
    let request = Request::post("/oauth/token")
        .header(HOST, host)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(body))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    // Read the whole body: the connection is reusable only after it, and a token is what we
    // measure.
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    #[test]
    fn form_bodies_are_encoded() {
        let body = super::token_form("abc", "s+/=", "https://a.example/", Some("bench-org"));
        assert_eq!(
            &body[..],
            b"grant_type=client_credentials&client_id=abc&client_secret=s%2B%2F%3D\
              &audience=https%3A%2F%2Fa.example%2F&organization=bench-org"
        );
    }
}
