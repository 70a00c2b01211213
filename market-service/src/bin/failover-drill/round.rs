//! One round's measurements, computed from what was observed around its fault.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::checks::{InjectedFault, Violation};
use crate::fault::FaultKind;
use crate::journal::{Entry, Term};
use crate::logs::Event;
use crate::observe::StoredQuote;
use crate::wallclock::Micros;

/// One quote named in a round's record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct QuoteRef {
    /// Symbol.
    pub(crate) symbol: String,
    /// Per-symbol sequence number.
    pub(crate) seq: u64,
    /// Stream sequence.
    pub(crate) stream_sequence: u64,
    /// Publisher.
    pub(crate) publisher: String,
    /// Fencing token.
    pub(crate) token: Option<u64>,
    /// Server timestamp.
    pub(crate) at: Micros,
}

impl From<&StoredQuote> for QuoteRef {
    fn from(q: &StoredQuote) -> QuoteRef {
        QuoteRef {
            symbol: q.symbol.clone(),
            seq: q.seq,
            stream_sequence: q.stream_sequence,
            publisher: q.publisher.clone(),
            token: q.token,
            at: q.at,
        }
    }
}

/// Everything recorded about one round. A figure is `None` when the event it is computed from
/// was not observed; `notes` then says why.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Round {
    /// 1-based, over the whole drill.
    pub(crate) index: usize,
    /// The fault.
    pub(crate) fault: FaultKind,
    /// The random wait before injecting, in ms (0..renew interval).
    pub(crate) delay_ms: f64,
    /// The leader that was faulted, and its token.
    pub(crate) leader: String,
    /// Its term's fencing token.
    pub(crate) leader_token: u64,
    /// When the fault was injected (drill clock, right at injection).
    pub(crate) fault_at: Micros,
    /// When the injecting call returned (a kubectl command takes a while).
    pub(crate) fault_done_at: Micros,
    /// SIGCONT after a pause.
    pub(crate) resumed_at: Option<Micros>,
    /// The next leader and its token, if a new term began.
    pub(crate) successor: Option<String>,
    /// Its token.
    pub(crate) successor_token: Option<u64>,
    /// The predecessor the successor named in its log.
    pub(crate) successor_named_previous: Option<String>,
    /// Its `Leadership acquired` time (its log).
    pub(crate) acquired_at: Option<Micros>,
    /// Fault → successor's `Leadership acquired`.
    pub(crate) fault_to_acquired_ms: Option<f64>,
    /// The faulted leader's `Shutting down` (signal received) → successor's `Leadership acquired`.
    pub(crate) signal_to_acquired_ms: Option<f64>,
    /// The library's leaderless time from server timestamps (`leaderless_ms`).
    pub(crate) leaderless_ms: Option<f64>,
    /// The last quote before the hand-over.
    pub(crate) last_quote_before: Option<QuoteRef>,
    /// The first quote after it.
    pub(crate) first_quote_after: Option<QuoteRef>,
    /// The time between those two (server timestamps).
    pub(crate) quote_gap_ms: Option<f64>,
    /// The gap minus the normal interval between quotes.
    pub(crate) gap_over_interval_ms: Option<f64>,
    /// Quotes of the old term stored after the successor acquired (the window the README
    /// documents: a leader frozen between its lease check and its publish).
    pub(crate) old_term_quotes_after_acquired: Option<usize>,
    /// The old leader's `Leadership lost` after the fault: cause, and ms after the fault.
    pub(crate) old_leader_lost: Option<String>,
    /// Ms from the fault to the old leader's `Leadership lost`.
    pub(crate) old_leader_lost_ms: Option<f64>,
    /// Time both acted as leader (ms); `None` when it cannot be told.
    pub(crate) overlap_ms: Option<f64>,
    /// `Quote publish rejected` lines logged during the round.
    pub(crate) publishes_rejected: usize,
    /// How the faulted process ended (exit status), when it did.
    pub(crate) old_leader_exit: Option<String>,
    /// Safety violations attributed to this round.
    pub(crate) violations: Vec<Violation>,
    /// What could not be observed, and other remarks.
    pub(crate) notes: Vec<String>,
}

/// What the drill knows when it closes a round.
pub(crate) struct RoundInput<'a> {
    pub(crate) index: usize,
    pub(crate) fault: &'a InjectedFault,
    pub(crate) fault_done_at: Micros,
    pub(crate) delay_ms: f64,
    pub(crate) leader_token: u64,
    /// The successor's term, if one began.
    pub(crate) successor: Option<&'a Term>,
    /// All terms so far.
    pub(crate) terms: &'a [Term],
    /// The log entries since the fault.
    pub(crate) entries: &'a [Entry],
    /// All quotes read so far (stream order), or `None` when the stream is not observed.
    pub(crate) quotes: Option<&'a [StoredQuote]>,
    /// Normal interval between quotes, ms.
    pub(crate) quote_interval_ms: f64,
    /// End of the round.
    pub(crate) end: Micros,
    pub(crate) old_leader_exit: Option<String>,
}

