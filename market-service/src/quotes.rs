//! Quotes on a JetStream stream: the stream itself, fenced publishing, and the leader's work of
//! replaying the feeds from where the previous leader stopped.
//!
//! # Why the sequence has no gap and no duplicate across a failover
//!
//! - **Resume from the stream, read at the stream leader.** A new leader reads the last quote of
//!   each symbol with the stream's message-get API (`STREAM.MSG.GET`, answered by the stream
//!   leader, so it reflects every acknowledged publish; a direct get may come from a lagging
//!   replica) and goes on with the next bar.
//! - **Every publish is chained** on its subject: `Nats-Expected-Last-Subject-Sequence` is the
//!   stream sequence of the previous quote of that symbol (0 for the first). A deposed leader's
//!   late publish carries a sequence the new leader has moved past, and the server rejects it
//!   (error 10071); the process then resigns.
//! - **A refused publish is looked at before it counts as a rejection.** nats-server 2.15 checks
//!   the expected sequence before the message id, so a retry of a quote that did land (its
//!   acknowledgement was lost) is refused like a foreign publish. After a refusal the publisher
//!   reads the last quote: if it is this very quote, from this term or an older one (fencing
//!   tokens compare within a bucket epoch), it counts as published and the feed goes on after
//!   it; anything else, in particular a quote from a newer term, means another leader is ahead,
//!   and the process resigns.
//! - **Every quote has a message id** `<SYMBOL>-<seq>`, so any path on which the server looks
//!   at the id first (a duplicate acknowledgement) also counts the quote once.
//! - **The lease is checked before each publish** ([`Lease::is_valid`]), and work stops when its
//!   cancellation token fires, before any standby can take over.
//!
//! Each quote also carries the publisher's identity and fencing token in headers, so a reader
//! of the stream can tell terms apart.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use leader_election::jetstream_api::{
    self, CallError, EXPECTED_LAST_SUBJECT_SEQUENCE, MESSAGE_ID, error_code as code,
};
use leader_election::{FencingToken, Lease};
use serde::{Deserialize, Serialize, Serializer};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use tokio::time::{MissedTickBehavior, sleep};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::feed::{Bar, Feed};
use crate::metrics::Metrics;

/// Quotes of `SYMBOL` go to `market.quotes.SYMBOL`.
pub const SUBJECT_PREFIX: &str = "market.quotes";
/// Header naming the replica that published a quote.
pub const PUBLISHER_HEADER: &str = "Market-Publisher";
/// Header carrying the fencing token (lease revision) of the term that published a quote.
pub const FENCING_TOKEN_HEADER: &str = "Market-Fencing-Token";
/// Header carrying the election bucket's epoch of that token: tokens compare within an epoch.
pub const FENCING_EPOCH_HEADER: &str = "Market-Fencing-Epoch";
/// Quotes kept per symbol when this process creates the stream: 100,000 quotes are 83 minutes
/// at 20 per second, and a per-subject limit never drops the last quote, which resuming needs.
pub const MAX_QUOTES_PER_SYMBOL: i64 = 100_000;

/// The subject of a symbol's quotes.
pub fn subject(symbol: &str) -> String {
    format!("{SUBJECT_PREFIX}.{symbol}")
}

/// One bar of the feed as published: the JSON payload of a quote message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    /// The instrument.
    pub symbol: String,
    /// Per-symbol sequence number, from 1; bar `seq` of the feed, counting on across loops.
    pub seq: u64,
    /// The bar's time as recorded, without time zone: `2017-04-19T09:00:00`.
    pub time: String,
    /// First price.
    pub open: f64,
    /// Highest price.
    pub high: f64,
    /// Lowest price.
    pub low: f64,
    /// Last price.
    pub close: f64,
    /// Volume; written as an integer when it is one.
    #[serde(serialize_with = "volume")]
    pub volume: f64,
}

const BAR_TIME: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");

