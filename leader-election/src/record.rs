//! The lease record: what a leader writes into the election key.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Who holds (or held) the lease, as written in the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The configured identity, for example a pod name.
    pub identity: String,
    /// The identity plus a per-process nonce: tells a restarted process from its old self.
    pub instance: String,
    /// The holder's lease duration in milliseconds. Standbys wait at least this long, so a
    /// replica configured with a shorter lease cannot cut a longer one short.
    pub lease_ms: u64,
}

impl Holder {
    pub(crate) fn new(identity: &str, lease_duration: Duration) -> Self {
        Holder {
            identity: identity.to_string(),
            instance: format!("{identity}-{}", nuid::next()),
            lease_ms: u64::try_from(lease_duration.as_millis()).unwrap_or(u64::MAX),
        }
    }

    pub(crate) fn encode(&self) -> Bytes {
        // Serializing a struct of strings and integers cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes a lease record; `None` for a value some other writer put in the key.
    pub fn decode(value: &[u8]) -> Option<Holder> {
        serde_json::from_slice(value).ok()
    }

    pub(crate) fn lease_duration(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }
}
