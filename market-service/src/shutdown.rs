//! Signals: the first SIGTERM or SIGINT starts a graceful shutdown, a second one exits at once.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Exit code after a second signal: 128 + SIGINT, what shells report for an interrupted program.
pub const FORCED_EXIT_CODE: i32 = 130;

/// Listens for SIGTERM and SIGINT on the current runtime. The returned token is cancelled at
/// the first signal (logged as `Shutting down`); a second signal logs and exits the process with
/// [`FORCED_EXIT_CODE`] without releasing anything.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn listen() -> std::io::Result<CancellationToken> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let token = CancellationToken::new();
    let shutdown = token.clone();
    tokio::spawn(async move {
        let name = |term: bool| if term { "SIGTERM" } else { "SIGINT" };
        let first = tokio::select! {
            _ = terminate.recv() => name(true),
            _ = interrupt.recv() => name(false),
        };
        info!(signal = first, "Shutting down");
        shutdown.cancel();
        let second = tokio::select! {
            _ = terminate.recv() => name(true),
            _ = interrupt.recv() => name(false),
        };
        warn!(
            signal = second,
            exit_code = FORCED_EXIT_CODE,
            "Second signal: exiting at once without releasing leadership"
        );
        std::process::exit(FORCED_EXIT_CODE);
    });
    Ok(token)
}
