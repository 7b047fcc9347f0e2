//! The deadlines of one connection's reads, on one timer: the idle timeout (no byte either
//! way) and, on the plain HTTP port, the header-read timeout.
//!
//! The header-read timeout (HTTP/1 only) runs while no request is in flight on the
//! connection ([`ConnState::idle`]): from the first byte read, or from the last byte written
//! (the end of the previous response), the next request head must be complete in time. It
//! replaces hyper's own header timer, which allocates and registers a timer for every
//! request head; here a request costs a clock read per read and write (the idle timeout
//! already took those) and the timer is re-armed only when it fires, at least once per
//! header-read timeout. A connection that opens with the HTTP/2 preface has no header
//! deadline (HTTP/2 is bounded by its keep-alive PINGs), as with hyper, whose header timer
//! only runs for HTTP/1.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::track::ConnState;

/// The first bytes of the HTTP/2 connection preface: enough to tell it from HTTP/1.
const H2_START: &[u8] = b"PRI ";
/// `sniffed` once the connection opened with [`H2_START`].
const H2: u8 = 4;
/// `sniffed` once it did not.
const H1: u8 = 5;

/// The deadlines of a connection, see the module.
#[derive(Debug)]
pub(crate) struct Deadlines {
    idle: Duration,
    /// Set on the plain HTTP port: this connection enforces the header-read timeout.
    pub(super) header: Option<Duration>,
    last_active: Instant,
    first_read: Option<Instant>,
    last_write: Option<Instant>,
    /// Bytes of [`H2_START`] matched so far, or [`H2`] or [`H1`].
    sniffed: u8,
    timer: Pin<Box<Sleep>>,
}

impl Deadlines {
    pub(crate) fn new(idle: Duration, header: Option<Duration>) -> Deadlines {
        let now = Instant::now();
        let first = header.map_or(idle, |header| header.min(idle));
        Deadlines {
            idle,
            header,
            last_active: now,
            first_read: None,
            last_write: None,
            sniffed: 0,
            timer: Box::pin(tokio::time::sleep_until(now + first)),
        }
    }

    /// `bytes` were just read.
    pub(crate) fn read(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let now = Instant::now();
        self.last_active = now;
        if self.first_read.is_none() {
            self.first_read = Some(now);
        }
        if self.header.is_some() && self.sniffed < H2 {
            self.sniff(bytes);
        }
    }

    fn sniff(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b != H2_START[usize::from(self.sniffed)] {
                self.sniffed = H1;
                return;
            }
            self.sniffed += 1;
            if self.sniffed == H2 {
                return;
            }
        }
    }

    /// `n` bytes were just written (a write that wrote nothing checks the deadlines).
    pub(crate) fn wrote(
        &mut self,
        n: usize,
        state: &ConnState,
        cx: &mut Context<'_>,
    ) -> io::Result<()> {
        if n == 0 {
            return self.check(state, cx);
        }
        let now = Instant::now();
        self.last_active = now;
        if self.header.is_some() {
            self.last_write = Some(now);
        }
        Ok(())
    }

    /// The header-read timeout, if it applies to this connection at all.
    fn header(&self) -> Option<Duration> {
        self.header.filter(|_| self.sniffed != H2)
    }

    /// The connection waits for bytes: fails if a deadline has passed, else makes sure the
    /// timer wakes the task by the next one.
    pub(crate) fn check(&mut self, state: &ConnState, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            let now = Instant::now();
            let idle_at = self.last_active + self.idle;
            if idle_at <= now {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for longer than the idle timeout",
                ));
            }
            let mut next = idle_at;
            if let Some(header) = self.header() {
                let since = self.last_write.or(self.first_read);
                if let Some(since) = since.filter(|_| state.idle()) {
                    let head_at = since + header;
                    if head_at <= now {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "request head not complete within the header-read timeout",
                        ));
                    }
                    next = next.min(head_at);
                }
                // A wait for a head that starts later ends later than this.
                next = next.min(now + header);
            }
            self.timer.as_mut().reset(next);
        }
    }
}
