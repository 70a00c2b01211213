//! Election scenarios on the library, one iteration at a time: graceful handover and crash
//! takeover between a leader and a standby on separate connections.
//!
//! Handovers go back and forth between two long-lived candidates: before each one the standby
//! (the previous leader) has waited out the hold-off the library imposes after a resign (one
//! lease duration, untimed) and follows the leader. A crash leaves one candidate, so each crash
//! starts a fresh standby (untimed) and waits until it follows the leader.
//!
//! Candidates are not started per handover: every start opens a watch, whose consumer outlives
//! it on the server for 30 s (async-nats's inactive threshold for ordered consumers), and
//! nats-server 2.15 refuses a stream's 1,001st consumer by default, so hundreds of fresh standbys
//! a second would measure the server's consumer limit, not the handover.

use std::time::{Duration, Instant};

use async_nats::Client;
use leader_election::{Election, ElectionConfig, LeadershipState};

use crate::PATIENCE;

/// How often a candidate's start is tried when it fails with a retryable error.
const START_ATTEMPTS: u32 = 5;

/// What followed an aborted leader.
#[derive(Debug, Clone, Copy)]
pub enum CrashOutcome {
    /// The standby took over once the lease ran out.
    TakenOver(CrashSample),
    /// The aborted election task released the key before it stopped, so the standby took over
    /// at once: `Election::abort` consumes the handle, which closes the command channel; a task
    /// that is still running when `abort` is called (tokio cancels it only at its next yield)
    /// reads that as a shutdown and deletes the key. Safe (its work was cancelled first), but not
    /// a crash, so not a figure.
    Released,
}

/// One crash takeover.
#[derive(Debug, Clone, Copy)]
pub struct CrashSample {
    /// From the send time of the dead leader's last acknowledged renewal to the standby's
    /// acquisition acknowledged: the time without a leader that anyone could act on.
    pub silence_to_leader: Duration,
    /// `silence_to_leader` minus the lease duration: what the takeover costs beyond the lease.
    pub overhead: Duration,
}

/// A leader and the connections its standbys use, for repeated handovers or crashes.
pub struct Candidates {
    clients: Vec<Client>,
    config: ElectionConfig,
    leader: Option<(Election, usize)>,
    /// The last leader, following again, and when its hold-off after the resign ends.
    spare: Option<(Election, usize, Instant)>,
    started: usize,
}

impl Candidates {
    /// Starts the first leader on `clients[0]` and waits until it leads. Standbys use the other
    /// connections in turn, never the current leader's (two clients are enough).
    ///
    /// # Panics
    /// With fewer than two clients, or when the election fails or elects nobody in time.
    pub async fn start(clients: Vec<Client>, config: ElectionConfig) -> Candidates {
        assert!(
            clients.len() >= 2,
            "a leader and a standby need two connections"
        );
        let mut candidates = Candidates {
            clients,
            config,
            leader: None,
            spare: None,
            started: 0,
        };
        let first = candidates.start_candidate(0).await;
        tokio::time::timeout(PATIENCE, first.leading())
            .await
            .expect("the first candidate did not lead in time")
            .expect("the first candidate's election stopped");
        candidates.leader = Some((first, 0));
        candidates
    }

    /// The configuration every candidate runs with (identity aside).
    pub fn config(&self) -> &ElectionConfig {
        &self.config
    }

