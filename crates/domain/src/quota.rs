//! Token quotas: fixed UTC windows (minute, hour, day), the buckets that apply to a request, and the
//! arithmetic of checking and consuming them.
//!
//! Why fixed windows: Auth0's quotas reset at the top of the UTC hour and at 00:00 UTC, and its
//! headers report seconds until that reset. Sliding windows would not match those headers.

use std::fmt;

use crate::id::Id;
use crate::time::UnixTime;

/// Quota configuration of one client or organization (Auth0's `token_quota.client_credentials`,
/// plus the `per_minute` extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenQuota {
    /// `false`: count, warn and send headers, but never reject (Auth0's monitoring mode).
    pub enforce: bool,
    pub limits: QuotaLimits,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct QuotaLimits {
    pub per_minute: Option<u32>,
    pub per_hour: Option<u32>,
    pub per_day: Option<u32>,
}

impl QuotaLimits {
    pub fn get(&self, window: Window) -> Option<u32> {
        match window {
            Window::Minute => self.per_minute,
            Window::Hour => self.per_hour,
            Window::Day => self.per_day,
        }
    }

    /// The configured windows, shortest first (the order of Auth0's header, with minute first).
    pub fn iter(&self) -> impl Iterator<Item = (Window, u32)> + '_ {
        Window::ALL.into_iter().filter_map(|w| self.get(w).map(|limit| (w, limit)))
    }
}

/// Where the quota that applies to an entity comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaSource {
    /// The entity's own `token_quota`.
    Own,
    /// The tenant's `default_token_quota` for that kind of entity.
    TenantDefault,
}

/// The quota that applies: the entity's own, else the tenant default, else none (Auth0 §1.4).
pub fn effective_quota<'a>(
    own: Option<&'a TokenQuota>,
    default: Option<&'a TokenQuota>,
) -> Option<(&'a TokenQuota, QuotaSource)> {
    own.map(|q| (q, QuotaSource::Own)).or_else(|| default.map(|q| (q, QuotaSource::TenantDefault)))
}

/// Largest quota value Auth0 accepts (2^31 - 1).
pub const MAX_QUOTA: u32 = 2_147_483_647;

/// A fixed UTC window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    Minute,
    Hour,
    Day,
}

impl Window {
    pub const ALL: [Window; 3] = [Window::Minute, Window::Hour, Window::Day];

    /// Auth0's bucket name as it appears in headers and events.
    pub fn name(self) -> &'static str {
        match self {
            Window::Minute => "per_minute",
            Window::Hour => "per_hour",
            Window::Day => "per_day",
        }
    }

    pub fn parse(name: &str) -> Option<Window> {
        Window::ALL.into_iter().find(|w| w.name() == name)
    }

    /// The window's place in [`Window::ALL`], for per-window tables.
    pub fn index(self) -> usize {
        match self {
            Window::Minute => 0,
            Window::Hour => 1,
            Window::Day => 2,
        }
    }

    /// [`Window::len_secs`] as text, for headers.
    pub fn len_secs_str(self) -> &'static str {
        match self {
            Window::Minute => "60",
            Window::Hour => "3600",
            Window::Day => "86400",
        }
    }

    /// The start of this window's entry in Auth0's quota header, up to the quota.
    fn header_prefix(self) -> &'static str {
        match self {
            Window::Minute => "b=per_minute;q=",
            Window::Hour => "b=per_hour;q=",
            Window::Day => "b=per_day;q=",
        }
    }

    pub fn len_secs(self) -> i64 {
        match self {
            Window::Minute => 60,
            Window::Hour => 3_600,
            Window::Day => 86_400,
        }
    }

    /// Start (unix seconds) of the window that contains `now`. UTC has no leap seconds in unix
    /// time, so every minute, hour and day boundary is a multiple of the window length.
    pub fn start(self, now: UnixTime) -> i64 {
        let secs = now.secs();
        secs - secs.rem_euclid(self.len_secs())
    }

    /// First second of the next window: when a bucket of this window resets.
    pub fn reset_at(self, now: UnixTime) -> i64 {
        self.start(now) + self.len_secs()
    }

    /// Seconds from `now` until the reset, at least 1 (a reset "now" has already happened).
    pub fn secs_to_reset(self, now: UnixTime) -> i64 {
        let remaining_ms = self.reset_at(now) * 1000 - now.millis;
        // Round up: with 0.4 s left the client must still wait, and `t=0` would invite a retry
        // that is still rejected.
        (remaining_ms + 999) / 1000
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityKind {
    Client,
    Organization,
}

impl EntityKind {
    /// Auth0's `entity_type` in warning events.
    pub fn name(self) -> &'static str {
        match self {
            EntityKind::Client => "client",
            EntityKind::Organization => "organization",
        }
    }

    pub fn parse(s: &str) -> Option<EntityKind> {
        Some(match s {
            "client" => EntityKind::Client,
            "organization" => EntityKind::Organization,
            _ => return None,
        })
    }
}

