//! Running the HTTP server: load the model, bind, serve, and shut down gracefully.
//!
//! Shutdown on SIGTERM or SIGINT: readiness turns false at once (`/v2/health/ready` answers
//! 503), the listener keeps accepting for `--shutdown-delay-seconds` (default 0) so that
//! load balancers can take the pod out, then it closes; in-flight requests finish, idle
//! keep-alive connections close, and the process exits. If requests are still running after
//! `--shutdown-grace-seconds`, or a second signal arrives, it exits anyway.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use crate::config::ServeArgs;
use crate::http::{app, AppState};
use crate::model::ModelArtifact;

/// Timing of a graceful shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownTiming {
    /// Keep accepting (while not ready) this long after the signal.
    pub delay: Duration,
    /// Then wait at most this long for in-flight requests.
    pub grace: Duration,
}

/// Loads the model, builds the runtime and serves until a termination signal. Errors
/// (bad artifact, bad training parameters, port in use) are returned before serving.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let model = args.source.load(&args.training.params())?;
    let workers = match args.worker_threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let runtime = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
    .context("cannot start the async runtime")?;
    runtime.block_on(serve(args, model, started, workers))
}

async fn serve(
    args: &ServeArgs,
    model: ModelArtifact,
    started: Instant,
    workers: usize,
) -> anyhow::Result<()> {
    let addr = SocketAddr::new(args.host, args.port);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    // Registered before serving, so a signal during start-up is not lost.
    let signals = Signals::new().context("cannot install signal handlers")?;
    let state = AppState::new(
        args.model_name.clone(),
        model,
        args.source.to_string(),
        args.limits(),
    );
    let m = state.model();
    info!(
        %addr,
        model = %args.model_name,
        source = %args.source,
        task = %m.task(),
        positive_class = m.positive_class().map(|c| c.as_str()).unwrap_or("-"),
        version = m.short_digest(),
        digest = m.digest(),
        held_out_accuracy = m.accuracy(),
        workers,
        startup_ms = started.elapsed().as_secs_f64() * 1e3,
        "ready"
    );
    let timing = ShutdownTiming {
        delay: Duration::from_secs(args.shutdown_delay_seconds),
        grace: Duration::from_secs(args.shutdown_grace_seconds),
    };
    // Count termination signals: the first starts the shutdown, a second cuts it short.
    let (count_tx, count_rx) = watch::channel(0u32);
    tokio::spawn(async move {
        let mut signals = signals;
        loop {
            let signal = signals.recv().await;
            info!(signal, "shutdown requested");
            count_tx.send_modify(|n| *n += 1);
        }
    });
    let nth_signal = |n: u32| {
        let mut rx = count_rx.clone();
        async move {
            // Err only if the sender is gone, which happens only when the runtime stops.
            let _ = rx.wait_for(|count| *count >= n).await;
        }
    };
    serve_until(listener, state, timing, nth_signal(1), nth_signal(2)).await?;
    Ok(())
}

/// Serves `state` on `listener` until `shutdown` resolves, then shuts down gracefully per
/// `timing`; `force` (e.g. a second signal) ends the grace period early. Returns when all
/// connections are closed or the grace period is over.
pub async fn serve_until(
    listener: TcpListener,
    state: AppState,
    timing: ShutdownTiming,
    shutdown: impl Future<Output = ()> + Send + 'static,
    force: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (drain_tx, drain_rx) = oneshot::channel::<()>();
    let router = app(state.clone());
    let on_signal = async move {
        shutdown.await;
        state.set_ready(false);
        if !timing.delay.is_zero() {
            info!(delay = ?timing.delay, "readiness off; still accepting during the delay");
            tokio::time::sleep(timing.delay).await;
        }
        info!("readiness off; no longer accepting connections; finishing in-flight requests");
        let _ = drain_tx.send(());
    };
    let listener = listener.tap_io(|tcp| {
        // Small request/response pairs: do not let Nagle delay the answer.
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(on_signal)
        .into_future();
    let deadline = async move {
        match drain_rx.await {
            Ok(()) => {
                tokio::select! {
                    () = tokio::time::sleep(timing.grace) => "the grace period elapsed",
                    () = force => "a second signal arrived",
                }
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        result = server => {
            result?;
            info!("all connections closed; exiting");
        }
        reason = deadline => {
            warn!("{reason}; exiting with requests still in flight");
        }
    }
    Ok(())
}

/// SIGTERM (Kubernetes, docker stop) and SIGINT (Ctrl-C).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
