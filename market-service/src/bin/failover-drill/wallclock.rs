//! Wall-clock instants in microseconds since the Unix epoch: the one time scale on which the
//! drill compares its own fault times, the replicas' log timestamps and the JetStream server's
//! message timestamps (all read from this machine's clock in local mode).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// An instant on the wall clock, to the microsecond (the resolution of the service's logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Micros(pub(crate) i64);

impl Micros {
    /// Now, on this machine's clock.
    pub(crate) fn now() -> Micros {
        Micros::from_system(SystemTime::now())
    }

    /// A `SystemTime`.
    pub(crate) fn from_system(at: SystemTime) -> Micros {
        match at.duration_since(UNIX_EPOCH) {
            Ok(since) => Micros(since.as_micros() as i64),
            Err(before) => Micros(-(before.duration().as_micros() as i64)),
        }
    }

    /// A `time` instant, truncated to the microsecond.
    pub(crate) fn from_offset(at: OffsetDateTime) -> Micros {
        Micros((at.unix_timestamp_nanos() / 1_000) as i64)
    }

    /// Parses an RFC 3339 timestamp such as `2025-01-31T12:34:56.123456Z`.
    pub(crate) fn parse(text: &str) -> Option<Micros> {
        OffsetDateTime::parse(text, &Rfc3339)
            .ok()
            .map(Micros::from_offset)
    }

    /// Milliseconds from `earlier` to `self` (negative when `self` is earlier).
    pub(crate) fn millis_since(self, earlier: Micros) -> f64 {
        (self.0 - earlier.0) as f64 / 1_000.0
    }

    /// `self` plus `millis` milliseconds.
    pub(crate) fn plus_millis(self, millis: f64) -> Micros {
        Micros(self.0 + (millis * 1_000.0).round() as i64)
    }
}

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        // RFC 3339 with exactly six fractional digits, like the service's logs.
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second(),
            at.microsecond()
        )
    }
}

impl Serialize for Micros {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_timestamps_round_trip_to_the_microsecond() {
        let at = Micros::parse("2026-12-03T18:24:07.384152Z").unwrap();
        assert_eq!(at.to_string(), "2026-12-03T18:24:07.384152Z");
        let later = Micros::parse("2026-12-03T18:24:07.386652Z").unwrap();
        assert_eq!(later.millis_since(at), 2.5);
        assert_eq!(at.plus_millis(2.5), later);
        assert!(Micros::parse("yesterday").is_none());
    }
}
