//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use leader_election::{Election, ElectionConfig, LeadershipState};
use tokio::sync::watch;

/// Fast timings for tests: 300 ms lease, 60 ms renewals, 1 s server TTL.
pub fn config(identity: &str, bucket: &str) -> ElectionConfig {
    ElectionConfig::new(identity)
        .bucket(bucket)
        .election("leader")
        .lease_duration(Duration::from_millis(300))
        .renew_interval(Duration::from_millis(60))
        .safety_margin(Duration::from_millis(30))
        .drain_timeout(Duration::from_secs(1))
}

pub async fn connect(url: &str) -> async_nats::Client {
    async_nats::connect(url).await.expect("connecting to the test nats-server")
}

/// Waits (bounded, so a broken election fails instead of hanging) until `pred` holds.
pub async fn wait_for(
    state: &mut watch::Receiver<LeadershipState>,
    what: &str,
    pred: impl FnMut(&LeadershipState) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(10), state.wait_for(pred))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .expect("election task ended");
}

/// Index of the single leader among `elections`; panics if there is not exactly one.
pub fn single_leader(elections: &[Election]) -> usize {
    let leaders: Vec<usize> = elections
        .iter()
        .enumerate()
        .filter(|(_, e)| e.is_leader())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(leaders.len(), 1, "expected exactly one leader, got {leaders:?}");
    leaders[0]
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}
