//! Bounds on connections, so that clients that open connections and then send little or
//! nothing cannot hold the server's memory or its ports (see docs/model-server-limits.md):
//!
//! - at most [`ConnLimits::max_connections`] open connections per port (HTTP workers
//!   share one count, the gRPC port has its own). The accept loop takes a permit of a
//!   semaphore before `accept()`, so connections over the cap wait in the kernel's listen
//!   backlog and cost the process nothing; the permit lives as long as the connection
//!   ([`Limited`]).
//! - a connection with no bytes read or written for [`ConnLimits::idle_timeout`] is closed
//!   ([`Limited`] fails its next read). This catches connections that never finish the
//!   protocol detection or the HTTP/2 preface. Healthy idle HTTP/2 clients answer the
//!   keep-alive PINGs and stay; silent ones are closed by the PING timeout.
//! - HTTP/1: hyper's header-read timeout ([`ConnLimits::header_read_timeout`]) closes a
//!   connection whose request head is not complete in time; hyper starts that timer as soon
//!   as a connection waits for a request, so it also closes idle keep-alive connections.
//! - HTTP/2: at most [`ConnLimits::max_concurrent_streams`] streams per connection, and
//!   keep-alive PINGs every [`ConnLimits::keepalive_interval`], the connection closed when
//!   one is not answered within [`ConnLimits::keepalive_timeout`].
//!
//! The request timeout is a router layer (see [`crate::state::Limits::request_timeout`]) and
//! tonic's `Server::timeout`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tracing::{debug, error};

/// Default `--header-read-timeout-seconds`.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `--request-timeout-seconds`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `--idle-timeout-seconds`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `--max-connections` (per port). A half-open plain connection costs about 25 KiB
/// (3,000 of them took 74 MiB), a TLS or HTTP/2 one up to about twice that: 2 × 512
/// connections stay under about 50 MiB, within the pods' 128 MiB.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default `--max-concurrent-streams`.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Default `--http2-keepalive-interval-seconds`.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// Default `--http2-keepalive-timeout-seconds`.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Connection-level bounds, the same on both ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// HTTP/1: the whole request head must arrive within this (also bounds idle keep-alive).
    pub header_read_timeout: Duration,
    /// No bytes either way for this long: the connection is closed.
    pub idle_timeout: Duration,
    /// Open connections per port; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// HTTP/2 keep-alive PING interval.
    pub keepalive_interval: Duration,
    /// HTTP/2: a PING not answered within this closes the connection.
    pub keepalive_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
        }
    }
}

/// The permits of one port and the idle timeout of its connections.
#[derive(Clone, Debug)]
pub(crate) struct Gate {
    permits: Arc<Semaphore>,
    /// Accepted connections not yet closed (the accept loop also holds a permit while it
    /// waits, so the semaphore alone does not tell).
    open: Arc<AtomicUsize>,
    idle: Duration,
}

/// A connection's permit; gives it back, and counts the connection closed, when dropped.
struct Permit {
    _permit: OwnedSemaphorePermit,
    open: Arc<AtomicUsize>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Gate {
    pub(crate) fn new(limits: &ConnLimits) -> Gate {
        Gate {
            permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            open: Arc::new(AtomicUsize::new(0)),
            idle: limits.idle_timeout,
        }
    }

    /// Waits for a permit, then for a connection. Cancel-safe: a permit taken by a dropped
    /// call goes back at once.
    pub(crate) async fn accept(
        &self,
        tcp: &TcpListener,
    ) -> io::Result<(Limited<TcpStream>, SocketAddr)> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| io::Error::other("connection semaphore closed"))?;
        let (stream, addr) = tcp.accept().await?;
        // Small request/response pairs: do not let Nagle delay the answer.
        let _ = stream.set_nodelay(true);
        self.open.fetch_add(1, Ordering::Relaxed);
        let permit = Permit {
            _permit: permit,
            open: self.open.clone(),
        };
        Ok((Limited::new(stream, permit, self.idle), addr))
    }

    /// Accepted connections not yet closed.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

pin_project! {
    /// A connection holding one of its port's permits, closed (reads fail with `TimedOut`)
    /// after `idle` without a byte read or written.
    pub struct Limited<T> {
        #[pin]
        io: T,
        _permit: Permit,
        idle: Duration,
        last_active: Instant,
        timer: Pin<Box<Sleep>>,
    }
}

