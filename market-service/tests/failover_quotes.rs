//! Three replicas of the binary on a real nats-server: who leads, who publishes, and what the
//! quote stream looks like across graceful and crash failovers.

mod common;

use std::time::{Duration, Instant};

use common::*;

const START: Duration = Duration::from_secs(15);

/// A nats-server and three replicas, whose leader has published at least `quotes` quotes.
struct Running {
    server: NatsServer,
    replicas: Vec<Replica>,
    leader: usize,
    leader_name: String,
}

fn three_replicas_publishing(quotes: usize) -> Running {
    let server = NatsServer::start();
    let replicas: Vec<Replica> = ["r1", "r2", "r3"]
        .iter()
        .map(|name| Replica::start(&server.url(), name))
        .collect();
    let leader = wait_for_leader(&replicas, START);
    let leader_name = replicas[leader].name.clone();
    wait_for_quotes_from(&server.url(), &leader_name, quotes, START);
    Running {
        server,
        replicas,
        leader,
        leader_name,
    }
}

/// Waits for a replica other than `old` to lead, checks that it names `old` as its
/// predecessor and publishes 20 quotes after it, and that the sequence is gapless; returns its
/// `Leadership acquired` line.
fn takes_over(
    server: &NatsServer,
    replicas: &[Replica],
    old: usize,
    timeout: Duration,
) -> serde_json::Value {
    let new = new_leader(replicas, old, timeout);
    let acquired = replicas[new].wait_for("Leadership acquired", Duration::ZERO);
    assert_eq!(
        acquired["previous"],
        replicas[old].name.as_str(),
        "{acquired}"
    );
    let quotes = wait_for_quotes_from(&server.url(), &replicas[new].name, 20, START);
    assert_gapless(&quotes);
    acquired
}

fn new_leader(replicas: &[Replica], old: usize, timeout: Duration) -> usize {
    wait_until(timeout, || {
        replicas
            .iter()
            .enumerate()
            .position(|(i, r)| i != old && r.has_logged("Leadership acquired"))
    })
    .unwrap_or_else(|| {
        let dumps: Vec<String> = replicas.iter().map(Replica::dump).collect();
        panic!("no new leader within {timeout:?}\n{}", dumps.join("\n"))
    })
}

#[test]
fn three_replicas_elect_one_leader_and_only_it_publishes() {
    let Running {
        server,
        replicas,
        leader,
        leader_name: name,
    } = three_replicas_publishing(1);
    let acquired = replicas[leader].wait_for("Leadership acquired", START);
    let token = acquired["token"].as_u64().expect("token field");
    assert_eq!(acquired["identity"], name.as_str());
    assert_eq!(acquired["election"], "market-feed");

    let quotes = wait_for_quotes(&server.url(), 40, START);
    for (i, replica) in replicas.iter().enumerate() {
        if i != leader {
            assert!(
                !replica.has_logged("Leadership acquired"),
                "two leaders:\n{}",
                replica.dump()
            );
            assert!(!replica.has_logged("Feed resumed"), "{}", replica.dump());
        }
    }
    for quote in &quotes {
        assert_eq!(quote.publisher, name, "{quote:?}");
        assert_eq!(quote.token, token, "{quote:?}");
        assert_eq!(quote.subject, "market.quotes.EURUSD");
    }
    assert_gapless(&quotes);
}

#[test]
fn sigterm_on_the_leader_hands_over_and_the_sequence_stays_gapless() {
    let Running {
        server,
        mut replicas,
        leader: old,
        ..
    } = three_replicas_publishing(20);

    replicas[old].signal("TERM");
    let status = replicas[old].wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{}", replicas[old].dump());
    let lost = replicas[old].wait_for("Leadership lost", Duration::ZERO);
    assert_eq!(lost["cause"], "shutdown");
    assert!(replicas[old].has_logged("Shutting down"));
    let complete = replicas[old].wait_for("Shutdown complete", Duration::ZERO);
    assert_eq!(complete["outcome"], "leadership released");

    let acquired = takes_over(&server, &replicas, old, Duration::from_secs(2));
    // A released lease is taken over at once: well under a lease duration.
    let leaderless = acquired["leaderless_ms"].as_f64().expect("leaderless_ms");
    assert!(leaderless < LEASE.as_millis() as f64, "{acquired}");
}

