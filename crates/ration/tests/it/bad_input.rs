//! Hostile and malformed input to `POST /oauth/token`: every case gets a 4xx in the OAuth error
//! shape, and the server keeps serving afterwards.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

const API: &str = "https://api.example.com/bad-input";
const LIMIT: usize = 64 * 1024;

async fn setup() -> (TestServer, String, String) {
    let s = TestServer::start().await;
    let (id, secret) = s.m2m_setup(API, &["read:x"], &["read:x"]).await;
    (s, id, secret)
}

/// Asserts a 4xx in the OAuth error shape; returns (status, error, description).
#[track_caller]
fn assert_4xx_oauth(r: &Resp, what: &str) -> (u16, String, String) {
    assert!((400..500).contains(&r.status), "{what}: expected a 4xx, got {} {}", r.status, r.json);
    let (e, d) = assert_oauth_error_shape(r);
    (r.status, e, d)
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let (mut s, id, secret) = setup().await;
    let creds =
        format!("grant_type=client_credentials&client_id={id}&client_secret={secret}&audience={}", urlencode(API));

    let form = format!("{creds}&pad={}", "a".repeat(LIMIT + 1));
    let r = s.post_raw("/oauth/token", Some("application/x-www-form-urlencoded"), form.into_bytes(), &[]).await;
    assert_eq!(r.status, 413, "{}", r.json);
    let (e, _) = assert_oauth_error_shape(&r);
    assert_eq!(e, "invalid_request");
    assert_still_serving(&mut s).await;

    let body = json!({ "grant_type": "client_credentials", "client_id": id, "client_secret": secret, "audience": API, "pad": "b".repeat(LIMIT + 1) });
    let r = s.token_json(&body).await;
    assert_eq!(r.status, 413, "{}", r.json);
    let (e, _) = assert_oauth_error_shape(&r);
    assert_eq!(e, "invalid_request");
    assert_still_serving(&mut s).await;

    // Much larger (1 MiB) is refused the same way.
    let form = format!("{creds}&pad={}", "c".repeat(1 << 20));
    let r = s.post_raw("/oauth/token", Some("application/x-www-form-urlencoded"), form.into_bytes(), &[]).await;
    assert_eq!(r.status, 413, "{}", r.json);
    assert_oauth_error_shape(&r);
    assert_still_serving(&mut s).await;

    // Chunked (no Content-Length): the limit is enforced while reading.
    let (status, body) = chunked_post(
        &s,
        "/oauth/token",
        "application/x-www-form-urlencoded",
        &format!("{creds}&pad={}", "d".repeat(LIMIT + 1)),
    )
    .await;
    assert_eq!(status, 413, "chunked oversized body: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("413 body is JSON: {body:?}"));
    assert_eq!(v["error"], "invalid_request", "{v}");
    assert!(v["error_description"].is_string(), "{v}");
    assert_still_serving(&mut s).await;
}

#[tokio::test]
async fn non_utf8_bodies_are_rejected() {
    let (mut s, id, secret) = setup().await;
    let mut form =
        format!("grant_type=client_credentials&client_id={id}&client_secret={secret}&audience=").into_bytes();
    form.extend_from_slice(b"\xff\xfe\xfd");
    let r = s.post_raw("/oauth/token", Some("application/x-www-form-urlencoded"), form, &[]).await;
    let (status, e, _) = assert_4xx_oauth(&r, "raw non-UTF-8 form");
    assert_eq!((status, e.as_str()), (400, "invalid_request"));
    assert_still_serving(&mut s).await;

    // Percent-encoded bytes that are not UTF-8.
    let form = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}&audience=%FF%FE%FD");
    let r = s.post_raw("/oauth/token", Some("application/x-www-form-urlencoded"), form.into_bytes(), &[]).await;
    assert_4xx_oauth(&r, "percent-encoded non-UTF-8 form");
    assert_still_serving(&mut s).await;

    let mut body =
        format!(r#"{{"grant_type":"client_credentials","client_id":"{id}","client_secret":"{secret}","audience":""#)
            .into_bytes();
    body.extend_from_slice(b"\xff\xfe\"}");
    let r = s.post_raw("/oauth/token", Some("application/json"), body, &[]).await;
    let (status, e, _) = assert_4xx_oauth(&r, "non-UTF-8 JSON");
    assert_eq!((status, e.as_str()), (400, "invalid_request"));
    assert_still_serving(&mut s).await;
}

#[tokio::test]
async fn wrong_content_types_are_rejected() {
    let (mut s, id, secret) = setup().await;
    let form =
        format!("grant_type=client_credentials&client_id={id}&client_secret={secret}&audience={}", urlencode(API));
    for ct in [
        Some("text/plain"),
        Some("application/xml"),
        Some("multipart/form-data; boundary=xyz"),
        Some("application/octet-stream"),
        None,
    ] {
        let r = s.post_raw("/oauth/token", ct, form.clone().into_bytes(), &[]).await;
        let (status, e, _) = assert_4xx_oauth(&r, &format!("content type {ct:?}"));
        assert!(status == 400 || status == 415, "content type {ct:?}: status {status}");
        assert_eq!(e, "invalid_request", "content type {ct:?}");
        assert_still_serving(&mut s).await;
    }
    // A JSON body labelled as a form, and the reverse.
    let json_body = serde_json::to_vec(
        &json!({ "grant_type": "client_credentials", "client_id": id, "client_secret": secret, "audience": API }),
    )
    .unwrap();
    let r = s.post_raw("/oauth/token", Some("application/x-www-form-urlencoded"), json_body, &[]).await;
    let (status, e, _) = assert_4xx_oauth(&r, "JSON labelled as form");
    assert_eq!((status, e.as_str()), (400, "invalid_request"));
    let r = s.post_raw("/oauth/token", Some("application/json"), form.clone().into_bytes(), &[]).await;
    let (status, e, _) = assert_4xx_oauth(&r, "form labelled as JSON");
    assert_eq!((status, e.as_str()), (400, "invalid_request"));
    // Content types with parameters are still understood.
    let r = s
        .post_raw("/oauth/token", Some("application/x-www-form-urlencoded; charset=UTF-8"), form.into_bytes(), &[])
        .await;
    assert_token_response(&r, "read:x", 86400);
    assert_still_serving(&mut s).await;
}

#[tokio::test]
async fn malformed_json_bodies_are_rejected() {
    let (mut s, id, secret) = setup().await;
    for (what, body) in [
        ("truncated", br#"{"grant_type":"client_credentials","#.to_vec()),
        ("array", br#"["grant_type","client_credentials"]"#.to_vec()),
        ("string", br#""client_credentials""#.to_vec()),
        ("empty", Vec::new()),
        ("trailing garbage", format!(r#"{{"grant_type":"client_credentials","client_id":"{id}","client_secret":"{secret}","audience":"{API}"}} x"#).into_bytes()),
    ] {
        let r = s.post_raw("/oauth/token", Some("application/json"), body, &[]).await;
        let (status, e, _) = assert_4xx_oauth(&r, what);
        assert_eq!((status, e.as_str()), (400, "invalid_request"), "{what}");
        assert_still_serving(&mut s).await;
    }
    // A nested object where a string belongs names the parameter.
    let body =
        json!({ "grant_type": "client_credentials", "client_id": id, "client_secret": secret, "audience": { "x": 1 } });
    check_token_error(&s, &TokenReq::Json(body), 400, "invalid_request", &Desc::contains("audience")).await;
    // Repeated keys are repeated parameters.
    let body = format!(
        r#"{{"grant_type":"client_credentials","client_id":"{id}","client_secret":"{secret}","audience":"{API}","audience":"https://other.example.com/"}}"#
    );
    let req = TokenReq::Raw { content_type: Some("application/json".into()), body: body.into_bytes(), headers: vec![] };
    check_token_error(&s, &req, 400, "invalid_request", &Desc::contains("audience")).await;
    assert_still_serving(&mut s).await;
}

#[tokio::test]
async fn empty_and_repeated_form_parameters() {
    let (mut s, id, secret) = setup().await;
    let r = s.post_raw("/oauth/token", Some("application/x-www-form-urlencoded"), Vec::new(), &[]).await;
    assert_eq!(r.status, 400, "{}", r.json);
    let (e, d) = assert_oauth_error_shape(&r);
    assert_eq!(e, "invalid_request");
    assert_eq!(d, "Missing required parameter: grant_type");
    for name in ["grant_type", "client_id", "client_secret", "audience", "scope"] {
        let mut pairs = vec![
            ("grant_type", "client_credentials"),
            ("client_id", id.as_str()),
            ("client_secret", secret.as_str()),
            ("audience", API),
            ("scope", "read:x"),
        ];
        let dup = *pairs.iter().find(|(k, _)| *k == name).unwrap();
        pairs.push(dup);
        check_token_error(
            &s,
            &TokenReq::Form(owned_pairs(&pairs)),
            400,
            "invalid_request",
            &Desc::is(format!("Duplicate parameter: {name}")),
        )
        .await;
    }
    assert_still_serving(&mut s).await;
}

#[tokio::test]
async fn very_long_values_are_rejected() {
    let (mut s, id, secret) = setup().await;
    let long = "x".repeat(5000);
    let long_url = format!("https://{}.example.com/", "a".repeat(5000));
    for name in ["grant_type", "client_id", "client_secret", "audience", "scope"] {
        let value = if name == "audience" { long_url.as_str() } else { long.as_str() };
        let mut pairs = vec![
            ("grant_type", "client_credentials"),
            ("client_id", id.as_str()),
            ("client_secret", secret.as_str()),
            ("audience", API),
        ];
        match pairs.iter_mut().find(|(k, _)| *k == name) {
            Some(p) => p.1 = value,
            None => pairs.push((name, value)),
        }
        for req in [
            TokenReq::Form(owned_pairs(&pairs)),
            TokenReq::Json(serde_json::Value::Object(pairs.iter().map(|(k, v)| (k.to_string(), json!(v))).collect())),
        ] {
            let r = req.send(&s).await;
            assert_4xx_oauth(&r, &format!("5000-byte {name}"));
            assert_still_serving(&mut s).await;
        }
    }
    // A long secret in HTTP Basic.
    let r = s.token_basic_form(&id, &long, &[("grant_type", "client_credentials"), ("audience", API)]).await;
    assert_4xx_oauth(&r, "5000-byte Basic secret");
    // A long parameter name.
    let pairs = [
        ("grant_type", "client_credentials"),
        ("client_id", id.as_str()),
        ("client_secret", secret.as_str()),
        ("audience", API),
        (long.as_str(), "1"),
    ];
    let r = s.token_form(&pairs).await;
    assert!(r.status == 200 || (400..500).contains(&r.status), "long parameter name: {} {}", r.status, r.json);
    if r.status != 200 {
        assert_oauth_error_shape(&r);
    }
    assert_still_serving(&mut s).await;
}

#[tokio::test]
async fn malformed_basic_authorization() {
    let (mut s, _id, _secret) = setup().await;
    let body = form_body(&[("grant_type", "client_credentials"), ("audience", API)]).into_bytes();
    for h in ["Basic !!!not-base64!!!", "Basic bm9jb2xvbg==", "Basic ", "Bearer abc"] {
        let r = s
            .post_raw("/oauth/token", Some("application/x-www-form-urlencoded"), body.clone(), &[("authorization", h)])
            .await;
        let (status, _, _) = assert_4xx_oauth(&r, &format!("Authorization: {h:?}"));
        assert!(status == 400 || status == 401, "Authorization {h:?}: {status}");
        assert_still_serving(&mut s).await;
    }
}

#[tokio::test]
async fn management_api_survives_bad_bodies() {
    let (mut s, _, _) = setup().await;
    for (ct, body) in [
        (Some("application/json"), b"\xff\xfe".to_vec()),
        (Some("application/json"), b"[1,2,3]".to_vec()),
        (Some("application/json"), format!(r#"{{"name":"{}"}}"#, "n".repeat(5000)).into_bytes()),
    ] {
        let r = s.mgmt_raw(Method::POST, "/clients", ct, body).await;
        assert!((400..500).contains(&r.status), "{ct:?}: {} {}", r.status, r.json);
        assert_eq!(r.json["statusCode"], r.status, "Auth0 error shape: {}", r.json);
        assert!(r.json["message"].is_string(), "{}", r.json);
        assert_still_serving(&mut s).await;
    }
}

/// POSTs `body` with `Transfer-Encoding: chunked` over a raw TCP connection; returns (status, body).
async fn chunked_post(s: &TestServer, path: &str, content_type: &str, body: &str) -> (u16, String) {
    let addr = s.base_url().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.as_bytes().chunks(8192) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    // The server may answer (and close) before reading everything: write errors are fine.
    let _ = stream.write_all(&req).await;
    let mut resp = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => resp.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => {
                if resp.is_empty() {
                    panic!("connection failed before any response: {e}");
                }
                break;
            }
            Err(_) => panic!("no response to chunked request within 30 s"),
        }
    }
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("HTTP response head: {text:?}"));
    let status: u16 =
        head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("status line: {head:?}"));
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked { dechunk(rest) } else { rest.to_owned() };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
