//! The JS worker threads: each owns one QuickJS runtime and one current-thread tokio runtime,
//! takes requests from the pool's shared channel and runs them to completion.

use std::cell::{Cell, RefCell};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rquickjs::context::EvalOptions;
use rquickjs::promise::PromiseState;
use rquickjs::{Coerced, Context, Ctx, Function, Module, Object, Promise, Value, WriteOptions};
use serde_json::Map;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::cache::Cache;
use crate::fetch::{self, Allow};
use crate::host::{self, ExecState, LogBuffer, Mode};
use crate::scan::{self, ACTION_FILE};
use crate::{ActionCode, ActionLog, CheckError, DenyCode, FetchPolicy, Job, JobOutcome, Limits, Request};

const PRELUDE: &str = include_str!("prelude.js");
const PRELUDE_FILE: &str = "ration-prelude.js";

/// Longest time `check` lets the top level of an Action run.
const CHECK_BUDGET: Duration = Duration::from_secs(2);

/// Native stack of a worker beyond what QuickJS may use: room for the Rust frames around the
/// interpreter (tokio, rquickjs, reqwest), so JS recursion hits QuickJS's limit, never the guard
/// page.
const STACK_HEADROOM: usize = 8 * 1024 * 1024;

/// State shared by all workers of one pool.
struct Shared {
    limits: Limits,
    allow: Arc<Allow>,
    cache: Arc<Mutex<Cache>>,
    /// All workers take from one queue, so a job never waits behind a busy worker while another
    /// is idle.
    requests: tokio::sync::Mutex<mpsc::Receiver<Request>>,
}

pub(crate) fn spawn_workers(
    count: usize,
    limits: &Limits,
    policy: &FetchPolicy,
    requests: mpsc::Receiver<Request>,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared {
        limits: limits.clone(),
        allow: Arc::new(Allow::new(policy)),
        cache: Arc::new(Mutex::new(Cache::default())),
        requests: tokio::sync::Mutex::new(requests),
    });
    for index in 0..count {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("ration-actions-{index}"))
            .stack_size(limits.stack_bytes.saturating_add(STACK_HEADROOM))
            .spawn(move || worker_main(&shared))?;
    }
    Ok(())
}

fn worker_main(shared: &Arc<Shared>) {
    let tokio = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "action worker cannot start its tokio runtime");
            return;
        }
    };
    let mut engine = Engine::new(shared.clone(), tokio.handle().clone());
    loop {
        let request = tokio.block_on(async { shared.requests.lock().await.recv().await });
        let Some(request) = request else {
            // Every ActionPool handle is gone.
            return;
        };
        // The reply sender lives inside `request`: if serving panics it is dropped and the
        // caller reports "action worker unavailable"; this worker then starts over.
        let served = std::panic::catch_unwind(AssertUnwindSafe(|| engine.serve(request, &tokio)));
        if served.is_err() {
            tracing::error!("action worker panicked; rebuilding its JS runtime");
            // A runtime abandoned mid-execution may still hold objects, and QuickJS aborts the
            // process when such a runtime is freed: leak it instead.
            std::mem::forget(engine.js.take());
            engine = Engine::new(shared.clone(), tokio.handle().clone());
        }
    }
}

/// One QuickJS runtime with its interrupt deadline.
struct Js {
    runtime: rquickjs::Runtime,
    deadline: Rc<Cell<Option<Instant>>>,
    /// Set by the interrupt handler when it stopped the script at the deadline.
    fired: Rc<Cell<bool>>,
}

impl Js {
    fn new(limits: &Limits) -> rquickjs::Result<Js> {
        let runtime = rquickjs::Runtime::new()?;
        runtime.set_memory_limit(limits.memory_bytes);
        runtime.set_max_stack_size(limits.stack_bytes);
        let deadline: Rc<Cell<Option<Instant>>> = Rc::new(Cell::new(None));
        let fired = Rc::new(Cell::new(false));
        let (at, flag) = (deadline.clone(), fired.clone());
        runtime.set_interrupt_handler(Some(Box::new(move || match at.get() {
            Some(at) if Instant::now() >= at => {
                flag.set(true);
                true
            }
            _ => false,
        })));
        Ok(Js { runtime, deadline, fired })
    }
}

