//! The election algorithm on the in-memory store, on paused tokio time: deterministic, exact.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::Terms;
use leader_election::{
    Election, ElectionConfig, ErrorKind, KeyValue, LeadershipState, LossCause, MemoryBucket,
    MemoryStore, Timings, Vacancy,
};
use tokio::time::{Instant, sleep, timeout};

const KEY: &str = "leader";

fn timings() -> Timings {
    Timings::default()
}

fn start(bucket: &MemoryBucket, identity: &str) -> (Election, MemoryStore) {
    let store = bucket.store(KEY);
    let election = Election::builder(ElectionConfig::new(identity))
        .start_with_store(Arc::new(store.clone()))
        .unwrap();
    (election, store)
}

async fn leader_of(elections: &[&Election]) -> usize {
    timeout(
        Duration::from_secs(10),
        futures::future::select_all(elections.iter().map(|e| Box::pin(e.leading()))),
    )
    .await
    .expect("a leader within 10 s")
    .1
}

#[tokio::test(start_paused = true)]
async fn a_single_candidate_acquires_an_empty_key_and_keeps_renewing_it() {
    let bucket = MemoryBucket::new();
    let (election, _) = start(&bucket, "solo");
    let lease = election.leading().await.unwrap();
    assert_eq!(lease.token().revision, 1, "acquired by the first write");
    sleep(Duration::from_secs(3)).await;
    assert!(election.is_leader());
    // 3 s at one renewal per 100 ms: about 30 renewals, each a new revision.
    assert!(lease.revision() >= 29, "revision {}", lease.revision());
    assert_eq!(bucket.get(KEY).revision, lease.revision());
    election.health().unwrap();
}

#[tokio::test(start_paused = true)]
async fn standby_takes_over_when_leader_resigns() {
    let bucket = MemoryBucket::new();
    let terms = Terms::default();
    let (a, _) = start(&bucket, "a");
    terms.record(&a);
    let first = a.leading().await.unwrap();
    let (b, _) = start(&bucket, "b");
    terms.record(&b);
    sleep(Duration::from_millis(10)).await;
    let resigned_at = Instant::now();
    a.resign().await.unwrap();
    assert_eq!(first.end_cause(), Some(LossCause::Resigned));
    let second = b.leading().await.unwrap();
    // Handover needs no timer: it follows the delete marker at once.
    assert_eq!(Instant::now(), resigned_at);
    assert_eq!(second.previous_leader().unwrap().identity, "a");
    assert!(second.token() > first.token());
    // The resigned candidate does not snatch the key back; it follows.
    sleep(Duration::from_secs(2)).await;
    assert!(b.is_leader() && !a.is_leader());
    assert!(matches!(
        &*a.state().borrow(),
        LeadershipState::Following { leader: Some(h), .. } if h.identity == "b"
    ));
    assert_eq!(terms.assert_one_actor(), 2);
}

#[tokio::test(start_paused = true)]
async fn standby_replaces_a_crashed_leader_one_lease_after_its_last_renewal() {
    let bucket = MemoryBucket::new();
    let terms = Terms::default();
    let (a, _) = start(&bucket, "a");
    terms.record(&a);
    let lease = a.leading().await.unwrap();
    let (b, _) = start(&bucket, "b");
    terms.record(&b);
    sleep(Duration::from_millis(250)).await;
    let last_revision = lease.revision();
    let last_renewal = lease.deadline() - timings().step_down_after();
    a.abort();
    let successor = b.leading().await.unwrap();
    let takeover = Instant::now() - last_renewal;
    assert!(
        takeover >= timings().lease_duration,
        "took over {takeover:?} after the last renewal, before the lease ran out"
    );
    // Within the lease plus one renew interval, and before the 1 s server TTL would free it.
    assert!(
        takeover <= timings().lease_duration + timings().renew_interval,
        "{takeover:?}"
    );
    assert_eq!(
        successor.token().revision,
        last_revision + 1,
        "CAS at the revision it saw"
    );
    // The crashed leader's lease was never cancelled (it crashed), but its validity ended first.
    assert!(lease.deadline() <= Instant::now());
    assert!(!lease.is_valid());
}

