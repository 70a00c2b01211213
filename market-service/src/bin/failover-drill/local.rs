//! Local mode: nats-server (one, or a 3-node JetStream cluster) and the market-service replicas
//! as processes on this machine, on free ports, the servers' data in temporary directories.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use leader_election::testing::NatsServer;
use rustix::process::Signal;

use crate::drill::{DrillError, Injection, Target};
use crate::fault::FaultKind;
use crate::journal::Journal;
use crate::logs::Event;
use crate::replica::{self, Replica};
use crate::wallclock::Micros;

/// How the replicas are run.
#[derive(Debug, Clone)]
pub(crate) struct LocalSettings {
    /// The market-service binary.
    pub(crate) service_bin: PathBuf,
    /// 1: a single nats-server; 3: a JetStream cluster (bucket and stream with 3 replicas).
    pub(crate) cluster: usize,
    /// How many market-service replicas.
    pub(crate) replicas: usize,
    /// The feed file.
    pub(crate) feed: PathBuf,
    /// Quotes per second.
    pub(crate) rate: f64,
    /// Lease timings, as the service's settings take them (`500ms`).
    pub(crate) lease: Duration,
    pub(crate) renew: Duration,
    pub(crate) ttl: Duration,
    pub(crate) drain: Duration,
    /// Where the replicas' logs go.
    pub(crate) log_dir: PathBuf,
}

/// The servers and replicas of a local drill. Dropping it stops them all.
pub(crate) struct LocalCluster {
    settings: LocalSettings,
    servers: Vec<NatsServer>,
    replicas: Vec<Slot>,
    journal: Journal,
}

/// One replica: its identity and its current process.
struct Slot {
    identity: String,
    generation: u32,
    process: Replica,
}

impl LocalCluster {
    /// Starts the servers and the replicas.
    ///
    /// # Errors
    /// [`DrillError::Setup`] when nats-server or the service binary cannot be run.
    pub(crate) async fn start(settings: LocalSettings) -> Result<LocalCluster, DrillError> {
        check_nats_server()?;
        if !settings.service_bin.is_file() {
            return Err(DrillError::Setup(format!(
                "market-service binary not found at {}: build it (cargo build --release -p market-service) or pass --service-bin",
                settings.service_bin.display()
            )));
        }
        std::fs::create_dir_all(&settings.log_dir).map_err(|e| {
            DrillError::Setup(format!("cannot create {}: {e}", settings.log_dir.display()))
        })?;
        let size = settings.cluster;
        // NatsServer panics with a message that says what to install; turn that into an error.
        let servers = tokio::task::spawn_blocking(move || {
            std::panic::catch_unwind(|| {
                if size > 1 {
                    NatsServer::cluster(size)
                } else {
                    vec![NatsServer::start()]
                }
            })
        })
        .await
        .map_err(|e| DrillError::Setup(format!("starting nats-server: {e}")))?
        .map_err(|panic| {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            DrillError::Setup(format!("cannot start nats-server: {text}"))
        })?;
        let mut cluster = LocalCluster {
            settings,
            servers,
            replicas: Vec::new(),
            journal: Journal::default(),
        };
        for index in 0..cluster.settings.replicas {
            let identity = format!("r{}", index + 1);
            let process = cluster.spawn(&identity, 1)?;
            cluster.replicas.push(Slot {
                identity,
                generation: 1,
                process,
            });
        }
        Ok(cluster)
    }