/// How one execution ended, before it is phrased for a job or a check.
#[derive(Debug)]
enum Ended {
    /// Run: the handler's promise fulfilled. Check: the top level exported a function.
    Completed,
    /// Check: the top level ran but exported no handler function.
    NotAFunction,
    /// Check: the code requires a module (line, name).
    Requires(usize, String),
    /// A JS exception: `Name: message` with the Action's own stack frames, and its line.
    Threw {
        text: String,
        frames: String,
        line: Option<usize>,
    },
    /// The handler's promise can never settle: no job and no fetch is left to drive it.
    Stalled,
    TimedOut,
    OutOfMemory,
    /// The engine itself failed (e.g. could not create a runtime).
    Broken(String),
}

impl Ended {
    /// Whether the runtime may serve the next execution as it is.
    fn leaves_runtime_clean(&self) -> bool {
        !matches!(self, Ended::TimedOut | Ended::OutOfMemory | Ended::Broken(_))
    }
}

/// One execution's result as a job sees it.
enum ActionEnd {
    Continue,
    Denied(DenyCode, String),
    Failed(String),
}

struct Engine {
    // Declared first so the runtime is freed before anything it might still point into.
    js: Option<Js>,
    /// The prelude as QuickJS bytecode, compiled once per worker: loading it into a fresh
    /// context costs about 25 µs, parsing its source about 290 µs.
    prelude: Option<Rc<[u8]>>,
    shared: Arc<Shared>,
    tokio: tokio::runtime::Handle,
    client: Result<reqwest::Client, String>,
}

impl Engine {
    fn new(shared: Arc<Shared>, tokio: tokio::runtime::Handle) -> Engine {
        Engine { js: None, prelude: None, shared, tokio, client: fetch::client() }
    }

    fn serve(&mut self, request: Request, tokio: &tokio::runtime::Runtime) {
        match request {
            Request::Run { job, reply } => {
                // A caller that went away (request cancelled) needs no answer.
                if reply.is_closed() {
                    return;
                }
                let outcome = self.run_job(job, tokio);
                let _ = reply.send(outcome);
                self.collect_garbage();
            }
            Request::Check { code, reply } => {
                if reply.is_closed() {
                    return;
                }
                let _ = reply.send(self.check(&code, tokio));
                self.collect_garbage();
            }
        }
    }

    /// Frees the contexts of finished executions (their built-ins form cycles that only the
    /// cycle collector reclaims). Runs after the reply is sent, off the caller's latency.
    fn collect_garbage(&self) {
        if let Some(js) = &self.js {
            js.runtime.run_gc();
        }
    }

    fn new_state(&self, mode: Mode, now_millis: i64, claims: Map<String, serde_json::Value>) -> ExecState {
        ExecState {
            mode,
            now_millis,
            claims,
            deny: None,
            fatal: None,
            log: LogBuffer::default(),
            // Checking must not touch the cache that real executions share.
            cache: match mode {
                Mode::Run => self.shared.cache.clone(),
                Mode::Check => Arc::new(Mutex::new(Cache::default())),
            },
            allow: self.shared.allow.clone(),
            client: self.client.clone(),
            tokio: self.tokio.clone(),
            fetches_started: 0,
            inflight: JoinSet::new(),
        }
    }

    fn run_job(&mut self, job: Job, tokio: &tokio::runtime::Runtime) -> JobOutcome {
        let mut claims = Map::new();
        let mut logs = Vec::with_capacity(job.actions.len());
        for action in &job.actions {
            let event = event_for(&job.event, action, &claims);
            let state = Rc::new(RefCell::new(self.new_state(Mode::Run, job.now_millis, claims)));
            let ended = self.execute(tokio, &action.code, Some(&event), &state, self.shared.limits.timeout);
            let (fatal, deny) = {
                let mut state = state.borrow_mut();
                claims = std::mem::take(&mut state.claims);
                logs.push(ActionLog { action: action.name.clone(), lines: std::mem::take(&mut state.log.lines) });
                (state.fatal.take(), state.deny.take())
            };
            let end = phrase_run(&action.name, ended, fatal, deny, self.shared.limits.timeout);
            match end {
                ActionEnd::Continue => {}
                ActionEnd::Denied(code, reason) => {
                    return JobOutcome::Denied { action: action.name.clone(), code, reason, logs };
                }
                ActionEnd::Failed(error) => {
                    return JobOutcome::Failed { action: action.name.clone(), error, logs };
                }
            }
        }
        JobOutcome::Allowed { custom_claims: claims, logs }
    }

