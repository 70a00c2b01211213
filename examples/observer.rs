//! Follows who leads without ever campaigning: for dashboards and routers.
//!
//! `NATS_URL=nats://127.0.0.1:4222 cargo run -p examples --bin observer`

mod common;

use leader_election::{Election, ElectionConfig, LeadershipState};
use tracing::info;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::init_logging();
    let client = async_nats::connect(common::nats_url()).await?;
    let election = std::env::var("ELECTION").unwrap_or_else(|_| "basic".to_string());
    let config = ElectionConfig::new(common::identity()).election(election);
    let observer = Election::builder(config)
        .observe_only()
        .start(client)
        .await?;
    let mut state = observer.state();
    let follow = async {
        let mut shown = None;
        loop {
            // Renewals change the revision many times a second; report only who leads.
            let leader = match &*state.borrow_and_update() {
                LeadershipState::Following { leader, .. } => Some(
                    leader
                        .as_ref()
                        .map_or("<unknown>".to_string(), |h| h.identity.clone()),
                ),
                LeadershipState::NoLeader => None,
                LeadershipState::Leading(_) => unreachable!("an observer never campaigns"),
            };
            if shown.as_ref() != Some(&leader) {
                match &leader {
                    Some(leader) => info!(leader = %leader, "leader"),
                    None => info!("no leader"),
                }
                shown = Some(leader);
            }
            if state.changed().await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = follow => {}
        _ = common::until_stopped() => {}
    }
    observer.shutdown().await?;
    Ok(())
}
