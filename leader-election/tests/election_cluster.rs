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

async fn candidates(servers: &[NatsServer], bucket: &str, terms: &Terms) -> Vec<Election> {
    let mut elections = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        // Each candidate talks to its own server; clients learn the others' addresses.
        let client = connect(&server.url()).await;
        let config = common::config(&format!("p{i}"), bucket).bucket_replicas(3);
        let election = Election::builder(config).start(client).await.unwrap();
        terms.record(&election);
        elections.push(election);
    }
    elections
}

// case C06
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_server_freezes_stops_by_its_deadline_and_a_standby_takes_over() {
    init_tracing();
    let servers = NatsServer::cluster(3);
    let terms = Terms::default();
    let elections = candidates(&servers, "frozen", &terms).await;
    let leader = any_leader(&elections, Duration::from_secs(10)).await;
    let lease = elections[leader].leading().await.unwrap();
    // Freeze the server the leader talks to: its renewals hang, nothing fails fast.
    servers[leader].signal("STOP");
    let frozen_at = Instant::now();
    let deadline = lease.deadline();
    lease.cancelled().await;
    assert_eq!(
        lease.end_cause(),
        Some(leader_election::LossCause::Deadline)
    );
    assert!(
        Instant::now() <= deadline + Duration::from_millis(20),
        "stopped late"
    );
    let standbys: Vec<Election> = elections
        .into_iter()
        .enumerate()
        .filter_map(|(i, e)| (i != leader).then_some(e))
        .collect();
    // If the frozen server led the bucket's stream, the others elect a new stream leader first.
    any_leader(&standbys, Duration::from_secs(20)).await;
    eprintln!("standby leads {:?} after the freeze", frozen_at.elapsed());
    servers[leader].signal("CONT");
    terms.assert_one_actor();
}

// case C05
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_the_cluster_never_makes_two_leaders_and_a_leader_follows() {
    init_tracing();
    let mut servers = NatsServer::cluster(3);
    let terms = Terms::default();
    let mut elections = candidates(&servers, "cluster", &terms).await;
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
