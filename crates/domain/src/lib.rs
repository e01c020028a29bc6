//! Ration's domain: the entities an operator configures, the quota arithmetic, and the decision
//! whether a client-credentials request may get a token.
//!
//! Architecture invariant: nothing here does IO, reads the clock or knows a wire format. Time comes
//! in as [`UnixTime`] arguments; serialization lives in `ration-proto` (HTTP) and `ration-store`
//! (persistence).

pub mod catalog;
pub mod entity;
pub mod quota;
pub mod time;
pub mod token;

pub use catalog::Catalog;
pub use entity::*;
pub use quota::{Bucket, BucketKey, EntityKind, QuotaLimits, TokenQuota, Window};
pub use time::UnixTime;
pub use token::{Decision, TokenError, TokenRequest};
