//! A real third-party OAuth 2 client library (`oauth2` v5) fetching tokens from Ration.

use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenType};
use oauth2::{
    AuthType, ClientId, ClientSecret, HttpRequest, HttpResponse, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use serde_json::json;

use crate::harness::*;

const API: &str = "https://api.example.com/third-party";

/// `oauth2`'s async HTTP client contract, implemented with reqwest 0.13.
fn http_client(
    client: reqwest::Client,
) -> impl Fn(HttpRequest) -> std::pin::Pin<Box<dyn Future<Output = Result<HttpResponse, reqwest::Error>>>> {
    move |req: HttpRequest| {
        let client = client.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let mut rb = client.request(parts.method, parts.uri.to_string()).body(body);
            for (name, value) in parts.headers.iter() {
                rb = rb.header(name, value);
            }
            let resp = rb.send().await?;
            let mut builder = oauth2::http::Response::builder().status(resp.status());
            for (name, value) in resp.headers().iter() {
                builder = builder.header(name, value);
            }
            let body = resp.bytes().await?.to_vec();
            Ok(builder.body(body).expect("valid response"))
        })
    }
}

#[tokio::test]
async fn oauth2_crate_fetches_and_verifies_tokens() {
    let s = TestServer::start().await;
    let scopes = json!([{ "value": "read:x", "description": "r" }, { "value": "write:x", "description": "w" }]);
    s.create_api(API, json!({ "scopes": scopes })).await;
    let http =
        http_client(reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap());
    let token_url = TokenUrl::new(format!("{}/oauth/token", s.base_url())).unwrap();

    for (method, auth_type) in
        [("client_secret_basic", AuthType::BasicAuth), ("client_secret_post", AuthType::RequestBody)]
    {
        let (id, secret) =
            s.create_client(&format!("oauth2 crate {method}"), json!({ "token_endpoint_auth_method": method })).await;
        s.create_grant(&id, API, &["read:x", "write:x"]).await;
        let client = BasicClient::new(ClientId::new(id.clone()))
            .set_client_secret(ClientSecret::new(secret.clone()))
            .set_auth_type(auth_type.clone())
            .set_token_uri(token_url.clone());

        // All granted scopes by default.
        let resp = client
            .exchange_client_credentials()
            .add_extra_param("audience", API)
            .request_async(&http)
            .await
            .unwrap_or_else(|e| panic!("oauth2 crate ({method}) failed: {e:?}"));
        assert_eq!(*resp.token_type(), BasicTokenType::Bearer);
        assert_eq!(resp.expires_in().map(|d| d.as_secs()), Some(86400));
        let got: Vec<String> = resp.scopes().expect("scope returned").iter().map(|s| s.to_string()).collect();
        assert_eq!(got, vec!["read:x", "write:x"]);
        let (_, claims) = s.verify(resp.access_token().secret(), API).await;
        assert_cc_claims(&claims, s.issuer(), &id, API, "read:x write:x", 86400);

        // A requested subset.
        let resp = client
            .exchange_client_credentials()
            .add_scope(Scope::new("write:x".into()))
            .add_extra_param("audience", API)
            .request_async(&http)
            .await
            .unwrap_or_else(|e| panic!("oauth2 crate ({method}) failed: {e:?}"));
        let (_, claims) = s.verify(resp.access_token().secret(), API).await;
        assert_cc_claims(&claims, s.issuer(), &id, API, "write:x", 86400);

        // Errors come back as parsed OAuth error responses.
        let bad = BasicClient::new(ClientId::new(id.clone()))
            .set_client_secret(ClientSecret::new(format!("{secret}-wrong")))
            .set_auth_type(auth_type.clone())
            .set_token_uri(token_url.clone());
        match bad.exchange_client_credentials().add_extra_param("audience", API).request_async(&http).await {
            Err(RequestTokenError::ServerResponse(e)) => {
                assert_eq!(*e.error(), BasicErrorResponseType::Extension("access_denied".into()));
                assert_eq!(e.error_description().map(String::as_str), Some("Unauthorized"));
            }
            other => panic!("wrong secret ({method}): expected an access_denied error response, got {other:?}"),
        }
        match client
            .exchange_client_credentials()
            .add_scope(Scope::new("admin:x".into()))
            .add_extra_param("audience", API)
            .request_async(&http)
            .await
        {
            Err(RequestTokenError::ServerResponse(e)) => {
                assert_eq!(*e.error(), BasicErrorResponseType::Extension("access_denied".into()));
                assert_eq!(
                    e.error_description().map(String::as_str),
                    Some("Client has not been granted scopes: admin:x")
                );
            }
            other => panic!("ungranted scope ({method}): expected an access_denied error response, got {other:?}"),
        }
    }
}
