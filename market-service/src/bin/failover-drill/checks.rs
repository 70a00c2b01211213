//! The safety checks, on what was observed: leadership terms from the logs, the faults the drill
//! injected, and the quote stream. Each violation names the rule, when it happened and what was
//! seen, so it can be found in the logs.
//!
//! - **One leader at a time.** A term acts from its `Leadership acquired` until its
//!   `Leadership lost`; a process that was killed acts until the kill, and one that was frozen
//!   (SIGSTOP) does nothing while frozen, so its term is cut at the freeze when a successor took
//!   over meanwhile. After SIGCONT such a process must log `Leadership lost` promptly; what it
//!   does after waking is judged by the stream (its late quotes must be rejected). No two terms
//!   may overlap, and tokens increase strictly in the order terms begin.
//! - **The stream.** Per symbol, in stream order, `seq` goes up by one (no gap, no duplicate) and
//!   the fencing token never goes down: a new term's first quote comes after the previous
//!   term's last one, and no deposed leader's late write was accepted after it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::fault::FaultKind;
use crate::journal::Term;
use crate::observe::StoredQuote;
use crate::wallclock::Micros;

/// A fault as injected.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct InjectedFault {
    /// What.
    pub(crate) kind: FaultKind,
    /// The process it hit (for `nats-restart`, the leader whose server was restarted).
    pub(crate) process: String,
    /// When it was injected (the drill's clock, taken right at injection).
    pub(crate) at: Micros,
    /// When a paused process was let go again (SIGCONT).
    pub(crate) resumed: Option<Micros>,
}

/// A broken safety rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Violation {
    /// Which rule: `overlap`, `token-order`, `no-step-down`, `gap`, `duplicate`, `late-write`,
    /// `no-leader`, `exit-status`.
    pub(crate) rule: &'static str,
    /// When (the later of the events involved), to attribute it to a round.
    pub(crate) at: Option<Micros>,
    /// What was seen.
    pub(crate) detail: String,
}

impl Violation {
    pub(crate) fn new(rule: &'static str, at: Option<Micros>, detail: String) -> Violation {
        Violation { rule, at, detail }
    }
}

/// How a term's time of acting ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum End {
    /// It logged `Leadership lost` at this time.
    Logged(Micros),
    /// Its process was killed or frozen at this time (no log line can follow).
    Fault(Micros, FaultKind),
    /// Nothing observed: it still leads (or its end was not seen).
    Open,
}

impl End {
    /// The end time, if any.
    pub(crate) fn at(self) -> Option<Micros> {
        match self {
            End::Logged(at) | End::Fault(at, _) => Some(at),
            End::Open => None,
        }
    }
}

/// When `term` stopped acting, from its log and the faults that hit its process.
pub(crate) fn acting_end(term: &Term, successor: Option<&Term>, faults: &[InjectedFault]) -> End {
    let logged = term.lost.as_ref().map(|l| l.at);
    let fault = faults.iter().find(|f| {
        f.process == term.process && f.at >= term.acquired && logged.is_none_or(|lost| f.at <= lost)
    });
    match (fault, logged) {
        // A graceful stop logs its own end; the log line is the truth.
        (Some(f), Some(lost)) if f.kind.is_graceful() => End::Logged(lost),
        // A process frozen while a successor took over did nothing from the freeze on.
        (Some(f), Some(lost)) if f.kind == FaultKind::Pause => match successor {
            Some(next) if next.acquired >= f.at && next.acquired < lost => End::Fault(f.at, f.kind),
            _ => End::Logged(lost),
        },
        (_, Some(lost)) => End::Logged(lost),
        (Some(f), None) if f.kind.ends_process() || f.kind == FaultKind::Pause => {
            End::Fault(f.at, f.kind)
        }
        _ => End::Open,
    }
}

