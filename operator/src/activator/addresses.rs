//! The model pods' IPs as last seen, for the warm path: a connection that arrives while a pod
//! accepts goes straight to it, with one pod list per second at most, shared by concurrent
//! connections.

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::{timeout, Instant};
use tracing::warn;

use super::backend::Backend;

/// How long a pod list is trusted.
const FRESH_FOR: Duration = Duration::from_secs(1);
/// The longest wait for a pod list on the warm path; past it, the connection is held.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(2);

/// The cached IPs and when they were listed.
#[derive(Default)]
struct Cached {
    ips: Vec<IpAddr>,
    listed: Option<Instant>,
}

/// The cache, refreshed by one pod list at a time (single flight).
#[derive(Default)]
pub(super) struct Addresses {
    cached: Mutex<Cached>,
    refresh: tokio::sync::Mutex<()>,
}

impl Addresses {
    fn lock(&self) -> MutexGuard<'_, Cached> {
        // The data stays consistent whatever panicked while holding the lock.
        self.cached.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The IPs if listed less than [`FRESH_FOR`] ago (possibly none), else `None`.
    pub(super) fn fresh(&self) -> Option<Vec<IpAddr>> {
        let cached = self.lock();
        let listed = cached.listed?;
        (listed.elapsed() < FRESH_FOR).then(|| cached.ips.clone())
    }

    /// Fresh IPs, listing the pods if the cache is stale; concurrent callers share one list.
    /// A failed list counts as no pod (and is trusted as long as a list), so a broken API
    /// server costs each connection nothing but the hold.
    pub(super) async fn current(&self, backend: &dyn Backend) -> Vec<IpAddr> {
        if let Some(ips) = self.fresh() {
            return ips;
        }
        let _flight = self.refresh.lock().await;
        if let Some(ips) = self.fresh() {
            return ips; // listed by the caller we waited for
        }
        let ips = match timeout(REFRESH_TIMEOUT, backend.pods()).await {
            Ok(Ok(ips)) => ips,
            Ok(Err(e)) => {
                warn!("cannot list the model's pods: {e:#}");
                Vec::new()
            }
            Err(_) => {
                warn!(
                    "cannot list the model's pods: no answer within {} s",
                    REFRESH_TIMEOUT.as_secs()
                );
                Vec::new()
            }
        };
        let mut cached = self.lock();
        cached.ips = ips.clone();
        cached.listed = Some(Instant::now());
        ips
    }

    /// Drops an IP that refused a connection.
    pub(super) fn forget(&self, ip: IpAddr) {
        self.lock().ips.retain(|cached| *cached != ip);
    }

    /// Puts an IP that just accepted a connection first, as a fresh list.
    pub(super) fn remember(&self, ip: IpAddr) {
        let mut cached = self.lock();
        cached.ips.retain(|cached| *cached != ip);
        cached.ips.insert(0, ip);
        cached.listed = Some(Instant::now());
    }
}
