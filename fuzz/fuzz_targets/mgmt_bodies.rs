//! Management API request bodies: `parse_body::<T>` for every body type, then the conversion or
//! validation the handler runs next (`into_*`, `apply` on an existing object, `validate`), then
//! the response view. None of it may panic, and a refused PATCH must leave the object exactly as
//! it was (ARCHITECTURE.md: "A PATCH is validated completely before anything is mutated").
//!
//! Byte 0 picks the body type (modulo the number of types); the rest is the body. PATCHes are
//! applied to objects built from full, valid create bodies, so every field has something to
//! change or remove. Selector `LIST_PARAMS` fuzzes list query strings instead.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ration_domain::{TenantSettings, UnixTime};
use ration_proto::mgmt::*;
use serde::de::DeserializeOwned;
use serde_json::json;

fn now() -> UnixTime {
    UnixTime::from_secs(1_767_225_600)
}

fn later() -> UnixTime {
    UnixTime::from_secs(1_767_225_600 + 3600)
}

/// Builds a fixture from a body that must be valid.
fn fixture<T: DeserializeOwned>(body: serde_json::Value) -> T {
    parse_body(body.to_string().as_bytes()).unwrap_or_else(|e| panic!("fixture body refused: {e:?}: {body}"))
}

fn client() -> ration_domain::Client {
    let body: ClientCreate = fixture(json!({
        "name": "Billing service",
        "description": "Reads invoices",
        "app_type": "non_interactive",
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_basic",
        "client_metadata": {"team": "billing", "tier": "gold"},
        "token_quota": {"client_credentials": {"enforce": true, "per_hour": 100, "per_day": 1000}},
        "default_organization": {"organization_id": "org_0000000000000001", "flows": ["client_credentials"]},
        "is_first_party": true,
    }));
    body.into_client("client_fuzz".into(), "hmac-sha256$v1$x".into(), now()).expect("fixture client")
}

fn resource_server() -> ration_domain::ResourceServer {
    let body: ResourceServerCreate = fixture(json!({
        "identifier": "https://api.example.com/",
        "name": "Example API",
        "scopes": [{"value": "read:things", "description": "Read"}, {"value": "write:things"}],
        "signing_alg": "RS256",
        "token_lifetime": 3600,
    }));
    body.into_resource_server("rs_fuzz".into(), "generated-secret-0123456789abcdef".into(), now())
        .expect("fixture resource server")
}

fn client_grant() -> ration_domain::ClientGrant {
    let body: ClientGrantCreate = fixture(json!({
        "client_id": "client_fuzz",
        "audience": "https://api.example.com/",
        "scope": ["read:things", "write:things"],
        "organization_usage": "allow",
        "allow_any_organization": false,
    }));
    body.into_grant("cgr_fuzz".into(), now()).expect("fixture client grant")
}

fn organization() -> ration_domain::Organization {
    let body: OrganizationCreate = fixture(json!({
        "name": "acme",
        "display_name": "Acme Corp",
        "token_quota": {"client_credentials": {"per_hour": 50}},
    }));
    body.into_organization("org_fuzz".into(), now()).expect("fixture organization")
}

fn log_stream() -> ration_domain::LogStream {
    let body: LogStreamCreate = fixture(json!({
        "name": "SIEM",
        "type": "http",
        "sink": {
            "httpEndpoint": "https://siem.example.com/ingest",
            "httpContentType": "application/json",
            "httpContentFormat": "JSONLINES",
            "httpAuthorization": "Bearer abc",
            "httpCustomHeaders": [{"header": "X-Tenant", "value": "acme"}],
        },
        "filters": [{"type": "category", "name": "auth.token_exchange.success"}],
    }));
    body.into_log_stream("lst_fuzz".into(), now()).expect("fixture log stream")
}

fn action() -> ration_domain::Action {
    let body: ActionCreate = fixture(json!({
        "name": "add-claims",
        "supported_triggers": [{"id": "credentials-exchange", "version": "v2"}],
        "code": "exports.onExecuteCredentialsExchange = async (event, api) => {};",
        "runtime": "node22",
        "secrets": [{"name": "KEY", "value": "s3cret"}],
    }));
    body.into_action("act_fuzz".into(), now()).expect("fixture action")
}

/// Applies a PATCH: a refusal must leave the object untouched.
fn patch<T: Clone + PartialEq + std::fmt::Debug, R, E>(
    object: &mut T,
    apply: impl FnOnce(&mut T) -> Result<R, E>,
) -> bool {
    let before = object.clone();
    let ok = apply(object).is_ok();
    if !ok {
        assert_eq!(*object, before, "a refused PATCH changed the object");
    }
    ok
}

/// Exercises the error path: every refusal renders as Auth0's error body.
fn refused(e: BodyError) {
    let body = e.to_error_body();
    assert_eq!(body.status_code, 400, "{body:?}");
    let _ = serde_json::to_string(&body).expect("error body serializes");
    let _ = e.error_code();
}

