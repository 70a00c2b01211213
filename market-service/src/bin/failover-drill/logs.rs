//! Reading the replicas' JSON logs (`MARKET_LOG_FORMAT=json`, one object per line, as
//! `market_service::telemetry` writes them): the events the drill measures and checks.
//!
//! A line may carry the prefix `kubectl logs --prefix` adds (`[pod/NAME/CONTAINER] `); the pod
//! name is kept. Lines that are not JSON, or not one of the messages below, are ignored.

use serde_json::Value;

use crate::wallclock::Micros;

/// What a log line says, for the lines the drill uses.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    /// `Leadership acquired`: this process leads, with fencing token `token`.
    Acquired {
        /// The replica's identity.
        identity: String,
        /// The lease revision of the term.
        token: u64,
        /// The previous leader's identity, when the library knew it.
        previous: Option<String>,
        /// Time without a leader before this term, from NATS server timestamps.
        leaderless_ms: Option<f64>,
    },
    /// `Leadership lost`: the term's work has stopped.
    Lost {
        /// The token of the term that ended.
        token: u64,
        /// Why (`shutdown`, `deadline`, `superseded`, ...).
        cause: String,
    },
    /// `Quote publish rejected`: the stream refused a publish of a deposed leader.
    PublishRejected {
        /// The term's token.
        token: Option<u64>,
    },
    /// `Shutting down`: the process received SIGTERM or SIGINT.
    ShuttingDown,
    /// `Shutdown complete` with its outcome.
    ShutdownComplete {
        /// `leadership released`, `was not leading`, ...
        outcome: String,
    },
    /// `HTTP listening`: the admin endpoint's address.
    HttpListening {
        /// `127.0.0.1:PORT`.
        addr: String,
    },
    /// async-nats `connected successfully`: the server the client is connected to.
    Connected {
        /// What async-nats logs as the server: the port of the URL it connected to.
        server: String,
    },
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LogLine {
    /// The pod name from a `kubectl logs --prefix` prefix.
    pub(crate) pod: Option<String>,
    /// The line's own timestamp (the replica's clock).
    pub(crate) at: Micros,
    /// What it says.
    pub(crate) event: Event,
}

/// Parses one line; `None` for lines the drill does not use.
pub(crate) fn parse(line: &str) -> Option<LogLine> {
    let (pod, json) = split_prefix(line.trim_end());
    if !json.starts_with('{') {
        return None;
    }
    let value: Value = serde_json::from_str(json).ok()?;
    let at = Micros::parse(value.get("timestamp")?.as_str()?)?;
    let text = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_string);
    let number = |name: &str| value.get(name).and_then(Value::as_u64);
    let event = match value.get("message")?.as_str()? {
        "Leadership acquired" => Event::Acquired {
            identity: text("identity")?,
            token: number("token")?,
            previous: text("previous"),
            leaderless_ms: value.get("leaderless_ms").and_then(Value::as_f64),
        },
        "Leadership lost" => Event::Lost {
            token: number("token")?,
            cause: text("cause").unwrap_or_else(|| "unknown".into()),
        },
        "Quote publish rejected" => Event::PublishRejected {
            token: number("token"),
        },
        "Shutting down" => Event::ShuttingDown,
        "Shutdown complete" => Event::ShutdownComplete {
            outcome: text("outcome").unwrap_or_default(),
        },
        "HTTP listening" => Event::HttpListening {
            addr: text("addr")?,
        },
        "connected successfully" => Event::Connected {
            server: text("server")?,
        },
        _ => return None,
    };
    Some(LogLine { pod, at, event })
}

