//! Token quotas on the wire (auth0.md §1.2): `token_quota` on clients and organizations and the
//! tenant's `default_token_quota`. `per_minute` is Ration's extension.

use ration_domain::quota::MAX_QUOTA;
use ration_domain::{DefaultTokenQuota, QuotaLimits, TokenQuota};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::BodyError;
use super::json::{BoundedU32, non_null};

/// A quota limit: an integer from 1 to 2147483647, as Auth0's schema requires.
pub type QuotaInt = BoundedU32<1, MAX_QUOTA>;

/// `token_quota`: `{"client_credentials": {...}}`, with `client_credentials` required.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct TokenQuotaBody {
    /// The only quota kind Auth0 defines.
    pub client_credentials: ClientCredentialsQuotaBody,
}

/// `token_quota.client_credentials`: at least one property.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct ClientCredentialsQuotaBody {
    /// Reject over-quota requests (`true`, the default) or only count and warn.
    #[serde(default, deserialize_with = "non_null")]
    pub enforce: Option<bool>,
    /// Ration extension: tokens per UTC minute.
    #[serde(default, deserialize_with = "non_null")]
    pub per_minute: Option<QuotaInt>,
    /// Tokens per UTC hour.
    #[serde(default, deserialize_with = "non_null")]
    pub per_hour: Option<QuotaInt>,
    /// Tokens per UTC day.
    #[serde(default, deserialize_with = "non_null")]
    pub per_day: Option<QuotaInt>,
}

impl TokenQuotaBody {
    /// Validates and converts; `path` is where the body sits (e.g. `token_quota`), for messages.
    pub fn into_quota(self, path: &str) -> Result<TokenQuota, BodyError> {
        let cc = self.client_credentials;
        if cc == ClientCredentialsQuotaBody::default() {
            return Err(BodyError::field(&format!("{path}.client_credentials"), "must have at least 1 property"));
        }
        Ok(TokenQuota {
            // Auth0 documents `enforce` as defaulting to true.
            enforce: cc.enforce.unwrap_or(true),
            limits: QuotaLimits {
                per_minute: cc.per_minute.map(|v| v.0),
                per_hour: cc.per_hour.map(|v| v.0),
                per_day: cc.per_day.map(|v| v.0),
            },
        })
    }
}

/// `default_token_quota` on the tenant: `{"clients"?: ..., "organizations"?: ...}`, at least one.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct DefaultTokenQuotaBody {
    /// Default for clients without their own `token_quota`.
    #[serde(default, deserialize_with = "non_null")]
    pub clients: Option<TokenQuotaBody>,
    /// Default for organizations without their own `token_quota`.
    #[serde(default, deserialize_with = "non_null")]
    pub organizations: Option<TokenQuotaBody>,
}

impl DefaultTokenQuotaBody {
    /// Validates and converts. The result replaces all tenant defaults: a kind left out has no
    /// default afterwards, as with any object value in a PATCH.
    pub fn into_defaults(self, path: &str) -> Result<DefaultTokenQuota, BodyError> {
        if self.clients.is_none() && self.organizations.is_none() {
            return Err(BodyError::field(path, "must have at least 1 property"));
        }
        Ok(DefaultTokenQuota {
            clients: self.clients.map(|q| q.into_quota(&format!("{path}.clients"))).transpose()?,
            organizations: self.organizations.map(|q| q.into_quota(&format!("{path}.organizations"))).transpose()?,
        })
    }
}

/// Auth0's `token_quota` object for a quota: `{"client_credentials": {"enforce": .., "per_hour": ..}}`,
/// without the limits that are not set.
pub fn quota_view(q: &TokenQuota) -> Value {
    let mut cc = Map::new();
    cc.insert("enforce".to_owned(), Value::Bool(q.enforce));
    for (window, limit) in q.limits.iter() {
        cc.insert(window.name().to_owned(), Value::from(limit));
    }
    json!({ "client_credentials": cc })
}