    fn check(&mut self, code: &str, tokio: &tokio::runtime::Runtime) -> Result<(), CheckError> {
        let state = Rc::new(RefCell::new(self.new_state(Mode::Check, 0, Map::new())));
        let budget = self.shared.limits.timeout.min(CHECK_BUDGET);
        let message = match self.execute(tokio, code, None, &state, budget) {
            Ended::Completed => return Ok(()),
            Ended::NotAFunction => "exports.onExecuteCredentialsExchange is not a function".to_owned(),
            Ended::Requires(line, name) => format!("line {line}: require('{name}'): module not provided"),
            Ended::Threw { text, line, .. } => match line {
                Some(line) => format!("line {line}: {text}"),
                None => text,
            },
            Ended::Stalled => "the top level did not finish".to_owned(),
            Ended::TimedOut => format!("the top level did not finish within {} ms", budget.as_millis()),
            Ended::OutOfMemory => "the top level ran out of memory".to_owned(),
            Ended::Broken(error) => error,
        };
        Err(CheckError { message })
    }

    /// Runs `code` in a fresh context of this worker's runtime: a check (`event` is `None`) or
    /// one handler execution, within `budget`.
    fn execute(
        &mut self,
        tokio: &tokio::runtime::Runtime,
        code: &str,
        event: Option<&str>,
        state: &Rc<RefCell<ExecState>>,
        budget: Duration,
    ) -> Ended {
        let js = match self.js.take() {
            Some(js) => js,
            None => match Js::new(&self.shared.limits) {
                Ok(js) => js,
                Err(error) => return Ended::Broken(format!("cannot create a JS runtime: {error}")),
            },
        };
        let prelude = match &self.prelude {
            Some(prelude) => prelude.clone(),
            None => match compile_prelude(&js.runtime) {
                Ok(bytecode) => {
                    let bytecode: Rc<[u8]> = bytecode.into();
                    self.prelude = Some(bytecode.clone());
                    bytecode
                }
                Err(error) => return Ended::Broken(format!("cannot compile the prelude: {error}")),
            },
        };
        let now = Instant::now();
        // A `Limits::timeout` too large to add means "effectively never".
        let deadline = now.checked_add(budget).unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
        js.fired.set(false);
        js.deadline.set(Some(deadline));
        let ended = match Context::full(&js.runtime) {
            Ok(context) => context.with(|ctx| {
                let run = Drive { prelude: &prelude, code, event, state, fired: &js.fired, deadline, tokio };
                let result = run.drive(&ctx);
                match result {
                    Ok(ended) => ended,
                    Err(error) => classify_error(&ctx, error, js.fired.get()),
                }
            }),
            Err(rquickjs::Error::Allocation) => Ended::OutOfMemory,
            Err(error) => Ended::Broken(format!("cannot create a JS context: {error}")),
        };
        js.deadline.set(None);
        // Fetches still running belong to this execution only.
        state.borrow_mut().inflight.abort_all();
        // Leftover promise jobs would run in the next execution; a runtime stopped at a
        // deadline or by OOM is not worth trusting. Both get a fresh runtime.
        if ended.leaves_runtime_clean() && !js.runtime.is_job_pending() {
            self.js = Some(js);
        }
        ended
    }
}

/// The inputs of one execution inside its context.
struct Drive<'a> {
    prelude: &'a [u8],
    code: &'a str,
    event: Option<&'a str>,
    state: &'a Rc<RefCell<ExecState>>,
    fired: &'a Cell<bool>,
    deadline: Instant,
    tokio: &'a tokio::runtime::Runtime,
}

