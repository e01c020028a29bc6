//! Reading request bodies with a size limit.
//!
//! Why drain: a server that answers 413 without reading the rest of a large upload makes many
//! HTTP clients fail with a broken pipe instead of showing the 413. So an oversized body is read
//! on (and discarded) up to a cap and for at most a moment, then the answer goes out; anything
//! beyond the cap just gets the connection closed.

use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body_util::BodyExt as _;

/// Discard at most this much of an oversized body before answering.
const DRAIN_MAX: usize = 4 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(2);

pub enum ReadError {
    TooLarge,
    /// The client went away or sent a broken body.
    Broken,
}

pub async fn read_limited(mut body: Body, limit: usize) -> Result<Bytes, ReadError> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return Err(ReadError::Broken) };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                drain(body).await;
                return Err(ReadError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

async fn drain(mut body: Body) {
    let deadline = tokio::time::Instant::now() + DRAIN_TIME;
    let mut drained = 0usize;
    while drained < DRAIN_MAX {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => drained += frame.data_ref().map_or(0, |d| d.len()),
            _ => return,
        }
    }
}
