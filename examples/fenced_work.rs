//! Leader-only work bound to the lease: it stops when the lease's cancellation token fires, and
//! every write it makes is fenced on the lease, so the server rejects it once the term is over.
//!
//! `NATS_URL=nats://127.0.0.1:4222 cargo run -p examples --bin fenced-work`

mod common;

use std::time::Duration;

use leader_election::{Election, ElectionConfig, Lease};
use tracing::{info, warn};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::init_logging();
    let client = async_nats::connect(common::nats_url()).await?;
    let config = ElectionConfig::new(common::identity()).election("fenced");
    let election = Election::builder(config).start(client).await?;
    // The work runs in its own task, driven by the state channel, so that shutdown can cancel
    // it through the lease and wait for it to finish before releasing the key.
    let mut state = election.state();
    let worker = tokio::spawn(async move {
        loop {
            let lease = match state.wait_for(|s| s.is_leader()).await {
                Ok(s) => s.lease().cloned(),
                Err(_) => return, // the election has ended
            };
            if let Some(lease) = lease {
                info!(token = %lease.token(), "leading: starting the work");
                work(lease).await;
            }
        }
    });
    common::until_stopped().await;
    election.shutdown().await?;
    let _ = worker.await;
    Ok(())
}

/// Counts ticks into the key `fenced-work.counter`, fenced on the lease.
async fn work(lease: Lease) {
    // Shutdown and resign release the key only after this guard is dropped.
    let _guard = lease.guard();
    let mut tick = 0u64;
    loop {
        tokio::select! {
            _ = lease.cancelled() => {
                info!(cause = ?lease.end_cause(), "the term ended: work stopped");
                return;
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        tick += 1;
        let value = format!("{tick} by token {}", lease.token());
        match lease.put_fenced("fenced-work.counter", value.into()).await {
            Ok(revision) => info!(tick, revision, "fenced write accepted"),
            Err(err) => {
                warn!(error = %err, "fenced write rejected: no longer leading");
                return;
            }
        }
    }
}
