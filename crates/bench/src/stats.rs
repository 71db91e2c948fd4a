//! Latency histograms and exact delivery accounting.

use hdrhistogram::Histogram;
use serde::Serialize;

/// A latency histogram in microseconds, 1 µs to 100 s, three significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// A smaller latency histogram (two significant digits, about a tenth of the memory), for
/// scenarios that keep one per connection, ten thousand at a time.
pub fn small_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 2).expect("valid histogram bounds")
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    /// Summarises a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// What one receiver saw of its sender's sequence: exact, not sampled.
#[derive(Debug, Default)]
pub struct Tracker {
    seen: Vec<bool>,
    max_seen: Option<u64>,
    /// Messages received (first copies only).
    pub delivered: u64,
    /// Copies of messages already received.
    pub duplicated: u64,
    /// Messages received after one with a higher sequence number.
    pub out_of_order: u64,
}

impl Tracker {
    /// Records the arrival of message `seq`.
    pub fn record(&mut self, seq: u64) {
        let i = seq as usize;
        if self.seen.len() <= i {
            self.seen.resize(i + 1, false);
        }
        if self.seen[i] {
            self.duplicated += 1;
            return;
        }
        self.seen[i] = true;
        self.delivered += 1;
        if self.max_seen.is_some_and(|m| seq < m) {
            self.out_of_order += 1;
        }
        self.max_seen = Some(self.max_seen.map_or(seq, |m| m.max(seq)));
    }

    /// Whether message `seq` arrived.
    pub fn has(&self, seq: u64) -> bool {
        self.seen.get(seq as usize).copied().unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracker_counts_duplicates_and_reordering_exactly() {
        let mut t = Tracker::default();
        for s in [0, 1, 3, 2, 3, 4] {
            t.record(s);
        }
        assert_eq!((t.delivered, t.duplicated, t.out_of_order), (5, 1, 1));
        assert!(t.has(2) && !t.has(5));
    }
}
