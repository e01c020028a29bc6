//! The Rust side of one execution: what the Action did (deny, claims, logs, fetches in flight)
//! and the `host` object whose functions the prelude wraps into `api`, `console` and `fetch`.
//!
//! Everything here is plain Rust data behind an `Rc<RefCell<…>>`; no JS value is stored, so
//! nothing can outlive its context or runtime.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};

use rquickjs::{Ctx, Exception, Function, Object};
use serde_json::{Map, Value};
use tokio::task::JoinSet;

use crate::DenyCode;
use crate::cache::{Cache, SetOptions};
use crate::claims::{self, MAX_CLAIMS_BYTES};
use crate::fetch::{self, Allow};

/// Console output kept per Action per execution.
pub(crate) const MAX_LOG_BYTES: usize = 4 * 1024;
/// `fetch` calls one execution may start; enough for real Actions, and a loop cannot turn an
/// allowed host into a flood target.
pub(crate) const MAX_FETCHES: u32 = 50;

/// Console lines, capped at [`MAX_LOG_BYTES`] with a note where output was dropped.
#[derive(Debug, Default)]
pub(crate) struct LogBuffer {
    pub(crate) lines: Vec<String>,
    bytes: usize,
    truncated: bool,
}

impl LogBuffer {
    pub(crate) fn push(&mut self, line: String) {
        if self.truncated {
            return;
        }
        let room = MAX_LOG_BYTES - self.bytes;
        if line.len() <= room {
            self.bytes += line.len();
            self.lines.push(line);
            return;
        }
        let mut cut = room;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut > 0 {
            self.lines.push(line[..cut].to_owned());
        }
        self.lines.push(format!("[console output truncated: more than {MAX_LOG_BYTES} bytes]"));
        self.bytes = MAX_LOG_BYTES;
        self.truncated = true;
    }
}

/// Whether the execution runs a handler or only checks code at deploy time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Run,
    Check,
}

/// A finished fetch: its id and either the response JSON or the error message.
pub(crate) type FetchDone = (u32, Result<String, String>);

pub(crate) struct ExecState {
    pub(crate) mode: Mode,
    pub(crate) now_millis: i64,
    pub(crate) claims: Map<String, Value>,
    /// The first `api.access.deny` of this execution.
    pub(crate) deny: Option<(DenyCode, String)>,
    /// An API misuse that fails the execution even if the Action catches the exception.
    pub(crate) fatal: Option<String>,
    pub(crate) log: LogBuffer,
    pub(crate) cache: Arc<Mutex<Cache>>,
    pub(crate) allow: Arc<Allow>,
    pub(crate) client: Result<reqwest::Client, String>,
    pub(crate) tokio: tokio::runtime::Handle,
    pub(crate) fetches_started: u32,
    pub(crate) inflight: JoinSet<FetchDone>,
}

impl ExecState {
    fn cache(&self) -> MutexGuard<'_, Cache> {
        // The cache holds plain data and every operation leaves it consistent, so a panic
        // elsewhere while the lock was held does not make it unusable.
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fail(&mut self, message: String) {
        self.fatal.get_or_insert(message);
    }
}

