//! Errors of the operator CLI and the exit codes they map to.
//!
//! Every failure carries what went wrong (with the server's `message` when there is one) and,
//! where it helps, what to do next. The exit code tells scripts which kind of failure it was.

use std::fmt;
use std::process::ExitCode;

/// The kinds of failure, each with its own exit code (2 is clap's usage error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Stdout was closed (`ration logs tail | head`): stop quietly, with success.
    BrokenPipe,
    /// A flag value the CLI itself refuses (clap also exits 2 for its own usage errors).
    Usage,
    /// No profile, an unknown profile, or an unreadable configuration file.
    NotLoggedIn,
    /// The server refused the credentials (401) or the permission (403).
    Auth,
    /// The server answered 404.
    NotFound,
    /// The server refused the input (400, 409, 413, 422).
    Invalid,
    /// The server failed (5xx), could not be reached, or answered something unexpected.
    Server,
    /// A token request was refused because a quota is exhausted (429).
    QuotaExceeded,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::BrokenPipe => 0,
            Exit::Usage => 2,
            Exit::NotLoggedIn => 3,
            Exit::Auth => 4,
            Exit::NotFound => 5,
            Exit::Invalid => 6,
            Exit::Server => 7,
            Exit::QuotaExceeded => 8,
        }
    }

    /// The exit kind of an HTTP error status.
    pub fn from_status(status: u16) -> Exit {
        match status {
            401 | 403 => Exit::Auth,
            404 => Exit::NotFound,
            400 | 409 | 413 | 422 => Exit::Invalid,
            429 => Exit::QuotaExceeded,
            _ => Exit::Server,
        }
    }
}

/// A failure of a CLI command: the exit kind, a message and an optional hint.
#[derive(Debug, Clone)]
pub struct CliError {
    /// Which exit code the process ends with.
    pub exit: Exit,
    /// What went wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl CliError {
    /// A failure of the given kind.
    pub fn new(exit: Exit, message: impl Into<String>) -> CliError {
        CliError { exit, message: message.into(), hint: None }
    }

    /// A flag value the CLI refuses before talking to the server (exit 2).
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::new(Exit::Usage, message)
    }

    /// Adds (or replaces) the hint.
    pub fn hint(mut self, hint: impl Into<String>) -> CliError {
        self.hint = Some(hint.into());
        self
    }

    /// Adds the hint only when the failure is of kind `exit` (e.g. a 404 → "list them with …").
    pub fn hint_if(self, exit: Exit, hint: impl Into<String>) -> CliError {
        if self.exit == exit { self.hint(hint) } else { self }
    }

    /// Prints the error to stderr and returns the exit code.
    pub fn report(&self) -> ExitCode {
        if self.exit != Exit::BrokenPipe {
            eprintln!("error: {}", self.message);
            if let Some(hint) = &self.hint {
                eprintln!("hint: {hint}");
            }
        }
        ExitCode::from(self.exit.code())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// `reqwest`'s error with its causes, e.g. `error sending request: … Connection refused`.
pub fn describe_transport(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Result of a CLI step.
pub type CliResult<T> = Result<T, CliError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_documented_codes() {
        let cases = [(400, 6), (401, 4), (403, 4), (404, 5), (409, 6), (429, 8), (500, 7), (503, 7), (302, 7)];
        for (status, code) in cases {
            assert_eq!(Exit::from_status(status).code(), code, "status {status}");
        }
    }

    #[test]
    fn hint_if_only_matches_its_kind() {
        let e = CliError::new(Exit::NotFound, "x").hint_if(Exit::NotFound, "list");
        assert_eq!(e.hint.as_deref(), Some("list"));
        let e = CliError::new(Exit::Invalid, "x").hint_if(Exit::NotFound, "list");
        assert_eq!(e.hint, None);
    }
}