    /// The client URLs of the servers.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.servers.iter().map(NatsServer::url).collect()
    }

    /// The nats-server binary in use, and its version line.
    pub(crate) fn server_version(&self) -> String {
        nats_server_version().unwrap_or_else(|_| "unknown".into())
    }

    fn spawn(&self, identity: &str, generation: u32) -> Result<Replica, DrillError> {
        let s = &self.settings;
        let replicas = s.cluster.to_string();
        let env: Vec<(String, String)> = [
            ("NATS_URL", self.urls().join(",")),
            ("MARKET_IDENTITY", identity.to_string()),
            ("MARKET_LEASE_DURATION", millis(s.lease)),
            ("MARKET_RENEW_INTERVAL", millis(s.renew)),
            ("MARKET_SERVER_TTL", millis(s.ttl)),
            ("MARKET_DRAIN_TIMEOUT", millis(s.drain)),
            ("MARKET_BUCKET_REPLICAS", replicas.clone()),
            ("MARKET_STREAM_REPLICAS", replicas),
            ("MARKET_FEED", s.feed.display().to_string()),
            ("MARKET_RATE", s.rate.to_string()),
            ("MARKET_LOOP", "true".to_string()),
            ("MARKET_HTTP_ADDR", "127.0.0.1:0".to_string()),
            ("MARKET_LOG_FORMAT", "json".to_string()),
            ("RUST_LOG", "info".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Replica::spawn(
            &s.service_bin,
            &env,
            identity,
            generation,
            &self.journal,
            &s.log_dir,
        )
        .map_err(|e| DrillError::Setup(format!("cannot start {}: {e}", s.service_bin.display())))
    }

    fn slot(&mut self, process: &str) -> Result<&mut Slot, DrillError> {
        self.replicas
            .iter_mut()
            .find(|s| s.process.process == process)
            .ok_or_else(|| DrillError::Stuck(format!("no running replica {process}")))
    }

    /// The server `process` is connected to, from its last `connected successfully` line
    /// (async-nats logs the port of the URL); the first server when unknown.
    fn server_of(&self, process: &str) -> usize {
        let entries = self.journal.entries();
        let port = entries.iter().rev().find_map(|e| match &e.event {
            Event::Connected { server } if e.process == process => Some(server.clone()),
            _ => None,
        });
        port.and_then(|port| {
            self.servers.iter().position(|s| {
                s.port().to_string() == port || s.url().ends_with(&format!(":{port}"))
            })
        })
        .unwrap_or(0)
    }

    /// Stops every replica (then the servers, on drop).
    pub(crate) async fn stop(&mut self) {
        for slot in &mut self.replicas {
            slot.process.stop().await;
        }
    }
}

impl Target for LocalCluster {
    fn journal(&self) -> &Journal {
        &self.journal
    }

    fn alive(&mut self) -> Vec<String> {
        self.replicas
            .iter_mut()
            .filter_map(|s| s.process.is_running().then(|| s.process.process.clone()))
            .collect()
    }

    async fn all_ready(&mut self) -> Result<bool, DrillError> {
        let processes: Vec<String> = self.alive();
        if processes.len() < self.replicas.len() {
            return Ok(false);
        }
        for process in processes {
            let Some(port) = replica::http_port(&self.journal, &process) else {
                return Ok(false);
            };
            if !replica::is_ready(port).await {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn inject(&mut self, fault: FaultKind, leader: &str) -> Result<Injection, DrillError> {
        let pause = self.settings.lease * 2;
        let signal = |slot: &Slot, signal: Signal| {
            slot.process
                .signal(signal)
                .map_err(|e| DrillError::Stuck(format!("cannot signal {leader}: {e}")))
        };
        match fault {
            FaultKind::Term | FaultKind::Kill => {
                let slot = self.slot(leader)?;
                let sig = if fault == FaultKind::Term {
                    Signal::TERM
                } else {
                    Signal::KILL
                };
                let at = signal(slot, sig)?;
                Ok(Injection {
                    at,
                    done: Micros::now(),
                    resumed: None,
                })
            }
            FaultKind::Pause => {
                let slot = self.slot(leader)?;
                let at = signal(slot, Signal::STOP)?;
                let done = Micros::now();
                tokio::time::sleep(pause).await;
                let slot = self.slot(leader)?;
                let resumed = signal(slot, Signal::CONT)?;
                Ok(Injection {
                    at,
                    done,
                    resumed: Some(resumed),
                })
            }
            FaultKind::NatsRestart => {
                let index = self.server_of(leader);
                let server = &mut self.servers[index];
                let at = Micros::now();
                // Blocks until the server is healthy again (kill, start, /healthz).
                tokio::task::block_in_place(|| server.restart());
                Ok(Injection {
                    at,
                    done: Micros::now(),
                    resumed: None,
                })
            }
            FaultKind::Delete => Err(DrillError::Setup("the delete fault needs --kubectl".into())),
        }
    }

    async fn recover(
        &mut self,
        fault: FaultKind,
        leader: &str,
    ) -> Result<Option<(String, bool)>, DrillError> {
        if !fault.ends_process() {
            return Ok(None);
        }
        let bound = self.settings.drain + self.settings.lease + Duration::from_secs(2);
        let expected = (fault == FaultKind::Kill).then_some(9);
        let slot = self.slot(leader)?;
        let exit = slot.process.wait_exit(bound, expected).await;
        if exit.is_none() {
            // Still running: it did not stop within its bound. Kill it, as the kubelet would.
            slot.process.stop().await;
        }
        let (identity, generation) = (slot.identity.clone(), slot.generation + 1);
        let process = self.spawn(&identity, generation)?;
        let slot = self.slot(leader)?;
        slot.generation = generation;
        slot.process = process;
        Ok(Some(exit.unwrap_or_else(|| {
            (format!("still running after {bound:?}"), false)
        })))
    }

    async fn tick(&mut self) -> Result<(), DrillError> {
        Ok(())
    }
}

fn millis(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// Fails with what to do when nats-server is missing or too old to run.
fn check_nats_server() -> Result<(), DrillError> {
    nats_server_version().map(|_| ())
}

fn nats_server_version() -> Result<String, DrillError> {
    let binary = NatsServer::binary();
    let output = Command::new(&binary).arg("--version").output().map_err(|e| {
        DrillError::Setup(format!(
            "cannot run nats-server ({}: {e}): install it with eval \"$(scripts/install-tools)\" or set NATS_SERVER",
            binary.display()
        ))
    })?;
    // `nats-server: v2.15.1` → `nats-server v2.15.1`.
    Ok(String::from_utf8_lossy(&output.stdout)
        .trim()
        .replacen(": ", " ", 1))
}

/// The market-service binary next to the drill's own (`target/release/market-service`).
pub(crate) fn default_service_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_default()
        .join("market-service")
}
