//! Many elections in one process over one connection: sustained renewals per second, CPU time
//! per renewal, and whether graceful handover slows down as the count grows; next to the same
//! renewal load driven with the bare client, which is what NATS itself costs.
//!
//! For each count N (default 1, 10, 100, 1,000) a fresh nats-server is started and N elections
//! (one candidate each, each on its own key of one bucket, default timings: a renewal every
//! 100 ms) run on one shared connection in this process. Once all lead, a warm-up passes and
//! then a fixed window is measured: renewals acknowledged (through the library's metrics hook),
//! CPU time of this process and of nats-server (`/proc/<pid>/stat`), renewal latency. Then,
//! with the N elections still renewing, a pair of candidates (one on the shared connection, one
//! on its own) hands leadership back and forth.
//!
//! The floor rows (default N = 100 and 1,000) replace the elections by bare tasks that renew a
//! key every 100 ms with one CAS publish each (`bare CAS`), and the same with a watch on each
//! key (`bare CAS + watch`): an election's leader watches its key too, so every renewal also
//! comes back to it as a watch message.
//!
//! Criterion does not fit throughput over a window, so this is a plain program printing a table.
//!
//! Run: `cargo bench -p benches --bench scale [-- --counts=1,10,100,1000 --floor-counts=100,1000
//! --window=10 --warmup=3 --handovers=40 --lease-ms=500 --renew-ms=100]`. Without `--bench` (as under `cargo test -p benches
//! --benches`) or with `--test` it runs a quick check: counts 1 and 10, floor 10, a 1 s window,
//! 3 handovers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::Client;
use benches::cpu::{CpuTime, process_cpu_time};
use benches::floor;
use benches::nats_election::Candidates;
use benches::samples::{Samples, format_duration};
use futures::{StreamExt, TryStreamExt};
use leader_election::testing::NatsServer;
use leader_election::{
    Election, ElectionConfig, ElectionMetrics, FencingToken, LossCause, Timings,
};
use tokio::task::JoinHandle;

const BUCKET: &str = "scale";

/// Consumers the bucket's stream may have. Every election watches its key through its own
/// consumer, and nats-server 2.15 caps a stream at 1,000 consumers unless the stream sets its own
/// limit (`jetstream.limits.default_max_consumers`), so 1,000 elections plus the handover pair
/// would be refused a watch.
const CONSUMER_LIMIT: i32 = 10_000;

/// What the renewing tasks report: through the library's metrics hook, or from the bare tasks.
#[derive(Default)]
struct Counters {
    acquired: AtomicU64,
    lost: AtomicU64,
    renewals: AtomicU64,
    failed_renewals: AtomicU64,
    loss_causes: Mutex<BTreeMap<&'static str, u64>>,
    recording: AtomicBool,
    latencies: Mutex<Vec<Duration>>,
}

impl Counters {
    fn leading(&self) -> u64 {
        self.acquired.load(Ordering::Relaxed) - self.lost.load(Ordering::Relaxed)
    }
}

impl ElectionMetrics for Counters {
    fn acquired(&self, _: &str, _: FencingToken, _: Option<Duration>) {
        self.acquired.fetch_add(1, Ordering::Relaxed);
    }

    fn lost(&self, _: &str, cause: LossCause) {
        self.lost.fetch_add(1, Ordering::Relaxed);
        let mut causes = self.loss_causes.lock().unwrap_or_else(|e| e.into_inner());
        *causes.entry(cause.as_str()).or_default() += 1;
    }

