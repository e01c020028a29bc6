//! Brute-force defence for client authentication.
//!
//! Failures are counted per client_id and per source address in a fixed window. Past a first
//! threshold each request for that key waits a little longer (slowing guessing down to a crawl);
//! past a second, the key is refused outright (429 + `Retry-After`) until the lockout ends. A
//! successful authentication resets its client_id's count. Only the offending key is affected:
//! other client ids keep working, and the per-address thresholds are far higher than the
//! per-client ones so that many clients behind one NAT are not locked out by one bad actor.
//!
//! State is per instance and in memory (bounded): the goal is to make online guessing of 384-bit
//! secrets pointless and cheap to refuse, not to keep an audit trail (lockouts are events).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ration_domain::UnixTime;

/// Thresholds for one kind of key.
#[derive(Clone, Copy, Debug)]
pub struct Thresholds {
    /// Failures in the window after which requests are delayed.
    pub slow_after: u32,
    /// Failures in the window after which the key is locked out.
    pub lock_after: u32,
    /// How long a lockout lasts.
    pub lockout: Duration,
}

#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub client: Thresholds,
    pub address: Thresholds,
    /// Failures older than this are forgotten.
    pub window: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            client: Thresholds { slow_after: 5, lock_after: 10, lockout: Duration::from_secs(300) },
            address: Thresholds { slow_after: 100, lock_after: 200, lockout: Duration::from_secs(300) },
            window: Duration::from_secs(300),
        }
    }
}

/// Keys tracked at most per kind; beyond it, entries whose window has passed are dropped first
/// and, failing that, new keys are not tracked (bounded memory under a flood of random ids).
const MAX_TRACKED: usize = 100_000;
/// Longest delay added to a request of a key being slowed down.
const MAX_DELAY: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Default)]
struct Entry {
    failures: u32,
    window_start: i64,
    locked_until: i64,
}

/// What to do with a request before authenticating it.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Answer only after this delay.
    Slow(Duration),
    /// Refuse; retry after this many seconds.
    Locked {
        retry_after: u64,
    },
}

/// A lockout that just started, for its event.
#[derive(Debug, PartialEq, Eq)]
pub struct Lockout {
    /// `client_id` or `ip`.
    pub key_type: &'static str,
    pub key: String,
    pub failures: u32,
    pub until: UnixTime,
}

pub struct Guard {
    settings: Settings,
    clients: Tracked,
    addresses: Tracked,
}

/// The failures of one kind of key.
#[derive(Default)]
struct Tracked {
    /// A std mutex: held for one map operation, never across an `.await`.
    map: Mutex<HashMap<String, Entry>>,
    /// Whether `map` holds anything, written under its lock. Every token request checks both maps
    /// and clears its client's entry, and almost always finds them empty: read first, this flag
    /// spares the request three lock round trips, each of which moved the lock's cache line to
    /// the requesting core (the flag's line stays shared by both).
    any: AtomicBool,
}

impl Tracked {
    fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Acquire)
    }
}

impl Guard {
    pub fn new(settings: Settings) -> Guard {
        Guard { settings, clients: Tracked::default(), addresses: Tracked::default() }
    }

    /// The stricter verdict of the client's and the address's.
    pub fn check(&self, client_id: Option<&str>, address: &str, now: UnixTime) -> Verdict {
        let client = client_id
            .map_or(Verdict::Allow, |id| verdict(&self.clients, id, &self.settings.client, self.settings.window, now));
        let addr = verdict(&self.addresses, address, &self.settings.address, self.settings.window, now);
        match (client, addr) {
            (Verdict::Locked { retry_after: a }, Verdict::Locked { retry_after: b }) => {
                Verdict::Locked { retry_after: a.max(b) }
            }
            (l @ Verdict::Locked { .. }, _) | (_, l @ Verdict::Locked { .. }) => l,
            (Verdict::Slow(a), Verdict::Slow(b)) => Verdict::Slow(a.max(b)),
            (s @ Verdict::Slow(_), _) | (_, s @ Verdict::Slow(_)) => s,
            _ => Verdict::Allow,
        }
    }

    /// Counts a failed authentication; returns the lockouts it started.
    pub fn failure(&self, client_id: Option<&str>, address: &str, now: UnixTime) -> Vec<Lockout> {
        let mut started = Vec::new();
        if let Some(id) = client_id
            && let Some(l) = count(&self.clients, id, "client_id", &self.settings.client, self.settings.window, now)
        {
            started.push(l);
        }
        if let Some(l) = count(&self.addresses, address, "ip", &self.settings.address, self.settings.window, now) {
            started.push(l);
        }
        started
    }

    /// A successful authentication clears its client's failures (not its address's: an attacker
    /// with one valid client must not be able to reset the address count).
    pub fn success(&self, client_id: &str) {
        // Nothing to clear is the common case: checking that first skips the lock and hashing the
        // id (SipHash, over bytes that are a cold cache line with many clients).
        if !self.clients.is_empty()
            && let Ok(mut clients) = self.clients.map.lock()
        {
            clients.remove(client_id);
            self.clients.any.store(!clients.is_empty(), Ordering::Release);
        }
    }
}

