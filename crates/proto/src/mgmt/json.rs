//! JSON body parsing for the Management API, serde helpers for PATCH semantics, and the shared
//! field validators. Every error produced here names the field path.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, Unexpected, Visitor};
use serde_json::error::Category;
use serde_path_to_error::Segment;

use super::error::BodyError;

/// Deepest accepted nesting of JSON objects and arrays (the body object itself is level 1).
/// No Management API body needs more than a few levels; the limit keeps hostile input from
/// costing deep recursion anywhere downstream.
pub const MAX_DEPTH: usize = 32;

/// Parses a Management API request body into `T`.
///
/// The body must be UTF-8 and a JSON object nested at most [`MAX_DEPTH`] levels. Syntax errors
/// report line and column; type errors, unknown fields (request structs deny them) and missing
/// fields name the field path, e.g. `'token_quota.client_credentials.per_hour'`.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        BodyError::payload(format_args!("the body must be UTF-8 (invalid byte at offset {})", e.valid_up_to()))
    })?;
    match text.trim_start_matches([' ', '\t', '\n', '\r']).as_bytes().first() {
        Some(b'{') => {}
        Some(_) => return Err(BodyError::payload("the body must be a JSON object")),
        None => return Err(BodyError::payload("the body must be a JSON object, but it is empty")),
    }
    check_depth(text)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(translate)?;
    de.end().map_err(|e| json_format(&e))?;
    Ok(value)
}

/// Counts bracket depth outside strings. Runs before deserializing, so the limit holds no matter
/// which type the body is parsed into.
fn check_depth(text: &str) -> Result<(), BodyError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in text.bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(BodyError::payload(format_args!("the body is nested deeper than {MAX_DEPTH} levels")));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn json_format(e: &serde_json::Error) -> BodyError {
    // serde_json's message ends with "at line L column C".
    BodyError { message: format!("Invalid request payload JSON format: {e}") }
}

/// Turns serde's messages into Auth0-style ones that name the full field path.
fn translate(err: serde_path_to_error::Error<serde_json::Error>) -> BodyError {
    let inner = err.inner();
    if inner.classify() != Category::Data {
        return json_format(inner);
    }
    let path = path_string(err.path());
    let full = inner.to_string();
    let position = format!(" at line {} column {}", inner.line(), inner.column());
    let message = full.strip_suffix(&position).unwrap_or(&full);
    BodyError::payload(describe(&path, message))
}

fn path_string(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            other => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&other.to_string());
            }
        }
    }
    out
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() { field.to_owned() } else { format!("{path}.{field}") }
}

/// Rewrites one serde data-error message. Besides serde's own messages, custom messages raised by
/// this crate's deserializers are predicates such as "cannot be changed", completed with the path.
fn describe(path: &str, message: &str) -> String {
    let backticked = |rest: &str| rest.split('`').next().unwrap_or_default().to_owned();
    if let Some(rest) = message.strip_prefix("missing field `") {
        return format!("'{}' is required", join(path, &backticked(rest)));
    }
    if message.starts_with("unknown field `") {
        // serde_path_to_error puts the unknown key itself at the end of the path.
        return format!("Additional properties not allowed: '{path}'");
    }
    if let Some(rest) = message.strip_prefix("duplicate field `") {
        return format!("'{}' must not appear more than once", join(path, &backticked(rest)));
    }
    let is_type_error = ["invalid type: ", "invalid value: ", "invalid length "].iter().any(|p| message.starts_with(p));
    // The expectation comes last; the unexpected part may quote user input, which is dropped.
    let problem = match message.rsplit_once(", expected ") {
        Some((_, expected)) if is_type_error => format!("must be {}", plain_expectation(expected)),
        _ => message.to_owned(),
    };
    if path.is_empty() { problem } else { format!("'{path}' {problem}") }
}

/// serde's names for JSON types, in JSON's words.
fn plain_expectation(expected: &str) -> &str {
    match expected {
        "a sequence" => "an array",
        "a map" => "an object",
        other => other,
    }
}

/// `#[serde(default, deserialize_with = "double_option")]` on an `Option<Option<T>>` field:
/// absent → `None`, `null` → `Some(None)`, a value → `Some(Some(v))`. PATCH bodies need this to
/// tell "leave unchanged" from "remove".
pub fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `#[serde(default, deserialize_with = "non_null")]` on an `Option<T>` field: absent → `None`,
/// a value → `Some(v)`, and `null` is a type error. Without it serde would read `null` as absent,
/// and a PATCH with `"name": null` would silently do nothing.
pub fn non_null<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// For a PATCH field that may not change: any presence, even `null`, is an error naming it.
pub(crate) fn immutable<'de, D: Deserializer<'de>>(_: D) -> Result<(), D::Error> {
    Err(de::Error::custom("cannot be changed"))
}