/// Overlap, token order and prompt step-down of woken leaders. `woken_bound_ms`: how soon a
/// process let go after a pause must log `Leadership lost`. `observed_until`: the end of
/// observation (a woken process may still be due to log).
pub(crate) fn check_terms(
    terms: &[Term],
    faults: &[InjectedFault],
    woken_bound_ms: f64,
    observed_until: Micros,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut ordered: Vec<&Term> = terms.iter().collect();
    ordered.sort_by_key(|t| (t.acquired, t.token));
    for pair in ordered.windows(2) {
        if pair[1].token <= pair[0].token {
            violations.push(Violation::new(
                "token-order",
                Some(pair[1].acquired),
                format!(
                    "{} acquired token {} at {} after {} had acquired token {} at {}: tokens must increase",
                    pair[1].process, pair[1].token, pair[1].acquired, pair[0].process, pair[0].token, pair[0].acquired
                ),
            ));
        }
    }
    for (index, term) in ordered.iter().enumerate() {
        let successor = ordered[index + 1..].first().copied();
        let end = acting_end(term, successor, faults);
        for later in &ordered[index + 1..] {
            let overlap = match end.at() {
                Some(end) if end > later.acquired => Some(end.millis_since(later.acquired)),
                Some(_) => None,
                // A term that never ended while another began: two leaders.
                None => Some(observed_until.millis_since(later.acquired)),
            };
            if let Some(ms) = overlap {
                violations.push(Violation::new(
                    "overlap",
                    Some(later.acquired),
                    format!(
                        "{} (token {}) acted until {} but {} acquired token {} at {}: {ms:.3} ms with two leaders",
                        term.process,
                        term.token,
                        end.at().map_or("the end of the drill (no Leadership lost)".to_string(), |e| e.to_string()),
                        later.process,
                        later.token,
                        later.acquired
                    ),
                ));
            }
        }
        // A frozen leader that wakes up after losing its lease must stand down at once.
        if let End::Fault(frozen, FaultKind::Pause) = end
            && let Some(fault) = faults
                .iter()
                .find(|f| f.process == term.process && f.at == frozen)
            && let Some(resumed) = fault.resumed
        {
            match &term.lost {
                Some(lost) if lost.at.millis_since(resumed) > woken_bound_ms => {
                    violations.push(Violation::new(
                        "no-step-down",
                        Some(lost.at),
                        format!(
                            "{} (token {}) logged Leadership lost {:.3} ms after SIGCONT, more than {woken_bound_ms} ms",
                            term.process,
                            term.token,
                            lost.at.millis_since(resumed)
                        ),
                    ))
                }
                Some(_) => {}
                None if observed_until.millis_since(resumed) > woken_bound_ms => {
                    violations.push(Violation::new(
                        "no-step-down",
                        Some(resumed),
                        format!(
                            "{} (token {}) did not log Leadership lost after SIGCONT at {resumed}",
                            term.process, term.token
                        ),
                    ))
                }
                None => {}
            }
        }
    }
    violations
}

/// Gaps, duplicates and late writes in the stream. `quotes` must be in stream order. With
/// `from_first`, each symbol must start at sequence 1 (a stream the drill saw created).
pub(crate) fn check_stream(quotes: &[StoredQuote], from_first: bool) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut last: BTreeMap<&str, &StoredQuote> = BTreeMap::new();
    for quote in quotes {
        let Some(previous) = last.get(quote.symbol.as_str()).copied() else {
            if from_first && quote.seq != 1 {
                violations.push(Violation::new(
                    "gap",
                    Some(quote.at),
                    format!(
                        "{}: the first quote is #{} (stream sequence {}), not #1",
                        quote.symbol, quote.seq, quote.stream_sequence
                    ),
                ));
            }
            last.insert(&quote.symbol, quote);
            continue;
        };
        if quote.seq <= previous.seq {
            violations.push(Violation::new(
                "duplicate",
                Some(quote.at),
                format!(
                    "{} #{} by {} (token {}) at stream sequence {} repeats #{} by {} (token {}) at stream sequence {}",
                    quote.symbol,
                    quote.seq,
                    quote.publisher,
                    show(quote.token),
                    quote.stream_sequence,
                    previous.seq,
                    previous.publisher,
                    show(previous.token),
                    previous.stream_sequence
                ),
            ));
        } else if quote.seq != previous.seq + 1 {
            violations.push(Violation::new(
                "gap",
                Some(quote.at),
                format!(
                    "{} #{} follows #{} (stream sequences {} and {}): {} quotes missing",
                    quote.symbol,
                    quote.seq,
                    previous.seq,
                    previous.stream_sequence,
                    quote.stream_sequence,
                    quote.seq - previous.seq - 1
                ),
            ));
        }
        if quote.epoch == previous.epoch
            && let (Some(token), Some(before)) = (quote.token, previous.token)
            && token < before
        {
            violations.push(Violation::new(
                "late-write",
                Some(quote.at),
                format!(
                    "{} #{} by {} with token {token} was accepted at stream sequence {} after #{} by {} with token {before}: a deposed leader's write got through",
                    quote.symbol,
                    quote.seq,
                    quote.publisher,
                    quote.stream_sequence,
                    previous.seq,
                    previous.publisher
                ),
            ));
        }
        last.insert(&quote.symbol, quote);
    }
    violations
}