// case C07
#[tokio::test(start_paused = true)]
async fn a_leader_cut_off_after_a_renewal_stops_by_its_send_time_plus_lease_minus_margin() {
    let bucket = MemoryBucket::new();
    let terms = Terms::default();
    let (a, a_store) = start(&bucket, "a");
    terms.record(&a);
    // 40 ms each way: a renewal's acknowledgement arrives 40 ms after it was sent.
    a_store.set_latency(Duration::from_millis(80));
    let lease = a.leading().await.unwrap();
    let (b, _) = start(&bucket, "b");
    terms.record(&b);
    sleep(Duration::from_millis(300)).await;
    // Wait for the next acknowledged renewal, then drop all of a's traffic.
    let revision = lease.revision();
    while lease.revision() == revision {
        sleep(Duration::from_millis(1)).await;
    }
    let acked_at = Instant::now();
    a_store.set_cut_off(true);
    let sent_at = acked_at - Duration::from_millis(80);
    lease.cancelled().await;
    assert_eq!(lease.end_cause(), Some(LossCause::Deadline));
    // The ack was noticed within 1 ms of its arrival (the polling step above).
    let stopped_at = Instant::now();
    let step_down_point = sent_at + timings().step_down_after();
    assert!(
        stopped_at <= step_down_point,
        "stopped {:?} after the send-time step-down point",
        stopped_at - step_down_point
    );
    assert!(
        stopped_at + Duration::from_millis(1) >= step_down_point,
        "the step-down point is anchored at the send time, not 80 ms later at the acknowledgement"
    );
    b.leading().await.unwrap();
    assert_eq!(terms.assert_one_actor(), 2);
    // Cut off, the old leader never leads again while b does.
    sleep(Duration::from_secs(2)).await;
    assert!(b.is_leader() && !a.is_leader());
}

// case C09
#[tokio::test(start_paused = true)]
async fn a_leader_that_wakes_up_after_a_takeover_steps_down_and_deletes_nothing() {
    let bucket = MemoryBucket::new();
    let terms = Terms::default();
    let (a, a_store) = start(&bucket, "a");
    terms.record(&a);
    let old = a.leading().await.unwrap();
    let (b, _) = start(&bucket, "b");
    terms.record(&b);
    sleep(Duration::from_millis(120)).await;
    // Frozen for twice the lease: nothing a sends or should receive gets through.
    a_store.set_cut_off(true);
    let new = b.leading().await.unwrap();
    sleep(timings().lease_duration * 2).await;
    a_store.set_cut_off(false);
    assert!(!old.is_valid(), "the woken leader does no leader work");
    sleep(Duration::from_secs(2)).await;
    assert!(b.is_leader() && !a.is_leader());
    assert!(
        new.is_valid(),
        "the new leader's key was not deleted by the old one"
    );
    assert!(matches!(bucket.get(KEY).value, KeyValue::Held(_)));
    assert_eq!(terms.assert_one_actor(), 2);
    // The old leader's release is a conditional delete at its old revision: it fails harmlessly.
    a.resign().await.unwrap();
    assert!(b.is_leader());
}

#[tokio::test(start_paused = true)]
async fn a_write_by_someone_else_supersedes_the_leader_at_once() {
    let bucket = MemoryBucket::new();
    let (a, _) = start(&bucket, "a");
    let lease = a.leading().await.unwrap();
    bucket.put_foreign(KEY, Bytes::from_static(b"not a lease record"));
    lease.cancelled().await;
    assert_eq!(lease.end_cause(), Some(LossCause::Superseded));
    // The foreign value is followed as an unknown leader, then replaced by CAS once unchanged
    // for a whole lease: never by an unconditional write.
    let state = a.state().borrow().clone();
    assert!(
        matches!(state, LeadershipState::Following { leader: None, .. }),
        "{state:?}"
    );
    let again = a.leading().await.unwrap();
    assert!(again.token() > lease.token());
}

