//! The rounds: wait for a steady state, wait a random part of a renew interval, fault the
//! leader, wait for the successor, let the faulted replica come back, measure, repeat. The same
//! loop drives local processes and a Kubernetes deployment through [`Target`].

use std::time::Duration;

use crate::checks::{self, InjectedFault, Violation};
use crate::fault::FaultKind;
use crate::journal::{Journal, Term};
use crate::observe::{QuoteReader, StoredQuote};
use crate::progress::Progress;
use crate::rng::Rng;
use crate::round::{self, Round, RoundInput};
use crate::wallclock::Micros;

/// What went wrong with the drill itself (not with the system under test).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DrillError {
    /// The environment cannot run the drill (exit code 2): missing binary, no cluster, bad flag.
    #[error("{0}")]
    Setup(String),
    /// The system under test did not reach or regain a steady state (exit code 1).
    #[error("{0}")]
    Stuck(String),
}

/// A fault as the target injected it.
#[derive(Debug, Clone)]
pub(crate) struct Injection {
    /// Right at injection (before the signal, or when the kubectl command was issued).
    pub(crate) at: Micros,
    /// When the injecting call returned.
    pub(crate) done: Micros,
    /// SIGCONT after a pause.
    pub(crate) resumed: Option<Micros>,
}

/// Replicas under test: local processes or pods.
pub(crate) trait Target {
    /// The log events of all replicas.
    fn journal(&self) -> &Journal;
    /// The processes running now (a frozen one counts as running).
    fn alive(&mut self) -> Vec<String>;
    /// Whether all replicas are ready (`/readyz`, or the pods' Ready condition).
    async fn all_ready(&mut self) -> Result<bool, DrillError>;
    /// Injects `fault` into `leader`.
    async fn inject(&mut self, fault: FaultKind, leader: &str) -> Result<Injection, DrillError>;
    /// Brings the replica back after the fault, as Kubernetes would; returns how the faulted
    /// process ended, when it did.
    async fn recover(
        &mut self,
        fault: FaultKind,
        leader: &str,
    ) -> Result<Option<(String, bool)>, DrillError>;
    /// Housekeeping while waiting (kubectl: follow new pods).
    async fn tick(&mut self) -> Result<(), DrillError>;
}

/// The drill's settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) rounds: usize,
    pub(crate) faults: Vec<FaultKind>,
    pub(crate) lease: Duration,
    pub(crate) renew: Duration,
    pub(crate) quote_interval: Duration,
    pub(crate) leader_timeout: Duration,
    pub(crate) steady_timeout: Duration,
    /// Whether every symbol must start at #1 (the drill saw the stream created).
    pub(crate) stream_from_first: bool,
}

/// Everything a drill observed.
pub(crate) struct Outcome {
    pub(crate) rounds: Vec<Round>,
    pub(crate) terms: Vec<Term>,
    pub(crate) faults: Vec<InjectedFault>,
    /// The whole stream as re-read at the end (or as gathered, when the re-read failed).
    pub(crate) quotes: Option<Vec<StoredQuote>>,
    /// Violations outside any round (before the first fault).
    pub(crate) violations: Vec<Violation>,
    /// Why the drill stopped early.
    pub(crate) aborted: Option<String>,
    pub(crate) started: Micros,
    pub(crate) ended: Micros,
}

/// How often the drill looks at the logs while waiting for a successor.
const POLL: Duration = Duration::from_millis(5);
/// How often it reads the quote stream: often enough to see quotes flow, rarely enough not to
/// load the server the replicas are measured on.
const STREAM_POLL: Duration = Duration::from_millis(25);

/// Runs the drill.
pub(crate) struct Drill<'a, T: Target> {
    target: &'a mut T,
    reader: Option<QuoteReader>,
    settings: Settings,
    rng: Rng,
    progress: Progress,
    quotes: Vec<StoredQuote>,
    stream_start: u64,
    last_quotes_read: Micros,
    last_pull: Option<std::time::Instant>,
    faults: Vec<InjectedFault>,
}

