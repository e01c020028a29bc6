//! Auth0's rules for `api.accessToken.setCustomClaim`: which names are silently ignored, and the
//! size cap on the whole set.

/// Largest serialized custom-claims object (Auth0: 100 KB).
pub(crate) const MAX_CLAIMS_BYTES: usize = 100 * 1024;

/// Claims Auth0 never lets an Action set (auth0.md §4.3), plus `scope`, which the token path owns.
const RESERVED: &[&str] = &[
    "acr",
    "act",
    "active",
    "amr",
    "at_hash",
    "ath",
    "attest",
    "aud",
    "auth_time",
    "authorization_details",
    "azp",
    "c_hash",
    "client_id",
    "cnf",
    "cty",
    "dest",
    "entitlements",
    "events",
    "exp",
    "groups",
    "gty",
    "htm",
    "htu",
    "iat",
    "internalService",
    "iss",
    "jcard",
    "jku",
    "jti",
    "jwe",
    "jwk",
    "kid",
    "may_act",
    "mky",
    "nbf",
    "nonce",
    "object_id",
    "org_id",
    "org_name",
    "orig",
    "origid",
    "permissions",
    "roles",
    "rph",
    "s_hash",
    "scope",
    "sid",
    "sip_callid",
    "sip_cseq_num",
    "sip_date",
    "sip_from_tag",
    "sip_via_branch",
    "sub",
    "sub_jwk",
    "toe",
    "txn",
    "typ",
    "uuid",
    "vot",
    "vtm",
    "x5t#S256",
];

/// Namespaces on Auth0's own domains are reserved to Auth0.
const AUTH0_DOMAINS: &[&str] = &["auth0.com", "webtask.io", "webtask.run"];

/// Whether a claim name must be silently dropped.
pub(crate) fn is_ignored(name: &str) -> bool {
    name.is_empty() || RESERVED.contains(&name) || is_auth0_namespace(name)
}

fn is_auth0_namespace(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if lower == "urn:auth0" || lower.starts_with("urn:auth0:") {
        return true;
    }
    let Some(rest) = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://")) else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if host_port.starts_with('[') {
        // An IPv6 literal is never an Auth0 domain.
        return false;
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    let host = host.trim_end_matches('.');
    AUTH0_DOMAINS
        .iter()
        .any(|domain| host == *domain || host.strip_suffix(domain).is_some_and(|prefix| prefix.ends_with('.')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_and_namespaces() {
        for name in ["sub", "scope", "x5t#S256", "internalService", ""] {
            assert!(is_ignored(name), "{name}");
        }
        for name in [
            "https://auth0.com/claim",
            "https://tenant.auth0.com/x",
            "http://WEBTASK.io",
            "https://a.webtask.run:443/p",
            "urn:auth0",
            "urn:auth0:thing",
        ] {
            assert!(is_ignored(name), "{name}");
        }
        for name in [
            "https://example.com/tier",
            "https://notauth0.com/x",
            "https://auth0.com.example.org/x",
            "urn:example:plan",
            "tier",
            "Sub",
        ] {
            assert!(!is_ignored(name), "{name}");
        }
    }
}
