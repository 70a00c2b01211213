//! Settings from flags and environment variables, checked once before anything connects.
//!
//! The environment variable names are a contract: the Kubernetes manifests in `deploy/` set them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use leader_election::ElectionConfig;

use crate::duration::parse_duration;
use crate::feed::{OnBadRow, is_valid_symbol};

/// The feed a fresh clone runs without flags; the container image sets `MARKET_FEED` to its own
/// copy at `/app/data/EURUSD.csv`.
pub const DEFAULT_FEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/EURUSD.csv");

/// Replays recorded market data (CSV files of OHLCV bars) as quotes on a NATS JetStream stream.
///
/// Run three replicas: they elect one leader through a JetStream KV bucket; only the leader
/// publishes, the others stand by, connected, and take over where it stopped. Every option can
/// also be set by the environment variable shown.
#[derive(Debug, Clone, Parser)]
#[command(name = "market-service", version, about, long_about)]
pub struct Args {
    /// NATS server URLs, comma-separated.
    #[arg(
        long,
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        help_heading = "NATS"
    )]
    pub nats_url: String,
    /// User name for NATS (with --nats-password).
    #[arg(long, env = "NATS_USER", help_heading = "NATS")]
    pub nats_user: Option<String>,
    /// Password for NATS.
    #[arg(
        long,
        env = "NATS_PASSWORD",
        hide_env_values = true,
        help_heading = "NATS"
    )]
    pub nats_password: Option<String>,
    /// Token for NATS.
    #[arg(
        long,
        env = "NATS_TOKEN",
        hide_env_values = true,
        help_heading = "NATS"
    )]
    pub nats_token: Option<String>,
    /// NATS credentials file (JWT and NKey seed).
    #[arg(long, env = "NATS_CREDS_FILE", help_heading = "NATS")]
    pub nats_creds_file: Option<PathBuf>,
    /// CA certificates (PEM) to verify the NATS server with; turns TLS on.
    #[arg(long, env = "NATS_TLS_CA_FILE", help_heading = "NATS")]
    pub nats_tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS, with --nats-tls-key-file.
    #[arg(long, env = "NATS_TLS_CERT_FILE", help_heading = "NATS")]
    pub nats_tls_cert_file: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS, with --nats-tls-cert-file.
    #[arg(long, env = "NATS_TLS_KEY_FILE", help_heading = "NATS")]
    pub nats_tls_key_file: Option<PathBuf>,

    /// This replica's name in the election and in quote headers [default: $POD_NAME, else the
    /// host name].
    #[arg(long, env = "MARKET_IDENTITY", help_heading = "Election")]
    pub identity: Option<String>,
    /// KV bucket holding the election (created if missing).
    #[arg(
        long,
        env = "MARKET_BUCKET",
        default_value = "market-election",
        help_heading = "Election"
    )]
    pub bucket: String,
    /// Replicas of the bucket when this process creates it (3 in a 3-node cluster).
    #[arg(
        long,
        env = "MARKET_BUCKET_REPLICAS",
        default_value_t = 1,
        help_heading = "Election"
    )]
    pub bucket_replicas: usize,
    /// Election name: the key in the bucket.
    #[arg(
        long,
        env = "MARKET_ELECTION",
        default_value = "market-feed",
        help_heading = "Election"
    )]
    pub election: String,
    /// How long a lease lasts after its last acknowledged renewal; about the crash failover time.
    #[arg(long, env = "MARKET_LEASE_DURATION", default_value = "500ms", value_parser = parse_duration, help_heading = "Election")]
    pub lease_duration: Duration,
    /// How often the leader renews its lease; well below the lease duration.
    #[arg(long, env = "MARKET_RENEW_INTERVAL", default_value = "100ms", value_parser = parse_duration, help_heading = "Election")]
    pub renew_interval: Duration,
    /// Server-side TTL of the lease key, whole seconds, at least the lease duration.
    #[arg(long, env = "MARKET_SERVER_TTL", default_value = "1s", value_parser = parse_duration, help_heading = "Election")]
    pub server_ttl: Duration,
    /// How long shutdown waits for the feed to stop before leaving the lease to expire.
    #[arg(long, env = "MARKET_DRAIN_TIMEOUT", default_value = "2s", value_parser = parse_duration, help_heading = "Election")]
    pub drain_timeout: Duration,

    /// CSV files of OHLCV bars to replay, comma-separated; one instrument per file, named after
    /// the file (EURUSD.csv → EURUSD) [default: the EURUSD.csv shipped with the crate].
    #[arg(
        long,
        env = "MARKET_FEED",
        value_delimiter = ',',
        help_heading = "Feed"
    )]
    pub feed: Vec<PathBuf>,
    /// Symbol to publish the feed as, instead of the file name (only with one feed).
    #[arg(long, env = "MARKET_SYMBOL", help_heading = "Feed")]
    pub symbol: Option<String>,
    /// Quotes per second per symbol.
    #[arg(long, env = "MARKET_RATE", default_value_t = 20.0, value_parser = parse_rate, help_heading = "Feed")]
    pub rate: f64,
    /// Start the feed over after its last bar (sequence numbers keep rising).
    #[arg(
        long = "loop",
        env = "MARKET_LOOP",
        default_value_t = false,
        value_parser = clap::builder::BoolishValueParser::new(),
        help_heading = "Feed"
    )]
    pub loop_feed: bool,
    /// What to do with a malformed row: skip (log it with file:line and count it) or stop
    /// (exit 2 naming file:line).
    #[arg(
        long,
        env = "MARKET_ON_BAD_ROW",
        value_enum,
        default_value_t = OnBadRow::Skip,
        help_heading = "Feed"
    )]
    pub on_bad_row: OnBadRow,
    /// JetStream stream for the quotes (subjects market.quotes.<SYMBOL>; created if missing).
    #[arg(
        long,
        env = "MARKET_STREAM",
        default_value = "market-quotes",
        help_heading = "Feed"
    )]
    pub stream: String,
    /// Replicas of the quote stream when this process creates it.
    #[arg(
        long,
        env = "MARKET_STREAM_REPLICAS",
        default_value_t = 1,
        help_heading = "Feed"
    )]
    pub stream_replicas: usize,

    /// Address of the admin HTTP endpoint (/livez, /readyz, /metrics, /leader); port 0 picks a
    /// free port, logged as "HTTP listening".
    #[arg(
        long,
        env = "MARKET_HTTP_ADDR",
        default_value = "0.0.0.0:8080",
        help_heading = "Operations"
    )]
    pub http_addr: SocketAddr,
    /// Log format: text for people, json for log collectors.
    #[arg(
        long,
        env = "MARKET_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        help_heading = "Operations"
    )]
    pub log_format: LogFormat,
    /// Log filter, in tracing's EnvFilter syntax (for example info,leader_election=debug).
    #[arg(
        long = "log-filter",
        env = "RUST_LOG",
        default_value = "info",
        help_heading = "Operations"
    )]
    pub log_filter: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// How to reach NATS.