/// Identifies one counter: an entity's count in one window instance.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketKey {
    pub entity: EntityKind,
    /// Inline ([`Id`]): the counters' map compares it on every lookup.
    pub entity_id: Id,
    pub window: Window,
    /// Unix seconds at which this window instance started.
    pub window_start: i64,
}

impl BucketKey {
    /// Unix seconds at which this bucket stops counting.
    pub fn expires_at(&self) -> i64 {
        self.window_start + self.window.len_secs()
    }
}

/// A bucket that applies to one request, with its limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub key: BucketKey,
    pub limit: u32,
    pub enforce: bool,
}

impl Bucket {
    /// Whether a count of `used` leaves no room for one more token (never, when not enforced).
    pub fn is_full(&self, used: u64) -> bool {
        self.enforce && used >= u64::from(self.limit)
    }
}

/// All buckets that apply to one token request, client buckets first.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct QuotaPlan {
    pub buckets: Vec<Bucket>,
}

impl QuotaPlan {
    /// Buckets of the client quota and, when the request has an organization, of the organization
    /// quota. `None` quotas contribute nothing.
    pub fn new(
        client: Option<(&str, &TokenQuota)>,
        organization: Option<(&str, &TokenQuota)>,
        now: UnixTime,
    ) -> QuotaPlan {
        // Sized once for the most a plan holds (three windows, two entities).
        let mut buckets = Vec::with_capacity(6);
        for (entity, item) in [(EntityKind::Client, client), (EntityKind::Organization, organization)] {
            let Some((id, quota)) = item else { continue };
            for (window, limit) in quota.limits.iter() {
                buckets.push(Bucket {
                    key: BucketKey { entity, entity_id: Id::from(id), window, window_start: window.start(now) },
                    limit,
                    enforce: quota.enforce,
                });
            }
        }
        QuotaPlan { buckets }
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    pub fn has(&self, entity: EntityKind) -> bool {
        self.buckets.iter().any(|b| b.key.entity == entity)
    }

    /// Index of the first enforced bucket that `used` (one count per bucket, same order) leaves no
    /// room in, or `None` when one more token fits everywhere it must.
    pub fn first_exhausted(&self, used: &[u64]) -> Option<usize> {
        self.buckets.iter().zip(used).position(|(bucket, &n)| bucket.is_full(n))
    }
}

/// Thresholds at which Auth0 writes `token_quota_consumption_warning`.
pub const WARNING_PERCENTAGES: [u32; 3] = [60, 80, 100];

/// The warning thresholds (percent) crossed when a bucket's count goes from `before` to `after`.
/// A threshold `p` is crossed when the count first reaches `ceil(limit * p / 100)`.
pub fn crossed_thresholds(limit: u32, before: u64, after: u64) -> impl Iterator<Item = u32> {
    // Runs for every bucket of every token with a quota, and nearly always below the lowest
    // threshold: that case is decided with one multiplication instead of three divisions.
    // (`after < ceil(x / 100)` is `100 * after < x` for integers.)
    let below_all = after.saturating_mul(100) < u64::from(limit) * u64::from(WARNING_PERCENTAGES[0]);
    WARNING_PERCENTAGES.into_iter().filter(move |&p| {
        !below_all && {
            let threshold = (u64::from(limit) * u64::from(p)).div_ceil(100);
            before < threshold && threshold <= after
        }
    })
}

/// The state of one bucket as reported to the caller (headers, usage API).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketState {
    pub window: Window,
    pub limit: u32,
    pub used: u64,
    /// Seconds until the bucket resets, at least 1.
    pub reset_in: i64,
    /// Unix seconds of the reset.
    pub reset_at: i64,
}

