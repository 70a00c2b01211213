//! Several elections over one connection: one per shard, each led independently, so the shards'
//! work spreads over the running processes.
//!
//! `SHARDS=8 NATS_URL=nats://127.0.0.1:4222 cargo run -p examples --bin many-elections`

mod common;

use futures::future::join_all;
use leader_election::{Election, ElectionConfig};
use tracing::info;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::init_logging();
    let shards: usize = std::env::var("SHARDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    // One connection for all elections.
    let client = async_nats::connect(common::nats_url()).await?;
    let identity = common::identity();
    let mut elections = Vec::new();
    for shard in 0..shards {
        let config = ElectionConfig::new(identity.clone()).election(format!("shard-{shard}"));
        elections.push(Election::builder(config).start(client.clone()).await?);
    }
    let leading = elections
        .iter()
        .enumerate()
        .map(|(shard, election)| async move {
            while let Ok(lease) = election.leading().await {
                info!(shard, token = %lease.token(), "leading shard");
                lease.cancelled().await;
                info!(shard, cause = ?lease.end_cause(), "lost shard");
            }
        });
    tokio::select! {
        _ = join_all(leading) => {}
        _ = common::until_stopped() => {}
    }
    join_all(elections.into_iter().map(Election::shutdown)).await;
    Ok(())
}
