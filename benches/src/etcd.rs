//! etcd's election API, for the side-by-side figures: a local etcd started on free ports, and
//! the same handover and crash scenarios as [`crate::nats_election`], with a lease kept alive
//! by each candidate, `Campaign` to wait for leadership and `Resign` to give it up.
//!
//! etcd accepts a lease TTL of whole seconds, at least 3/2 of its election timeout (rounded up):
//! with its defaults (100 ms heartbeat, 1 s election timeout) a 1 s lease silently becomes 2 s.
//! The servers here run with `--heartbeat-interval 50 --election-timeout 500`, the fastest
//! setting etcd's tuning guide allows for loopback, which makes 1 s the smallest lease. etcd
//! checks for expired leases every 500 ms.
//!
//! etcd syncs its write-ahead log to disk before it acknowledges a write; nats-server (file
//! storage) by default does not. [`Storage::Tmpfs`] puts etcd's data on tmpfs, where a sync is
//! free, for a comparison at equal durability.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions, LeaderKey, ResignOptions};
use leader_election::testing::free_port;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::PATIENCE;
use crate::nats_election::{CrashOutcome, CrashSample};

/// How long a standby has been campaigning before a handover.
const STANDBY_SETTLE: Duration = Duration::from_millis(300);

/// etcd's heartbeat interval used here (its default is 100 ms).
pub const HEARTBEAT_INTERVAL_MS: u64 = 50;
/// etcd's election timeout used here (its default is 1000 ms); 3/2 of it, rounded up to whole
/// seconds, is the smallest lease etcd grants.
pub const ELECTION_TIMEOUT_MS: u64 = 500;

/// Where etcd keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// A temporary directory under `$TMPDIR` (on disk): etcd's real durability, one fsync per commit.
    Disk,
    /// A temporary directory under `/dev/shm` (tmpfs): fsync costs nothing.
    Tmpfs,
}

