//! Logging: human-readable text or one JSON object per line, both with RFC 3339 UTC timestamps
//! to the microsecond, so the failover drill can order events from several replicas.

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::time::UtcTime;

use crate::config::LogFormat;

/// `2025-01-31T12:34:56.123456Z`.
const TIMESTAMP: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// Installs the global subscriber, writing to standard output.
///
/// # Errors
/// When `filter` does not parse (already checked by the configuration) or a subscriber is
/// already installed.
pub fn init(
    format: LogFormat,
    filter: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let filter = EnvFilter::builder().parse(filter)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(UtcTime::new(TIMESTAMP))
        .with_writer(std::io::stdout);
    match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    }
}
