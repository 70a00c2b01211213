//! The election against a real nats-server started on a free port.

mod common;

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use common::{Terms, config, connect, init_tracing, single_leader, wait_for};
use leader_election::testing::NatsServer;
use leader_election::{
    Election, ErrorKind, KeyValue, LeadershipState, LeaseStore, LossCause, NatsStore, Vacancy,
};
use tokio::time::{Instant, timeout};

async fn start(client: &async_nats::Client, identity: impl AsRef<str>, bucket: &str) -> Election {
    Election::builder(config(identity.as_ref(), bucket))
        .start(client.clone())
        .await
        .unwrap()
}

async fn any_leader(elections: &[Election]) -> usize {
    timeout(
        Duration::from_secs(10),
        futures::future::select_all(elections.iter().map(|e| Box::pin(e.leading()))),
    )
    .await
    .expect("a leader within 10 s")
    .1
}

#[tokio::test]
async fn three_candidates_elect_exactly_one_leader() {
    init_tracing();
    let server = NatsServer::start();
    let client = connect(&server.url()).await;
    let mut elections = Vec::new();
    for i in 0..3 {
        elections.push(start(&client, format!("c{i}"), "three").await);
    }
    let leader = any_leader(&elections).await;
    let lease = elections[leader].leading().await.unwrap();
    for election in &elections {
        let mut state = election.state();
        wait_for(&mut state, "everyone to know the leader", |s| {
            s.is_leader()
                || matches!(s, LeadershipState::Following { leader: Some(h), .. } if h.identity == format!("c{leader}"))
        })
        .await;
    }
    assert_eq!(single_leader(&elections), leader);
    // Renewals keep the same leader: wait for several of them.
    let first_revision = lease.revision();
    let mut state = elections[(leader + 1) % 3].state();
    wait_for(&mut state, "five renewals", |s| {
        matches!(s, LeadershipState::Following { revision, .. } if *revision >= first_revision + 5)
    })
    .await;
    assert_eq!(single_leader(&elections), leader);
    assert!(lease.is_valid());
}

#[tokio::test]
async fn resign_hands_over_to_a_standby() {
    init_tracing();
    let server = NatsServer::start();
    let client = connect(&server.url()).await;
    let first = start(&client, "first", "handover").await;
    let lease = first.leading().await.unwrap();
    let second = start(&client, "second", "handover").await;
    let mut second_state = second.state();
    wait_for(&mut second_state, "the standby to follow", |s| {
        matches!(s, LeadershipState::Following { .. })
    })
    .await;
    let started = Instant::now();
    first.resign().await.unwrap();
    let successor = second.leading().await.unwrap();
    eprintln!(
        "graceful handover: resign -> successor acknowledged in {:?}",
        started.elapsed()
    );
    assert_eq!(lease.end_cause(), Some(LossCause::Resigned));
    assert!(successor.token() > lease.token());
    assert!(!first.is_leader());
    assert_eq!(successor.previous_leader().unwrap().identity, "first");
    assert!(
        successor.leaderless().is_some(),
        "measured from the delete marker's timestamp"
    );
}

#[tokio::test]
async fn a_leader_that_stops_renewing_is_replaced_after_about_the_lease_duration() {
    init_tracing();
    let server = NatsServer::start();
    let client = connect(&server.url()).await;
    let first = start(&client, "first", "crash").await;
    let lease = first.leading().await.unwrap();
    let second = start(&client, "second", "crash").await;
    let mut state = second.state();
    wait_for(&mut state, "the standby to follow", |s| {
        matches!(s, LeadershipState::Following { .. })
    })
    .await;
    let last_renewal = lease.deadline() - config("x", "y").timings.step_down_after();
    first.abort();
    let successor = second.leading().await.unwrap();
    let takeover = last_renewal.elapsed();
    let lease_duration = config("x", "y").timings.lease_duration;
    eprintln!(
        "crash takeover: last renewal -> successor acknowledged in {takeover:?} (lease {lease_duration:?})"
    );
    assert!(
        takeover >= lease_duration,
        "took over {takeover:?} after the last renewal"
    );
    // Observed-lease takeover: well before the 1 s server TTL frees the key.
    assert!(takeover < Duration::from_secs(1), "{takeover:?}");
    assert_eq!(successor.previous_leader().unwrap().identity, "first");
}

