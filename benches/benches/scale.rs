//! Many elections in one process over one connection: sustained renewals per second, CPU time
//! per renewal, and whether graceful handover slows down as the count grows.
//!
//! For each count N (default 1, 10, 100, 1,000) a fresh nats-server is started and N elections
//! (one candidate each, each on its own key of one bucket, default timings: a renewal every
//! 100 ms) run on one shared connection in this process. Once all lead, a warm-up passes and
//! then a fixed window is measured: renewals acknowledged (through the library's metrics hook),
//! CPU time of this process and of nats-server (`/proc/<pid>/stat`), renewal latency. Then,
//! with the N elections still renewing, a pair of candidates (one on the shared connection, one
//! on its own) hands leadership back and forth.
//!
//! Criterion does not fit throughput over a window, so this is a plain program printing a table.
//!
//! Run: `cargo bench -p benches --bench scale [-- --counts=1,10,100,1000 --window=10 --warmup=3 --handovers=40]`.
//! Without `--bench` (as under `cargo test -p benches --benches`) or with `--test` it runs a
//! quick check: counts 1 and 10, a 1 s window, 3 handovers.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use benches::cpu::process_cpu_time;
use benches::nats_election::Candidates;
use benches::samples::{Samples, format_duration};
use futures::{StreamExt, TryStreamExt};
use leader_election::testing::NatsServer;
use leader_election::{Election, ElectionConfig, ElectionMetrics, FencingToken, LossCause};

const BUCKET: &str = "scale";

/// Counts what the elections report through the library's metrics hook.
#[derive(Default)]
struct Counters {
    acquired: AtomicU64,
    lost: AtomicU64,
    renewals: AtomicU64,
    failed_renewals: AtomicU64,
    recording: AtomicBool,
    latencies: Mutex<Vec<Duration>>,
}

impl ElectionMetrics for Counters {
    fn acquired(&self, _: &str, _: FencingToken, _: Option<Duration>) {
        self.acquired.fetch_add(1, Ordering::Relaxed);
    }

    fn lost(&self, _: &str, _: LossCause) {
        self.lost.fetch_add(1, Ordering::Relaxed);
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

struct Options {
    counts: Vec<usize>,
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
                counts: vec![1, 10, 100, 1000],
                window: Duration::from_secs(10),
                warmup: Duration::from_secs(3),
                handovers: 40,
            }
        } else {
            Options {
                counts: vec![1, 10],
                window: Duration::from_secs(1),
                warmup: Duration::from_millis(300),
                handovers: 3,
            }
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
            match name {
                "--counts" => {
                    options.counts = value
                        .split(',')
                        .map(|n| {
                            n.trim()
                                .parse()
                                .expect("--counts takes numbers, e.g. 1,10,100")
                        })
                        .collect();
                }
                "--window" => options.window = seconds(),
                "--warmup" => options.warmup = seconds(),
                "--handovers" => {
                    options.handovers = value.parse().expect("--handovers takes a number")
                }
                _ => {}
            }
        }
        options
    }
}

struct Row {
    elections: usize,
    renewals_per_second: f64,
    expected_per_second: f64,
    cpu_per_renewal: Duration,
    process_core_share: f64,
    server_core_share: f64,
    renewal_latency: Samples,
    failed_renewals: u64,
    lost_terms: u64,
    handover: Samples,
}