impl Quote {
    /// The quote with sequence number `seq` of `feed`.
    pub fn new(feed: &Feed, seq: u64) -> Quote {
        let Bar {
            time,
            open,
            high,
            low,
            close,
            volume,
        } = *feed.bar(seq);
        Quote {
            symbol: feed.symbol.clone(),
            seq,
            time: time.format(BAR_TIME).unwrap_or_default(),
            open,
            high,
            low,
            close,
            volume,
        }
    }

    /// The message id that makes a repeated publish of this quote a duplicate.
    pub fn message_id(&self) -> String {
        format!("{}-{}", self.symbol, self.seq)
    }
}

fn volume<S: Serializer>(volume: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    // Integral volumes (EURUSD, GOOG) stay integers; 2^53 is where f64 stops being exact.
    if volume.fract() == 0.0 && volume.abs() < 9_007_199_254_740_992.0 {
        serializer.serialize_i64(*volume as i64)
    } else {
        serializer.serialize_f64(*volume)
    }
}

/// The last quote of a symbol in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastQuote {
    /// Its sequence number.
    pub seq: u64,
    /// Its stream sequence: the expected last subject sequence of the next publish.
    pub stream_sequence: u64,
    /// The fencing token of the term that published it, from its headers.
    pub token: Option<FencingToken>,
}

/// The outcome of an acknowledged publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The stream sequence of the quote.
    pub stream_sequence: u64,
    /// Whether the quote was already in the stream (same message id).
    pub duplicate: bool,
}

/// What a stream call can fail with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamErrorKind {
    /// The stream exists with settings the feed cannot use, or overlaps another stream.
    Misconfigured,
    /// JetStream is not enabled.
    JetStreamUnavailable,
    /// Another publisher moved the subject's sequence on: this process no longer leads.
    Rejected,
    /// No answer in time, no responders, a lost connection or a busy stream. Retryable.
    Unavailable,
    /// Anything else.
    Other,
}

/// A failed stream call: a kind to act on and what happened.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StreamError {
    kind: StreamErrorKind,
    message: String,
}

impl StreamError {
    fn new(kind: StreamErrorKind, message: impl Into<String>) -> Self {
        StreamError {
            kind,
            message: message.into(),
        }
    }

    /// The kind of failure.
    pub fn kind(&self) -> StreamErrorKind {
        self.kind
    }

    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        self.kind == StreamErrorKind::Unavailable
    }
}

/// The quote stream.
#[derive(Clone)]
pub struct QuoteStream {
    client: Client,
    stream: stream::Stream<()>,
    name: String,
}

