//! Running the HTTP server: load the model, bind, serve, and shut down gracefully.
//!
//! Shutdown on SIGTERM or SIGINT: readiness turns false at once (`/v2/health/ready` answers
//! 503), the listener keeps accepting for `--shutdown-delay-seconds` (default 0) so that
//! load balancers can take the pod out, then it closes; in-flight requests finish, idle
//! keep-alive connections close, and the process exits. If requests are still running after
//! `--shutdown-grace-seconds`, or a second signal arrives, it exits anyway.
//!
//! The gRPC service (`--grpc-port`, 0 disables it) runs on a thread of its own with the same
//! shutdown: `ServerReady`/`ModelReady` answer false at once, the listener closes after the
//! delay, in-flight calls finish (HTTP/2 GOAWAY), bounded by the same grace period.
//!
//! Both ports bound connections (count, timeouts, HTTP/2 streams and keep-alive): [`crate::conn`].
//!
//! With `--tls-cert`/`--tls-key` both ports speak TLS only (see [`crate::tls`]); with
//! `--auth-tokens` both need a bearer token (see [`crate::auth`]). Their files are re-read
//! every `--reload-seconds` on the main thread (see [`crate::security`]). Without these
//! flags the serving path is the plain one, unchanged.
// lint-sizes: the serving entry point, where every part starts in order (one line is the payload log's)

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use crate::auth::GrpcAuthLayer;
use crate::config::ServeArgs;
use crate::conn::{serve_http, LimitedTcp};
use crate::grpc::{GrpcMetricsLayer, InferenceService};
use crate::http::app_with_auth;
use crate::security::Security;
use crate::state::AppState;
use crate::tls::{grpc_incoming, TlsListener};

/// Timing of a graceful shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownTiming {
    /// Keep accepting (while not ready) this long after the signal.
    pub delay: Duration,
    /// Then wait at most this long for in-flight requests.
    pub grace: Duration,
}

/// Loads the model, binds, and serves until a termination signal. Errors (bad artifact, bad
/// training parameters, port in use) are returned before serving.
///
/// Threading: `--worker-threads` threads, each a single-threaded tokio runtime with its own
/// listening socket on the same port (`SO_REUSEPORT`). The kernel spreads connections over
/// them, and no request is ever handed from one thread to another: no cross-thread
/// wake-ups, no shared run queue. The main thread only waits for signals.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let model = args.source.load(&args.training.params())?;
    let security = Security::from_args(args)?;
    let workers = match args.worker_threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let ports = Ports::bind(args, workers)?;
    let main_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Registered before serving, so a signal during start-up is not lost.
    let signals = main_rt
        .block_on(async { Signals::new() })
        .context("cannot install signal handlers")?;
    let state = AppState::new(
        args.model_name.clone(),
        model,
        args.source.to_string(),
        args.limits(),
    )
    .log_requests(
        args.log_requests_per_second,
        args.namespace.as_deref().unwrap_or(""),
    )
    .log_payloads(
        &args.payload_log,
        args.namespace.as_deref().unwrap_or(""),
        args.port,
    )?;
    let timing = ShutdownTiming {
        delay: Duration::from_secs(args.shutdown_delay_seconds),
        grace: Duration::from_secs(args.shutdown_grace_seconds),
    };
    // Count termination signals: the first starts the shutdown, a second cuts it short.
    let (count_tx, count_rx) = watch::channel(0u32);
    let (addr, grpc_addr) = (ports.addr, ports.grpc_addr);
    let threads = ports.spawn(&state, &security, timing, &count_rx)?;
    log_ready(args, &state, &security, workers, addr, grpc_addr, started);
    state.count_drift(&args.drift, main_rt.handle());
    if security.has_files() {
        main_rt.spawn(security.reload_every(
            Duration::from_secs(args.reload_seconds),
            state.shared_metrics(),
        ));
    }
    main_rt.block_on(until_workers_end(signals, threads, &count_tx, timing))
}

