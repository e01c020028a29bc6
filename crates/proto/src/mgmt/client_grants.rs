//! Client grants: `POST/PATCH /api/v2/client-grants` bodies and the grant object (auth0.md §3.3).

use ration_domain::{ClientGrant, OrganizationUsage, UnixTime};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::BodyError;
use super::json::{check_len, check_unique, double_option, immutable, non_null, parse_enum};

const ORGANIZATION_USAGES: [&str; 3] = ["deny", "allow", "require"];
/// Ration implements machine-to-machine access only; Auth0's `user` grants do not apply.
const SUBJECT_TYPE: &str = "client";
const MAX_ID_LEN: usize = 255;
const MAX_AUDIENCE_LEN: usize = 600;
const MAX_SCOPE_LEN: usize = 280;

/// `POST /api/v2/client-grants` body.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct ClientGrantCreate {
    /// The client that may get tokens (its existence is the server's check).
    pub client_id: String,
    /// The API identifier (its existence is the server's check).
    pub audience: String,
    /// The most scopes tokens may carry; default none.
    #[serde(default, deserialize_with = "non_null")]
    pub scope: Option<Vec<String>>,
    /// `deny` (default), `allow` or `require`.
    #[serde(default, deserialize_with = "non_null")]
    pub organization_usage: Option<String>,
    /// Any organization may be used, not only those associated with the grant; default false.
    #[serde(default, deserialize_with = "non_null")]
    pub allow_any_organization: Option<bool>,
    /// Only `client` is accepted.
    #[serde(default, deserialize_with = "non_null")]
    pub subject_type: Option<String>,
}

impl ClientGrantCreate {
    /// Validates the body and builds the grant.
    pub fn into_grant(self, id: String, now: UnixTime) -> Result<ClientGrant, BodyError> {
        check_len("client_id", &self.client_id, 1, MAX_ID_LEN)?;
        check_len("audience", &self.audience, 1, MAX_AUDIENCE_LEN)?;
        let scope = self.scope.map(check_scope).transpose()?.unwrap_or_default();
        let organization_usage = self.organization_usage.as_deref().map(check_usage).transpose()?.unwrap_or_default();
        if let Some(t) = &self.subject_type
            && t != SUBJECT_TYPE
        {
            return Err(BodyError::field("subject_type", format_args!("must be one of: {SUBJECT_TYPE}")));
        }
        Ok(ClientGrant {
            id,
            client_id: self.client_id,
            audience: self.audience,
            scope,
            organization_usage,
            allow_any_organization: self.allow_any_organization.unwrap_or(false),
            is_system: false,
            created_at: now,
            updated_at: now,
        })
    }
}

/// `PATCH /api/v2/client-grants/{id}` body: at least one property; `null` resets a field to its
/// default. `client_id`, `audience` and `subject_type` may not appear.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct ClientGrantPatch {
    /// Replaces the scopes; `null` means none.
    #[serde(default, deserialize_with = "double_option")]
    pub scope: Option<Option<Vec<String>>>,
    /// New organization usage; `null` means `deny`.
    #[serde(default, deserialize_with = "double_option")]
    pub organization_usage: Option<Option<String>>,
    /// New flag; `null` means false.
    #[serde(default, deserialize_with = "double_option")]
    pub allow_any_organization: Option<Option<bool>>,
    #[serde(default, rename = "client_id", deserialize_with = "immutable")]
    _client_id: (),
    #[serde(default, rename = "audience", deserialize_with = "immutable")]
    _audience: (),
    #[serde(default, rename = "subject_type", deserialize_with = "immutable")]
    _subject_type: (),
}

impl ClientGrantPatch {
    /// Validates every field, then applies them all (nothing changes on error). Whether the grant
    /// may be changed at all (`is_system`) is the caller's check.
    pub fn apply(self, g: &mut ClientGrant, now: UnixTime) -> Result<(), BodyError> {
        if self == ClientGrantPatch::default() {
            // Auth0's schema has minProperties 1 here, unlike the client PATCH.
            return Err(BodyError::payload(
                "the body must have at least 1 property (scope, organization_usage, allow_any_organization)",
            ));
        }
        let scope = self.scope.map(|s| s.map(check_scope).transpose()).transpose()?;
        let usage = self.organization_usage.map(|u| u.as_deref().map(check_usage).transpose()).transpose()?;

        if let Some(v) = scope {
            g.scope = v.unwrap_or_default();
        }
        if let Some(v) = usage {
            g.organization_usage = v.unwrap_or_default();
        }
        if let Some(v) = self.allow_any_organization {
            g.allow_any_organization = v.unwrap_or(false);
        }
        g.updated_at = now;
        Ok(())
    }
}

fn check_scope(scope: Vec<String>) -> Result<Vec<String>, BodyError> {
    for (i, s) in scope.iter().enumerate() {
        let path = format!("scope[{i}]");
        check_len(&path, s, 1, MAX_SCOPE_LEN)?;
        if s.contains(char::is_whitespace) {
            return Err(BodyError::field(&path, "must not contain whitespace"));
        }
    }
    // Duplicates would repeat scopes in tokens that get "all granted scopes".
    check_unique(scope.iter().map(String::as_str), |i| format!("scope[{i}]"))?;
    Ok(scope)
}

fn check_usage(usage: &str) -> Result<OrganizationUsage, BodyError> {
    parse_enum("organization_usage", usage, OrganizationUsage::parse, &ORGANIZATION_USAGES)
}

