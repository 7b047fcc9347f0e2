//! Serving HTTP on a listener of bounded connections: what `axum::serve` does, with the
//! bounds it cannot set, and each request counted in its connection's state.

use std::future::Future;
use std::io;
use std::sync::Arc;

use axum::serve::Listener;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::watch;
use tracing::debug;

use super::track::Tracked;
use super::{ConnIo, ConnLimits};

/// The connection builders of [`serve_http`]: one for connections that enforce the
/// header-read timeout themselves (hyper's timer off), one for the others (hyper's on).
fn builders(limits: &ConnLimits) -> [Arc<auto::Builder<TokioExecutor>>; 2] {
    [None, Some(limits.header_read_timeout)].map(|header| {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(header)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_concurrent_streams)
            .keep_alive_interval(limits.keepalive_interval)
            .keep_alive_timeout(limits.keepalive_timeout);
        Arc::new(builder)
    })
}

/// Serves `router` on `listener` (HTTP/1.1 and HTTP/2, by protocol detection or ALPN) with
/// the HTTP/1 and HTTP/2 settings of `limits`, until `shutdown` resolves; then stops
/// accepting, asks every connection to finish (idle ones close at once, HTTP/2 gets GOAWAY)
/// and returns when all are closed. What `axum::serve` does, with the bounds it cannot set.
/// Each request is counted in its connection's state ([`Tracked`]).
pub(crate) async fn serve_http<L>(
    mut listener: L,
    router: axum::Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    L: Listener,
    L::Io: Unpin + ConnIo,
{
    let [own_header, hyper_header] = builders(&limits);
    let (signal_tx, signal_rx) = watch::channel(());
    let (close_tx, close_rx) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (io, _) = tokio::select! {
            conn = listener.accept() => conn,
            () = &mut shutdown => break,
        };
        let builder = if io.header_deadline() {
            own_header.clone()
        } else {
            hyper_header.clone()
        };
        let router = Tracked::new(router.clone(), io.conn_state().clone());
        let mut signal = signal_rx.clone();
        let close = close_rx.clone();
        tokio::spawn(async move {
            let conn = builder.serve_connection(TokioIo::new(io), router);
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
