//! A log-linear latency histogram (the HdrHistogram idea in sixty lines).
//!
//! Why our own: recording must cost a few nanoseconds on the load generator's hot path, merging
//! per-task histograms must be trivial, and 1% precision is plenty for p50/p99/p99.9. Values below
//! `2^SUB_BITS` get one bucket each; above, every power of two is split into `2^(SUB_BITS-1)`
//! equal buckets, so the relative error of a reported quantile is below `2^-(SUB_BITS-1)` (< 1%).

/// 128 exact buckets, then 64 per power of two: < 1.6% bucket width, < 0.8% error at the midpoint.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
const HALF: u64 = SUB / 2;
/// Enough for values up to 2^64.
const BUCKETS: usize = (SUB + (64 - SUB_BITS as u64) * HALF) as usize;

#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; BUCKETS], total: 0, max: 0 }
    }
}

fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = msb - (SUB_BITS - 1); // v >> shift is in [HALF, SUB)
    (SUB + u64::from(shift - 1) * HALF + ((v >> shift) - HALF)) as usize
}

/// The smallest value and the width of bucket `i`.
fn bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB {
        return (i, 1);
    }
    let shift = (i - SUB) / HALF + 1;
    let mantissa = (i - SUB) % HALF + HALF;
    (mantissa << shift, 1 << shift)
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1): the midpoint of the bucket holding it, capped at the
    /// largest value seen. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        // The rank of the sample at quantile q, 1-based (q = 0.5 of 4 samples is the 2nd).
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, width) = bounds(i);
                return Some((low + (width - 1) / 2).min(self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0;
        for v in (0..100_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let i = index(v);
            assert!(i >= last && i < BUCKETS, "v={v} i={i}");
            let (low, width) = bounds(i);
            assert!(low <= v && v - low < width, "v={v} low={low} width={width}");
            last = i;
        }
    }

    #[test]
    fn quantiles_are_within_one_percent() {
        let mut h = Histogram::default();
        for v in 1..=1_000_000u64 {
            h.record(v * 10);
        }
        for (q, want) in [(0.5, 5_000_000.0), (0.99, 9_900_000.0), (0.999, 9_990_000.0)] {
            let got = h.quantile(q).unwrap() as f64;
            assert!((got - want).abs() / want < 0.01, "q={q} got={got} want={want}");
        }
        assert_eq!(h.quantile(1.0), Some(10_000_000));
    }

    #[test]
    fn merge_adds_counts() {
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        a.record(5);
        b.record(7);
        b.record(9);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.quantile(0.5), Some(7));
        assert_eq!(Histogram::default().quantile(0.5), None);
    }
}
