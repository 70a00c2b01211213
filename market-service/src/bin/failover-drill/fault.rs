//! The faults the drill injects into the leader.

use std::fmt;

use serde::Serialize;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum FaultKind {
    /// SIGTERM to the leader: a graceful hand-over (drain, release the lease, exit 0). With
    /// `--kubectl`: `kubectl delete pod --force --grace-period=0`, which the kubelet still turns
    /// into a SIGTERM.
    Term,
    /// `kubectl delete pod` with the pod's own grace period (kubectl mode only): a rolling
    /// update or a node drain.
    Delete,
    /// SIGKILL to the leader process: a crash, nothing released.
    Kill,
    /// SIGSTOP the leader for twice the lease, then SIGCONT: a frozen process that wakes up
    /// after a standby took over (case C09).
    Pause,
    /// Kill and restart the nats-server the leader is connected to (local mode only).
    NatsRestart,
}

impl FaultKind {
    /// The name used on the command line and in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            FaultKind::Term => "term",
            FaultKind::Delete => "delete",
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::NatsRestart => "nats-restart",
        }
    }

    /// Whether the faulted replica's process is gone afterwards and has to be started again.
    pub(crate) fn ends_process(self) -> bool {
        matches!(self, FaultKind::Term | FaultKind::Delete | FaultKind::Kill)
    }

    /// Whether the leader must change: a restarted NATS server may come back before the
    /// leader's lease runs out, and then the leader rightly keeps it.
    pub(crate) fn forces_new_leader(self) -> bool {
        self != FaultKind::NatsRestart
    }

    /// Whether the faulted process releases its lease itself (and logs `Leadership lost`).
    pub(crate) fn is_graceful(self) -> bool {
        matches!(self, FaultKind::Term | FaultKind::Delete)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
