//! What every example shares: settings from the environment and logging.

use std::time::Duration;

/// `NATS_URL`, default `nats://127.0.0.1:4222`.
pub(crate) fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string())
}

/// `IDENTITY`, default `<hostname>-<pid>`.
pub(crate) fn identity() -> String {
    std::env::var("IDENTITY").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    })
}

/// `RUN_FOR` in seconds: stop by itself after that long (for CI); default: until Ctrl-C.
pub(crate) async fn until_stopped() {
    match std::env::var("RUN_FOR")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
    {
        Some(secs) => tokio::time::sleep(Duration::from_secs_f64(secs)).await,
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Logs to stderr, `RUST_LOG` or `info`.
pub(crate) fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}
