//! Raw JetStream requests with a timeout of their own and errors classified by the server's
//! error code: what the lease store and a fenced publisher (such as market-service's quote
//! publisher) share.
//!
//! `async_nats` reports many server refusals as a generic error and applies one timeout per
//! context; a lease needs each call bounded by its own step-down point and each refusal told
//! apart (a lost race is not an outage).

use std::fmt;
use std::time::Duration;

use async_nats::{Client, HeaderMap, Request, RequestErrorKind};
use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// JetStream API error codes (`err_code`) the protocol tells apart.
pub mod error_code {
    /// The expected last (subject) sequence did not match: another writer moved on.
    pub const WRONG_LAST_SEQUENCE: u64 = 10071;
    /// Another write to the same subject was in flight (clustered streams): a lost race.
    pub const WRITE_IN_FLIGHT: u64 = 10164;
    /// No such stream.
    pub const STREAM_NOT_FOUND: u64 = 10059;
    /// No message for the subject.
    pub const NO_MESSAGE_FOUND: u64 = 10037;
    /// JetStream is not enabled for the account or on the server.
    pub const JETSTREAM_NOT_ENABLED: [u64; 2] = [10039, 10076];
    /// A new stream's subjects overlap another stream's.
    pub const SUBJECTS_OVERLAP: u64 = 10065;
    /// A stream of that name exists with another configuration.
    pub const STREAM_NAME_IN_USE: u64 = 10058;
}

/// Header: the write succeeds only if the subject's last message has this sequence (0: none).
pub const EXPECTED_LAST_SUBJECT_SEQUENCE: &str = "Nats-Expected-Last-Subject-Sequence";
/// Header: check the expected sequence against this subject instead (nats-server 2.11+).
pub const EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT: &str =
    "Nats-Expected-Last-Subject-Sequence-Subject";
/// Header: the message's own time to live, in seconds (nats-server 2.11+).
pub const MESSAGE_TTL: &str = "Nats-TTL";
/// Header: deduplication id. Note: the server checks an expected sequence before the id, so a
/// retry of a conditional publish that landed is refused, not acknowledged as a duplicate.
pub const MESSAGE_ID: &str = "Nats-Msg-Id";

/// A refusal by the JetStream API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiError {
    /// HTTP-like status (400, 404, 503).
    #[serde(default)]
    pub code: u16,
    /// The JetStream error code, see [`error_code`].
    #[serde(default)]
    pub err_code: u64,
    /// The server's description.
    #[serde(default)]
    pub description: String,
}

/// Why a JetStream request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallError {
    /// No answer within the timeout: the request may or may not have taken effect.
    TimedOut,
    /// Nobody listens on the subject: no such stream, or JetStream is down.
    NoResponders,
    /// The connection failed; the request may or may not have reached the server.
    Connection(String),
    /// The server refused the request.
    Api(ApiError),
    /// The answer could not be read.
    Unreadable(String),
}

impl CallError {
    /// The server's JetStream error code, for a refusal.
    pub fn err_code(&self) -> Option<u64> {
        match self {
            CallError::Api(error) => Some(error.err_code),
            _ => None,
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::TimedOut => f.write_str("no answer in time"),
            CallError::NoResponders => {
                f.write_str("nobody answered: the stream is missing or JetStream is down")
            }
            CallError::Connection(text) => write!(f, "connection failed: {text}"),
            CallError::Api(e) => write!(
                f,
                "server error {} ({}): {}",
                e.err_code, e.code, e.description
            ),
            CallError::Unreadable(text) => write!(f, "unreadable answer: {text}"),
        }
    }
}

impl std::error::Error for CallError {}

/// A stored message's acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishAck {
    /// The message's stream sequence (for a KV key: its revision).
    pub sequence: u64,
    /// The server had this message id already and stored nothing.
    pub duplicate: bool,
}

/// Sends one request and decodes the JSON answer; a JetStream `error` in it is returned as
/// [`CallError::Api`].
///
/// # Errors
/// See [`CallError`].
pub async fn request<T: DeserializeOwned>(
    client: &Client,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
    timeout: Duration,
) -> Result<T, CallError> {
    #[derive(Deserialize)]
    struct Answer<T> {
        error: Option<ApiError>,
        #[serde(flatten)]
        body: Option<T>,
    }
    let request = Request::new()
        .headers(headers)
        .payload(payload)
        .timeout(Some(timeout.max(Duration::from_millis(1))));
    let reply = client
        .send_request(subject, request)
        .await
        .map_err(|err| match err.kind() {
            RequestErrorKind::TimedOut => CallError::TimedOut,
            RequestErrorKind::NoResponders => CallError::NoResponders,
            _ => CallError::Connection(err.to_string()),
        })?;
    let answer: Answer<T> = serde_json::from_slice(&reply.payload)
        .map_err(|err| CallError::Unreadable(err.to_string()))?;
    match (answer.error, answer.body) {
        (Some(error), _) => Err(CallError::Api(error)),
        (None, Some(body)) => Ok(body),
        (None, None) => Err(CallError::Unreadable("an empty answer".into())),
    }
}

/// Publishes to a stream subject and waits for the acknowledgement. Put the conditions
/// ([`EXPECTED_LAST_SUBJECT_SEQUENCE`], ...) in `headers`.
///
/// # Errors
/// See [`CallError`]; a failed condition is [`CallError::Api`] with
/// [`error_code::WRONG_LAST_SEQUENCE`] (or [`error_code::WRITE_IN_FLIGHT`] in a cluster).
pub async fn publish(
    client: &Client,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
    timeout: Duration,
) -> Result<PublishAck, CallError> {
    #[derive(Deserialize)]
    struct Ack {
        seq: u64,
        #[serde(default)]
        duplicate: bool,
    }
    let ack: Ack = request(client, subject, headers, payload, timeout).await?;
    Ok(PublishAck {
        sequence: ack.seq,
        duplicate: ack.duplicate,
    })
}
