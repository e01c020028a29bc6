//! The global `fetch`: the allow-list check and the request itself (reqwest, on the worker's
//! current-thread tokio runtime).

use std::time::Duration;

use reqwest::Url;

use crate::FetchPolicy;

/// Largest response body handed to an Action.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// [`FetchPolicy`] parsed once: lower-case host and, for `host:port` entries, the port.
#[derive(Debug, Clone, Default)]
pub(crate) struct Allow {
    entries: Vec<(String, Option<u16>)>,
}

impl Allow {
    pub(crate) fn new(policy: &FetchPolicy) -> Allow {
        let entries = policy.allow.iter().filter_map(|entry| parse_entry(entry.trim())).collect();
        Allow { entries }
    }

    /// Whether `url` may be fetched: a bare host allows the URL's default port only; `host:port`
    /// allows exactly that port.
    pub(crate) fn allows(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        self.entries.iter().any(|(allowed, port)| {
            *allowed == host
                && match port {
                    None => url.port().is_none(),
                    Some(port) => url.port_or_known_default() == Some(*port),
                }
        })
    }
}

fn parse_entry(entry: &str) -> Option<(String, Option<u16>)> {
    if entry.is_empty() {
        return None;
    }
    let entry = entry.to_ascii_lowercase();
    if entry.starts_with('[') {
        let close = entry.find(']')?;
        let host = entry[..=close].to_owned();
        let rest = &entry[close + 1..];
        return match rest.strip_prefix(':') {
            None if rest.is_empty() => Some((host, None)),
            Some(port) => Some((host, Some(port.parse().ok()?))),
            None => None,
        };
    }
    match entry.split_once(':') {
        None => Some((entry, None)),
        Some((host, port)) => Some((host.to_owned(), Some(port.parse().ok()?))),
    }
}

/// `host` or `host:port` as the URL names it, for messages.
pub(crate) fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// A validated request, ready to send.
#[derive(Debug)]
pub(crate) struct FetchRequest {
    pub(crate) url: Url,
    pub(crate) method: reqwest::Method,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Option<String>,
}

/// Parses and checks what the Action passed to `fetch`; the error is the `TypeError` message.
pub(crate) fn prepare(
    allow: &Allow,
    url: &str,
    method: &str,
    headers_json: &str,
    body: Option<String>,
) -> Result<FetchRequest, String> {
    let url = Url::parse(url).map_err(|e| format!("fetch: invalid URL '{url}': {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("fetch: unsupported URL scheme '{}' (only http and https)", url.scheme()));
    }
    if !allow.allows(&url) {
        return Err(format!("fetch to {} is not allowed", authority(&url)));
    }
    let method =
        reqwest::Method::from_bytes(method.as_bytes()).map_err(|_| format!("fetch: invalid method '{method}'"))?;
    let headers: Vec<(String, String)> =
        serde_json::from_str(headers_json).map_err(|e| format!("fetch: invalid headers: {e}"))?;
    Ok(FetchRequest { url, method, headers, body })
}

/// The HTTP client of one worker: no redirects (an allowed host must not bounce the Action to a
/// host that is not), no proxy from the environment (the allow-list is about where requests go).
pub(crate) fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("fetch is unavailable: {e}"))
}

/// Sends the request; `Ok` carries the JSON the prelude turns into a `Response`, `Err` the
/// message of the `TypeError` the promise rejects with.
pub(crate) async fn send(client: reqwest::Client, request: FetchRequest) -> Result<String, String> {
    let FetchRequest { url, method, headers, body } = request;
    let mut builder = client.request(method, url);
    let mut has_content_type = false;
    for (name, value) in headers {
        has_content_type |= name.eq_ignore_ascii_case("content-type");
        builder = builder.header(name, value);
    }
    if let Some(body) = body {
        // As in Node: a string body defaults to text/plain.
        if !has_content_type {
            builder = builder.header("content-type", "text/plain;charset=UTF-8");
        }
        builder = builder.body(body);
    }
    let mut response = builder.send().await.map_err(|e| format!("fetch failed: {}", error_chain(&e)))?;
    let status = response.status();
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let final_url = response.url().to_string();
    let mut body = Vec::new();
    while let Some(chunk) =
        response.chunk().await.map_err(|e| format!("fetch failed while reading the body: {}", error_chain(&e)))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(format!("fetch failed: the response body exceeds {MAX_BODY_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    let payload = serde_json::json!({
        "status": status.as_u16(),
        "statusText": status.canonical_reason().unwrap_or(""),
        "url": final_url,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    Ok(payload.to_string())
}

/// reqwest's errors hide the useful part (e.g. "connection refused") in their sources.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(entries: &[&str]) -> Allow {
        Allow::new(&FetchPolicy { allow: entries.iter().map(|s| s.to_string()).collect() })
    }

    #[test]
    fn host_and_port_rules() {
        let a = allow(&["API.example.com", "127.0.0.1:8080", "[::1]:9000"]);
        let ok = |u: &str| a.allows(&Url::parse(u).unwrap());
        assert!(ok("https://api.example.com/x"));
        assert!(ok("https://api.example.com:443/x"));
        assert!(!ok("https://api.example.com:8443/x"));
        assert!(ok("http://127.0.0.1:8080/"));
        assert!(!ok("http://127.0.0.1:8081/"));
        assert!(!ok("http://127.0.0.1/"));
        assert!(ok("http://[::1]:9000/"));
        assert!(!ok("https://other.example.com/"));
        assert!(!allow(&[]).allows(&Url::parse("http://localhost/").unwrap()));
    }

    #[test]
    fn refusal_message_names_the_host() {
        let err = prepare(&allow(&[]), "http://evil.example:81/x", "GET", "[]", None).unwrap_err();
        assert_eq!(err, "fetch to evil.example:81 is not allowed");
    }
}
