//! Fencing tokens: the proof of a term that downstream systems can check.

use std::fmt;

/// The revision of the write that won a term, with the bucket's incarnation.
///
/// Tokens of one bucket increase strictly from term to term. When the bucket is deleted and
/// created again its revisions restart; the `epoch` (the bucket's creation time) then differs,
/// so order tokens by `(epoch, revision)` — which the derived `Ord` does — and treat a token from
/// another epoch as belonging to a different history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken {
    /// The bucket's creation time, in nanoseconds since the Unix epoch.
    pub epoch: u64,
    /// The KV revision of the write that acquired the lease.
    pub revision: u64,
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.revision)
    }
}