// case C11
#[test]
fn sigkill_on_the_leader_hands_over_within_the_lease_and_the_sequence_stays_gapless() {
    let Running {
        server,
        mut replicas,
        leader: old,
        ..
    } = three_replicas_publishing(20);

    replicas[old].signal("KILL");
    let killed_at = Instant::now();
    replicas[old].wait_exit(Duration::from_secs(5));
    new_leader(&replicas, old, Duration::from_secs(3));
    let took = killed_at.elapsed();
    // Lease + renew interval + slack for two debug-build processes on two cores.
    eprintln!("SIGKILL to new leader's acquisition (as seen by the test): {took:?}");
    assert!(
        took < LEASE + RENEW + Duration::from_millis(400),
        "took {took:?}"
    );
    takes_over(&server, &replicas, old, Duration::ZERO);
}

// case C09
#[test]
fn a_paused_leader_wakes_up_deposed_and_its_quotes_stay_out() {
    let Running {
        server,
        replicas,
        leader: old,
        leader_name: old_name,
    } = three_replicas_publishing(20);

    replicas[old].signal("STOP");
    let new = new_leader(&replicas, old, Duration::from_secs(3));
    let new_name = replicas[new].name.clone();
    // The new leader publishes before the old one wakes up.
    wait_for_quotes_from(&server.url(), &new_name, 10, START);
    let before_wake = read_quotes(&server.url()).len();
    replicas[old].signal("CONT");

    let lost = replicas[old].wait_for("Leadership lost", Duration::from_secs(3));
    let cause = lost["cause"].as_str().unwrap();
    assert!(
        ["deadline", "superseded", "resigned"].contains(&cause),
        "{lost}"
    );
    // Either the lease check stopped it before publishing, or the stream refused its publish.
    let rejected = replicas[old].messages("Quote publish rejected");
    eprintln!("woken leader: {lost}\nrejected publishes: {rejected:?}");
    let quotes = wait_for_quotes(&server.url(), before_wake + 20, START);
    let late: Vec<&StoredQuote> = quotes[before_wake..]
        .iter()
        .filter(|q| q.publisher == old_name)
        .collect();
    assert!(
        late.is_empty(),
        "the woken leader published after being deposed: {late:?}\nrejected: {rejected:?}"
    );
    assert_gapless(&quotes);
    // The new leader keeps leading.
    assert!(
        !replicas[new].has_logged("Leadership lost"),
        "{}",
        replicas[new].dump()
    );
}

#[test]
fn a_publish_rejected_by_the_stream_makes_the_leader_resign() {
    let Running {
        server,
        replicas,
        leader,
        ..
    } = three_replicas_publishing(10);

    // Another publisher (a stand-in for a deposed leader's twin) moves the subject on with the
    // next quotes, chained correctly, so the leader's next publish expects a stale sequence.
    let intruded = intrude(&server.url());

    let rejected = replicas[leader].wait_for("Quote publish rejected", Duration::from_secs(3));
    assert_eq!(rejected["symbol"], "EURUSD");
    let lost = replicas[leader].wait_for("Leadership lost", Duration::from_secs(3));
    assert_eq!(lost["cause"], "resigned", "{}", replicas[leader].dump());
    let (_, metrics) = replicas[leader].get("/metrics");
    assert!(
        metrics.contains("market_publishes_rejected_total 1"),
        "{metrics}"
    );

    // Someone leads again and goes on after the intruder's quotes, without a gap.
    let quotes = wait_until(Duration::from_secs(10), || {
        let quotes = read_quotes(&server.url());
        let after = quotes
            .iter()
            .filter(|q| q.stream_sequence > intruded && q.publisher != "intruder")
            .count();
        (after >= 10).then_some(quotes)
    })
    .expect("the feed did not go on after the rejection");
    assert_gapless(&quotes);
}

