//! Per-iteration samples, their quantiles, and the summary table printed at the end of a run.
//!
//! Criterion reports means and medians with confidence intervals; the tail (p99) needs every
//! iteration's duration, which the custom benches record here.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Durations of one measurement, one per iteration.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    values: Vec<Duration>,
}

impl Samples {
    /// No samples yet.
    pub fn new() -> Self {
        Samples::default()
    }

    /// Adds one iteration's duration.
    pub fn push(&mut self, value: Duration) {
        self.values.push(value);
    }

    /// How many iterations were recorded.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The nearest-rank quantile `q` in [0, 1]; `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.values.is_empty() {
            return None;
        }
        let mut sorted = self.values.clone();
        sorted.sort_unstable();
        let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
        Some(sorted[rank.saturating_sub(1).min(sorted.len() - 1)])
    }

    /// The median.
    pub fn p50(&self) -> Option<Duration> {
        self.quantile(0.5)
    }

    /// The 99th percentile. With fewer than 100 samples it is the maximum, and the table says so.
    pub fn p99(&self) -> Option<Duration> {
        self.quantile(0.99)
    }

    /// The smallest sample.
    pub fn min(&self) -> Option<Duration> {
        self.values.iter().min().copied()
    }

    /// The largest sample.
    pub fn max(&self) -> Option<Duration> {
        self.values.iter().max().copied()
    }
}

/// The figures of one run by name, in the order they were first recorded.
#[derive(Debug, Default)]
pub struct Report {
    rows: Mutex<Vec<(String, Samples)>>,
}

impl Report {
    /// An empty report, usable as a `static`.
    pub const fn new() -> Self {
        Report {
            rows: Mutex::new(Vec::new()),
        }
    }

    /// Records one sample of the measurement `name`.
    pub fn record(&self, name: &str, value: Duration) {
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        match rows.iter_mut().find(|(n, _)| n == name) {
            Some((_, samples)) => samples.push(value),
            None => {
                let mut samples = Samples::new();
                samples.push(value);
                rows.push((name.to_string(), samples));
            }
        }
    }

    /// The samples of `name`, if any were recorded.
    pub fn get(&self, name: &str) -> Option<Samples> {
        let rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        rows.iter().find(|(n, _)| n == name).map(|(_, s)| s.clone())
    }

    /// The table of every measurement: samples, median, p99, min, max.
    pub fn table(&self) -> String {
        let rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0).max(11);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<width$} {:>6} {:>11} {:>11} {:>11} {:>11}",
            "measurement", "n", "p50", "p99", "min", "max"
        );
        for (name, samples) in rows.iter() {
            let _ = writeln!(
                out,
                "{:<width$} {:>6} {:>11} {:>11}{} {:>11} {:>11}",
                name,
                samples.len(),
                format_duration(samples.p50()),
                format_duration(samples.p99()),
                if samples.len() < 100 { "*" } else { " " },
                format_duration(samples.min()),
                format_duration(samples.max()),
            );
        }
        let _ = writeln!(out, "* fewer than 100 samples: p99 is the maximum");
        out
    }

    /// One line comparing two measurements by median and by p99, when both were recorded.
    pub fn ratio(&self, label: &str, numerator: &str, denominator: &str) -> Option<String> {
        let (num, den) = (self.get(numerator)?, self.get(denominator)?);
        let ratio = |a: Option<Duration>, b: Option<Duration>| -> String {
            match (a, b) {
                (Some(a), Some(b)) if !b.is_zero() => {
                    format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64())
                }
                _ => "n/a".to_string(),
            }
        };
        Some(format!(
            "{label}: p50 {} / {} = {}, p99 {} / {} = {}",
            format_duration(num.p50()),
            format_duration(den.p50()),
            ratio(num.p50(), den.p50()),
            format_duration(num.p99()),
            format_duration(den.p99()),
            ratio(num.p99(), den.p99()),
        ))
    }
}

/// Milliseconds with enough decimals to show microseconds below 10 ms.
pub fn format_duration(value: Option<Duration>) -> String {
    match value {
        None => "-".to_string(),
        Some(d) if d < Duration::from_millis(10) => format!("{:.3} ms", d.as_secs_f64() * 1e3),
        Some(d) => format!("{:.1} ms", d.as_secs_f64() * 1e3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let mut samples = Samples::new();
        for ms in 1..=100 {
            samples.push(Duration::from_millis(ms));
        }
        assert_eq!(samples.p50(), Some(Duration::from_millis(50)));
        assert_eq!(samples.p99(), Some(Duration::from_millis(99)));
        assert_eq!(samples.quantile(1.0), Some(Duration::from_millis(100)));
        assert_eq!(samples.quantile(0.0), Some(Duration::from_millis(1)));
    }

    #[test]
    fn a_report_keeps_the_order_of_first_records() {
        let report = Report::new();
        report.record("b", Duration::from_millis(2));
        report.record("a", Duration::from_millis(1));
        report.record("b", Duration::from_millis(4));
        let table = report.table();
        assert!(table.find("b ").unwrap() < table.find("a ").unwrap());
        assert_eq!(report.get("b").unwrap().len(), 2);
        // Nearest rank: b's p50 is 2 ms and its p99 4 ms, a's are 1 ms.
        let ratio = report.ratio("b over a", "b", "a").unwrap();
        assert!(
            ratio.contains("= 2.00×") && ratio.contains("= 4.00×"),
            "{ratio}"
        );
    }
}