/// Computes a round's figures. Violations are added by the caller.
pub(crate) fn measure(input: RoundInput<'_>) -> Round {
    let fault = input.fault;
    let mut notes = Vec::new();
    let successor = input.successor;
    let acquired_at = successor.map(|t| t.acquired);
    let fault_to_acquired_ms = acquired_at.map(|a| a.millis_since(fault.at));
    let of_old = |e: &&Entry| e.process == fault.process;
    let shutting_down = input
        .entries
        .iter()
        .filter(of_old)
        .find(|e| e.event == Event::ShuttingDown && e.at >= fault.at.plus_millis(-5_000.0))
        .map(|e| e.at);
    let signal_to_acquired_ms = match (shutting_down, acquired_at) {
        (Some(signal), Some(acquired)) => Some(acquired.millis_since(signal)),
        _ => None,
    };
    let old_lost = input
        .terms
        .iter()
        .find(|t| t.process == fault.process && t.token == input.leader_token)
        .and_then(|t| t.lost.clone());
    match (&old_lost, successor) {
        (None, Some(_)) if fault.kind == FaultKind::Kill => {
            notes.push("old leader's end: not logged (killed); taken as the kill".into())
        }
        (None, Some(_)) => notes.push("old leader's Leadership lost: not observed".into()),
        _ => {}
    }
    let leaderless_ms = successor.and_then(|t| t.leaderless_ms);
    if successor.is_some() && leaderless_ms.is_none() {
        notes.push("leaderless_ms: not logged by the successor".into());
    }
    if successor.is_none() {
        if fault.kind.forces_new_leader() {
            notes.push("no new leader observed".into());
        } else {
            notes.push("the leader kept its lease: no leadership change".into());
        }
    }
    let overlap_ms = successor.and_then(|next| {
        let end = crate::checks::acting_end(
            input
                .terms
                .iter()
                .find(|t| t.process == fault.process && t.token == input.leader_token)?,
            Some(next),
            std::slice::from_ref(fault),
        );
        end.at().map(|end| end.millis_since(next.acquired).max(0.0))
    });
    let publishes_rejected = input
        .entries
        .iter()
        .filter(|e| matches!(e.event, Event::PublishRejected { .. }) && e.at <= input.end)
        .count();

    let mut round = Round {
        index: input.index,
        fault: fault.kind,
        delay_ms: input.delay_ms,
        leader: fault.process.clone(),
        leader_token: input.leader_token,
        fault_at: fault.at,
        fault_done_at: input.fault_done_at,
        resumed_at: fault.resumed,
        successor: successor.map(|t| t.process.clone()),
        successor_token: successor.map(|t| t.token),
        successor_named_previous: successor.and_then(|t| t.previous.clone()),
        acquired_at,
        fault_to_acquired_ms,
        signal_to_acquired_ms,
        leaderless_ms,
        last_quote_before: None,
        first_quote_after: None,
        quote_gap_ms: None,
        gap_over_interval_ms: None,
        old_term_quotes_after_acquired: None,
        old_leader_lost: old_lost.as_ref().map(|l| l.cause.clone()),
        old_leader_lost_ms: old_lost
            .as_ref()
            .filter(|l| l.at >= fault.at)
            .map(|l| l.at.millis_since(fault.at)),
        overlap_ms,
        publishes_rejected,
        old_leader_exit: input.old_leader_exit,
        violations: Vec::new(),
        notes,
    };
    match input.quotes {
        None => round
            .notes
            .push("quote stream: not observed (no NATS access)".into()),
        Some(quotes) => measure_gap(&mut round, quotes, input.quote_interval_ms),
    }
    round
}

/// The largest gap over the symbols: with a new term, from the old term's last quote to the new
/// term's first; without one, between the two quotes around the fault.
fn measure_gap(round: &mut Round, quotes: &[StoredQuote], interval_ms: f64) {
    let symbols: BTreeSet<&str> = quotes.iter().map(|q| q.symbol.as_str()).collect();
    let mut widest: Option<(&StoredQuote, &StoredQuote)> = None;
    for symbol in symbols {
        let of_symbol: Vec<&StoredQuote> = quotes.iter().filter(|q| q.symbol == symbol).collect();
        let pair = match round.successor_token {
            Some(new) => {
                let last = of_symbol
                    .iter()
                    .rev()
                    .find(|q| q.token == Some(round.leader_token));
                let first = of_symbol.iter().find(|q| q.token == Some(new));
                last.zip(first).map(|(a, b)| (*a, *b))
            }
            None => of_symbol
                .windows(2)
                .find(|w| w[0].at <= round.fault_at && w[1].at > round.fault_at)
                .map(|w| (w[0], w[1])),
        };
        if let Some((before, after)) = pair {
            let wider = widest
                .is_none_or(|(b, a)| after.at.millis_since(before.at) > a.at.millis_since(b.at));
            if wider {
                widest = Some((before, after));
            }
        }
    }
    match widest {
        Some((before, after)) => {
            let gap = after.at.millis_since(before.at);
            round.quote_gap_ms = Some(gap);
            round.gap_over_interval_ms = Some(gap - interval_ms);
            round.last_quote_before = Some(before.into());
            round.first_quote_after = Some(after.into());
        }
        None => round
            .notes
            .push("quote gap: not observed (no quote on one side of the hand-over)".into()),
    }
    if let (Some(acquired), Some(_)) = (round.acquired_at, round.successor_token) {
        round.old_term_quotes_after_acquired = Some(
            quotes
                .iter()
                .filter(|q| q.token == Some(round.leader_token) && q.at > acquired)
                .count(),
        );
    }
}