/// Publishes, as "intruder" with a newer fencing token (the leader's plus one, as a newer term
/// would carry), the two quotes that follow the last one in the stream, chained on the subject;
/// returns the stream sequence of the second. The leader's next publish finds the subject moved
/// on by a newer term and is refused.
fn intrude(url: &str) -> u64 {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let client = async_nats::connect(url).await.unwrap();
            let jetstream = async_nats::jetstream::new(client.clone());
            let stream = jetstream.get_stream(STREAM).await.unwrap();
            // Retry until two writes land between two of the leader's publishes.
            'attempt: for _ in 0..50 {
                let last = stream
                    .get_last_raw_message_by_subject("market.quotes.EURUSD")
                    .await
                    .unwrap();
                let header = |name: &str| last.headers.get(name).unwrap().to_string();
                let token: u64 = header("Market-Fencing-Token").parse().unwrap();
                let epoch = header("Market-Fencing-Epoch");
                let mut quote: serde_json::Value = serde_json::from_slice(&last.payload).unwrap();
                let mut expected = last.sequence;
                for _ in 0..2 {
                    let seq = quote["seq"].as_u64().unwrap() + 1;
                    quote["seq"] = seq.into();
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert(
                        "Nats-Expected-Last-Subject-Sequence",
                        expected.to_string().as_str(),
                    );
                    headers.insert("Nats-Msg-Id", format!("EURUSD-{seq}").as_str());
                    headers.insert("Market-Publisher", "intruder");
                    headers.insert("Market-Fencing-Token", (token + 1).to_string().as_str());
                    headers.insert("Market-Fencing-Epoch", epoch.as_str());
                    let ack = jetstream
                        .publish_with_headers(
                            "market.quotes.EURUSD",
                            headers,
                            serde_json::to_vec(&quote).unwrap().into(),
                        )
                        .await
                        .unwrap()
                        .await;
                    match ack {
                        Ok(ack) if !ack.duplicate => expected = ack.sequence,
                        _ => continue 'attempt,
                    }
                }
                return expected;
            }
            panic!("could not slip two quotes in");
        })
}

#[test]
fn endpoints_answer_before_and_after_a_takeover() {
    let Running {
        server,
        mut replicas,
        leader: old,
        leader_name: old_name,
    } = three_replicas_publishing(5);

    for (i, replica) in replicas.iter().enumerate() {
        let ready = wait_until(Duration::from_secs(5), || {
            let (status, _) = replica.get("/readyz");
            (status == 200).then_some(())
        });
        assert!(
            ready.is_some(),
            "{} not ready: {:?}",
            replica.name,
            replica.get("/readyz")
        );
        assert_eq!(replica.get("/livez").0, 200);
        // A standby that has just started learns who leads from its first read of the key.
        let leader = names_leader(replica, &old_name);
        assert_eq!(leader["is_me"], i == old, "{leader}");
        assert_eq!(leader["me"], replica.name.as_str());
        let (_, metrics) = replica.get("/metrics");
        let expected = if i == old { 1 } else { 0 };
        assert!(
            metrics.contains(&format!("market_is_leader {expected}")),
            "{}: {metrics}",
            replica.name
        );
    }
    let (_, metrics) = replicas[old].get("/metrics");
    for name in [
        "market_leadership_transitions_total{cause=\"acquired\"} 1",
        "market_renewal_seconds_bucket",
        "market_quotes_published_total",
        "market_publishes_rejected_total 0",
        "market_last_sequence{symbol=\"EURUSD\"}",
        "market_leaderless_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }

    replicas[old].signal("TERM");
    assert_eq!(
        replicas[old].wait_exit(Duration::from_secs(5)).code(),
        Some(0)
    );
    let new = new_leader(&replicas, old, Duration::from_secs(2));
    let new_name = replicas[new].name.clone();
    wait_for_quotes_from(&server.url(), &new_name, 5, START);

    for (i, replica) in replicas.iter().enumerate() {
        if i == old {
            continue;
        }
        assert_eq!(replica.get("/readyz").0, 200, "{}", replica.name);
        let leader = names_leader(replica, &new_name);
        assert_eq!(leader["is_me"], i == new);
        assert!(leader["token"].as_u64().is_some(), "{leader}");
        let (_, metrics) = replica.get("/metrics");
        let expected = if i == new { 1 } else { 0 };
        assert!(
            metrics.contains(&format!("market_is_leader {expected}")),
            "{metrics}"
        );
    }
}

/// Waits until `/leader` on `replica` names `leader`; returns the body.
fn names_leader(replica: &Replica, leader: &str) -> serde_json::Value {
    wait_until(Duration::from_secs(3), || {
        let (status, body) = replica.get("/leader");
        assert_eq!(status, 200, "{body}");
        let view: serde_json::Value = serde_json::from_str(&body).unwrap();
        (view["leader"] == leader).then_some(view)
    })
    .unwrap_or_else(|| {
        panic!(
            "{} does not name {leader}: {:?}",
            replica.name,
            replica.get("/leader")
        )
    })
}