impl<T> Limited<T> {
    fn new(io: T, permit: Permit, idle: Duration) -> Limited<T> {
        let now = Instant::now();
        Limited {
            io,
            _permit: permit,
            idle,
            last_active: now,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
        }
    }

    /// The connection.
    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

/// Marks progress, or (when the inner I/O is pending) checks the idle deadline: the timer is
/// only re-armed when it fires, so progress costs one clock read.
fn check_idle(
    progressed: bool,
    idle: Duration,
    last_active: &mut Instant,
    timer: &mut Pin<Box<Sleep>>,
    cx: &mut Context<'_>,
) -> io::Result<()> {
    if progressed {
        *last_active = Instant::now();
        return Ok(());
    }
    loop {
        if timer.as_mut().poll(cx).is_pending() {
            return Ok(());
        }
        let deadline = *last_active + idle;
        if deadline <= Instant::now() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle for longer than the idle timeout",
            ));
        }
        timer.as_mut().reset(deadline);
    }
}

impl<T: AsyncRead> AsyncRead for Limited<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        match this.io.poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    *this.last_active = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                check_idle(false, *this.idle, this.last_active, this.timer, cx)?;
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite> AsyncWrite for Limited<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let n = ready!(this.io.poll_write(cx, buf))?;
        check_idle(n > 0, *this.idle, this.last_active, this.timer, cx)?;
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let n = ready!(this.io.poll_write_vectored(cx, bufs))?;
        check_idle(n > 0, *this.idle, this.last_active, this.timer, cx)?;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Limited<TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: self.io.local_addr().ok(),
            remote_addr: self.io.peer_addr().ok(),
        }
    }
}

/// A plain TCP listener behind a [`Gate`], for the HTTP server and (through
/// [`LimitedTcp::incoming`]) tonic.
pub(crate) struct LimitedTcp {
    tcp: TcpListener,
    gate: Gate,
}

impl LimitedTcp {
    pub(crate) fn new(tcp: TcpListener, gate: Gate) -> LimitedTcp {
        LimitedTcp { tcp, gate }
    }

    /// The connections as tonic's incoming stream.
    pub(crate) fn incoming(
        self,
    ) -> impl futures::Stream<Item = io::Result<Limited<TcpStream>>> + Send {
        futures::stream::unfold(self, |mut listener| async move {
            let (io, _) = Listener::accept(&mut listener).await;
            Some((Ok(io), listener))
        })
    }
}

impl Listener for LimitedTcp {
    type Io = Limited<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.gate.accept(&self.tcp).await {
                Ok(conn) => return conn,
                Err(e) => accept_error(e).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// As axum's own listener does: per-connection errors are ignored, others (out of file
/// descriptors) are logged and retried after a pause.
pub(crate) async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    error!("accept error: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Serves `router` on `listener` (HTTP/1.1 and HTTP/2, by protocol detection or ALPN) with
/// the HTTP/1 and HTTP/2 settings of `limits`, until `shutdown` resolves; then stops
/// accepting, asks every connection to finish (idle ones close at once, HTTP/2 gets GOAWAY)
/// and returns when all are closed. What `axum::serve` does, with the bounds it cannot set.
pub(crate) async fn serve_http<L>(
    mut listener: L,
    router: axum::Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    L: Listener,
    L::Io: Unpin,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.keepalive_timeout);
    let builder = Arc::new(builder);
    let (signal_tx, signal_rx) = watch::channel(());
    let (close_tx, close_rx) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (io, _) = tokio::select! {
            conn = listener.accept() => conn,
            () = &mut shutdown => break,
        };
        let builder = builder.clone();
        let router = router.clone();
        let mut signal = signal_rx.clone();
        let close = close_rx.clone();
        tokio::spawn(async move {
            let service = hyper_util::service::TowerToHyperService::new(router);
            let conn = builder.serve_connection(TokioIo::new(io), service);
            tokio::pin!(conn);
            let mut closing = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            debug!("connection ended: {e}");
                        }
                        break;
                    }
                    _ = signal.changed(), if !closing => {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
            drop(close);
        });
    }
    drop(listener);
    drop(close_rx);
    drop(signal_rx);
    let _ = signal_tx.send(());
    close_tx.closed().await;
    Ok(())
}

#[cfg(test)]
mod tests;
