//! Shipping one batch to a sink, in the configured format.

use std::io::Write as _;
use std::time::Duration;

use ration_domain::{ContentFormat, HttpSink, Sink};
use ration_store::StoredEvent;

/// How far a batch got.
pub struct Outcome {
    /// Events accepted by the sink, from the start of the batch.
    pub delivered: usize,
    pub error: Option<String>,
    /// The sink's `Retry-After`, if it sent one with a failure.
    pub retry_after: Option<Duration>,
}

/// Auth0's envelope: `{"log_id": …, "data": {event}}`. Events are stored as JSON text, spliced in
/// without re-parsing.
fn envelope(event: &StoredEvent) -> String {
    let mut out = String::with_capacity(event.json.len() + event.log_id.len() + 24);
    out.push_str("{\"log_id\":");
    out.push_str(&serde_json::Value::from(event.log_id.as_str()).to_string());
    out.push_str(",\"data\":");
    out.push_str(&event.json);
    out.push('}');
    out
}

pub async fn deliver(http: &reqwest::Client, sink: &Sink, batch: &[StoredEvent]) -> Outcome {
    match sink {
        Sink::Http(h) => deliver_http(http, h, batch).await,
        Sink::File { path } => deliver_file(path, batch).await,
    }
}

async fn deliver_http(http: &reqwest::Client, sink: &HttpSink, batch: &[StoredEvent]) -> Outcome {
    let bodies: Vec<(usize, String)> = match sink.format {
        ContentFormat::JsonLines => {
            vec![(batch.len(), batch.iter().map(envelope).collect::<Vec<_>>().join("\n") + "\n")]
        }
        ContentFormat::JsonArray => {
            vec![(batch.len(), format!("[{}]", batch.iter().map(envelope).collect::<Vec<_>>().join(",")))]
        }
        ContentFormat::JsonObject => batch.iter().map(|e| (1, envelope(e))).collect(),
    };
    let mut delivered = 0;
    for (n, body) in bodies {
        let mut request = http.post(&sink.endpoint).header("content-type", &sink.content_type).body(body);
        if let Some(auth) = &sink.authorization {
            request = request.header("authorization", auth);
        }
        for (name, value) in &sink.custom_headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => delivered += n,
            Ok(response) => {
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                return Outcome {
                    delivered,
                    error: Some(format!("sink answered HTTP {}", response.status().as_u16())),
                    retry_after,
                };
            }
            // Without the URL: it may carry credentials in its query string.
            Err(e) => return Outcome { delivered, error: Some(e.without_url().to_string()), retry_after: None },
        }
    }
    Outcome { delivered, error: None, retry_after: None }
}

/// Appends JSON lines and flushes them to the disk before the cursor moves past them.
async fn deliver_file(path: &str, batch: &[StoredEvent]) -> Outcome {
    let mut text = String::new();
    for event in batch {
        text.push_str(&envelope(event));
        text.push('\n');
    }
    let path = path.to_owned();
    let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        file.write_all(text.as_bytes())?;
        file.sync_data()
    })
    .await;
    match written {
        Ok(Ok(())) => Outcome { delivered: batch.len(), error: None, retry_after: None },
        Ok(Err(e)) => Outcome { delivered: 0, error: Some(format!("cannot write the file: {e}")), retry_after: None },
        Err(e) => Outcome { delivered: 0, error: Some(format!("file writer failed: {e}")), retry_after: None },
    }
}
