//! Latency of the election path, next to the physical floor of NATS and next to etcd, measured
//! in one run on one machine against servers this bench starts on free ports.
//!
//! Criterion ids (every figure is also recorded per iteration and printed with its p99 in the
//! summary at the end, with the ratios the targets are stated in):
//!
//! - `floor/…` — the bare client: a core request/reply round trip, a JetStream CAS publish with
//!   a TTL, and a bare handover (delete at revision → a watcher's CAS acquire acknowledged).
//! - `store/…` — the library's `NatsStore`, the exact code path of the election: acquire on an
//!   empty key, acquire over a delete marker, renew.
//! - `election/handover/…` — `resign()` at t0, the standby's `leading()` resolves at t1.
//! - `election/crash_overhead/…` — the leader's task is aborted (`Election::abort`) right after a
//!   renewal; the standby's takeover, measured from that renewal's send time, minus the lease.
//! - `etcd/…` (feature `etcd`) — the same handover and crash on etcd's election API.
//!
//! `…/single` runs on one server, `…/cluster3` on a local 3-node cluster (bucket with 3
//! replicas, candidates on different nodes).
//!
//! Run: `cargo bench -p benches --bench election [--features etcd] [-- <filter>]`.
//! Quick check (each bench once): `cargo test -p benches --benches`.
//! `BENCH_TIME_SCALE=3` triples every group's measurement time, for more samples in the tails.
//! Every iteration starts after an untimed idle pause, 100 ms unless `BENCH_IDLE_MS` says
//! otherwise (see `idle_gap`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::Client;
use benches::floor::{self, EchoResponder, RawHandover};
use benches::nats_election::{Candidates, CrashOutcome};
use benches::samples::Report;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode};
use leader_election::testing::NatsServer;
use leader_election::{ElectionConfig, LeaseStore, NatsStore, WriteRequest};
use tokio::runtime::Runtime;

#[cfg(feature = "etcd")]
use benches::etcd::{self, EtcdCandidates, EtcdServer, Storage};

static REPORT: Report = Report::new();

/// Crash iterations in which a standby led before the dead leader's lease ran out. They are
/// not figures: the run prints them and fails at the end.
static VIOLATIONS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Crash iterations in which the aborted election released the key (see
/// `CrashOutcome::Released`), by bench: not figures, counted and printed.
static RELEASED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The overhead of a crash takeover; `None` (not a figure) for a released key, which is
/// counted, or a violation, which is recorded.
fn crash_overhead(
    name: &str,
    silence: &str,
    outcome: Result<CrashOutcome, String>,
) -> Option<Duration> {
    match outcome {
        Ok(CrashOutcome::TakenOver(sample)) => {
            REPORT.record(silence, sample.silence_to_leader);
            Some(sample.overhead)
        }
        Ok(CrashOutcome::Released) => {
            RELEASED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(name.to_string());
            None
        }
        Err(violation) => {
            eprintln!("SAFETY VIOLATION in {name}: {violation}");
            VIOLATIONS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("{name}: {violation}"));
            None
        }
    }
}

/// The server-side TTL every write carries (the server's minimum, the library's default).
const TTL: Duration = Duration::from_secs(1);
const BUCKET: &str = "bench";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topology {
    Single,
    Cluster3,
}

impl Topology {
    fn name(self) -> &'static str {
        match self {
            Topology::Single => "single",
            Topology::Cluster3 => "cluster3",
        }
    }

    fn replicas(self) -> usize {
        match self {
            Topology::Single => 1,
            Topology::Cluster3 => 3,
        }
    }
}

/// The servers, each started the first time a bench needs it.
struct Env {
    rt: Runtime,
    single: Option<NatsServer>,
    cluster: Option<Vec<NatsServer>>,
    /// Each etcd topology and storage, started on first use.
    #[cfg(feature = "etcd")]
    etcd: Vec<((Topology, Storage), Vec<EtcdServer>)>,
}

impl Env {
    fn new() -> Env {
        Env {
            rt: benches::runtime(),
            single: None,
            cluster: None,
            #[cfg(feature = "etcd")]
            etcd: Vec::new(),
        }
    }

