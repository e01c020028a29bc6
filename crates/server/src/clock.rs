//! The one place the wall clock is read. Handlers call it once per request and pass the value down.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ration_domain::UnixTime;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> UnixTime;
}

/// The system clock, optionally shifted by an offset. The offset exists so that black-box tests
/// can cross UTC minute/hour/day boundaries without waiting; it is only settable when the server
/// was started with the test clock enabled (see `ServerConfig::test_clock`).
#[derive(Default)]
pub struct SystemClock {
    offset_millis: AtomicI64,
}

impl SystemClock {
    pub fn set_offset_millis(&self, offset: i64) {
        self.offset_millis.store(offset, Ordering::Relaxed);
    }

    pub fn offset_millis(&self) -> i64 {
        self.offset_millis.load(Ordering::Relaxed)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        // A clock before 1970 is a misconfigured host; treating it as the epoch keeps us running.
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        UnixTime::from_millis(millis + self.offset_millis.load(Ordering::Relaxed))
    }
}
