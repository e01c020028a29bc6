//! Static looks at Action source and at QuickJS stack traces, for messages that say where.

/// The file name Action code is compiled under; stack frames naming it are the Action's own.
pub(crate) const ACTION_FILE: &str = "action.js";

/// The first `require('<literal>')` call outside comments and strings: its 1-based line and the
/// module name. We provide no modules, so any such call is an error at deploy time.
///
/// This is a lexer-level scan, not a parser: regular-expression literals are not recognised, so
/// a quote inside one can hide a later call. Runtime `require` still throws, so a miss only
/// moves the error from deploy time to run time.
pub(crate) fn find_require(code: &str) -> Option<(usize, String)> {
    let bytes = code.as_bytes();
    let mut i = 0;
    let mut line = 1;
    // Last significant byte before the current position, to tell `x.require(` from `require(`.
    let mut previous: u8 = b' ';
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    if bytes[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
                i += 2;
            }
            b'\'' | b'"' | b'`' => {
                let (end, newlines) = skip_string(bytes, i);
                line += newlines;
                i = end;
                previous = b;
            }
            _ if is_ident_start(b) => {
                let start = i;
                while i < bytes.len() && is_ident_part(bytes[i]) {
                    i += 1;
                }
                if &bytes[start..i] == b"require"
                    && previous != b'.'
                    && let Some(name) = literal_argument(bytes, i)
                {
                    return Some((line, name));
                }
                previous = b'a';
            }
            _ => {
                if !b.is_ascii_whitespace() {
                    previous = b;
                }
                i += 1;
            }
        }
    }
    None
}

/// Skips a string or template literal starting at `start` (its quote); returns the index after
/// the closing quote and the newlines crossed.
fn skip_string(bytes: &[u8], start: usize) -> (usize, usize) {
    let quote = bytes[start];
    let mut i = start + 1;
    let mut newlines = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'\n' => {
                newlines += 1;
                // An unterminated '…' or "…" ends at the line end; only templates span lines.
                if quote != b'`' {
                    return (i, newlines - 1);
                }
                i += 1;
            }
            c if c == quote => return (i + 1, newlines),
            _ => i += 1,
        }
    }
    (i, newlines)
}

/// `(` optional spaces, a string literal, optional spaces, `)` after `require`: the literal.
fn literal_argument(bytes: &[u8], mut i: usize) -> Option<String> {
    let skip_spaces = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    i = skip_spaces(i);
    if bytes.get(i) != Some(&b'(') {
        return None;
    }
    i = skip_spaces(i + 1);
    let quote = *bytes.get(i)?;
    if !matches!(quote, b'\'' | b'"' | b'`') {
        return None;
    }
    let (end, _) = skip_string(bytes, i);
    let inner = bytes.get(i + 1..end.checked_sub(1)?)?;
    Some(String::from_utf8_lossy(inner).into_owned())
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b'$' || b >= 0x80
}

fn is_ident_part(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit()
}

/// The line of the first stack frame in the Action's own file (`… action.js:LINE:COL`).
pub(crate) fn action_line(stack: &str) -> Option<usize> {
    let marker = format!("{ACTION_FILE}:");
    stack.lines().find_map(|frame| {
        let at = frame.find(&marker)?;
        let digits: String = frame[at + marker.len()..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

/// The stack frames that belong to the Action, without the prelude's.
pub(crate) fn action_frames(stack: &str) -> String {
    stack.lines().filter(|frame| frame.contains(ACTION_FILE)).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_require_with_its_line() {
        let code = "// require('in-comment')\n/* require('x')\n */\nconst s = \"require('str')\";\n\
                    const a = require( 'axios' );\n";
        assert_eq!(find_require(code), Some((5, "axios".to_owned())));
        assert_eq!(find_require("x.require('y'); require(name)"), None);
        assert_eq!(find_require("const t = `a\nb`;\nrequire(\"lodash\")"), Some((3, "lodash".to_owned())));
    }

    #[test]
    fn reads_lines_from_stacks() {
        assert_eq!(action_line("    at action.js:2:9\n"), Some(2));
        assert_eq!(action_line("    at run (ration-prelude:1:1)\n    at <anonymous> (action.js:7:3)\n"), Some(7));
        assert_eq!(action_line("    at run (ration-prelude:1:1)\n"), None);
    }
}