fn verdict(tracked: &Tracked, key: &str, t: &Thresholds, window: Duration, now: UnixTime) -> Verdict {
    if tracked.is_empty() {
        return Verdict::Allow;
    }
    let Ok(map) = tracked.map.lock() else { return Verdict::Allow };
    let Some(e) = map.get(key) else { return Verdict::Allow };
    if e.locked_until > now.millis {
        return Verdict::Locked { retry_after: u64::try_from((e.locked_until - now.millis + 999) / 1000).unwrap_or(1) };
    }
    let in_window = now.millis - e.window_start < window.as_millis() as i64;
    if in_window && e.failures >= t.slow_after {
        let steps = e.failures - t.slow_after + 1;
        return Verdict::Slow((Duration::from_millis(250) * steps).min(MAX_DELAY));
    }
    Verdict::Allow
}

fn count(
    tracked: &Tracked,
    key: &str,
    key_type: &'static str,
    t: &Thresholds,
    window: Duration,
    now: UnixTime,
) -> Option<Lockout> {
    let mut map = tracked.map.lock().ok()?;
    // Every way out below leaves the map holding something: this key's entry, or MAX_TRACKED
    // others.
    tracked.any.store(true, Ordering::Release);
    let window_ms = window.as_millis() as i64;
    if !map.contains_key(key) && map.len() >= MAX_TRACKED {
        map.retain(|_, e| now.millis - e.window_start < window_ms || e.locked_until > now.millis);
        if map.len() >= MAX_TRACKED {
            return None;
        }
    }
    let e = map.entry(key.to_owned()).or_default();
    if now.millis - e.window_start >= window_ms {
        *e = Entry { failures: 0, window_start: now.millis, locked_until: e.locked_until };
    }
    e.failures = e.failures.saturating_add(1);
    if e.failures >= t.lock_after && e.locked_until <= now.millis {
        e.locked_until = now.millis + t.lockout.as_millis() as i64;
        let lockout = Lockout {
            key_type,
            key: key.to_owned(),
            failures: e.failures,
            until: UnixTime::from_millis(e.locked_until),
        };
        // A fresh count after the lockout ends.
        e.failures = 0;
        e.window_start = e.locked_until;
        return Some(lockout);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lock-free check trusts the flags: each must say whether its map holds anything.
    #[test]
    fn the_flags_follow_the_maps() {
        let g = Guard::new(Settings::default());
        let t = UnixTime::from_secs(1_800_000_000);
        assert!(g.clients.is_empty() && g.addresses.is_empty());
        assert!(g.failure(Some("a"), "1.2.3.4", t).is_empty());
        assert!(!g.clients.is_empty() && !g.addresses.is_empty());
        g.success("b");
        assert!(!g.clients.is_empty(), "another client's success clears nothing");
        g.success("a");
        assert!(g.clients.is_empty(), "the last entry is gone");
        assert!(!g.addresses.is_empty(), "a success does not clear the address");
        assert!(g.failure(None, "5.6.7.8", t).is_empty());
        assert!(g.clients.is_empty(), "a failure without a client id tracks no client");
    }

    #[test]
    fn one_client_locks_out_others_do_not_and_success_resets() {
        let g = Guard::new(Settings::default());
        let t = |s: i64| UnixTime::from_secs(1_800_000_000 + s);
        for _ in 0..4 {
            assert!(g.failure(Some("a"), "1.2.3.4", t(0)).is_empty());
        }
        assert_eq!(g.check(Some("a"), "1.2.3.4", t(0)), Verdict::Allow);
        g.failure(Some("a"), "1.2.3.4", t(0));
        assert_eq!(g.check(Some("a"), "1.2.3.4", t(0)), Verdict::Slow(Duration::from_millis(250)));
        let mut lockouts = Vec::new();
        for _ in 0..5 {
            lockouts.extend(g.failure(Some("a"), "1.2.3.4", t(1)));
        }
        assert_eq!(lockouts.len(), 1);
        assert_eq!(lockouts[0].key_type, "client_id");
        assert_eq!(g.check(Some("a"), "1.2.3.4", t(2)), Verdict::Locked { retry_after: 299 });
        assert_eq!(g.check(Some("b"), "1.2.3.4", t(2)), Verdict::Allow, "another client from the same address");
        assert_eq!(g.check(Some("a"), "1.2.3.4", t(302)), Verdict::Allow, "the lockout ends");

        g.failure(Some("c"), "5.6.7.8", t(0));
        g.success("c");
        assert_eq!(g.check(Some("c"), "5.6.7.8", t(0)), Verdict::Allow);
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let g = Guard::new(Settings::default());
        for s in 0..9 {
            g.failure(Some("a"), "ip", UnixTime::from_secs(s * 40));
        }
        // Spread over 320 s: the window restarted, so no lockout.
        assert!(!matches!(g.check(Some("a"), "ip", UnixTime::from_secs(330)), Verdict::Locked { .. }));
    }
}
