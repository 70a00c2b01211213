//! A small hook for metrics, so the crate does not depend on a metrics library.

use std::time::Duration;

use crate::fencing::FencingToken;
use crate::state::LossCause;

/// Receives the election's measurements. Every method has a no-op default; implement the ones
/// you export (the market-service maps them onto Prometheus).
///
/// Called from the election task: keep implementations quick and non-blocking.
pub trait ElectionMetrics: Send + Sync + 'static {
    /// This process won a term.
    fn acquired(&self, election: &str, token: FencingToken, leaderless: Option<Duration>) {
        let _ = (election, token, leaderless);
    }

    /// This process's term ended.
    fn lost(&self, election: &str, cause: LossCause) {
        let _ = (election, cause);
    }

    /// A renewal was answered (`ok`: acknowledged) after `latency`.
    fn renewal(&self, election: &str, latency: Duration, ok: bool) {
        let _ = (election, latency, ok);
    }
}

/// Discards every measurement.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMetrics;

impl ElectionMetrics for NoMetrics {}
