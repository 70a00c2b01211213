//! Entry point: configuration → telemetry → application → run; reports the error chain on exit.

use std::process::ExitCode;
use std::time::Duration;

use market_service::app::{App, error_chain};
use market_service::config::Config;
use market_service::{shutdown, telemetry};

fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("market-service: error: {}", error_chain(&err));
            return ExitCode::from(2);
        }
    };
    if let Err(err) = telemetry::init(config.log_format, &config.log_filter) {
        eprintln!("market-service: error: cannot set up logging: {err}");
        return ExitCode::from(2);
    }
    // Two workers keep the renewal loop responsive while the feed or a probe runs; few
    // blocking threads (name resolution only) keep the footprint small.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(2)
        .thread_name("market-service")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "Cannot start the async runtime");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let shutdown = shutdown::listen().map_err(|err| {
            tracing::error!(error = %err, "Cannot install signal handlers");
        });
        let Ok(shutdown) = shutdown else {
            return Err(1);
        };
        let app = App::build(config).await.map_err(report)?;
        app.run(shutdown).await.map_err(report)
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

/// Logs the error chain and returns the exit code.
fn report(err: market_service::app::AppError) -> u8 {
    tracing::error!(error = %error_chain(&err), exit_code = err.exit_code(), "Exiting");
    err.exit_code()
}