/// An `etcd` process with its data in a temporary directory; killed on drop.
pub struct EtcdServer {
    name: String,
    client_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl EtcdServer {
    /// Starts a single-member etcd and waits until it is healthy.
    ///
    /// # Panics
    /// When the binary is missing (the message says what to install) or etcd does not become
    /// healthy within 20 s.
    pub fn start(storage: Storage) -> EtcdServer {
        EtcdServer::cluster(1, storage).pop().expect("one member")
    }

    /// Starts `size` members forming one cluster and waits until each is healthy.
    ///
    /// # Panics
    /// As [`EtcdServer::start`].
    pub fn cluster(size: usize, storage: Storage) -> Vec<EtcdServer> {
        let peers: Vec<(String, u16)> =
            (1..=size).map(|i| (format!("e{i}"), free_port())).collect();
        let initial_cluster = peers
            .iter()
            .map(|(name, port)| format!("{name}=http://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<EtcdServer> = peers
            .iter()
            .map(|(name, peer_port)| {
                let dir = match storage {
                    Storage::Disk => tempfile::tempdir(),
                    Storage::Tmpfs => tempfile::tempdir_in("/dev/shm"),
                }
                .expect("creating a temporary directory for etcd");
                let client_port = free_port();
                let peer = format!("http://127.0.0.1:{peer_port}");
                let client = format!("http://127.0.0.1:{client_port}");
                let log = dir.path().join("etcd.log");
                let mut command = Command::new(EtcdServer::binary());
                command
                    .args(["--name", name])
                    .arg("--data-dir")
                    .arg(dir.path().join("data"))
                    .args(["--listen-client-urls", &client])
                    .args(["--advertise-client-urls", &client])
                    .args(["--listen-peer-urls", &peer])
                    .args(["--initial-advertise-peer-urls", &peer])
                    .args(["--initial-cluster", &initial_cluster])
                    .args(["--initial-cluster-state", "new"])
                    .args(["--initial-cluster-token", "bench"])
                    .args(["--heartbeat-interval", &HEARTBEAT_INTERVAL_MS.to_string()])
                    .args(["--election-timeout", &ELECTION_TIMEOUT_MS.to_string()])
                    .args(["--logger", "zap", "--log-level", "warn"])
                    .arg("--log-outputs")
                    .arg(&log)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                let child = command.spawn().unwrap_or_else(|err| {
                    panic!(
                        "cannot start {}: {err}. The etcd benches need etcd 3.4 or later: \
                         apt-get install etcd-server (Debian), or set ETCD=/path/to/etcd; \
                         or run the benches without --features etcd",
                        EtcdServer::binary().display()
                    )
                });
                EtcdServer {
                    name: name.clone(),
                    client_port,
                    dir,
                    child: Some(child),
                }
            })
            .collect();
        for member in &mut members {
            member.wait_healthy();
        }
        members
    }

    /// The binary: `$ETCD` if set, else `etcd` on `PATH`.
    pub fn binary() -> PathBuf {
        std::env::var_os("ETCD")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("etcd"))
    }

    /// The client URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn wait_healthy(&mut self) {
        let started = Instant::now();
        while started.elapsed() < PATIENCE {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                let log =
                    std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
                panic!("etcd {} exited with {status}: {log}", self.name);
            }
            if health(self.client_port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "etcd {} did not become healthy within {PATIENCE:?}",
            self.name
        );
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn health(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(stream, "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains("\"health\":\"true\"")
}

/// Connects an etcd client to one member.
///
/// # Panics
/// When the connection fails.
pub async fn connect(url: &str) -> Client {
    Client::connect([url], None)
        .await
        .unwrap_or_else(|err| panic!("connecting to etcd at {url}: {err}"))
}

/// A candidate's lease, kept alive every TTL/3 (what etcd's own `concurrency.Session` does)
/// until the candidate crashes or resigns.
struct Session {
    client: Client,
    lease: i64,
    keep_alive: JoinHandle<()>,
    /// Send time of the last keep-alive etcd acknowledged (at first: of the grant).
    last_renewal: watch::Receiver<Instant>,
}

impl Session {
    async fn grant(mut client: Client, ttl: Duration) -> Session {
        let requested = i64::try_from(ttl.as_secs()).expect("a TTL of a few seconds");
        let sent = Instant::now();
        let grant = client
            .lease_grant(requested, None)
            .await
            .unwrap_or_else(|err| panic!("etcd lease grant: {err}"));
        assert_eq!(
            grant.ttl(),
            requested,
            "etcd granted a {} s lease for a requested {requested} s: it raises leases shorter than \
             3/2 of its election timeout",
            grant.ttl()
        );
        let (mut keeper, mut responses) = client
            .lease_keep_alive(grant.id())
            .await
            .unwrap_or_else(|err| panic!("etcd lease keep-alive: {err}"));
        let (renewed, last_renewal) = watch::channel(sent);
        let interval = ttl / 3;
        let keep_alive = tokio::spawn(async move {
            let mut last = sent;
            loop {
                tokio::time::sleep_until((last + interval).into()).await;
                let sent = Instant::now();
                if keeper.keep_alive().await.is_err() {
                    return;
                }
                match responses.message().await {
                    Ok(Some(response)) if response.ttl() > 0 => {
                        last = sent;
                        renewed.send_replace(sent);
                    }
                    _ => return,
                }
            }
        });
        Session {
            client,
            lease: grant.id(),
            keep_alive,
            last_renewal,
        }
    }

    /// Stops keeping the lease alive without revoking it, as a crash would.
    fn crash(&self) {
        self.keep_alive.abort();
    }

    async fn revoke(mut self) {
        self.keep_alive.abort();
        let lease = self.lease;
        let _ = self.client.lease_revoke(lease).await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // A dropped JoinHandle does not stop its task: stop renewing a lease nobody uses.
        self.keep_alive.abort();
    }
}

/// A standby: its session, and its `Campaign` call waiting in a task.
struct Standby {
    session: Session,
    client: usize,
    campaign: JoinHandle<(LeaderKey, Instant)>,
}

/// A leader and the connections its standbys use, like [`crate::nats_election::Candidates`].
pub struct EtcdCandidates {
    clients: Vec<Client>,
    election: String,
    ttl: Duration,
    leader: Option<(Session, LeaderKey, usize)>,
}

impl EtcdCandidates {
    /// Elects a first leader on `clients[0]`.
    ///
    /// # Panics
    /// With fewer than two clients, or when etcd fails.
    pub async fn start(clients: Vec<Client>, election: &str, ttl: Duration) -> EtcdCandidates {
        assert!(
            clients.len() >= 2,
            "a leader and a standby need two connections"
        );
        let mut candidates = EtcdCandidates {
            clients,
            election: election.to_string(),
            ttl,
            leader: None,
        };
        let first = candidates.campaign(0).await;
        let (key, _) = tokio::time::timeout(PATIENCE, first.campaign)
            .await
            .expect("the first etcd candidate was not elected in time")
            .expect("the campaign task failed");
        candidates.leader = Some((first.session, key, 0));
        candidates
    }

    /// The lease TTL.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    async fn campaign(&self, client: usize) -> Standby {
        let session = Session::grant(self.clients[client].clone(), self.ttl).await;
        let mut campaigner = self.clients[client].clone();
        let (election, lease) = (self.election.clone(), session.lease);
        let value = crate::floor::record_like_payload().to_vec();
        let campaign = tokio::spawn(async move {
            let mut response = campaigner
                .campaign(election, value, lease)
                .await
                .unwrap_or_else(|err| panic!("etcd campaign: {err}"));
            let elected = Instant::now();
            (
                response
                    .take_leader()
                    .expect("campaign returns the leader key"),
                elected,
            )
        });
        Standby {
            session,
            client,
            campaign,
        }
    }

    /// Starts a standby on another connection than the leader's; returns once its campaign key
    /// is in the election (it then waits for the leader's key to go).
    async fn start_standby(&mut self) -> Standby {
        let leader_client = self.leader.as_ref().map_or(0, |(_, _, c)| *c);
        let client = (leader_client + 1) % self.clients.len();
        let standby = self.campaign(client).await;
        let mut reader = self.clients[client].clone();
        let prefix = format!("{}/", self.election);
        tokio::time::timeout(PATIENCE, async {
            loop {
                let count = reader
                    .get(
                        prefix.as_str(),
                        Some(GetOptions::new().with_prefix().with_count_only()),
                    )
                    .await
                    .unwrap_or_else(|err| panic!("etcd get: {err}"))
                    .count();
                if count >= 2 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("the standby's campaign key did not appear in time");
        standby
    }

    /// One graceful handover: from the leader's `Resign` call to the standby's `Campaign`
    /// returning.
    ///
    /// # Panics
    /// When etcd fails or the standby is not elected in time.
    pub async fn handover(&mut self) -> Duration {
        let standby = self.start_standby().await;
        // etcd delivers events to a watcher that started in the past (the campaign's wait for
        // the leader's key) from a loop that runs every 100 ms until it has caught up; a standby
        // that campaigned a moment ago would measure that loop. Like the NATS standby, which
        // has waited out a hold-off, this one has been waiting a while.
        tokio::time::sleep(STANDBY_SETTLE).await;
        let (session, key, _) = self.leader.take().expect("a leader");
        let mut resigner = session.client.clone();
        let t0 = Instant::now();
        resigner
            .resign(Some(ResignOptions::new().with_leader(key)))
            .await
            .unwrap_or_else(|err| panic!("etcd resign: {err}"));
        let (key, t1) = tokio::time::timeout(PATIENCE, standby.campaign)
            .await
            .expect("the standby was not elected in time")
            .expect("the campaign task failed");
        // Untimed: the old leader leaves.
        session.revoke().await;
        self.leader = Some((standby.session, key, standby.client));
        t1 - t0
    }

    /// One crash: the leader stops its keep-alives right after one was acknowledged, without
    /// revoking; the standby is elected once etcd expires the lease and deletes the leader's key.
    ///
    /// # Errors
    /// When the standby was elected before the lease could have expired.
    ///
    /// # Panics
    /// When etcd fails or the standby is not elected in time.
    pub async fn crash(&mut self) -> Result<CrashOutcome, String> {
        let standby = self.start_standby().await;
        let (session, _, _) = self.leader.take().expect("a leader");
        let mut renewed = session.last_renewal.clone();
        renewed.borrow_and_update();
        tokio::time::timeout(PATIENCE, renewed.changed())
            .await
            .expect("the leader did not renew in time")
            .expect("the keep-alive task ended");
        session.crash();
        let last_sent = *renewed.borrow();
        let (key, t1) = tokio::time::timeout(PATIENCE, standby.campaign)
            .await
            .expect("the standby was not elected in time")
            .expect("the campaign task failed");
        let silence_to_leader = t1 - last_sent;
        self.leader = Some((standby.session, key, standby.client));
        match silence_to_leader.checked_sub(self.ttl) {
            Some(overhead) => Ok(CrashOutcome::TakenOver(CrashSample {
                silence_to_leader,
                overhead,
            })),
            None => Err(format!(
                "etcd elected the standby {silence_to_leader:?} after the leader's last keep-alive \
                 was sent, before its {:?} lease could expire",
                self.ttl
            )),
        }
    }

    /// Revokes the leader's lease.
    pub async fn shutdown(mut self) {
        if let Some((session, _, _)) = self.leader.take() {
            session.revoke().await;
        }
    }
}
