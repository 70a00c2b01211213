//! The command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use market_service::duration::parse_duration;

use crate::fault::FaultKind;

/// Measures failover of market-service replicas: faults the leader over and over (SIGTERM,
/// SIGKILL, SIGSTOP, a NATS restart), times each hand-over from the logs and the quote stream,
/// and checks that two replicas never led at once and that the quote sequence stayed gapless.
///
/// Local mode (the default) runs nats-server and three market-service replicas on this
/// machine; --kubectl runs the same rounds against a deployment. Exit code 0 when every check
/// passed, 1 on a violation (or when the system never settled), 2 when the drill cannot run.
#[derive(Debug, Clone, Parser)]
#[command(name = "failover-drill", version)]
pub(crate) struct Args {
    /// Rounds per fault kind.
    #[arg(long, default_value_t = 10)]
    pub(crate) rounds: usize,
    /// Fault kinds, comma-separated, run in this order: term (SIGTERM), kill (SIGKILL), pause
    /// (SIGSTOP for 2 × lease), nats-restart (local only), delete (--kubectl only).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "term,kill")]
    pub(crate) faults: Vec<FaultKind>,
    /// Seed of the random moment of each fault (printed, so a run can be repeated).
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Where rounds.json, drill.svg and the replicas' logs go [default: target/drill/<UTC time>].
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Longest wait for a new leader after a fault; longer is a violation.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) leader_timeout: Duration,
    /// Longest wait for a steady state (one leader, all replicas ready, quotes flowing) before
    /// a round [default: 60s locally, 300s with --kubectl, where a killed container may wait for
    /// its crash-loop back-off].
    #[arg(long, value_parser = parse_duration)]
    pub(crate) steady_timeout: Option<Duration>,
    /// Print only the results, no progress.
    #[arg(long)]
    pub(crate) quiet: bool,

    /// Local: NATS servers, 1 (single) or 3 (JetStream cluster; bucket and stream get 3
    /// replicas, and each replica gets every URL).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5), help_heading = "Local mode")]
    pub(crate) cluster: u8,
    /// Local: market-service replicas.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=9), help_heading = "Local mode")]
    pub(crate) replicas: u8,
    /// Local: the market-service binary [default: the one next to this binary].
    #[arg(long, help_heading = "Local mode")]
    pub(crate) service_bin: Option<PathBuf>,
    /// Local: the feed, replayed in a loop [default: the crate's data/EURUSD.csv].
    #[arg(long, help_heading = "Local mode")]
    pub(crate) feed: Option<PathBuf>,
    /// Lease duration (MARKET_LEASE_DURATION); with --kubectl, the deployment's, which sets the
    /// length of a pause.
    #[arg(long, default_value = "500ms", value_parser = parse_duration, help_heading = "Timings")]
    pub(crate) lease: Duration,
    /// Renew interval (MARKET_RENEW_INTERVAL): faults fall at a random moment within one.
    #[arg(long, default_value = "100ms", value_parser = parse_duration, help_heading = "Timings")]
    pub(crate) renew: Duration,
    /// Local: server-side TTL of the lease key (MARKET_SERVER_TTL).
    #[arg(long, default_value = "1s", value_parser = parse_duration, help_heading = "Timings")]
    pub(crate) ttl: Duration,
    /// Local: drain timeout (MARKET_DRAIN_TIMEOUT).
    #[arg(long, default_value = "2s", value_parser = parse_duration, help_heading = "Timings")]
    pub(crate) drain: Duration,
    /// Quotes per second (MARKET_RATE); the normal gap between quotes is its inverse.
    #[arg(long, default_value_t = 20.0, help_heading = "Timings")]
    pub(crate) rate: f64,

    /// Run against a Kubernetes deployment through kubectl instead of local processes.
    #[arg(long, help_heading = "Kubernetes mode")]
    pub(crate) kubectl: bool,
    /// The namespace of the deployment [default: kubectl's].
    #[arg(long, help_heading = "Kubernetes mode")]
    pub(crate) namespace: Option<String>,
    /// Label selector of the replicas' pods.
    #[arg(
        long,
        default_value = "app.kubernetes.io/name=market-service",
        help_heading = "Kubernetes mode"
    )]
    pub(crate) selector: String,
    /// kubectl context [default: the current one].
    #[arg(long, help_heading = "Kubernetes mode")]
    pub(crate) context: Option<String>,
    /// The kubectl binary.
    #[arg(long, default_value = "kubectl", help_heading = "Kubernetes mode")]
    pub(crate) kubectl_bin: String,
    /// NATS URL(s) to read the quote stream from (for example through `kubectl port-forward
    /// svc/nats 4222`); without it the quote figures and stream checks are n/a.
    #[arg(long, value_delimiter = ',', help_heading = "Kubernetes mode")]
    pub(crate) nats_url: Vec<String>,
    /// NATS user for --nats-url.
    #[arg(long, env = "NATS_USER", help_heading = "Kubernetes mode")]
    pub(crate) nats_user: Option<String>,
    /// NATS password for --nats-url.
    #[arg(
        long,
        env = "NATS_PASSWORD",
        hide_env_values = true,
        help_heading = "Kubernetes mode"
    )]
    pub(crate) nats_password: Option<String>,
    /// The quote stream (MARKET_STREAM).
    #[arg(
        long,
        default_value = "market-quotes",
        help_heading = "Kubernetes mode"
    )]
    pub(crate) stream: String,
}

