//! The application: loads the feeds, serves the admin endpoint, connects to NATS, then runs the
//! election and, while leading, the quote feed, until a signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, ConnectOptions};
use leader_election::{Election, ErrorKind, Lease, NatsStore};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Config, ConfigError, NatsSettings};
use crate::feed::{Feed, FeedError};
use crate::http::{Admin, Phase};
use crate::metrics::Metrics;
use crate::quotes::{FeedSettings, Publisher, QuoteStream, StreamError, TermEnd};

/// First pause after a failed start-up step; doubled after each failure up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between start-up attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Timeout of one connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of JetStream API calls at start-up (stream lookup and creation); a clustered stream
/// creation can take a second or two.
const SETUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the process stops with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A feed file cannot be used.
    #[error(transparent)]
    Feed(#[from] FeedError),
    /// The NATS credentials file cannot be read.
    #[error("cannot use the NATS credentials file (NATS_CREDS_FILE)")]
    Credentials(#[source] std::io::Error),
    /// The admin endpoint cannot listen.
    #[error("cannot listen on {addr} (MARKET_HTTP_ADDR)")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The quote stream is unusable.
    #[error("the quote stream cannot be used")]
    Stream(#[source] StreamError),
    /// The election failed in a way retrying will not fix.
    #[error("the election cannot run")]
    Election(#[source] leader_election::Error),
    /// Releasing leadership took longer than its bound.
    #[error("shutdown did not complete within {0:?}")]
    ShutdownTimedOut(Duration),
}

impl AppError {
    /// The process exit code: 2 for a setting or feed that cannot work (fix the configuration),
    /// 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Config(_) | AppError::Feed(_) | AppError::Credentials(_) => 2,
            _ => 1,
        }
    }
}

/// A failed connection attempt.
#[derive(Debug, thiserror::Error)]
enum ConnectFailure {
    /// The options could not be built (credentials).
    #[error(transparent)]
    Options(std::io::Error),
    /// The attempt failed. Retryable.
    #[error(transparent)]
    Connect(async_nats::ConnectError),
}

/// The error and all its sources, joined by `: `.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A configured application, ready to run: feeds loaded, admin endpoint bound.
pub struct App {
    config: Config,
    feeds: Arc<[Feed]>,
    credentials: Option<String>,
    metrics: Metrics,
    admin: Admin,
    listener: TcpListener,
}

impl App {
    /// Loads the feeds (logging and counting malformed rows, or refusing them), reads the
    /// credentials file and binds the admin endpoint. Nothing connects yet.
    ///
    /// # Errors
    /// [`AppError::Feed`], [`AppError::Credentials`] (exit code 2), [`AppError::Listen`].
    pub async fn build(config: Config) -> Result<App, AppError> {
        let metrics = Metrics::new();
        let mut feeds = Vec::with_capacity(config.feeds.len());
        for source in &config.feeds {
            let feed = Feed::load(
                &source.path,
                source.symbol.as_deref(),
                config.on_bad_row,
                |bad| {
                    warn!(
                        location = %format_args!("{}:{}", bad.path.display(), bad.line),
                        reason = %bad.reason,
                        "Skipping malformed feed row"
                    );
                    let symbol = source
                        .symbol
                        .clone()
                        .unwrap_or_else(|| crate::feed::symbol_from_path(&source.path));
                    metrics.row_skipped(&symbol);
                },
            )?;
            info!(symbol = %feed.symbol, bars = feed.bars.len(), file = %feed.path.display(), "Feed loaded");
            feeds.push(feed);
        }
        let credentials = match &config.nats.creds_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(AppError::Credentials)?;
                // Parse once now, so a malformed file is a configuration error, not a retry loop.
                ConnectOptions::with_credentials(&text).map_err(AppError::Credentials)?;
                Some(text)
            }
            None => None,
        };
        let listener = TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| AppError::Listen {
                addr: config.http_addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| AppError::Listen {
            addr: config.http_addr,
            source,
        })?;
        info!(addr = %addr, "HTTP listening");
        let admin = Admin::new(
            &config.election.identity,
            &config.election.election,
            metrics.clone(),
        );
        Ok(App {
            config,
            feeds: feeds.into(),
            credentials,
            metrics,
            admin,
            listener,
        })
    }

    /// Runs until `shutdown` is cancelled (then releases leadership and returns `Ok`) or a
    /// failure that retrying cannot fix.
    ///
    /// # Errors
    /// [`AppError::Stream`], [`AppError::Election`] (exit code 1), [`AppError::ShutdownTimedOut`].
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let App {
            config,
            feeds,
            credentials,
            metrics,
            admin,
            listener,
        } = self;
        let http_stop = CancellationToken::new();
        let http = tokio::spawn(admin.clone().serve(listener, http_stop.clone()));
        let runner = Runner {
            config,
            feeds,
            credentials,
            metrics,
            admin,
            shutdown,
        };
        let result = runner.run().await;
        http_stop.cancel();
        // Open keep-alive connections would hold a graceful stop; do not wait for them long.
        let _ = tokio::time::timeout(Duration::from_millis(500), http).await;
        result
    }
}

