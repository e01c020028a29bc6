//! Acceptance tests for issue 2: the real `ration serve` binary driven over HTTP.
//!
//! One test binary for the crate (see `tests/DO_NOT_ADD_MORE_TEST_FILES`). Every test starts its
//! own server on port 0 with its own temporary data directory, so tests run in parallel.
//!
//! Run: `cargo test -p ration --test it`

mod actions;
mod actions_fetch;
mod bad_input;
mod cli;
mod config;
mod dashboard;
mod distributed;
mod events;
mod guard;
mod harness;
mod log_streams;
mod metrics;
mod mgmt;
mod quota;
mod quota_crash;
mod receiver;
mod restart;
mod security;
mod security_keys;
mod third_party;
mod token;
