//! Accepting TLS connections: [`TlsListener`] is an axum [`Listener`] (and, through
//! [`grpc_incoming`], tonic's incoming stream) that accepts TCP connections and runs their
//! handshakes concurrently inside its own accept future, so a slow or silent client never
//! holds up the next one. Handshakes are bounded in time and in number; a failed one (plain
//! HTTP on the TLS port, an unknown CA on the client's side, no common ALPN protocol, a
//! timeout) drops that connection only, and is counted in
//! `model_server_tls_handshake_failures_total`; a client hanging up mid-handshake is not.
//! Connections, handshaking or not, hold a permit of the port's [`Gate`] (the connection
//! cap and idle timeout, see [`crate::conn`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use futures::stream::{FuturesUnordered, Stream, StreamExt as _};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use crate::conn::{accept_error, Gate, Limited};
use crate::metrics::Metrics;

/// A handshake not finished after this long is abandoned.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this many handshakes run at once per listener; further connections wait in the
/// kernel's accept queue.
const MAX_PENDING_HANDSHAKES: usize = 512;

/// A TLS connection of the listener.
pub type TlsIo = TlsStream<Limited<TcpStream>>;

type Handshake = Pin<Box<dyn Future<Output = Result<(TlsIo, SocketAddr), Refused>> + Send>>;

/// A TCP listener whose connections come out after a finished TLS handshake.
pub struct TlsListener {
    tcp: TcpListener,
    gate: Gate,
    acceptor: TlsAcceptor,
    pending: FuturesUnordered<Handshake>,
    metrics: Option<Arc<Metrics>>,
}

impl TlsListener {
    /// TLS with `config` on `tcp`, connections bounded by `gate`; handshake failures are
    /// counted in `metrics`.
    pub(crate) fn new(
        tcp: TcpListener,
        gate: Gate,
        config: Arc<ServerConfig>,
        metrics: Option<Arc<Metrics>>,
    ) -> TlsListener {
        TlsListener {
            tcp,
            gate,
            acceptor: TlsAcceptor::from(config),
            pending: FuturesUnordered::new(),
            metrics,
        }
    }

    /// The next connection whose handshake succeeded.
    pub async fn accept_tls(&mut self) -> (TlsIo, SocketAddr) {
        let TlsListener {
            tcp,
            gate,
            acceptor,
            pending,
            metrics,
        } = self;
        loop {
            let room = pending.len() < MAX_PENDING_HANDSHAKES;
            tokio::select! {
                accepted = gate.accept(tcp), if room => match accepted {
                    Ok((stream, addr)) => {
                        pending.push(Box::pin(handshake(acceptor.clone(), stream, addr)));
                    }
                    Err(e) => accept_error(e).await,
                },
                Some(done) = pending.next(), if !pending.is_empty() => match done {
                    Ok(conn) => return conn,
                    Err(Refused::Failed) => {
                        if let Some(m) = metrics {
                            m.count_tls_handshake_failure();
                        }
                    }
                    Err(Refused::Closed) => {}
                },
            }
        }
    }
}

/// How a handshake ended, when it did not give a connection.
enum Refused {
    /// A TLS error (not TLS at all, an alert from the client, no common protocol or
    /// version) or no handshake within [`HANDSHAKE_TIMEOUT`]: counted.
    Failed,
    /// The client hung up (e.g. right after its side of the handshake, as `openssl s_time`
    /// does): not counted.
    Closed,
}

async fn handshake(
    acceptor: TlsAcceptor,
    stream: Limited<TcpStream>,
    addr: SocketAddr,
) -> Result<(TlsIo, SocketAddr), Refused> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Ok((tls, addr)),
        // tokio-rustls reports rustls' own errors as InvalidData.
        Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
            debug!(%addr, "TLS handshake failed: {e}");
            Err(Refused::Failed)
        }
        Ok(Err(e)) => {
            debug!(%addr, "connection closed during the TLS handshake: {e}");
            Err(Refused::Closed)
        }
        Err(_) => {
            debug!(%addr, "TLS handshake timed out");
            Err(Refused::Failed)
        }
    }
}

impl Listener for TlsListener {
    type Io = TlsIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.accept_tls().await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// A TLS connection for tonic, which wants to know the peer ([`tonic::transport::server::Connected`]).
pub(crate) struct TlsConn {
    io: TlsIo,
    remote: SocketAddr,
}

/// The connections of `listener` as tonic's incoming stream.
pub(crate) fn grpc_incoming(listener: TlsListener) -> impl Stream<Item = io::Result<TlsConn>> {
    futures::stream::unfold(listener, |mut listener| async move {
        let (io, remote) = listener.accept_tls().await;
        Some((Ok(TlsConn { io, remote }), listener))
    })
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: self.io.get_ref().0.get_ref().local_addr().ok(),
            remote_addr: Some(self.remote),
        }
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
