//! Offset paging of Management API lists: `page`, `per_page`, `include_totals` (auth0.md §3.0).

use serde_json::{Map, Value};

use super::error::BodyError;
use crate::form;

const DEFAULT_PER_PAGE: u32 = 50;
const MAX_PER_PAGE: u32 = 100;

/// Which page of a list to return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListParams {
    /// Zero-based page number.
    pub page: u32,
    /// Items per page, 1 to 100.
    pub per_page: u32,
    /// Wrap the items in `{start, limit, total, <collection>}` instead of a bare array.
    pub include_totals: bool,
}

impl Default for ListParams {
    fn default() -> Self {
        ListParams { page: 0, per_page: DEFAULT_PER_PAGE, include_totals: false }
    }
}

impl ListParams {
    /// Index of the first item of the page.
    pub fn start(&self) -> u64 {
        u64::from(self.page) * u64::from(self.per_page)
    }
}

/// Parses the paging parameters out of a query string and returns the remaining decoded
/// `(name, value)` pairs, in order, for the endpoint's own filters.
pub fn parse_list_params(query: Option<&str>) -> Result<(ListParams, Vec<(String, String)>), BodyError> {
    let mut params = ListParams::default();
    let mut seen = [false; 3];
    let mut rest = Vec::new();
    for (raw_name, raw_value) in form::raw_pairs(query.unwrap_or_default()) {
        let not_utf8 = |name: &str| BodyError::query(name, "must be UTF-8 after percent-decoding");
        let name = form::decode(raw_name).map_err(|_| not_utf8("?"))?;
        let value = form::decode(raw_value).map_err(|_| not_utf8(&name))?;
        let index = match name.as_ref() {
            "page" => 0,
            "per_page" => 1,
            "include_totals" => 2,
            _ => {
                rest.push((name.into_owned(), value.into_owned()));
                continue;
            }
        };
        // A repeated paging parameter is ambiguous; say so rather than pick one.
        if std::mem::replace(&mut seen[index], true) {
            return Err(BodyError::query(&name, "must not be repeated"));
        }
        match index {
            0 => {
                params.page =
                    value.parse().map_err(|_| BodyError::query("page", "must be an integer of at least 0"))?;
            }
            1 => {
                params.per_page = value.parse().ok().filter(|n| (1..=MAX_PER_PAGE).contains(n)).ok_or_else(|| {
                    BodyError::query("per_page", format_args!("must be an integer between 1 and {MAX_PER_PAGE}"))
                })?;
            }
            _ => {
                params.include_totals = match value.as_ref() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(BodyError::query("include_totals", "must be true or false")),
                };
            }
        }
    }
    Ok((params, rest))
}

/// A list response: the bare `items` array, or with `include_totals`
/// `{"start", "limit", "total", "<collection>": items}`.
pub fn list_response(items: Vec<Value>, collection: &str, params: &ListParams, total: u64) -> Value {
    if !params.include_totals {
        return Value::Array(items);
    }
    let mut o = Map::new();
    o.insert("start".to_owned(), Value::from(params.start()));
    o.insert("limit".to_owned(), Value::from(params.per_page));
    o.insert("total".to_owned(), Value::from(total));
    o.insert(collection.to_owned(), Value::Array(items));
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn lp(page: u32, per_page: u32, include_totals: bool) -> ListParams {
        ListParams { page, per_page, include_totals }
    }

    #[test]
    fn parses_params_and_passes_filters() {
        let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        type Case<'a> = (Option<&'a str>, ListParams, Vec<(String, String)>);
        let cases: Vec<Case> = vec![
            (None, lp(0, 50, false), vec![]),
            (Some(""), lp(0, 50, false), vec![]),
            (Some("page=2&per_page=100&include_totals=true"), lp(2, 100, true), vec![]),
            (Some("per_page=1&include_totals=false"), lp(0, 1, false), vec![]),
            (
                Some("audience=https%3A%2F%2Fapi&page=1&client_id=c+1&client_id=c2"),
                lp(1, 50, false),
                vec![s("audience", "https://api"), s("client_id", "c 1"), s("client_id", "c2")],
            ),
        ];
        for (query, want, filters) in cases {
            assert_eq!(parse_list_params(query), Ok((want, filters)), "{query:?}");
        }
    }

    #[test]
    fn rejects_bad_values_naming_the_parameter() {
        let cases: &[(&str, &str)] = &[
            ("page=-1", "'page' must be an integer of at least 0"),
            ("page=x", "'page' must be an integer of at least 0"),
            ("page=", "'page' must be an integer of at least 0"),
            ("per_page=0", "'per_page' must be an integer between 1 and 100"),
            ("per_page=101", "'per_page' must be an integer between 1 and 100"),
            ("per_page=1.5", "'per_page' must be an integer between 1 and 100"),
            ("include_totals=yes", "'include_totals' must be true or false"),
            ("page=1&page=2", "'page' must not be repeated"),
            ("q=%FF", "'q' must be UTF-8 after percent-decoding"),
        ];
        for (query, want) in cases {
            let e = parse_list_params(Some(query)).unwrap_err();
            assert_eq!(e.message, format!("Query validation error: {want}"), "{query}");
            assert_eq!(e.error_code(), "invalid_query_string");
        }
    }

    #[test]
    fn shapes_responses() {
        let items = vec![json!({"id": 1})];
        assert_eq!(list_response(items.clone(), "clients", &lp(2, 10, false), 99), json!([{"id": 1}]));
        assert_eq!(
            list_response(items, "clients", &lp(2, 10, true), 99),
            json!({"start": 20, "limit": 10, "total": 99, "clients": [{"id": 1}]})
        );
        assert_eq!(lp(u32::MAX, 100, true).start(), u64::from(u32::MAX) * 100);
    }
}