async fn measure(elections_wanted: usize, options: &Options) -> Row {
    let server = NatsServer::start();
    let client = benches::connect(&server.url()).await;
    let counters = Arc::new(Counters::default());
    let timings = ElectionConfig::new("x").timings;

    // Start in parallel batches: each start checks the bucket and opens a watch.
    let elections: Vec<Election> = futures::stream::iter(0..elections_wanted)
        .map(|i| {
            let config = ElectionConfig::new(format!("scale-{i}"))
                .bucket(BUCKET)
                .election(format!("e{i}"));
            Election::builder(config)
                .metrics(counters.clone())
                .start(client.clone())
        })
        .buffered(32)
        .try_collect()
        .await
        .unwrap_or_else(|err| panic!("starting the elections: {err}"));
    let all_lead = async {
        while counters.acquired.load(Ordering::Relaxed) < elections_wanted as u64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), all_lead)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "only {} of {elections_wanted} elections acquired their key within 120 s",
                counters.acquired.load(Ordering::Relaxed)
            )
        });
    tokio::time::sleep(options.warmup).await;

    let snapshot = |counters: &Counters| {
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
    let (t0, cpu0, server0, renewals0, failed0, lost0) = snapshot(&counters);
    tokio::time::sleep(options.window).await;
    let (t1, cpu1, server1, renewals1, failed1, lost1) = snapshot(&counters);
    counters.recording.store(false, Ordering::Relaxed);

    let wall = (t1 - t0).as_secs_f64();
    let renewals = renewals1 - renewals0;
    let cpu = cpu1.saturating_sub(cpu0);
    let mut renewal_latency = Samples::new();
    for latency in counters
        .latencies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
    {
        renewal_latency.push(latency);
    }

    // Handover with the N elections still renewing: one candidate on the shared connection.
    let own = benches::connect(&server.url()).await;
    let probe = ElectionConfig::new("probe")
        .bucket(BUCKET)
        .election("probe");
    let mut candidates = Candidates::start(vec![client.clone(), own], probe).await;
    let mut handover = Samples::new();
    for _ in 0..options.handovers {
        handover.push(candidates.handover().await);
    }
    candidates.shutdown().await;
    for election in elections {
        election.abort();
    }

    Row {
        elections: elections_wanted,
        renewals_per_second: renewals as f64 / wall,
        expected_per_second: elections_wanted as f64 / timings.renew_interval.as_secs_f64(),
        cpu_per_renewal: if renewals == 0 {
            Duration::ZERO
        } else {
            cpu / u32::try_from(renewals).unwrap_or(u32::MAX)
        },
        process_core_share: cpu.as_secs_f64() / wall,
        server_core_share: server1.saturating_sub(server0).as_secs_f64() / wall,
        renewal_latency,
        failed_renewals: failed1 - failed0,
        lost_terms: lost1 - lost0,
        handover,
    }
}

fn main() {
    benches::init_tracing();
    let options = Options::from_args();
    let rt = benches::runtime();
    println!(
        "scale: counts {:?}, window {:?}, warm-up {:?}, {} handovers per count, {} cores",
        options.counts,
        options.window,
        options.warmup,
        options.handovers,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut rows = Vec::new();
    for &count in &options.counts {
        let row = rt.block_on(measure(count, &options));
        println!(
            "  {count} elections: {:.0} renewals/s, {:.1} µs CPU per renewal, {:.1} % of a core",
            row.renewals_per_second,
            row.cpu_per_renewal.as_secs_f64() * 1e6,
            row.process_core_share * 100.0
        );
        rows.push(row);
    }

    println!(
        "\n{:>9} {:>10} {:>10} {:>12} {:>10} {:>10} {:>11} {:>11} {:>6} {:>5} {:>11} {:>11}",
        "elections",
        "renew/s",
        "expected",
        "CPU/renewal",
        "process",
        "server",
        "renew p50",
        "renew p99",
        "failed",
        "lost",
        "handover50",
        "handover99"
    );
    for row in &rows {
        println!(
            "{:>9} {:>10.0} {:>10.0} {:>9.1} µs {:>8.1} % {:>8.1} % {:>11} {:>11} {:>6} {:>5} {:>11} {:>11}",
            row.elections,
            row.renewals_per_second,
            row.expected_per_second,
            row.cpu_per_renewal.as_secs_f64() * 1e6,
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
        "process/server: CPU time of this process / of nats-server over the window, in % of one core; \
         handover p99 is the maximum below 100 handovers"
    );

    // A bench that lost leadership or could not renew measured something else: fail loudly.
    for row in &rows {
        assert_eq!(
            row.lost_terms, 0,
            "{} elections: {} terms were lost during the window",
            row.elections, row.lost_terms
        );
        assert!(
            row.renewals_per_second > 0.0,
            "{} elections: no renewal in the window",
            row.elections
        );
    }
}