#[derive(Debug, Clone)]
pub struct NatsSettings {
    /// Server URLs.
    pub urls: Vec<async_nats::ServerAddr>,
    /// User and password.
    pub user_password: Option<(String, String)>,
    /// Token.
    pub token: Option<String>,
    /// Credentials file.
    pub creds_file: Option<PathBuf>,
    /// CA certificates.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key.
    pub tls_client: Option<(PathBuf, PathBuf)>,
}

/// One feed to replay.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedSource {
    /// The CSV file.
    pub path: PathBuf,
    /// The symbol override, if any.
    pub symbol: Option<String>,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// NATS connection.
    pub nats: NatsSettings,
    /// The election, already validated.
    pub election: ElectionConfig,
    /// Feeds to replay.
    pub feeds: Vec<FeedSource>,
    /// Quotes per second per symbol.
    pub rate: f64,
    /// Whether feeds restart after their last bar.
    pub loop_feed: bool,
    /// Malformed-row policy.
    pub on_bad_row: OnBadRow,
    /// Quote stream name.
    pub stream: String,
    /// Quote stream replicas.
    pub stream_replicas: usize,
    /// Admin endpoint address.
    pub http_addr: SocketAddr,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log_filter: String,
}

/// A setting that cannot work; the message names it and the fix. The process exits with
/// code 2 before connecting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `ElectionConfig::validate` refused the election settings.
    #[error("invalid election settings")]
    Election(#[from] leader_election::ConfigError),
    /// A NATS URL does not parse.
    #[error("NATS_URL {url:?} is not a valid NATS URL: {reason}")]
    NatsUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// Any other rule, with its message.
    #[error("{0}")]
    Invalid(String),
}