/// Auth0's client-grant object.
pub fn client_grant_view(g: &ClientGrant) -> Value {
    json!({
        "id": g.id,
        "client_id": g.client_id,
        "audience": g.audience,
        "scope": g.scope,
        "organization_usage": g.organization_usage.as_str(),
        "allow_any_organization": g.allow_any_organization,
        "is_system": g.is_system,
        "subject_type": SUBJECT_TYPE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mgmt::parse_body;

    fn t(secs: i64) -> UnixTime {
        UnixTime::from_secs(secs)
    }

    fn create(body: &str) -> Result<ClientGrant, BodyError> {
        parse_body::<ClientGrantCreate>(body.as_bytes())?.into_grant("cgr_1".into(), t(1))
    }

    fn patch(g: &mut ClientGrant, body: &str) -> Result<(), BodyError> {
        parse_body::<ClientGrantPatch>(body.as_bytes())?.apply(g, t(2))
    }

    fn msg<T>(r: Result<T, BodyError>) -> String {
        match r {
            Ok(_) => "accepted".to_owned(),
            Err(e) => e.message.trim_start_matches("Payload validation error: ").to_owned(),
        }
    }

    #[test]
    fn create_and_view() {
        let g = create(r#"{"client_id":"c1","audience":"https://api"}"#).unwrap();
        assert_eq!(
            client_grant_view(&g),
            json!({
                "id": "cgr_1", "client_id": "c1", "audience": "https://api", "scope": [],
                "organization_usage": "deny", "allow_any_organization": false, "is_system": false,
                "subject_type": "client"
            })
        );
        let g = create(
            r#"{"client_id":"c1","audience":"a","scope":["read","write"],"organization_usage":"require",
                "allow_any_organization":true,"subject_type":"client"}"#,
        )
        .unwrap();
        assert_eq!(g.scope, vec!["read", "write"]);
        assert_eq!((g.organization_usage, g.allow_any_organization), (OrganizationUsage::Require, true));
    }

    #[test]
    fn create_validation_names_fields() {
        let cases: Vec<(String, String)> = vec![
            (r#"{"audience":"a"}"#.into(), "'client_id' is required".into()),
            (r#"{"client_id":"c"}"#.into(), "'audience' is required".into()),
            (
                r#"{"client_id":"","audience":"a"}"#.into(),
                "'client_id' must be between 1 and 255 characters long".into(),
            ),
            (
                r#"{"client_id":"c","audience":""}"#.into(),
                "'audience' must be between 1 and 600 characters long".into(),
            ),
            (r#"{"client_id":"c","audience":"a","scope":"read"}"#.into(), "'scope' must be an array".into()),
            (
                r#"{"client_id":"c","audience":"a","scope":["read",""]}"#.into(),
                "'scope[1]' must be between 1 and 280 characters long".into(),
            ),
            (
                format!(r#"{{"client_id":"c","audience":"a","scope":["{}"]}}"#, "s".repeat(281)),
                "'scope[0]' must be between 1 and 280 characters long".into(),
            ),
            (
                r#"{"client_id":"c","audience":"a","scope":["a b"]}"#.into(),
                "'scope[0]' must not contain whitespace".into(),
            ),
            (r#"{"client_id":"c","audience":"a","scope":["a","a"]}"#.into(), "'scope[1]' duplicates 'a'".into()),
            (
                r#"{"client_id":"c","audience":"a","organization_usage":"sometimes"}"#.into(),
                "'organization_usage' must be one of: deny, allow, require".into(),
            ),
            (
                r#"{"client_id":"c","audience":"a","allow_any_organization":"true"}"#.into(),
                "'allow_any_organization' must be a boolean".into(),
            ),
            (
                r#"{"client_id":"c","audience":"a","subject_type":"user"}"#.into(),
                "'subject_type' must be one of: client".into(),
            ),
            (
                r#"{"client_id":"c","audience":"a","allow_all_scopes":true}"#.into(),
                "Additional properties not allowed: 'allow_all_scopes'".into(),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(msg(create(&body)), want, "{body}");
        }
    }

    #[test]
    fn patch_rules() {
        let base = create(
            r#"{"client_id":"c1","audience":"a","scope":["x"],"organization_usage":"allow","allow_any_organization":true}"#,
        )
        .unwrap();

        let mut g = base.clone();
        patch(&mut g, r#"{"scope":["y","z"]}"#).unwrap();
        assert_eq!(g.scope, vec!["y", "z"]);
        assert_eq!((g.organization_usage, g.allow_any_organization), (OrganizationUsage::Allow, true));
        assert_eq!(g.updated_at, t(2));

        let mut g = base.clone();
        patch(&mut g, r#"{"scope":null,"organization_usage":null,"allow_any_organization":null}"#).unwrap();
        assert!(g.scope.is_empty());
        assert_eq!((g.organization_usage, g.allow_any_organization), (OrganizationUsage::Deny, false));

        let cases: &[(&str, &str)] = &[
            ("{}", "the body must have at least 1 property (scope, organization_usage, allow_any_organization)"),
            (r#"{"client_id":"c2"}"#, "'client_id' cannot be changed"),
            (r#"{"scope":[],"audience":"b"}"#, "'audience' cannot be changed"),
            (r#"{"subject_type":"client"}"#, "'subject_type' cannot be changed"),
            (
                r#"{"scope":["ok"],"organization_usage":"never"}"#,
                "'organization_usage' must be one of: deny, allow, require",
            ),
            (
                r#"{"organization_usage":"allow","scope":["a",""]}"#,
                "'scope[1]' must be between 1 and 280 characters long",
            ),
            (r#"{"allow_any_organization":1}"#, "'allow_any_organization' must be a boolean"),
            (r#"{"is_system":false}"#, "Additional properties not allowed: 'is_system'"),
        ];
        for (body, want) in cases {
            let mut g = base.clone();
            assert_eq!(msg(patch(&mut g, body)), *want, "{body}");
            assert_eq!(g, base, "{body} changed the grant");
        }
    }
}
