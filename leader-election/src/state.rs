//! Leadership as observable state, and the lease handle given to leader-only work.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::error::{Error, ErrorKind};
use crate::fencing::FencingToken;
use crate::record::Holder;
use crate::store::{LeaseStore, StoreErrorKind};

/// What this process knows about the election.
#[derive(Debug, Clone)]
pub enum LeadershipState {
    /// Nobody is known to lead: the key is vacant, its holder went silent, or the state is not
    /// known yet.
    NoLeader,
    /// Another candidate leads.
    Following {
        /// The leader, as written in the key; `None` when the key holds a value that is not a
        /// lease record.
        leader: Option<Holder>,
        /// The key's revision when this was observed.
        revision: u64,
    },
    /// This process leads.
    Leading(Lease),
}

impl LeadershipState {
    /// Whether this process leads with a lease that has not been cancelled or run out.
    pub fn is_leader(&self) -> bool {
        matches!(self, LeadershipState::Leading(lease) if lease.is_valid())
    }

    /// The lease, when leading.
    pub fn lease(&self) -> Option<&Lease> {
        match self {
            LeadershipState::Leading(lease) => Some(lease),
            _ => None,
        }
    }
}

/// Why a term ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LossCause {
    /// The leader gave the lease up with [`Election::resign`](crate::Election::resign).
    Resigned,
    /// Another candidate's write replaced the lease, or a renewal found the key at another revision.
    Superseded,
    /// No renewal was acknowledged before the step-down point.
    Deadline,
    /// The key was deleted, purged or expired under the leader, or the bucket disappeared.
    Deleted,
    /// The election was shut down.
    Shutdown,
}

impl LossCause {
    /// A short lowercase name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            LossCause::Resigned => "resigned",
            LossCause::Superseded => "superseded",
            LossCause::Deadline => "deadline",
            LossCause::Deleted => "deleted",
            LossCause::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for LossCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The handle of one term, given to leader-only work.
///
/// Cloning is cheap. The cancellation token fires when the term ends and, at the latest, at the
/// step-down point, before any standby can take over; work bound to it must stop when it fires.
/// Hold a [`WorkGuard`] while work runs, so a resign waits for it before releasing the key.
#[derive(Clone)]
pub struct Lease {
    inner: Arc<LeaseInner>,
}

struct LeaseInner {
    election: String,
    token: FencingToken,
    since: SystemTime,
    previous_leader: Option<Holder>,
    leaderless: Option<Duration>,
    cancel: CancellationToken,
    end_cause: Mutex<Option<LossCause>>,
    work: TaskTracker,
    current: Mutex<Current>,
    store: Arc<dyn LeaseStore>,
}

#[derive(Clone, Copy)]
struct Current {
    revision: u64,
    deadline: Instant,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("election", &self.inner.election)
            .field("token", &self.inner.token)
            .field("revision", &self.revision())
            .field("time_left", &self.time_left())
            .field("cancelled", &self.inner.cancel.is_cancelled())
            .finish()
    }
}

pub(crate) struct LeaseParts {
    pub(crate) election: String,
    pub(crate) token: FencingToken,
    pub(crate) deadline: Instant,
    pub(crate) previous_leader: Option<Holder>,
    pub(crate) leaderless: Option<Duration>,
    pub(crate) store: Arc<dyn LeaseStore>,
}

impl Lease {
    pub(crate) fn new(parts: LeaseParts) -> Self {
        Lease {
            inner: Arc::new(LeaseInner {
                election: parts.election,
                token: parts.token,
                since: SystemTime::now(),
                previous_leader: parts.previous_leader,
                leaderless: parts.leaderless,
                cancel: CancellationToken::new(),
                end_cause: Mutex::new(None),
                work: TaskTracker::new(),
                current: Mutex::new(Current {
                    revision: parts.token.revision,
                    deadline: parts.deadline,
                }),
                store: parts.store,
            }),
        }
    }

    /// The fencing token of this term: the revision of the write that won it.
    pub fn token(&self) -> FencingToken {
        self.inner.token
    }

    /// The election's name.
    pub fn election(&self) -> &str {
        &self.inner.election
    }

    /// When the term began (wall clock, for display).
    pub fn since(&self) -> SystemTime {
        self.inner.since
    }

    /// The leader before this term, when the key named one.
    pub fn previous_leader(&self) -> Option<&Holder> {
        self.inner.previous_leader.as_ref()
    }

    /// How long the election had no leader before this term: from the vacancy, by the NATS
    /// server's timestamp (the delete or expiry marker, or the silent leader's last write plus
    /// its lease), to this process's wall clock when its first write was acknowledged. The two
    /// clocks are one on a single machine; across machines the figure is off by their offset.
    /// After a crash it excludes the lease the dead leader still held. `None` when no timestamp
    /// was available.
    pub fn leaderless(&self) -> Option<Duration> {
        self.inner.leaderless
    }

