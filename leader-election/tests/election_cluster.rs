//! The election on a real 3-node NATS cluster (three nats-server processes joined by routes).

mod common;

use std::time::Duration;

use common::{Terms, connect, init_tracing};
use leader_election::Election;
use leader_election::testing::NatsServer;
use tokio::time::{Instant, timeout};

async fn any_leader(elections: &[Election], within: Duration) -> usize {
    timeout(
        within,
        futures::future::select_all(elections.iter().map(|e| Box::pin(e.leading()))),
    )
    .await
    .unwrap_or_else(|_| panic!("no leader within {within:?}"))
    .1
}

// case C05
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_the_cluster_never_makes_two_leaders_and_a_leader_follows() {
    init_tracing();
    let mut servers = NatsServer::cluster(3);
    let terms = Terms::default();
    let mut elections = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        // Each candidate talks to its own server; clients learn the others' addresses.
        let client = connect(&server.url()).await;
        let config = common::config(&format!("p{i}"), "cluster").bucket_replicas(3);
        let election = Election::builder(config).start(client).await.unwrap();
        terms.record(&election);
        elections.push(election);
    }
    any_leader(&elections, Duration::from_secs(10)).await;
    for server in &mut servers {
        server.kill();
        server.restart();
    }
    let healthy = Instant::now();
    // A stream-leader election may follow the restarts; then one candidate leads again.
    let leader = any_leader(&elections, Duration::from_secs(15)).await;
    eprintln!(
        "leader {leader} {:?} after the cluster was healthy",
        healthy.elapsed()
    );
    // Crash the leader: a standby takes over once its lease has run out.
    let crashed = elections.swap_remove(leader);
    crashed.abort();
    let started = Instant::now();
    any_leader(&elections, Duration::from_secs(10)).await;
    eprintln!("takeover after the crash: {:?}", started.elapsed());
    terms.assert_one_actor();
}
