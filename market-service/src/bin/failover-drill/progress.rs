//! Progress on standard error: a bar rewritten in place on a terminal, one line per round
//! otherwise (CI logs, tests).

use std::io::{IsTerminal, Write};

use crate::round::Round;

/// The progress display.
pub(crate) struct Progress {
    total: usize,
    done: usize,
    terminal: bool,
    quiet: bool,
}

impl Progress {
    /// Draws on a terminal; `quiet` prints nothing but messages.
    pub(crate) fn new(quiet: bool) -> Progress {
        Progress {
            total: 0,
            done: 0,
            terminal: std::io::stderr().is_terminal(),
            quiet,
        }
    }

    /// The drill is about to run `total` rounds.
    pub(crate) fn start(&mut self, total: usize) {
        self.total = total;
        self.draw("");
    }

    /// A round ended.
    pub(crate) fn round_done(&mut self, round: &Round) {
        self.done += 1;
        let figure = |value: Option<f64>| value.map_or("n/a".to_string(), |v| format!("{v:.1} ms"));
        let text = format!(
            "{} #{}: {} → {} acquired {}, gap {}{}",
            round.fault,
            round.index,
            round.leader,
            round.successor.as_deref().unwrap_or("(no change)"),
            figure(round.fault_to_acquired_ms),
            figure(round.quote_gap_ms),
            if round.violations.is_empty() {
                String::new()
            } else {
                format!(", {} VIOLATION(S)", round.violations.len())
            }
        );
        if self.terminal {
            self.draw(&text);
        } else if !self.quiet {
            eprintln!("[{}/{}] {text}", self.done, self.total);
        }
    }

    /// What is happening now: shown in the bar on a terminal, nowhere else.
    pub(crate) fn status(&mut self, text: &str) {
        if self.terminal && !self.quiet {
            self.draw(text);
        }
    }

    /// A message on its own line.
    pub(crate) fn message(&mut self, text: &str) {
        if self.terminal {
            eprint!("\r\x1b[2K{text}\n");
            self.draw("");
        } else if !self.quiet || text.starts_with("drill stopped") {
            eprintln!("{text}");
        }
    }

    /// Ends the bar's line.
    pub(crate) fn finish(&mut self) {
        if self.terminal {
            eprintln!();
        }
    }

    fn draw(&self, text: &str) {
        if !self.terminal || self.total == 0 {
            return;
        }
        const WIDTH: usize = 30;
        let filled = WIDTH * self.done / self.total;
        eprint!(
            "\r\x1b[2K[{}{}] {}/{} {text}",
            "#".repeat(filled),
            ".".repeat(WIDTH - filled),
            self.done,
            self.total
        );
        let _ = std::io::stderr().flush();
    }
}
