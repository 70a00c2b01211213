//! Recorded market data: CSV files of OHLCV bars, one instrument per file.
//!
//! The format is the one of `shared/data/market/*.csv`: a header `,Open,High,Low,Close,Volume`,
//! then one bar per line. The first column is a timestamp without time zone, either
//! `2017-04-19 09:00:00` or a date `2004-08-19`; the volume is an integer or a fraction. A row
//! that does not parse, or whose prices contradict each other, is a [`BadRow`] naming the file,
//! the line and the reason.

use std::fmt;
use std::path::{Path, PathBuf};

use time::{Date, Month, PrimitiveDateTime, Time};

/// The header every feed file starts with (column names compared case-insensitively).
pub const HEADER: [&str; 6] = ["", "Open", "High", "Low", "Close", "Volume"];

/// One OHLCV bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    /// Start of the bar, as recorded (no time zone); midnight for daily and monthly bars.
    pub time: PrimitiveDateTime,
    /// First price.
    pub open: f64,
    /// Highest price.
    pub high: f64,
    /// Lowest price.
    pub low: f64,
    /// Last price.
    pub close: f64,
    /// Traded volume; fractional for some instruments.
    pub volume: f64,
}

/// The bars of one instrument, in file order.
#[derive(Debug, Clone)]
pub struct Feed {
    /// The instrument, used in quote subjects and message ids.
    pub symbol: String,
    /// The file the bars came from.
    pub path: PathBuf,
    /// The valid bars; a quote's sequence number `n` is `bars[(n - 1) % bars.len()]`.
    pub bars: Vec<Bar>,
}

/// What to do with a row that does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnBadRow {
    /// Leave the row out, log it with file and line, and count it.
    Skip,
    /// Refuse the whole feed, naming file and line.
    Stop,
}

/// Why one row was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RowError {
    /// Not six comma-separated fields.
    #[error("expected 6 fields (timestamp,Open,High,Low,Close,Volume), found {0}")]
    FieldCount(usize),
    /// The first column is not `YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS`.
    #[error("timestamp {0:?} is not YYYY-MM-DD or YYYY-MM-DD HH:MM:SS")]
    Timestamp(String),
    /// A price or the volume is not a number.
    #[error("{column} {value:?} is not a number")]
    Number {
        /// The column's name.
        column: &'static str,
        /// The text found.
        value: String,
    },
    /// A price is not positive, or the volume is negative.
    #[error("{column} {value} is out of range (prices must be positive, volume at least 0)")]
    OutOfRange {
        /// The column's name.
        column: &'static str,
        /// The value found.
        value: f64,
    },
    /// High and low do not enclose open and close.
    #[error("high {high} and low {low} do not enclose open {open} and close {close}")]
    Inconsistent {
        /// Open.
        open: f64,
        /// High.
        high: f64,
        /// Low.
        low: f64,
        /// Close.
        close: f64,
    },
}

/// A refused row, located in its file.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    /// The file.
    pub path: PathBuf,
    /// The 1-based line number (the header is line 1).
    pub line: usize,
    /// Why the row was refused.
    pub reason: RowError,
}

impl fmt::Display for BadRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.reason)
    }
}

/// Why a feed could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// The file could not be read.
    #[error("cannot read feed file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The first line is not the expected header.
    #[error("{}:1: header {found:?} is not \",Open,High,Low,Close,Volume\"", path.display())]
    Header {
        /// The file.
        path: PathBuf,
        /// The first line.
        found: String,
    },
    /// A row was refused and the policy is [`OnBadRow::Stop`].
    #[error("malformed row at {0}")]
    BadRow(BadRow),
    /// No valid bar in the file.
    #[error("feed file {} has no valid bar", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// No symbol could be taken from the file name, or the one given is not usable in a subject.
    #[error(
        "symbol {symbol:?} (for {}) is not usable: use letters, digits, '-' and '_' (rename the file or set --symbol)",
        path.display()
    )]
    Symbol {
        /// The file.
        path: PathBuf,
        /// The symbol tried.
        symbol: String,
    },
}

