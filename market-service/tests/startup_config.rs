//! Start-up: settings refused before connecting (exit code 2), malformed feed rows, an
//! unreachable NATS, and a quote stream that cannot be used.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

const EXIT: Duration = Duration::from_secs(10);

/// A URL where nothing listens.
fn dead_url() -> String {
    format!("nats://127.0.0.1:{}", leader_election::testing::free_port())
}

fn with(env: &[(&str, &str)], url: &str) -> Vec<(String, String)> {
    let mut all = replica_env(url, "solo");
    for (key, value) in env {
        all.retain(|(k, _)| k != key);
        all.push((key.to_string(), value.to_string()));
    }
    all
}

fn assert_refused_before_connecting(env: &[(&str, &str)], expected: &str) {
    let mut replica = Replica::start_with("solo", &with(env, &dead_url()), &[]);
    let status = replica.wait_exit(EXIT);
    assert_eq!(status.code(), Some(2), "{}", replica.dump());
    assert!(
        replica.stderr().contains(expected),
        "expected {expected:?} in\n{}",
        replica.dump()
    );
    assert!(!replica.has_logged("Starting"), "{}", replica.dump());
}

#[test]
fn a_bad_duration_exits_2_before_connecting() {
    assert_refused_before_connecting(
        &[("MARKET_LEASE_DURATION", "5x")],
        "invalid duration \"5x\": use a number and a unit (ns, us, ms, s, m), for example 500ms, 2s or 1.5s",
    );
}

#[test]
fn a_lease_shorter_than_the_renew_interval_exits_2_before_connecting() {
    assert_refused_before_connecting(
        &[
            ("MARKET_LEASE_DURATION", "100ms"),
            ("MARKET_RENEW_INTERVAL", "200ms"),
        ],
        "invalid election settings: renew_interval 200ms is not shorter than the step-down point",
    );
}

#[test]
fn a_missing_feed_file_exits_2_before_connecting() {
    assert_refused_before_connecting(
        &[("MARKET_FEED", "/nonexistent/GOLD.csv")],
        "feed file /nonexistent/GOLD.csv does not exist or is not a file (MARKET_FEED)",
    );
}

#[test]
fn a_bad_rate_exits_2_before_connecting() {
    assert_refused_before_connecting(&[("MARKET_RATE", "0")], "invalid rate \"0\"");
}

/// A feed of five rows from EURUSD.csv with a malformed fourth line (the header is line 1).
fn feed_with_a_bad_row() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut file = std::fs::File::create(dir.path().join("EURBAD.csv")).unwrap();
    write!(
        file,
        ",Open,High,Low,Close,Volume\n\
         2017-04-19 09:00:00,1.0716,1.0722,1.07083,1.07219,1413\n\
         2017-04-19 10:00:00,1.07214,1.07296,1.07214,1.0726,1241\n\
         2017-04-19 11:00:00,1.07256,oops,1.07170,1.07192,1024\n\
         2017-04-19 12:00:00,1.07192,1.07264,1.07170,1.07207,1044\n\
         2017-04-19 13:00:00,1.07206,1.07341,1.07206,1.07282,1267\n"
    )
    .unwrap();
    dir
}

