//! The forward of a client to a model pod: `tokio::io::copy_bidirectional` (the end of one
//! direction half-closes the other peer's write side, so a client that half-closes still gets
//! the whole answer), cut once no byte has moved either way for the idle timeout.
//!
//! Every byte of a forwarded connection is read from or written to the client, so activity is
//! seen on the client's stream alone: [`Watched`] notes the time of each read or write that
//! moved bytes, and the forward ends when that time is older than the idle timeout.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{copy_bidirectional, AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep_until, Instant};

/// How a forward ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ended {
    /// Both directions reached their end: bytes sent to the pod and back to the client.
    Closed { up: u64, down: u64 },
    /// No byte moved either way for the idle timeout; both connections were closed.
    Idle,
}

/// Copies bytes both ways until both directions end, an error, or `idle` without a byte.
pub(super) async fn forward<C, S>(client: C, mut server: S, idle: Duration) -> io::Result<Ended>
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let seen = Seen::new();
    let mut client = Watched {
        inner: client,
        seen: &seen,
    };
    let copy = copy_bidirectional(&mut client, &mut server);
    tokio::pin!(copy);
    loop {
        tokio::select! {
            copied = &mut copy => {
                let (up, down) = copied?;
                return Ok(Ended::Closed { up, down });
            }
            _ = sleep_until(seen.last() + idle) => {
                // Bytes may have moved while this slept: sleep again from the last of them.
                if seen.last() + idle <= Instant::now() {
                    return Ok(Ended::Idle);
                }
            }
        }
    }
}

/// When bytes last moved, in milliseconds since the forward began.
struct Seen {
    began: Instant,
    last_ms: AtomicU64,
}

impl Seen {
    fn new() -> Self {
        Self {
            began: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.began.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.began + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A stream that notes in [`Seen`] each read or write that moved bytes.
struct Watched<'a, S> {
    inner: S,
    seen: &'a Seen,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.seen.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.seen.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.seen.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};
    use tokio::time::timeout;

    const BOUND: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn bytes_pass_both_ways_exactly_and_half_close_passes_through() {
        let (mut client, client_end) = duplex(1024);
        let (server_end, mut server) = duplex(1024);
        let forwarding = tokio::spawn(forward(client_end, server_end, BOUND));

        // More than the duplex buffers, every byte value, both ways.
        let up: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let down: Vec<u8> = (0..70_000u32).map(|i| (i % 241) as u8).rev().collect();
        let sent_up = up.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent_up).await.expect("send up");
            client.shutdown().await.expect("half-close");
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.expect("read down");
            got
        });
        let mut got_up = Vec::new();
        timeout(BOUND, server.read_to_end(&mut got_up))
            .await
            .expect("in time")
            .expect("read up");
        assert_eq!(got_up, up, "the client's half-close reached the pod");
        server.write_all(&down).await.expect("send down");
        server.shutdown().await.expect("close");
        let got_down = timeout(BOUND, writer)
            .await
            .expect("in time")
            .expect("the client task");
        assert_eq!(got_down, down);
        let ended = timeout(BOUND, forwarding)
            .await
            .expect("in time")
            .expect("the forward task")
            .expect("no error");
        assert_eq!(
            ended,
            Ended::Closed {
                up: up.len() as u64,
                down: down.len() as u64
            }
        );
    }

    #[tokio::test]
    async fn a_connection_without_bytes_for_the_idle_timeout_is_closed() {
        let idle = Duration::from_millis(300);
        let (mut client, client_end) = duplex(1024);
        let (server_end, mut server) = duplex(1024);
        let started = Instant::now();
        let forwarding = tokio::spawn(forward(client_end, server_end, idle));

        // Activity every 150 ms keeps it open past the idle timeout...
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            client.write_all(b"ping").await.expect("send");
            let mut buf = [0; 4];
            server.read_exact(&mut buf).await.expect("forwarded");
            assert_eq!(&buf, b"ping");
        }
        assert!(!forwarding.is_finished(), "active, so still open");
        // ... then silence closes both sides.
        let ended = timeout(BOUND, forwarding)
            .await
            .expect("in time")
            .expect("the forward task")
            .expect("no error");
        assert_eq!(ended, Ended::Idle);
        assert!(started.elapsed() >= Duration::from_millis(600 + 300));
        let mut rest = Vec::new();
        assert_eq!(client.read_to_end(&mut rest).await.expect("eof"), 0);
        assert_eq!(server.read_to_end(&mut rest).await.expect("eof"), 0);
    }
}