/// The bound sockets: one per HTTP worker on the same port, and the gRPC one if enabled.
struct Ports {
    addr: SocketAddr,
    workers: usize,
    http: Vec<std::net::TcpListener>,
    grpc_addr: Option<SocketAddr>,
    grpc: Option<std::net::TcpListener>,
}

type Worker = std::thread::JoinHandle<std::io::Result<()>>;

impl Ports {
    fn bind(args: &ServeArgs, workers: usize) -> anyhow::Result<Ports> {
        let addr = SocketAddr::new(args.host, args.port);
        let http = (0..workers)
            .map(|_| reuse_port_listener(addr))
            .collect::<std::io::Result<Vec<_>>>()
            .with_context(|| format!("cannot listen on {addr}"))?;
        let grpc_addr = (args.grpc_port != 0).then(|| SocketAddr::new(args.host, args.grpc_port));
        let grpc = grpc_addr
            .map(|addr| {
                reuse_port_listener(addr).with_context(|| format!("cannot listen on {addr} (gRPC)"))
            })
            .transpose()?;
        Ok(Ports {
            addr,
            workers,
            http,
            grpc_addr,
            grpc,
        })
    }

    /// Starts a thread per HTTP worker and one for gRPC, each serving until the first
    /// signal counted in `count` and cut short by the second.
    fn spawn(
        self,
        state: &AppState,
        security: &Security,
        timing: ShutdownTiming,
        count: &watch::Receiver<u32>,
    ) -> anyhow::Result<Vec<Worker>> {
        let mut threads = Vec::with_capacity(self.workers + 1);
        for (i, listener) in self.http.into_iter().enumerate() {
            let (state, security) = (state.clone(), security.clone());
            let (first, second) = (nth_signal(count, 1), nth_signal(count, 2));
            let thread = std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || -> std::io::Result<()> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    rt.block_on(async move {
                        let listener = TcpListener::from_std(listener)?;
                        serve_until(listener, state, security, timing, first, second).await
                    })
                })
                .context("cannot start a worker thread")?;
            threads.push(thread);
        }
        if let Some(listener) = self.grpc {
            let (state, security) = (state.clone(), security.clone());
            let (first, second) = (nth_signal(count, 1), nth_signal(count, 2));
            let workers = self.workers;
            let thread = std::thread::Builder::new()
                .name("grpc".to_owned())
                .spawn(move || -> std::io::Result<()> {
                    // One listener for gRPC (HTTP/2 multiplexes many calls on few connections,
                    // so per-worker SO_REUSEPORT listeners would leave workers idle): a
                    // work-stealing runtime with as many threads as the HTTP workers spreads
                    // the calls instead.
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(workers)
                        .thread_name("grpc")
                        .enable_all()
                        .build()?;
                    rt.block_on(async move {
                        let listener = TcpListener::from_std(listener)?;
                        serve_grpc_until(listener, state, security, timing, first, second).await
                    })
                })
                .context("cannot start the gRPC thread")?;
            threads.push(thread);
        }
        Ok(threads)
    }
}

/// Resolves once `count` reaches `n` (or its sender is gone, which happens only after all
/// workers ended).
fn nth_signal(count: &watch::Receiver<u32>, n: u32) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = count.clone();
    async move {
        let _ = rx.wait_for(|count| *count >= n).await;
    }
}

/// The one line that says the server is up, and with what.
fn log_ready(
    args: &ServeArgs,
    state: &AppState,
    security: &Security,
    workers: usize,
    addr: SocketAddr,
    grpc_addr: Option<SocketAddr>,
    started: Instant,
) {
    let m = state.model();
    info!(
        %addr,
        grpc = grpc_addr.map_or_else(|| "disabled".to_owned(), |a| a.to_string()),
        model = %args.model_name,
        source = %args.source,
        task = %m.task(),
        positive_class = m.positive_class().map(|c| c.as_str()).unwrap_or("-"),
        version = m.short_digest(),
        digest = m.digest(),
        held_out_accuracy = m.accuracy(),
        workers,
        tls = security.tls.is_some(),
        auth = security.auth.is_some(),
        startup_ms = started.elapsed().as_secs_f64() * 1e3,
        "ready"
    );
}