const TYPES: u8 = 17;
const LIST_PARAMS: u8 = 16;

fn run(selector: u8, body: &[u8]) -> Result<(), BodyError> {
    match selector % TYPES {
        0 => {
            let input: ClientCreate = parse_body(body)?;
            let creds = input.client_authentication_methods.as_ref().map(|c| c.new_credentials()).transpose()?;
            let c = input.into_client("client_new".into(), "hash".into(), now())?;
            let ids: Vec<String> = creds.iter().flatten().enumerate().map(|(i, _)| format!("cred_{i}")).collect();
            let _ = client_view_with_credentials(&c, Some("secret"), &ids).to_string();
        }
        1 => {
            let input: ClientPatch = parse_body(body)?;
            if let Some(Some(cam)) = &input.client_authentication_methods {
                let _ = cam.referenced_ids();
            }
            let mut c = client();
            patch(&mut c, |c| input.apply(c, later()));
            let _ = client_view(&c, None).to_string();
        }
        2 => {
            let input: ResourceServerCreate = parse_body(body)?;
            let rs = input.into_resource_server("rs_new".into(), "generated-secret-0123456789abcdef".into(), now())?;
            let _ = resource_server_view(&rs).to_string();
        }
        3 => {
            let input: ResourceServerPatch = parse_body(body)?;
            let mut rs = resource_server();
            patch(&mut rs, |rs| input.apply(rs, "generated-secret-0123456789abcdef".into(), later()));
            let _ = resource_server_view(&rs).to_string();
        }
        4 => {
            let input: ClientGrantCreate = parse_body(body)?;
            let g = input.into_grant("cgr_new".into(), now())?;
            let _ = client_grant_view(&g).to_string();
        }
        5 => {
            let input: ClientGrantPatch = parse_body(body)?;
            let mut g = client_grant();
            patch(&mut g, |g| input.apply(g, later()));
            let _ = client_grant_view(&g).to_string();
        }
        6 => {
            let input: OrganizationCreate = parse_body(body)?;
            let o = input.into_organization("org_new".into(), now())?;
            let _ = organization_view(&o).to_string();
        }
        7 => {
            let input: OrganizationPatch = parse_body(body)?;
            let mut o = organization();
            patch(&mut o, |o| input.apply(o, later()));
            let _ = organization_view(&o).to_string();
        }
        8 => {
            let input: TenantSettingsPatch = parse_body(body)?;
            let mut settings = TenantSettings::default();
            patch(&mut settings, |s| input.clone().apply(s));
            // Again on settings that already have every field.
            if let Ok(full) = parse_body::<TenantSettingsPatch>(
                json!({
                    "friendly_name": "Acme", "support_email": "ops@example.com",
                    "support_url": "https://example.com/help", "default_audience": "https://api.example.com/",
                    "default_token_quota": {"clients": {"client_credentials": {"per_day": 10}}}
                })
                .to_string()
                .as_bytes(),
            ) {
                full.apply(&mut settings).expect("fixture tenant settings");
                patch(&mut settings, |s| input.apply(s));
            }
            let _ = tenant_settings_view(&settings).to_string();
        }
        9 => {
            let input: LogStreamCreate = parse_body(body)?;
            let s = input.into_log_stream("lst_new".into(), now())?;
            let _ = log_stream_view(&s, json!({})).to_string();
        }
        10 => {
            let input: LogStreamPatch = parse_body(body)?;
            let mut s = log_stream();
            patch(&mut s, |s| input.apply(s, later()));
            let _ = log_stream_view(&s, json!({})).to_string();
        }
        11 => {
            let input: ActionCreate = parse_body(body)?;
            let a = input.into_action("act_new".into(), now())?;
            let _ = action_view(&a, None).to_string();
        }
        12 => {
            let input: ActionPatch = parse_body(body)?;
            let mut a = action();
            patch(&mut a, |a| input.apply(a, later()));
            let _ = action_view(&a, None).to_string();
        }
        13 => {
            let input: BindingsPatch = parse_body(body)?;
            input.validate()?;
        }
        14 => {
            let input: CredentialBody = parse_body(body)?;
            let _ = input.clone().into_new("")?;
            let _ = input.into_new("client_authentication_methods.private_key_jwt.credentials[0]")?;
        }
        15 => {
            let input: OrganizationGrantAdd = parse_body(body)?;
            assert!(!format!("{input:?}").is_empty());
        }
        LIST_PARAMS => {
            let query = String::from_utf8_lossy(body);
            let (params, _filters) = parse_list_params(Some(&query))?;
            let _ = params.start();
            let _ = list_response(Vec::new(), "clients", &params, 0).to_string();
        }
        _ => unreachable!(),
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    if let Err(e) = run(selector, body) {
        refused(e);
    }
});
