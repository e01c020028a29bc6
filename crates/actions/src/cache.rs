//! `api.cache`: a small key/value store shared by every execution in the pool, with Auth0's
//! limits. Time is always the job's `now_millis`, never the clock, so expiry is testable and
//! matches the request's notion of now.

use std::collections::HashMap;

/// Longest key, in bytes.
pub(crate) const MAX_KEY_BYTES: usize = 64;
/// Longest value, in bytes.
pub(crate) const MAX_VALUE_BYTES: usize = 4 * 1024;
/// Most live entries.
pub(crate) const MAX_ENTRIES: usize = 20;
/// Most bytes of keys plus values over all live entries.
pub(crate) const MAX_TOTAL_BYTES: usize = 8 * 1024;
/// Longest lifetime of an entry (24 h); longer requests are shortened to it.
pub(crate) const MAX_LIFETIME_MS: i64 = 24 * 60 * 60 * 1000;
/// Lifetime when neither `ttl` nor `expires_at` is given (15 min).
pub(crate) const DEFAULT_LIFETIME_MS: i64 = 15 * 60 * 1000;

/// A cached value and when it stops being visible (ms since the epoch, exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) value: String,
    pub(crate) expires_at: i64,
}

/// Why a write failed; `code()` is what the Action sees in `{type: "error", code}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheError {
    InvalidKey,
    KeyTooLarge,
    InvalidValue,
    ValueTooLarge,
    InvalidOptions,
    TooManyEntries,
    CacheFull,
    NotFound,
}

impl CacheError {
    pub(crate) fn code(self) -> &'static str {
        match self {
            CacheError::InvalidKey => "invalid_key",
            CacheError::KeyTooLarge => "key_too_large",
            CacheError::InvalidValue => "invalid_value",
            CacheError::ValueTooLarge => "value_too_large",
            CacheError::InvalidOptions => "invalid_options",
            CacheError::TooManyEntries => "too_many_entries",
            CacheError::CacheFull => "cache_full",
            CacheError::NotFound => "not_found",
        }
    }
}

/// The requested lifetime of a `set`, as the Action passed it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct SetOptions {
    pub(crate) ttl: Option<f64>,
    pub(crate) expires_at: Option<f64>,
}

impl SetOptions {
    /// Reads `{ttl?, expires_at?}` from the JSON the prelude sends; anything that is not a number
    /// (other than absent/null) is invalid.
    pub(crate) fn from_json(json: &str) -> Result<SetOptions, CacheError> {
        let value: serde_json::Value = serde_json::from_str(json).map_err(|_| CacheError::InvalidOptions)?;
        let Some(object) = value.as_object() else {
            // `set(key, value, 5)` and friends: Auth0 ignores non-object options.
            return Ok(SetOptions::default());
        };
        let number = |name: &str| match object.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Number(n)) => n.as_f64().map(Some).ok_or(CacheError::InvalidOptions),
            Some(_) => Err(CacheError::InvalidOptions),
        };
        Ok(SetOptions { ttl: number("ttl")?, expires_at: number("expires_at")? })
    }
}

#[derive(Debug, Default)]
pub(crate) struct Cache {
    entries: HashMap<String, Entry>,
}

impl Cache {
    fn purge(&mut self, now: i64) {
        self.entries.retain(|_, e| e.expires_at > now);
    }

    pub(crate) fn get(&mut self, key: &str, now: i64) -> Option<Entry> {
        self.purge(now);
        self.entries.get(key).cloned()
    }

    pub(crate) fn set(
        &mut self,
        key: &str,
        value: Option<&str>,
        options: SetOptions,
        now: i64,
    ) -> Result<(), CacheError> {
        if key.is_empty() {
            return Err(CacheError::InvalidKey);
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(CacheError::KeyTooLarge);
        }
        let value = value.ok_or(CacheError::InvalidValue)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(CacheError::ValueTooLarge);
        }
        let expires_at = expiry(options, now)?;
        self.purge(now);
        let replacing = self.entries.get(key);
        let others_bytes: usize =
            self.entries.iter().filter(|(k, _)| k.as_str() != key).map(|(k, e)| k.len() + e.value.len()).sum();
        if replacing.is_none() && self.entries.len() >= MAX_ENTRIES {
            return Err(CacheError::TooManyEntries);
        }
        if others_bytes + key.len() + value.len() > MAX_TOTAL_BYTES {
            return Err(CacheError::CacheFull);
        }
        self.entries.insert(key.to_owned(), Entry { value: value.to_owned(), expires_at });
        Ok(())
    }

    pub(crate) fn delete(&mut self, key: &str, now: i64) -> Result<(), CacheError> {
        self.purge(now);
        match self.entries.remove(key) {
            Some(_) => Ok(()),
            None => Err(CacheError::NotFound),
        }
    }
}