// case C10 (a)
#[tokio::test(start_paused = true)]
async fn an_operator_delete_ends_the_term_and_exactly_one_new_leader_follows() {
    let bucket = MemoryBucket::new();
    let terms = Terms::default();
    let mut elections = Vec::new();
    for name in ["a", "b", "c"] {
        let (e, _) = start(&bucket, name);
        terms.record(&e);
        elections.push(e);
    }
    let refs: Vec<&Election> = elections.iter().collect();
    let first = leader_of(&refs).await;
    let lease = elections[first].leading().await.unwrap();
    for how in [Vacancy::Deleted, Vacancy::Purged] {
        let lease_now = elections[leader_of(&refs).await].leading().await.unwrap();
        let removed_at = Instant::now();
        bucket.remove(KEY, how);
        lease_now.cancelled().await;
        assert_eq!(lease_now.end_cause(), Some(LossCause::Deleted));
        assert!(Instant::now() - removed_at <= timings().renew_interval);
        let next = leader_of(&refs).await;
        sleep(Duration::from_secs(1)).await;
        assert_eq!(elections.iter().filter(|e| e.is_leader()).count(), 1);
        assert!(elections[next].is_leader());
    }
    assert!(!lease.is_valid());
    assert_eq!(terms.assert_one_actor(), 3);
}

// case C10 (b)
#[tokio::test(start_paused = true)]
async fn no_leader_while_the_bucket_is_missing_and_one_once_it_is_back() {
    let bucket = MemoryBucket::new();
    let terms = Terms::default();
    let (a, _) = start(&bucket, "a");
    let (b, _) = start(&bucket, "b");
    terms.record(&a);
    terms.record(&b);
    let lease = [&a, &b][leader_of(&[&a, &b]).await]
        .leading()
        .await
        .unwrap();
    bucket.set_missing(true);
    lease.cancelled().await;
    sleep(Duration::from_secs(5)).await;
    assert!(!a.is_leader() && !b.is_leader());
    bucket.set_missing(false);
    leader_of(&[&a, &b]).await;
    sleep(Duration::from_secs(1)).await;
    assert_eq!([&a, &b].iter().filter(|e| e.is_leader()).count(), 1);
    terms.assert_one_actor();
}

// case C08
#[tokio::test(start_paused = true)]
async fn resign_keeps_the_lease_until_the_work_has_drained_then_releases_it() {
    let bucket = MemoryBucket::new();
    let (a, _) = start(&bucket, "a");
    let lease = a.leading().await.unwrap();
    let guard = lease.guard();
    let work = {
        let lease = lease.clone();
        tokio::spawn(async move {
            lease.cancelled().await;
            // The job needs 1.5 s to stop: three lease durations.
            sleep(Duration::from_millis(1500)).await;
            let held = bucket_is_held_by(&lease);
            drop(guard);
            held
        })
    };
    let resigned = Instant::now();
    a.resign().await.unwrap();
    assert!(
        work.await.unwrap(),
        "the key was still ours during the job's last action"
    );
    assert_eq!(Instant::now() - resigned, Duration::from_millis(1500));
    assert_eq!(bucket.get(KEY).value, KeyValue::Vacant(Vacancy::Deleted));
}

fn bucket_is_held_by(lease: &leader_election::Lease) -> bool {
    // The lease's revision moves only with acknowledged renewals.
    lease.time_left() > Duration::ZERO
}

#[tokio::test(start_paused = true)]
async fn work_that_outlasts_the_drain_timeout_leaves_the_lease_to_expire() {
    let bucket = MemoryBucket::new();
    let (a, _) = start(&bucket, "a");
    let lease = a.leading().await.unwrap();
    let (b, _) = start(&bucket, "b");
    let _stuck = lease.guard();
    let err = a.resign().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DrainTimedOut);
    let gave_up = Instant::now();
    // Not deleted: the key still holds a's last renewal, so nobody takes over before that
    // renewal's lease has run out.
    let KeyValue::Held(record) = bucket.get(KEY).value else {
        panic!("the key was released although the work had not drained");
    };
    assert_eq!(
        leader_election::Holder::decode(&record).unwrap().identity,
        "a"
    );
    let successor = b.leading().await.unwrap();
    assert!(Instant::now() - gave_up >= timings().lease_duration - timings().renew_interval);
    assert_eq!(successor.previous_leader().unwrap().identity, "a");
    // While its stuck work runs, a does not start another term.
    sleep(Duration::from_secs(3)).await;
    assert!(b.is_leader() && !a.is_leader());
}