fn show(token: Option<u64>) -> String {
    token.map_or("none".into(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Lost;

    fn at(ms: f64) -> Micros {
        Micros(1_800_000_000_000_000).plus_millis(ms)
    }

    fn term(process: &str, token: u64, acquired: f64, lost: Option<f64>) -> Term {
        Term {
            process: process.into(),
            identity: process.split('#').next().unwrap().into(),
            token,
            acquired: at(acquired),
            previous: None,
            leaderless_ms: None,
            lost: lost.map(|ms| Lost {
                at: at(ms),
                cause: "shutdown".into(),
            }),
        }
    }

    fn fault(kind: FaultKind, process: &str, ms: f64, resumed: Option<f64>) -> InjectedFault {
        InjectedFault {
            kind,
            process: process.into(),
            at: at(ms),
            resumed: resumed.map(at),
        }
    }

    fn quote(stream_sequence: u64, seq: u64, token: u64, ms: f64) -> StoredQuote {
        StoredQuote {
            stream_sequence,
            symbol: "EURUSD".into(),
            seq,
            publisher: format!("p{token}"),
            token: Some(token),
            epoch: Some(7),
            at: at(ms),
        }
    }

    fn rules(violations: &[Violation]) -> Vec<&'static str> {
        violations.iter().map(|v| v.rule).collect()
    }

    /// A graceful hand-over, a crash and a pause, as a correct system produces them.
    fn clean_terms() -> (Vec<Term>, Vec<InjectedFault>) {
        let terms = vec![
            term("r1#1", 1, 0.0, Some(1000.4)), // SIGTERM at 1000, released
            term("r2#1", 20, 1002.0, None),     // SIGKILL at 2000: no log line
            term("r3#1", 35, 2480.0, Some(4001.0)), // SIGSTOP at 3000, SIGCONT at 4000
            term("r1#2", 50, 3490.0, None),     // still leading
        ];
        let faults = vec![
            fault(FaultKind::Term, "r1#1", 1000.0, None),
            fault(FaultKind::Kill, "r2#1", 2000.0, None),
            fault(FaultKind::Pause, "r3#1", 3000.0, Some(4000.0)),
        ];
        (terms, faults)
    }

    #[test]
    fn a_clean_sequence_of_terms_passes() {
        let (terms, faults) = clean_terms();
        let violations = check_terms(&terms, &faults, 500.0, at(6000.0));
        assert!(violations.is_empty(), "{violations:#?}");
    }

    #[test]
    fn an_overlap_is_caught() {
        let (mut terms, faults) = clean_terms();
        // r1 logged its loss 3 ms after r2 acquired.
        terms[0].lost.as_mut().unwrap().at = at(1005.0);
        let violations = check_terms(&terms, &faults, 500.0, at(6000.0));
        assert_eq!(rules(&violations), ["overlap"]);
        assert!(
            violations[0].detail.contains("3.000 ms"),
            "{}",
            violations[0].detail
        );
    }

    #[test]
    fn a_term_that_never_ends_while_another_begins_is_two_leaders() {
        let (mut terms, mut faults) = clean_terms();
        // No kill: r2 should have logged its loss before r3 took over.
        faults.remove(1);
        terms[1].lost = None;
        let violations = check_terms(&terms, &faults, 500.0, at(6000.0));
        assert!(rules(&violations).contains(&"overlap"), "{violations:#?}");
    }

    #[test]
    fn tokens_that_go_down_are_caught() {
        let (mut terms, faults) = clean_terms();
        terms[1].token = 1;
        let violations = check_terms(&terms, &faults, 500.0, at(6000.0));
        assert_eq!(rules(&violations), ["token-order"]);
    }

    #[test]
    fn a_woken_leader_must_stand_down_promptly() {
        let (mut terms, faults) = clean_terms();
        terms[2].lost.as_mut().unwrap().at = at(4900.0);
        let violations = check_terms(&terms, &faults, 500.0, at(6000.0));
        assert_eq!(rules(&violations), ["no-step-down"]);
        terms[2].lost = None;
        let violations = check_terms(&terms, &faults, 500.0, at(6000.0));
        assert_eq!(rules(&violations), ["no-step-down"]);
        // Not yet due.
        let violations = check_terms(&terms, &faults, 500.0, at(4100.0));
        assert!(violations.is_empty(), "{violations:#?}");
    }

    #[test]
    fn a_clean_stream_passes() {
        let quotes = vec![
            quote(1, 1, 1, 0.0),
            quote(2, 2, 1, 50.0),
            quote(3, 3, 20, 103.0),
            quote(4, 4, 20, 153.0),
        ];
        assert!(check_stream(&quotes, true).is_empty());
    }

    #[test]
    fn a_gap_is_caught() {
        let quotes = vec![
            quote(1, 1, 1, 0.0),
            quote(2, 2, 1, 50.0),
            quote(3, 4, 20, 103.0),
        ];
        let violations = check_stream(&quotes, true);
        assert_eq!(rules(&violations), ["gap"]);
        assert!(violations[0].detail.contains("1 quotes missing"));
        // A stream that does not start at 1 when the drill saw it created.
        assert_eq!(rules(&check_stream(&quotes[1..], true)), ["gap", "gap"]);
        assert_eq!(rules(&check_stream(&quotes[1..], false)), ["gap"]);
    }

    #[test]
    fn a_duplicate_is_caught() {
        let quotes = vec![
            quote(1, 1, 1, 0.0),
            quote(2, 2, 1, 50.0),
            quote(3, 2, 20, 103.0),
        ];
        let violations = check_stream(&quotes, true);
        assert_eq!(rules(&violations), ["duplicate"]);
    }

    #[test]
    fn a_late_write_of_a_deposed_leader_is_caught() {
        // The paused leader's quote #4 (token 1) landed after the new leader's #3 (token 20).
        let quotes = vec![
            quote(1, 1, 1, 0.0),
            quote(2, 2, 1, 50.0),
            quote(3, 3, 20, 600.0),
            quote(4, 4, 1, 1001.0),
        ];
        let violations = check_stream(&quotes, true);
        assert_eq!(rules(&violations), ["late-write"]);
    }
}