impl Args {
    /// Checks what clap cannot: fault kinds the mode supports, sensible timings.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.rounds == 0 {
            return Err("--rounds must be at least 1".into());
        }
        if self.faults.is_empty() {
            return Err("--faults needs at least one fault kind".into());
        }
        for fault in &self.faults {
            match fault {
                FaultKind::NatsRestart if self.kubectl => {
                    return Err(
                        "nats-restart is local only (NATS runs as a StatefulSet in lame-duck mode)"
                            .into(),
                    );
                }
                FaultKind::Delete if !self.kubectl => {
                    return Err("delete is a kubectl fault; locally use term (SIGTERM)".into());
                }
                _ => {}
            }
        }
        if self.renew.is_zero() || self.renew >= self.lease {
            return Err("--renew must be above zero and below --lease".into());
        }
        if !(self.rate > 0.0 && self.rate.is_finite()) {
            return Err("--rate must be a positive number".into());
        }
        if self.cluster != 1 && self.cluster != 3 {
            return Err("--cluster takes 1 (a single server) or 3 (a JetStream cluster)".into());
        }
        Ok(())
    }

    /// The steady-state bound for the mode.
    pub(crate) fn steady_timeout(&self) -> Duration {
        self.steady_timeout.unwrap_or(if self.kubectl {
            Duration::from_secs(300)
        } else {
            Duration::from_secs(60)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        let args =
            Args::try_parse_from(std::iter::once("failover-drill").chain(args.iter().copied()))
                .map_err(|e| e.to_string())?;
        args.validate()?;
        Ok(args)
    }

    #[test]
    fn defaults_are_ten_rounds_of_term_and_kill_locally() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.rounds, 10);
        assert_eq!(args.faults, [FaultKind::Term, FaultKind::Kill]);
        assert_eq!(args.lease, Duration::from_millis(500));
        assert!(!args.kubectl);
        assert_eq!(args.steady_timeout(), Duration::from_secs(60));
    }

    #[test]
    fn the_deploy_readme_command_line_parses() {
        let args = parse(&[
            "--kubectl",
            "--namespace",
            "market",
            "--selector",
            "app.kubernetes.io/name=market-service",
            "--rounds",
            "10",
            "--faults",
            "term,kill",
        ])
        .unwrap();
        assert!(args.kubectl);
        assert_eq!(args.namespace.as_deref(), Some("market"));
        assert_eq!(args.steady_timeout(), Duration::from_secs(300));
    }

    #[test]
    fn faults_a_mode_cannot_inject_are_refused() {
        assert!(parse(&["--kubectl", "--faults", "nats-restart"]).is_err());
        assert!(parse(&["--faults", "delete"]).is_err());
        assert!(parse(&["--faults", "term,kill,pause,nats-restart"]).is_ok());
        assert!(parse(&["--faults", "explode"]).is_err());
        assert!(parse(&["--renew", "1s"]).is_err());
        assert!(parse(&["--cluster", "2"]).is_err());
        assert!(parse(&["--rounds", "0"]).is_err());
    }
}
