//! Signals: a graceful stop while connecting, and a second signal that does not wait.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn a_signal_while_connecting_exits_0_at_once() {
    let url = format!("nats://127.0.0.1:{}", leader_election::testing::free_port());
    let mut replica = Replica::start(&url, "solo");
    replica.wait_for(
        "Connecting to NATS failed; retrying",
        Duration::from_secs(10),
    );
    replica.signal("INT");
    assert_eq!(
        replica.wait_exit(Duration::from_secs(2)).code(),
        Some(0),
        "{}",
        replica.dump()
    );
    let complete = replica.wait_for("Shutdown complete", Duration::ZERO);
    assert_eq!(complete["outcome"], "not started");
}

#[test]
fn a_second_signal_exits_at_once_with_130() {
    let server = NatsServer::start();
    let mut replica = Replica::start(&server.url(), "solo");
    replica.wait_for("Leadership acquired", Duration::from_secs(10));
    // With the server frozen, releasing the lease waits until the step-down point (about
    // 240 ms here): long enough to send a second signal while the first one is handled.
    server.signal("STOP");
    replica.signal("TERM");
    replica.wait_for("Shutting down", Duration::from_secs(2));
    replica.signal("TERM");
    let status = replica.wait_exit(Duration::from_secs(2));
    assert_eq!(status.code(), Some(130), "{}", replica.dump());
    assert!(
        replica.has_logged("Second signal: exiting at once without releasing leadership"),
        "{}",
        replica.dump()
    );
    assert!(
        !replica.has_logged("Shutdown complete"),
        "{}",
        replica.dump()
    );
    server.signal("CONT");
}
