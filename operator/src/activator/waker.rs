//! The wake loop of one backend port: at most one runs at a time, shared by every connection
//! held for that port. It scales the model up from zero once, then polls the pods until one
//! accepts a TCP connection on the port, and publishes that pod's IP to the held connections.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{interval, timeout, timeout_at, Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::proxy::Proxy;

/// How often the pods are listed and probed.
const TICK: Duration = Duration::from_millis(100);
/// The longest wait for a pod to accept a probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);
/// While no pod accepts, the wake is repeated this often: the operator may have taken the
/// model to zero just after a wake found it at one replica (its idle step and the first
/// request crossed), and a wake is a no-op at one replica or more.
const REWAKE_EVERY: Duration = Duration::from_secs(1);

/// Whether a loop runs, and how many connections wait for it.
#[derive(Default)]
struct State {
    held: usize,
    running: bool,
}

/// One port's wake loop and the channel it publishes on.
pub(super) struct Waker {
    port: u16,
    state: Mutex<State>,
    published: watch::Sender<Option<IpAddr>>,
}

impl Waker {
    pub(super) fn new(port: u16) -> Self {
        Self {
            port,
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
    pub(super) fn ensure_running(self: &Arc<Self>, proxy: &Arc<Proxy>) {
        let mut state = self.lock();
        if !state.running {
            state.running = true;
            tokio::spawn(self.clone().run(proxy.clone()));
        }
    }

    /// Runs rounds until one published, or no connection is held any more. The decision to
    /// stop is taken under the lock that [`Waker::ensure_running`] takes, so a connection held
    /// meanwhile either sees the loop running or starts a new one.
    async fn run(self: Arc<Self>, proxy: Arc<Proxy>) {
        let started = Instant::now();
        loop {
            let published = self.round(&proxy, started).await;
            let mut state = self.lock();
            if published || state.held == 0 {
                state.running = false;
                return;
            }
        }
    }

    /// One round, bounded by the hold timeout: wake (retried until it works), then list and
    /// probe every [`TICK`]. True if a pod accepted.
    async fn round(&self, proxy: &Proxy, started: Instant) -> bool {
        let deadline = Instant::now() + proxy.settings.hold_timeout;
        let mut woken: Option<Instant> = None;
        let mut last_wake: Option<Instant> = None;
        let mut complaints = Complaints::default();
        let mut ticks = interval(TICK);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if self.lock().held == 0 || Instant::now() >= deadline {
                return false;
            }
            if last_wake.is_none_or(|at| at.elapsed() >= REWAKE_EVERY) {
                match timeout_at(deadline, proxy.backend.wake()).await {
                    Err(_) => return false,
                    Ok(Ok(found)) => {
                        last_wake = Some(Instant::now());
                        if woken.is_none() || found == 0 {
                            woken.get_or_insert_with(Instant::now);
                            self.woke(proxy, found);
                        }
                    }
                    Ok(Err(e)) => complaints.warn(&proxy.settings.model, "wake", &e),
                }
            }
            let ips = match timeout_at(deadline, proxy.backend.pods()).await {
                Err(_) => return false,
                Ok(Ok(ips)) => ips,
                Ok(Err(e)) => {
                    complaints.warn(&proxy.settings.model, "list the pods of", &e);
                    continue;
                }
            };
            if let Some(ip) = first_accepting(&proxy.not_own(&ips, self.port), self.port).await {
                self.publish(proxy, ip, started, woken.unwrap_or(started));
                return true;
            }
        }
    }

    /// Logs and counts a wake.
    fn woke(&self, proxy: &Proxy, found: i32) {
        let model = &proxy.settings.model;
        if found == 0 {
            proxy.metrics.woke();
            info!(model = %model, replicas = found, "waking model {model}: scaled its Deployment from 0 to 1 replica");
        } else {
            info!(model = %model, replicas = found, "model {model} already wants {found} replicas; waiting for a pod to accept");
        }
    }

    /// Hands a pod that accepted to the held connections and to the warm path.
    fn publish(&self, proxy: &Proxy, ip: IpAddr, started: Instant, woken: Instant) {
        proxy.addresses.remember(ip);
        self.published.send_replace(Some(ip));
        proxy.metrics.cold_start(started.elapsed());
        let model = &proxy.settings.model;
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
    fn warn(&mut self, model: &str, doing: &str, e: &anyhow::Error) {
        let text = format!("{e:#}");
        if self.last.as_deref() == Some(text.as_str()) {
            debug!("cannot {doing} model {model}: {text}; retrying");
        } else {
            warn!(
                "cannot {doing} model {model}: {text}; retrying every {} ms",
                TICK.as_millis()
            );
            self.last = Some(text);
        }
    }
}
