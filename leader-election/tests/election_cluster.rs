//! The election on a real 3-node NATS cluster (three nats-server processes joined by routes).

mod common;

use std::time::Duration;

use common::{Terms, connect, init_tracing};
use leader_election::testing::NatsServer;
use leader_election::{Election, LeadershipState};
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

// case C04
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_a_follower_and_then_the_stream_leader_never_moves_a_healthy_leadership() {
    init_tracing();
    let mut servers = NatsServer::cluster(3);
    // A tolerant profile: a stream-leader election in the cluster takes seconds, and a leader
    // whose own server stays up should ride through it.
    let tolerant = |identity: &str| {
        common::config(identity, "stale")
            .bucket_replicas(3)
            .lease_duration(Duration::from_secs(8))
            .renew_interval(Duration::from_secs(1))
            .server_ttl(Duration::from_secs(10))
    };
    // P1 starts first and alone, so it is the leader; its server is kept up.
    let js = async_nats::jetstream::new(connect(&servers[0].url()).await);
    let p1 = Election::builder(tolerant("p1"))
        .start(connect(&servers[0].url()).await)
        .await
        .unwrap();
    let lease = timeout(Duration::from_secs(10), p1.leading())
        .await
        .unwrap()
        .unwrap();
    let stream_leader = js
        .get_stream("KV_stale")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .unwrap();
    // Standbys on the two other servers keep reading the key while those restart.
    let mut standbys = Vec::new();
    for (i, server) in servers.iter().enumerate().skip(1) {
        let election = Election::builder(tolerant(&format!("s{i}")))
            .start(connect(&server.url()).await)
            .await
            .unwrap();
        standbys.push(election);
    }
    // Restart a server that leads nothing, then the one that leads the stream (if P1's server
    // leads the stream, restart the two others in turn: P1's connection must stay up).
    let mut order: Vec<usize> = (1..3).collect();
    order.sort_by_key(|&i| servers[i].name() == stream_leader);
    for i in order {
        servers[i].kill();
        servers[i].restart();
    }
    // Several renewals after the restarts: P1 still leads the same term, nobody else ever led.
    let revision = lease.revision();
    let mut seen_by_standby = standbys[0].state();
    timeout(
        Duration::from_secs(20),
        seen_by_standby.wait_for(|s| {
            matches!(s, LeadershipState::Following { leader: Some(h), revision: r }
                if h.identity == "p1" && *r >= revision + 3)
        }),
    )
    .await
    .expect("renewals resumed and reached the standby")
    .unwrap();
    assert!(lease.is_valid(), "P1's term ended: {:?}", lease.end_cause());
    assert!(standbys.iter().all(|s| !s.is_leader()));
}