impl QuoteStream {
    /// Opens the stream `name`, creating it when missing (file storage, `replicas` replicas,
    /// subjects `market.quotes.>`). An existing stream must take the subjects of all `symbols`.
    /// `timeout` bounds each JetStream API request.
    ///
    /// # Errors
    /// [`StreamErrorKind::Misconfigured`] naming the setting, [`StreamErrorKind::JetStreamUnavailable`],
    /// [`StreamErrorKind::Unavailable`] (retryable).
    pub async fn open(
        client: Client,
        name: &str,
        replicas: usize,
        symbols: &[String],
        timeout: Duration,
    ) -> Result<QuoteStream, StreamError> {
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(timeout)
            .build(client.clone());
        let mut created = false;
        let info = loop {
            match jetstream.get_stream(name).await {
                Ok(mut stream) => {
                    let info = stream.info().await.map_err(|err| {
                        StreamError::new(
                            StreamErrorKind::Unavailable,
                            format!("reading the settings of stream {name:?} failed: {err}"),
                        )
                    })?;
                    break info.clone();
                }
                Err(err) => match err.kind() {
                    jetstream::context::GetStreamErrorKind::JetStream(api)
                        if api.error_code().0 == code::STREAM_NOT_FOUND && !created =>
                    {
                        create(&jetstream, name, replicas).await?;
                        created = true;
                    }
                    jetstream::context::GetStreamErrorKind::JetStream(api)
                        if code::JETSTREAM_NOT_ENABLED.contains(&api.error_code().0) =>
                    {
                        return Err(jetstream_unavailable(&err));
                    }
                    _ if err.to_string().contains("no responders") => {
                        return Err(jetstream_unavailable(&err));
                    }
                    _ => {
                        return Err(StreamError::new(
                            StreamErrorKind::Unavailable,
                            format!("reading stream {name:?} failed: {err}"),
                        ));
                    }
                },
            }
        };
        check(&info, symbols)?;
        if info.config.num_replicas != replicas {
            warn!(
                stream = name,
                replicas = info.config.num_replicas,
                configured = replicas,
                "the quote stream's replica count differs from MARKET_STREAM_REPLICAS; using it as it is"
            );
        }
        let stream = jetstream.get_stream_no_info(name).await.map_err(|err| {
            StreamError::new(StreamErrorKind::Other, format!("stream {name:?}: {err}"))
        })?;
        Ok(QuoteStream {
            client,
            stream,
            name: name.to_string(),
        })
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The last quote of `symbol`, read from the stream leader; `None` when there is none.
    ///
    /// Cancel safe.
    ///
    /// # Errors
    /// [`StreamErrorKind::Unavailable`] (retryable), [`StreamErrorKind::Other`] when the last
    /// message on the subject is not a quote.
    pub async fn last_quote(&self, symbol: &str) -> Result<Option<LastQuote>, StreamError> {
        let subject = subject(symbol);
        match self.stream.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => {
                let quote: Quote = serde_json::from_slice(&message.payload).map_err(|err| {
                    StreamError::new(
                        StreamErrorKind::Other,
                        format!(
                            "the last message on {subject} (stream sequence {}) is not a quote, so the feed cannot resume: {err}",
                            message.sequence
                        ),
                    )
                })?;
                let header = |name: &str| {
                    message
                        .headers
                        .get(name)
                        .and_then(|v| v.as_str().parse::<u64>().ok())
                };
                let token = match (header(FENCING_EPOCH_HEADER), header(FENCING_TOKEN_HEADER)) {
                    (Some(epoch), Some(revision)) => Some(FencingToken { epoch, revision }),
                    _ => None,
                };
                Ok(Some(LastQuote {
                    seq: quote.seq,
                    stream_sequence: message.sequence,
                    token,
                }))
            }
            Err(err) => match err.kind() {
                stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
                stream::LastRawMessageErrorKind::JetStream(api)
                    if api.error_code().0 == code::NO_MESSAGE_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(StreamError::new(
                    StreamErrorKind::Unavailable,
                    format!("reading the last quote on {subject} failed: {err}"),
                )),
            },
        }
    }