impl Args {
    /// Checks every setting and resolves defaults that depend on the environment.
    ///
    /// # Errors
    /// The first broken rule.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let identity = self.identity.clone().unwrap_or_else(default_identity);
        let election = ElectionConfig::new(identity)
            .bucket(&self.bucket)
            .election(&self.election)
            .lease_duration(self.lease_duration)
            .renew_interval(self.renew_interval)
            .server_ttl(self.server_ttl)
            .drain_timeout(self.drain_timeout)
            .bucket_replicas(self.bucket_replicas);
        election.validate()?;

        let nats = self.nats_settings()?;
        let feeds = self.feed_sources()?;
        if !is_valid_stream_name(&self.stream) {
            return Err(ConfigError::Invalid(format!(
                "MARKET_STREAM {:?} is not a valid stream name: use letters, digits, '-' and '_'",
                self.stream
            )));
        }
        if !(1..=5).contains(&self.stream_replicas) {
            return Err(ConfigError::Invalid(format!(
                "MARKET_STREAM_REPLICAS {} is out of range: use 1 to 5 (3 in a 3-node cluster)",
                self.stream_replicas
            )));
        }
        let log_filter = self.log_filter.trim().to_string();
        if let Err(err) = tracing_subscriber::EnvFilter::builder().parse(&log_filter) {
            return Err(ConfigError::Invalid(format!(
                "RUST_LOG {log_filter:?} is not a valid log filter: {err}"
            )));
        }
        Ok(Config {
            nats,
            election,
            feeds,
            rate: self.rate,
            loop_feed: self.loop_feed,
            on_bad_row: self.on_bad_row,
            stream: self.stream,
            stream_replicas: self.stream_replicas,
            http_addr: self.http_addr,
            log_format: self.log_format,
            log_filter,
        })
    }

    fn nats_settings(&self) -> Result<NatsSettings, ConfigError> {
        let urls = self
            .nats_url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|url| {
                url.parse::<async_nats::ServerAddr>()
                    .map_err(|err| ConfigError::NatsUrl {
                        url: url.to_string(),
                        reason: err.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            return Err(ConfigError::Invalid(
                "NATS_URL is empty: give at least one URL, for example nats://127.0.0.1:4222"
                    .into(),
            ));
        }
        let user_password = match (&self.nats_user, &self.nats_password) {
            (Some(user), Some(password)) => Some((user.clone(), password.clone())),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid(
                    "NATS_USER and NATS_PASSWORD go together: set both or neither".into(),
                ));
            }
        };
        let tls_client = match (&self.nats_tls_cert_file, &self.nats_tls_key_file) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid(
                    "NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE go together: set both or neither"
                        .into(),
                ));
            }
        };
        let files = [
            ("NATS_CREDS_FILE", &self.nats_creds_file),
            ("NATS_TLS_CA_FILE", &self.nats_tls_ca_file),
            ("NATS_TLS_CERT_FILE", &self.nats_tls_cert_file),
            ("NATS_TLS_KEY_FILE", &self.nats_tls_key_file),
        ];
        for (name, path) in files {
            if let Some(path) = path
                && !path.is_file()
            {
                return Err(ConfigError::Invalid(format!(
                    "{name} {} does not exist or is not a file",
                    path.display()
                )));
            }
        }
        Ok(NatsSettings {
            urls,
            user_password,
            token: self.nats_token.clone(),
            creds_file: self.nats_creds_file.clone(),
            tls_ca_file: self.nats_tls_ca_file.clone(),
            tls_client,
        })
    }

    fn feed_sources(&self) -> Result<Vec<FeedSource>, ConfigError> {
        let paths: Vec<PathBuf> = if self.feed.iter().all(|p| p.as_os_str().is_empty()) {
            vec![PathBuf::from(DEFAULT_FEED)]
        } else {
            self.feed
                .iter()
                .filter(|p| !p.as_os_str().is_empty())
                .cloned()
                .collect()
        };
        if self.symbol.is_some() && paths.len() > 1 {
            return Err(ConfigError::Invalid(format!(
                "MARKET_SYMBOL is set but MARKET_FEED names {} files: the symbol override works with one feed only",
                paths.len()
            )));
        }
        if let Some(symbol) = &self.symbol
            && !is_valid_symbol(symbol)
        {
            return Err(ConfigError::Invalid(format!(
                "MARKET_SYMBOL {symbol:?} is not usable in a subject: use letters, digits, '-' and '_'"
            )));
        }
        let mut symbols: Vec<String> = Vec::new();
        let mut sources = Vec::new();
        for path in paths {
            if !path.is_file() {
                return Err(ConfigError::Invalid(format!(
                    "feed file {} does not exist or is not a file (MARKET_FEED)",
                    path.display()
                )));
            }
            let symbol = self
                .symbol
                .clone()
                .unwrap_or_else(|| crate::feed::symbol_from_path(&path));
            if symbols.contains(&symbol) {
                return Err(ConfigError::Invalid(format!(
                    "two feeds have the symbol {symbol:?}: give each instrument one file"
                )));
            }
            symbols.push(symbol);
            sources.push(FeedSource {
                path,
                symbol: self.symbol.clone(),
            });
        }
        Ok(sources)
    }
}

