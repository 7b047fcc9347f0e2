//! Shutdown: a stop signal the controller, the leader election and the HTTP server wait on,
//! fired by SIGTERM or SIGINT.

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{info, warn};

/// A stop signal: resolves when the value turns true or the sender is gone.
pub type Stop = watch::Receiver<bool>;

/// Waits for a stop signal.
pub async fn stopped(mut stop: Stop) {
    // An error means the sender is gone, which also means stop.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// A stop signal fired by SIGTERM or SIGINT: stop gracefully; a second one exits at once.
pub fn on_signals() -> anyhow::Result<Stop> {
    let (shutdown_tx, shutdown) = watch::channel(false);
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        for count in 0.. {
            tokio::select! {
                _ = sigterm.recv() => {}
                _ = sigint.recv() => {}
            }
            if count > 0 {
                warn!("second signal: exiting now");
                std::process::exit(130);
            }
            info!("shutdown requested: finishing running reconciles");
            let _ = shutdown_tx.send(true);
        }
    });
    Ok(shutdown)
}