impl Drive<'_> {
    fn drive<'js>(&self, ctx: &Ctx<'js>) -> rquickjs::Result<Ended> {
        let host = host::host_object(ctx, self.state)?;
        let controls: Object = load_prelude(ctx, self.prelude)?.call((host,))?;
        // The source goes on the wrapper's first line, so QuickJS's line numbers are the
        // Action's own; the closing brace is on its own line in case the code ends in a comment.
        // Sloppy mode, as Node runs CommonJS.
        let wrapped = format!("(function (exports, module, require) {{{}\n}})", self.code);
        let factory: Function = ctx.eval_with_options(wrapped, eval_options(ACTION_FILE, false))?;
        let Some(event) = self.event else {
            if let Some((line, name)) = scan::find_require(self.code) {
                return Ok(Ended::Requires(line, name));
            }
            let check: Function = controls.get("check")?;
            let exported: bool = check.call((factory,))?;
            return Ok(if exported { Ended::Completed } else { Ended::NotAFunction });
        };
        let run: Function = controls.get("run")?;
        let settle: Function = controls.get("settle")?;
        let promise: Promise = run.call((factory, event))?;
        loop {
            // Microtasks first: most handlers settle here without any I/O.
            loop {
                if self.fired.get() || Instant::now() >= self.deadline {
                    return Ok(Ended::TimedOut);
                }
                if self.state.borrow().fatal.is_some() {
                    return Ok(Ended::Completed);
                }
                if !ctx.execute_pending_job() {
                    break;
                }
            }
            match promise.state() {
                PromiseState::Resolved => return Ok(Ended::Completed),
                PromiseState::Rejected => {
                    let reason = match promise.result::<Value>() {
                        Some(Err(rquickjs::Error::Exception)) => ctx.catch(),
                        _ => Value::new_undefined(ctx.clone()),
                    };
                    return Ok(classify(ctx, reason, self.fired.get()));
                }
                PromiseState::Pending => {}
            }
            let next = {
                let mut state = self.state.borrow_mut();
                if state.inflight.is_empty() {
                    return Ok(Ended::Stalled);
                }
                let deadline = tokio::time::Instant::from_std(self.deadline);
                // The timer must be created inside the runtime's context, hence the async block.
                self.tokio.block_on(async { tokio::time::timeout_at(deadline, state.inflight.join_next()).await })
            };
            match next {
                Err(_elapsed) => return Ok(Ended::TimedOut),
                Ok(None) => {}
                Ok(Some(Ok((id, Ok(payload))))) => settle.call::<_, ()>((id, true, payload))?,
                Ok(Some(Ok((id, Err(message))))) => settle.call::<_, ()>((id, false, message))?,
                Ok(Some(Err(error))) => return Ok(Ended::Broken(format!("fetch task failed: {error}"))),
            }
        }
    }
}

/// Compiles the prelude module to bytecode.
fn compile_prelude(runtime: &rquickjs::Runtime) -> rquickjs::Result<Vec<u8>> {
    let context = Context::full(runtime)?;
    context.with(|ctx| Module::declare(ctx, PRELUDE_FILE, PRELUDE)?.write(WriteOptions::default()))
}

/// Instantiates the prelude from its bytecode in a fresh context and returns its default export.
#[allow(unsafe_code)]
fn load_prelude<'js>(ctx: &Ctx<'js>, bytecode: &[u8]) -> rquickjs::Result<Function<'js>> {
    // SAFETY: `Module::load` requires valid QuickJS bytecode. These bytes come only from
    // `compile_prelude`, i.e. from `Module::write` of this same QuickJS build in this process,
    // and are never modified.
    let module = unsafe { Module::load(ctx.clone(), bytecode) }?;
    let (module, _evaluated) = module.eval()?;
    module.get("default")
}

fn eval_options(file: &str, strict: bool) -> EvalOptions {
    let mut options = EvalOptions::default();
    options.global = true;
    options.strict = strict;
    options.filename = Some(file.to_owned());
    options
}

/// Turns an rquickjs error (usually a pending JS exception) into how the execution ended.
fn classify_error(ctx: &Ctx<'_>, error: rquickjs::Error, fired: bool) -> Ended {
    match error {
        rquickjs::Error::Exception => classify(ctx, ctx.catch(), fired),
        _ if fired => Ended::TimedOut,
        rquickjs::Error::Allocation => Ended::OutOfMemory,
        error => Ended::Broken(error.to_string()),
    }
}