/// Counts signals into `count` (the workers watch it) until every worker has ended.
async fn until_workers_end(
    mut signals: Signals,
    threads: Vec<Worker>,
    count: &watch::Sender<u32>,
    timing: ShutdownTiming,
) -> anyhow::Result<()> {
    let mut joined = tokio::task::spawn_blocking(move || {
        threads
            .into_iter()
            .map(|t| match t.join() {
                Ok(result) => result.context("worker failed"),
                Err(_) => Err(anyhow::anyhow!("worker thread panicked")),
            })
            .collect::<anyhow::Result<Vec<()>>>()
    });
    loop {
        tokio::select! {
            signal = signals.recv() => {
                count.send_modify(|n| *n += 1);
                if *count.borrow() == 1 {
                    info!(
                        signal,
                        delay = ?timing.delay,
                        grace = ?timing.grace,
                        "shutdown requested: readiness off, finishing in-flight requests"
                    );
                } else {
                    warn!(signal, "second signal: stopping now");
                }
            }
            result = &mut joined => {
                result.context("cannot join the workers")??;
                info!("all connections closed; exiting");
                return Ok(());
            }
        }
    }
}

/// A listening socket that shares its port with the other workers' (`SO_REUSEPORT`).
fn reuse_port_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Serves `state` on `listener` until `shutdown` resolves, then shuts down gracefully per
/// `timing`; `force` (e.g. a second signal) ends the grace period early. Returns when all
/// connections are closed or the grace period is over. `security` adds TLS and tokens.
pub async fn serve_until(
    listener: TcpListener,
    state: AppState,
    security: Security,
    timing: ShutdownTiming,
    shutdown: impl Future<Output = ()> + Send + 'static,
    force: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = app_with_auth(state.clone(), security.auth.as_ref());
    serve_router_until(listener, router, state, security, timing, shutdown, force).await
}

/// [`serve_until`] with any router (tests add routes to it).
async fn serve_router_until(
    listener: TcpListener,
    router: axum::Router,
    state: AppState,
    security: Security,
    timing: ShutdownTiming,
    shutdown: impl Future<Output = ()> + Send + 'static,
    force: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = state.shared_metrics();
    let gate = state.http_gate();
    let conn_limits = state.limits().conn;
    let (on_signal, deadline) = drain(state, timing, shutdown, force);
    match &security.tls {
        None => {
            let listener = LimitedTcp::http(listener, gate, conn_limits.header_read_timeout);
            let server = serve_http(listener, router, conn_limits, on_signal);
            until_done_or_deadline(server, deadline, "").await
        }
        Some(tls) => {
            let listener = TlsListener::new(listener, gate, tls.http.clone(), Some(metrics));
            let server = serve_http(listener, router, conn_limits, on_signal);
            until_done_or_deadline(server, deadline, "").await
        }
    }
}

/// Runs `server` to its end, or until `deadline` (which says why) if that comes first.
async fn until_done_or_deadline<E>(
    server: impl Future<Output = Result<(), E>>,
    deadline: impl Future<Output = &'static str>,
    what: &str,
) -> std::io::Result<()>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::select! {
        result = server => {
            result.map_err(std::io::Error::other)?;
            debug!("all {what}connections closed");
        }
        reason = deadline => {
            warn!("{reason}; exiting with {what}requests still in flight");
        }
    }
    Ok(())
}