impl Feed {
    /// Reads and parses a feed file. The symbol is `symbol` when given, else the file name
    /// without extension (`EURUSD.csv` → `EURUSD`). Each refused row is passed to `on_skip`
    /// when the policy is [`OnBadRow::Skip`]; with [`OnBadRow::Stop`] the first one is the error.
    ///
    /// # Errors
    /// See [`FeedError`].
    pub fn load(
        path: &Path,
        symbol: Option<&str>,
        on_bad_row: OnBadRow,
        mut on_skip: impl FnMut(&BadRow),
    ) -> Result<Feed, FeedError> {
        let symbol = match symbol {
            Some(symbol) => symbol.to_string(),
            None => symbol_from_path(path),
        };
        if !is_valid_symbol(&symbol) {
            return Err(FeedError::Symbol {
                path: path.to_path_buf(),
                symbol,
            });
        }
        let text = std::fs::read_to_string(path).map_err(|source| FeedError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        if !is_header(header) {
            return Err(FeedError::Header {
                path: path.to_path_buf(),
                found: header.to_string(),
            });
        }
        let mut bars = Vec::new();
        for (index, line) in lines.enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match parse_row(line) {
                Ok(bar) => bars.push(bar),
                Err(reason) => {
                    let bad = BadRow {
                        path: path.to_path_buf(),
                        // +2: 1-based, and the header is line 1.
                        line: index + 2,
                        reason,
                    };
                    match on_bad_row {
                        OnBadRow::Skip => on_skip(&bad),
                        OnBadRow::Stop => return Err(FeedError::BadRow(bad)),
                    }
                }
            }
        }
        if bars.is_empty() {
            return Err(FeedError::Empty {
                path: path.to_path_buf(),
            });
        }
        bars.shrink_to_fit();
        Ok(Feed {
            symbol,
            path: path.to_path_buf(),
            bars,
        })
    }

    /// The bar a quote with 1-based sequence number `seq` carries: the feed restarts from its
    /// first bar after the last one.
    pub fn bar(&self, seq: u64) -> &Bar {
        let len = self.bars.len() as u64;
        // `seq` is at least 1 for every quote; 0 is clamped to the first bar.
        &self.bars[(seq.saturating_sub(1) % len) as usize]
    }
}

/// The file name without extension.
pub fn symbol_from_path(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Symbols become one subject token and part of a message id: `[A-Za-z0-9_-]+`.
pub fn is_valid_symbol(symbol: &str) -> bool {
    !symbol.is_empty()
        && symbol
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_header(line: &str) -> bool {
    let fields: Vec<&str> = line.trim_start_matches('\u{feff}').split(',').collect();
    fields.len() == HEADER.len()
        && fields
            .iter()
            .zip(HEADER)
            .all(|(found, expected)| found.trim().eq_ignore_ascii_case(expected))
}

/// Parses one data row: `timestamp,Open,High,Low,Close,Volume`.
///
/// # Errors
/// The first problem found, as a [`RowError`].
pub fn parse_row(line: &str) -> Result<Bar, RowError> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let [time, open, high, low, close, volume] = fields[..] else {
        return Err(RowError::FieldCount(fields.len()));
    };
    let time = parse_timestamp(time).ok_or_else(|| RowError::Timestamp(time.to_string()))?;
    let open = price("Open", open)?;
    let high = price("High", high)?;
    let low = price("Low", low)?;
    let close = price("Close", close)?;
    let volume = number("Volume", volume)?;
    if volume < 0.0 {
        return Err(RowError::OutOfRange {
            column: "Volume",
            value: volume,
        });
    }
    if low > high || low > open.min(close) || high < open.max(close) {
        return Err(RowError::Inconsistent {
            open,
            high,
            low,
            close,
        });
    }
    Ok(Bar {
        time,
        open,
        high,
        low,
        close,
        volume,
    })
}

fn number(column: &'static str, text: &str) -> Result<f64, RowError> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(RowError::Number {
            column,
            value: text.to_string(),
        }),
    }
}

fn price(column: &'static str, text: &str) -> Result<f64, RowError> {
    let value = number(column, text)?;
    if value > 0.0 {
        Ok(value)
    } else {
        Err(RowError::OutOfRange { column, value })
    }
}

/// `YYYY-MM-DD` (midnight) or `YYYY-MM-DD HH:MM:SS`; a `T` separator is accepted too.
fn parse_timestamp(text: &str) -> Option<PrimitiveDateTime> {
    let (date, clock) = match text.split_once([' ', 'T']) {
        Some((date, clock)) => (date, Some(clock)),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return None;
    }
    let date = Date::from_calendar_date(
        digits(year)? as i32,
        Month::try_from(u8::try_from(digits(month)?).ok()?).ok()?,
        u8::try_from(digits(day)?).ok()?,
    )
    .ok()?;
    let time = match clock {
        None => Time::MIDNIGHT,
        Some(clock) => {
            let mut parts = clock.split(':');
            let (hour, minute, second) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() || [hour, minute, second].iter().any(|p| p.len() != 2) {
                return None;
            }
            Time::from_hms(
                u8::try_from(digits(hour)?).ok()?,
                u8::try_from(digits(minute)?).ok()?,
                u8::try_from(digits(second)?).ok()?,
            )
            .ok()?
        }
    };
    Some(PrimitiveDateTime::new(date, time))
}

