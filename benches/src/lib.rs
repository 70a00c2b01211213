//! The harness of the election benches: the NATS floor, election scenarios on the library,
//! etcd's election API for comparison, CPU accounting and per-iteration samples.
//!
//! The bench targets in `benches/` are thin: `election` runs the latency comparisons under
//! criterion, `scale` measures renewal throughput and CPU with many elections in one process.
//! Everything they measure is defined here, once, so both targets measure the same thing.
//!
//! Every figure comes from a real server started by the bench on free ports: `nats-server`
//! through [`leader_election::testing::NatsServer`], `etcd` through `etcd::EtcdServer` (feature
//! `etcd`). A missing binary fails the bench with what to install; no figure is ever invented.

pub mod cpu;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod floor;
pub mod nats_election;
pub mod samples;

use std::time::Duration;

/// How long the harness waits for anything that should take milliseconds (a leader to be
/// elected, a standby to see the key) before it fails the bench instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Logs to stderr when `RUST_LOG` is set (for example `RUST_LOG=leader_election=debug`); silent
/// otherwise, so logging costs nothing in the measurements.
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// The runtime the benches run on: multi-threaded, one worker per core, like a service's.
///
/// # Panics
/// When the runtime cannot be built.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime")
}

/// Connects to a NATS server, failing the bench with the URL when it cannot.
///
/// # Panics
/// When the connection fails.
pub async fn connect(url: &str) -> async_nats::Client {
    async_nats::connect(url)
        .await
        .unwrap_or_else(|err| panic!("connecting to nats-server at {url}: {err}"))
}