// case C03
#[tokio::test]
async fn an_abandoned_key_expires_by_ttl_also_when_acquired_over_an_expiry_marker() {
    init_tracing();
    let server = NatsServer::start();
    let client = connect(&server.url()).await;
    let store = NatsStore::open(client.clone(), &config("probe", "expiry"))
        .await
        .unwrap();
    let mut watch = store.watch().await.unwrap();
    let mut previous_token = None;
    for round in 0..2 {
        // Alone, so nobody takes over: only the server TTL can free the key.
        let election = start(&client, format!("p{round}"), "expiry").await;
        let lease = election.leading().await.unwrap();
        if let Some(previous) = previous_token {
            assert!(
                lease.token() > previous,
                "acquired over the marker, not as a phantom"
            );
        }
        previous_token = Some(lease.token());
        let held_at = Instant::now();
        election.abort();
        // Wait for the expiry marker on the watch.
        let marker = timeout(Duration::from_secs(5), async {
            use futures::StreamExt;
            loop {
                let state = watch.next().await.unwrap().unwrap();
                if state.value == KeyValue::Vacant(Vacancy::Purged) {
                    return state;
                }
            }
        })
        .await
        .expect("the key expired within 5 s");
        let expired_after = held_at.elapsed();
        assert!(
            expired_after >= Duration::from_millis(500),
            "{expired_after:?}"
        );
        assert!(marker.revision > lease.revision());
        assert_eq!(
            store.read(Duration::from_secs(1)).await.unwrap().value,
            KeyValue::Vacant(Vacancy::Purged)
        );
    }
}

// case C01
#[tokio::test]
async fn simultaneous_candidates_elect_one_leader_per_term() {
    init_tracing();
    let server = NatsServer::start();
    let client = connect(&server.url()).await;
    let terms = Terms::default();
    // Three full candidates and fifty light ones, all started at once.
    let elections: Vec<Election> =
        futures::future::join_all((0..53).map(|i| start(&client, format!("c{i}"), "simultaneous")))
            .await;
    for election in &elections {
        terms.record(election);
    }
    for _ in 0..100 {
        let leader = any_leader(&elections).await;
        elections[leader].resign().await.unwrap();
    }
    any_leader(&elections).await;
    // A crash round: the key is taken over after the lease, by exactly one of 52.
    let mut elections = elections;
    let leader = any_leader(&elections).await;
    elections.swap_remove(leader).abort();
    any_leader(&elections).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(elections.iter().filter(|e| e.is_leader()).count(), 1);
    assert_eq!(terms.assert_one_actor(), 102);
}

// case C02
#[tokio::test]
async fn a_create_racing_a_resign_and_a_second_delete_never_makes_two_leaders() {
    init_tracing();
    let server = NatsServer::start();
    let client = connect(&server.url()).await;
    let kv = jetstream::new(client.clone());
    let terms = Terms::default();
    let elections: Vec<Election> =
        futures::future::join_all((0..3).map(|i| start(&client, format!("p{i}"), "race"))).await;
    for election in &elections {
        terms.record(election);
    }
    let bucket = kv.get_key_value("race").await.unwrap();
    for round in 0..150 {
        let leader = any_leader(&elections).await;
        if round % 3 == 0 {
            // An operator's delete lands in between: a marker nobody expected.
            let (resigned, _) = tokio::join!(elections[leader].resign(), bucket.delete("leader"));
            resigned.unwrap();
        } else {
            elections[leader].resign().await.unwrap();
        }
    }
    any_leader(&elections).await;
    single_leader(&elections);
    assert!(terms.assert_one_actor() >= 150);
}

// case C10 (a)
#[tokio::test]
async fn a_purged_key_ends_the_term_and_exactly_one_new_leader_follows() {
    init_tracing();
    let server = NatsServer::start();
    let client = connect(&server.url()).await;
    let terms = Terms::default();
    let elections: Vec<Election> =
        futures::future::join_all((0..3).map(|i| start(&client, format!("p{i}"), "purged"))).await;
    for election in &elections {
        terms.record(election);
    }
    let bucket = jetstream::new(client.clone())
        .get_key_value("purged")
        .await
        .unwrap();
    for _ in 0..3 {
        let leader = any_leader(&elections).await;
        let lease = elections[leader].leading().await.unwrap();
        let purged_at = Instant::now();
        bucket.purge("leader").await.unwrap();
        lease.cancelled().await;
        assert_eq!(lease.end_cause(), Some(LossCause::Deleted));
        assert!(purged_at.elapsed() < config("x", "y").timings.renew_interval);
        any_leader(&elections).await;
    }
    assert_eq!(terms.assert_one_actor(), 4);
}

