//! `application/x-www-form-urlencoded` component decoding, shared by the token endpoint (body and
//! HTTP Basic credentials, RFC 6749 §2.3.1) and Management API query strings.
//!
//! Why not `form_urlencoded::parse`: it decodes lossily, turning invalid UTF-8 into U+FFFD. A
//! client secret or a client id silently rewritten that way would fail authentication with a
//! misleading error, so invalid UTF-8 must be reported instead. Decoding by hand also lets the
//! common case (nothing encoded) borrow from the input without allocating.

use std::borrow::Cow;

/// The decoded bytes were not UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NotUtf8;

/// Decodes one name or value: `+` becomes a space and `%XX` the byte `XX`. A `%` that does not
/// start a valid escape is kept literally, as browsers and the WHATWG URL standard do.
pub(crate) fn decode(raw: &str) -> Result<Cow<'_, str>, NotUtf8> {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map(Cow::Owned).map_err(|_| NotUtf8)
}

fn hex(b: Option<&u8>) -> Option<u8> {
    match b? {
        b @ b'0'..=b'9' => Some(b - b'0'),
        b @ b'a'..=b'f' => Some(b - b'a' + 10),
        b @ b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Splits a query string or form body into raw (still encoded) `(name, value)` pairs. Empty
/// pairs (`a=1&&b=2`) are skipped; a pair without `=` has an empty value.
pub(crate) fn raw_pairs(input: &str) -> impl Iterator<Item = (&str, &str)> {
    input.split('&').filter(|pair| !pair.is_empty()).map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_components() {
        let cases: &[(&str, Result<&str, NotUtf8>)] = &[
            ("plain", Ok("plain")),
            ("a+b", Ok("a b")),
            ("%41%62%2b", Ok("Ab+")),
            ("caf%C3%A9", Ok("café")),
            ("100%", Ok("100%")),
            ("%zz%4", Ok("%zz%4")),
            ("%EF%BF%BD", Ok("\u{FFFD}")),
            ("%FF", Err(NotUtf8)),
            ("%C3", Err(NotUtf8)),
        ];
        for (raw, want) in cases {
            assert_eq!(decode(raw).as_deref().map_err(|e| *e), *want, "{raw}");
        }
        assert!(matches!(decode("no-escapes"), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn splits_pairs() {
        let pairs: Vec<_> = raw_pairs("a=1&&b&c=&=d&e=f=g").collect();
        assert_eq!(pairs, vec![("a", "1"), ("b", ""), ("c", ""), ("", "d"), ("e", "f=g")]);
    }
}
