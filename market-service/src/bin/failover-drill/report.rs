//! The results: a table of percentiles per fault on the terminal, and `rounds.json` with every
//! round, term, fault and violation.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::checks::Violation;
use crate::drill::Outcome;
use crate::fault::FaultKind;
use crate::round::Round;
use crate::stats::{Summary, summarize};
use crate::wallclock::Micros;

/// How a figure is read from a round.
type Figure = fn(&Round) -> Option<f64>;

/// The figures in the table, in order: name in JSON, label, value of a round.
pub(crate) const FIGURES: [(&str, &str, Figure); 4] = [
    ("fault_to_acquired_ms", "fault → acquired", |r| {
        r.fault_to_acquired_ms
    }),
    ("quote_gap_ms", "quote gap", |r| r.quote_gap_ms),
    ("gap_over_interval_ms", "gap − quote interval", |r| {
        r.gap_over_interval_ms
    }),
    ("leaderless_ms", "leaderless (server)", |r| r.leaderless_ms),
];

/// What was run, for the report's header.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunInfo {
    /// The command line.
    pub(crate) command: String,
    /// The seed of the fault times.
    pub(crate) seed: u64,
    /// `local` or `kubectl`.
    pub(crate) mode: String,
    /// E.g. `single nats-server 2.15.1` or `kubectl namespace market`.
    pub(crate) system: String,
    /// Lease / renew / TTL and quote rate, as text.
    pub(crate) timings: String,
    /// Quote interval, ms.
    pub(crate) quote_interval_ms: f64,
    /// Cores and OS of this machine.
    pub(crate) machine: String,
    /// The bound on finding a new leader.
    pub(crate) leader_timeout_ms: f64,
}

/// The summary of one fault kind.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FaultSummary {
    /// Rounds run.
    pub(crate) rounds: usize,
    /// Per figure: its distribution, or `null` when no round observed it.
    pub(crate) figures: BTreeMap<&'static str, Option<Summary>>,
    /// The largest overlap of two leaders seen (ms); `null` when not measurable.
    pub(crate) max_overlap_ms: Option<f64>,
    /// Rounds in which a new term began.
    pub(crate) leader_changed: usize,
    /// Violations in these rounds.
    pub(crate) violations: usize,
    /// `Quote publish rejected` lines in these rounds.
    pub(crate) publishes_rejected: usize,
    /// Old-term quotes stored after the successor acquired.
    pub(crate) old_term_quotes_after_acquired: Option<usize>,
}

/// Everything written to `rounds.json`.
#[derive(Debug, Serialize)]
pub(crate) struct Report<'a> {
    pub(crate) run: &'a RunInfo,
    pub(crate) started: Micros,
    pub(crate) ended: Micros,
    pub(crate) passed: bool,
    pub(crate) aborted: Option<&'a str>,
    pub(crate) summary: BTreeMap<FaultKind, FaultSummary>,
    pub(crate) stream: Option<StreamSummary>,
    pub(crate) violations_outside_rounds: &'a [Violation],
    pub(crate) rounds: &'a [Round],
    pub(crate) terms: &'a [crate::journal::Term],
    pub(crate) faults: &'a [crate::checks::InjectedFault],
}

/// The stream as checked at the end.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StreamSummary {
    /// Quotes checked.
    pub(crate) quotes: usize,
    /// Per symbol: first and last sequence number.
    pub(crate) symbols: BTreeMap<String, (u64, u64)>,
}

