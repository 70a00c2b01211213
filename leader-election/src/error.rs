//! The crate's error type: a kind to match on, a message that says what to do, and the cause.

use std::fmt;

use crate::config::ConfigError;
use crate::store::{StoreError, StoreErrorKind};

/// What went wrong, as a small `Copy` enum callers can match on.
///
/// Retryable kinds ([`ErrorKind::is_retryable`]) describe a passing condition: the same call may
/// succeed later. The others need a change of configuration or deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration broke one of the rules of [`ElectionConfig::validate`](crate::ElectionConfig::validate).
    InvalidConfig,
    /// The NATS server is older than 2.11, which silently ignores per-message TTLs and fencing headers.
    UnsupportedServer,
    /// JetStream is not enabled on the server or for the account.
    JetStreamUnavailable,
    /// The bucket exists with settings that break the protocol (for example history above 1).
    BucketMisconfigured,
    /// The bucket does not exist and the configuration does not allow creating it.
    BucketMissing,
    /// The server could not be reached or the connection failed. Retryable.
    Connection,
    /// A request timed out; its outcome is unknown. Retryable.
    TimedOut,
    /// A conditional write lost to another writer: the lease or the fenced key moved on.
    Conflict,
    /// The call needs a valid lease, and this process does not hold one (any more).
    NotLeader,
    /// Leader work did not finish draining within the configured bound; the lease was left to expire.
    DrainTimedOut,
    /// The election task has stopped.
    Stopped,
    /// Anything else the server answered; the message carries its description.
    Other,
}

impl ErrorKind {
    /// Whether the same call may succeed if it is made again later.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Connection | ErrorKind::TimedOut)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::InvalidConfig => "invalid configuration",
            ErrorKind::UnsupportedServer => "unsupported nats-server version",
            ErrorKind::JetStreamUnavailable => "JetStream unavailable",
            ErrorKind::BucketMisconfigured => "bucket misconfigured",
            ErrorKind::BucketMissing => "bucket missing",
            ErrorKind::Connection => "connection failed",
            ErrorKind::TimedOut => "timed out",
            ErrorKind::Conflict => "conflict",
            ErrorKind::NotLeader => "not leader",
            ErrorKind::DrainTimedOut => "drain timed out",
            ErrorKind::Stopped => "election stopped",
            ErrorKind::Other => "error",
        })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error of this crate: [`Error::kind`] to match on, a message that names what was wrong and
/// what to do, and the underlying cause as [`std::error::Error::source`].
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<BoxError>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Error {
            kind,
            message: message.into(),
            source: Some(source.into()),
        }
    }

    pub(crate) fn from_store(err: StoreError, what: &str) -> Self {
        let kind = match err.kind() {
            StoreErrorKind::Conflict => ErrorKind::Conflict,
            StoreErrorKind::TimedOut => ErrorKind::TimedOut,
            StoreErrorKind::Unavailable => ErrorKind::Connection,
            StoreErrorKind::BucketMissing => ErrorKind::BucketMissing,
            _ => ErrorKind::Other,
        };
        Error::with_source(kind, format!("{what} failed"), err)
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The configuration rule that was broken, when the kind is [`ErrorKind::InvalidConfig`].
    pub fn config_error(&self) -> Option<&ConfigError> {
        self.source.as_ref()?.downcast_ref()
    }
}

impl fmt::Display for Error {
    // The source is returned by `source()`, not printed here, so error-chain reporters do not
    // print it twice.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<ConfigError> for Error {
    fn from(err: ConfigError) -> Self {
        Error::with_source(
            ErrorKind::InvalidConfig,
            "the election configuration was rejected",
            err,
        )
    }
}
