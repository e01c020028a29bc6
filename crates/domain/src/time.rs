//! Time as plain numbers. The clock is read once per request at the edge and passed down.

/// Seconds since the Unix epoch, UTC. Ration never needs sub-second precision in its decisions;
/// milliseconds are carried separately where an event timestamp needs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime {
    /// Milliseconds since the epoch.
    pub millis: i64,
}

impl UnixTime {
    pub fn from_millis(millis: i64) -> UnixTime {
        UnixTime { millis }
    }

    pub fn from_secs(secs: i64) -> UnixTime {
        UnixTime { millis: secs.saturating_mul(1000) }
    }

    /// Whole seconds, rounded towards negative infinity.
    pub fn secs(self) -> i64 {
        self.millis.div_euclid(1000)
    }

    /// RFC 3339 / ISO 8601 with milliseconds, as Auth0 prints dates: `2026-12-04T17:19:37.123Z`.
    pub fn to_rfc3339(self) -> String {
        let secs = self.secs();
        let ms = self.millis.rem_euclid(1000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let (h, mi, s) = (sod / 3600, (sod % 3600) / 60, sod % 60);
        if !(0..=9999).contains(&y) {
            // Outside four-digit years the width varies; `format!` handles the sign and width.
            return format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z");
        }
        // Every event carries a date, every issued token an event: digits written into a fixed
        // template cost a tenth of `format!`'s padded integers (~3 k instructions per call).
        let mut out = *b"0000-00-00T00:00:00.000Z";
        for (range, value) in [
            (0..4, y),
            (5..7, i64::from(m)),
            (8..10, i64::from(d)),
            (11..13, h),
            (14..16, mi),
            (17..19, s),
            (20..23, ms),
        ] {
            let mut rest = value;
            for slot in out[range].iter_mut().rev() {
                // `value` is non-negative and fits its width, so each digit is 0..=9.
                *slot = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
        }
        out.iter().map(|&b| char::from(b)).collect()
    }

    /// Parses RFC 3339 in UTC (`2026-12-04T17:19:37Z`, optional fraction, `Z` or `+00:00`).
    pub fn parse_rfc3339(text: &str) -> Option<UnixTime> {
        let b = text.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let s = text.get(r)?;
            if s.bytes().all(|c| c.is_ascii_digit()) { s.parse().ok() } else { None }
        };
        if b.len() < 20
            || b.get(4) != Some(&b'-')
            || b.get(7) != Some(&b'-')
            || !matches!(b.get(10), Some(b'T' | b't'))
            || b.get(13) != Some(&b':')
            || b.get(16) != Some(&b':')
        {
            return None;
        }
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
            return None;
        }
        let mut rest = text.get(19..)?;
        let mut millis = 0i64;
        if let Some(frac) = rest.strip_prefix('.') {
            let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return None;
            }
            let ms: String = frac.get(..digits)?.chars().chain("000".chars()).take(3).collect();
            millis = ms.parse().ok()?;
            rest = frac.get(digits..)?;
        }
        if !matches!(rest, "Z" | "z" | "+00:00" | "-00:00") {
            return None;
        }
        let days = days_from_civil(y, mo as u32, d as u32);
        Some(UnixTime::from_millis((days * 86_400 + h * 3600 + mi * 60 + s) * 1000 + millis))
    }

    /// `YYYYMMDD`-style calendar date of this instant, UTC.
    pub fn civil_date(self) -> (i64, u32, u32) {
        civil_from_days(self.secs().div_euclid(86_400))
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
/// Howard Hinnant's `civil_from_days`; exact for the whole i64 day range we can meet.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01; inverse of [`civil_from_days`].
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(UnixTime::from_millis(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(UnixTime::from_millis(1_796_405_977_123).to_rfc3339(), "2026-12-04T17:39:37.123Z");
        assert_eq!(UnixTime::from_secs(951_782_400).to_rfc3339(), "2000-02-29T00:00:00.000Z");
        assert_eq!(UnixTime::from_millis(253_402_300_799_999).to_rfc3339(), "9999-12-31T23:59:59.999Z");
        assert_eq!(UnixTime::from_millis(-1).to_rfc3339(), "1969-12-31T23:59:59.999Z");
        // Outside four-digit years: the `format!` fallback.
        assert_eq!(UnixTime::from_millis(253_402_300_800_000).to_rfc3339(), "10000-01-01T00:00:00.000Z");
        assert_eq!(UnixTime::from_secs(-62_167_219_201).to_rfc3339(), "-001-12-31T23:59:59.000Z");
    }

    #[test]
    fn parses_what_it_prints() {
        for ms in [0, 1_796_405_977_123, 951_782_400_000] {
            let t = UnixTime::from_millis(ms);
            assert_eq!(UnixTime::parse_rfc3339(&t.to_rfc3339()), Some(t));
        }
        // Across all four-digit years, 200 000 instants: the odd step in milliseconds walks through
        // the values of every field, so each digit position is written and read back.
        let mut ms = 0i64;
        while ms < 253_402_300_799_999 {
            let t = UnixTime::from_millis(ms);
            assert_eq!(UnixTime::parse_rfc3339(&t.to_rfc3339()), Some(t), "{ms}");
            ms += 1_267_011_503;
        }
        assert_eq!(UnixTime::parse_rfc3339("2026-12-04T17:39:37+00:00"), Some(UnixTime::from_secs(1_796_405_977)));
        for bad in ["", "2026-12-04", "2026-13-04T00:00:00Z", "2026-12-04T00:00:00+01:00", "2026-12-04T00:00:00.Z"] {
            assert_eq!(UnixTime::parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn civil_round_trips() {
        for days in -800_000..800_000i64 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