impl<'a, T: Target> Drill<'a, T> {
    pub(crate) fn new(
        target: &'a mut T,
        reader: Option<QuoteReader>,
        settings: Settings,
        rng: Rng,
        progress: Progress,
    ) -> Self {
        let stream_start = reader.as_ref().map_or(1, QuoteReader::position);
        Drill {
            target,
            reader,
            settings,
            rng,
            progress,
            quotes: Vec::new(),
            stream_start,
            last_quotes_read: Micros::now(),
            last_pull: None,
            faults: Vec::new(),
        }
    }

    /// Runs every round, then the checks on everything observed.
    pub(crate) async fn run(mut self) -> Outcome {
        let started = Micros::now();
        let mut rounds = Vec::new();
        let mut aborted = None;
        let schedule: Vec<FaultKind> = self
            .settings
            .faults
            .iter()
            .flat_map(|f| std::iter::repeat_n(*f, self.settings.rounds))
            .collect();
        self.progress.start(schedule.len());
        for (index, fault) in schedule.iter().enumerate() {
            match self.round(index + 1, *fault).await {
                Ok(round) => {
                    self.progress.round_done(&round);
                    rounds.push(round);
                }
                Err(err) => {
                    self.progress.message(&format!("drill stopped: {err}"));
                    aborted = Some(err.to_string());
                    break;
                }
            }
        }
        self.progress.finish();
        self.finish(rounds, aborted, started).await
    }

    async fn round(&mut self, index: usize, kind: FaultKind) -> Result<Round, DrillError> {
        let (steady, delay_ms) = loop {
            let steady = self.wait_steady().await?;
            // Wait a random part of a renew interval, so faults fall anywhere between renewals.
            let delay = self.rng.duration_below(self.settings.renew);
            let delay_ms = delay.as_secs_f64() * 1e3;
            tokio::time::sleep(delay).await;
            // The leader may have changed while waiting (it should not): start over.
            if self.current_leader().as_ref() == Some(&steady) {
                break (steady, delay_ms);
            }
        };
        let (process, token) = steady;
        self.progress
            .status(&format!("round {index}: {kind} {process} (token {token})"));
        let injection = self.target.inject(kind, &process).await?;
        let fault = InjectedFault {
            kind,
            process: process.clone(),
            at: injection.at,
            resumed: injection.resumed,
        };
        self.faults.push(fault.clone());
        let first_entry = self.target.journal().entries().len();

        // The successor: the first term with a higher token.
        let deadline = fault
            .at
            .plus_millis(self.settings.leader_timeout.as_secs_f64() * 1e3);
        let mut no_leader = false;
        let successor = loop {
            self.target.tick().await?;
            self.pull_quotes().await;
            if let Some(term) = self
                .target
                .journal()
                .terms()
                .into_iter()
                .find(|t| t.token > token)
            {
                break Some(term);
            }
            // After a NATS restart the leader may rightly keep its lease: quotes of its term
            // stored after the restart show it.
            if !kind.forces_new_leader()
                && self
                    .quotes
                    .iter()
                    .any(|q| q.token == Some(token) && q.at > injection.done)
            {
                break None;
            }
            if Micros::now() > deadline {
                no_leader = true;
                break None;
            }
            tokio::time::sleep(POLL).await;
        };
        let exit = self.target.recover(kind, &process).await?;
        self.wait_steady().await?;
        self.pull_quotes().await;

        let entries = self.target.journal().entries();
        let terms = self.target.journal().terms();
        let end = Micros::now();
        let mut round = round::measure(RoundInput {
            index,
            fault: &fault,
            fault_done_at: injection.done,
            delay_ms,
            leader_token: token,
            successor: successor.as_ref(),
            terms: &terms,
            entries: &entries[first_entry.min(entries.len())..],
            quotes: self.reader.is_some().then_some(self.quotes.as_slice()),
            quote_interval_ms: self.settings.quote_interval.as_secs_f64() * 1e3,
            end,
            old_leader_exit: exit.as_ref().map(|(text, _)| text.clone()),
        });
        if no_leader {
            round.violations.push(Violation::new(
                "no-leader",
                Some(deadline),
                format!(
                    "no new leader within {:?} of the {kind} fault on {process}",
                    self.settings.leader_timeout
                ),
            ));
        }
        if let Some((text, false)) = &exit {
            round.violations.push(Violation::new(
                "exit-status",
                Some(end),
                format!(
                    "{process} ended with {text} after {kind}; expected {}",
                    expected_exit(kind)
                ),
            ));
        }
        Ok(round)
    }