/// An integer in `MIN..=MAX`. Deserializing rejects floats (`1.5`, `1e3`), strings, `null` and
/// out-of-range values with "must be an integer between MIN and MAX".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BoundedU32<const MIN: u32, const MAX: u32>(pub u32);

impl<'de, const MIN: u32, const MAX: u32> Deserialize<'de> for BoundedU32<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<const MIN: u32, const MAX: u32>;
        impl<const MIN: u32, const MAX: u32> Visitor<'_> for V<MIN, MAX> {
            type Value = BoundedU32<MIN, MAX>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an integer between {MIN} and {MAX}")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                match u32::try_from(v) {
                    Ok(n) if (MIN..=MAX).contains(&n) => Ok(BoundedU32(n)),
                    _ => Err(E::invalid_value(Unexpected::Unsigned(v), &self)),
                }
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match u64::try_from(v) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &self)),
                }
            }
        }
        deserializer.deserialize_u64(V::<MIN, MAX>)
    }
}

/// Checks a length in characters (JSON Schema counts code points, not bytes).
pub(crate) fn check_len(path: &str, value: &str, min: usize, max: usize) -> Result<(), BodyError> {
    let n = value.chars().count();
    if (min..=max).contains(&n) {
        return Ok(());
    }
    Err(BodyError::field(
        path,
        if min == 0 {
            format!("must be at most {max} characters long")
        } else {
            format!("must be between {min} and {max} characters long")
        },
    ))
}

/// Auth0's `^[^<>]+$` name pattern: names end up in HTML dashboards and e-mails.
pub(crate) fn check_no_angle_brackets(path: &str, value: &str) -> Result<(), BodyError> {
    if value.contains(['<', '>']) {
        return Err(BodyError::field(path, "must not contain '<' or '>'"));
    }
    Ok(())
}

/// Parses an enumerated string with `parse`, or names the allowed values.
pub(crate) fn parse_enum<T>(
    path: &str,
    value: &str,
    parse: impl FnOnce(&str) -> Option<T>,
    allowed: &[&str],
) -> Result<T, BodyError> {
    parse(value).ok_or_else(|| BodyError::field(path, format_args!("must be one of: {}", allowed.join(", "))))
}

