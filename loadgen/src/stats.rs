//! Latency recording: an HDR histogram in microseconds (3 significant digits), optionally
//! keeping every sample for plots.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency recorded exactly: 10 minutes. Longer samples are clamped to it.
const MAX_MICROS: u64 = 600_000_000;

#[derive(Clone, Debug)]
pub struct Latencies {
    histogram: Histogram<u64>,
    samples: Option<Vec<Duration>>,
}

/// The percentiles the reports show, in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    pub fn new() -> Self {
        // Constant bounds (1 ≤ low, high ≥ 2·low) and 3 significant digits (≤ 5): the only
        // inputs hdrhistogram refuses are out of those ranges.
        #[allow(clippy::expect_used)]
        let histogram = Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant bounds");
        Self {
            histogram,
            samples: None,
        }
    }

    /// Also keeps every sample (for a latency-distribution plot).
    pub fn keeping_samples() -> Self {
        Self {
            samples: Some(Vec::new()),
            ..Self::new()
        }
    }

    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(MAX_MICROS)
            .clamp(1, MAX_MICROS);
        self.histogram.saturating_record(micros);
        if let Some(samples) = &mut self.samples {
            samples.push(latency);
        }
    }

    pub fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides: adding cannot fail; if it did, the counts would show it.
        let _ = self.histogram.add(&other.histogram);
        if let (Some(mine), Some(theirs)) = (&mut self.samples, &other.samples) {
            mine.extend_from_slice(theirs);
        }
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.histogram.is_empty() {
            return 0.0;
        }
        self.histogram.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        if self.histogram.is_empty() {
            return 0.0;
        }
        self.histogram.max() as f64 / 1000.0
    }

    pub fn summary(&self) -> Summary {
        Summary {
            count: self.count(),
            p50_ms: self.quantile_ms(0.50),
            p90_ms: self.quantile_ms(0.90),
            p99_ms: self.quantile_ms(0.99),
            max_ms: self.max_ms(),
        }
    }

    /// The kept samples, sorted (empty unless made with [`Latencies::keeping_samples`]).
    pub fn sorted_samples(&self) -> Vec<Duration> {
        let mut samples = self.samples.clone().unwrap_or_default();
        samples.sort_unstable();
        samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_samples() {
        let mut l = Latencies::keeping_samples();
        for ms in 1..=100 {
            l.record(Duration::from_millis(ms));
        }
        let s = l.summary();
        assert_eq!(s.count, 100);
        assert!((s.p50_ms - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.p99_ms - 99.0).abs() < 0.1, "{s:?}");
        assert!((s.max_ms - 100.0).abs() < 0.1, "{s:?}");
        assert_eq!(l.sorted_samples().len(), 100);
    }
}
