//! Durations as operators write them: `500ms`, `2s`, `1.5s`.

use std::time::Duration;

/// Units accepted after the number, with their length in nanoseconds.
const UNITS: [(&str, f64); 6] = [
    ("ns", 1.0),
    ("us", 1e3),
    ("µs", 1e3),
    ("ms", 1e6),
    ("s", 1e9),
    ("m", 60e9),
];

/// Parses a non-negative decimal number followed by a unit: `ns`, `us` (or `µs`), `ms`, `s` or
/// `m` (minutes). A bare number is refused: `500` could mean milliseconds or seconds.
///
/// # Errors
/// A message that quotes the input and shows the expected form; clap prints it as is.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let invalid = || {
        format!(
            "invalid duration {text:?}: use a number and a unit (ns, us, ms, s, m), for example 500ms, 2s or 1.5s"
        )
    };
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(invalid)?;
    let (number, unit) = trimmed.split_at(split);
    let scale = UNITS
        .iter()
        .find(|(name, _)| *name == unit.trim())
        .map(|(_, scale)| *scale)
        .ok_or_else(invalid)?;
    // Digits with at most one dot, and at least one digit.
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(invalid());
    }
    let value: f64 = number.parse().map_err(|_| invalid())?;
    let nanos = (value * scale).round();
    if !nanos.is_finite() || nanos > u64::MAX as f64 {
        return Err(format!("duration {text:?} is too long"));
    }
    Ok(Duration::from_nanos(nanos as u64))
}

/// Formats a duration the way [`parse_duration`] reads it, for help texts and logs.
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        "0s".to_string()
    } else if nanos.is_multiple_of(1_000_000_000) {
        format!("{}s", nanos / 1_000_000_000)
    } else if nanos.is_multiple_of(1_000_000) {
        format!("{}ms", nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        format!("{}us", nanos / 1_000)
    } else {
        format!("{nanos}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units_parse() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("2s", Duration::from_secs(2)),
            ("1.5s", Duration::from_millis(1500)),
            ("0.25s", Duration::from_millis(250)),
            ("100us", Duration::from_micros(100)),
            ("100µs", Duration::from_micros(100)),
            ("7ns", Duration::from_nanos(7)),
            ("1m", Duration::from_secs(60)),
            (" 60ms ", Duration::from_millis(60)),
            ("0s", Duration::ZERO),
            (".5s", Duration::from_millis(500)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn malformed_durations_are_refused_with_an_example() {
        for text in [
            "", "500", "ms", "5x", "-1s", "1.2.3s", "1 s s", "1h", "abc", ".s", "1e3ms",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(
                err.contains(&format!("{text:?}")) && err.contains("500ms"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn formatted_durations_read_back() {
        for d in [
            Duration::from_millis(500),
            Duration::from_secs(2),
            Duration::from_millis(1500),
            Duration::from_micros(3),
            Duration::from_nanos(5),
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
