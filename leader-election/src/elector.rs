//! The election task: follows the key, campaigns for it, and keeps it while leading.
//!
//! One task per election owns all protocol state; the [`Election`](crate::Election) handle talks
//! to it through a command channel and reads its state from a `watch` channel.

use std::future::pending;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info, warn};

use crate::config::ElectionConfig;
use crate::error::{Error, ErrorKind};
use crate::fencing::FencingToken;
use crate::metrics::ElectionMetrics;
use crate::record::Holder;
use crate::state::{LeadershipState, Lease, LeaseParts, LossCause};
use crate::store::{
    KeyState, KeyValue, KeyWatch, LeaseStore, StoreError, StoreErrorKind, Vacancy, WriteRequest,
};

pub(crate) type Reply = oneshot::Sender<Result<(), Error>>;

pub(crate) enum Command {
    /// Give up leadership (after draining) and keep following.
    Resign(Reply),
    /// Give up leadership (after draining) and stop.
    Shutdown(Reply),
}

/// The key as this process last saw it.
#[derive(Clone)]
struct Observed {
    key: KeyState,
    holder: Option<Holder>,
    /// When this revision was first seen, on the local monotonic clock.
    seen_at: Instant,
}

/// The acknowledged write that won a term.
struct Won {
    revision: u64,
    /// Send time of the write that landed, or of the earliest attempt whose outcome was unknown:
    /// the anchor of the step-down point.
    sent_at: Instant,
    previous: Option<Observed>,
}

enum LeadEnd {
    Lost(LossCause),
    Drained,
    DrainTimedOut,
}

pub(crate) struct Elector {
    store: Arc<dyn LeaseStore>,
    config: ElectionConfig,
    me: Holder,
    record: bytes::Bytes,
    campaign: bool,
    state: watch::Sender<LeadershipState>,
    commands: mpsc::Receiver<Command>,
    metrics: Arc<dyn ElectionMetrics>,
    watch: Option<KeyWatch>,
    watch_opening: Option<BoxFuture<'static, Result<KeyWatch, StoreError>>>,
    watch_retry_at: Instant,
    view: Option<Observed>,
    /// No acquisition attempt before this instant: paces retries after errors.
    next_attempt_at: Instant,
    /// No re-read before this instant.
    next_read_at: Instant,
    /// After a resign, leave the vacancy to the others for one lease duration.
    hold_off_until: Option<Instant>,
    /// When the last warning about a failing call was logged: during an outage, failures are
    /// logged at most once a second, the rest at debug level.
    last_warning: Option<Instant>,
    /// The last term, while work registered on it still runs: no new term starts before it
    /// has stopped, so two terms' work never overlap in this process.
    last_term: Option<Lease>,
}

pub(crate) struct ElectorParts {
    pub(crate) store: Arc<dyn LeaseStore>,
    pub(crate) config: ElectionConfig,
    pub(crate) me: Holder,
    pub(crate) campaign: bool,
    pub(crate) state: watch::Sender<LeadershipState>,
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) metrics: Arc<dyn ElectionMetrics>,
}

impl Elector {
    pub(crate) fn new(parts: ElectorParts) -> Self {
        let now = Instant::now();
        Elector {
            record: parts.me.encode(),
            store: parts.store,
            config: parts.config,
            me: parts.me,
            campaign: parts.campaign,
            state: parts.state,
            commands: parts.commands,
            metrics: parts.metrics,
            watch: None,
            watch_opening: None,
            watch_retry_at: now,
            view: None,
            next_attempt_at: now,
            next_read_at: now,
            hold_off_until: None,
            last_term: None,
            last_warning: None,
        }
    }

    /// Runs until shut down: follows, campaigns, leads, and campaigns again after any loss or error.
    pub(crate) async fn run(mut self) {
        self.open_watch();
        loop {
            let Some(expected) = self.follow().await else {
                return;
            };
            if let Some(won) = self.acquire(expected).await
                && self.lead(won).await.is_break()
            {
                return;
            }
        }
    }

    fn election(&self) -> &str {
        &self.config.election
    }

