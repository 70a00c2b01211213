//! Configuration of an election, validated in one place.

use std::time::Duration;

/// Timings of the lease, and how they relate.
///
/// The leader stops its work at `send time of its last acknowledged write + lease_duration ×
/// (1 − clock_drift) − safety_margin` on its monotonic clock. A standby takes over only after it
/// has seen the key unchanged for `lease_duration` on its own monotonic clock, so the two never
/// overlap while the clocks' rates differ by less than `clock_drift` and the leader is never paused
/// for longer than `safety_margin` between checking its lease and acting.
///
/// The defaults (500 ms lease, 100 ms renewals, 1 s server TTL) fail over a crashed leader in
/// about half a second, and a leader rides out four failed renewals in a row. Larger values tolerate
/// longer NATS hiccups (a stream-leader change in a 3-node cluster takes seconds) at the price of
/// slower crash failover; graceful handover does not depend on them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timings {
    /// How long a lease is valid after the leader sent its last acknowledged write. Default 500 ms.
    pub lease_duration: Duration,
    /// How often the leader renews. Default 100 ms.
    pub renew_interval: Duration,
    /// The TTL the server applies to the key, in whole seconds, at least `lease_duration`. It frees
    /// the key when nobody watches; watching standbys take over earlier. Default 1 s (the server's
    /// minimum).
    pub server_ttl: Duration,
    /// Largest relative difference between two machines' clock rates, as a fraction. Default 0.01.
    pub clock_drift: f64,
    /// Time the leader keeps in hand before the lease ends, for scheduling delays and the work's
    /// reaction to cancellation. Default 50 ms.
    pub safety_margin: Duration,
    /// How long resign and shutdown wait for leader work to drain before giving up on a clean
    /// release (the lease is then left to expire). Default 2 s.
    pub drain_timeout: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            lease_duration: Duration::from_millis(500),
            renew_interval: Duration::from_millis(100),
            server_ttl: Duration::from_secs(1),
            clock_drift: 0.01,
            safety_margin: Duration::from_millis(50),
            drain_timeout: Duration::from_secs(2),
        }
    }
}

impl Timings {
    /// The time after a write's send time at which a leader must have stopped its work.
    pub fn step_down_after(&self) -> Duration {
        self.lease_duration
            .mul_f64(1.0 - self.clock_drift)
            .saturating_sub(self.safety_margin)
    }

    /// How long a call on the election path waits for an answer: half the time to the step-down
    /// point, so a leader whose renewal went unanswered still has time to retry.
    pub fn request_timeout(&self) -> Duration {
        (self.step_down_after() / 2).max(Duration::from_millis(10))
    }
}

/// Where the lease lives and who competes for it.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct ElectionConfig {
    /// The KV bucket. Default `leader-election`.
    pub bucket: String,
    /// The election's name: the key in the bucket. Default `leader`.
    pub election: String,
    /// This candidate's identity as shown to others, for example a pod name. Required. A
    /// per-process nonce is added to it, so a restarted process is never mistaken for its old self.
    pub identity: String,
    /// Lease timings.
    pub timings: Timings,
    /// Replicas of the bucket when this process creates it (1 for a single server, 3 in a cluster).
    /// Default 1.
    pub bucket_replicas: usize,
    /// Whether to create the bucket when it is missing at start. Default true. A bucket that
    /// disappears while the election runs is never re-created.
    pub create_bucket: bool,
}

impl ElectionConfig {
    /// A configuration with default bucket, election name and timings.
    pub fn new(identity: impl Into<String>) -> Self {
        ElectionConfig {
            bucket: "leader-election".to_string(),
            election: "leader".to_string(),
            identity: identity.into(),
            timings: Timings::default(),
            bucket_replicas: 1,
            create_bucket: true,
        }
    }

    /// Sets the bucket (default `leader-election`).
    pub fn bucket(mut self, bucket: impl Into<String>) -> Self {
        self.bucket = bucket.into();
        self
    }

    /// Sets the election name, the key in the bucket (default `leader`).
    pub fn election(mut self, election: impl Into<String>) -> Self {
        self.election = election.into();
        self
    }

    /// Sets all timings.
    pub fn timings(mut self, timings: Timings) -> Self {
        self.timings = timings;
        self
    }

    /// Sets the lease duration (default 500 ms).
    pub fn lease_duration(mut self, lease_duration: Duration) -> Self {
        self.timings.lease_duration = lease_duration;
        self
    }

    /// Sets the renew interval (default 100 ms).
    pub fn renew_interval(mut self, renew_interval: Duration) -> Self {
        self.timings.renew_interval = renew_interval;
        self
    }

    /// Sets the server-side TTL of the key, whole seconds (default 1 s).
    pub fn server_ttl(mut self, server_ttl: Duration) -> Self {
        self.timings.server_ttl = server_ttl;
        self
    }

    /// Sets the tolerated clock-rate difference (default 0.01).
    pub fn clock_drift(mut self, clock_drift: f64) -> Self {
        self.timings.clock_drift = clock_drift;
        self
    }

    /// Sets the safety margin (default 50 ms).
    pub fn safety_margin(mut self, safety_margin: Duration) -> Self {
        self.timings.safety_margin = safety_margin;
        self
    }

    /// Sets the drain timeout of resign and shutdown (default 2 s).
    pub fn drain_timeout(mut self, drain_timeout: Duration) -> Self {
        self.timings.drain_timeout = drain_timeout;
        self
    }

    /// Sets the bucket's replicas when this process creates it (default 1).
    pub fn bucket_replicas(mut self, replicas: usize) -> Self {
        self.bucket_replicas = replicas;
        self
    }

