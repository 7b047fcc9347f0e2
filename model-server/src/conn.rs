//! Bounds on connections, so that clients that open connections and then send little or
//! nothing cannot hold the server's memory or its ports (see docs/model-server-limits.md):
//!
//! - at most [`ConnLimits::max_connections`] open connections per port (HTTP workers
//!   share one count, the gRPC port has its own). The accept loop takes a permit of a
//!   semaphore before `accept()`, so connections over the cap wait in the kernel's listen
//!   backlog and cost the process nothing; the permit lives as long as the connection
//!   ([`Limited`]). On the plain HTTP port, when every permit is taken, a new connection
//!   takes the place of the oldest one that has not started a request (`shed`).
//! - a connection with no bytes read or written for [`ConnLimits::idle_timeout`] is closed
//!   ([`Limited`] fails its next read). This catches connections that never finish the
//!   protocol detection or the HTTP/2 preface. Healthy idle HTTP/2 clients answer the
//!   keep-alive PINGs and stay; silent ones are closed by the PING timeout.
//! - HTTP/1: a connection whose request head is not complete within
//!   [`ConnLimits::header_read_timeout`] of its first byte, or of the end of the previous
//!   response, is closed: by [`Limited`] itself on the plain HTTP port (`timers`; no timer
//!   per request), by hyper's header-read timeout on TLS. This also closes idle keep-alive
//!   connections.
//! - HTTP/2: at most [`ConnLimits::max_concurrent_streams`] streams per connection, and
//!   keep-alive PINGs every [`ConnLimits::keepalive_interval`], the connection closed when
//!   one is not answered within [`ConnLimits::keepalive_timeout`].
//!
//! The request timeout is a router layer (`deadline::RequestTimeoutLayer`, see
//! [`crate::state::Limits::request_timeout`]) and tonic's `Server::timeout`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, error};

mod deadline;
mod serve;
mod shed;
mod timers;
mod track;

pub(crate) use deadline::RequestTimeoutLayer;
pub(crate) use serve::serve_http;
use shed::ShedQueue;
use timers::Deadlines;
use track::ConnState;

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
    /// The plain HTTP port's connections that could be shed (see [`shed`]).
    sheddable: Arc<ShedQueue>,
}

/// A connection's permit; gives it back (or to the connection that shed this one), and
/// counts the connection closed, when dropped.
struct Permit {
    permit: Option<OwnedSemaphorePermit>,
    open: Arc<AtomicUsize>,
    state: Arc<ConnState>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(permit) = self.permit.take() {
            self.state.close(permit);
        }
    }
}

impl Gate {
    pub(crate) fn new(limits: &ConnLimits) -> Gate {
        let cap = limits.max_connections.max(1);
        Gate {
            permits: Arc::new(Semaphore::new(cap)),
            open: Arc::new(AtomicUsize::new(0)),
            idle: limits.idle_timeout,
            sheddable: Arc::new(ShedQueue::new(cap)),
        }
    }

    /// Waits for a permit, then for a connection. Cancel-safe: a permit taken by a dropped
    /// call goes back at once.
    pub(crate) async fn accept(
        &self,
        tcp: &TcpListener,
    ) -> io::Result<(Limited<TcpStream>, SocketAddr)> {
        let permit = self.acquire().await?;
        let (stream, addr) = tcp.accept().await?;
        Ok(self.admit(stream, addr, permit, None))
    }

