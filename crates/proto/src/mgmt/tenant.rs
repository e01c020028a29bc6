//! Tenant settings: `GET/PATCH /api/v2/tenants/settings` (auth0.md §3.5).

use ration_domain::{DefaultTokenQuota, TenantSettings};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::BodyError;
use super::json::{check_len, double_option, non_null};
use super::quota::{DefaultTokenQuotaBody, default_quota_view};

const MAX_TEXT_LEN: usize = 255;
const MAX_URL_LEN: usize = 2048;
const MAX_AUDIENCE_LEN: usize = 600;

/// `PATCH /api/v2/tenants/settings` body.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct TenantSettingsPatch {
    /// The tenant's display name, 1 to 255 characters.
    #[serde(default, deserialize_with = "non_null")]
    pub friendly_name: Option<String>,
    /// An e-mail address.
    #[serde(default, deserialize_with = "non_null")]
    pub support_email: Option<String>,
    /// An `http(s)://` URL.
    #[serde(default, deserialize_with = "non_null")]
    pub support_url: Option<String>,
    /// Audience for token requests that name none; `null` or `""` removes it (the Auth0
    /// dashboard clears it with an empty string). Whether an API with this identifier exists is
    /// the server's check.
    #[serde(default, deserialize_with = "double_option")]
    pub default_audience: Option<Option<String>>,
    /// Replaces all default quotas; `null` removes them.
    #[serde(default, deserialize_with = "double_option")]
    pub default_token_quota: Option<Option<DefaultTokenQuotaBody>>,
}

impl TenantSettingsPatch {
    /// Validates every field, then applies them all (nothing changes on error).
    pub fn apply(self, settings: &mut TenantSettings) -> Result<(), BodyError> {
        if let Some(name) = &self.friendly_name {
            check_len("friendly_name", name, 1, MAX_TEXT_LEN)?;
        }
        if let Some(email) = &self.support_email {
            check_email(email)?;
        }
        if let Some(url) = &self.support_url {
            check_url(url)?;
        }
        let default_audience = self.default_audience.map(|a| a.filter(|a| !a.is_empty()));
        if let Some(Some(audience)) = &default_audience {
            check_len("default_audience", audience, 1, MAX_AUDIENCE_LEN)?;
        }
        let default_token_quota: Option<DefaultTokenQuota> = self
            .default_token_quota
            .map(|d| d.map(|d| d.into_defaults("default_token_quota")).transpose())
            .transpose()?
            .map(Option::unwrap_or_default);

        if let Some(v) = self.friendly_name {
            settings.friendly_name = Some(v);
        }
        if let Some(v) = self.support_email {
            settings.support_email = Some(v);
        }
        if let Some(v) = self.support_url {
            settings.support_url = Some(v);
        }
        if let Some(v) = default_audience {
            settings.default_audience = v;
        }
        if let Some(v) = default_token_quota {
            settings.default_token_quota = v;
        }
        Ok(())
    }
}

/// A plausibility check, not RFC 5322: one `@` with text on both sides and no whitespace.
fn check_email(email: &str) -> Result<(), BodyError> {
    check_len("support_email", email, 3, MAX_TEXT_LEN)?;
    let valid = match email.split_once('@') {
        Some((local, domain)) => !local.is_empty() && !domain.is_empty() && !domain.contains('@'),
        None => false,
    };
    if !valid || email.contains(char::is_whitespace) {
        return Err(BodyError::field("support_email", "must be an email address"));
    }
    Ok(())
}

fn check_url(url: &str) -> Result<(), BodyError> {
    check_len("support_url", url, 1, MAX_URL_LEN)?;
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        url.get(8..)
    } else if lower.starts_with("http://") {
        url.get(7..)
    } else {
        None
    };
    if rest.is_none_or(str::is_empty) || url.contains(char::is_whitespace) {
        return Err(BodyError::field("support_url", "must be an http:// or https:// URL"));
    }
    Ok(())
}