#[test]
fn a_malformed_row_is_skipped_logged_with_file_and_line_and_counted() {
    let server = NatsServer::start();
    let dir = feed_with_a_bad_row();
    let path = dir.path().join("EURBAD.csv");
    let replica = Replica::start_with(
        "solo",
        &with(&[("MARKET_FEED", path.to_str().unwrap())], &server.url()),
        &[],
    );
    let skipped = replica.wait_for("Skipping malformed feed row", EXIT);
    assert_eq!(
        skipped["location"],
        format!("{}:4", path.display()).as_str()
    );
    assert_eq!(skipped["reason"], "High \"oops\" is not a number");

    // The four good rows are published, numbered 1..4, and the feed ends (no loop).
    let finished = replica.wait_for("Feed finished", EXIT);
    assert_eq!(finished["last"], 4);
    let quotes = read_quotes(&server.url());
    assert_eq!(quotes.len(), 4);
    assert!(quotes.iter().all(|q| q.symbol == "EURBAD"));
    assert_gapless(&quotes);
    let (_, metrics) = replica.get("/metrics");
    assert!(
        metrics.contains("market_feed_rows_skipped_total{symbol=\"EURBAD\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("market_last_sequence{symbol=\"EURBAD\"} 4"),
        "{metrics}"
    );
}

#[test]
fn a_malformed_row_with_stop_exits_2_naming_file_and_line() {
    let dir = feed_with_a_bad_row();
    let path = dir.path().join("EURBAD.csv");
    let mut replica = Replica::start_with(
        "solo",
        &with(
            &[
                ("MARKET_FEED", path.to_str().unwrap()),
                ("MARKET_ON_BAD_ROW", "stop"),
            ],
            &dead_url(),
        ),
        &[],
    );
    let status = replica.wait_exit(EXIT);
    assert_eq!(status.code(), Some(2), "{}", replica.dump());
    let exiting = replica.wait_for("Exiting", Duration::ZERO);
    assert_eq!(
        exiting["error"],
        format!(
            "malformed row at {}:4: High \"oops\" is not a number",
            path.display()
        )
        .as_str()
    );
    assert_eq!(exiting["exit_code"], 2);
    assert!(!replica.has_logged("Starting"), "{}", replica.dump());
}

#[test]
fn an_unreachable_nats_is_retried_reported_by_readyz_and_joined_once_up() {
    let mut server = NatsServer::start();
    server.kill();
    let mut replica = Replica::start(&server.url(), "solo");
    replica.wait_for_nth("Connecting to NATS failed; retrying", 1, EXIT);
    let failure = replica.wait_for("Connecting to NATS failed; retrying", Duration::ZERO);
    assert!(failure["error"].as_str().is_some(), "{failure}");
    assert_eq!(failure["attempt"], 1);
    let (status, body) = replica.get("/readyz");
    assert_eq!(status, 503);
    assert!(body.starts_with("connecting to NATS: "), "{body}");
    // Alive all the same: a NATS outage must not get the replica restarted.
    assert_eq!(replica.get("/livez").0, 200);

    server.restart();
    replica.wait_for("Connected to NATS", EXIT);
    replica.wait_for("Leadership acquired", EXIT);
    let ready = wait_until(Duration::from_secs(5), || {
        (replica.get("/readyz").0 == 200).then_some(())
    });
    assert!(ready.is_some(), "{:?}", replica.get("/readyz"));

    replica.signal("TERM");
    assert_eq!(
        replica.wait_exit(EXIT).code(),
        Some(0),
        "{}",
        replica.dump()
    );
}

#[test]
fn a_stream_that_does_not_take_the_quote_subjects_is_refused_with_exit_1() {
    let server = NatsServer::start();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let client = async_nats::connect(server.url()).await.unwrap();
            async_nats::jetstream::new(client)
                .create_stream(async_nats::jetstream::stream::Config {
                    name: STREAM.to_string(),
                    subjects: vec!["other.>".to_string()],
                    ..Default::default()
                })
                .await
                .unwrap();
        });
    let mut replica = Replica::start(&server.url(), "solo");
    let status = replica.wait_exit(EXIT);
    assert_eq!(status.code(), Some(1), "{}", replica.dump());
    let exiting = replica.wait_for("Exiting", Duration::ZERO);
    let error = exiting["error"].as_str().unwrap();
    assert!(
        error.starts_with("the quote stream cannot be used: stream \"market-quotes\" exists with subjects [\"other.>\"], which do not cover market.quotes.EURUSD"),
        "{error}"
    );
}

#[test]
fn a_server_older_than_2_11_is_refused_with_exit_1_before_anything_is_written() {
    // Where scripts/install-tools extracts Debian's 2.9.10, unless NATS_SERVER_OLD says otherwise.
    let extracted = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/tools/nats-server-2.9/usr/sbin/nats-server");
    let old = std::env::var_os("NATS_SERVER_OLD")
        .map(std::path::PathBuf::from)
        .or_else(|| extracted.is_file().then_some(extracted))
        .expect(
            "NATS_SERVER_OLD must name a nats-server older than 2.11 (scripts/install-tools extracts Debian's 2.9.10)",
        );
    let server = NatsServer::start_binary(old);
    let mut replica = Replica::start(&server.url(), "solo");
    let status = replica.wait_exit(EXIT);
    assert_eq!(status.code(), Some(1), "{}", replica.dump());
    let exiting = replica.wait_for("Exiting", Duration::ZERO);
    let error = exiting["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "the election cannot run: unsupported nats-server version: nats-server 2.9"
        ),
        "{error}"
    );
    assert!(!replica.has_logged("Leadership acquired"));
    // The quote stream was not created on the old server.
    assert!(
        read_quotes_stream_missing(&server.url()),
        "{}",
        replica.dump()
    );
}

#[test]
fn a_server_without_jetstream_is_refused_with_exit_1() {
    let server = NatsServer::start_without_jetstream();
    let mut replica = Replica::start(&server.url(), "solo");
    let status = replica.wait_exit(EXIT);
    assert_eq!(status.code(), Some(1), "{}", replica.dump());
    let exiting = replica.wait_for("Exiting", Duration::ZERO);
    let error = exiting["error"].as_str().unwrap();
    assert!(
        error.starts_with("the election cannot run: JetStream unavailable"),
        "{error}"
    );
}

fn read_quotes_stream_missing(url: &str) -> bool {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let client = async_nats::connect(url).await.unwrap();
            async_nats::jetstream::new(client)
                .get_stream(STREAM)
                .await
                .is_err()
        })
}
