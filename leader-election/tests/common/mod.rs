//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use leader_election::{Election, ElectionConfig, LeadershipState, Lease};
use tokio::sync::watch;
use tokio::time::Instant;

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
    async_nats::connect(url)
        .await
        .expect("connecting to the test nats-server")
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
    assert_eq!(
        leaders.len(),
        1,
        "expected exactly one leader, got {leaders:?}"
    );
    leaders[0]
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Terms observed in this process, with the moment each one's work stopped: when its lease was
/// cancelled or, for an aborted (crashed) one, its step-down point.
#[derive(Clone, Default)]
pub struct Terms(Arc<Mutex<Vec<TermRecord>>>);

/// A term, when it was seen to begin, and when its lease was cancelled.
type TermRecord = (Lease, Instant, Option<Instant>);

impl Terms {
    pub fn record(&self, election: &Election) {
        let mut state = election.state();
        let terms = self.0.clone();
        tokio::spawn(async move {
            loop {
                let lease = state.borrow_and_update().lease().cloned();
                if let Some(lease) = lease {
                    let index = {
                        let mut t = terms.lock().unwrap();
                        t.push((lease.clone(), Instant::now(), None));
                        t.len() - 1
                    };
                    let terms = terms.clone();
                    tokio::spawn(async move {
                        lease.cancelled().await;
                        terms.lock().unwrap()[index].2 = Some(Instant::now());
                    });
                }
                if state.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Asserts that no two terms overlapped and that tokens increased; returns how many terms.
    pub fn assert_one_actor(&self) -> usize {
        let mut terms = self.0.lock().unwrap().clone();
        terms.sort_by_key(|t| t.1);
        for pair in terms.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let end = a.2.unwrap_or_else(|| a.0.deadline());
            assert!(
                end <= b.1,
                "term {} overlaps term {}",
                a.0.token(),
                b.0.token()
            );
            assert!(
                a.0.token() < b.0.token(),
                "tokens must increase: {} then {}",
                a.0.token(),
                b.0.token()
            );
        }
        terms.len()
    }
}