/// Auth0's tenant settings object: the fields that are set, plus `flags: {}`.
pub fn tenant_settings_view(settings: &TenantSettings) -> Value {
    let mut o = Map::new();
    for (key, value) in [
        ("friendly_name", &settings.friendly_name),
        ("support_email", &settings.support_email),
        ("support_url", &settings.support_url),
        ("default_audience", &settings.default_audience),
    ] {
        if let Some(v) = value {
            o.insert(key.to_owned(), Value::from(v.as_str()));
        }
    }
    if let Some(d) = default_quota_view(&settings.default_token_quota) {
        o.insert("default_token_quota".to_owned(), d);
    }
    o.insert("flags".to_owned(), Value::Object(Map::new()));
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use ration_domain::{QuotaLimits, TokenQuota};
    use serde_json::json;

    use super::*;
    use crate::mgmt::parse_body;

    fn patch(s: &mut TenantSettings, body: &str) -> Result<(), BodyError> {
        parse_body::<TenantSettingsPatch>(body.as_bytes())?.apply(s)
    }

    #[test]
    fn patch_and_view() {
        let mut s = TenantSettings::default();
        assert_eq!(tenant_settings_view(&s), json!({"flags": {}}));
        patch(
            &mut s,
            r#"{"friendly_name":"Acme","support_email":"ops@acme.test","support_url":"https://acme.test/help",
                "default_audience":"https://api",
                "default_token_quota":{"clients":{"client_credentials":{"per_hour":100}},
                                       "organizations":{"client_credentials":{"per_day":5,"enforce":false}}}}"#,
        )
        .unwrap();
        assert_eq!(
            s.default_token_quota.organizations,
            Some(TokenQuota { enforce: false, limits: QuotaLimits { per_day: Some(5), ..Default::default() } })
        );
        assert_eq!(
            tenant_settings_view(&s),
            json!({
                "friendly_name": "Acme", "support_email": "ops@acme.test", "support_url": "https://acme.test/help",
                "default_audience": "https://api",
                "default_token_quota": {
                    "clients": {"client_credentials": {"enforce": true, "per_hour": 100}},
                    "organizations": {"client_credentials": {"enforce": false, "per_day": 5}}
                },
                "flags": {}
            })
        );

        // An object replaces all defaults; absent fields stay.
        patch(&mut s, r#"{"default_token_quota":{"clients":{"client_credentials":{"per_hour":1}}}}"#).unwrap();
        assert!(s.default_token_quota.organizations.is_none());
        assert_eq!(s.friendly_name.as_deref(), Some("Acme"));

        let mut cleared = s.clone();
        patch(&mut cleared, r#"{"default_token_quota":null,"default_audience":null}"#).unwrap();
        assert_eq!((cleared.default_token_quota.clients, cleared.default_audience), (None, None));
        let mut cleared = s.clone();
        patch(&mut cleared, r#"{"default_audience":""}"#).unwrap();
        assert_eq!(cleared.default_audience, None);

        let before = s.clone();
        patch(&mut s, "{}").unwrap();
        assert_eq!(s, before);
    }

    #[test]
    fn validation_names_fields() {
        let cases: &[(&str, &str)] = &[
            (r#"{"friendly_name":""}"#, "'friendly_name' must be between 1 and 255 characters long"),
            (r#"{"friendly_name":null}"#, "'friendly_name' must be a string"),
            (r#"{"support_email":"nope"}"#, "'support_email' must be an email address"),
            (r#"{"support_email":"a@b@c"}"#, "'support_email' must be an email address"),
            (r#"{"support_email":"a b@c"}"#, "'support_email' must be an email address"),
            (r#"{"support_url":"ftp://x"}"#, "'support_url' must be an http:// or https:// URL"),
            (r#"{"support_url":"https://"}"#, "'support_url' must be an http:// or https:// URL"),
            (r#"{"default_audience":5}"#, "'default_audience' must be a string"),
            (r#"{"default_token_quota":{}}"#, "'default_token_quota' must have at least 1 property"),
            (
                r#"{"default_token_quota":{"clients":{"client_credentials":{"per_hour":0}}}}"#,
                "'default_token_quota.clients.client_credentials.per_hour' must be an integer between 1 and 2147483647",
            ),
            (
                r#"{"friendly_name":"ok","default_token_quota":{"organizations":{"client_credentials":{}}}}"#,
                "'default_token_quota.organizations.client_credentials' must have at least 1 property",
            ),
            (r#"{"flags":{}}"#, "Additional properties not allowed: 'flags'"),
        ];
        for (body, want) in cases {
            let mut s = TenantSettings::default();
            let e = patch(&mut s, body).unwrap_err();
            assert_eq!(e.message, format!("Payload validation error: {want}"), "{body}");
            assert_eq!(s, TenantSettings::default(), "{body} changed the settings");
        }
        let mut s = TenantSettings::default();
        patch(&mut s, r#"{"support_url":"HTTP://acme.test"}"#).unwrap();
    }
}
