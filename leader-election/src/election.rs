//! The public handle of one election.

use std::sync::Arc;

use async_nats::Client;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::ElectionConfig;
use crate::elector::{Command, Elector, ElectorParts};
use crate::error::{Error, ErrorKind};
use crate::metrics::{ElectionMetrics, NoMetrics};
use crate::nats::NatsStore;
use crate::record::Holder;
use crate::state::{LeadershipState, Lease};
use crate::store::LeaseStore;

/// A running election: this process campaigns for the key (or, in observer mode, only follows
/// who holds it) until [`shutdown`](Election::shutdown), [`abort`](Election::abort) or drop.
///
/// Dropping the handle shuts the election down in the background like `shutdown`, releasing the
/// lease after the work drained.
pub struct Election {
    me: Holder,
    state: watch::Receiver<LeadershipState>,
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

/// Sets up an [`Election`]: metrics, observer mode, and the store to run on.
#[must_use]
pub struct ElectionBuilder {
    config: ElectionConfig,
    metrics: Arc<dyn ElectionMetrics>,
    campaign: bool,
}

impl ElectionBuilder {
    /// Reports measurements to `metrics` (default: none).
    pub fn metrics(mut self, metrics: Arc<dyn ElectionMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Follows the election without ever campaigning.
    pub fn observe_only(mut self) -> Self {
        self.campaign = false;
        self
    }

    /// Starts the election on NATS: checks the configuration and the server, creates or checks
    /// the bucket, and spawns the election task on the current tokio runtime.
    ///
    /// # Errors
    /// See [`NatsStore::open`]. Several elections may share one `client`.
    ///
    /// # Examples
    /// ```no_run
    /// use leader_election::{Election, ElectionConfig};
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = async_nats::connect("nats://127.0.0.1:4222").await?;
    /// let election = Election::builder(ElectionConfig::new("replica-1").election("scheduler"))
    ///     .start(client)
    ///     .await?;
    /// let lease = election.leading().await?;
    /// println!("leading with fencing token {}", lease.token());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(self, client: Client) -> Result<Election, Error> {
        let store = NatsStore::open(client, &self.config).await?;
        self.start_with_store(Arc::new(store))
    }

    /// Starts the election on any [`LeaseStore`], for example a [`MemoryStore`](crate::MemoryStore)
    /// in tests.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidConfig`] naming the broken rule.
    pub fn start_with_store(self, store: Arc<dyn LeaseStore>) -> Result<Election, Error> {
        self.config.validate()?;
        let me = Holder::new(&self.config.identity, self.config.timings.lease_duration);
        let (state_tx, state) = watch::channel(LeadershipState::NoLeader);
        let (commands, commands_rx) = mpsc::channel(8);
        let elector = Elector::new(ElectorParts {
            store,
            config: self.config,
            me: me.clone(),
            campaign: self.campaign,
            state: state_tx,
            commands: commands_rx,
            metrics: self.metrics,
        });
        let task = tokio::spawn(elector.run());
        Ok(Election {
            me,
            state,
            commands,
            task,
        })
    }
}

impl Election {
    /// A builder for an election with this configuration.
    pub fn builder(config: ElectionConfig) -> ElectionBuilder {
        ElectionBuilder {
            config,
            metrics: Arc::new(NoMetrics),
            campaign: true,
        }
    }

    /// This candidate as written into the key when it leads: identity plus per-process instance.
    pub fn holder(&self) -> &Holder {
        &self.me
    }

    /// The leadership state as a `watch` channel: changes are pushed, the latest is always there.
    ///
    /// # Examples
    /// ```no_run
    /// use leader_election::LeadershipState;
    /// # async fn example(election: leader_election::Election) {
    /// let mut state = election.state();
    /// while state.changed().await.is_ok() {
    ///     match &*state.borrow() {
    ///         LeadershipState::Leading(lease) => println!("leading, token {}", lease.token()),
    ///         LeadershipState::Following { leader, .. } => println!("following {leader:?}"),
    ///         LeadershipState::NoLeader => println!("no leader"),
    ///     }
    /// }
    /// # }
    /// ```
    pub fn state(&self) -> watch::Receiver<LeadershipState> {
        self.state.clone()
    }

    /// Whether this process leads right now with a lease that has neither ended nor run out.
    pub fn is_leader(&self) -> bool {
        self.state.borrow().is_leader()
    }

    /// Waits until this process leads and returns the term's lease.
    ///
    /// Cancel safe.
    ///
    /// # Errors
    /// [`ErrorKind::Stopped`] when the election ends first.
    pub async fn leading(&self) -> Result<Lease, Error> {
        let mut state = self.state.clone();
        let result = state
            .wait_for(|s| s.is_leader())
            .await
            .map(|s| s.lease().cloned());
        match result {
            Ok(Some(lease)) => Ok(lease),
            _ => Err(stopped()),
        }
    }

    /// Gives leadership up and keeps following: cancels the lease's work, keeps renewing while
    /// the work's [`WorkGuard`](crate::WorkGuard)s drop (at most the drain timeout), then deletes
    /// the key at its revision and waits for the acknowledgement. Does not campaign again for one
    /// lease duration, so a standby takes over. A no-op when not leading.
    ///
    /// # Errors
    /// [`ErrorKind::DrainTimedOut`] when the work outlasted the drain timeout (the lease is then
    /// left to expire), [`ErrorKind::Stopped`] when the election already ended.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn example(election: leader_election::Election) -> Result<(), leader_election::Error> {
    /// // Before maintenance: hand leadership to a standby, which takes over in about a millisecond.
    /// if election.is_leader() {
    ///     election.resign().await?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn resign(&self) -> Result<(), Error> {
        self.send(Command::Resign).await
    }

    /// Stops the election: releases leadership like [`resign`](Election::resign), then ends the
    /// election task.
    ///
    /// # Errors
    /// As for `resign`.
    pub async fn shutdown(self) -> Result<(), Error> {
        let result = self.send(Command::Shutdown).await;
        let _ = self.task.await;
        result
    }

    /// Stops the election at once without releasing the lease, as a crash would: leader work is
    /// not told, and standbys take over once the lease runs out.
    pub fn abort(self) {
        self.task.abort();
        // The task may be running on another worker right now and only stops at its next await.
        // Closing the command channel before then would read as a shutdown and release the key,
        // which a crash never does: keep the channel open until the task is gone.
        let Election { commands, task, .. } = self;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let _ = task.await;
                    drop(commands);
                });
            }
            Err(_) => std::mem::forget(commands),
        }
    }

    /// Fails when the process believes it leads but its lease has run out (the election task is
    /// stuck or starved), or when the election task has died. For liveness probes.
    ///
    /// # Errors
    /// [`ErrorKind::Stopped`] or [`ErrorKind::Other`] describing the stale lease.
    pub fn health(&self) -> Result<(), Error> {
        if self.task.is_finished() {
            return Err(stopped());
        }
        if let LeadershipState::Leading(lease) = &*self.state.borrow() {
            let overdue = Instant::now().saturating_duration_since(lease.deadline());
            if !lease.cancellation_token().is_cancelled() && !overdue.is_zero() {
                return Err(Error::new(
                    ErrorKind::Other,
                    format!(
                        "this process believes it leads {:?} but its lease ran out {overdue:?} ago",
                        lease.election()
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn send(
        &self,
        command: fn(oneshot::Sender<Result<(), Error>>) -> Command,
    ) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> Error {
    Error::new(ErrorKind::Stopped, "the election task has ended")
}
