//! Organizations: `POST/PATCH /api/v2/organizations` bodies, the organization object, and the body
//! that associates a client grant with an organization (auth0.md §3.4).

use ration_domain::{Organization, TokenQuota, UnixTime};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::BodyError;
use super::json::{check_len, double_option, non_null};
use super::quota::{TokenQuotaBody, quota_view};

const MAX_NAME_LEN: usize = 50;
const MAX_DISPLAY_NAME_LEN: usize = 255;

/// `POST /api/v2/organizations` body.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct OrganizationCreate {
    /// 1 to 50 characters: lower-case letters, digits, `-` and `_`, starting with a letter or
    /// digit. Usable instead of the id in token requests.
    pub name: String,
    /// 1 to 255 characters.
    #[serde(default, deserialize_with = "non_null")]
    pub display_name: Option<String>,
    /// The organization's own quota.
    pub token_quota: Option<TokenQuotaBody>,
}

impl OrganizationCreate {
    /// Validates the body and builds the organization (name uniqueness is the server's check).
    pub fn into_organization(self, id: String, now: UnixTime) -> Result<Organization, BodyError> {
        Ok(Organization {
            id,
            name: check_name(self.name)?,
            display_name: self.display_name.map(check_display_name).transpose()?,
            token_quota: self.token_quota.map(|q| q.into_quota("token_quota")).transpose()?,
            created_at: now,
            updated_at: now,
        })
    }
}

/// `PATCH /api/v2/organizations/{id}` body. `display_name` and `token_quota` accept `null` to
/// remove them.
#[derive(Clone, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct OrganizationPatch {
    /// New name.
    #[serde(default, deserialize_with = "non_null")]
    pub name: Option<String>,
    /// New display name; `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    pub display_name: Option<Option<String>>,
    /// New quota; `null` removes it (the tenant default applies again).
    #[serde(default, deserialize_with = "double_option")]
    pub token_quota: Option<Option<TokenQuotaBody>>,
}

impl OrganizationPatch {
    /// Validates every field, then applies them all (nothing changes on error).
    pub fn apply(self, org: &mut Organization, now: UnixTime) -> Result<(), BodyError> {
        if self == OrganizationPatch::default() {
            return Ok(());
        }
        let name = self.name.map(check_name).transpose()?;
        let display_name = self.display_name.map(|d| d.map(check_display_name).transpose()).transpose()?;
        let token_quota: Option<Option<TokenQuota>> =
            self.token_quota.map(|q| q.map(|q| q.into_quota("token_quota")).transpose()).transpose()?;

        if let Some(v) = name {
            org.name = v;
        }
        if let Some(v) = display_name {
            org.display_name = v;
        }
        if let Some(v) = token_quota {
            org.token_quota = v;
        }
        org.updated_at = now;
        Ok(())
    }
}

/// `POST /api/v2/organizations/{id}/client-grants` body.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct OrganizationGrantAdd {
    /// The client grant to associate (its existence is the server's check).
    pub grant_id: String,
}

fn check_name(name: String) -> Result<String, BodyError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !first_ok || !rest_ok || name.len() > MAX_NAME_LEN {
        return Err(BodyError::field(
            "name",
            "must be 1 to 50 characters: lower-case letters, digits, '-' and '_', starting with a letter or digit",
        ));
    }
    Ok(name)
}

fn check_display_name(display_name: String) -> Result<String, BodyError> {
    check_len("display_name", &display_name, 1, MAX_DISPLAY_NAME_LEN)?;
    Ok(display_name)
}