    /// The key's current revision, which moves with every renewal. Fenced writes check it.
    pub fn revision(&self) -> u64 {
        self.current().revision
    }

    /// Time left before the step-down point; zero once it has passed.
    pub fn time_left(&self) -> Duration {
        self.current()
            .deadline
            .saturating_duration_since(Instant::now())
    }

    /// The step-down point on the monotonic clock.
    pub fn deadline(&self) -> Instant {
        self.current().deadline
    }

    /// Whether the term is still on: not cancelled, and the step-down point not passed.
    pub fn is_valid(&self) -> bool {
        !self.inner.cancel.is_cancelled() && Instant::now() < self.current().deadline
    }

    /// A token that is cancelled when the term ends; cancelling it has no effect on the term.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.inner.cancel.child_token()
    }

    /// Completes when the term ends.
    ///
    /// Cancel safe.
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await
    }

    /// Registers running leader work. Resign and shutdown release the key only after every guard
    /// of the term is dropped (or the drain timeout passes, and then the lease is left to expire).
    ///
    /// # Examples
    /// ```no_run
    /// # async fn flush_and_close() {}
    /// # async fn example(lease: leader_election::Lease) {
    /// let guard = lease.guard();
    /// tokio::spawn(async move {
    ///     lease.cancelled().await;
    ///     flush_and_close().await; // the key is still ours while this runs
    ///     drop(guard);             // now the release may go ahead
    /// });
    /// # }
    /// ```
    pub fn guard(&self) -> WorkGuard {
        WorkGuard {
            _token: self.inner.work.token(),
        }
    }

    /// Writes `value` to `key` in the election's bucket, accepted by the server only while this
    /// term holds the lease: the write is conditional on the election key being at this lease's
    /// current revision (`Nats-Expected-Last-Subject-Sequence-Subject`, nats-server 2.11+).
    /// Returns the new message's revision.
    ///
    /// Fails with [`ErrorKind::NotLeader`] once the term has ended and with
    /// [`ErrorKind::Conflict`] when the server rejected the write because the lease moved on.
    ///
    /// Cancel safe in the sense that dropping the future leaves the write either done or not done.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(lease: leader_election::Lease) -> Result<(), leader_election::Error> {
    /// // Accepted only while this term holds the lease, even if this process was paused.
    /// lease.put_fenced("scheduler.cursor", "2026-12-03T18:00:00Z".into()).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn put_fenced(&self, key: &str, value: Bytes) -> Result<u64, Error> {
        if !crate::config::is_valid_key(key) {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("{key:?} is not a valid key"),
            ));
        }
        // A renewal may move the revision between reading it and the server checking it: retry
        // once with the new revision while the term is still on.
        let mut attempts = 0;
        loop {
            if !self.is_valid() {
                return Err(Error::new(
                    ErrorKind::NotLeader,
                    format!(
                        "the term with token {} of election {:?} has ended",
                        self.inner.token, self.inner.election
                    ),
                ));
            }
            let revision = self.revision();
            let result = self
                .inner
                .store
                .put_fenced(key, value.clone(), revision, self.time_left())
                .await;
            match result {
                Ok(written) => return Ok(written),
                Err(err) if err.kind() == StoreErrorKind::Conflict => {
                    attempts += 1;
                    if attempts > 1 || self.revision() == revision {
                        return Err(Error::with_source(
                            ErrorKind::Conflict,
                            format!(
                                "the server rejected the write to {key:?}: the lease is no longer at revision {revision}"
                            ),
                            err,
                        ));
                    }
                }
                Err(err) => {
                    return Err(Error::from_store(err, &format!("fenced write to {key:?}")));
                }
            }
        }
    }

    pub(crate) fn renewed(&self, revision: u64, deadline: Instant) {
        *self.inner.current.lock().unwrap_or_else(|e| e.into_inner()) =
            Current { revision, deadline };
    }

    /// Why the term ended (or is ending, while resign drains the work); `None` while it is on.
    pub fn end_cause(&self) -> Option<LossCause> {
        *self
            .inner
            .end_cause
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the term: records the first cause given and cancels the work.
    pub(crate) fn end(&self, cause: LossCause) {
        self.inner
            .end_cause
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(cause);
        self.inner.cancel.cancel();
    }

    pub(crate) fn close_work(&self) {
        self.inner.work.close();
    }

    /// Whether work registered with [`Lease::guard`] is still running.
    pub fn has_work(&self) -> bool {
        !self.inner.work.is_empty()
    }

    pub(crate) async fn drained(&self) {
        self.inner.work.wait().await
    }

    fn current(&self) -> Current {
        *self.inner.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Held by running leader work; see [`Lease::guard`].
#[derive(Debug)]
pub struct WorkGuard {
    _token: TaskTrackerToken,
}
