//! Everything the drill observed in the replicas' logs, in arrival order, and the leadership
//! terms it implies.

use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::logs::{Event, LogLine};
use crate::wallclock::Micros;

/// One observed log event.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The process that logged it: `r1#2` (replica r1, second start) or `POD#RESTARTS`.
    pub(crate) process: String,
    /// The line's own timestamp.
    pub(crate) at: Micros,
    /// What it says.
    pub(crate) event: Event,
}

/// The log events of all processes, shared by the readers of their output.
#[derive(Debug, Clone, Default)]
pub(crate) struct Journal {
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl Journal {
    /// Records a parsed line of `process`.
    pub(crate) fn push(&self, process: &str, line: LogLine) {
        self.lock().push(Entry {
            process: process.to_string(),
            at: line.at,
            event: line.event,
        });
    }

    /// A copy of everything recorded so far.
    pub(crate) fn entries(&self) -> Vec<Entry> {
        self.lock().clone()
    }

    /// The leadership terms recorded so far.
    pub(crate) fn terms(&self) -> Vec<Term> {
        terms(&self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One term of leadership, from a process's `Leadership acquired` to its `Leadership lost`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Term {
    /// The process that led.
    pub(crate) process: String,
    /// Its identity in the election.
    pub(crate) identity: String,
    /// The fencing token.
    pub(crate) token: u64,
    /// When it logged `Leadership acquired`.
    pub(crate) acquired: Micros,
    /// The predecessor it named.
    pub(crate) previous: Option<String>,
    /// Leaderless time before it, from server timestamps.
    pub(crate) leaderless_ms: Option<f64>,
    /// When it logged `Leadership lost`, and the cause; `None` when not observed.
    pub(crate) lost: Option<Lost>,
}

/// The end of a term as logged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Lost {
    /// When.
    pub(crate) at: Micros,
    /// Why.
    pub(crate) cause: String,
}

/// The terms in `entries`, in the order they were acquired.
pub(crate) fn terms(entries: &[Entry]) -> Vec<Term> {
    let mut terms: Vec<Term> = Vec::new();
    for entry in entries {
        match &entry.event {
            Event::Acquired {
                identity,
                token,
                previous,
                leaderless_ms,
            } => terms.push(Term {
                process: entry.process.clone(),
                identity: identity.clone(),
                token: *token,
                acquired: entry.at,
                previous: previous.clone(),
                leaderless_ms: *leaderless_ms,
                lost: None,
            }),
            Event::Lost { token, cause } => {
                if let Some(term) = terms
                    .iter_mut()
                    .rev()
                    .find(|t| t.process == entry.process && t.token == *token && t.lost.is_none())
                {
                    term.lost = Some(Lost {
                        at: entry.at,
                        cause: cause.clone(),
                    });
                }
            }
            _ => {}
        }
    }
    terms.sort_by_key(|t| (t.acquired, t.token));
    terms
}