/// Turns a thrown or rejected JS value into how the execution ended.
fn classify<'js>(ctx: &Ctx<'js>, value: Value<'js>, fired: bool) -> Ended {
    if fired {
        // QuickJS's "interrupted" error: the deadline passed.
        return Ended::TimedOut;
    }
    if value.is_null() {
        // When QuickJS cannot even allocate the error object it throws null. An Action could
        // also `throw null` itself; we cannot tell the two apart and call both out of memory.
        return Ended::OutOfMemory;
    }
    let text_of = |v: Value<'js>| -> Option<String> { v.as_string().and_then(|s| s.to_string().ok()) };
    if let Some(object) = value.as_object() {
        let message = object.get::<_, Value>("message").ok().and_then(text_of);
        let name = object.get::<_, Value>("name").ok().and_then(text_of);
        if let Some(message) = message {
            if name.as_deref() == Some("InternalError") && message == "out of memory" {
                return Ended::OutOfMemory;
            }
            let stack = object.get::<_, Value>("stack").ok().and_then(text_of).unwrap_or_default();
            let name = name.unwrap_or_else(|| "Error".to_owned());
            return Ended::Threw {
                text: format!("{name}: {message}"),
                frames: scan::action_frames(&stack),
                line: scan::action_line(&stack),
            };
        }
        // A plain object: show it as JSON when it has a JSON form.
        if let Ok(Some(json)) = ctx.json_stringify(value.clone())
            && let Ok(json) = json.to_string()
        {
            return Ended::Threw { text: json, frames: String::new(), line: None };
        }
    }
    let text = value.get::<Coerced<String>>().map_or_else(|_| "an exception that cannot be shown".to_owned(), |c| c.0);
    Ended::Threw { text, frames: String::new(), line: None }
}

/// Phrases one execution's end for its job.
fn phrase_run(
    name: &str,
    ended: Ended,
    fatal: Option<String>,
    deny: Option<(DenyCode, String)>,
    timeout: Duration,
) -> ActionEnd {
    let failed = |what: String| ActionEnd::Failed(format!("Action '{name}' {what}"));
    match ended {
        Ended::TimedOut => failed(format!("timed out after {} ms", timeout.as_millis())),
        Ended::OutOfMemory => failed("ran out of memory".to_owned()),
        _ if fatal.is_some() => failed(format!("failed: {}", fatal.unwrap_or_default())),
        Ended::Threw { text, frames, .. } if frames.is_empty() => failed(format!("failed: {text}")),
        Ended::Threw { text, frames, .. } => failed(format!("failed: {text}\n{frames}")),
        Ended::Stalled => failed("failed: its handler returned a promise that never settles".to_owned()),
        Ended::Broken(error) => failed(format!("failed: {error}")),
        Ended::NotAFunction | Ended::Requires(..) => {
            failed("failed: exports.onExecuteCredentialsExchange is not a function".to_owned())
        }
        Ended::Completed => match deny {
            Some((code, reason)) => ActionEnd::Denied(code, reason),
            None => ActionEnd::Continue,
        },
    }
}

/// The event one Action sees: the job's event plus its own secrets, the claims set so far, and
/// an empty `request.geoip` when none is known (Auth0's own examples read
/// `event.request.geoip.continentCode` unguarded).
fn event_for(event: &serde_json::Value, action: &ActionCode, claims: &Map<String, serde_json::Value>) -> String {
    let mut event = event.clone();
    if let Some(object) = event.as_object_mut() {
        let secrets: Map<String, serde_json::Value> = action
            .secrets
            .iter()
            .map(|(name, value)| (name.clone(), serde_json::Value::String(value.clone())))
            .collect();
        object.insert("secrets".to_owned(), serde_json::Value::Object(secrets));
        if !claims.is_empty()
            && let Some(token) = object.get_mut("accessToken").and_then(|t| t.as_object_mut())
        {
            token.insert("customClaims".to_owned(), serde_json::Value::Object(claims.clone()));
        }
        if let Some(request) = object.get_mut("request").and_then(|r| r.as_object_mut()) {
            request.entry("geoip").or_insert_with(|| serde_json::Value::Object(Map::new()));
        }
    }
    event.to_string()
}
