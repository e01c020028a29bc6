//! HTTP Basic client authentication (`client_secret_basic`, RFC 6749 §2.3.1) through
//! `parse_token_request` with a fixed, valid form body.
//!
//! Byte 0 picks the mode:
//! - even: the rest of the input is the raw `Authorization` header value;
//! - odd: the rest is `client_id` and `client_secret` separated by the first `\n`. They are
//!   encoded as a well-behaved client would (form-urlencode each, join with `:`, base64), and the
//!   parser must give back exactly the pair (a round trip).
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use libfuzzer_sys::fuzz_target;
use ration_proto::oauth::{ClientAuth, MAX_PARAM_LEN, parse_token_request, peek_request};

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const BODY: &[u8] = b"grant_type=client_credentials&audience=https%3A%2F%2Fapi.example.com%2F&scope=read%3Athings";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        let header = String::from_utf8_lossy(rest);
        let parsed = parse_token_request(FORM, Some(&header), BODY);
        if let Ok(parsed) = &parsed {
            match &parsed.auth {
                ClientAuth::Basic { client_id, client_secret } => {
                    assert!(!client_id.is_empty() && client_id.len() <= MAX_PARAM_LEN);
                    assert!(client_secret.len() <= MAX_PARAM_LEN);
                }
                // A header of another scheme is ignored, and the body has no client_id.
                other => panic!("no Basic credentials, yet the request parsed: {other:?}"),
            }
        }
        let facts = peek_request(FORM, Some(&header), BODY);
        if let Ok(ClientAuth::Basic { client_id, .. }) = parsed.as_ref().map(|p| &p.auth)
            && client_id.len() <= ration_proto::oauth::FACT_MAX_LEN
        {
            assert_eq!(facts.client_id.as_ref(), Some(client_id));
        }
        return;
    }

    let text = String::from_utf8_lossy(rest);
    let (id, secret) = text.split_once('\n').unwrap_or((&text, ""));
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let joined = format!("{}:{}", encode(id), encode(secret));
    // Padding is optional (some clients strip it) and the scheme is case-insensitive.
    let header = if mode & 2 == 0 {
        format!("Basic {}", STANDARD.encode(&joined))
    } else {
        format!("bAsIc\t{}  ", STANDARD_NO_PAD.encode(&joined))
    };
    let result = parse_token_request(FORM, Some(&header), BODY);
    if id.is_empty() || id.len() > MAX_PARAM_LEN || secret.len() > MAX_PARAM_LEN {
        assert!(result.is_err(), "accepted {id:?}:{secret:?}");
        return;
    }
    match result.map(|p| p.auth) {
        Ok(ClientAuth::Basic { client_id, client_secret }) => {
            assert_eq!(client_id, id);
            assert_eq!(client_secret, secret);
        }
        other => panic!("{id:?}:{secret:?} did not round-trip: {other:?}"),
    }
});