#[tokio::test(start_paused = true)]
async fn an_observer_follows_the_leader_and_never_campaigns() {
    let bucket = MemoryBucket::new();
    let observer = Election::builder(ElectionConfig::new("observer"))
        .observe_only()
        .start_with_store(Arc::new(bucket.store(KEY)))
        .unwrap();
    sleep(Duration::from_secs(2)).await;
    assert_eq!(bucket.get(KEY).revision, 0, "an observer never writes");
    let (a, _) = start(&bucket, "a");
    a.leading().await.unwrap();
    let mut state = observer.state();
    state
        .wait_for(|s| matches!(s, LeadershipState::Following { leader: Some(h), .. } if h.identity == "a"))
        .await
        .unwrap();
    a.abort();
    // The leader went silent: after a lease duration the observer reports no leader.
    state
        .wait_for(|s| matches!(s, LeadershipState::NoLeader))
        .await
        .unwrap();
    assert!(!observer.is_leader());
}

#[tokio::test(start_paused = true)]
async fn fencing_tokens_strictly_increase_over_many_handovers() {
    let bucket = MemoryBucket::new();
    let terms = Terms::default();
    let elections: Vec<Election> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            let (e, _) = start(&bucket, n);
            terms.record(&e);
            e
        })
        .collect();
    let refs: Vec<&Election> = elections.iter().collect();
    for _ in 0..30 {
        let leader = leader_of(&refs).await;
        elections[leader].resign().await.unwrap();
    }
    leader_of(&refs).await;
    assert_eq!(terms.assert_one_actor(), 31);
}

#[tokio::test(start_paused = true)]
async fn a_fenced_write_succeeds_while_leading_and_is_rejected_after_the_term() {
    let bucket = MemoryBucket::new();
    let (a, _) = start(&bucket, "a");
    let lease = a.leading().await.unwrap();
    sleep(Duration::from_millis(350)).await;
    let written = lease
        .put_fenced("jobs.cursor", Bytes::from_static(b"42"))
        .await
        .unwrap();
    assert_eq!(bucket.get("jobs.cursor").revision, written);
    a.resign().await.unwrap();
    let err = lease
        .put_fenced("jobs.cursor", Bytes::from_static(b"43"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotLeader);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_releases_the_lease_like_shutdown() {
    let bucket = MemoryBucket::new();
    let (a, _) = start(&bucket, "a");
    let lease = a.leading().await.unwrap();
    let (b, _) = start(&bucket, "b");
    sleep(Duration::from_millis(10)).await;
    let dropped_at = Instant::now();
    drop(a);
    b.leading().await.unwrap();
    assert_eq!(
        Instant::now(),
        dropped_at,
        "handed over at once, not after the lease"
    );
    assert_eq!(lease.end_cause(), Some(LossCause::Shutdown));
}

#[tokio::test(start_paused = true)]
async fn a_renewal_whose_acknowledgement_was_lost_is_recognised_and_the_term_goes_on() {
    let bucket = MemoryBucket::new();
    let (a, a_store) = start(&bucket, "a");
    let lease = a.leading().await.unwrap();
    let (b, _) = start(&bucket, "b");
    sleep(Duration::from_millis(150)).await;
    // The renewal lands but its acknowledgement is lost; the retry at the same revision
    // conflicts with it, and a read at the stream leader shows it was ours.
    a_store.lose_next_acknowledgement();
    sleep(Duration::from_secs(2)).await;
    assert!(lease.is_valid(), "ended: {:?}", lease.end_cause());
    assert!(a.is_leader() && !b.is_leader());
}

#[tokio::test(start_paused = true)]
async fn an_acquisition_whose_acknowledgement_was_lost_still_wins_the_term() {
    let bucket = MemoryBucket::new();
    let store = bucket.store(KEY);
    store.lose_next_acknowledgement();
    let a = Election::builder(ElectionConfig::new("a"))
        .start_with_store(Arc::new(store))
        .unwrap();
    let lease = a.leading().await.unwrap();
    assert_eq!(
        lease.token().revision,
        1,
        "the write that landed, not a second one"
    );
}
