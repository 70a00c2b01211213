//! Each example runs for a few seconds against a real nats-server and does what it shows.

use std::process::Command;

use leader_election::testing::NatsServer;

fn run(bin: &str, server: &NatsServer, seconds: &str, extra: &[(&str, &str)]) -> String {
    let output = Command::new(bin)
        .env("NATS_URL", server.url())
        .env("RUN_FOR", seconds)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .envs(extra.iter().copied())
        .output()
        .expect("running the example");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{bin} failed:\n{log}");
    log
}

#[test]
fn basic_election_leads_and_releases_on_stop() {
    let server = NatsServer::start();
    let log = run(
        env!("CARGO_BIN_EXE_basic-election"),
        &server,
        "1.5",
        &[("IDENTITY", "solo")],
    );
    assert!(log.contains("leading"), "{log}");
    assert!(
        log.contains("cause=resigned") || log.contains("cause=shutdown"),
        "{log}"
    );
}

#[test]
fn fenced_work_writes_while_leading_and_stops_with_the_term() {
    let server = NatsServer::start();
    let log = run(env!("CARGO_BIN_EXE_fenced-work"), &server, "1.5", &[]);
    assert!(log.contains("fenced write accepted"), "{log}");
    assert!(log.contains("work stopped"), "{log}");
}

#[test]
fn observer_sees_the_leader_and_many_elections_lead_every_shard() {
    let server = NatsServer::start();
    let leader = {
        let bin = env!("CARGO_BIN_EXE_many-elections");
        let url = server.url();
        std::thread::spawn(move || {
            Command::new(bin)
                .env("NATS_URL", url)
                .env("RUN_FOR", "3")
                .env("SHARDS", "3")
                .env("IDENTITY", "sharder")
                .env("NO_COLOR", "1")
                .output()
                .expect("running many-elections")
        })
    };
    let log = run(
        env!("CARGO_BIN_EXE_observer"),
        &server,
        "2",
        &[("ELECTION", "shard-1")],
    );
    assert!(log.contains("leader=sharder"), "{log}");
    let output = leader.join().unwrap();
    let sharder = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    for shard in 0..3 {
        assert!(sharder.contains(&format!("shard={shard}")), "{sharder}");
    }
}