/// Auth0's organization object.
pub fn organization_view(org: &Organization) -> Value {
    let mut o = Map::new();
    o.insert("id".to_owned(), Value::from(org.id.as_str()));
    o.insert("name".to_owned(), Value::from(org.name.as_str()));
    if let Some(d) = &org.display_name {
        o.insert("display_name".to_owned(), Value::from(d.as_str()));
    }
    if let Some(q) = &org.token_quota {
        o.insert("token_quota".to_owned(), quota_view(q));
    }
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::mgmt::parse_body;

    fn t(secs: i64) -> UnixTime {
        UnixTime::from_secs(secs)
    }

    fn create(body: &str) -> Result<Organization, BodyError> {
        parse_body::<OrganizationCreate>(body.as_bytes())?.into_organization("org_1".into(), t(1))
    }

    fn msg<T>(r: Result<T, BodyError>) -> String {
        match r {
            Ok(_) => "accepted".to_owned(),
            Err(e) => e.message.trim_start_matches("Payload validation error: ").to_owned(),
        }
    }

    const NAME_RULE: &str =
        "'name' must be 1 to 50 characters: lower-case letters, digits, '-' and '_', starting with a letter or digit";

    #[test]
    fn create_and_view() {
        let org = create(r#"{"name":"acme"}"#).unwrap();
        assert_eq!(organization_view(&org), json!({"id": "org_1", "name": "acme"}));
        let org = create(
            r#"{"name":"0acme_co-1","display_name":"Acme","token_quota":{"client_credentials":{"per_hour":50,"enforce":false}}}"#,
        )
        .unwrap();
        assert_eq!(
            organization_view(&org),
            json!({
                "id": "org_1", "name": "0acme_co-1", "display_name": "Acme",
                "token_quota": {"client_credentials": {"enforce": false, "per_hour": 50}}
            })
        );
    }

    #[test]
    fn create_validation_names_fields() {
        let cases: Vec<(String, &str)> = vec![
            ("{}".into(), "'name' is required"),
            (r#"{"name":""}"#.into(), NAME_RULE),
            (r#"{"name":"Acme"}"#.into(), NAME_RULE),
            (r#"{"name":"-acme"}"#.into(), NAME_RULE),
            (r#"{"name":"_acme"}"#.into(), NAME_RULE),
            (r#"{"name":"ac me"}"#.into(), NAME_RULE),
            (r#"{"name":"acmé"}"#.into(), NAME_RULE),
            (format!(r#"{{"name":"{}"}}"#, "a".repeat(51)), NAME_RULE),
            (r#"{"name":"a","display_name":""}"#.into(), "'display_name' must be between 1 and 255 characters long"),
            (
                format!(r#"{{"name":"a","display_name":"{}"}}"#, "d".repeat(256)),
                "'display_name' must be between 1 and 255 characters long",
            ),
            (
                r#"{"name":"a","token_quota":{"client_credentials":{"per_day":0}}}"#.into(),
                "'token_quota.client_credentials.per_day' must be an integer between 1 and 2147483647",
            ),
            (r#"{"name":"a","metadata":{}}"#.into(), "Additional properties not allowed: 'metadata'"),
        ];
        for (body, want) in cases {
            assert_eq!(msg(create(&body)), want, "{body}");
        }
        assert!(create(&format!(r#"{{"name":"{}"}}"#, "a".repeat(50))).is_ok());
    }

    #[test]
    fn patch_rules() {
        let base =
            create(r#"{"name":"acme","display_name":"Acme","token_quota":{"client_credentials":{"per_hour":5}}}"#)
                .unwrap();
        let patch =
            |org: &mut Organization, body: &str| parse_body::<OrganizationPatch>(body.as_bytes())?.apply(org, t(2));

        let mut org = base.clone();
        patch(&mut org, "{}").unwrap();
        assert_eq!(org, base);

        let mut org = base.clone();
        patch(&mut org, r#"{"name":"acme2","display_name":null,"token_quota":null}"#).unwrap();
        assert_eq!((org.name.as_str(), &org.display_name, &org.token_quota), ("acme2", &None, &None));
        assert_eq!(org.updated_at, t(2));

        let cases: &[(&str, &str)] = &[
            (r#"{"name":"ACME"}"#, NAME_RULE),
            (r#"{"name":null}"#, "'name' must be a string"),
            (
                r#"{"display_name":"ok","token_quota":{"client_credentials":{}}}"#,
                "'token_quota.client_credentials' must have at least 1 property",
            ),
            (r#"{"id":"org_2"}"#, "Additional properties not allowed: 'id'"),
        ];
        for (body, want) in cases {
            let mut org = base.clone();
            assert_eq!(msg(patch(&mut org, body)), *want, "{body}");
            assert_eq!(org, base, "{body} changed the organization");
        }
    }

    #[test]
    fn grant_add_body() {
        let add: OrganizationGrantAdd = parse_body(br#"{"grant_id":"cgr_1"}"#).unwrap();
        assert_eq!(add.grant_id, "cgr_1");
        assert_eq!(msg(parse_body::<OrganizationGrantAdd>(b"{}")), "'grant_id' is required");
    }
}