/// The two halves of a graceful shutdown: `on_signal` resolves (and the server should stop
/// accepting) `timing.delay` after `shutdown`, having turned readiness off at once;
/// `deadline` resolves `timing.grace` after that, or as soon as `force` resolves (during the
/// delay too), with the reason.
fn drain(
    state: AppState,
    timing: ShutdownTiming,
    shutdown: impl Future<Output = ()> + Send + 'static,
    force: impl Future<Output = ()> + Send + 'static,
) -> (
    impl Future<Output = ()> + Send + 'static,
    impl Future<Output = &'static str> + Send + 'static,
) {
    let (drain_tx, drain_rx) = oneshot::channel::<()>();
    let on_signal = async move {
        shutdown.await;
        state.set_ready(false);
        if !timing.delay.is_zero() {
            debug!(delay = ?timing.delay, "readiness off; still accepting during the delay");
            tokio::time::sleep(timing.delay).await;
        }
        debug!("no longer accepting connections; finishing in-flight requests");
        let _ = drain_tx.send(());
    };
    let deadline = async move {
        // `force` counts from the first moment: a second signal during the delay stops the
        // server then, as its log line says, not after the delay.
        tokio::pin!(force);
        tokio::select! {
            drained = drain_rx => match drained {
                Ok(()) => tokio::select! {
                    () = tokio::time::sleep(timing.grace) => "the grace period elapsed",
                    () = &mut force => "a second signal arrived",
                },
                Err(_) => std::future::pending().await,
            },
            () = &mut force => "a second signal arrived",
        }
    };
    (on_signal, deadline)
}