fn digits(text: &str) -> Option<u32> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    // Rows copied from shared/data/market: EURUSD hourly, GOOG daily, BTCUSD monthly with a
    // fractional volume.
    #[test]
    fn an_hourly_eurusd_row_parses() {
        let bar = parse_row("2017-04-19 09:00:00,1.0716,1.0722,1.07083,1.07219,1413").unwrap();
        assert_eq!(
            bar,
            Bar {
                time: datetime!(2017-04-19 09:00:00),
                open: 1.0716,
                high: 1.0722,
                low: 1.07083,
                close: 1.07219,
                volume: 1413.0,
            }
        );
    }

    #[test]
    fn a_daily_goog_row_parses_as_midnight() {
        let bar = parse_row("2004-08-19,100,104.06,95.96,100.34,22351900").unwrap();
        assert_eq!(bar.time, datetime!(2004-08-19 00:00:00));
        assert_eq!(bar.open, 100.0);
        assert_eq!(bar.volume, 22_351_900.0);
    }

    #[test]
    fn a_btcusd_row_keeps_its_fractional_volume() {
        let bar = parse_row("2024-12-31,96515.0,108364.0,92092.0,93381.0,25342.80228337").unwrap();
        assert_eq!(bar.time, datetime!(2024-12-31 00:00:00));
        assert_eq!(bar.volume, 25342.80228337);
        assert_eq!(bar.close, 93381.0);
    }

    #[test]
    fn malformed_rows_say_what_is_wrong() {
        let cases = [
            (
                "2017-04-19 09:00:00,1.07,1.08,1.06,1.07",
                RowError::FieldCount(5),
            ),
            (
                "2017-04-19 9:00,1.07,1.08,1.06,1.07,1",
                RowError::Timestamp("2017-04-19 9:00".into()),
            ),
            (
                "2017-02-30,1.07,1.08,1.06,1.07,1",
                RowError::Timestamp("2017-02-30".into()),
            ),
            (
                "2017-04-19,1.07,abc,1.06,1.07,1",
                RowError::Number {
                    column: "High",
                    value: "abc".into(),
                },
            ),
            (
                "2017-04-19,1.07,1.08,1.06,NaN,1",
                RowError::Number {
                    column: "Close",
                    value: "NaN".into(),
                },
            ),
            (
                "2017-04-19,0,1.08,1.06,1.07,1",
                RowError::OutOfRange {
                    column: "Open",
                    value: 0.0,
                },
            ),
            (
                "2017-04-19,1.07,1.08,1.06,1.07,-5",
                RowError::OutOfRange {
                    column: "Volume",
                    value: -5.0,
                },
            ),
            (
                "2017-04-19,1.07,1.05,1.06,1.07,1",
                RowError::Inconsistent {
                    open: 1.07,
                    high: 1.05,
                    low: 1.06,
                    close: 1.07,
                },
            ),
        ];
        for (row, expected) in cases {
            assert_eq!(parse_row(row), Err(expected), "{row}");
        }
    }

    #[test]
    fn the_shipped_feed_loads_whole() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/EURUSD.csv");
        let feed = Feed::load(&path, None, OnBadRow::Stop, |_| {}).unwrap();
        assert_eq!(feed.symbol, "EURUSD");
        assert_eq!(feed.bars.len(), 5000);
        assert_eq!(feed.bar(1).time, datetime!(2017-04-19 09:00:00));
        assert_eq!(feed.bar(5000).time, datetime!(2018-02-07 15:00:00));
        // Looping: quote 5001 carries the first bar again.
        assert_eq!(feed.bar(5001), feed.bar(1));
    }

    #[test]
    fn symbols_must_fit_in_one_subject_token() {
        assert!(is_valid_symbol("EURUSD"));
        assert!(is_valid_symbol("BRK-B"));
        for bad in ["", "EUR.USD", "EUR USD", "*", ">"] {
            assert!(!is_valid_symbol(bad), "{bad:?}");
        }
    }
}