impl Config {
    /// The settings from the command line and the environment.
    ///
    /// Exits with code 2 and clap's message on a value that does not parse (and with code 0 for
    /// `--help` and `--version`).
    ///
    /// # Errors
    /// A value that parses but breaks a rule.
    pub fn from_env() -> Result<Config, ConfigError> {
        Args::parse().into_config()
    }
}

/// `$POD_NAME`, else the host name, else `market-service`.
fn default_identity() -> String {
    let non_empty = |s: String| {
        let s = s.trim().to_string();
        (!s.is_empty()).then_some(s)
    };
    std::env::var("POD_NAME")
        .ok()
        .and_then(non_empty)
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .and_then(non_empty)
        })
        .or_else(|| std::env::var("HOSTNAME").ok().and_then(non_empty))
        .unwrap_or_else(|| "market-service".to_string())
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 && rate <= 100_000.0 => Ok(rate),
        _ => Err(format!(
            "invalid rate {text:?}: use a number of quotes per second above 0 (at most 100000), for example 20 or 0.5"
        )),
    }
}

fn is_valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut argv = vec!["market-service"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv)
    }

    #[test]
    fn defaults_give_a_valid_config_with_the_shipped_feed() {
        let config = args(&["--identity", "a"]).unwrap().into_config().unwrap();
        assert_eq!(config.election.bucket, "market-election");
        assert_eq!(config.election.election, "market-feed");
        assert_eq!(
            config.election.timings.lease_duration,
            Duration::from_millis(500)
        );
        assert_eq!(config.feeds[0].path, PathBuf::from(DEFAULT_FEED));
        assert_eq!(config.rate, 20.0);
        assert_eq!(config.stream, "market-quotes");
    }

    #[test]
    fn a_bad_rate_is_refused() {
        for rate in ["0", "-1", "abc", "inf"] {
            let err = args(&[&format!("--rate={rate}")]).unwrap_err();
            assert!(err.to_string().contains("invalid rate"), "{err}");
        }
    }

    #[test]
    fn a_lease_shorter_than_the_renew_interval_is_refused() {
        let err = args(&[
            "--identity",
            "a",
            "--lease-duration",
            "100ms",
            "--renew-interval",
            "200ms",
        ])
        .unwrap()
        .into_config()
        .unwrap_err();
        let chain = crate::app::error_chain(&err);
        assert!(chain.contains("renew_interval 200ms"), "{chain}");
    }

    #[test]
    fn a_symbol_override_needs_exactly_one_feed() {
        let feed = format!("{DEFAULT_FEED},{DEFAULT_FEED}");
        let err = args(&["--identity", "a", "--feed", &feed, "--symbol", "X"])
            .unwrap()
            .into_config()
            .unwrap_err();
        assert!(err.to_string().contains("one feed only"), "{err}");
    }
}