fn write_result(result: Result<(), crate::cache::CacheError>) -> String {
    match result {
        Ok(()) => r#"{"type":"success"}"#.to_owned(),
        Err(e) => format!(r#"{{"type":"error","code":"{}"}}"#, e.code()),
    }
}

/// Builds the `host` object handed to the prelude.
pub(crate) fn host_object<'js>(ctx: &Ctx<'js>, state: &Rc<RefCell<ExecState>>) -> rquickjs::Result<Object<'js>> {
    let host = Object::new(ctx.clone())?;

    let st = state.clone();
    host.set("log", Function::new(ctx.clone(), move |line: String| st.borrow_mut().log.push(line))?)?;

    let st = state.clone();
    host.set(
        "deny",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, code: String, reason: String| -> rquickjs::Result<()> {
            let mut state = st.borrow_mut();
            match DenyCode::parse(&code) {
                Some(code) => {
                    state.deny.get_or_insert((code, reason));
                    Ok(())
                }
                None => {
                    let message = format!(
                        "api.access.deny: invalid code '{code}' (expected invalid_scope, \
                             invalid_request or server_error)"
                    );
                    state.fail(message.clone());
                    Err(Exception::throw_type(&ctx, &message))
                }
            }
        })?,
    )?;

    let st = state.clone();
    host.set(
        "claim",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, name: String, json: Option<String>| -> rquickjs::Result<()> {
            let mut state = st.borrow_mut();
            if claims::is_ignored(&name) {
                return Ok(());
            }
            // JSON.stringify(undefined) is undefined: such a claim would vanish from the
            // token's JSON, so it is removed.
            let Some(json) = json else {
                state.claims.remove(&name);
                return Ok(());
            };
            let value: Value = serde_json::from_str(&json)
                .map_err(|e| Exception::throw_type(&ctx, &format!("setCustomClaim: {e}")))?;
            let previous = state.claims.insert(name.clone(), value);
            let size = serde_json::to_string(&state.claims).map_or(usize::MAX, |t| t.len());
            if size > MAX_CLAIMS_BYTES {
                match previous {
                    Some(previous) => state.claims.insert(name, previous),
                    None => state.claims.remove(&name),
                };
                let message = format!("custom claims would be {size} bytes; the limit is {MAX_CLAIMS_BYTES}");
                state.fail(message.clone());
                return Err(Exception::throw_range(&ctx, &message));
            }
            Ok(())
        })?,
    )?;

    let st = state.clone();
    host.set(
        "cacheGet",
        Function::new(ctx.clone(), move |key: String| -> Option<String> {
            let state = st.borrow();
            let entry = state.cache().get(&key, state.now_millis)?;
            // Built by hand to keep Auth0's key order: {value, expires_at}.
            let value = serde_json::Value::String(entry.value).to_string();
            Some(format!(r#"{{"value":{value},"expires_at":{}}}"#, entry.expires_at))
        })?,
    )?;

    let st = state.clone();
    host.set(
        "cacheSet",
        Function::new(ctx.clone(), move |key: String, value: Option<String>, options: String| -> String {
            let state = st.borrow();
            let result = SetOptions::from_json(&options)
                .and_then(|options| state.cache().set(&key, value.as_deref(), options, state.now_millis));
            write_result(result)
        })?,
    )?;

    let st = state.clone();
    host.set(
        "cacheDelete",
        Function::new(ctx.clone(), move |key: String| -> String {
            let state = st.borrow();
            let result = state.cache().delete(&key, state.now_millis);
            write_result(result)
        })?,
    )?;

    let st = state.clone();
    host.set(
        "fetch",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  url: String,
                  method: String,
                  headers: String,
                  body: Option<String>|
                  -> rquickjs::Result<u32> {
                let mut state = st.borrow_mut();
                if state.mode == Mode::Check {
                    return Err(Exception::throw_type(&ctx, "fetch is not available while the code is being checked"));
                }
                if state.fetches_started >= MAX_FETCHES {
                    return Err(Exception::throw_type(
                        &ctx,
                        &format!("fetch: more than {MAX_FETCHES} calls in one execution"),
                    ));
                }
                let request = fetch::prepare(&state.allow, &url, &method, &headers, body)
                    .map_err(|message| Exception::throw_type(&ctx, &message))?;
                let client = state.client.clone().map_err(|message| Exception::throw_type(&ctx, &message))?;
                let id = state.fetches_started;
                state.fetches_started += 1;
                let tokio = state.tokio.clone();
                state.inflight.spawn_on(async move { (id, fetch::send(client, request).await) }, &tokio);
                Ok(id)
            },
        )?,
    )?;

    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_is_capped_with_a_note() {
        let mut log = LogBuffer::default();
        log.push("a".repeat(4000));
        log.push("é".repeat(100));
        log.push("dropped".to_owned());
        assert_eq!(log.lines.len(), 3);
        assert_eq!(log.lines[0].len() + log.lines[1].len(), 4096);
        assert!(log.lines[2].contains("truncated"));
    }
}