    async fn start_candidate(&mut self, client: usize) -> Election {
        self.started += 1;
        let config = ElectionConfig {
            identity: format!("bench-{}", self.started),
            ..self.config.clone()
        };
        // A busy server (the scale bench's 1,000 elections) can answer the start's bucket lookup
        // after the election's request timeout; a service would retry a retryable error too.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match Election::builder(config.clone())
                .start(self.clients[client].clone())
                .await
            {
                Ok(election) => return election,
                Err(err) if err.kind().is_retryable() && attempts < START_ATTEMPTS => {
                    eprintln!("starting a candidate failed ({err}); retrying");
                }
                Err(err) => panic!("starting a candidate: {err}"),
            }
        }
    }

    /// Starts a standby on another connection than the leader's and waits until it follows the
    /// leader's current write.
    async fn start_standby(&mut self) -> (Election, usize) {
        let leader_client = self.leader.as_ref().map_or(0, |(_, c)| *c);
        let client = (leader_client + 1) % self.clients.len();
        let standby = self.start_candidate(client).await;
        wait_following(&standby).await;
        (standby, client)
    }

    /// One graceful handover: from the leader's `resign()` call to the standby's `leading()`
    /// resolving (its acquisition acknowledged).
    ///
    /// # Panics
    /// When the election fails or the standby does not take over in time.
    pub async fn handover(&mut self) -> Duration {
        let (standby, client) = match self.spare.take() {
            Some((spare, client, hold_off_ends)) => {
                tokio::time::sleep_until(hold_off_ends.into()).await;
                wait_following(&spare).await;
                (spare, client)
            }
            None => self.start_standby().await,
        };
        let (leader, leader_client) = self.leader.take().expect("a leader");
        let successor = async {
            let lease = standby.leading().await;
            (Instant::now(), lease)
        };
        let t0 = Instant::now();
        let (resigned, (t1, lease)) =
            tokio::time::timeout(PATIENCE, async { tokio::join!(leader.resign(), successor) })
                .await
                .expect("the standby did not take over within the patience");
        resigned.unwrap_or_else(|err| panic!("resign failed: {err}"));
        lease.unwrap_or_else(|err| panic!("the standby's election stopped: {err}"));
        // The library holds a resigned candidate off for one lease from the resign's return;
        // 10 ms more absorbs scheduling.
        let hold_off_ends =
            Instant::now() + self.config.timings.lease_duration + Duration::from_millis(10);
        self.spare = Some((leader, leader_client, hold_off_ends));
        self.leader = Some((standby, client));
        t1 - t0
    }

    /// One crash: the leader's task is aborted right after a renewal was acknowledged (so no
    /// renewal is in flight and its last write is known), and the standby takes over once it has
    /// seen that write unchanged for a lease duration.
    ///
    /// # Errors
    /// When the standby led before the dead leader's lease ran out: a safety violation, never
    /// to be reported as a figure; the message says what each side saw.
    ///
    /// # Panics
    /// When the election fails or the standby does not take over in time.
    pub async fn crash(&mut self) -> Result<CrashOutcome, String> {
        let (standby, client) = self.start_standby().await;
        let (leader, _) = self.leader.take().expect("a leader");
        let lease = leader
            .state()
            .borrow()
            .lease()
            .cloned()
            .expect("the leader leads");
        let renewed_revision = lease.revision();
        tokio::time::timeout(PATIENCE, async {
            while lease.revision() == renewed_revision {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("the leader did not renew in time");
        // The revision moves while the election task is still running; let it go idle first.
        // Aborting a running task lets that poll finish, and the handle `abort` consumes closes
        // the command channel, which the task reads as a shutdown and answers by releasing the
        // key (see `CrashSample` and the abort race counted in `crash`).
        tokio::time::sleep(Duration::from_millis(5)).await;
        let timings = self.config.timings;
        // The lease's deadline is the last acknowledged write's send time + step_down_after.
        let last_sent = lease.deadline().into_std() - timings.step_down_after();
        let at_abort = format!(
            "leader token {} at revision {}, term ended: {:?}, standby state: {:?}",
            lease.token(),
            lease.revision(),
            lease.end_cause(),
            *standby.state().borrow()
        );
        leader.abort();
        let successor = tokio::time::timeout(PATIENCE, standby.leading())
            .await
            .expect("the standby did not take over in time")
            .unwrap_or_else(|err| panic!("the standby's election stopped: {err}"));
        let t1 = Instant::now();
        let silence_to_leader = t1 - last_sent;
        self.leader = Some((standby, client));
        // A crash takeover writes at the dead leader's last revision. A token further on means
        // another write came between: the aborted task released the key (a resign, not a crash).
        if successor.token().revision > lease.revision() + 1 {
            return Ok(CrashOutcome::Released);
        }
        match silence_to_leader.checked_sub(timings.lease_duration) {
            Some(overhead) => Ok(CrashOutcome::TakenOver(CrashSample {
                silence_to_leader,
                overhead,
            })),
            None => Err(format!(
                "the standby led {silence_to_leader:?} after the leader's last acknowledged \
                 renewal was sent, before its lease of {:?} ran out. At the abort: {at_abort}. \
                 The standby's term: token {}, previous leader {:?}, leaderless {:?}",
                timings.lease_duration,
                successor.token(),
                successor.previous_leader().map(|h| &h.identity),
                successor.leaderless(),
            )),
        }
    }

    /// Shuts the leader and the spare down, releasing the key.
    pub async fn shutdown(mut self) {
        if let Some((leader, _)) = self.leader.take() {
            let _ = leader.shutdown().await;
        }
        if let Some((spare, _, _)) = self.spare.take() {
            let _ = spare.shutdown().await;
        }
    }
}

/// Waits until `candidate` follows a leader.
async fn wait_following(candidate: &Election) {
    let mut state = candidate.state();
    tokio::time::timeout(
        PATIENCE,
        state.wait_for(|s| matches!(s, LeadershipState::Following { .. })),
    )
    .await
    .expect("the standby did not see the leader in time")
    .expect("the standby's election stopped");
}
