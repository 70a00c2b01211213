//! The election against a real nats-server started on a free port.

mod common;

use std::time::Duration;

use common::{config, connect, init_tracing, single_leader, wait_for};
use leader_election::testing::NatsServer;
use leader_election::{Election, LeadershipState};
use tokio::time::Instant;

#[tokio::test]
async fn three_candidates_elect_exactly_one_leader() {
    init_tracing();
    let server = NatsServer::start();
    let client = connect(&server.url()).await;
    let mut elections = Vec::new();
    for i in 0..3 {
        elections.push(
            Election::builder(config(&format!("c{i}"), "three"))
                .start(client.clone())
                .await
                .unwrap(),
        );
    }
    let lease = tokio::time::timeout(
        Duration::from_secs(5),
        futures::future::select_all(elections.iter().map(|e| Box::pin(e.leading()))),
    )
    .await
    .expect("a leader within 5 s")
    .0
    .unwrap();
    // Every follower learns who leads.
    for election in &elections {
        let mut state = election.state();
        wait_for(&mut state, "everyone to know the leader", |s| {
            s.is_leader() || matches!(s, LeadershipState::Following { leader: Some(_), .. })
        })
        .await;
    }
    let leader = single_leader(&elections);
    assert_eq!(elections[leader].leading().await.unwrap().token(), lease.token());
    // Several renewals later, still exactly the same leader.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(single_leader(&elections), leader);
    assert!(lease.revision() > lease.token().revision, "the lease was renewed");
}

#[tokio::test]
async fn resign_hands_over_to_a_standby() {
    init_tracing();
    let server = NatsServer::start();
    let client = connect(&server.url()).await;
    let first = Election::builder(config("first", "handover"))
        .start(client.clone())
        .await
        .unwrap();
    let lease = first.leading().await.unwrap();
    let second = Election::builder(config("second", "handover"))
        .start(client.clone())
        .await
        .unwrap();
    let mut second_state = second.state();
    wait_for(&mut second_state, "the standby to follow", |s| {
        matches!(s, LeadershipState::Following { .. })
    })
    .await;
    let started = Instant::now();
    first.resign().await.unwrap();
    assert!(lease.cancellation_token().is_cancelled());
    let successor = second.leading().await.unwrap();
    eprintln!("graceful handover: resign -> successor acknowledged in {:?}", started.elapsed());
    assert!(successor.token() > lease.token());
    assert!(!first.is_leader());
    assert_eq!(
        successor.previous_leader().map(|h| h.identity.as_str()),
        Some("first")
    );
}
