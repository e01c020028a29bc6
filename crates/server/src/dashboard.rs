//! The operator dashboard at `/dashboard/`: a small single-page app (plain HTML, CSS and JS, no
//! build step) embedded in the binary, so it works with no internet access.
//!
//! The page holds no server-side session. It signs in like any machine client: it POSTs Management
//! API client credentials to `/oauth/token`, keeps the access token (never the secret) in
//! `sessionStorage` and calls `/api/v2` with `Authorization: Bearer`. Everything it shows or changes
//! therefore goes through the same authorization and audit (`sapi`) as the API itself.
//!
//! Every response from here carries a strict Content-Security-Policy (`default-src 'self'`: no
//! inline script or style, no third-party origin), `X-Frame-Options: DENY`,
//! `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file of the dashboard.
struct Asset {
    /// The file name under `/dashboard/`.
    name: &'static str,
    /// Its `Content-Type`.
    content_type: &'static str,
    /// Its bytes, embedded at compile time.
    body: &'static [u8],
}

/// The page itself, served at `/dashboard/`.
const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("../dashboard/index.html"),
};

/// The other files, served at `/dashboard/<name>`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../dashboard/app.js"),
    },
    Asset { name: "app.css", content_type: "text/css; charset=utf-8", body: include_bytes!("../dashboard/app.css") },
    Asset { name: "favicon.svg", content_type: "image/svg+xml", body: include_bytes!("../dashboard/favicon.svg") },
];

/// The policy of every dashboard response: only this origin, nothing inline, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'; object-src 'none'";

/// The dashboard's routes, to be merged into the server's router: `/dashboard` redirects to
/// `/dashboard/` (so that the page's relative URLs resolve under it), which serves the page;
/// `/dashboard/<file>` serves the page's assets.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/dashboard", get(redirect_to_slash))
        .route("/dashboard/", get(index))
        .route("/dashboard/{file}", get(asset))
        .layer(axum::middleware::map_response(security_headers))
}

/// `/dashboard` → `/dashboard/`. The `Location` is relative, so this also works behind a proxy
/// that mounts the server under a path prefix.
async fn redirect_to_slash() -> Response {
    (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, HeaderValue::from_static("dashboard/"))]).into_response()
}

/// `/dashboard/`: the page.
async fn index() -> Response {
    serve(&INDEX)
}

/// `/dashboard/<file>`: the page (as `index.html`) and its assets; anything else is a 404.
async fn asset(Path(file): Path<String>) -> Response {
    match std::iter::once(&INDEX).chain(ASSETS).find(|a| a.name == file) {
        Some(a) => serve(a),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))],
            "Not Found\n",
        )
            .into_response(),
    }
}

/// An embedded file, with its content type.
fn serve(a: &Asset) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(a.content_type)),
            // Embedded files change only with the binary; revalidating is cheap.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        a.body,
    )
        .into_response()
}

/// Adds the security headers to every dashboard response (pages, assets, redirects and 404s).
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_embedded_and_the_page_loads_them() {
        let page = std::str::from_utf8(INDEX.body).unwrap_or_default();
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{} is empty", a.name);
            assert!(page.contains(&format!("\"{}\"", a.name)), "index.html does not reference {}", a.name);
        }
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let page = std::str::from_utf8(INDEX.body).unwrap_or_default();
        assert!(!page.contains("<script>"), "inline <script> would be blocked by the CSP");
        assert!(!page.contains("<style"), "inline <style> would be blocked by the CSP");
        assert!(!page.contains("style=\""), "style attributes would be blocked by the CSP");
        let handler = page.split(" on").skip(1).any(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(!handler, "inline event handlers would be blocked by the CSP");
        assert!(CONTENT_SECURITY_POLICY.starts_with("default-src 'self'"));
    }

    /// The status of `path` in a router shaped like the server's (nested API, fallback).
    async fn status(path: &str) -> u16 {
        use tower::ServiceExt as _;
        let req = axum::http::Request::builder().uri(path).body(axum::body::Body::empty()).unwrap_or_default();
        Router::new()
            .nest("/api/v2", Router::new().route("/x", get(|| async { "x" })))
            .merge(router())
            .fallback(|| async { StatusCode::IM_A_TEAPOT })
            .oneshot(req)
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn routes_redirect_then_serve_the_page_and_its_assets() {
        assert_eq!(status("/dashboard").await, 308);
        assert_eq!(status("/dashboard/").await, 200);
        assert_eq!(status("/dashboard/index.html").await, 200);
        assert_eq!(status("/dashboard/app.js").await, 200);
        assert_eq!(status("/dashboard/nope.js").await, 404);
        assert_eq!(status("/dashboard/a/b").await, 418, "deeper paths are not the dashboard's");
    }
}
