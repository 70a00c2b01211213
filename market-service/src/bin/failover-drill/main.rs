//! failover-drill: measures failover of market-service replicas, locally or on Kubernetes.
//!
//! Each round waits for a steady state (one leader, every replica ready, quotes flowing), waits
//! a random part of a renew interval, faults the leader (SIGTERM, SIGKILL, SIGSTOP, a NATS
//! restart; with `--kubectl`, pod deletion and signals through `kubectl exec`), and measures
//! from what it observes: the successor's `Leadership acquired` in the logs, the gap in the
//! quote stream by JetStream timestamps, and the library's leaderless time. It checks that two
//! replicas never led at once, that fencing tokens increase, and that every symbol's quotes
//! stay gapless and duplicate-free. A figure it could not observe is reported as such, never
//! guessed. See `failover-drill --help` and the README's "Failover drill" section.
//!
//! Files: [`cli`] flags; [`local`] and [`replica`] run processes, [`kube`] drives kubectl;
//! [`logs`] parses log lines into the [`journal`]; [`observe`] reads the quote stream;
//! [`drill`] runs the rounds, [`round`] measures one, [`checks`] judges safety; [`stats`],
//! [`report`], [`svg`] and [`progress`] present the results.

mod checks;
mod cli;
mod drill;
mod fault;
mod journal;
mod kube;
mod local;
mod logs;
mod observe;
mod progress;
mod replica;
mod report;
mod rng;
mod round;
mod stats;
mod svg;
mod wallclock;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::cli::Args;
use crate::drill::{Drill, DrillError, Outcome, Settings};
use crate::report::{Report, RunInfo};
use crate::wallclock::Micros;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(err) = args.validate() {
        eprintln!("failover-drill: error: {err}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("failover-drill: error: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let code = runtime.block_on(run(args));
    runtime.shutdown_timeout(Duration::from_secs(2));
    code
}

async fn run(args: Args) -> ExitCode {
    let seed = args.seed.unwrap_or_else(rng::Rng::seed_from_time);
    let out = args.out.clone().unwrap_or_else(default_out_dir);
    if let Err(err) = std::fs::create_dir_all(&out) {
        eprintln!(
            "failover-drill: error: cannot create {}: {err}",
            out.display()
        );
        return ExitCode::from(2);
    }
    eprintln!(
        "failover-drill: seed {seed} (repeat with --seed {seed}); results in {}",
        out.display()
    );
    let result = if args.kubectl {
        run_kubectl(&args, seed).await
    } else {
        run_local(&args, seed, &out).await
    };
    let (info, outcome) = match result {
        Ok(done) => done,
        Err(err) => {
            eprintln!("failover-drill: error: {err}");
            return ExitCode::from(match err {
                DrillError::Setup(_) => 2,
                DrillError::Stuck(_) => 1,
            });
        }
    };
    let report = Report::new(&info, &outcome);
    let json = out.join("rounds.json");
    let svg = out.join("drill.svg");
    let written = serde_json::to_string_pretty(&report)
        .map_err(|e| e.to_string())
        .and_then(|text| std::fs::write(&json, text + "\n").map_err(|e| e.to_string()))
        .and_then(|()| {
            std::fs::write(&svg, svg::render(&info, &outcome)).map_err(|e| e.to_string())
        });
    println!("{}", report.table());
    match written {
        Ok(()) => println!(
            "rounds: {}\npicture: {}\nlogs: {}",
            json.display(),
            svg.display(),
            out.join("logs").display()
        ),
        Err(err) => eprintln!("failover-drill: error: cannot write the results: {err}"),
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn settings(args: &Args) -> Settings {
    Settings {
        rounds: args.rounds,
        faults: args.faults.clone(),
        lease: args.lease,
        renew: args.renew,
        quote_interval: Duration::from_secs_f64(1.0 / args.rate),
        leader_timeout: args.leader_timeout,
        steady_timeout: args.steady_timeout(),
        stream_from_first: !args.kubectl,
    }
}

fn run_info(args: &Args, seed: u64, mode: &str, system: String) -> RunInfo {
    RunInfo {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        seed,
        mode: mode.into(),
        system,
        timings: format!(
            "lease {}, renew {}, TTL {}, {} quotes/s",
            fmt(args.lease),
            fmt(args.renew),
            fmt(args.ttl),
            args.rate
        ),
        quote_interval_ms: 1e3 / args.rate,
        machine: machine(),
        leader_timeout_ms: args.leader_timeout.as_secs_f64() * 1e3,
    }
}

async fn run_local(args: &Args, seed: u64, out: &Path) -> Result<(RunInfo, Outcome), DrillError> {
    let local = local::LocalSettings {
        service_bin: args
            .service_bin
            .clone()
            .unwrap_or_else(local::default_service_bin),
        cluster: usize::from(args.cluster),
        replicas: usize::from(args.replicas),
        feed: args
            .feed
            .clone()
            .unwrap_or_else(|| PathBuf::from(market_service::config::DEFAULT_FEED)),
        rate: args.rate,
        lease: args.lease,
        renew: args.renew,
        ttl: args.ttl,
        drain: args.drain,
        log_dir: out.join("logs"),
    };
    let mut cluster = local::LocalCluster::start(local).await?;
    let version = cluster.server_version();
    let system = if args.cluster > 1 {
        format!("{}-node JetStream cluster ({version})", args.cluster)
    } else {
        format!("single {version}")
    };
    let info = run_info(
        args,
        seed,
        "local",
        format!("{system}, {} market-service replicas", args.replicas),
    );
    let reader = observe::QuoteReader::open(
        async_nats::ConnectOptions::new(),
        &cluster.urls(),
        &args.stream,
        args.steady_timeout(),
    )
    .await;
    let reader = match reader {
        Ok(reader) => reader,
        Err(err) => {
            cluster.stop().await;
            return Err(DrillError::Stuck(err));
        }
    };
    let progress = progress::Progress::new(args.quiet);
    let outcome = Drill::new(
        &mut cluster,
        Some(reader),
        settings(args),
        rng::Rng::new(seed),
        progress,
    )
    .run()
    .await;
    cluster.stop().await;
    Ok((info, outcome))
}

async fn run_kubectl(args: &Args, seed: u64) -> Result<(RunInfo, Outcome), DrillError> {
    let kubectl = kube::Kubectl {
        bin: args.kubectl_bin.clone(),
        context: args.context.clone(),
        namespace: args.namespace.clone(),
    };
    let mut target = kube::KubeTarget::connect(kubectl, args.selector.clone(), args.lease).await?;
    let reader = if args.nats_url.is_empty() {
        None
    } else {
        let mut options = async_nats::ConnectOptions::new();
        if let (Some(user), Some(password)) = (&args.nats_user, &args.nats_password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        let mut reader = observe::QuoteReader::open(
            options,
            &args.nats_url,
            &args.stream,
            Duration::from_secs(10),
        )
        .await
        .map_err(DrillError::Setup)?;
        reader.skip_to_end().await.map_err(DrillError::Setup)?;
        Some(reader)
    };
    let info = run_info(
        args,
        seed,
        "kubectl",
        format!(
            "kubectl {}namespace {}, pods {}",
            args.context
                .as_ref()
                .map_or(String::new(), |c| format!("context {c}, ")),
            args.namespace.as_deref().unwrap_or("(default)"),
            args.selector
        ),
    );
    let progress = progress::Progress::new(args.quiet);
    let outcome = Drill::new(
        &mut target,
        reader,
        settings(args),
        rng::Rng::new(seed),
        progress,
    )
    .run()
    .await;
    Ok((info, outcome))
}

/// `target/drill/<UTC time>` in the target directory this binary was built in.
fn default_out_dir() -> PathBuf {
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let profile = exe.parent()?;
            matches!(profile.file_name()?.to_str()?, "release" | "debug")
                .then(|| profile.parent().map(Path::to_path_buf))?
        })
        .unwrap_or_else(|| PathBuf::from("target"));
    let stamp: String = Micros::now()
        .to_string()
        .chars()
        .take(19)
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    target.join("drill").join(format!("{stamp}Z"))
}

/// Cores and CPU model of this machine, for the report.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    format!("{cores} cores, {model}")
}

fn fmt(duration: Duration) -> String {
    market_service::duration::format_duration(duration)
}
