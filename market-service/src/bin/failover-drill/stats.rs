//! Percentiles of the measured figures.

use serde::Serialize;

/// The distribution of one figure over the rounds where it was observed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Summary {
    /// How many rounds observed it.
    pub(crate) n: usize,
    /// Median.
    pub(crate) p50: f64,
    /// 95th percentile.
    pub(crate) p95: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
    /// Largest value.
    pub(crate) max: f64,
}

/// Nearest-rank percentiles (each one is a value that was measured, never an interpolation);
/// `None` when nothing was observed.
pub(crate) fn summarize(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let index = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[index.clamp(1, sorted.len()) - 1]
    };
    Some(Summary {
        n: sorted.len(),
        p50: rank(50.0),
        p95: rank(95.0),
        p99: rank(99.0),
        max: sorted[sorted.len() - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_values() {
        let values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = summarize(&values).unwrap();
        assert_eq!(
            (s.n, s.p50, s.p95, s.p99, s.max),
            (100, 50.0, 95.0, 99.0, 100.0)
        );
        // With ten rounds, p95 and p99 are the largest value: say so by printing it.
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        let s = summarize(&ten).unwrap();
        assert_eq!((s.p50, s.p95, s.p99, s.max), (5.0, 10.0, 10.0, 10.0));
        assert!(summarize(&[]).is_none());
    }
}
