//! Prometheus metrics of one replica, fed by the election (through [`ElectionMetrics`]) and by
//! the quote publisher.

use std::time::Duration;

use leader_election::{ElectionMetrics, FencingToken, LossCause};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Every cause label of `market_leadership_transitions_total`, created at zero so that rates
/// work from the first scrape.
/// (`LossCause::as_str` of each cause, which a unit test checks.)
const TRANSITIONS: [&str; 6] = [
    "acquired",
    "resigned",
    "superseded",
    "deadline",
    "deleted",
    "shutdown",
];

/// Renewal latency buckets, in seconds: a renewal costs 0.2–0.5 ms on loopback and 0.5–1.5 ms in
/// a 3-node cluster; the top buckets show renewals that eat into a 500 ms lease.
const RENEWAL_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
];

/// The metrics of this replica.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    is_leader: IntGauge,
    transitions: IntCounterVec,
    renewal_seconds: Histogram,
    renewals_failed: IntCounter,
    leaderless_seconds: Gauge,
    quotes_published: IntCounter,
    publishes_rejected: IntCounter,
    last_sequence: IntGaugeVec,
    rows_skipped: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric.
    ///
    /// # Panics
    /// Never in practice: the names are constants that register once.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let is_leader = IntGauge::new(
            "market_is_leader",
            "1 while this replica leads the election (and publishes quotes), else 0.",
        )
        .expect("valid metric");
        let transitions = IntCounterVec::new(
            Opts::new(
                "market_leadership_transitions_total",
                "Leadership changes of this replica: cause=acquired, or why a term ended.",
            ),
            &["cause"],
        )
        .expect("valid metric");
        let renewal_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "market_renewal_seconds",
                "Time from sending a lease renewal to its answer.",
            )
            .buckets(RENEWAL_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let renewals_failed = IntCounter::new(
            "market_renewals_failed_total",
            "Lease renewals that were refused or failed.",
        )
        .expect("valid metric");
        let leaderless_seconds = Gauge::new(
            "market_leaderless_seconds",
            "How long the election was without a leader before this replica's last takeover \
             (from NATS server timestamps).",
        )
        .expect("valid metric");
        let quotes_published = IntCounter::new(
            "market_quotes_published_total",
            "Quotes this replica published to the quote stream (acknowledged).",
        )
        .expect("valid metric");
        let publishes_rejected = IntCounter::new(
            "market_publishes_rejected_total",
            "Quote publishes the stream refused because another publisher moved the sequence on.",
        )
        .expect("valid metric");
        let last_sequence = IntGaugeVec::new(
            Opts::new(
                "market_last_sequence",
                "Sequence number of the last quote this replica published, per symbol.",
            ),
            &["symbol"],
        )
        .expect("valid metric");
        let rows_skipped = IntCounterVec::new(
            Opts::new(
                "market_feed_rows_skipped_total",
                "Malformed feed rows left out (MARKET_ON_BAD_ROW=skip), per symbol.",
            ),
            &["symbol"],
        )
        .expect("valid metric");
        for cause in TRANSITIONS {
            transitions.with_label_values(&[cause]);
        }
        let collectors: [Box<dyn prometheus::core::Collector>; 9] = [
            Box::new(is_leader.clone()),
            Box::new(transitions.clone()),
            Box::new(renewal_seconds.clone()),
            Box::new(renewals_failed.clone()),
            Box::new(leaderless_seconds.clone()),
            Box::new(quotes_published.clone()),
            Box::new(publishes_rejected.clone()),
            Box::new(last_sequence.clone()),
            Box::new(rows_skipped.clone()),
        ];
        for collector in collectors {
            registry
                .register(collector)
                .expect("metric registered once");
        }
        Metrics {
            registry,
            is_leader,
            transitions,
            renewal_seconds,
            renewals_failed,
            leaderless_seconds,
            quotes_published,
            publishes_rejected,
            last_sequence,
            rows_skipped,
        }
    }

    /// A quote was acknowledged by the stream (or found there already).
    pub fn quote_published(&self, symbol: &str, seq: u64) {
        self.quotes_published.inc();
        self.last_sequence
            .with_label_values(&[symbol])
            .set(i64::try_from(seq).unwrap_or(i64::MAX));
    }

    /// The stream refused a quote: another publisher moved the sequence on.
    pub fn publish_rejected(&self) {
        self.publishes_rejected.inc();
    }

    /// A malformed feed row was left out.
    pub fn row_skipped(&self, symbol: &str) {
        self.rows_skipped.with_label_values(&[symbol]).inc();
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding gathered families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl ElectionMetrics for Metrics {
    fn acquired(&self, _election: &str, _token: FencingToken, leaderless: Option<Duration>) {
        self.is_leader.set(1);
        self.transitions.with_label_values(&["acquired"]).inc();
        if let Some(leaderless) = leaderless {
            self.leaderless_seconds.set(leaderless.as_secs_f64());
        }
    }

    fn lost(&self, _election: &str, cause: LossCause) {
        self.is_leader.set(0);
        self.transitions.with_label_values(&[cause.as_str()]).inc();
    }

    fn renewal(&self, _election: &str, latency: Duration, ok: bool) {
        self.renewal_seconds.observe(latency.as_secs_f64());
        if !ok {
            self.renewals_failed.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_metric_is_rendered() {
        let metrics = Metrics::new();
        metrics.acquired(
            "e",
            FencingToken {
                epoch: 1,
                revision: 7,
            },
            Some(Duration::from_millis(12)),
        );
        metrics.renewal("e", Duration::from_micros(300), true);
        metrics.quote_published("EURUSD", 42);
        let text = metrics.render();
        for line in [
            "market_is_leader 1",
            "market_leadership_transitions_total{cause=\"acquired\"} 1",
            "market_leadership_transitions_total{cause=\"deadline\"} 0",
            "market_renewal_seconds_bucket{le=\"0.0005\"} 1",
            "market_quotes_published_total 1",
            "market_publishes_rejected_total 0",
            "market_last_sequence{symbol=\"EURUSD\"} 42",
            "market_leaderless_seconds 0.012",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        metrics.lost("e", LossCause::Superseded);
        assert!(metrics.render().contains("market_is_leader 0"));
    }

    #[test]
    fn every_loss_cause_has_a_label() {
        for cause in [
            LossCause::Resigned,
            LossCause::Superseded,
            LossCause::Deadline,
            LossCause::Deleted,
            LossCause::Shutdown,
        ] {
            assert!(TRANSITIONS.contains(&cause.as_str()), "{cause}");
        }
    }
}
