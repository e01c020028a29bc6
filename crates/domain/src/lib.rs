//! Ration's domain: the entities an operator configures, the quota arithmetic, and the decision
//! whether a client-credentials request may get a token.
//!
//! Architecture invariant: nothing here does IO, reads the clock or knows a wire format. Time comes
//! in as [`UnixTime`] arguments; serialization lives in `ration-proto` (HTTP) and `ration-store`
//! (persistence).

pub mod action;
pub mod catalog;
pub mod entity;
pub mod id;
pub mod logstream;
pub mod quota;
pub mod time;
pub mod token;

pub use action::{Action, ActionBinding, ActionSecret, ActionVersion, CREDENTIALS_EXCHANGE};
pub use catalog::{Catalog, ClientFacts, ClientGrants, GrantFacts};
pub use entity::*;
pub use id::Id;
pub use logstream::{ContentFormat, HttpSink, LogStream, Sink, StreamStatus};
pub use quota::{Bucket, BucketKey, EntityKind, QuotaLimits, TokenQuota, Window};
pub use time::UnixTime;
pub use token::{Decision, Scopes, TokenError, TokenRequest};

/// How far an acknowledged write (a counted token, an event, a configuration change) is guaranteed
/// to survive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// Written to the operating system before the response: survives a process crash (`kill -9`),
    /// not a power loss. The default: it costs a `write(2)`, not a disk flush.
    #[default]
    Process,
    /// Flushed to the disk before the response: survives power loss, at the cost of a flush per
    /// group commit.
    Fsync,
}
