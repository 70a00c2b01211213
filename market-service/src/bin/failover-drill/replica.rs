//! One market-service process of the local drill, its output captured: every line goes to its
//! log file, the lines the drill uses to the journal.

use std::io::Write;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::journal::Journal;
use crate::logs::{self, Event};
use crate::wallclock::Micros;

/// A running (or exited) replica process.
pub(crate) struct Replica {
    /// `r1#2`: replica r1, second start.
    pub(crate) process: String,
    child: Child,
    pid: Pid,
    status: Option<ExitStatus>,
}

impl Replica {
    /// Starts `binary` with exactly `env` (plus `PATH`), as generation `generation` of replica
    /// `identity`, writing its output to `log_dir/<identity>.<generation>.log`.
    pub(crate) fn spawn(
        binary: &Path,
        env: &[(String, String)],
        identity: &str,
        generation: u32,
        journal: &Journal,
        log_dir: &Path,
    ) -> std::io::Result<Replica> {
        let process = format!("{identity}#{generation}");
        let mut child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child
            .id()
            .and_then(|id| Pid::from_raw(id as i32))
            .ok_or_else(|| std::io::Error::other("the replica exited at once"))?;
        let path = log_dir.join(format!("{identity}.{generation}.log"));
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let journal = journal.clone();
        let name = process.clone();
        // Unbuffered: a line is on disk as soon as it is read, whenever the drill stops.
        let mut file = std::fs::File::create(&path)?;
        tokio::spawn(async move {
            let mut out = stdout.map(|s| BufReader::new(s).lines());
            let mut err = stderr.map(|s| BufReader::new(s).lines());
            // Both streams into one file, in the order they arrive.
            loop {
                let line = tokio::select! {
                    line = next(&mut out), if out.is_some() => line,
                    line = next(&mut err), if err.is_some() => line,
                    else => break,
                };
                let Some(line) = line else { continue };
                if let Some(parsed) = logs::parse(&line) {
                    journal.push(&name, parsed);
                }
                let _ = writeln!(file, "{line}");
            }
        });
        Ok(Replica {
            process,
            child,
            pid,
            status: None,
        })
    }

    /// Sends `signal`; returns the wall-clock time taken right before the system call.
    pub(crate) fn signal(&self, signal: Signal) -> std::io::Result<Micros> {
        let at = Micros::now();
        kill_process(self.pid, signal)?;
        Ok(at)
    }

    /// Whether the process is still running (a stopped process is).
    pub(crate) fn is_running(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.status = Some(status);
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// Waits up to `timeout` for the process to exit; its status, as text, and whether it
    /// matches `expected_signal` (`None`: exit code 0 expected).
    pub(crate) async fn wait_exit(
        &mut self,
        timeout: Duration,
        expected_signal: Option<i32>,
    ) -> Option<(String, bool)> {
        let status = match self.status {
            Some(status) => status,
            None => {
                let status = tokio::time::timeout(timeout, self.child.wait())
                    .await
                    .ok()?
                    .ok()?;
                self.status = Some(status);
                status
            }
        };
        use std::os::unix::process::ExitStatusExt;
        let text = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(signal)) => format!("signal {signal}"),
            _ => "unknown".to_string(),
        };
        let ok = match expected_signal {
            None => status.code() == Some(0),
            Some(expected) => status.signal() == Some(expected),
        };
        Some((text, ok))
    }

    /// Lets a stopped process go on and kills it (end of the drill).
    pub(crate) async fn stop(&mut self) {
        if self.is_running() {
            let _ = kill_process(self.pid, Signal::CONT);
            let _ = kill_process(self.pid, Signal::TERM);
            if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
                .await
                .is_err()
            {
                let _ = self.child.kill().await;
            }
        }
    }
}

/// The admin endpoint's port of `process`, from its `HTTP listening` line.
pub(crate) fn http_port(journal: &Journal, process: &str) -> Option<u16> {
    journal.entries().iter().rev().find_map(|e| match &e.event {
        Event::HttpListening { addr } if e.process == process => {
            addr.rsplit(':').next()?.parse().ok()
        }
        _ => None,
    })
}

/// `GET /readyz` on 127.0.0.1:`port`: whether it answered 200 within a second.
pub(crate) async fn is_ready(port: u16) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream
            .write_all(b"GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response);
        Some(text.split_whitespace().nth(1) == Some("200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), probe).await,
        Ok(Some(true))
    )
}

/// The next line; `None` (and the reader dropped) at the end of the stream.
async fn next<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut Option<tokio::io::Lines<R>>,
) -> Option<String> {
    let reader = lines.as_mut()?;
    match reader.next_line().await {
        Ok(Some(line)) => Some(line),
        _ => {
            *lines = None;
            None
        }
    }
}