struct Runner {
    config: Config,
    feeds: Arc<[Feed]>,
    credentials: Option<String>,
    metrics: Metrics,
    admin: Admin,
    shutdown: CancellationToken,
}

/// The leader work of one term, and its lease.
struct Term {
    lease: Lease,
    work: Option<JoinHandle<TermEnd>>,
}

impl Runner {
    async fn run(self) -> Result<(), AppError> {
        let identity = self.config.election.identity.clone();
        info!(
            identity = %identity,
            election = %self.config.election.election,
            bucket = %self.config.election.bucket,
            stream = %self.config.stream,
            "Starting"
        );
        let Some(client) = self.connect().await? else {
            return self.finish(None, None).await;
        };
        self.admin.set_client(client.clone());
        // First the server version and the election bucket (the library refuses servers
        // older than 2.11 before anything is written), then the quote stream, and only then
        // does this replica campaign: a replica never leads without a usable stream.
        self.admin
            .set_phase(Phase::Starting("opening the election bucket".into()));
        let store = self
            .retry(
                "Opening the election bucket",
                |error| Phase::Starting(format!("opening the election bucket: {error}")),
                |err: &leader_election::Error| err.kind().is_retryable(),
                || NatsStore::open(client.clone(), &self.config.election),
            )
            .await
            .map_err(AppError::Election)?;
        let Some(store) = store else {
            return self.finish(None, None).await;
        };
        self.admin
            .set_phase(Phase::Starting("opening the quote stream".into()));
        let symbols: Vec<String> = self.feeds.iter().map(|f| f.symbol.clone()).collect();
        let stream = self
            .retry(
                "Opening the quote stream",
                |error| Phase::Starting(format!("opening the quote stream: {error}")),
                StreamError::is_retryable,
                || {
                    QuoteStream::open(
                        client.clone(),
                        &self.config.stream,
                        self.config.stream_replicas,
                        &symbols,
                        SETUP_TIMEOUT,
                    )
                },
            )
            .await
            .map_err(AppError::Stream)?;
        let Some(stream) = stream else {
            return self.finish(None, None).await;
        };
        let election = Election::builder(self.config.election.clone())
            .metrics(Arc::new(self.metrics.clone()))
            .start_with_store(Arc::new(store))
            .map_err(AppError::Election)?;
        let election = Arc::new(election);
        self.admin.set_election(&election);
        self.admin.set_phase(Phase::Running);
        info!(identity = %identity, "Election running; standing by");

        let timings = self.config.election.timings;
        let publisher = Publisher::new(
            stream,
            self.feeds.clone(),
            FeedSettings {
                rate: self.config.rate,
                loop_feed: self.config.loop_feed,
                identity,
                retry_delay: (timings.renew_interval / 2)
                    .clamp(Duration::from_millis(10), Duration::from_millis(250)),
                request_timeout: (timings.step_down_after() / 2).max(Duration::from_millis(10)),
            },
            self.metrics.clone(),
        );
        match self.lead(&election, &publisher).await {
            Ok(term) => self.finish(Some(election), term).await,
            Err(err) => {
                // The election task is gone: nothing is left to release.
                Err(err)
            }
        }
    }