    fn renewal(&self, _: &str, latency: Duration, ok: bool) {
        if ok {
            self.renewals.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed_renewals.fetch_add(1, Ordering::Relaxed);
        }
        if self.recording.load(Ordering::Relaxed) {
            self.latencies
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(latency);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    /// N elections of the library.
    Elections,
    /// N bare tasks, one CAS publish per renewal.
    BareCas,
    /// N bare tasks, one CAS publish per renewal and a watch on the key.
    BareCasWatched,
}

impl Workload {
    fn label(self) -> &'static str {
        match self {
            Workload::Elections => "elections",
            Workload::BareCas => "bare CAS",
            Workload::BareCasWatched => "bare CAS + watch",
        }
    }
}

struct Options {
    /// Timings of the elections (and the bare renewers' interval); the library's defaults
    /// unless `--lease-ms` / `--renew-ms` say otherwise.
    timings: Timings,
    counts: Vec<usize>,
    floor_counts: Vec<usize>,
    window: Duration,
    warmup: Duration,
    handovers: usize,
}

impl Options {
    fn from_args() -> Options {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let full = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
        let mut options = if full {
            Options {
                timings: Timings::default(),
                counts: vec![1, 10, 100, 1000],
                floor_counts: vec![100, 1000],
                window: Duration::from_secs(10),
                warmup: Duration::from_secs(3),
                handovers: 40,
            }
        } else {
            Options {
                timings: Timings::default(),
                counts: vec![1, 10],
                floor_counts: vec![10],
                window: Duration::from_secs(1),
                warmup: Duration::from_millis(300),
                handovers: 3,
            }
        };
        let numbers = |name: &str, value: &str| -> Vec<usize> {
            value
                .split(',')
                .filter(|n| !n.trim().is_empty())
                .map(|n| {
                    n.trim()
                        .parse()
                        .unwrap_or_else(|_| panic!("{name} takes numbers, e.g. 1,10,100"))
                })
                .collect()
        };
        for arg in &args {
            let Some((name, value)) = arg.split_once('=') else {
                continue;
            };
            let seconds = || {
                Duration::from_secs_f64(
                    value
                        .parse()
                        .unwrap_or_else(|_| panic!("{name} takes seconds, got {value:?}")),
                )
            };
            let millis = || -> u64 {
                value
                    .parse()
                    .unwrap_or_else(|_| panic!("{name} takes milliseconds, got {value:?}"))
            };
            match name {
                "--counts" => options.counts = numbers(name, value),
                "--floor-counts" => options.floor_counts = numbers(name, value),
                "--window" => options.window = seconds(),
                "--lease-ms" => options.timings.lease_duration = Duration::from_millis(millis()),
                "--renew-ms" => options.timings.renew_interval = Duration::from_millis(millis()),
                "--warmup" => options.warmup = seconds(),
                "--handovers" => {
                    options.handovers = value.parse().expect("--handovers takes a number");
                }
                _ => {}
            }
        }
        options
    }
}

struct Row {
    workload: Workload,
    count: usize,
    renewals_per_second: f64,
    expected_per_second: f64,
    cpu_per_renewal: Duration,
    kernel_share_of_cpu: f64,
    process_core_share: f64,
    server_core_share: f64,
    renewal_latency: Samples,
    failed_renewals: u64,
    lost_terms: u64,
    loss_causes: BTreeMap<&'static str, u64>,
    handover: Samples,
}

/// Creates the bucket as the library does, then raises its stream's consumer limit.
async fn create_bucket(client: &Client) {
    let config = ElectionConfig::new("setup").bucket(BUCKET);
    leader_election::NatsStore::open(client.clone(), &config)
        .await
        .unwrap_or_else(|err| panic!("creating the bucket: {err}"));
    let jetstream = async_nats::jetstream::new(client.clone());
    let mut stream = jetstream
        .get_stream(format!("KV_{BUCKET}"))
        .await
        .expect("the bucket's stream");
    let mut stream_config = stream
        .info()
        .await
        .expect("the stream's info")
        .config
        .clone();
    stream_config.max_consumers = CONSUMER_LIMIT;
    jetstream
        .update_stream(stream_config)
        .await
        .unwrap_or_else(|err| {
            panic!("raising the bucket's consumer limit to {CONSUMER_LIMIT}: {err}")
        });
}

/// The N renewing things of a workload, until dropped.
enum Running {
    Elections(Vec<Election>),
    Tasks(Vec<JoinHandle<()>>),
}

impl Drop for Running {
    fn drop(&mut self) {
        match self {
            Running::Elections(elections) => {
                for election in elections.drain(..) {
                    election.abort();
                }
            }
            Running::Tasks(tasks) => {
                for task in tasks.drain(..) {
                    task.abort();
                }
            }
        }
    }
}

async fn start_elections(
    client: &Client,
    count: usize,
    timings: Timings,
    counters: &Arc<Counters>,
) -> Running {
    // In parallel batches: each start checks the bucket and opens a watch.
    let elections: Vec<Election> = futures::stream::iter(0..count)
        .map(|i| {
            let config = ElectionConfig::new(format!("scale-{i}"))
                .bucket(BUCKET)
                .election(format!("e{i}"))
                .timings(timings);
            Election::builder(config)
                .metrics(counters.clone())
                .start(client.clone())
        })
        .buffered(32)
        .try_collect()
        .await
        .unwrap_or_else(|err| panic!("starting the elections: {err}"));
    Running::Elections(elections)
}

/// One bare renewer: acquires its key, then renews it every `interval` with one CAS publish,
/// consuming a watch on the key meanwhile when it has one.
async fn bare_renewer(
    client: Client,
    key: String,
    interval: Duration,
    watched: bool,
    counters: Arc<Counters>,
) {
    let subject = floor::key_subject(BUCKET, &key);
    let ttl = Duration::from_secs(1);
    let mut watch = if watched {
        let kv = async_nats::jetstream::new(client.clone())
            .get_key_value(BUCKET)
            .await
            .expect("the bucket");
        Some(kv.watch(&key).await.expect("watching the key"))
    } else {
        None
    };
    let mut revision = floor::cas_publish(&client, &subject, 0, ttl, floor::record_like_payload())
        .await
        .expect("acquiring the key");
    counters.acquired.fetch_add(1, Ordering::Relaxed);
    let mut next = tokio::time::Instant::now() + interval;
    loop {
        let echo = async {
            match watch.as_mut() {
                Some(watch) => watch.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {
                let sent = Instant::now();
                match floor::cas_publish(&client, &subject, revision, ttl, floor::record_like_payload()).await {
                    Ok(new_revision) => {
                        revision = new_revision;
                        counters.renewal(&key, sent.elapsed(), true);
                    }
                    Err(_) => {
                        counters.renewal(&key, sent.elapsed(), false);
                        counters.lost.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
                next = tokio::time::Instant::from_std(sent) + interval;
            }
            entry = echo => {
                entry.expect("the watch ended").expect("a watch error");
            }
        }
    }
}

async fn start_bare(
    client: &Client,
    count: usize,
    interval: Duration,
    watched: bool,
    counters: &Arc<Counters>,
) -> Running {
    let tasks = (0..count)
        .map(|i| {
            tokio::spawn(bare_renewer(
                client.clone(),
                format!("bare-{i}"),
                interval,
                watched,
                counters.clone(),
            ))
        })
        .collect();
    Running::Tasks(tasks)
}

async fn measure(workload: Workload, count: usize, options: &Options) -> Row {
    let server = NatsServer::start();
    let client = benches::connect(&server.url()).await;
    let counters = Arc::new(Counters::default());
    let renew_interval = options.timings.renew_interval;
    create_bucket(&client).await;

    let running = match workload {
        Workload::Elections => start_elections(&client, count, options.timings, &counters).await,
        Workload::BareCas => start_bare(&client, count, renew_interval, false, &counters).await,
        Workload::BareCasWatched => {
            start_bare(&client, count, renew_interval, true, &counters).await
        }
    };
    let all_lead = async {
        while counters.leading() < count as u64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), all_lead)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "only {} of {count} {} led within 120 s",
                counters.leading(),
                workload.label()
            )
        });
    tokio::time::sleep(options.warmup).await;