/// Serves the OIP v2 gRPC service of `state` on `listener` until `shutdown` resolves, then
/// shuts down gracefully per `timing` as [`serve_until`] does. Messages over
/// `--max-body-bytes` are RESOURCE_EXHAUSTED; calls are counted in the shared metrics.
/// `security` adds TLS and tokens.
pub async fn serve_grpc_until(
    listener: TcpListener,
    state: AppState,
    security: Security,
    timing: ShutdownTiming,
    shutdown: impl Future<Output = ()> + Send + 'static,
    force: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = state.shared_metrics();
    let service = InferenceService::new(state.clone()).into_server();
    let gate = state.grpc_gate();
    let limits = state.limits();
    let (on_signal, deadline) = drain(state, timing, shutdown, force);
    // The metrics layer is outside the tokens check, so that refused calls are counted.
    let router = tonic::transport::Server::builder()
        .timeout(limits.request_timeout)
        .max_concurrent_streams(limits.conn.max_concurrent_streams)
        .http2_keepalive_interval(Some(limits.conn.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.conn.keepalive_timeout))
        .layer(GrpcMetricsLayer {
            metrics: metrics.clone(),
        })
        .layer(GrpcAuthLayer {
            auth: security.auth.clone(),
        })
        .add_service(service);
    match &security.tls {
        None => {
            let incoming = LimitedTcp::new(listener, gate).incoming();
            let server = router.serve_with_incoming_shutdown(incoming, on_signal);
            until_done_or_deadline(server, deadline, "gRPC ").await
        }
        Some(tls) => {
            let listener = TlsListener::new(listener, gate, tls.grpc.clone(), Some(metrics));
            let server = router.serve_with_incoming_shutdown(grpc_incoming(listener), on_signal);
            until_done_or_deadline(server, deadline, "gRPC ").await
        }
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::Notify;
    use tokio::time::timeout;

    use super::*;
    use crate::http::app;
    use crate::model::{train, TrainingParams};
    use crate::state::Limits;

    const LIMIT: Duration = Duration::from_secs(10);

    /// A server with an extra `/slow` route that tells `entered` when a request is inside
    /// the handler and answers only after `release`.
    struct Harness {
        addr: SocketAddr,
        state: AppState,
        stop: Option<oneshot::Sender<()>>,
        entered: Arc<Notify>,
        release: Arc<Notify>,
        server: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    async fn start(grace: Duration) -> Harness {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = AppState::new(
            "iris",
            train(&TrainingParams::default()).unwrap(),
            "builtin",
            Limits::default(),
        );
        let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let (e, r) = (entered.clone(), release.clone());
        let router = app(state.clone()).route(
            "/slow",
            get(move || async move {
                e.notify_one();
                r.notified().await;
                "done"
            }),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let timing = ShutdownTiming {
            delay: Duration::ZERO,
            grace,
        };
        let server = tokio::spawn(serve_router_until(
            listener,
            router,
            state.clone(),
            Security::default(),
            timing,
            async move {
                let _ = stopped.await;
            },
            std::future::pending(),
        ));
        Harness {
            addr,
            state,
            stop: Some(stop),
            entered,
            release,
            server,
        }
    }

    async fn request(conn: &mut TcpStream, path: &str) {
        let head = format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n");
        conn.write_all(head.as_bytes()).await.unwrap();
    }

    async fn read_to_end(mut conn: TcpStream) -> String {
        let mut out = Vec::new();
        timeout(LIMIT, conn.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    async fn until_not_ready(state: &AppState) {
        timeout(LIMIT, async {
            while state.is_ready() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn shutdown_turns_readiness_off_and_finishes_in_flight_requests() {
        let mut h = start(LIMIT).await;
        let mut ready = TcpStream::connect(h.addr).await.unwrap();
        request(&mut ready, "/v2/health/ready").await;
        let mut buf = [0u8; 12];
        ready.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");

        let mut slow = TcpStream::connect(h.addr).await.unwrap();
        request(&mut slow, "/slow").await;
        timeout(LIMIT, h.entered.notified()).await.unwrap();

        let _ = h.stop.take().unwrap().send(());
        until_not_ready(&h.state).await;
        assert!(
            !h.server.is_finished(),
            "must wait for the in-flight request"
        );

        h.release.notify_one();
        let answer = read_to_end(slow).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
        timeout(LIMIT, h.server).await.unwrap().unwrap().unwrap();
        // The idle keep-alive connection was closed, not left hanging.
        drop(ready);
        assert!(TcpStream::connect(h.addr).await.is_err(), "listener closed");
    }

    #[tokio::test]
    async fn grace_period_bounds_the_shutdown() {
        let mut h = start(Duration::from_millis(50)).await;
        let mut slow = TcpStream::connect(h.addr).await.unwrap();
        request(&mut slow, "/slow").await;
        timeout(LIMIT, h.entered.notified()).await.unwrap();
        let _ = h.stop.take().unwrap().send(());
        // Never released: the server still returns once the grace period is over.
        timeout(LIMIT, h.server).await.unwrap().unwrap().unwrap();
        drop(h.release);
    }

    #[tokio::test]
    async fn a_second_signal_during_the_delay_stops_at_once() {
        let state = AppState::new(
            "iris",
            train(&TrainingParams::default()).unwrap(),
            "builtin",
            Limits::default(),
        );
        let hour = Duration::from_secs(3600);
        let timing = ShutdownTiming {
            delay: hour,
            grace: hour,
        };
        let (force_tx, force_rx) = oneshot::channel::<()>();
        let (on_signal, deadline) = drain(state.clone(), timing, async {}, async move {
            let _ = force_rx.await;
        });
        let on_signal = tokio::spawn(on_signal);
        until_not_ready(&state).await;
        // Still inside the hour-long delay: the second signal ends it now.
        let _ = force_tx.send(());
        let reason = timeout(LIMIT, deadline)
            .await
            .expect("deadline within 10 s");
        assert_eq!(reason, "a second signal arrived");
        on_signal.abort();
    }

    #[test]
    fn workers_share_the_port_but_strangers_do_not() {
        let first = reuse_port_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let second = reuse_port_listener(addr).unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);
        // A socket without SO_REUSEPORT (another program) cannot take the port.
        assert!(std::net::TcpListener::bind(addr).is_err());
    }
}
