//! Small JSON writers for bodies built by hand on the token path (the 200 body, the `seccft`
//! event), where a `serde_json::Value` or a derived `Serialize` would cost more than the text.

/// Appends `s` as a JSON string (quoted, escaped by serde_json) to `out`.
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    // Writing a string into a Vec cannot fail; an empty string is the harmless fallback.
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}