    /// Connects to NATS, retrying with backoff; `Ok(None)` when a signal came first.
    async fn connect(&self) -> Result<Option<Client>, AppError> {
        let nats = &self.config.nats;
        let client = self
            .retry(
                "Connecting to NATS",
                Phase::Connecting,
                |err: &ConnectFailure| matches!(err, ConnectFailure::Connect(_)),
                || async {
                    let options = connect_options(nats, self.credentials.as_deref(), &self.config)
                        .map_err(ConnectFailure::Options)?;
                    options
                        .connect(nats.urls.clone())
                        .await
                        .map_err(ConnectFailure::Connect)
                },
            )
            .await
            .map_err(|err| match err {
                ConnectFailure::Options(err) => AppError::Credentials(err),
                ConnectFailure::Connect(err) => unreachable!("retried: {err}"),
            })?;
        if let Some(client) = &client {
            let server = client.server_info();
            info!(
                server = %server.server_name,
                version = %server.version,
                ping_interval_ms = ping_interval(self.config.election.timings.lease_duration).as_millis() as u64,
                "Connected to NATS"
            );
        }
        Ok(client)
    }

    /// Runs `step` until it succeeds, retrying with backoff (doubling up to [`MAX_BACKOFF`])
    /// while `retryable` says so, and logging each failure; `Ok(None)` when a signal came first.
    async fn retry<T, E, F, Fut>(
        &self,
        what: &'static str,
        phase: fn(String) -> Phase,
        retryable: impl Fn(&E) -> bool,
        mut step: F,
    ) -> Result<Option<T>, E>
    where
        E: std::error::Error + 'static,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut delay = INITIAL_BACKOFF;
        for attempt in 1u64.. {
            let result = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(None),
                result = step() => result,
            };
            match result {
                Ok(value) => return Ok(Some(value)),
                Err(err) if retryable(&err) => {
                    let chain = error_chain(&err);
                    warn!(attempt, error = %chain, retry_in_ms = delay.as_millis() as u64, "{what} failed; retrying");
                    self.admin.set_phase(phase(chain));
                    tokio::select! {
                        biased;
                        _ = self.shutdown.cancelled() => return Ok(None),
                        _ = sleep(delay) => {}
                    }
                    delay = (delay * 2).min(MAX_BACKOFF);
                }
                Err(err) => return Err(err),
            }
        }
        unreachable!("the attempt counter does not run out")
    }

    /// Leads whenever elected, until a signal; returns the term in progress at that moment.
    async fn lead(
        &self,
        election: &Election,
        publisher: &Publisher,
    ) -> Result<Option<Term>, AppError> {
        let identity = &self.config.election.identity;
        loop {
            let lease = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(None),
                lease = election.leading() => lease.map_err(AppError::Election)?,
            };
            info!(
                election = lease.election(),
                identity = %identity,
                token = lease.token().revision,
                previous = lease.previous_leader().map(|h| h.identity.as_str()),
                leaderless_ms = lease.leaderless().map(milliseconds),
                "Leadership acquired"
            );
            // The guard makes resign and shutdown wait for the work before releasing the key.
            let guard = lease.guard();
            let mut work = {
                let publisher = publisher.clone();
                let lease = lease.clone();
                tokio::spawn(async move {
                    let _guard = guard;
                    publisher.run_term(&lease).await
                })
            };
            let end = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    return Ok(Some(Term { lease, work: Some(work) }));
                }
                end = &mut work => end,
            };
            match end {
                Ok(TermEnd::Ended) => {}
                Ok(TermEnd::Rejected(err)) => {
                    warn!(token = lease.token().revision, error = %err, "Resigning: the quote stream rejected a publish, another publisher is ahead");
                    resign(election).await;
                }
                Ok(TermEnd::Failed(err)) => {
                    error!(token = lease.token().revision, error = %err, "Resigning: the feed cannot go on here");
                    resign(election).await;
                }
                Err(panic) => {
                    error!(token = lease.token().revision, error = %panic, "Resigning: the feed task failed");
                    resign(election).await;
                }
            }
            let term = Term { lease, work: None };
            // The election cancels the term at its step-down point at the latest; if it has not
            // after a further lease, its task is stuck or gone, and only a restart helps.
            loop {
                tokio::select! {
                    biased;
                    _ = self.shutdown.cancelled() => return Ok(Some(term)),
                    _ = term.lease.cancelled() => break,
                    _ = sleep(self.config.election.timings.lease_duration) => {
                        election.health().map_err(AppError::Election)?;
                    }
                }
            }
            term.finish(identity).await;
        }
    }

    /// Stops: releases leadership (the election cancels the work, waits for it to drain, then
    /// deletes the key at its revision), within drain timeout + lease + 1 s.
    async fn finish(
        &self,
        election: Option<Arc<Election>>,
        term: Option<Term>,
    ) -> Result<(), AppError> {
        self.admin.set_phase(Phase::ShuttingDown);
        let Some(mut election) = election else {
            info!(outcome = "not started", "Shutdown complete");
            return Ok(());
        };
        let timings = self.config.election.timings;
        let bound = timings.drain_timeout + timings.lease_duration + Duration::from_secs(1);
        // The admin endpoint holds only weak references, upgraded for the length of a call.
        let election = loop {
            match Arc::try_unwrap(election) {
                Ok(election) => break election,
                Err(shared) => {
                    election = shared;
                    tokio::task::yield_now().await;
                }
            }
        };
        let was_leader = term.is_some();
        let identity = &self.config.election.identity;
        let stop_work = async {
            if let Some(term) = term {
                term.finish(identity).await;
            }
        };
        let (released, ()) = tokio::time::timeout(bound, async {
            tokio::join!(election.shutdown(), stop_work)
        })
        .await
        .map_err(|_| AppError::ShutdownTimedOut(bound))?;
        match released {
            Ok(()) if was_leader => info!(outcome = "leadership released", "Shutdown complete"),
            Ok(()) => info!(outcome = "was not leading", "Shutdown complete"),
            Err(err) if err.kind() == ErrorKind::DrainTimedOut => warn!(
                outcome = "lease left to expire",
                error = %error_chain(&err),
                "Shutdown complete"
            ),
            Err(err) => {
                warn!(outcome = "election ended with an error", error = %error_chain(&err), "Shutdown complete")
            }
        }
        Ok(())
    }
}

