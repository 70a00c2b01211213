//! A basic election: campaigns, logs every transition, and hands over on Ctrl-C.
//!
//! `NATS_URL=nats://127.0.0.1:4222 cargo run -p examples --bin basic-election`
//! Start it in several terminals and stop the leader to watch a standby take over.

mod common;

use leader_election::{Election, ElectionConfig, LeadershipState};
use tracing::info;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::init_logging();
    let client = async_nats::connect(common::nats_url()).await?;
    let config = ElectionConfig::new(common::identity()).election("basic");
    let election = Election::builder(config).start(client).await?;
    let mut state = election.state();
    let transitions = async {
        loop {
            match &*state.borrow_and_update() {
                LeadershipState::Leading(lease) => info!(token = %lease.token(), "leading"),
                LeadershipState::Following { leader, .. } => info!(
                    leader = leader.as_ref().map_or("<unknown>", |h| h.identity.as_str()),
                    "following"
                ),
                LeadershipState::NoLeader => info!("no leader"),
            }
            if state.changed().await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = transitions => {}
        _ = common::until_stopped() => {}
    }
    // Releases the key at once if leading, so a standby takes over in about a millisecond.
    election.shutdown().await?;
    info!("stopped");
    Ok(())
}
