//! Making room at the cap: the plain HTTP port's connections that have not started a request
//! yet, oldest first. When every permit is taken and a new connection arrives, the oldest of
//! them is shed (its next read fails, its permit comes back) and the new one takes its
//! place, so connections that send half a request and stop cannot keep honest clients in
//! the backlog until their header-read timeout. A connection that has started a request is
//! never shed: it waits for its timeouts, as before.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use super::track::{ConnState, Handoff};

/// The connections that could be shed, in accept order. Bounded: entries that can no longer
/// be shed leave from the front as they are met, and all at once when the list reaches twice
/// the connection cap, so it never holds more than `2 × cap + 1`.
#[derive(Debug)]
pub(crate) struct ShedQueue {
    conns: Mutex<VecDeque<Arc<ConnState>>>,
    cap: usize,
}

impl ShedQueue {
    pub(crate) fn new(cap: usize) -> ShedQueue {
        ShedQueue {
            conns: Mutex::new(VecDeque::new()),
            cap,
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<ConnState>>> {
        // A panic while holding the lock leaves a list that is still valid.
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        while conns.front().is_some_and(|c| !c.sheddable()) {
            conns.pop_front();
        }
        conns
    }

    /// A newly accepted connection.
    pub(crate) fn push(&self, conn: Arc<ConnState>) {
        let mut conns = self.lock();
        conns.push_back(conn);
        if conns.len() > 2 * self.cap {
            conns.retain(|c| c.sheddable());
        }
    }

    /// Some connection could be shed now.
    pub(crate) fn any(&self) -> bool {
        !self.lock().is_empty()
    }

    /// Sheds the oldest connection that has not started a request, its permit to go to
    /// `handoff` when it closes; false if there is none.
    pub(crate) fn shed_oldest(&self, mut handoff: Handoff) -> bool {
        let mut conns = self.lock();
        while let Some(conn) = conns.pop_front() {
            match conn.shed(handoff) {
                Ok(()) => return true,
                // Closed meanwhile: the next one.
                Err(back) => handoff = back,
            }
        }
        false
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.conns.lock().map(|c| c.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list stays within twice the cap however many connections pass through it, and
    /// sheds the oldest connection that can still be shed.
    #[test]
    fn bounded_and_oldest_first() {
        let queue = ShedQueue::new(4);
        let held: Vec<Arc<ConnState>> = (0..3).map(|_| Arc::new(ConnState::default())).collect();
        for c in &held {
            queue.push(c.clone());
        }
        // Many connections that started a request (or closed) behind the held ones.
        for _ in 0..1_000 {
            let c = Arc::new(ConnState::default());
            queue.push(c.clone());
            c.set_closed();
            assert!(queue.len() <= 2 * 4 + 1, "{}", queue.len());
        }
        held[0].set_closed();
        assert!(queue.any());
        let handoff = || tokio::sync::oneshot::channel().0;
        assert!(queue.shed_oldest(handoff()));
        assert!(held[1].is_shed() && !held[2].is_shed());
        assert!(queue.shed_oldest(handoff()));
        assert!(held[2].is_shed());
        assert!(!queue.shed_oldest(handoff()) && !queue.any());
    }
}