impl<'a> Report<'a> {
    /// Builds the report of `outcome`.
    pub(crate) fn new(run: &'a RunInfo, outcome: &'a Outcome) -> Report<'a> {
        let mut summary = BTreeMap::new();
        for round in &outcome.rounds {
            summary
                .entry(round.fault)
                .or_insert_with(Vec::new)
                .push(round);
        }
        let summary = summary
            .into_iter()
            .map(|(kind, rounds)| (kind, summarize_rounds(&rounds)))
            .collect();
        let stream = outcome.quotes.as_ref().map(|quotes| {
            let mut symbols: BTreeMap<String, (u64, u64)> = BTreeMap::new();
            for q in quotes {
                symbols
                    .entry(q.symbol.clone())
                    .and_modify(|(_, last)| *last = q.seq)
                    .or_insert((q.seq, q.seq));
            }
            StreamSummary {
                quotes: quotes.len(),
                symbols,
            }
        });
        let violations = outcome.violations.len()
            + outcome
                .rounds
                .iter()
                .map(|r| r.violations.len())
                .sum::<usize>();
        Report {
            run,
            started: outcome.started,
            ended: outcome.ended,
            passed: violations == 0 && outcome.aborted.is_none(),
            aborted: outcome.aborted.as_deref(),
            summary,
            stream,
            violations_outside_rounds: &outcome.violations,
            rounds: &outcome.rounds,
            terms: &outcome.terms,
            faults: &outcome.faults,
        }
    }

    /// All violations, in rounds and outside.
    pub(crate) fn violations(&self) -> Vec<(Option<usize>, &Violation)> {
        let mut all: Vec<(Option<usize>, &Violation)> = self
            .violations_outside_rounds
            .iter()
            .map(|v| (None, v))
            .collect();
        for round in self.rounds {
            all.extend(round.violations.iter().map(|v| (Some(round.index), v)));
        }
        all
    }

    /// The table and the verdict, for the terminal.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let run = self.run;
        let _ = writeln!(
            out,
            "failover-drill: {} rounds, seed {}, {}, {}",
            self.rounds.len(),
            run.seed,
            run.system,
            run.timings
        );
        let _ = writeln!(out, "machine: {}; started {}", run.machine, self.started);
        let _ = writeln!(
            out,
            "\n{:<13} {:<24} {:>7} {:>9} {:>9} {:>9} {:>9}",
            "fault", "figure (ms)", "n", "p50", "p95", "p99", "max"
        );
        for (kind, summary) in &self.summary {
            for (index, (key, label, _)) in FIGURES.iter().enumerate() {
                let name = if index == 0 { kind.name() } else { "" };
                let label = if *key == "gap_over_interval_ms" {
                    format!("gap − {} ms", trim(run.quote_interval_ms))
                } else {
                    label.to_string()
                };
                match summary.figures.get(key).copied().flatten() {
                    Some(s) => {
                        let _ = writeln!(
                            out,
                            "{name:<13} {label:<24} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                            format!("{}/{}", s.n, summary.rounds),
                            s.p50,
                            s.p95,
                            s.p99,
                            s.max
                        );
                    }
                    None => {
                        let _ = writeln!(
                            out,
                            "{name:<13} {label:<24} {:>7} {:>39}",
                            format!("0/{}", summary.rounds),
                            "n/a (not observed)"
                        );
                    }
                }
            }
        }
        let _ = writeln!(out);
        for (kind, summary) in &self.summary {
            let overlap = summary
                .max_overlap_ms
                .map_or("n/a (not observed)".to_string(), |ms| format!("{ms:.3} ms"));
            let late = summary
                .old_term_quotes_after_acquired
                .map_or("n/a".to_string(), |n| n.to_string());
            let _ = writeln!(
                out,
                "{:<13} new leader in {}/{} rounds; max overlap {overlap}; publishes rejected {}; old-term quotes after takeover {late}; violations {}",
                kind.name(),
                summary.leader_changed,
                summary.rounds,
                summary.publishes_rejected,
                summary.violations
            );
        }
        match &self.stream {
            Some(stream) => {
                let symbols: Vec<String> = stream
                    .symbols
                    .iter()
                    .map(|(s, (first, last))| format!("{s} #{first}..#{last}"))
                    .collect();
                let _ = writeln!(
                    out,
                    "stream: {} quotes ({}) checked for gaps, duplicates and late writes",
                    stream.quotes,
                    symbols.join(", ")
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "stream: not observed (pass --nats-url to check quotes); quote figures n/a"
                );
            }
        }
        let violations = self.violations();
        for (round, v) in &violations {
            let place = round.map_or("outside rounds".to_string(), |r| format!("round {r}"));
            let _ = writeln!(out, "VIOLATION [{}] {place}: {}", v.rule, v.detail);
        }
        if let Some(reason) = self.aborted {
            let _ = writeln!(out, "ABORTED: {reason}");
        }
        let _ = writeln!(
            out,
            "result: {} ({} violation(s){})",
            if self.passed { "PASS" } else { "FAIL" },
            violations.len(),
            if self.aborted.is_some() {
                ", aborted"
            } else {
                ""
            }
        );
        out
    }
}

fn summarize_rounds(rounds: &[&Round]) -> FaultSummary {
    let figures = FIGURES
        .iter()
        .map(|(key, _, value)| {
            let values: Vec<f64> = rounds.iter().filter_map(|r| value(r)).collect();
            (*key, summarize(&values))
        })
        .collect();
    let overlaps: Vec<f64> = rounds.iter().filter_map(|r| r.overlap_ms).collect();
    let late: Vec<usize> = rounds
        .iter()
        .filter_map(|r| r.old_term_quotes_after_acquired)
        .collect();
    FaultSummary {
        rounds: rounds.len(),
        figures,
        max_overlap_ms: overlaps.iter().copied().reduce(f64::max),
        leader_changed: rounds.iter().filter(|r| r.successor.is_some()).count(),
        violations: rounds.iter().map(|r| r.violations.len()).sum(),
        publishes_rejected: rounds.iter().map(|r| r.publishes_rejected).sum(),
        old_term_quotes_after_acquired: (!late.is_empty()).then(|| late.iter().sum()),
    }
}

fn trim(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}