/// Splits `[pod/NAME/CONTAINER] rest` into the pod name and the rest.
fn split_prefix(line: &str) -> (Option<String>, &str) {
    if let Some(rest) = line.strip_prefix('[')
        && let Some((prefix, json)) = rest.split_once("] ")
    {
        let mut parts = prefix.split('/');
        let pod = match (parts.next(), parts.next()) {
            (Some("pod"), Some(name)) => Some(name.to_string()),
            (Some(name), _) => Some(name.to_string()),
            _ => None,
        };
        return (pod, json);
    }
    (None, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded from market-service (release build, MARKET_LOG_FORMAT=json).
    const ACQUIRED: &str = r#"{"timestamp":"2026-12-03T18:24:07.384152Z","level":"INFO","message":"Leadership acquired","election":"market-feed","identity":"r3","token":22,"previous":"r1","leaderless_ms":1.764,"target":"market_service::app"}"#;
    const FIRST_ACQUIRED: &str = r#"{"timestamp":"2026-12-03T18:24:05.385760Z","level":"INFO","message":"Leadership acquired","election":"market-feed","identity":"r1","token":1,"target":"market_service::app"}"#;
    const LOST: &str = r#"{"timestamp":"2026-12-03T18:24:07.382070Z","level":"INFO","message":"Leadership lost","election":"market-feed","identity":"r1","token":1,"cause":"shutdown","target":"market_service::app"}"#;
    const LIBRARY_LOST: &str = r#"{"timestamp":"2026-12-03T18:24:07.382688Z","level":"INFO","message":"lost leadership","election":"market-feed","identity":"r1","token":1,"cause":"shutdown","target":"leader_election::elector"}"#;
    const SHUTTING_DOWN: &str = r#"{"timestamp":"2026-12-03T18:24:07.381690Z","level":"INFO","message":"Shutting down","signal":"SIGTERM","target":"market_service::shutdown"}"#;
    const COMPLETE: &str = r#"{"timestamp":"2026-12-03T18:24:07.383087Z","level":"INFO","message":"Shutdown complete","outcome":"leadership released","target":"market_service::app"}"#;
    const HTTP: &str = r#"{"timestamp":"2026-12-03T18:24:05.372333Z","level":"INFO","message":"HTTP listening","addr":"127.0.0.1:35443","target":"market_service::app"}"#;
    const CONNECTED: &str = r#"{"timestamp":"2026-12-03T18:24:05.375808Z","level":"INFO","message":"connected successfully","server":"14222","max_payload":"1048576","target":"async_nats::connector"}"#;
    const REJECTED: &str = r#"{"timestamp":"2026-12-03T18:30:01.100000Z","level":"WARN","message":"Quote publish rejected","symbol":"EURUSD","seq":88,"token":40,"expected":87,"error":"wrong last sequence","last_seq":88,"last_token":45,"target":"market_service::quotes"}"#;

    #[test]
    fn leadership_lines_carry_token_predecessor_and_leaderless_time() {
        let line = parse(ACQUIRED).unwrap();
        assert_eq!(line.pod, None);
        assert_eq!(line.at.to_string(), "2026-12-03T18:24:07.384152Z");
        assert_eq!(
            line.event,
            Event::Acquired {
                identity: "r3".into(),
                token: 22,
                previous: Some("r1".into()),
                leaderless_ms: Some(1.764),
            }
        );
        // The first leader of a fresh bucket has neither a predecessor nor a leaderless time.
        assert!(matches!(
            parse(FIRST_ACQUIRED).unwrap().event,
            Event::Acquired {
                token: 1,
                previous: None,
                leaderless_ms: None,
                ..
            }
        ));
        assert_eq!(
            parse(LOST).unwrap().event,
            Event::Lost {
                token: 1,
                cause: "shutdown".into()
            }
        );
    }

    #[test]
    fn shutdown_endpoint_connection_and_rejection_lines_are_read() {
        assert_eq!(parse(SHUTTING_DOWN).unwrap().event, Event::ShuttingDown);
        assert_eq!(
            parse(COMPLETE).unwrap().event,
            Event::ShutdownComplete {
                outcome: "leadership released".into()
            }
        );
        assert_eq!(
            parse(HTTP).unwrap().event,
            Event::HttpListening {
                addr: "127.0.0.1:35443".into()
            }
        );
        assert_eq!(
            parse(CONNECTED).unwrap().event,
            Event::Connected {
                server: "14222".into()
            }
        );
        assert_eq!(
            parse(REJECTED).unwrap().event,
            Event::PublishRejected { token: Some(40) }
        );
    }

    #[test]
    fn other_lines_are_ignored() {
        // The library's own line has another message; the drill counts the app's line only.
        assert!(parse(LIBRARY_LOST).is_none());
        assert!(parse("market-service: error: bad setting").is_none());
        assert!(parse("").is_none());
        assert!(parse(r#"{"message":"Leadership acquired"}"#).is_none());
        assert!(parse(&ACQUIRED.replace("\"token\":22", "\"token\":\"x\"")).is_none());
    }

    #[test]
    fn kubectl_prefixes_name_the_pod() {
        let line = parse(&format!(
            "[pod/market-service-6f7d8c9b5-x2x7q/market-service] {ACQUIRED}"
        ))
        .unwrap();
        assert_eq!(line.pod.as_deref(), Some("market-service-6f7d8c9b5-x2x7q"));
        assert!(matches!(line.event, Event::Acquired { token: 22, .. }));
        let line = parse(&format!("[market-service-abc] {LOST}\n")).unwrap();
        assert_eq!(line.pod.as_deref(), Some("market-service-abc"));
    }
}