    /// Sets whether a missing bucket is created at start (default true).
    pub fn create_bucket(mut self, create: bool) -> Self {
        self.create_bucket = create;
        self
    }

    /// Checks every rule, in a fixed order, and returns the first one broken.
    ///
    /// Called by every constructor of [`Election`](crate::Election); public so a service can check
    /// its configuration before it connects.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let t = &self.timings;
        if self.identity.trim().is_empty() {
            return Err(ConfigError::EmptyIdentity);
        }
        if self.identity.len() > MAX_IDENTITY_LEN || self.identity.chars().any(char::is_control) {
            return Err(ConfigError::InvalidIdentity(self.identity.clone()));
        }
        if !is_valid_bucket_name(&self.bucket) {
            return Err(ConfigError::InvalidBucket(self.bucket.clone()));
        }
        if !is_valid_key(&self.election) {
            return Err(ConfigError::InvalidElection(self.election.clone()));
        }
        if !(1..=5).contains(&self.bucket_replicas) {
            return Err(ConfigError::InvalidReplicas(self.bucket_replicas));
        }
        if t.lease_duration.is_zero() {
            return Err(ConfigError::ZeroLeaseDuration);
        }
        if t.renew_interval.is_zero() {
            return Err(ConfigError::ZeroRenewInterval);
        }
        if !(0.0..0.5).contains(&t.clock_drift) {
            return Err(ConfigError::InvalidClockDrift(t.clock_drift));
        }
        if t.safety_margin >= t.lease_duration.mul_f64(1.0 - t.clock_drift) {
            return Err(ConfigError::MarginTooLarge {
                safety_margin: t.safety_margin,
                lease_duration: t.lease_duration,
            });
        }
        if t.renew_interval >= t.step_down_after() {
            return Err(ConfigError::RenewIntervalTooLong {
                renew_interval: t.renew_interval,
                step_down_after: t.step_down_after(),
            });
        }
        if t.server_ttl.subsec_nanos() != 0 || t.server_ttl.is_zero() {
            return Err(ConfigError::ServerTtlNotWholeSeconds(t.server_ttl));
        }
        if t.server_ttl < t.lease_duration {
            return Err(ConfigError::ServerTtlShorterThanLease {
                server_ttl: t.server_ttl,
                lease_duration: t.lease_duration,
            });
        }
        Ok(())
    }
}

const MAX_IDENTITY_LEN: usize = 253;

/// One broken configuration rule. Each variant's message names the value and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The identity is empty or only white space.
    #[error("identity is empty: give each candidate a name, for example its pod or host name")]
    EmptyIdentity,
    /// The identity is too long or has control characters.
    #[error(
        "identity {0:?} is invalid: use at most {MAX_IDENTITY_LEN} bytes without control characters"
    )]
    InvalidIdentity(String),
    /// The bucket name has characters NATS does not allow.
    #[error("bucket name {0:?} is invalid: use only letters, digits, '-' and '_'")]
    InvalidBucket(String),
    /// The election name is not a valid KV key.
    #[error(
        "election name {0:?} is not a valid key: use letters, digits and '-', '_', '/', '=', '.', not starting or ending with '.'"
    )]
    InvalidElection(String),
    /// Bucket replicas outside 1..=5.
    #[error("bucket replicas {0} is out of range: use 1 to 5 (3 in a 3-node cluster)")]
    InvalidReplicas(usize),
    /// A zero lease.
    #[error("lease_duration is zero: use a positive duration, for example 500ms")]
    ZeroLeaseDuration,
    /// A zero renew interval.
    #[error("renew_interval is zero: use a positive duration, for example 100ms")]
    ZeroRenewInterval,
    /// A clock drift outside [0, 0.5).
    #[error("clock_drift {0} is out of range: use a fraction in [0, 0.5), for example 0.01")]
    InvalidClockDrift(f64),
    /// The margin eats the whole lease.
    #[error(
        "safety_margin {safety_margin:?} leaves nothing of lease_duration {lease_duration:?}: make the margin smaller than the lease"
    )]
    MarginTooLarge {
        /// The configured margin.
        safety_margin: Duration,
        /// The configured lease.
        lease_duration: Duration,
    },
    /// No renewal would fit before the leader must step down.
    #[error(
        "renew_interval {renew_interval:?} is not shorter than the step-down point {step_down_after:?} (lease × (1 − drift) − margin): renew several times per lease, for example every lease/5"
    )]
    RenewIntervalTooLong {
        /// The configured renew interval.
        renew_interval: Duration,
        /// `lease_duration × (1 − clock_drift) − safety_margin`.
        step_down_after: Duration,
    },
    /// The server TTL is not a whole number of seconds, or zero.
    #[error(
        "server_ttl {0:?} is not a whole number of seconds: NATS per-key TTLs are whole seconds, at least 1s"
    )]
    ServerTtlNotWholeSeconds(Duration),
    /// The server TTL would free the key before the lease ends.
    #[error(
        "server_ttl {server_ttl:?} is shorter than lease_duration {lease_duration:?}: the server would free the key while the leader still acts; use a TTL of at least the lease"
    )]
    ServerTtlShorterThanLease {
        /// The configured TTL.
        server_ttl: Duration,
        /// The configured lease.
        lease_duration: Duration,
    },
}

/// Bucket names NATS accepts: `[A-Za-z0-9_-]+`.
pub(crate) fn is_valid_bucket_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Keys NATS KV accepts: `[-/_=.A-Za-z0-9]+`, not starting or ending with `.`, no empty token.
pub(crate) fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('.')
        && !key.ends_with('.')
        && !key.contains("..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
}
