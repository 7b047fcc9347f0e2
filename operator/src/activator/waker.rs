//! The wake loop of one backend port: at most one runs at a time, shared by every connection
//! held for that port. It scales the model up from zero, then waits on the watch of the
//! model's pods (no list: the backend's watch notifies it) and probes the pods it lists until
//! one accepts a TCP connection on the port, and publishes that pod's IP to the held
//! connections.
//!
//! It depends on what it needs ([`WakeDeps`]), not on the proxy that owns it.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout, timeout_at, Instant};
use tracing::{debug, info, warn};

use super::backend::Backend;
use super::metrics::Metrics;
use super::own::Own;

/// How often a listed pod that does not accept yet is probed again: the model server binds its
/// port once its model is loaded, before its readiness probe passes (and the watch says so).
/// A probe is a TCP connection to the pod, no API call.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// The longest wait for a pod to accept a probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);
/// While no pod accepts, the wake is repeated this often: the operator may have taken the
/// model to zero just after a wake found it at one replica (its idle step and the first
/// request crossed), and a wake is a no-op at one replica or more.
const REWAKE_EVERY: Duration = Duration::from_secs(1);
/// The pause before a failed wake is tried again.
const WAKE_RETRY: Duration = Duration::from_millis(250);

/// What a wake loop needs; the proxy builds it once and shares it with its wakers.
pub(super) struct WakeDeps {
    pub(super) backend: Arc<dyn Backend>,
    /// `namespace/name` of the model, in messages.
    pub(super) model: String,
    /// How long one round lasts: as long as a connection may be held.
    pub(super) hold_timeout: Duration,
    pub(super) metrics: Metrics,
    pub(super) own: Arc<Own>,
}

/// Whether a loop runs, and how many connections wait for it.
#[derive(Default)]
struct State {
    held: usize,
    running: bool,
}

/// One port's wake loop and the channel it publishes on.
pub(super) struct Waker {
    port: u16,
    deps: Arc<WakeDeps>,
    state: Mutex<State>,
    published: watch::Sender<Option<IpAddr>>,
}

impl Waker {
    pub(super) fn new(port: u16, deps: Arc<WakeDeps>) -> Self {
        Self {
            port,
            deps,
            state: Mutex::default(),
            published: watch::Sender::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The counts stay consistent whatever panicked while holding the lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The channel of published IPs; it changes when a pod accepted.
    pub(super) fn subscribe(&self) -> watch::Receiver<Option<IpAddr>> {
        self.published.subscribe()
    }

    /// Counts a held connection.
    pub(super) fn hold(&self) {
        self.lock().held += 1;
    }

    /// Uncounts a held connection.
    pub(super) fn release(&self) {
        let mut state = self.lock();
        state.held = state.held.saturating_sub(1);
    }

    /// Starts the loop unless it runs.
    pub(super) fn ensure_running(self: &Arc<Self>) {
        let mut state = self.lock();
        if !state.running {
            state.running = true;
            tokio::spawn(self.clone().run());
        }
    }

    /// Runs rounds until a pod accepted, or no connection is held any more. The publication
    /// and the decision to stop are taken under the lock that [`Waker::ensure_running`] takes,
    /// so a connection that subscribed and then called it either sees the loop running (and
    /// gets its publication) or starts a new one.
    async fn run(self: Arc<Self>) {
        let started = Instant::now();
        loop {
            let accepted = self.round().await;
            let mut state = self.lock();
            if let Some((ip, woken)) = accepted {
                self.publish(ip, started, woken.unwrap_or(started));
            }
            if accepted.is_some() || state.held == 0 {
                state.running = false;
                return;
            }
        }
    }

    /// One round, bounded by the hold timeout: wake (repeated every [`REWAKE_EVERY`]), and
    /// probe the watched pods whenever they change, and every [`PROBE_EVERY`] while some are
    /// listed but none accepts. The pod that accepted, and when the model was woken.
    async fn round(&self) -> Option<(IpAddr, Option<Instant>)> {
        let deps = &self.deps;
        let deadline = Instant::now() + deps.hold_timeout;
        let mut pods = deps.backend.pods();
        let mut woken: Option<Instant> = None;
        let mut next_wake = Instant::now();
        let mut complaints = Complaints::default();
        loop {
            if self.lock().held == 0 || Instant::now() >= deadline {
                return None;
            }
            if Instant::now() >= next_wake {
                match timeout_at(deadline, deps.backend.wake()).await {
                    Err(_) => return None,
                    Ok(Ok(found)) => {
                        next_wake = Instant::now() + REWAKE_EVERY;
                        if woken.is_none() || found == 0 {
                            woken.get_or_insert_with(Instant::now);
                            self.woke(found);
                        }
                    }
                    Ok(Err(e)) => {
                        next_wake = Instant::now() + WAKE_RETRY;
                        complaints.warn(&deps.model, &e);
                    }
                }
            }
            let listed = pods.borrow_and_update().clone();
            let ips = deps.own.others(&listed, self.port);
            if let Some(ip) = first_accepting(&ips, self.port).await {
                return Some((ip, woken));
            }
            let mut until = deadline.min(next_wake);
            if !ips.is_empty() {
                until = until.min(Instant::now() + PROBE_EVERY);
            }
            tokio::select! {
                changed = pods.changed() => {
                    if changed.is_err() {
                        // The backend stopped watching: only the timers are left.
                        sleep_until(until).await;
                    }
                }
                _ = sleep_until(until) => {}
            }
        }
    }

    /// Logs and counts a wake.
    fn woke(&self, found: i32) {
        let model = &self.deps.model;
        if found == 0 {
            self.deps.metrics.woke();
            info!(model = %model, replicas = found, "waking model {model}: scaled its Deployment from 0 to 1 replica");
        } else {
            info!(model = %model, replicas = found, "model {model} already wants {found} replicas; waiting for a pod to accept");
        }
    }

    /// Hands a pod that accepted to the held connections.
    fn publish(&self, ip: IpAddr, started: Instant, woken: Instant) {
        self.published.send_replace(Some(ip));
        self.deps.metrics.cold_start(started.elapsed());
        let model = &self.deps.model;
        let seconds = woken.elapsed().as_secs_f64();
        info!(model = %model, %ip, port = self.port, seconds, "pod {ip} of model {model} accepted a connection {seconds:.1} s after the wake");
    }
}

/// The first IP that accepts a TCP connection on the port (the probe is closed at once).
async fn first_accepting(ips: &[IpAddr], port: u16) -> Option<IpAddr> {
    for &ip in ips {
        match timeout(PROBE_TIMEOUT, TcpStream::connect((ip, port))).await {
            Ok(Ok(_probe)) => return Some(ip),
            Ok(Err(e)) => debug!(%ip, port, "not accepting yet: {e}"),
            Err(_) => debug!(%ip, port, "not accepting yet: no answer to the probe"),
        }
    }
    None
}

/// Warns about an error once, not every tick while it lasts.
#[derive(Default)]
struct Complaints {
    last: Option<String>,
}

impl Complaints {
    fn warn(&mut self, model: &str, e: &anyhow::Error) {
        let text = format!("{e:#}");
        if self.last.as_deref() == Some(text.as_str()) {
            debug!("cannot wake model {model}: {text}; retrying");
        } else {
            warn!(
                "cannot wake model {model}: {text}; retrying every {} ms",
                WAKE_RETRY.as_millis()
            );
            self.last = Some(text);
        }
    }
}