    /// Client URLs: the single server twice (two connections, as two processes would have), or
    /// each node of the cluster.
    fn nats_urls(&mut self, topology: Topology) -> Vec<String> {
        match topology {
            Topology::Single => {
                let url = self.single.get_or_insert_with(NatsServer::start).url();
                vec![url.clone(), url]
            }
            Topology::Cluster3 => self
                .cluster
                .get_or_insert_with(|| NatsServer::cluster(3))
                .iter()
                .map(NatsServer::url)
                .collect(),
        }
    }

    /// One connection per URL of [`Env::nats_urls`].
    fn nats_clients(&mut self, topology: Topology) -> Vec<Client> {
        let urls = self.nats_urls(topology);
        self.rt.block_on(async {
            let mut clients = Vec::new();
            for url in &urls {
                clients.push(benches::connect(url).await);
            }
            clients
        })
    }

    #[cfg(feature = "etcd")]
    fn etcd_clients(&mut self, topology: Topology, storage: Storage) -> Vec<etcd_client::Client> {
        if !self.etcd.iter().any(|(key, _)| *key == (topology, storage)) {
            let members = EtcdServer::cluster(topology.replicas(), storage);
            self.etcd.push(((topology, storage), members));
        }
        let members = &self
            .etcd
            .iter()
            .find(|(key, _)| *key == (topology, storage))
            .expect("started above")
            .1;
        let mut urls: Vec<String> = members.iter().map(EtcdServer::url).collect();
        if urls.len() == 1 {
            urls.push(urls[0].clone());
        }
        self.rt.block_on(async {
            let mut clients = Vec::new();
            for url in &urls {
                clients.push(etcd::connect(url).await);
            }
            clients
        })
    }
}

fn config(topology: Topology, election: &str) -> ElectionConfig {
    ElectionConfig::new("bench")
        .bucket(BUCKET)
        .election(election)
        .bucket_replicas(topology.replicas())
}

/// The untimed pause before every iteration: `BENCH_IDLE_MS`, 100 ms by default.
///
/// Leadership changes on an otherwise idle system. On this kind of VM a round trip started
/// after the process and the server idled costs several times one started back-to-back
/// (measured: a CAS publish 0.75 ms at p50 after 100 ms or 500 ms idle, against 0.1 to 0.4 ms in
/// a tight loop), and the library's handover always idles first (the resigned candidate's
/// hold-off). So every bench idles the same way before each iteration, and the ratios compare
/// like with like; `BENCH_IDLE_MS=0` measures back-to-back.
fn idle_gap() -> Duration {
    std::env::var("BENCH_IDLE_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_millis(100), Duration::from_millis)
}

/// `BENCH_TIME_SCALE` times `seconds`.
fn scaled(seconds: f64) -> Duration {
    let scale: f64 = std::env::var("BENCH_TIME_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| *s > 0.0)
        .unwrap_or(1.0);
    Duration::from_secs_f64(seconds * scale)
}

/// Benchmarks `id` in `group`: builds the fixture on first use (so a filtered-out bench starts
/// nothing), times `iteration` (which returns its own timed span, leaving setup out), records
/// every iteration in the report, and drops the fixture afterwards so its elections stop before
/// the next bench.
fn bench<F>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    env: &mut Env,
    name: &str,
    setup: impl FnOnce(&mut Env) -> F,
    mut iteration: impl AsyncFnMut(&mut F) -> Option<Duration>,
) {
    let (_, id) = name.split_once('/').expect("names are group/id");
    let mut setup = Some(setup);
    let mut fixture: Option<F> = None;
    group.bench_function(id, |b| {
        if fixture.is_none() {
            let setup = setup.take().expect("set up once");
            fixture = Some(setup(env));
        }
        let fixture = fixture.as_mut().expect("set up");
        b.iter_custom(|iters| {
            env.rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    tokio::time::sleep(idle_gap()).await;
                    // `None`: not a figure (a recorded violation); it adds nothing.
                    if let Some(spent) = iteration(fixture).await {
                        REPORT.record(name, spent);
                        total += spent;
                    }
                }
                total
            })
        });
    });
    drop(fixture);
}

/// A group whose iterations each idle first (see `idle_gap`): few, long iterations.
fn idle_first_group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(scaled(15.0));
    group
}