// case C10 (b)
#[tokio::test]
async fn no_leader_while_the_bucket_is_deleted_and_one_after_it_is_created_again() {
    init_tracing();
    let server = NatsServer::start();
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    let terms = Terms::default();
    let elections: Vec<Election> =
        futures::future::join_all((0..2).map(|i| start(&client, format!("p{i}"), "doomed"))).await;
    for election in &elections {
        terms.record(election);
    }
    let lease = elections[any_leader(&elections).await]
        .leading()
        .await
        .unwrap();
    js.delete_key_value("doomed").await.unwrap();
    lease.cancelled().await;
    // The library never re-creates the bucket: it stays missing, and nobody leads.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(elections.iter().all(|e| !e.is_leader()));
    assert!(
        js.get_key_value("doomed").await.is_err(),
        "the bucket was re-created by the library"
    );
    js.create_key_value(kv::Config {
        bucket: "doomed".into(),
        history: 1,
        limit_markers: Some(Duration::from_secs(60)),
        ..Default::default()
    })
    .await
    .unwrap();
    let next = elections[any_leader(&elections).await]
        .leading()
        .await
        .unwrap();
    assert_ne!(
        next.token().epoch,
        lease.token().epoch,
        "a new bucket is a new epoch"
    );
    assert!(next.token() > lease.token());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(elections.iter().filter(|e| e.is_leader()).count(), 1);
    terms.assert_one_actor();
}

#[tokio::test]
async fn a_fenced_write_is_accepted_for_the_leader_and_rejected_for_a_deposed_one() {
    init_tracing();
    let server = NatsServer::start();
    let client = connect(&server.url()).await;
    let first = start(&client, "first", "fenced").await;
    let old = first.leading().await.unwrap();
    let second = start(&client, "second", "fenced").await;
    old.put_fenced("cursor", "1".into()).await.unwrap();
    first.resign().await.unwrap();
    let new = second.leading().await.unwrap();
    new.put_fenced("cursor", "2".into()).await.unwrap();
    // A deposed leader's write at its old revision is rejected by the server itself.
    let store = NatsStore::open(client.clone(), &config("probe", "fenced"))
        .await
        .unwrap();
    let err = store
        .put_fenced(
            "cursor",
            "stale".into(),
            old.revision(),
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), leader_election::StoreErrorKind::Conflict);
    let cursor = jetstream::new(client)
        .get_key_value("fenced")
        .await
        .unwrap()
        .get("cursor")
        .await
        .unwrap();
    assert_eq!(cursor.as_deref(), Some(&b"2"[..]));
}

#[tokio::test]
async fn a_bucket_with_history_above_one_is_refused_and_left_alone() {
    let server = NatsServer::start();
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());
    js.create_key_value(kv::Config {
        bucket: "shared".into(),
        history: 5,
        limit_markers: Some(Duration::from_secs(60)),
        ..Default::default()
    })
    .await
    .unwrap();
    let err = Election::builder(config("p", "shared"))
        .start(client)
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::BucketMisconfigured);
    assert!(err.to_string().contains("history is 5"), "{err}");
    assert_eq!(
        js.get_key_value("shared")
            .await
            .unwrap()
            .status()
            .await
            .unwrap()
            .history(),
        5
    );
}

#[tokio::test]
async fn a_bucket_without_delete_markers_is_refused() {
    let server = NatsServer::start();
    let client = connect(&server.url()).await;
    jetstream::new(client.clone())
        .create_key_value(kv::Config {
            bucket: "nomarkers".into(),
            history: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let err = Election::builder(config("p", "nomarkers"))
        .start(client)
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::BucketMisconfigured);
    assert!(err.to_string().contains("subject delete markers"), "{err}");
}

#[tokio::test]
async fn a_missing_bucket_is_an_error_when_creation_is_off() {
    let server = NatsServer::start();
    let client = connect(&server.url()).await;
    let err = Election::builder(config("p", "absent").create_bucket(false))
        .start(client)
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::BucketMissing);
}

#[tokio::test]
async fn a_server_without_jetstream_is_refused_with_a_clear_error() {
    let server = NatsServer::start_without_jetstream();
    let client = connect(&server.url()).await;
    let err = Election::builder(config("p", "nojs"))
        .start(client)
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::JetStreamUnavailable, "{err}");
}

#[tokio::test]
async fn a_server_older_than_2_11_is_refused_naming_its_version() {
    let old = std::env::var_os("NATS_SERVER_OLD").expect(
        "NATS_SERVER_OLD must name a nats-server older than 2.11 (scripts/test extracts Debian's 2.9.10)",
    );
    let server = NatsServer::start_binary(old.into());
    let client = connect(&server.url()).await;
    let version = client.server_info().version;
    let err = Election::builder(config("p", "old"))
        .start(client)
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::UnsupportedServer);
    assert!(err.to_string().contains(&version), "{err}");
}