    /// [`Gate::accept`] for the plain HTTP port: the connection enforces `header_read_timeout`
    /// itself (see [`Limited`]), and when no permit is free but some connection has not
    /// started a request yet, the next connection is accepted and the oldest such one shed
    /// to make room (see [`shed`]), taking its permit. Cancel-safe, as [`Gate::accept`].
    pub(crate) async fn accept_http(
        &self,
        tcp: &TcpListener,
        header_read_timeout: Duration,
    ) -> io::Result<(Limited<TcpStream>, SocketAddr)> {
        let free = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) if self.sheddable.any() => None,
            Err(_) => Some(self.acquire().await?),
        };
        let (stream, addr) = tcp.accept().await?;
        let permit = match free.map_or_else(|| self.permits.clone().try_acquire_owned().ok(), Some)
        {
            Some(permit) => permit,
            None => self.make_room().await?,
        };
        let conn = self.admit(stream, addr, permit, Some(header_read_timeout));
        self.sheddable.push(conn.0.permit.state.clone());
        Ok(conn)
    }

    /// Sheds the oldest connection that has not started a request and takes its permit,
    /// handed over when it closes (not given back to the semaphore, where another worker's
    /// `try_acquire` could take it and leave this one waiting for a timeout). With none to
    /// shed, waits for a permit.
    async fn make_room(&self) -> io::Result<OwnedSemaphorePermit> {
        let (handoff, permit) = oneshot::channel();
        if self.sheddable.shed_oldest(handoff) {
            debug!("connection cap reached: shed the oldest connection without a request");
            if let Ok(permit) = permit.await {
                return Ok(permit);
            }
        }
        self.acquire().await
    }

    async fn acquire(&self) -> io::Result<OwnedSemaphorePermit> {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| io::Error::other("connection semaphore closed"))
    }

    fn admit(
        &self,
        stream: TcpStream,
        addr: SocketAddr,
        permit: OwnedSemaphorePermit,
        header: Option<Duration>,
    ) -> (Limited<TcpStream>, SocketAddr) {
        // Small request/response pairs: do not let Nagle delay the answer.
        let _ = stream.set_nodelay(true);
        self.open.fetch_add(1, Ordering::Relaxed);
        let permit = Permit {
            permit: Some(permit),
            open: self.open.clone(),
            state: Arc::new(ConnState::default()),
        };
        if header.is_none() {
            permit.state.never_shed();
        }
        let deadlines = Deadlines::new(self.idle, header);
        (
            Limited {
                io: stream,
                permit,
                deadlines,
            },
            addr,
        )
    }

    /// Accepted connections not yet closed.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

pin_project! {
    /// A connection holding one of its port's permits. Its reads fail (`TimedOut`) after
    /// `idle` without a byte read or written, and, on the plain HTTP port, when a request
    /// head is not complete within the header-read timeout (see [`Deadlines`]); they fail
    /// (`ConnectionAborted`) once the connection is shed.
    pub struct Limited<T> {
        #[pin]
        io: T,
        permit: Permit,
        deadlines: Deadlines,
    }
}

impl<T> Limited<T> {
    /// The connection.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    fn state(&self) -> &Arc<ConnState> {
        &self.permit.state
    }

    fn header_deadline(&self) -> bool {
        self.deadlines.header.is_some()
    }
}

/// A connection's own state and whether it enforces the header-read timeout itself (then
/// hyper's timer is off for it): what [`serve_http`] needs of an accepted connection.
pub(crate) trait ConnIo {
    fn conn_state(&self) -> &Arc<ConnState>;
    fn header_deadline(&self) -> bool;
}

impl<T> ConnIo for Limited<T> {
    fn conn_state(&self) -> &Arc<ConnState> {
        self.state()
    }

    fn header_deadline(&self) -> bool {
        Limited::header_deadline(self)
    }
}

impl<T> ConnIo for tokio_rustls::server::TlsStream<Limited<T>> {
    fn conn_state(&self) -> &Arc<ConnState> {
        self.get_ref().0.state()
    }

    fn header_deadline(&self) -> bool {
        self.get_ref().0.header_deadline()
    }
}

fn shed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection shed at the connection cap: no request started",
    )
}

impl<T: AsyncRead> AsyncRead for Limited<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let state = &this.permit.state;
        if state.is_shed() {
            return Poll::Ready(Err(shed_error()));
        }
        let before = buf.filled().len();
        match this.io.poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.deadlines.read(&buf.filled()[before..]);
                Poll::Ready(result)
            }
            Poll::Pending => {
                if !state.started() {
                    state.register(cx);
                    if state.is_shed() {
                        return Poll::Ready(Err(shed_error()));
                    }
                }
                this.deadlines.check(state, cx)?;
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
        this.deadlines.wrote(n, &this.permit.state, cx)?;
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let n = ready!(this.io.poll_write_vectored(cx, bufs))?;
        this.deadlines.wrote(n, &this.permit.state, cx)?;
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
    /// The plain HTTP port: [`Gate::accept_http`] with this header-read timeout.
    http: Option<Duration>,
}

impl LimitedTcp {
    /// For tonic: [`Gate::accept`].
    pub(crate) fn new(tcp: TcpListener, gate: Gate) -> LimitedTcp {
        LimitedTcp {
            tcp,
            gate,
            http: None,
        }
    }

    /// For the plain HTTP port: [`Gate::accept_http`].
    pub(crate) fn http(tcp: TcpListener, gate: Gate, header_read_timeout: Duration) -> LimitedTcp {
        LimitedTcp {
            tcp,
            gate,
            http: Some(header_read_timeout),
        }
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
            let accepted = match self.http {
                Some(header) => self.gate.accept_http(&self.tcp, header).await,
                None => self.gate.accept(&self.tcp).await,
            };
            match accepted {
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

#[cfg(test)]
mod tests;