fn floor_benches(c: &mut Criterion, env: &mut Env) {
    let mut group = idle_first_group(c, "floor");

    bench(
        &mut group,
        env,
        "floor/request_reply/single",
        |env| {
            let mut clients = env.nats_clients(Topology::Single);
            let responder_client = clients.pop().expect("two clients");
            let responder = env
                .rt
                .block_on(EchoResponder::start(responder_client, "bench.echo"))
                .expect("starting the echo responder");
            (clients.pop().expect("two clients"), responder)
        },
        async |(client, _responder)| {
            let t0 = Instant::now();
            floor::request_reply(client, "bench.echo")
                .await
                .expect("request/reply");
            Some(t0.elapsed())
        },
    );

    for topology in [Topology::Single, Topology::Cluster3] {
        bench(
            &mut group,
            env,
            &format!("floor/cas_publish/{}", topology.name()),
            |env| {
                let client = env.nats_clients(topology).swap_remove(0);
                let key = "floor-cas";
                // The library creates the bucket, so the floor writes to the same kind of bucket.
                env.rt
                    .block_on(NatsStore::open(client.clone(), &config(topology, key)))
                    .expect("creating the bucket");
                (client, floor::key_subject(BUCKET, key), 0u64)
            },
            async |(client, subject, revision)| {
                let t0 = Instant::now();
                *revision = floor::cas_publish(
                    client,
                    subject,
                    *revision,
                    TTL,
                    floor::record_like_payload(),
                )
                .await
                .expect("CAS publish");
                Some(t0.elapsed())
            },
        );

        bench(
            &mut group,
            env,
            &format!("floor/handover/{}", topology.name()),
            |env| {
                let clients = env.nats_clients(topology);
                let key = "floor-handover";
                env.rt
                    .block_on(NatsStore::open(clients[0].clone(), &config(topology, key)))
                    .expect("creating the bucket");
                env.rt
                    .block_on(RawHandover::start(
                        clients[0].clone(),
                        clients[1].clone(),
                        BUCKET,
                        key,
                        TTL,
                    ))
                    .expect("starting the bare handover")
            },
            async |handover| Some(handover.once().await.expect("bare handover")),
        );
    }
    group.finish();
}

/// A `NatsStore` on one key and the revision the next write expects.
struct StoreKey {
    store: NatsStore,
    revision: u64,
}

impl StoreKey {
    async fn open(client: Client, topology: Topology, key: &str) -> StoreKey {
        let store = NatsStore::open(client, &config(topology, key))
            .await
            .unwrap_or_else(|err| panic!("opening the store of {key}: {err}"));
        StoreKey { store, revision: 0 }
    }

    /// A write as the election makes it: CAS at `revision`, with the TTL.
    async fn write(&mut self) -> u64 {
        let request = WriteRequest {
            expected_revision: self.revision,
            value: floor::record_like_payload(),
            ttl: TTL,
            timeout: Duration::from_secs(5),
        };
        self.revision = self
            .store
            .write(request)
            .await
            .unwrap_or_else(|err| panic!("store write: {err}"));
        self.revision
    }

    async fn delete(&mut self) {
        self.revision = self
            .store
            .delete(self.revision, Duration::from_secs(5))
            .await
            .unwrap_or_else(|err| panic!("store delete: {err}"));
    }
}