    /// The one term that is on (no `Leadership lost`, process running); `None` when there is
    /// none or, during a hand-over, several.
    fn current_leader(&mut self) -> Option<(String, u64)> {
        let alive = self.target.alive();
        let open: Vec<Term> = self
            .target
            .journal()
            .terms()
            .into_iter()
            .filter(|t| t.lost.is_none() && alive.contains(&t.process))
            .collect();
        match open.as_slice() {
            [one] => Some((one.process.clone(), one.token)),
            _ => None,
        }
    }

    /// Waits until one replica leads, all are ready and (when the stream is observed) the
    /// leader's quotes flow; then a further lease, so a restarted standby has watched the
    /// lease for a whole lease duration before the next fault.
    async fn wait_steady(&mut self) -> Result<(String, u64), DrillError> {
        let started = std::time::Instant::now();
        let mut settled_since: Option<std::time::Instant> = None;
        loop {
            self.target.tick().await?;
            self.pull_quotes().await;
            let leader = self.current_leader();
            let ready = self.target.all_ready().await?;
            let flowing = match (&leader, &self.reader) {
                (_, None) => true,
                (Some((_, token)), Some(_)) => {
                    self.quotes
                        .iter()
                        .filter(|q| q.token == Some(*token))
                        .count()
                        >= 3
                        && Micros::now().millis_since(self.last_quotes_read) < 1_000.0
                }
                (None, Some(_)) => false,
            };
            match (leader, ready && flowing) {
                (Some(leader), true) => {
                    let since = *settled_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() >= self.settings.lease {
                        return Ok(leader);
                    }
                }
                _ => settled_since = None,
            }
            if started.elapsed() > self.settings.steady_timeout {
                let terms = self.target.journal().terms();
                let open: Vec<String> = terms
                    .iter()
                    .filter(|t| t.lost.is_none())
                    .map(|t| format!("{} (token {})", t.process, t.token))
                    .collect();
                return Err(DrillError::Stuck(format!(
                    "no steady state within {:?}: leader terms without Leadership lost: [{}], all ready: {ready}, quotes flowing: {flowing}",
                    self.settings.steady_timeout,
                    open.join(", ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn pull_quotes(&mut self) {
        let Some(reader) = &mut self.reader else {
            return;
        };
        if self.last_pull.is_some_and(|at| at.elapsed() < STREAM_POLL) {
            return;
        }
        self.last_pull = Some(std::time::Instant::now());
        // A restarted server takes a moment: the next poll tries again.
        if let Ok(new) = reader.read_new().await
            && !new.is_empty()
        {
            self.last_quotes_read = Micros::now();
            self.quotes.extend(new);
        }
    }

    async fn finish(
        mut self,
        mut rounds: Vec<Round>,
        aborted: Option<String>,
        started: Micros,
    ) -> Outcome {
        let ended = Micros::now();
        let terms = self.target.journal().terms();
        // The whole stream, read again: what a consumer would see.
        let quotes = match &mut self.reader {
            None => None,
            Some(reader) => match reader.read_from(self.stream_start).await {
                Ok(all) => Some(all),
                Err(err) => {
                    self.progress
                        .message(&format!("re-reading the stream failed ({err}); checking the quotes read during the drill"));
                    Some(std::mem::take(&mut self.quotes))
                }
            },
        };
        let woken_bound_ms = self.settings.lease.as_secs_f64() * 1e3;
        let mut violations = checks::check_terms(&terms, &self.faults, woken_bound_ms, ended);
        if let Some(quotes) = &quotes {
            violations.extend(checks::check_stream(
                quotes,
                self.settings.stream_from_first,
            ));
        }
        // Each violation goes to the round whose fault came last before it.
        let mut outside = Vec::new();
        for violation in violations {
            let round = violation
                .at
                .and_then(|at| rounds.iter().rposition(|r| r.fault_at <= at));
            match round {
                Some(i) => rounds[i].violations.push(violation),
                None => outside.push(violation),
            }
        }
        Outcome {
            rounds,
            terms,
            faults: self.faults,
            quotes,
            violations: outside,
            aborted,
            started,
            ended,
        }
    }
}

fn expected_exit(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::Kill => "death by SIGKILL",
        _ => "exit 0",
    }
}
