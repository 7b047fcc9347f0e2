//! Byte pumps on TCP halves: the splice of a client to a model pod, and the few reads and
//! writes of a refusal.
//!
//! Written on `readable`/`try_read` and `writable`/`try_write` rather than
//! `tokio::io::copy_bidirectional`: that needs tokio's `io-util` feature, which the operator's
//! build does not enable (only its tests do).

use std::future::poll_fn;
use std::io;
use std::pin::Pin;

use tokio::io::AsyncWrite;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Bytes read at once per direction.
const BUFFER: usize = 16 * 1024;

/// Copies bytes both ways until both directions ended. The end of one direction half-closes
/// the other peer's write side (as `copy_bidirectional` does), so a client that half-closes
/// still gets the whole answer; an error in either direction closes both.
pub(super) async fn splice(client: TcpStream, server: TcpStream) -> io::Result<()> {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::try_join!(
        pipe(client_read, server_write),
        pipe(server_read, client_write)
    )?;
    Ok(())
}

/// Copies one direction until end of file, then shuts the write side down.
async fn pipe(from: OwnedReadHalf, to: OwnedWriteHalf) -> io::Result<()> {
    let mut buf = vec![0; BUFFER];
    loop {
        let n = read_some(&from, &mut buf).await?;
        if n == 0 {
            return shutdown(to).await;
        }
        write_all(&to, &buf[..n]).await?;
    }
}

/// Reads what is there (at least one byte), or 0 at end of file.
pub(super) async fn read_some(from: &OwnedReadHalf, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        from.readable().await?;
        match from.try_read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            result => return result,
        }
    }
}

/// Writes all of `bytes`.
pub(super) async fn write_all(to: &OwnedWriteHalf, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        to.writable().await?;
        match to.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Shuts the write side down (sends FIN); the read side stays open.
pub(super) async fn shutdown(mut to: OwnedWriteHalf) -> io::Result<()> {
    poll_fn(|cx| Pin::new(&mut to).poll_shutdown(cx)).await
}