fn store_benches(c: &mut Criterion, env: &mut Env) {
    let mut group = idle_first_group(c, "store");

    bench(
        &mut group,
        env,
        "store/acquire_empty/single",
        |env| (env.nats_clients(Topology::Single).swap_remove(0), 0u64),
        async |(client, keys)| {
            // Untimed: a store on a key that was never written.
            *keys += 1;
            let mut key =
                StoreKey::open(client.clone(), Topology::Single, &format!("empty-{keys}")).await;
            // Idle again, as before every other timed write.
            tokio::time::sleep(idle_gap()).await;
            let t0 = Instant::now();
            key.write().await;
            Some(t0.elapsed())
        },
    );

    for topology in [Topology::Single, Topology::Cluster3] {
        bench(
            &mut group,
            env,
            &format!("store/acquire_marker/{}", topology.name()),
            |env| {
                let client = env.nats_clients(topology).swap_remove(0);
                env.rt.block_on(async {
                    let mut key = StoreKey::open(client, topology, "store-marker").await;
                    key.write().await;
                    key.delete().await;
                    key
                })
            },
            async |key| {
                let t0 = Instant::now();
                key.write().await;
                let spent = t0.elapsed();
                // Untimed: release again, leaving a delete marker for the next acquisition.
                key.delete().await;
                Some(spent)
            },
        );

        bench(
            &mut group,
            env,
            &format!("store/renew/{}", topology.name()),
            |env| {
                let client = env.nats_clients(topology).swap_remove(0);
                env.rt.block_on(async {
                    let mut key = StoreKey::open(client, topology, "store-renew").await;
                    key.write().await;
                    key
                })
            },
            async |key| {
                let t0 = Instant::now();
                key.write().await;
                Some(t0.elapsed())
            },
        );
    }
    group.finish();
}

/// Lease timings of the crash benches: lease, renew interval, safety margin. The server TTL
/// stays 1 s (its minimum); the standby takes over on its own clock after the lease.
const CRASH_TIMINGS: [(&str, u64, u64, u64); 3] = [
    ("lease_200ms", 200, 40, 20),
    ("lease_500ms", 500, 100, 50), // the library's defaults
    ("lease_1s", 1000, 200, 50),   // equal to etcd's smallest lease
];

fn election_benches(c: &mut Criterion, env: &mut Env) {
    let mut group = c.benchmark_group("election");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    // Each handover waits out the resigned candidate's hold-off (one lease, untimed) first.
    group.measurement_time(scaled(30.0));
    for topology in [Topology::Single, Topology::Cluster3] {
        bench(
            &mut group,
            env,
            &format!("election/handover/{}", topology.name()),
            |env| {
                let clients = env.nats_clients(topology);
                env.rt
                    .block_on(Candidates::start(clients, config(topology, "handover")))
            },
            async |candidates| Some(candidates.handover().await),
        );
    }
    group.finish();

    let mut group = c.benchmark_group("election");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    // One warm-up iteration: each one lasts a lease.
    group.warm_up_time(Duration::from_millis(1));
    for topology in [Topology::Single, Topology::Cluster3] {
        for (label, lease_ms, renew_ms, margin_ms) in CRASH_TIMINGS {
            if topology == Topology::Cluster3 && lease_ms < 500 {
                continue;
            }
            group.measurement_time(scaled(25.0 * (lease_ms as f64 / 1000.0 + 0.1)));
            let silence = format!("election/crash_silence/{}/{label}", topology.name());
            let name = format!("election/crash_overhead/{}/{label}", topology.name());
            bench(
                &mut group,
                env,
                &name,
                |env| {
                    let clients = env.nats_clients(topology);
                    let config = config(topology, &format!("crash-{label}"))
                        .lease_duration(Duration::from_millis(lease_ms))
                        .renew_interval(Duration::from_millis(renew_ms))
                        .safety_margin(Duration::from_millis(margin_ms));
                    env.rt.block_on(Candidates::start(clients, config))
                },
                async |candidates| crash_overhead(&name, &silence, candidates.crash().await),
            );
        }
    }
    group.finish();
}

#[cfg(feature = "etcd")]
fn etcd_benches(c: &mut Criterion, env: &mut Env) {
    let mut group = idle_first_group(c, "etcd");
    for topology in [Topology::Single, Topology::Cluster3] {
        for (storage, suffix) in [(Storage::Disk, ""), (Storage::Tmpfs, "_tmpfs")] {
            bench(
                &mut group,
                env,
                &format!("etcd/handover/{}{suffix}", topology.name()),
                |env| {
                    let clients = env.etcd_clients(topology, storage);
                    env.rt
                        .block_on(EtcdCandidates::start(clients, "handover", TTL))
                },
                async |candidates| Some(candidates.handover().await),
            );
        }
    }

    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(1));
    // etcd's smallest lease with --election-timeout 500 (see benches::etcd).
    group.measurement_time(scaled(25.0 * 1.35));
    for topology in [Topology::Single, Topology::Cluster3] {
        let silence = format!("etcd/crash_silence/{}/ttl_1s", topology.name());
        let name = format!("etcd/crash_overhead/{}/ttl_1s", topology.name());
        bench(
            &mut group,
            env,
            &name,
            |env| {
                let clients = env.etcd_clients(topology, Storage::Disk);
                env.rt.block_on(EtcdCandidates::start(
                    clients,
                    "crash",
                    Duration::from_secs(1),
                ))
            },
            async |candidates| crash_overhead(&name, &silence, candidates.crash().await),
        );
    }
    group.finish();
}