    /// Logs a failed store call: a warning at most once a second, debug otherwise.
    fn failure(&mut self, what: &str, err: &StoreError) {
        let now = Instant::now();
        if self
            .last_warning
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            self.last_warning = Some(now);
            warn!(election = self.election(), error = %err, "{what}");
        } else {
            debug!(election = self.election(), error = %err, "{what}");
        }
    }

    fn lease_of(&self, view: &Observed) -> Duration {
        // Wait for the longer of our lease and the holder's: a holder configured with a longer
        // lease acts until its own step-down point.
        let theirs = view.holder.as_ref().map(Holder::lease_duration);
        theirs.map_or(self.config.timings.lease_duration, |d| {
            d.max(self.config.timings.lease_duration)
        })
    }

    // ---- following ------------------------------------------------------------------------

    /// Follows the key until an acquisition attempt is due; returns the revision to write at, or
    /// `None` on shutdown.
    async fn follow(&mut self) -> Option<u64> {
        loop {
            let now = Instant::now();
            if let Some(expected) = self.attempt_due(now) {
                return Some(expected);
            }
            self.publish_follower_state(now);
            let wake_at = self.next_check(now);
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(Command::Resign(reply)) => {
                        let _ = reply.send(Ok(()));
                    }
                    Some(Command::Shutdown(reply)) => {
                        let _ = reply.send(Ok(()));
                        return None;
                    }
                    None => return None,
                },
                event = next_event(&mut self.watch) => self.on_watch_event(event),
                opened = poll_opt(&mut self.watch_opening) => self.on_watch_opened(opened),
                _ = sleep_until(self.watch_retry_at), if self.watch.is_none() && self.watch_opening.is_none() => {
                    self.open_watch();
                }
                _ = sleep_until(wake_at) => {
                    let now = Instant::now();
                    if self.attempt_due(now).is_none() && now >= self.next_read_at {
                        self.refresh().await;
                    }
                }
            }
        }
    }

    /// The revision to write at, when an acquisition attempt is due: the key is vacant, or it
    /// has shown the same revision for a whole lease on our clock, so its holder has stopped
    /// acting (the CAS at that revision fails if it renewed meanwhile).
    fn attempt_due(&self, now: Instant) -> Option<u64> {
        if !self.campaign
            || now < self.next_attempt_at
            || self.hold_off_until.is_some_and(|until| now < until)
            || self.last_term_still_working()
        {
            return None;
        }
        let view = self.view.as_ref()?;
        (view.key.is_vacant() || now >= view.seen_at + self.lease_of(view))
            .then_some(view.key.revision)
    }

    fn last_term_still_working(&self) -> bool {
        self.last_term.as_ref().is_some_and(Lease::has_work)
    }

    /// When the follower must next act on its own, without an event: an acquisition attempt,
    /// or a re-read when nothing is known or the view went stale.
    fn next_check(&self, now: Instant) -> Instant {
        let Some(view) = &self.view else {
            return self.next_read_at;
        };
        let stale_at = if view.key.is_vacant() {
            now
        } else {
            view.seen_at + self.lease_of(view)
        };
        if self.campaign {
            let mut at = stale_at.max(self.next_attempt_at);
            if self.last_term_still_working() {
                at = at.max(now + self.config.timings.renew_interval);
            }
            self.hold_off_until.map_or(at, |until| at.max(until))
        } else {
            let at = if view.key.is_vacant() {
                view.seen_at + self.config.timings.lease_duration
            } else {
                stale_at
            };
            at.max(self.next_read_at)
        }
    }

    fn publish_follower_state(&self, now: Instant) {
        let next = match &self.view {
            // Our own last write, after our term ended, is nobody's leadership.
            Some(view)
                if view
                    .holder
                    .as_ref()
                    .is_some_and(|h| h.instance == self.me.instance) =>
            {
                None
            }
            Some(view) if !view.key.is_vacant() && now < view.seen_at + self.lease_of(view) => {
                Some((view.holder.clone(), view.key.revision))
            }
            _ => None,
        };
        self.state.send_if_modified(|state| {
            let (unchanged, same_leader) = match (&*state, &next) {
                (LeadershipState::NoLeader, None) => (true, true),
                (LeadershipState::Following { leader, revision }, Some((h, r))) => {
                    (leader == h && revision == r, leader == h)
                }
                _ => (false, false),
            };
            if !same_leader {
                match &next {
                    Some((leader, _)) => debug!(
                        election = self.election(),
                        leader = leader.as_ref().map_or("<unknown>", |h| h.identity.as_str()),
                        "following"
                    ),
                    None => debug!(election = self.election(), "no leader"),
                }
            }
            if !unchanged {
                *state = match next {
                    Some((leader, revision)) => LeadershipState::Following { leader, revision },
                    None => LeadershipState::NoLeader,
                };
            }
            !unchanged
        });
    }

    /// Records a state of the key. A watch only moves the view forward; a read (which reflects
    /// every acknowledged write) replaces it, which also handles a re-created bucket whose
    /// revisions restarted.
    fn observe(&mut self, key: KeyState, authoritative: bool) {
        if let Some(view) = &self.view
            && (view.key.revision == key.revision
                || (!authoritative && key.revision < view.key.revision))
        {
            return;
        }
        let holder = match &key.value {
            KeyValue::Held(value) => {
                let holder = Holder::decode(value);
                if holder.is_none() {
                    warn!(
                        election = self.election(),
                        revision = key.revision,
                        "the election key holds a value that is not a lease record; treating it as held by an unknown leader"
                    );
                }
                holder
            }
            // Remember who left: the next leader reports its predecessor.
            KeyValue::Vacant(_) => self.view.as_ref().and_then(|v| v.holder.clone()),
        };
        debug!(
            election = self.election(),
            revision = key.revision,
            vacant = key.is_vacant(),
            "observed"
        );
        self.view = Some(Observed {
            key,
            holder,
            seen_at: Instant::now(),
        });
    }

    /// Re-reads the key from the stream leader.
    async fn refresh(&mut self) {
        self.next_read_at = Instant::now() + self.config.timings.renew_interval;
        match self.store.read(self.config.timings.request_timeout()).await {
            Ok(key) => {
                let now = Instant::now();
                let silent = self.view.as_ref().is_some_and(|v| {
                    !v.key.is_vacant()
                        && now >= v.seen_at + self.lease_of(v)
                        && key.revision > v.key.revision
                });
                if silent && self.watch.is_some() {
                    // Nothing arrived on the watch for a lease duration although the key moved
                    // on: the watch is silent. Replace it. (A lost race at a vacancy is not
                    // this: the winner's write simply has not been delivered yet.)
                    warn!(
                        election = self.election(),
                        "the watch missed changes; re-creating it"
                    );
                    self.watch = None;
                    self.open_watch();
                }
                self.observe(key, true);
            }
            Err(err) if err.kind() == StoreErrorKind::BucketMissing => {
                self.failure("the bucket is missing; no leader until it is back", &err);
                self.view = None;
            }
            Err(err) => {
                self.failure("reading the election key failed", &err);
            }
        }
    }

    // ---- the watch ------------------------------------------------------------------------

    fn open_watch(&mut self) {
        let store = self.store.clone();
        self.watch_opening = Some(Box::pin(async move { store.watch().await }));
    }

    fn on_watch_opened(&mut self, opened: Result<KeyWatch, StoreError>) {
        self.watch_opening = None;
        match opened {
            Ok(watch) => self.watch = Some(watch),
            Err(err) => {
                self.failure("watching the election key failed; retrying", &err);
                self.watch_retry_at = Instant::now() + self.config.timings.renew_interval;
            }
        }
    }

    fn on_watch_event(&mut self, event: Option<Result<KeyState, StoreError>>) {
        match event {
            Some(Ok(key)) => self.observe(key, false),
            Some(Err(err)) => {
                self.failure("the watch failed; re-creating it", &err);
                self.watch = None;
                self.watch_retry_at = Instant::now() + self.config.timings.renew_interval;
            }
            None => {
                warn!(
                    election = self.election(),
                    "the watch ended; re-creating it"
                );
                self.watch = None;
                self.watch_retry_at = Instant::now() + self.config.timings.renew_interval;
            }
        }
    }

    // ---- acquiring ------------------------------------------------------------------------

    /// One acquisition: a conditional write at `expected`. Authority comes only from its
    /// acknowledgement, never from a read.
    async fn acquire(&mut self, expected: u64) -> Option<Won> {
        let timings = self.config.timings;
        let previous = self.view.clone();
        let first_sent = Instant::now();
        let mut outcome_unknown = false;
        loop {
            let sent_at = Instant::now();
            let request = WriteRequest {
                expected_revision: expected,
                value: self.record.clone(),
                ttl: timings.server_ttl,
                timeout: self.config.timings.request_timeout(),
            };
            let err = match self.store.write(request).await {
                Ok(revision) => {
                    return Some(Won {
                        revision,
                        sent_at,
                        previous,
                    });
                }
                Err(err) => err,
            };
            match err.kind() {
                StoreErrorKind::Conflict => {
                    if outcome_unknown && let Some(revision) = self.own_write_landed(expected).await
                    {
                        // An earlier attempt landed although its acknowledgement was lost; its
                        // send time anchors the lease.
                        return Some(Won {
                            revision,
                            sent_at: first_sent,
                            previous,
                        });
                    }
                    debug!(
                        election = self.election(),
                        expected, "lost the race for the key"
                    );
                    self.refresh().await;
                    return None;
                }
                StoreErrorKind::BucketMissing => {
                    self.failure("the bucket is missing; no leader until it is back", &err);
                    self.next_attempt_at = Instant::now() + timings.renew_interval;
                    self.view = None;
                    return None;
                }
                StoreErrorKind::TimedOut | StoreErrorKind::Unavailable
                    if first_sent.elapsed() < timings.step_down_after() =>
                {
                    outcome_unknown = true;
                    self.failure("acquisition outcome unknown; trying again", &err);
                    tokio::time::sleep(timings.renew_interval / 4).await;
                }
                _ => {
                    self.failure("acquisition failed", &err);
                    self.next_attempt_at = Instant::now() + timings.renew_interval;
                    self.refresh().await;
                    return None;
                }
            }
        }
    }

    /// After a write whose outcome was unknown was followed by a conflict: whether the key now
    /// holds our record at a revision past `expected`, that is, whether the unknown write landed.
    ///
    /// nats-server checks the expected revision before the message-id deduplication, so a retry
    /// cannot learn the first attempt's outcome; a read at the stream leader can. Only this
    /// process writes records with its instance, so such a record is that write.
    fn own_write_landed(
        &self,
        expected: u64,
    ) -> impl Future<Output = Option<u64>> + Send + 'static {
        let store = self.store.clone();
        let instance = self.me.instance.clone();
        let timeout = self.config.timings.request_timeout();
        async move {
            let key = store.read(timeout).await.ok()?;
            match &key.value {
                KeyValue::Held(value)
                    if key.revision > expected
                        && Holder::decode(value).is_some_and(|h| h.instance == instance) =>
                {
                    Some(key.revision)
                }
                _ => None,
            }
        }
    }

    // ---- leading --------------------------------------------------------------------------

    /// Leads one term. Returns `Break` when the election is shut down.
    async fn lead(&mut self, won: Won) -> std::ops::ControlFlow<()> {
        use std::ops::ControlFlow;
        let timings = self.config.timings;
        let mut revision = won.revision;
        let mut deadline = won.sent_at + timings.step_down_after();
        self.own_view(revision, won.sent_at);
        if Instant::now() >= deadline {
            warn!(
                election = self.election(),
                "the acquisition was acknowledged too late to act on"
            );
            return ControlFlow::Continue(());
        }
        let leaderless = won.previous.as_ref().and_then(|p| self.leaderless(p));
        let lease = Lease::new(LeaseParts {
            election: self.config.election.clone(),
            token: FencingToken {
                epoch: self.store.epoch(),
                revision,
            },
            deadline,
            previous_leader: won.previous.as_ref().and_then(|p| p.holder.clone()),
            leaderless,
            store: self.store.clone(),
        });
        info!(
            election = self.election(),
            identity = %self.me.identity,
            token = revision,
            previous = won.previous.as_ref().and_then(|p| p.holder.as_ref()).map(|h| h.identity.as_str()),
            "acquired leadership"
        );
        self.metrics
            .acquired(self.election(), lease.token(), leaderless);
        self.hold_off_until = None;
        self.state
            .send_replace(LeadershipState::Leading(lease.clone()));

        let mut next_renew = won.sent_at + timings.renew_interval;
        let mut renewal: Option<BoxFuture<'static, (Instant, Result<u64, StoreError>)>> = None;
        // Send time of the earliest renewal since the last acknowledged one whose outcome is
        // unknown (timed out, or the connection failed).
        let mut unknown_since: Option<Instant> = None;
        let mut release: Option<(Command, Instant)> = None;
        let end = loop {
            tokio::select! {
                biased;
                _ = sleep_until(deadline) => break LeadEnd::Lost(LossCause::Deadline),
                // Before renewal results: when the key was deleted or taken, the watch says which.
                event = next_event(&mut self.watch) => match event {
                    Some(Ok(key)) => {
                        if let Some(cause) = self.foreign(&key, revision) {
                            warn!(election = self.election(), revision = key.revision, cause = %cause, "the key changed under the leader");
                            self.observe(key, true);
                            break LeadEnd::Lost(cause);
                        }
                    }
                    other => self.on_watch_event(other),
                },
                (sent_at, result) = poll_opt(&mut renewal) => {
                    renewal = None;
                    self.metrics.renewal(self.election(), sent_at.elapsed(), result.is_ok());
                    let landed = match result {
                        Ok(new_revision) => Some((new_revision, sent_at)),
                        Err(err) => match err.kind() {
                            StoreErrorKind::Conflict => {
                                // A conflict after a renewal with unknown outcome may be that
                                // renewal's own doing: look before giving up the term.
                                let earlier = match unknown_since.take() {
                                    Some(first_sent) => tokio::time::timeout_at(
                                        deadline,
                                        self.own_write_landed(revision),
                                    )
                                    .await
                                    .ok()
                                    .flatten()
                                    .map(|landed| (landed, first_sent)),
                                    None => None,
                                };
                                if earlier.is_none() {
                                    self.failure("renewal rejected: the lease moved on", &err);
                                    // Who holds it now is unknown: read it before anything else.
                                    self.view = None;
                                    break LeadEnd::Lost(LossCause::Superseded);
                                }
                                earlier
                            }
                            StoreErrorKind::BucketMissing => break LeadEnd::Lost(LossCause::Deleted),
                            _ => {
                                // It may still land: remember the earliest such send time.
                                unknown_since.get_or_insert(sent_at);
                                self.failure("renewal failed; retrying until the step-down point", &err);
                                next_renew = Instant::now() + timings.renew_interval / 4;
                                None
                            }
                        },
                    };
                    if let Some((new_revision, anchor)) = landed {
                        unknown_since = None;
                        revision = new_revision;
                        deadline = anchor + timings.step_down_after();
                        lease.renewed(revision, deadline);
                        self.own_view(revision, anchor);
                        next_renew = anchor + timings.renew_interval;
                    }
                }
                _ = sleep_until(next_renew), if renewal.is_none() => {
                    renewal = Some(self.renew(revision, deadline));
                }
                opened = poll_opt(&mut self.watch_opening) => self.on_watch_opened(opened),
                _ = sleep_until(self.watch_retry_at), if self.watch.is_none() && self.watch_opening.is_none() => {
                    self.open_watch();
                }
                command = self.commands.recv(), if release.is_none() => {
                    // Stop the work first; keep renewing while it drains.
                    let command = command.unwrap_or_else(|| Command::Shutdown(oneshot::channel().0));
                    lease.end(match command {
                        Command::Resign(_) => LossCause::Resigned,
                        Command::Shutdown(_) => LossCause::Shutdown,
                    });
                    lease.close_work();
                    release = Some((command, Instant::now() + timings.drain_timeout));
                }
                _ = lease.drained(), if release.is_some() => break LeadEnd::Drained,
                _ = sleep_until(release.as_ref().map_or(deadline, |r| r.1)), if release.is_some() => {
                    break LeadEnd::DrainTimedOut;
                }
            }
        };
        // Whatever ended the term, the work is told to stop now; a late renewal acknowledgement
        // is dropped with its future and cannot bring the term back.
        let cause = match end {
            LeadEnd::Lost(cause) => cause,
            LeadEnd::Drained => {
                self.release(renewal.take(), &mut revision, &mut deadline)
                    .await;
                release_cause(release.as_ref())
            }
            LeadEnd::DrainTimedOut => {
                warn!(
                    election = self.election(),
                    drain_timeout = ?timings.drain_timeout,
                    "leader work did not drain in time; leaving the lease to expire instead of releasing it"
                );
                release_cause(release.as_ref())
            }
        };
        lease.end(cause);
        self.last_term = lease.has_work().then(|| lease.clone());
        info!(election = self.election(), identity = %self.me.identity, token = lease.token().revision, cause = %cause, "lost leadership");
        self.metrics.lost(self.election(), cause);
        self.state.send_replace(LeadershipState::NoLeader);
        match release {
            Some((command, _)) => {
                let result = match end {
                    LeadEnd::DrainTimedOut => Err(Error::new(
                        ErrorKind::DrainTimedOut,
                        format!(
                            "leader work did not finish within {:?}; the lease was left to expire",
                            timings.drain_timeout
                        ),
                    )),
                    _ => Ok(()),
                };
                match command {
                    Command::Resign(reply) => {
                        let _ = reply.send(result);
                        self.hold_off_until = Some(Instant::now() + timings.lease_duration);
                        ControlFlow::Continue(())
                    }
                    Command::Shutdown(reply) => {
                        let _ = reply.send(result);
                        ControlFlow::Break(())
                    }
                }
            }
            None => ControlFlow::Continue(()),
        }
    }

    /// Our own write as the view: if we lose the lease without hearing of a successor, we
    /// follow our last write like any other holder's.
    fn own_view(&mut self, revision: u64, sent_at: Instant) {
        self.view = Some(Observed {
            key: KeyState {
                revision,
                value: KeyValue::Held(self.record.clone()),
                written_at: None,
            },
            holder: Some(self.me.clone()),
            seen_at: sent_at,
        });
    }

    fn renew(
        &self,
        revision: u64,
        deadline: Instant,
    ) -> BoxFuture<'static, (Instant, Result<u64, StoreError>)> {
        let store = self.store.clone();
        let sent_at = Instant::now();
        let request = WriteRequest {
            expected_revision: revision,
            value: self.record.clone(),
            ttl: self.config.timings.server_ttl,
            // Never wait past the step-down point: no renewal may count after it. Wait less if
            // that leaves time to retry a renewal whose acknowledgement was lost.
            timeout: deadline
                .saturating_duration_since(sent_at)
                .min(self.config.timings.request_timeout()),
        };
        Box::pin(async move { (sent_at, store.write(request).await) })
    }

    /// Releases the key after the work drained: waits for a renewal in flight (its outcome
    /// decides the revision), then deletes at that revision, all before the step-down point.
    async fn release(
        &mut self,
        renewal: Option<BoxFuture<'static, (Instant, Result<u64, StoreError>)>>,
        revision: &mut u64,
        deadline: &mut Instant,
    ) {
        let step_down_after = self.config.timings.step_down_after();
        if let Some(renewal) = renewal {
            tokio::select! {
                (sent_at, result) = renewal => match result {
                    Ok(new_revision) => {
                        *revision = new_revision;
                        *deadline = sent_at + step_down_after;
                    }
                    Err(err) => {
                        debug!(election = self.election(), error = %err, "last renewal failed; not deleting");
                        return;
                    }
                },
                _ = sleep_until(*deadline) => return,
            }
        }
        let timeout = deadline.saturating_duration_since(Instant::now());
        if timeout.is_zero() {
            return;
        }
        match self.store.delete(*revision, timeout).await {
            Ok(marker) => {
                self.observe(
                    KeyState {
                        revision: marker,
                        value: KeyValue::Vacant(Vacancy::Deleted),
                        written_at: Some(SystemTime::now()),
                    },
                    true,
                );
            }
            Err(err) => {
                self.failure("releasing the key failed; it will expire", &err);
            }
        }
    }

    /// Whether a watched state of the key ends the term: any revision past ours that we did not
    /// write (our own renewal can show up on the watch before its acknowledgement).
    fn foreign(&self, key: &KeyState, revision: u64) -> Option<LossCause> {
        if key.revision <= revision {
            return None;
        }
        match &key.value {
            KeyValue::Held(value)
                if Holder::decode(value).is_some_and(|h| h.instance == self.me.instance) =>
            {
                None
            }
            KeyValue::Held(_) => Some(LossCause::Superseded),
            KeyValue::Vacant(_) => Some(LossCause::Deleted),
        }
    }

    /// The leaderless interval before a term, from server timestamps: from the vacancy marker,
    /// or from the silent holder's last write plus its lease, to now.
    fn leaderless(&self, previous: &Observed) -> Option<Duration> {
        let written_at = previous.key.written_at?;
        let vacant_since = if previous.key.is_vacant() {
            written_at
        } else {
            written_at + self.lease_of(previous)
        };
        Some(
            SystemTime::now()
                .duration_since(vacant_since)
                .unwrap_or_default(),
        )
    }
}

fn release_cause(release: Option<&(Command, Instant)>) -> LossCause {
    match release {
        Some((Command::Resign(_), _)) => LossCause::Resigned,
        _ => LossCause::Shutdown,
    }
}

async fn next_event(watch: &mut Option<KeyWatch>) -> Option<Result<KeyState, StoreError>> {
    match watch {
        Some(watch) => watch.next().await,
        None => pending().await,
    }
}

async fn poll_opt<T>(future: &mut Option<BoxFuture<'static, T>>) -> T {
    match future {
        Some(future) => future.await,
        None => pending().await,
    }
}
