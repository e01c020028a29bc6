//! `ration logs tail`: recent events of the event log, and with `--follow`, new ones as they come.

use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

use super::client::Session;
use super::error::{CliError, CliResult};
use super::output::{emit, text};
use super::{GlobalArgs, split_list};

/// Poll interval of `--follow`.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Events per checkpoint page (the server's maximum).
const PAGE: u32 = 100;
/// A `from` lower than every `log_id` (they start with `900`).
const BEFORE_FIRST_LOG_ID: &str = "0";

/// `ration logs` subcommands.
#[derive(Subcommand, Debug)]
pub enum LogsCommand {
    /// Print the last events (oldest first); with --follow keep printing new ones.
    Tail(TailArgs),
}

/// `ration logs tail` flags.
#[derive(Args, Debug)]
pub struct TailArgs {
    /// Only these event types, comma-separated (e.g. seccft,feccft,sapi).
    #[arg(long = "type", value_name = "TYPE,…")]
    types: Vec<String>,
    /// Only events of this application (client_id).
    #[arg(long, value_name = "CLIENT_ID")]
    client: Option<String>,
    /// How many recent events to print first (1 to 100).
    #[arg(short = 'n', long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
    take: u32,
    /// Keep polling every second for new events until interrupted.
    #[arg(short, long)]
    follow: bool,
}

struct Filter {
    types: Vec<String>,
    client: Option<String>,
}

impl Filter {
    fn matches(&self, event: &Value) -> bool {
        let ty = text(event, "type");
        (self.types.is_empty() || self.types.contains(&ty))
            && self.client.as_ref().is_none_or(|c| event.get("client_id").and_then(Value::as_str) == Some(c))
    }

    /// Auth0's `q` syntax: `type:(seccft OR feccft) AND client_id:"…"`.
    fn lucene(&self) -> String {
        let mut terms = Vec::new();
        match self.types.as_slice() {
            [] => {}
            [one] => terms.push(format!("type:{one}")),
            many => terms.push(format!("type:({})", many.join(" OR "))),
        }
        if let Some(c) = &self.client {
            terms.push(format!("client_id:\"{c}\""));
        }
        terms.join(" AND ")
    }
}

/// One event per line: `date  type  client_id  description [audience]`.
fn line(event: &Value) -> String {
    let client = match text(event, "client_id") {
        c if c.is_empty() => "-".to_owned(),
        c => c,
    };
    let mut out =
        format!("{}  {:<7} {}  {}", text(event, "date"), text(event, "type"), client, text(event, "description"));
    let audience = text(event, "audience");
    if !audience.is_empty() {
        out.push_str(&format!(" [{audience}]"));
    }
    out
}

fn print(global: &GlobalArgs, event: &Value) -> CliResult<()> {
    if global.json {
        let compact = serde_json::to_string(event)
            .map_err(|e| CliError::new(super::error::Exit::Server, format!("cannot encode JSON: {e}")))?;
        emit(&compact)
    } else {
        emit(&line(event))
    }
}

/// Runs a `logs` subcommand.
pub async fn run(global: &GlobalArgs, command: LogsCommand) -> CliResult<()> {
    let LogsCommand::Tail(args) = command;
    let mut session = Session::open(global.profile.as_deref())?;
    let filter = Filter { types: split_list(&args.types), client: args.client.clone() };

    // With --follow, the newest log_id before the search: no event can fall between the events
    // printed first and those followed.
    let newest = if args.follow { newest_log_id(&mut session).await? } else { None };

    // The last events, newest first from the search API; printed oldest first.
    let q = filter.lucene();
    let per_page = args.take.to_string();
    let mut query: Vec<(&str, &str)> = vec![("per_page", &per_page)];
    if !q.is_empty() {
        query.push(("q", &q));
    }
    let recent = session.call(Method::GET, &["logs"], &query, None).await?;
    let recent: Vec<Value> = recent.as_array().cloned().unwrap_or_default();
    for event in recent.iter().rev() {
        print(global, event)?;
    }
    if !args.follow {
        return Ok(());
    }

    // Follow with checkpoint paging after whichever is newer: the newest event before the search
    // or the newest printed (the checkpoint mode takes no query: filter here).
    let printed = recent.first().map(|e| text(e, "log_id")).filter(|id| !id.is_empty());
    let cursor = match (newest, printed) {
        (Some(a), Some(b)) => a.max(b),
        (a, b) => a.or(b).unwrap_or_else(|| BEFORE_FIRST_LOG_ID.to_owned()),
    };
    // Ctrl-C ends the tail normally (exit 0); if the handler cannot be installed, SIGINT keeps
    // its default effect.
    let interrupted = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = follow(global, &mut session, &filter, cursor) => result,
        () = interrupted => Ok(()),
    }
}

/// The `log_id` of the newest event of any kind, `None` when the log is empty.
async fn newest_log_id(session: &mut Session) -> CliResult<Option<String>> {
    let newest = session.call(Method::GET, &["logs"], &[("per_page", "1")], None).await?;
    Ok(newest.as_array().and_then(|a| a.first()).map(|e| text(e, "log_id")).filter(|id| !id.is_empty()))
}

/// Polls checkpoint pages after `cursor` forever, printing the events that match.
async fn follow(global: &GlobalArgs, session: &mut Session, filter: &Filter, mut cursor: String) -> CliResult<()> {
    let take = PAGE.to_string();
    loop {
        let page = session.call(Method::GET, &["logs"], &[("from", &cursor), ("take", &take)], None).await?;
        let events = page.as_array().cloned().unwrap_or_default();
        for event in &events {
            let id = text(event, "log_id");
            if !id.is_empty() {
                cursor = id;
            }
            if filter.matches(event) {
                print(global, event)?;
            }
        }
        if events.len() < PAGE as usize {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn filters_build_queries_and_match() {
        let f = Filter { types: vec!["seccft".into(), "feccft".into()], client: Some("abc".into()) };
        assert_eq!(f.lucene(), "type:(seccft OR feccft) AND client_id:\"abc\"");
        assert!(f.matches(&json!({"type": "seccft", "client_id": "abc"})));
        assert!(!f.matches(&json!({"type": "sapi", "client_id": "abc"})));
        assert!(!f.matches(&json!({"type": "seccft", "client_id": "other"})));
        let none = Filter { types: vec![], client: None };
        assert_eq!(none.lucene(), "");
        assert!(none.matches(&json!({"type": "sapi"})));
    }

    #[test]
    fn lines_are_readable() {
        let e = json!({"date": "2025-01-01T00:00:00.000Z", "type": "seccft", "client_id": "abc",
                       "description": "Client Credentials for Access Token", "audience": "https://api"});
        assert_eq!(
            line(&e),
            "2025-01-01T00:00:00.000Z  seccft  abc  Client Credentials for Access Token [https://api]"
        );
    }
}
