//! Output: aligned tables and key/value blocks for people, JSON for scripts, quota bars.
//!
//! Everything goes through [`emit`], which turns a closed stdout (`… | head`) into a quiet exit
//! instead of a panic.

use std::io::Write;

use serde_json::Value;

use super::error::{CliError, CliResult, Exit};

/// Writes `text` and a newline to stdout and flushes (lines of `logs tail --follow` appear at once).
pub fn emit(text: &str) -> CliResult<()> {
    let mut out = std::io::stdout().lock();
    let written = out.write_all(text.as_bytes()).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush());
    written.map_err(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            CliError::new(Exit::BrokenPipe, "stdout closed")
        } else {
            CliError::new(Exit::Server, format!("cannot write to stdout: {e}"))
        }
    })
}

/// Pretty JSON on stdout.
pub fn emit_json(value: &Value) -> CliResult<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::new(Exit::Server, format!("cannot encode JSON: {e}")))?;
    emit(&text)
}

/// Display width of a cell (characters; the CLI prints no wide characters of its own).
fn width(s: &str) -> usize {
    s.chars().count()
}

/// Columns padded to their widest cell, two spaces apart; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let columns = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(width(cell));
        }
    }
    let render = |cells: Vec<&str>| -> String {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < cells.len() {
                line.push_str(&" ".repeat(widths[i] - width(cell) + 2));
            }
        }
        line.trim_end().to_owned()
    };
    let mut lines = vec![render(headers.to_vec())];
    for row in rows {
        lines.push(render(row.iter().take(columns).map(String::as_str).collect()));
    }
    lines.join("\n")
}

/// `key  value` lines with the keys padded to the longest; rows with empty values are skipped.
pub fn key_values(rows: &[(&str, String)]) -> String {
    let rows: Vec<&(&str, String)> = rows.iter().filter(|(_, v)| !v.is_empty()).collect();
    let pad = rows.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
    rows.iter().map(|(k, v)| format!("{k:<pad$}  {v}")).collect::<Vec<_>>().join("\n")
}

/// A string field of a JSON object (`""` when absent).
pub fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// A JSON array of strings, comma-separated.
pub fn list(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|x| x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string())).collect::<Vec<_>>())
        .unwrap_or_default()
        .join(",")
}

/// Scopes shown in a table cell before the rest is counted.
pub const TABLE_SCOPES: usize = 4;

/// A comma-separated list shortened for a table cell: `a,b,c,… (33)` beyond `keep` items.
pub fn abbreviate(items: &[&str], keep: usize) -> String {
    if items.len() <= keep + 1 {
        return items.join(",");
    }
    format!("{},… ({})", items[..keep].join(","), items.len())
}

/// `token_quota` in one short line: `10/min 100/h 1000/d` plus `(not enforced)`; `-` when none.
pub fn quota_summary(token_quota: Option<&Value>) -> String {
    let Some(cc) = token_quota.and_then(|q| q.get("client_credentials")) else {
        return "-".to_owned();
    };
    let mut parts = Vec::new();
    for (key, unit) in [("per_minute", "min"), ("per_hour", "h"), ("per_day", "d")] {
        if let Some(n) = cc.get(key).and_then(Value::as_u64) {
            parts.push(format!("{n}/{unit}"));
        }
    }
    if parts.is_empty() {
        parts.push("no limits".to_owned());
    }
    if cc.get("enforce").and_then(Value::as_bool) == Some(false) {
        parts.push("(not enforced)".to_owned());
    }
    parts.join(" ")
}

/// `[██████░░░░]`: `used` of `quota` in `cells` cells. Any use shows at least one cell; the bar is
/// full only when the quota is reached.
pub fn bar(used: u64, quota: u64, cells: usize) -> String {
    let filled = if used == 0 {
        0
    } else if quota == 0 || used >= quota {
        cells
    } else {
        let exact = (u128::from(used) * cells as u128 / u128::from(quota)) as usize;
        exact.clamp(1, cells.saturating_sub(1))
    };
    format!("[{}{}]", "█".repeat(filled), "░".repeat(cells - filled))
}

/// `1h 2m 3s`, `54m 12s`, `7s`.
pub fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if h > 0 {
        format!("{h}h {m}m {s}s")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(&["ID", "NAME"], &[vec!["a".into(), "first".into()], vec!["longer-id".into(), "x".into()]]);
        assert_eq!(t, "ID         NAME\na          first\nlonger-id  x");
    }

    #[test]
    fn key_values_skip_empty() {
        let kv = key_values(&[("id", "1".into()), ("description", String::new()), ("name", "n".into())]);
        assert_eq!(kv, "id    1\nname  n");
    }

    #[test]
    fn bars_and_durations() {
        assert_eq!(bar(6, 10, 10), "[██████░░░░]");
        assert_eq!(bar(0, 10, 10), "[░░░░░░░░░░]");
        assert_eq!(bar(1, 1000, 10), "[█░░░░░░░░░]");
        assert_eq!(bar(999, 1000, 10), "[█████████░]");
        assert_eq!(bar(12, 10, 10), "[██████████]");
        assert_eq!(duration(3252), "54m 12s");
        assert_eq!(duration(3600 * 5 + 62), "5h 1m 2s");
        assert_eq!(duration(7), "7s");
    }

    #[test]
    fn long_lists_are_shortened() {
        assert_eq!(abbreviate(&["a", "b"], 2), "a,b");
        assert_eq!(abbreviate(&["a", "b", "c"], 2), "a,b,c");
        assert_eq!(abbreviate(&["a", "b", "c", "d"], 2), "a,b,… (4)");
    }

    #[test]
    fn quota_summaries() {
        let q = json!({"client_credentials": {"enforce": false, "per_hour": 100, "per_day": 1000}});
        assert_eq!(quota_summary(Some(&q)), "100/h 1000/d (not enforced)");
        assert_eq!(quota_summary(None), "-");
    }
}
