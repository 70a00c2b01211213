//! Process-level test harness: runs the market-service binary against a real nats-server,
//! captures its JSON logs, and reads the quote stream.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use leader_election::testing::NatsServer;

/// Lease timings of the tests: short, so failovers take a fraction of a second.
pub const LEASE: Duration = Duration::from_millis(300);
pub const RENEW: Duration = Duration::from_millis(60);
/// Quotes per second per symbol in the tests.
pub const RATE: u32 = 50;
pub const STREAM: &str = "market-quotes";

pub fn shared_data(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/market")
        .join(file)
        .canonicalize()
        .or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("data")
                .join(file)
                .canonicalize()
        })
        .unwrap_or_else(|_| panic!("test data {file} not found"))
}

/// The environment of one replica: the test timings, JSON logs, a free HTTP port.
pub fn replica_env(url: &str, identity: &str) -> Vec<(String, String)> {
    [
        ("NATS_URL", url),
        ("MARKET_IDENTITY", identity),
        ("MARKET_LEASE_DURATION", "300ms"),
        ("MARKET_RENEW_INTERVAL", "60ms"),
        ("MARKET_SERVER_TTL", "1s"),
        ("MARKET_DRAIN_TIMEOUT", "1s"),
        ("MARKET_RATE", "50"),
        ("MARKET_HTTP_ADDR", "127.0.0.1:0"),
        ("MARKET_LOG_FORMAT", "json"),
        ("RUST_LOG", "info"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// One running market-service process.
pub struct Replica {
    pub name: String,
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    status: Option<ExitStatus>,
}

impl Replica {
    pub fn start(url: &str, identity: &str) -> Replica {
        Replica::start_with(identity, &replica_env(url, identity), &[])
    }

    /// Starts the binary with exactly `env` (plus PATH) and `args`.
    pub fn start_with(name: &str, env: &[(String, String)], args: &[&str]) -> Replica {
        let mut command = Command::new(env!("CARGO_BIN_EXE_market-service"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("starting market-service");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = lines.clone();
        let raw_sink = stderr.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(value) => sink.lock().unwrap().push(value),
                    // Text logs (or anything else) land next to stderr, for the failure message.
                    Err(_) => raw_sink.lock().unwrap().push_str(&format!("{line}\n")),
                }
            }
        });
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = err.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Replica {
            name: name.to_string(),
            child,
            lines,
            stderr,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Log lines with this message.
    pub fn messages(&self, message: &str) -> Vec<Value> {
        self.logs()
            .into_iter()
            .filter(|l| l["message"] == message)
            .collect()
    }

    pub fn has_logged(&self, message: &str) -> bool {
        !self.messages(message).is_empty()
    }

    /// Waits for the `nth` (0-based) log line with `message`.
    pub fn wait_for_nth(&self, message: &str, nth: usize, timeout: Duration) -> Value {
        let found = wait_until(timeout, || self.messages(message).get(nth).cloned());
        found.unwrap_or_else(|| {
            panic!(
                "{}: no log line #{nth} {message:?} within {timeout:?}\n{}",
                self.name,
                self.dump()
            )
        })
    }

    pub fn wait_for(&self, message: &str, timeout: Duration) -> Value {
        self.wait_for_nth(message, 0, timeout)
    }

    /// The admin endpoint's port, from the `HTTP listening` log line.
    pub fn http_port(&self) -> u16 {
        let line = self.wait_for("HTTP listening", Duration::from_secs(10));
        let addr = line["addr"].as_str().expect("addr field");
        addr.rsplit(':').next().unwrap().parse().expect("port")
    }

    /// `GET path` on the admin endpoint: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.http_port(), path)
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for market-service") {
                self.status = Some(status);
                // Let the reader threads drain the pipes.
                thread::sleep(Duration::from_millis(20));
                return status;
            }
            if started.elapsed() > timeout {
                panic!(
                    "{} did not exit within {timeout:?}\n{}",
                    self.name,
                    self.dump()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.status.is_none() && matches!(self.child.try_wait(), Ok(None))
    }

    pub fn dump(&self) -> String {
        let logs: Vec<String> = self.logs().iter().map(Value::to_string).collect();
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
            self.name,
            logs.join("\n"),
            self.name,
            self.stderr()
        )
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(self.child.id().to_string())
                .status();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `probe` every few milliseconds until it returns `Some` or `timeout` passes.
pub fn wait_until<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if started.elapsed() > timeout {
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the admin port");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Index of the replica that logged `Leadership acquired` (the `nth` time overall), waiting
/// for it.
pub fn wait_for_leader(replicas: &[Replica], timeout: Duration) -> usize {
    wait_until(timeout, || {
        replicas
            .iter()
            .position(|r| r.has_logged("Leadership acquired"))
    })
    .unwrap_or_else(|| {
        let dumps: Vec<String> = replicas.iter().map(Replica::dump).collect();
        panic!("no leader within {timeout:?}\n{}", dumps.join("\n"))
    })
}

/// One quote message as stored in the stream.
#[derive(Debug, Clone)]
pub struct StoredQuote {
    pub stream_sequence: u64,
    pub subject: String,
    pub symbol: String,
    pub seq: u64,
    pub publisher: String,
    pub token: u64,
}

/// Every quote in the stream, in stream order.
pub fn read_quotes(url: &str) -> Vec<StoredQuote> {
    runtime().block_on(async {
        let client = async_nats::connect(url).await.expect("connecting to NATS");
        let jetstream = async_nats::jetstream::new(client);
        let Ok(stream) = jetstream.get_stream(STREAM).await else {
            return Vec::new();
        };
        let state = stream.cached_info().state.clone();
        let mut quotes = Vec::new();
        if state.messages == 0 {
            return quotes;
        }
        for sequence in state.first_sequence..=state.last_sequence {
            let Ok(message) = stream.get_raw_message(sequence).await else {
                continue;
            };
            let payload: Value = serde_json::from_slice(&message.payload).expect("quote JSON");
            let header = |name: &str| {
                message
                    .headers
                    .get(name)
                    .map(|v| v.as_str().to_string())
                    .unwrap_or_default()
            };
            quotes.push(StoredQuote {
                stream_sequence: message.sequence,
                subject: message.subject.to_string(),
                symbol: payload["symbol"].as_str().unwrap_or_default().to_string(),
                seq: payload["seq"].as_u64().unwrap_or_default(),
                publisher: header("Market-Publisher"),
                token: header("Market-Fencing-Token").parse().unwrap_or_default(),
            });
        }
        quotes
    })
}

/// Waits until the stream holds at least `count` quotes.
pub fn wait_for_quotes(url: &str, count: usize, timeout: Duration) -> Vec<StoredQuote> {
    wait_until(timeout, || {
        let quotes = read_quotes(url);
        (quotes.len() >= count).then_some(quotes)
    })
    .unwrap_or_else(|| panic!("fewer than {count} quotes in the stream within {timeout:?}"))
}

/// Waits until `publisher` has published at least `count` quotes.
pub fn wait_for_quotes_from(
    url: &str,
    publisher: &str,
    count: usize,
    timeout: Duration,
) -> Vec<StoredQuote> {
    wait_until(timeout, || {
        let quotes = read_quotes(url);
        (quotes.iter().filter(|q| q.publisher == publisher).count() >= count).then_some(quotes)
    })
    .unwrap_or_else(|| panic!("{publisher} did not publish {count} quotes within {timeout:?}"))
}

/// Asserts that each symbol's quotes, in stream order, are numbered 1, 2, 3, ... and that the
/// fencing tokens never go down.
pub fn assert_gapless(quotes: &[StoredQuote]) {
    let mut symbols: Vec<&str> = quotes.iter().map(|q| q.symbol.as_str()).collect();
    symbols.sort_unstable();
    symbols.dedup();
    for symbol in symbols {
        let of_symbol: Vec<&StoredQuote> = quotes.iter().filter(|q| q.symbol == symbol).collect();
        for (index, quote) in of_symbol.iter().enumerate() {
            assert_eq!(
                quote.seq,
                index as u64 + 1,
                "{symbol}: quote at stream sequence {} should be #{} (gap or duplicate)\n{}",
                quote.stream_sequence,
                index + 1,
                describe(&of_symbol)
            );
        }
        // Shown with --nocapture: what each hand-over looked like in the stream.
        eprintln!(
            "{symbol}: {} quotes, gapless\n{}",
            of_symbol.len(),
            describe(&of_symbol)
        );
        for pair in of_symbol.windows(2) {
            assert!(
                pair[0].token <= pair[1].token,
                "{symbol}: fencing token went down at #{}\n{}",
                pair[1].seq,
                describe(&of_symbol)
            );
        }
    }
}

/// The quotes around each change of publisher, for failure messages and the report.
pub fn describe(quotes: &[&StoredQuote]) -> String {
    let mut out = String::new();
    for (index, quote) in quotes.iter().enumerate() {
        let near_switch = quotes
            .get(index + 1)
            .is_some_and(|next| next.publisher != quote.publisher)
            || index
                .checked_sub(1)
                .is_some_and(|prev| quotes[prev].publisher != quote.publisher);
        if near_switch || index < 1 || index + 1 == quotes.len() {
            out.push_str(&format!(
                "  stream seq {:>5}  {} #{:<5} by {} (token {})\n",
                quote.stream_sequence, quote.symbol, quote.seq, quote.publisher, quote.token
            ));
        }
    }
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
