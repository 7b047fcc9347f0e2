//! This activator's own addresses, never forwarded to: forwarding to itself would loop for
//! ever. It happens only if the model's selector also selects the activator's pod, which the
//! first connection reveals (it arrives on the activator's pod IP). Shared by the proxy, which
//! learns the addresses, and the wake loops, which skip them.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::net::TcpStream;
use tracing::warn;

/// The addresses clients reached this activator on (its pod IP and listen ports).
pub(super) struct Own {
    /// `namespace/name` of the model, for the warning.
    model: String,
    seen: Mutex<HashSet<SocketAddr>>,
    /// Whether the warning about a selector that selects this activator was logged.
    warned: AtomicBool,
}

impl Own {
    pub(super) fn new(model: &str) -> Self {
        Self {
            model: model.to_string(),
            seen: Mutex::default(),
            warned: AtomicBool::new(false),
        }
    }

    /// Remembers the address the client reached this activator on.
    pub(super) fn learn(&self, client: &TcpStream) {
        if let Ok(local) = client.local_addr() {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            seen.insert(local);
        }
    }

    /// The IPs that are not this activator on `port`, in their order.
    pub(super) fn others(&self, ips: &[IpAddr], port: u16) -> Vec<IpAddr> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let (mine, others): (Vec<IpAddr>, Vec<IpAddr>) = ips
            .iter()
            .partition(|ip| seen.contains(&SocketAddr::new(**ip, port)));
        if let Some(ip) = mine.first() {
            if !self.warned.swap(true, Ordering::Relaxed) {
                warn!(
                    %ip,
                    "pod IP {ip} is this activator's own address: the selector of model {}'s pods also \
                     selects the activator's pod; not forwarding to it",
                    self.model
                );
            }
        }
        others
    }
}