    let snapshot = || -> (Instant, CpuTime, CpuTime, u64, u64, u64) {
        (
            Instant::now(),
            process_cpu_time(None).expect("reading this process's CPU time"),
            process_cpu_time(server.pid()).expect("reading nats-server's CPU time"),
            counters.renewals.load(Ordering::Relaxed),
            counters.failed_renewals.load(Ordering::Relaxed),
            counters.lost.load(Ordering::Relaxed),
        )
    };
    counters.recording.store(true, Ordering::Relaxed);
    let (t0, cpu0, server0, renewals0, failed0, lost0) = snapshot();
    tokio::time::sleep(options.window).await;
    let (t1, cpu1, server1, renewals1, failed1, lost1) = snapshot();
    counters.recording.store(false, Ordering::Relaxed);

    let wall = (t1 - t0).as_secs_f64();
    let renewals = renewals1 - renewals0;
    let process = cpu1.since(cpu0);
    let cpu = process.total();
    let server_cpu = server1.since(server0).total();
    let mut renewal_latency = Samples::new();
    for latency in counters
        .latencies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
    {
        renewal_latency.push(latency);
    }
    println!(
        "  {count} {}: {:.0} renewals/s, {:.1} µs CPU per renewal, {:.1} % of a core, \
         nats-server {:.1} % of a core",
        workload.label(),
        renewals as f64 / wall,
        cpu.as_secs_f64() * 1e6 / renewals.max(1) as f64,
        cpu.as_secs_f64() / wall * 100.0,
        server_cpu.as_secs_f64() / wall * 100.0,
    );