fn print_summary(env: &mut Env) {
    println!("\n=== election benches: summary (per-iteration samples) ===");
    if let Some(server) = &env.single {
        let client = env.rt.block_on(benches::connect(&server.url()));
        println!("nats-server {}", client.server_info().version);
    }
    println!(
        "cores: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    print!("{}", REPORT.table());
    println!("\nratios (p50 / p50, p99 / p99):");
    let mut ratios = Vec::new();
    for t in ["single", "cluster3"] {
        ratios.extend([
            (
                format!("graceful handover ÷ raw CAS round trip, {t} (target ≤ 3×)"),
                format!("election/handover/{t}"),
                format!("floor/cas_publish/{t}"),
            ),
            (
                format!("graceful handover ÷ bare handover, {t}"),
                format!("election/handover/{t}"),
                format!("floor/handover/{t}"),
            ),
            (
                format!("renewal ÷ raw CAS round trip, {t}"),
                format!("store/renew/{t}"),
                format!("floor/cas_publish/{t}"),
            ),
            (
                format!("acquire over a marker ÷ raw CAS round trip, {t}"),
                format!("store/acquire_marker/{t}"),
                format!("floor/cas_publish/{t}"),
            ),
            (
                format!("etcd handover ÷ NATS handover, {t}"),
                format!("etcd/handover/{t}"),
                format!("election/handover/{t}"),
            ),
            (
                format!("etcd handover (data on tmpfs) ÷ NATS handover, {t}"),
                format!("etcd/handover/{t}_tmpfs"),
                format!("election/handover/{t}"),
            ),
            (
                format!("etcd crash overhead (1 s) ÷ NATS crash overhead (1 s), {t}"),
                format!("etcd/crash_overhead/{t}/ttl_1s"),
                format!("election/crash_overhead/{t}/lease_1s"),
            ),
            (
                format!("etcd crash failover (1 s) ÷ NATS crash failover (1 s), {t}"),
                format!("etcd/crash_silence/{t}/ttl_1s"),
                format!("election/crash_silence/{t}/lease_1s"),
            ),
            (
                format!("etcd crash failover (1 s, its minimum) ÷ NATS crash failover (500 ms default), {t}"),
                format!("etcd/crash_silence/{t}/ttl_1s"),
                format!("election/crash_silence/{t}/lease_500ms"),
            ),
        ]);
    }
    ratios.push((
        "acquire on an empty key ÷ raw CAS round trip, single".to_string(),
        "store/acquire_empty/single".to_string(),
        "floor/cas_publish/single".to_string(),
    ));
    for (label, numerator, denominator) in ratios {
        if let Some(line) = REPORT.ratio(&label, &numerator, &denominator) {
            println!("  {line}");
        }
    }
}

fn main() {
    benches::init_tracing();
    let mut criterion = Criterion::default().configure_from_args();
    let mut env = Env::new();
    floor_benches(&mut criterion, &mut env);
    store_benches(&mut criterion, &mut env);
    election_benches(&mut criterion, &mut env);
    #[cfg(feature = "etcd")]
    etcd_benches(&mut criterion, &mut env);
    criterion.final_summary();
    print_summary(&mut env);
    let released = RELEASED.lock().unwrap_or_else(|e| e.into_inner());
    if !released.is_empty() {
        println!(
            "\naborted leaders that released the key instead of crashing (not counted): {} ({:?})",
            released.len(),
            *released
        );
    }
    let violations = VIOLATIONS.lock().unwrap_or_else(|e| e.into_inner());
    if !violations.is_empty() {
        eprintln!("\n{} SAFETY VIOLATIONS:", violations.len());
        for violation in violations.iter() {
            eprintln!("  {violation}");
        }
        std::process::exit(1);
    }
}