impl Term {
    /// Waits for the work to stop and the term to end, then logs the loss.
    async fn finish(self, identity: &str) {
        if let Some(work) = self.work {
            let _ = work.await;
        }
        self.lease.cancelled().await;
        info!(
            election = self.lease.election(),
            identity = %identity,
            token = self.lease.token().revision,
            cause = self.lease.end_cause().map_or("unknown", |c| c.as_str()),
            "Leadership lost"
        );
    }
}

async fn resign(election: &Election) {
    if let Err(err) = election.resign().await {
        warn!(error = %error_chain(&err), "Resigning did not release the lease cleanly; it will expire");
    }
}

fn milliseconds(duration: Duration) -> f64 {
    // Microsecond resolution: a graceful hand-over takes well under a millisecond.
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

/// Client pings often enough that a hung server is noticed within a few leases, not minutes.
fn ping_interval(lease_duration: Duration) -> Duration {
    (lease_duration * 4).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

fn connect_options(
    nats: &NatsSettings,
    credentials: Option<&str>,
    config: &Config,
) -> Result<ConnectOptions, std::io::Error> {
    let timings = config.election.timings;
    let mut options = match credentials {
        Some(text) => ConnectOptions::with_credentials(text)?,
        None => ConnectOptions::new(),
    };
    options = options
        .name(format!("market-service {}", config.election.identity))
        .connection_timeout(CONNECT_TIMEOUT)
        .ping_interval(ping_interval(timings.lease_duration))
        .request_timeout(Some(
            timings.step_down_after().max(Duration::from_millis(100)),
        ));
    // No event callback: async-nats logs connection events (disconnected, connected) itself.
    if let Some((user, password)) = &nats.user_password {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &nats.token {
        options = options.token(token.clone());
    }
    if let Some(ca) = &nats.tls_ca_file {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &nats.tls_client {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options)
}