    // Handover with the N elections still renewing: one candidate on the shared connection.
    let mut handover = Samples::new();
    if workload == Workload::Elections && options.handovers > 0 {
        let own = benches::connect(&server.url()).await;
        let probe = ElectionConfig::new("probe")
            .bucket(BUCKET)
            .election("probe")
            .timings(options.timings);
        let mut candidates = Candidates::start(vec![client.clone(), own], probe).await;
        for _ in 0..options.handovers {
            handover.push(candidates.handover().await);
        }
        candidates.shutdown().await;
    }
    drop(running);

    Row {
        workload,
        count,
        renewals_per_second: renewals as f64 / wall,
        expected_per_second: count as f64 / renew_interval.as_secs_f64(),
        cpu_per_renewal: if renewals == 0 {
            Duration::ZERO
        } else {
            cpu / u32::try_from(renewals).unwrap_or(u32::MAX)
        },
        kernel_share_of_cpu: process.system.as_secs_f64() / cpu.as_secs_f64().max(1e-9),
        process_core_share: cpu.as_secs_f64() / wall,
        server_core_share: server_cpu.as_secs_f64() / wall,
        renewal_latency,
        failed_renewals: failed1 - failed0,
        lost_terms: lost1 - lost0,
        loss_causes: counters
            .loss_causes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        handover,
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "\n{:<17} {:>5} {:>8} {:>8} {:>11} {:>6} {:>7} {:>7} {:>10} {:>10} {:>6} {:>4} {:>10} {:>10}",
        "workload",
        "N",
        "renew/s",
        "expected",
        "CPU/renewal",
        "kernel",
        "process",
        "server",
        "renew p50",
        "renew p99",
        "failed",
        "lost",
        "handovr50",
        "handovr99"
    );
    for row in rows {
        println!(
            "{:<17} {:>5} {:>8.0} {:>8.0} {:>8.1} µs {:>4.0} % {:>5.1} % {:>5.1} % {:>10} {:>10} {:>6} {:>4} {:>10} {:>10}",
            row.workload.label(),
            row.count,
            row.renewals_per_second,
            row.expected_per_second,
            row.cpu_per_renewal.as_secs_f64() * 1e6,
            row.kernel_share_of_cpu * 100.0,
            row.process_core_share * 100.0,
            row.server_core_share * 100.0,
            format_duration(row.renewal_latency.p50()),
            format_duration(row.renewal_latency.p99()),
            row.failed_renewals,
            row.lost_terms,
            format_duration(row.handover.p50()),
            format_duration(row.handover.p99()),
        );
    }
    println!(
        "CPU/renewal: this process's CPU time over the window / renewals acknowledged in it; \
         kernel: the share of that time spent in the kernel; process/server: CPU time of this \
         process / of nats-server over the window, in % of one core; handover p99 is the \
         maximum below 100 handovers"
    );
}

fn main() {
    benches::init_tracing();
    let options = Options::from_args();
    let rt = benches::runtime();
    if let Err(err) = (ElectionConfig::new("x").timings(options.timings)).validate() {
        panic!("--lease-ms / --renew-ms: {err}");
    }
    println!(
        "scale: lease {:?}, renewals every {:?}; counts {:?}, floor counts {:?}, window {:?}, \
         warm-up {:?}, {} handovers per count, {} cores",
        options.timings.lease_duration,
        options.timings.renew_interval,
        options.counts,
        options.floor_counts,
        options.window,
        options.warmup,
        options.handovers,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut rows = Vec::new();
    for &count in &options.counts {
        rows.push(rt.block_on(measure(Workload::Elections, count, &options)));
    }
    for &count in &options.floor_counts {
        for workload in [Workload::BareCas, Workload::BareCasWatched] {
            rows.push(rt.block_on(measure(workload, count, &options)));
        }
    }
    print_table(&rows);

    // A run that lost leadership or could not renew measured something else: fail loudly.
    for row in &rows {
        assert_eq!(
            row.lost_terms,
            0,
            "{} {}: {} terms were lost during the window (causes since start: {:?})",
            row.count,
            row.workload.label(),
            row.lost_terms,
            row.loss_causes
        );
        assert!(
            row.renewals_per_second > 0.0,
            "{} {}: no renewal in the window",
            row.count,
            row.workload.label()
        );
    }
}