/// The expiry of a write: the earlier of `ttl` and `expires_at`, the default lifetime when neither
/// is given, never more than 24 h ahead.
fn expiry(options: SetOptions, now: i64) -> Result<i64, CacheError> {
    let mut candidates = Vec::with_capacity(2);
    if let Some(ttl) = options.ttl {
        if !ttl.is_finite() || ttl <= 0.0 {
            return Err(CacheError::InvalidOptions);
        }
        candidates.push(now.saturating_add(clamp_ms(ttl)));
    }
    if let Some(at) = options.expires_at {
        if !at.is_finite() || clamp_ms(at) <= now {
            return Err(CacheError::InvalidOptions);
        }
        candidates.push(clamp_ms(at));
    }
    let chosen = candidates.into_iter().min().unwrap_or(now.saturating_add(DEFAULT_LIFETIME_MS));
    Ok(chosen.min(now.saturating_add(MAX_LIFETIME_MS)))
}

/// A finite JS number of milliseconds as `i64`, saturating (the `as` cast saturates).
fn clamp_ms(ms: f64) -> i64 {
    ms.floor() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn default_and_capped_lifetimes() {
        let mut cache = Cache::default();
        cache.set("a", Some("1"), SetOptions::default(), NOW).unwrap();
        assert_eq!(cache.get("a", NOW).unwrap().expires_at, NOW + DEFAULT_LIFETIME_MS);
        let long = SetOptions { ttl: Some(1e12), expires_at: None };
        cache.set("b", Some("2"), long, NOW).unwrap();
        assert_eq!(cache.get("b", NOW).unwrap().expires_at, NOW + MAX_LIFETIME_MS);
        let both = SetOptions { ttl: Some(10_000.0), expires_at: Some((NOW + 5_000) as f64) };
        cache.set("c", Some("3"), both, NOW).unwrap();
        assert_eq!(cache.get("c", NOW).unwrap().expires_at, NOW + 5_000);
        assert!(cache.get("c", NOW + 5_000).is_none());
    }

    #[test]
    fn limits() {
        let mut cache = Cache::default();
        let o = SetOptions::default();
        assert_eq!(cache.set("", Some("v"), o, NOW), Err(CacheError::InvalidKey));
        assert_eq!(cache.set(&"k".repeat(65), Some("v"), o, NOW), Err(CacheError::KeyTooLarge));
        assert_eq!(cache.set("k", None, o, NOW), Err(CacheError::InvalidValue));
        assert_eq!(cache.set("k", Some(&"v".repeat(4097)), o, NOW), Err(CacheError::ValueTooLarge));
        for i in 0..MAX_ENTRIES {
            cache.set(&format!("k{i}"), Some("v"), o, NOW).unwrap();
        }
        assert_eq!(cache.set("one-more", Some("v"), o, NOW), Err(CacheError::TooManyEntries));
        // Replacing an existing key is not a new entry.
        cache.set("k0", Some("w"), o, NOW).unwrap();
        assert_eq!(cache.delete("nope", NOW), Err(CacheError::NotFound));
        cache.delete("k0", NOW).unwrap();
        cache.delete("k1", NOW).unwrap();
        // 18 small entries; two 4 KiB values cannot both fit in 8 KiB.
        cache.set("big1", Some(&"x".repeat(4096)), o, NOW).unwrap();
        assert_eq!(cache.set("big2", Some(&"x".repeat(4096)), o, NOW), Err(CacheError::CacheFull));
        // Expired entries free their room.
        assert!(cache.get("big1", NOW + DEFAULT_LIFETIME_MS).is_none());
    }

    #[test]
    fn options_parsing() {
        assert_eq!(SetOptions::from_json("5"), Ok(SetOptions::default()));
        assert_eq!(SetOptions::from_json(r#"{"ttl":"soon"}"#), Err(CacheError::InvalidOptions));
        assert_eq!(SetOptions::from_json(r#"{"ttl":10}"#).map(|o| o.ttl), Ok(Some(10.0)));
    }
}
