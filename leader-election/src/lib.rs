//! Leader election on the NATS JetStream key-value store.
//!
//! Candidates compete for one key of a KV bucket. A candidate **acquires** the key with a
//! conditional write (expected revision 0, or the revision of the delete or expiry marker there),
//! **keeps** it with compare-and-swap renewals at the revision of its own last acknowledged write,
//! each carrying a server-side TTL, and **gives it up** with a conditional delete. Standbys watch
//! the key and try to acquire it the moment it is deleted or expires. The revision of the write
//! that won a term is the term's [`FencingToken`].
//!
//! # Guarantee
//!
//! **At most one process acts as leader at any instant**, under the assumptions below. A leader
//! acts only while its [`Lease`] is valid, and the lease's cancellation token fires at the
//! *step-down point*: the send time of its last acknowledged write plus
//! `lease_duration × (1 − clock_drift) − safety_margin`, on the local monotonic clock, whatever
//! calls are in flight. A standby replaces a holder only by compare-and-swap at a revision it has
//! seen unchanged for a whole `lease_duration` on its own monotonic clock (an *observed lease*,
//! as Kubernetes lease election does), and no earlier than the key's deletion or expiry. Because
//! the standby saw the revision no earlier than the leader sent it, the leader has stopped before
//! any standby can act. Authority comes only from the acknowledgement of one's own conditional
//! write, never from a read: reads and watches are hints that trigger a write.
//!
//! # Assumptions
//!
//! - The clocks of two machines run at rates that differ by less than `clock_drift` (1 % by
//!   default). Their absolute values never matter: no wall-clock time is compared across machines.
//! - A leader is not paused (GC, SIGSTOP, an overloaded VM) for longer than `safety_margin`
//!   between checking its lease and acting on it. Longer pauses are what fencing is for: check
//!   the token downstream, for example with [`Lease::put_fenced`] or a conditional publish.
//! - nats-server 2.11 or later (per-key TTLs, subject delete markers, fencing headers); older
//!   servers are refused at start because they ignore those headers silently.
//!
//! What is **not** guaranteed: that a leader exists at every instant (failover takes about one
//! lease duration after a crash, about a millisecond after a graceful resign), and anything about
//! work that ignores the cancellation token.
//!
//! # Choosing timings
//!
//! See [`Timings`]. Crash failover takes about `lease_duration` plus one watch notification; a
//! leader survives NATS hiccups shorter than about `lease_duration − renew_interval − safety_margin`.
//! The defaults (500 ms / 100 ms / 1 s TTL) suit a single server or a healthy cluster; for a
//! 3-node cluster where losing the stream leader stalls writes for seconds, choose a lease of
//! several seconds if leadership changes are worse than a few seconds without a leader.
//!
//! # Example
//!
//! ```no_run
//! use leader_election::{Election, ElectionConfig};
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let election = Election::builder(ElectionConfig::new("replica-1").election("feed"))
//!     .start(client)
//!     .await?;
//! loop {
//!     let lease = election.leading().await?;
//!     let _guard = lease.guard();
//!     tokio::select! {
//!         _ = lease.cancelled() => {} // stop at once: the term is over
//!         _ = do_leader_work(lease.token().revision) => {}
//!     }
//! }
//! # }
//! # async fn do_leader_work(_token: u64) {}
//! ```

mod config;
mod election;
mod elector;
mod error;
mod fencing;
pub mod jetstream_api;
mod memory;
mod metrics;
mod nats;
mod record;
mod state;
mod store;
#[cfg(feature = "test-support")]
pub mod testing;

pub use config::{ConfigError, ElectionConfig, Timings};
pub use election::{Election, ElectionBuilder};
pub use error::{Error, ErrorKind};
pub use fencing::FencingToken;
pub use memory::{MemoryBucket, MemoryStore};
pub use metrics::{ElectionMetrics, NoMetrics};
pub use nats::{MIN_SERVER_VERSION, NatsStore};
pub use record::Holder;
pub use state::{LeadershipState, Lease, LossCause, WorkGuard};
pub use store::{
    KeyState, KeyValue, KeyWatch, LeaseStore, StoreError, StoreErrorKind, Vacancy, WriteRequest,
};
