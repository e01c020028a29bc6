//! `POST /oauth/token` request parsing: `parse_token_request` and, as the server does when it
//! fails, `peek_request` on the same input.
//!
//! Input layout: byte 0 picks the `Content-Type` (low 3 bits) and whether an `Authorization`
//! header is present (bit 7). With a header, it runs up to the first `\n`; the rest is the body.
//! With content-type choice 7, the content type is the text up to the first `\n` instead (before
//! the header, if any).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ration_proto::oauth::{
    ClientAuth, FACT_MAX_LEN, MAX_PARAM_LEN, parse_token_request, peek_request, token_error_body, token_error_status,
};

const CONTENT_TYPES: [Option<&str>; 7] = [
    Some("application/x-www-form-urlencoded"),
    Some("application/json"),
    Some("application/x-www-form-urlencoded; charset=UTF-8"),
    Some("Application/JSON ; charset=utf-8"),
    None,
    Some("text/plain"),
    Some(""),
];

/// Splits `input` at the first `\n`: (line, rest). Without one, the whole input is the line.
fn line(input: &[u8]) -> (&[u8], &[u8]) {
    match input.iter().position(|&b| b == b'\n') {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut rest)) = data.split_first() else { return };
    let custom_type;
    let content_type = match usize::from(selector & 0x07) {
        7 => {
            let (text, after) = line(rest);
            rest = after;
            custom_type = String::from_utf8_lossy(text);
            Some(&*custom_type)
        }
        i => CONTENT_TYPES[i],
    };
    let header;
    let authorization = if selector & 0x80 != 0 {
        let (text, after) = line(rest);
        rest = after;
        header = String::from_utf8_lossy(text);
        Some(&*header)
    } else {
        None
    };
    let body = rest;

    match parse_token_request(content_type, authorization, body) {
        Ok(parsed) => {
            // Only client_credentials gets through, and every value obeys the documented rules:
            // present means non-empty, no longer than MAX_PARAM_LEN after decoding.
            assert_eq!(parsed.grant_type, "client_credentials");
            let request = &parsed.request;
            for value in [&request.audience, &request.organization].into_iter().flatten() {
                assert!(!value.is_empty() && value.len() <= MAX_PARAM_LEN, "{value:?}");
            }
            for scope in request.scope.iter().flatten() {
                assert!(!scope.is_empty() && !scope.contains(' '), "{scope:?}");
            }
            match &parsed.auth {
                ClientAuth::Post { client_id, client_secret } => {
                    assert!(!client_id.is_empty() && client_id.len() <= MAX_PARAM_LEN);
                    assert!(!client_secret.is_empty() && client_secret.len() <= MAX_PARAM_LEN);
                }
                ClientAuth::Basic { client_id, client_secret } => {
                    assert!(authorization.is_some());
                    assert!(!client_id.is_empty() && client_id.len() <= MAX_PARAM_LEN);
                    assert!(client_secret.len() <= MAX_PARAM_LEN);
                }
                ClientAuth::None { client_id } => assert!(client_id.as_ref().is_some_and(|id| !id.is_empty())),
                ClientAuth::Assertion { client_id, assertion } => {
                    assert!(!assertion.is_empty() && assertion.len() <= MAX_PARAM_LEN);
                    assert!(client_id.as_ref().is_none_or(|id| !id.is_empty()));
                }
            }
            // Secrets never reach logs through Debug.
            let _ = format!("{parsed:?}");
        }
        Err(error) => {
            let (status, _) = token_error_status(&error);
            assert!((400..600).contains(&status), "{status}");
            let _ = serde_json::to_string(&token_error_body(&error)).expect("error bodies serialize");
        }
    }

    let facts = peek_request(content_type, authorization, body);
    for value in [&facts.client_id, &facts.audience, &facts.scope, &facts.organization].into_iter().flatten() {
        assert!(!value.is_empty() && value.len() <= FACT_MAX_LEN, "{value:?}");
    }
});
