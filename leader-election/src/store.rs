//! The narrow seam between the election algorithm and the key-value store.
//!
//! [`NatsStore`](crate::NatsStore) maps it onto JetStream; [`MemoryStore`](crate::MemoryStore)
//! implements the same contract in memory for deterministic tests on paused time.

use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

/// The state of the election key at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    /// The revision (stream sequence) of the message that holds this state; 0 when the key has
    /// never been written or its last marker is gone.
    pub revision: u64,
    /// What the key holds.
    pub value: KeyValue,
    /// The server's timestamp of that message, when known.
    pub written_at: Option<SystemTime>,
}

impl KeyState {
    /// The state of a key that has no message at all.
    pub fn empty() -> Self {
        KeyState {
            revision: 0,
            value: KeyValue::Vacant(Vacancy::Empty),
            written_at: None,
        }
    }

    /// Whether nobody holds the key.
    pub fn is_vacant(&self) -> bool {
        matches!(self.value, KeyValue::Vacant(_))
    }
}

/// The content of the election key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValue {
    /// A lease record written by a candidate (or something else another writer put there).
    Held(Bytes),
    /// Nobody holds the key.
    Vacant(Vacancy),
}

/// Why the key is vacant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vacancy {
    /// No message on the key.
    Empty,
    /// A delete marker: a leader resigned, or an operator deleted the key.
    Deleted,
    /// A purge marker, or the server's marker for a key whose TTL expired.
    Purged,
}

/// A conditional write of the lease record.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    /// The revision the key must be at (0: no message on the key).
    pub expected_revision: u64,
    /// The lease record.
    pub value: Bytes,
    /// Server-side TTL of the new message.
    pub ttl: Duration,
    /// How long to wait for the acknowledgement.
    pub timeout: Duration,
}

/// What a store call can fail with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The expected revision was not current (or another write to the key was in flight).
    Conflict,
    /// No answer in time: the write may or may not have happened.
    TimedOut,
    /// The server or stream did not answer (disconnected, no responders, cluster without quorum).
    Unavailable,
    /// The bucket does not exist.
    BucketMissing,
    /// Anything else.
    Other,
}

/// A failed store call.
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
}

impl StoreError {
    /// A new error.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError {
            kind,
            message: message.into(),
        }
    }

    /// The kind of failure.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for StoreError {}

/// A stream of the key's states, starting with the current one.
pub type KeyWatch = BoxStream<'static, Result<KeyState, StoreError>>;

/// The operations the election needs from a key-value store, for one key.
///
/// Every write is conditional on a revision; there is no unconditional put.
pub trait LeaseStore: Send + Sync + 'static {
    /// Reads the key's current state from a source that reflects every acknowledged write
    /// (on NATS: the stream leader).
    fn read(&self, timeout: Duration) -> BoxFuture<'_, Result<KeyState, StoreError>>;

    /// Writes the lease record if the key is at `expected_revision`; returns the new revision.
    fn write(&self, request: WriteRequest) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Deletes the key if it is at `expected_revision`; returns the delete marker's revision.
    fn delete(
        &self,
        expected_revision: u64,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Watches the key: the current state first (if the key has a message), then every change.
    fn watch(&self) -> BoxFuture<'_, Result<KeyWatch, StoreError>>;

    /// Writes `value` to another key of the bucket, only while the election key is at
    /// `lease_revision`; returns the new message's revision.
    fn put_fenced(
        &self,
        key: &str,
        value: Bytes,
        lease_revision: u64,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// An identifier of the bucket's incarnation (on NATS: its creation time in nanoseconds), so
    /// fencing tokens from a deleted and re-created bucket, whose revisions restart, can be told apart.
    fn epoch(&self) -> u64;
}