impl BucketState {
    pub fn remaining(&self) -> u64 {
        u64::from(self.limit).saturating_sub(self.used)
    }
}

/// Bucket states of `plan`'s buckets of one entity, given their counts.
pub fn states_for(plan: &QuotaPlan, used: &[u64], entity: EntityKind, now: UnixTime) -> Vec<BucketState> {
    plan.buckets
        .iter()
        .zip(used)
        .filter(|(b, _)| b.key.entity == entity)
        .map(|(b, &n)| BucketState {
            window: b.key.window,
            limit: b.limit,
            used: n,
            reset_in: b.key.window.secs_to_reset(now),
            reset_at: b.key.expires_at(),
        })
        .collect()
}

/// Appends one bucket's entry of Auth0's quota header value (`b=per_hour;q=10;r=7;t=3540`); the
/// caller separates entries with commas
/// (`b=per_hour;q=10;r=7;t=3540,b=per_day;q=50;r=47;t=43200`). Integers go through `itoa`, not
/// `fmt`: this runs for every bucket of every token with a quota, and `fmt` machinery was most of
/// the quota headers' cost in an instruction profile.
pub fn write_header_entry(out: &mut String, window: Window, limit: u32, remaining: u64, reset_in: i64) {
    let mut n = itoa::Buffer::new();
    out.push_str(window.header_prefix());
    out.push_str(n.format(limit));
    out.push_str(";r=");
    out.push_str(n.format(remaining));
    out.push_str(";t=");
    out.push_str(n.format(reset_in));
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn quota(enforce: bool, m: Option<u32>, h: Option<u32>, d: Option<u32>) -> TokenQuota {
        TokenQuota { enforce, limits: QuotaLimits { per_minute: m, per_hour: h, per_day: d } }
    }

    #[test]
    fn windows_align_to_utc_boundaries() {
        // 2026-12-04T17:19:37.500Z
        let now = UnixTime::from_millis(1_796_404_777_500);
        assert_eq!(Window::Hour.start(now) % 3600, 0);
        assert_eq!(Window::Hour.secs_to_reset(now), 3600 - (19 * 60 + 37));
        assert_eq!(Window::Minute.secs_to_reset(now), 23);
        assert_eq!(Window::Day.reset_at(now) % 86_400, 0);
    }

    #[test]
    fn plan_orders_client_then_org_and_skips_missing() {
        let now = UnixTime::from_secs(1_796_404_777);
        let c = quota(true, None, Some(10), Some(50));
        let o = quota(false, Some(5), None, None);
        let plan = QuotaPlan::new(Some(("c1", &c)), Some(("o1", &o)), now);
        let names: Vec<_> = plan.buckets.iter().map(|b| (b.key.entity, b.key.window)).collect();
        assert_eq!(
            names,
            vec![
                (EntityKind::Client, Window::Hour),
                (EntityKind::Client, Window::Day),
                (EntityKind::Organization, Window::Minute)
            ]
        );
        assert_eq!(plan.first_exhausted(&[9, 49, 100]), None, "unenforced org never rejects");
        assert_eq!(plan.first_exhausted(&[10, 0, 0]), Some(0));
        assert_eq!(plan.first_exhausted(&[0, 50, 0]), Some(1));
        assert!(QuotaPlan::new(None, None, now).is_empty());
    }

    #[test]
    fn header_matches_auth0_example() {
        let mut value = String::new();
        write_header_entry(&mut value, Window::Hour, 10, 7, 3540);
        value.push(',');
        write_header_entry(&mut value, Window::Day, 50, 47, 43200);
        assert_eq!(value, "b=per_hour;q=10;r=7;t=3540,b=per_day;q=50;r=47;t=43200");
    }

    #[test]
    fn window_tables_agree_with_the_window() {
        for (i, w) in Window::ALL.into_iter().enumerate() {
            assert_eq!(w.index(), i);
            assert_eq!(w.len_secs_str(), w.len_secs().to_string());
            assert_eq!(w.header_prefix(), format!("b={};q=", w.name()));
        }
    }

    #[test]
    fn thresholds_fire_once_each() {
        let fired: Vec<Vec<u32>> = (0..12u64).map(|n| crossed_thresholds(10, n, n + 1).collect()).collect();
        assert_eq!(fired[5], vec![60]);
        assert_eq!(fired[7], vec![80]);
        assert_eq!(fired[9], vec![100]);
        let total: usize = fired.iter().map(Vec::len).sum();
        assert_eq!(total, 3);
        // A limit of 1 crosses all three at once.
        assert_eq!(crossed_thresholds(1, 0, 1).collect::<Vec<_>>(), vec![60, 80, 100]);
    }

    proptest! {
        #[test]
        fn window_contains_now_and_resets_in_range(millis in 0i64..8_000_000_000_000, w in 0usize..3) {
            let window = Window::ALL[w];
            let now = UnixTime::from_millis(millis);
            let start = window.start(now);
            prop_assert!(start <= now.secs());
            prop_assert!(now.secs() < start + window.len_secs());
            prop_assert_eq!(start.rem_euclid(window.len_secs()), 0);
            let t = window.secs_to_reset(now);
            prop_assert!(t >= 1 && t <= window.len_secs());
            // One millisecond before the boundary the window is the same; at it, the next one.
            let boundary = window.reset_at(now);
            prop_assert_eq!(window.start(UnixTime::from_millis(boundary * 1000 - 1)), start);
            prop_assert_eq!(window.start(UnixTime::from_secs(boundary)), boundary);
        }

        #[test]
        fn day_boundary_is_utc_midnight(millis in 0i64..8_000_000_000_000) {
            let now = UnixTime::from_millis(millis);
            let start = UnixTime::from_secs(Window::Day.start(now));
            let text = start.to_rfc3339();
            prop_assert!(text.ends_with("T00:00:00.000Z"), "{}", text);
            prop_assert_eq!(start.civil_date(), now.civil_date());
        }

        #[test]
        fn hour_bucket_keys_differ_across_boundary(secs in 0i64..8_000_000_000) {
            let now = UnixTime::from_secs(secs);
            let next = UnixTime::from_secs(Window::Hour.reset_at(now));
            let q = quota(true, Some(1), Some(1), Some(1));
            let a = QuotaPlan::new(Some(("c", &q)), None, now);
            let b = QuotaPlan::new(Some(("c", &q)), None, next);
            prop_assert_ne!(&a.buckets[1].key, &b.buckets[1].key);
            prop_assert_ne!(&a.buckets[0].key, &b.buckets[0].key, "minute rolls with the hour");
        }

        #[test]
        fn thresholds_fire_exactly_once_over_a_run(limit in 1u32..500, extra in 0u64..50) {
            let mut all = Vec::new();
            for n in 0..u64::from(limit) + extra {
                all.extend(crossed_thresholds(limit, n, n + 1));
            }
            prop_assert_eq!(all, vec![60, 80, 100]);
        }
    }
}