/// Checks that `items` has no repeated value; `path_of(i)` names item `i`.
pub(crate) fn check_unique<'a>(
    items: impl IntoIterator<Item = &'a str>,
    path_of: impl Fn(usize) -> String,
) -> Result<(), BodyError> {
    let mut seen = std::collections::HashSet::new();
    for (i, item) in items.into_iter().enumerate() {
        if !seen.insert(item) {
            return Err(BodyError::field(&path_of(i), format_args!("duplicates '{item}'")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, expecting = "an object")]
    #[allow(dead_code)] // Fields exist to be deserialized.
    struct Outer {
        name: String,
        #[serde(default, deserialize_with = "non_null")]
        flag: Option<bool>,
        #[serde(default, deserialize_with = "double_option")]
        nullable: Option<Option<String>>,
        #[serde(default, deserialize_with = "non_null")]
        items: Option<Vec<Inner>>,
        #[serde(default, deserialize_with = "non_null")]
        map: Option<BTreeMap<String, String>>,
        #[serde(default, rename = "fixed", deserialize_with = "immutable")]
        _fixed: (),
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, expecting = "an object")]
    #[allow(dead_code)]
    struct Inner {
        n: BoundedU32<1, 10>,
    }

    fn err(body: &str) -> String {
        match parse_body::<Outer>(body.as_bytes()) {
            Ok(v) => panic!("accepted {body}: {v:?}"),
            Err(e) => e.message,
        }
    }

    #[test]
    fn errors_name_the_path() {
        let cases: &[(&str, &str)] = &[
            (r#"{}"#, "Payload validation error: 'name' is required"),
            (r#"{"name":"a","foo":1}"#, "Payload validation error: Additional properties not allowed: 'foo'"),
            (
                r#"{"name":"a","items":[{"n":1},{"n":2,"x":1}]}"#,
                "Payload validation error: Additional properties not allowed: 'items[1].x'",
            ),
            (r#"{"name":"a","items":[{}]}"#, "Payload validation error: 'items[0].n' is required"),
            (r#"{"name":1}"#, "Payload validation error: 'name' must be a string"),
            (r#"{"name":null}"#, "Payload validation error: 'name' must be a string"),
            (r#"{"name":"a","flag":null}"#, "Payload validation error: 'flag' must be a boolean"),
            (r#"{"name":"a","flag":"true"}"#, "Payload validation error: 'flag' must be a boolean"),
            (r#"{"name":"a","items":{}}"#, "Payload validation error: 'items' must be an array"),
            (r#"{"name":"a","items":[1]}"#, "Payload validation error: 'items[0]' must be an object"),
            (r#"{"name":"a","map":[]}"#, "Payload validation error: 'map' must be an object"),
            (r#"{"name":"a","map":{"k":5}}"#, "Payload validation error: 'map.k' must be a string"),
            (
                r#"{"name":"a","items":[{"n":0}]}"#,
                "Payload validation error: 'items[0].n' must be an integer between 1 and 10",
            ),
            (
                r#"{"name":"a","items":[{"n":11}]}"#,
                "Payload validation error: 'items[0].n' must be an integer between 1 and 10",
            ),
            (
                r#"{"name":"a","items":[{"n":-1}]}"#,
                "Payload validation error: 'items[0].n' must be an integer between 1 and 10",
            ),
            (
                r#"{"name":"a","items":[{"n":1.5}]}"#,
                "Payload validation error: 'items[0].n' must be an integer between 1 and 10",
            ),
            (
                r#"{"name":"a","items":[{"n":1e1}]}"#,
                "Payload validation error: 'items[0].n' must be an integer between 1 and 10",
            ),
            (
                r#"{"name":"a","items":[{"n":"2"}]}"#,
                "Payload validation error: 'items[0].n' must be an integer between 1 and 10",
            ),
            (
                r#"{"name":"a","items":[{"n":99999999999999999999999}]}"#,
                "Payload validation error: 'items[0].n' must be an integer between 1 and 10",
            ),
            (r#"{"name":"a","fixed":null}"#, "Payload validation error: 'fixed' cannot be changed"),
            (r#"{"name":"a","name":"b"}"#, "Payload validation error: 'name' must not appear more than once"),
            ("[]", "Payload validation error: the body must be a JSON object"),
            ("  ", "Payload validation error: the body must be a JSON object, but it is empty"),
            ("\"x\"", "Payload validation error: the body must be a JSON object"),
        ];
        for (body, want) in cases {
            assert_eq!(err(body), *want, "{body}");
        }
    }

    #[test]
    fn syntax_errors_have_positions() {
        for body in ["{\"name\": }", "{\"name\":\"a\"} trailing", "{\"name\":\"a\""] {
            let e = err(body);
            assert!(e.starts_with("Invalid request payload JSON format: "), "{e}");
            assert!(e.contains("line 1 column"), "{e}");
        }
        let e = parse_body::<Outer>(b"{\"name\":\"\xff\"}").unwrap_err();
        assert_eq!(e.message, "Payload validation error: the body must be UTF-8 (invalid byte at offset 9)");
    }

    #[test]
    fn depth_is_limited_outside_strings() {
        let nested = |n: usize| format!(r#"{{"name":"a","map":{}{}}}"#, "[".repeat(n), "]".repeat(n));
        assert_eq!(err(&nested(MAX_DEPTH)), "Payload validation error: the body is nested deeper than 32 levels");
        // 31 arrays inside the body object are exactly 32 levels: a depth error would be wrong,
        // the type error is right.
        assert_eq!(err(&nested(MAX_DEPTH - 1)), "Payload validation error: 'map' must be an object");
        let brackets_in_string = format!(r#"{{"name":"{}\"{}"}}"#, "[".repeat(40), "{".repeat(40));
        assert!(parse_body::<Outer>(brackets_in_string.as_bytes()).is_ok());
    }

    #[test]
    fn null_and_absent_differ() {
        let v: Outer = parse_body(br#"{"name":"a"}"#).unwrap();
        assert_eq!((v.flag, v.nullable), (None, None));
        let v: Outer = parse_body(br#"{"name":"a","nullable":null,"flag":false}"#).unwrap();
        assert_eq!((v.flag, v.nullable), (Some(false), Some(None)));
        let v: Outer = parse_body(br#"{"name":"a","nullable":"x"}"#).unwrap();
        assert_eq!(v.nullable, Some(Some("x".to_owned())));
    }

    #[test]
    fn validators_name_the_field() {
        assert_eq!(
            check_len("a.b", "", 1, 5).unwrap_err().message,
            "Payload validation error: 'a.b' must be between 1 and 5 characters long"
        );
        assert_eq!(
            check_len("d", "ééé", 0, 2).unwrap_err().message,
            "Payload validation error: 'd' must be at most 2 characters long"
        );
        assert!(check_len("d", "éé", 0, 2).is_ok(), "characters, not bytes");
        assert_eq!(
            check_no_angle_brackets("name", "a<b").unwrap_err().message,
            "Payload validation error: 'name' must not contain '<' or '>'"
        );
        assert_eq!(
            check_unique(["a", "b", "a"], |i| format!("scope[{i}]")).unwrap_err().message,
            "Payload validation error: 'scope[2]' duplicates 'a'"
        );
    }
}