    /// Publishes `quote`, accepted only when the last message on its subject is at stream
    /// sequence `expected` (0: none). `identity` and `token` go into headers.
    ///
    /// Dropping the future leaves the quote published or not. nats-server checks the expected
    /// sequence before the message id: a retry of a quote that did land is refused as
    /// [`StreamErrorKind::Rejected`], not acknowledged as a duplicate; read the last quote to
    /// tell the two apart.
    ///
    /// # Errors
    /// [`StreamErrorKind::Rejected`] when another publisher moved the subject on,
    /// [`StreamErrorKind::Unavailable`] (retryable), [`StreamErrorKind::Other`].
    pub async fn publish(
        &self,
        quote: &Quote,
        expected: u64,
        identity: &str,
        token: FencingToken,
        timeout: Duration,
    ) -> Result<Published, StreamError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            EXPECTED_LAST_SUBJECT_SEQUENCE,
            expected.to_string().as_str(),
        );
        headers.insert(MESSAGE_ID, quote.message_id().as_str());
        headers.insert(PUBLISHER_HEADER, identity);
        headers.insert(FENCING_TOKEN_HEADER, token.revision.to_string().as_str());
        headers.insert(FENCING_EPOCH_HEADER, token.epoch.to_string().as_str());
        // Serializing a struct of strings and numbers cannot fail.
        let payload = Bytes::from(serde_json::to_vec(quote).unwrap_or_default());
        let subject = subject(&quote.symbol);
        let ack = jetstream_api::publish(&self.client, subject.clone(), headers, payload, timeout)
            .await
            .map_err(|err| {
                let kind = match &err {
                    CallError::Api(e) => match e.err_code {
                        code::WRONG_LAST_SEQUENCE => StreamErrorKind::Rejected,
                        code::WRITE_IN_FLIGHT => StreamErrorKind::Unavailable,
                        _ if e.code == 503 => StreamErrorKind::Unavailable,
                        _ => StreamErrorKind::Other,
                    },
                    CallError::Unreadable(_) => StreamErrorKind::Other,
                    _ => StreamErrorKind::Unavailable,
                };
                StreamError::new(
                    kind,
                    format!("publishing {} to {subject}: {err}", quote.message_id()),
                )
            })?;
        Ok(Published {
            stream_sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }
}

async fn create(
    jetstream: &jetstream::Context,
    name: &str,
    replicas: usize,
) -> Result<(), StreamError> {
    let config = stream::Config {
        name: name.to_string(),
        description: Some("market-service quotes, one subject per symbol".to_string()),
        subjects: vec![format!("{SUBJECT_PREFIX}.>")],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        retention: stream::RetentionPolicy::Limits,
        max_messages_per_subject: MAX_QUOTES_PER_SYMBOL,
        ..Default::default()
    };
    match jetstream.create_stream(config).await {
        Ok(_) => {
            info!(
                stream = name,
                replicas, "created the quote stream {name:?} on {SUBJECT_PREFIX}.>"
            );
            Ok(())
        }
        Err(err) => {
            let api_code = match err.kind() {
                jetstream::context::CreateStreamErrorKind::JetStream(api) => {
                    Some(api.error_code().0)
                }
                _ => None,
            };
            match api_code {
                // Another replica created it at the same moment: its settings are checked next.
                Some(code::STREAM_NAME_IN_USE) => Ok(()),
                Some(code::SUBJECTS_OVERLAP) => Err(StreamError::new(
                    StreamErrorKind::Misconfigured,
                    format!(
                        "cannot create stream {name:?}: another stream already takes subjects under {SUBJECT_PREFIX}.>; set MARKET_STREAM to that stream's name or remove it ({err})"
                    ),
                )),
                Some(code) if code::JETSTREAM_NOT_ENABLED.contains(&code) => {
                    Err(jetstream_unavailable(&err))
                }
                _ if err.to_string().contains("already in use") => Ok(()),
                _ => Err(StreamError::new(
                    StreamErrorKind::Unavailable,
                    format!("creating stream {name:?} failed: {err}"),
                )),
            }
        }
    }
}

/// Refuses a stream the feed cannot use, naming the setting and the fix. Existing streams are
/// never changed here: other services may depend on them.
fn check(info: &stream::Info, symbols: &[String]) -> Result<(), StreamError> {
    let c = &info.config;
    let fail = |problem: String| {
        Err(StreamError::new(
            StreamErrorKind::Misconfigured,
            format!("stream {:?} {problem}", c.name),
        ))
    };
    for symbol in symbols {
        let subject = subject(symbol);
        if !c
            .subjects
            .iter()
            .any(|pattern| subject_matches(pattern, &subject))
        {
            return fail(format!(
                "exists with subjects {:?}, which do not cover {subject}: add {SUBJECT_PREFIX}.> to its subjects or choose another MARKET_STREAM",
                c.subjects
            ));
        }
    }
    if c.mirror.is_some() {
        return fail(
            "is a mirror, which cannot be published to: choose another MARKET_STREAM".into(),
        );
    }
    if c.sealed {
        return fail("is sealed: choose another MARKET_STREAM".into());
    }
    if c.no_ack {
        return fail(
            "does not acknowledge publishes (no_ack), so no publish can be fenced: choose another MARKET_STREAM"
                .into(),
        );
    }
    if c.retention != stream::RetentionPolicy::Limits {
        return fail(format!(
            "has {:?} retention, which removes consumed quotes, so a new leader could not find where to resume: use limits retention",
            c.retention
        ));
    }
    if c.duplicate_window.is_zero() {
        warn!(
            stream = %c.name,
            "the quote stream has no duplicate window: a publish retried after a timeout is rejected instead of recognised"
        );
    }
    Ok(())
}