/// `default_token_quota` for the tenant view, `None` when no default is set.
pub(crate) fn default_quota_view(d: &DefaultTokenQuota) -> Option<Value> {
    let mut out = Map::new();
    if let Some(q) = &d.clients {
        out.insert("clients".to_owned(), quota_view(q));
    }
    if let Some(q) = &d.organizations {
        out.insert("organizations".to_owned(), quota_view(q));
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mgmt::parse_body;

    fn quota(body: &str) -> Result<TokenQuota, BodyError> {
        parse_body::<TokenQuotaBody>(body.as_bytes())?.into_quota("token_quota")
    }

    fn q(enforce: bool, m: Option<u32>, h: Option<u32>, d: Option<u32>) -> TokenQuota {
        TokenQuota { enforce, limits: QuotaLimits { per_minute: m, per_hour: h, per_day: d } }
    }

    #[test]
    fn accepts_and_round_trips() {
        let cases: &[(&str, TokenQuota)] = &[
            (
                r#"{"client_credentials":{"per_hour":10,"per_day":50,"enforce":true}}"#,
                q(true, None, Some(10), Some(50)),
            ),
            (r#"{"client_credentials":{"per_hour":10}}"#, q(true, None, Some(10), None)),
            (r#"{"client_credentials":{"enforce":false}}"#, q(false, None, None, None)),
            (
                r#"{"client_credentials":{"per_minute":1,"per_day":2147483647}}"#,
                q(true, Some(1), None, Some(MAX_QUOTA)),
            ),
        ];
        for (body, want) in cases {
            let got = quota(body).unwrap();
            assert_eq!(got, *want, "{body}");
            // The view parses back to the same quota.
            let view = serde_json::to_vec(&quota_view(&got)).unwrap();
            assert_eq!(quota(std::str::from_utf8(&view).unwrap()).unwrap(), got, "{body}");
        }
        assert_eq!(
            quota_view(&q(true, None, Some(10), Some(50))),
            json!({"client_credentials": {"enforce": true, "per_hour": 10, "per_day": 50}})
        );
    }

    #[test]
    fn rejects_with_exact_paths() {
        let range = "must be an integer between 1 and 2147483647";
        let cases: Vec<(&str, String)> = vec![
            (r#"{}"#, "'client_credentials' is required".into()),
            (r#"{"client_credentials":{}}"#, "'token_quota.client_credentials' must have at least 1 property".into()),
            (r#"{"client_credentials":null}"#, "'client_credentials' must be an object".into()),
            (r#"{"client_credentials":{"per_hour":0}}"#, format!("'client_credentials.per_hour' {range}")),
            (r#"{"client_credentials":{"per_day":-5}}"#, format!("'client_credentials.per_day' {range}")),
            (r#"{"client_credentials":{"per_minute":1.5}}"#, format!("'client_credentials.per_minute' {range}")),
            (r#"{"client_credentials":{"per_hour":2147483648}}"#, format!("'client_credentials.per_hour' {range}")),
            (r#"{"client_credentials":{"per_hour":"10"}}"#, format!("'client_credentials.per_hour' {range}")),
            (r#"{"client_credentials":{"per_hour":null}}"#, format!("'client_credentials.per_hour' {range}")),
            (r#"{"client_credentials":{"enforce":1}}"#, "'client_credentials.enforce' must be a boolean".into()),
            (
                r#"{"client_credentials":{"per_week":1}}"#,
                "Additional properties not allowed: 'client_credentials.per_week'".into(),
            ),
            (r#"{"client_credentials":{"per_hour":1},"x":1}"#, "Additional properties not allowed: 'x'".into()),
        ];
        for (body, want) in cases {
            assert_eq!(quota(body).unwrap_err().message, format!("Payload validation error: {want}"), "{body}");
        }
    }

    #[test]
    fn defaults() {
        let parse =
            |body: &str| parse_body::<DefaultTokenQuotaBody>(body.as_bytes())?.into_defaults("default_token_quota");
        let d = parse(r#"{"clients":{"client_credentials":{"per_hour":5}}}"#).unwrap();
        assert_eq!(d.clients, Some(q(true, None, Some(5), None)));
        assert_eq!(d.organizations, None);
        assert_eq!(
            default_quota_view(&d),
            Some(json!({"clients": {"client_credentials": {"enforce": true, "per_hour": 5}}}))
        );
        assert_eq!(default_quota_view(&DefaultTokenQuota::default()), None);
        let cases: &[(&str, &str)] = &[
            ("{}", "'default_token_quota' must have at least 1 property"),
            (
                r#"{"organizations":{"client_credentials":{}}}"#,
                "'default_token_quota.organizations.client_credentials' must have at least 1 property",
            ),
            (
                r#"{"organizations":{"client_credentials":{"per_day":0}}}"#,
                "'organizations.client_credentials.per_day' must be an integer between 1 and 2147483647",
            ),
            (r#"{"clients":null}"#, "'clients' must be an object"),
            (r#"{"users":{}}"#, "Additional properties not allowed: 'users'"),
        ];
        for (body, want) in cases {
            assert_eq!(parse(body).unwrap_err().message, format!("Payload validation error: {want}"), "{body}");
        }
    }
}
