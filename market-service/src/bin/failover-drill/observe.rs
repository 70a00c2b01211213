//! Watching the quote stream: every quote with its publisher, fencing token and the JetStream
//! server's timestamp, read in stream order from the stream leader.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use market_service::quotes::{FENCING_EPOCH_HEADER, FENCING_TOKEN_HEADER, PUBLISHER_HEADER, Quote};
use serde::Serialize;

use crate::wallclock::Micros;

/// One quote as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct StoredQuote {
    /// Its stream sequence.
    pub(crate) stream_sequence: u64,
    /// The quote's symbol.
    pub(crate) symbol: String,
    /// The quote's per-symbol sequence number.
    pub(crate) seq: u64,
    /// The publisher header.
    pub(crate) publisher: String,
    /// The fencing token header.
    pub(crate) token: Option<u64>,
    /// The fencing epoch header.
    pub(crate) epoch: Option<u64>,
    /// When the server stored it (the server's clock).
    pub(crate) at: Micros,
}

/// A reader of the quote stream that remembers how far it has read.
pub(crate) struct QuoteReader {
    stream: stream::Stream,
    next: u64,
}

/// How long one JetStream request may take before the drill tries again later.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

impl QuoteReader {
    /// Connects and opens stream `name`, which the replicas create: waits up to `wait` for it.
    ///
    /// # Errors
    /// A message when it cannot connect or the stream does not appear.
    pub(crate) async fn open(
        options: async_nats::ConnectOptions,
        urls: &[String],
        name: &str,
        wait: Duration,
    ) -> Result<QuoteReader, String> {
        let addrs: Vec<async_nats::ServerAddr> = urls
            .iter()
            .map(|u| u.parse().map_err(|e| format!("NATS URL {u:?}: {e}")))
            .collect::<Result<_, _>>()?;
        let client = options
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(addrs)
            .await
            .map_err(|e| format!("cannot connect to NATS at {}: {e}", urls.join(",")))?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .build(client);
        let started = std::time::Instant::now();
        loop {
            match jetstream.get_stream(name).await {
                Ok(stream) => {
                    let first = stream.cached_info().state.first_sequence.max(1);
                    return Ok(QuoteReader {
                        stream,
                        next: first,
                    });
                }
                Err(err) if started.elapsed() > wait => {
                    return Err(format!("quote stream {name:?} not found: {err}"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Starts reading at the stream's current end: quotes from before the drill are not its
    /// business (kubectl mode, on a stream that has been running for days).
    pub(crate) async fn skip_to_end(&mut self) -> Result<(), String> {
        self.next = self.last_sequence().await? + 1;
        Ok(())
    }

    /// The stream sequence the reader will read next.
    pub(crate) fn position(&self) -> u64 {
        self.next
    }

    async fn last_sequence(&mut self) -> Result<u64, String> {
        let info = tokio::time::timeout(REQUEST_TIMEOUT, self.stream.info())
            .await
            .map_err(|_| "reading the stream's state timed out".to_string())?
            .map_err(|e| format!("reading the stream's state: {e}"))?;
        Ok(info.state.last_sequence)
    }

    /// The quotes stored since the last call, in stream order.
    ///
    /// # Errors
    /// A message when the server does not answer (the caller tries again later: a restarted
    /// server takes a moment).
    pub(crate) async fn read_new(&mut self) -> Result<Vec<StoredQuote>, String> {
        let last = self.last_sequence().await?;
        let mut quotes = Vec::new();
        while self.next <= last {
            let sequence = self.next;
            let message =
                tokio::time::timeout(REQUEST_TIMEOUT, self.stream.get_raw_message(sequence))
                    .await
                    .map_err(|_| format!("reading stream sequence {sequence} timed out"))?;
            match message {
                Ok(message) => {
                    if let Some(quote) = stored_quote(&message) {
                        quotes.push(quote);
                    }
                }
                // A deleted message (not expected: the stream keeps 100,000 quotes a symbol).
                Err(err) if no_message(&err.kind()) => {}
                Err(err) => return Err(format!("reading stream sequence {sequence}: {err}")),
            }
            self.next += 1;
        }
        Ok(quotes)
    }

    /// Every quote from stream sequence `from` on, without moving the reader: the final
    /// whole-stream check reads the stream again rather than trusting what was gathered.
    pub(crate) async fn read_from(&mut self, from: u64) -> Result<Vec<StoredQuote>, String> {
        let saved = self.next;
        self.next = from.max(1);
        let result = self.read_new().await;
        self.next = saved;
        result
    }
}

fn no_message(kind: &stream::RawMessageErrorKind) -> bool {
    // 10037: no message found (the kind async-nats reports depends on the server's answer).
    match kind {
        stream::RawMessageErrorKind::NoMessageFound => true,
        stream::RawMessageErrorKind::JetStream(api) => api.error_code().0 == 10037,
        _ => false,
    }
}

fn stored_quote(message: &jetstream::message::StreamMessage) -> Option<StoredQuote> {
    let quote: Quote = serde_json::from_slice(&message.payload).ok()?;
    let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_string());
    let number = |name: &str| header(name).and_then(|v| v.parse::<u64>().ok());
    Some(StoredQuote {
        stream_sequence: message.sequence,
        symbol: quote.symbol,
        seq: quote.seq,
        publisher: header(PUBLISHER_HEADER).unwrap_or_default(),
        token: number(FENCING_TOKEN_HEADER),
        epoch: number(FENCING_EPOCH_HEADER),
        at: Micros::from_offset(message.time),
    })
}