/// Whether the stream subject `pattern` (with `*` and `>` wildcards) matches `subject`.
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for token in pattern.split('.') {
        match (token, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (token, Some(found)) if token == found => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

fn jetstream_unavailable(err: &dyn std::fmt::Display) -> StreamError {
    StreamError::new(
        StreamErrorKind::JetStreamUnavailable,
        format!(
            "JetStream did not answer: run nats-server with JetStream enabled (-js) and give the account JetStream access ({err})"
        ),
    )
}

/// How one term of leader work ended.
#[derive(Debug)]
pub enum TermEnd {
    /// The lease's cancellation token fired, or the lease ran out.
    Ended,
    /// The stream refused a quote: another publisher is ahead. The process must resign.
    Rejected(StreamError),
    /// An error that more attempts will not fix (for example a foreign message on a quote
    /// subject). The process resigns, so another replica can try.
    Failed(StreamError),
}

/// Settings of the leader's work.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    /// Quotes per second per symbol.
    pub rate: f64,
    /// Whether a feed restarts after its last bar.
    pub loop_feed: bool,
    /// This replica's identity, for the publisher header.
    pub identity: String,
    /// Pause between attempts after a retryable error.
    pub retry_delay: Duration,
    /// Longest wait for one acknowledgement (further bounded by the lease's time left).
    pub request_timeout: Duration,
}

/// Replays the feeds as quotes while this process leads.
#[derive(Clone)]
pub struct Publisher {
    stream: QuoteStream,
    feeds: Arc<[Feed]>,
    settings: FeedSettings,
    metrics: Metrics,
}

impl Publisher {
    /// A publisher of `feeds` to `stream`.
    pub fn new(
        stream: QuoteStream,
        feeds: Arc<[Feed]>,
        settings: FeedSettings,
        metrics: Metrics,
    ) -> Self {
        Publisher {
            stream,
            feeds,
            settings,
            metrics,
        }
    }

    /// Runs one term: for each symbol, resumes after the last quote in the stream and publishes
    /// the following bars at the configured rate, until the lease ends or a publish is refused.
    /// Stops every symbol when one is refused.
    ///
    /// Cancel safe: a publish in flight is either done or not, and the next term finds out.
    pub async fn run_term(&self, lease: &Lease) -> TermEnd {
        // A child token: cancelling it (when one symbol is refused) stops the other symbols
        // without touching the lease.
        let stop = lease.cancellation_token();
        let symbols = self
            .feeds
            .iter()
            .map(|feed| self.run_symbol(feed, lease, &stop));
        let ends = futures::future::join_all(symbols).await;
        ends.into_iter()
            .find(|end| !matches!(end, TermEnd::Ended))
            .unwrap_or(TermEnd::Ended)
    }

    async fn run_symbol(&self, feed: &Feed, lease: &Lease, stop: &CancellationToken) -> TermEnd {
        let token = lease.token();
        let symbol = feed.symbol.as_str();
        let (mut seq, mut expected) = match self.resume(feed, lease, stop).await {
            Ok(Some(position)) => position,
            Ok(None) => return TermEnd::Ended,
            Err(err) => {
                error!(symbol, error = %err, "Cannot resume the feed");
                stop.cancel();
                return TermEnd::Failed(err);
            }
        };
        let len = feed.bars.len() as u64;
        info!(symbol, seq, token = token.revision, path = %feed.path.display(), "Feed resumed");
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / self.settings.rate));
        // After a stall, keep the rate instead of catching up in a burst.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return TermEnd::Ended,
                _ = ticker.tick() => {}
            }
            if seq > len && !self.settings.loop_feed {
                info!(symbol, last = len, "Feed finished");
                stop.cancelled().await;
                return TermEnd::Ended;
            }
            let quote = Quote::new(feed, seq);
            // Attempts of one quote: the same message id and expected sequence every time.
            loop {
                if !lease.is_valid() {
                    return TermEnd::Ended;
                }
                let timeout = lease.time_left().min(self.settings.request_timeout);
                let result = tokio::select! {
                    biased;
                    _ = stop.cancelled() => return TermEnd::Ended,
                    result = self.stream.publish(&quote, expected, &self.settings.identity, token, timeout) => result,
                };
                match result {
                    Ok(published) => {
                        expected = published.stream_sequence;
                        self.metrics.quote_published(symbol, seq);
                        if published.duplicate {
                            info!(
                                symbol,
                                seq,
                                stream_sequence = expected,
                                "Quote was already in the stream"
                            );
                        }
                        seq += 1;
                        break;
                    }
                    Err(err) if err.kind() == StreamErrorKind::Rejected => {
                        // Our own earlier attempt that landed, or a quote an older term slipped
                        // in just before this term began, are refused like a foreign publish.
                        // They hold this very quote from this or an older term: go on after it.
                        // A quote from a newer term means this process no longer leads.
                        let last = match self.read_last(symbol, lease, stop).await {
                            None => return TermEnd::Ended,
                            Some(Err(read)) if read.is_retryable() => {
                                warn!(symbol, seq, error = %read, "Reading the last quote failed; retrying");
                                tokio::select! {
                                    _ = stop.cancelled() => return TermEnd::Ended,
                                    _ = sleep(self.settings.retry_delay) => {}
                                }
                                continue;
                            }
                            Some(last) => last.ok().flatten(),
                        };
                        match last {
                            Some(last)
                                if last.seq == quote.seq
                                    && last.token.is_some_and(|t| t <= token) =>
                            {
                                info!(
                                    symbol,
                                    seq,
                                    stream_sequence = last.stream_sequence,
                                    publisher_token = last.token.map(|t| t.revision),
                                    "Quote was already in the stream"
                                );
                                expected = last.stream_sequence;
                                self.metrics.quote_published(symbol, seq);
                                seq += 1;
                                break;
                            }
                            _ => {
                                warn!(
                                    symbol,
                                    seq,
                                    token = token.revision,
                                    expected,
                                    error = %err,
                                    last_seq = last.map(|l| l.seq),
                                    last_token = last.and_then(|l| l.token).map(|t| t.revision),
                                    "Quote publish rejected"
                                );
                                self.metrics.publish_rejected();
                                stop.cancel();
                                return TermEnd::Rejected(err);
                            }
                        }
                    }
                    Err(err) if err.is_retryable() => {
                        warn!(symbol, seq, error = %err, "Quote publish failed; retrying");
                        tokio::select! {
                            _ = stop.cancelled() => return TermEnd::Ended,
                            _ = sleep(self.settings.retry_delay) => {}
                        }
                    }
                    Err(err) => {
                        error!(symbol, seq, error = %err, "Quote publish failed");
                        stop.cancel();
                        return TermEnd::Failed(err);
                    }
                }
            }
        }
    }

    /// The next sequence number and the expected last subject sequence, read from the stream;
    /// `None` when the term ended first.
    async fn resume(
        &self,
        feed: &Feed,
        lease: &Lease,
        stop: &CancellationToken,
    ) -> Result<Option<(u64, u64)>, StreamError> {
        loop {
            match self.read_last(&feed.symbol, lease, stop).await {
                None => return Ok(None),
                Some(Ok(None)) => return Ok(Some((1, 0))),
                Some(Ok(Some(last))) => return Ok(Some((last.seq + 1, last.stream_sequence))),
                Some(Err(err)) if err.is_retryable() => {
                    warn!(symbol = %feed.symbol, error = %err, "Reading the last quote failed; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(None),
                        _ = sleep(self.settings.retry_delay) => {}
                    }
                }
                Some(Err(err)) => return Err(err),
            }
        }
    }

    /// The last quote of `symbol`, read from the stream leader; `None` when the term ends first
    /// (cancelled, or the lease runs out while reading). A read that outlasts the lease's time
    /// left while renewals keep the term going is a retryable error, not the end of the term:
    /// a just-created replicated stream may not answer for a while, and the leader must not
    /// then hold its lease without publishing.
    async fn read_last(
        &self,
        symbol: &str,
        lease: &Lease,
        stop: &CancellationToken,
    ) -> Option<Result<Option<LastQuote>, StreamError>> {
        if !lease.is_valid() {
            return None;
        }
        let time_left = lease.time_left();
        let read = tokio::time::timeout(time_left, self.stream.last_quote(symbol));
        tokio::select! {
            biased;
            _ = stop.cancelled() => None,
            result = read => match result {
                Ok(result) => Some(result),
                Err(_) if lease.is_valid() => Some(Err(StreamError::new(
                    StreamErrorKind::Unavailable,
                    format!("reading the last quote of {symbol} took longer than {time_left:?}"),
                ))),
                Err(_) => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn stream_subjects_match_like_nats() {
        let subject = "market.quotes.EURUSD";
        for pattern in [
            "market.quotes.>",
            "market.>",
            ">",
            "market.quotes.*",
            "market.*.EURUSD",
            subject,
        ] {
            assert!(subject_matches(pattern, subject), "{pattern}");
        }
        for pattern in [
            "market.quotes",
            "market.quotes.GOOG",
            "market.*",
            "other.>",
            "market.quotes.EURUSD.x",
            "*",
        ] {
            assert!(!subject_matches(pattern, subject), "{pattern}");
        }
    }

    #[test]
    fn a_quote_is_bar_seq_of_the_feed_in_json() {
        let feed = Feed {
            symbol: "GOOG".into(),
            path: PathBuf::from("GOOG.csv"),
            bars: vec![
                crate::feed::parse_row("2004-08-19,100,104.06,95.96,100.34,22351900").unwrap(),
                crate::feed::parse_row("2004-08-20,101.01,109.08,100.5,108.31,11428600").unwrap(),
            ],
        };
        let quote = Quote::new(&feed, 2);
        assert_eq!(quote.message_id(), "GOOG-2");
        assert_eq!(
            serde_json::to_string(&quote).unwrap(),
            r#"{"symbol":"GOOG","seq":2,"time":"2004-08-20T00:00:00","open":101.01,"high":109.08,"low":100.5,"close":108.31,"volume":11428600}"#
        );
        // Looping on: sequence 3 is the first bar again.
        assert_eq!(Quote::new(&feed, 3).time, "2004-08-19T00:00:00");
        let btc = crate::feed::parse_row("2012-01-31,4.58,7.38,3.8,5.55,2012.25343589").unwrap();
        let quote = Quote::new(
            &Feed {
                symbol: "BTCUSD".into(),
                path: PathBuf::new(),
                bars: vec![btc],
            },
            1,
        );
        assert!(
            serde_json::to_string(&quote)
                .unwrap()
                .contains(r#""volume":2012.25343589"#)
        );
    }
}
