//! The proxy core: accept (at most `max_connections` open), then per connection the warm
//! path (a watched pod accepts: forward to it) or the hold (wait for the wake loop's
//! notification, bounded in count and time), and the drain on shutdown. It reaches the
//! cluster only through its [`Backend`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, timeout, timeout_at, Instant};
use tracing::{debug, info, warn};

use super::backend::Backend;
use super::forward::{forward, Ended};
use super::metrics::{Metrics, Outcome};
use super::own::Own;
use super::refusal::refuse;
use super::waker::{WakeDeps, Waker};
use crate::shutdown::{stopped, Stop};

/// The longest wait for a known pod to accept a forwarded connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The pause after a failed accept (out of file descriptors), so the loop does not spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How much longer than the hold timeout the drain waits for open connections.
const DRAIN_EXTRA: Duration = Duration::from_secs(5);

/// The proxy's bounds, and the model's name in its messages.
#[derive(Clone, Debug)]
pub(super) struct Settings {
    /// `namespace/name` of the model.
    pub(super) model: String,
    /// Connections held at once; more are refused.
    pub(super) max_held: usize,
    /// How long one connection may be held.
    pub(super) hold_timeout: Duration,
    /// The Retry-After of a refusal.
    pub(super) retry_after_seconds: u64,
    /// How long a forwarded connection may go without a byte either way before it is closed.
    pub(super) idle_timeout: Duration,
    /// Connections open at once (held, forwarded or being refused); more are closed at once.
    pub(super) max_connections: usize,
}

/// A bound listener and the port its connections go to on a model pod.
pub(super) struct Route {
    listener: TcpListener,
    port: u16,
}

impl Route {
    /// The address it listens on (tests bind port 0).
    #[cfg(test)]
    pub(super) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Binds each (listen address, backend port).
pub(super) async fn bind(routes: &[(SocketAddr, u16)]) -> anyhow::Result<Vec<Route>> {
    let mut bound = Vec::with_capacity(routes.len());
    for &(addr, port) in routes {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the listen address {addr}"))?;
        info!(%addr, backend_port = port, "listening");
        bound.push(Route { listener, port });
    }
    Ok(bound)
}

/// Why a connection got no pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unanswered {
    /// `max_held` connections were held already.
    Full,
    /// No pod accepted within the hold timeout.
    TimedOut,
    /// The client closed while held.
    Gone,
}

/// The proxy of one model; shared by its connection tasks and wake loops.
pub(super) struct Proxy {
    pub(super) settings: Settings,
    pub(super) metrics: Metrics,
    /// The watched candidate IPs of the model's pods.
    pods: watch::Receiver<Vec<IpAddr>>,
    /// What the wake loops need, shared with each.
    wake: Arc<WakeDeps>,
    wakers: Mutex<HashMap<u16, Arc<Waker>>>,
    /// This activator's own addresses, never forwarded to.
    own: Arc<Own>,
    /// Whether connections are being closed over `max_connections` (warned once per episode).
    over_cap: AtomicBool,
    /// Connections held now.
    held: watch::Sender<usize>,
    /// Connections open now (held, forwarded or being refused).
    open: watch::Sender<usize>,
}

impl Proxy {
    pub(super) fn new(backend: Arc<dyn Backend>, settings: Settings, metrics: Metrics) -> Self {
        let own = Arc::new(Own::new(&settings.model));
        let wake = Arc::new(WakeDeps {
            backend: backend.clone(),
            model: settings.model.clone(),
            hold_timeout: settings.hold_timeout,
            metrics: metrics.clone(),
            own: own.clone(),
        });
        Self {
            pods: backend.pods(),
            settings,
            metrics,
            wake,
            wakers: Mutex::default(),
            own,
            over_cap: AtomicBool::new(false),
            held: watch::Sender::new(0),
            open: watch::Sender::new(0),
        }
    }

    /// Serves the routes until `stop`, then waits for the open connections; returns how many
    /// were cut at the end of the wait.
    pub(super) async fn run(self: &Arc<Self>, routes: Vec<Route>, stop: Stop) -> usize {
        self.accept(routes, stop).await;
        self.drain().await
    }

    /// Accepts connections until `stop`, then closes the listeners (new connections are
    /// refused by the kernel); the accepted ones go on in their tasks.
    pub(super) async fn accept(self: &Arc<Self>, routes: Vec<Route>, stop: Stop) {
        futures::future::join_all(
            routes
                .into_iter()
                .map(|route| self.accept_on(route, stop.clone())),
        )
        .await;
    }

    async fn accept_on(self: &Arc<Self>, route: Route, stop: Stop) {
        let stop = stopped(stop);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => return,
                accepted = route.listener.accept() => match accepted {
                    Ok((client, _)) => {
                        let Some(open) = self.opened() else {
                            self.close_over_cap(client);
                            continue;
                        };
                        let proxy = self.clone();
                        let port = route.port;
                        tokio::spawn(async move {
                            proxy.handle(client, port).await;
                            drop(open);
                        });
                    }
                    Err(e) => {
                        warn!(backend_port = route.port, "cannot accept a connection: {e}");
                        sleep(ACCEPT_PAUSE).await;
                    }
                },
            }
        }
    }

    /// Waits for the open connections, at most the hold timeout and [`DRAIN_EXTRA`]: a held
    /// connection is answered or refused within the hold timeout.
    pub(super) async fn drain(&self) -> usize {
        let grace = self.settings.hold_timeout + DRAIN_EXTRA;
        let mut open = self.open.subscribe();
        let now_open = *open.borrow_and_update();
        info!(
            open = now_open,
            "stopped accepting; waiting up to {} s for the open connections",
            grace.as_secs_f64()
        );
        if timeout(grace, open.wait_for(|n| *n == 0)).await.is_ok() {
            info!("all connections done");
            return 0;
        }
        let cut = *open.borrow();
        warn!(
            cut,
            "cutting {cut} connections still open after {} s",
            grace.as_secs_f64()
        );
        cut
    }

    /// Counts an open connection until the guard is dropped, unless `max_connections` are
    /// open already.
    fn opened(&self) -> Option<OpenGuard> {
        let max = self.settings.max_connections;
        let metrics = &self.metrics;
        let admitted = self.open.send_if_modified(|n| {
            if *n >= max {
                return false;
            }
            *n += 1;
            metrics.set_open(*n);
            true
        });
        if !admitted {
            return None;
        }
        if self.over_cap.swap(false, Ordering::Relaxed) {
            info!(max, "accepting connections again");
        }
        Some(OpenGuard {
            open: self.open.clone(),
            metrics: self.metrics.clone(),
        })
    }

    /// Closes a connection over `max_connections` at once, unanswered: an answer would need
    /// a task and a read per connection, the very cost the cap bounds. The client sees a
    /// reset or an end of stream and may retry, on another activator pod during a rollout.
    fn close_over_cap(&self, client: TcpStream) {
        drop(client);
        self.metrics.connection(Outcome::RefusedOverCap);
        let max = self.settings.max_connections;
        if !self.over_cap.swap(true, Ordering::Relaxed) {
            warn!(
                max,
                "{max} connections are open (--max-connections): closing new ones until some end"
            );
        } else {
            debug!(max, "closed a connection over --max-connections");
        }
    }

    /// Connections open now; tests wait on it.
    #[cfg(test)]
    pub(super) fn open(&self) -> watch::Receiver<usize> {
        self.open.subscribe()
    }

    /// Connections held now; tests wait on it.
    #[cfg(test)]
    pub(super) fn held(&self) -> watch::Receiver<usize> {
        self.held.subscribe()
    }

    /// One connection: to a pod, or refused.
    async fn handle(self: Arc<Self>, client: TcpStream, port: u16) {
        let _ = client.set_nodelay(true);
        self.own.learn(&client);
        let server = match self.connect_warm(port).await {
            Some(server) => Ok(server),
            None => self.hold(&client, port).await,
        };
        match server {
            Ok(server) => self.forward(client, server).await,
            Err(why) => self.turn_away(client, why).await,
        }
    }

    /// Copies bytes between the client and the pod until both are done, or idle too long.
    async fn forward(&self, client: TcpStream, server: TcpStream) {
        self.metrics.connection(Outcome::Forwarded);
        let _ = server.set_nodelay(true);
        match forward(client, server, self.settings.idle_timeout).await {
            Ok(Ended::Closed { up, down }) => {
                debug!(up, down, "a forwarded connection ended");
            }
            Ok(Ended::Idle) => debug!(
                "closed a forwarded connection idle for {} s",
                self.settings.idle_timeout.as_secs_f64()
            ),
            Err(e) => debug!("a forwarded connection ended with an error: {e}"),
        }
    }

    /// Refuses the client, or counts that it left.
    async fn turn_away(&self, client: TcpStream, why: Unanswered) {
        let (outcome, message) = match why {
            Unanswered::Full => (Outcome::RefusedFull, self.full_message()),
            Unanswered::TimedOut => (Outcome::RefusedTimeout, self.timeout_message()),
            Unanswered::Gone => {
                self.metrics.connection(Outcome::Failed);
                debug!("a client closed its connection while it was held");
                return;
            }
        };
        self.metrics.connection(outcome);
        debug!(?outcome, "refusing a connection: {message}");
        refuse(client, &message, self.settings.retry_after_seconds).await;
    }

    fn full_message(&self) -> String {
        let s = &self.settings;
        format!(
            "model {} is starting from zero pods and {} requests are already waiting; retry \
             after {} s",
            s.model, s.max_held, s.retry_after_seconds
        )
    }

    fn timeout_message(&self) -> String {
        let s = &self.settings;
        format!(
            "no pod of model {} accepted a connection within {} s; retry after {} s",
            s.model,
            s.hold_timeout.as_secs_f64(),
            s.retry_after_seconds
        )
    }

    /// The warm path: a connection to a watched pod that accepts.
    async fn connect_warm(&self, port: u16) -> Option<TcpStream> {
        let ips = self.pods.borrow().clone();
        self.connect_any(&ips, port).await
    }

    /// A connection to the first IP that accepts, skipping this activator's own.
    async fn connect_any(&self, ips: &[IpAddr], port: u16) -> Option<TcpStream> {
        for ip in self.own.others(ips, port) {
            match timeout(CONNECT_TIMEOUT, TcpStream::connect((ip, port))).await {
                Ok(Ok(server)) => return Some(server),
                Ok(Err(e)) => debug!(%ip, port, "pod refused a connection: {e}"),
                Err(_) => debug!(%ip, port, "pod did not accept a connection in time"),
            }
        }
        None
    }

    /// The hold: waits for the wake loop to publish a pod that accepted (a notification, no
    /// polling), for at most the hold timeout. Nothing is read from the client, so what it
    /// sent reaches the pod.
    async fn hold(
        self: &Arc<Self>,
        client: &TcpStream,
        port: u16,
    ) -> Result<TcpStream, Unanswered> {
        let held = self.admit(port).ok_or(Unanswered::Full)?;
        let deadline = Instant::now() + self.settings.hold_timeout;
        // What was published before is marked seen: only a new pod wakes this connection.
        let mut published = held.waker.subscribe();
        loop {
            // A pod published between the warm path and the subscription is found again by
            // the loop this starts (its pods are the watched ones).
            held.waker.ensure_running();
            tokio::select! {
                _ = sleep_until(deadline) => return Err(Unanswered::TimedOut),
                _ = client_gone(client) => return Err(Unanswered::Gone),
                changed = published.changed() => {
                    if changed.is_err() {
                        // The waker (and its sender) lives as long as the proxy.
                        sleep_until(deadline).await;
                        return Err(Unanswered::TimedOut);
                    }
                }
            }
            // The published pod first, then the other watched ones.
            let first = *published.borrow_and_update();
            let mut ips: Vec<IpAddr> = first.into_iter().collect();
            ips.extend(self.pods.borrow().iter().filter(|ip| Some(**ip) != first));
            match timeout_at(deadline, self.connect_any(&ips, port)).await {
                Ok(Some(server)) => return Ok(server),
                Ok(None) => {}
                Err(_) => return Err(Unanswered::TimedOut),
            }
        }
    }

    /// Counts a held connection, unless `max_held` are held already.
    fn admit(&self, port: u16) -> Option<Held<'_>> {
        let max = self.settings.max_held;
        let metrics = &self.metrics;
        let admitted = self.held.send_if_modified(|held| {
            if *held >= max {
                return false;
            }
            *held += 1;
            metrics.set_held(*held);
            true
        });
        if !admitted {
            return None;
        }
        let waker = self.waker(port);
        waker.hold();
        Some(Held { proxy: self, waker })
    }

    /// The wake loop of a backend port.
    fn waker(&self, port: u16) -> Arc<Waker> {
        let mut wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        wakers
            .entry(port)
            .or_insert_with(|| Arc::new(Waker::new(port, self.wake.clone())))
            .clone()
    }
}

/// Resolves when the client has closed (or reset) without sending anything; once it has sent
/// bytes it is not gone, so this never resolves. It only peeks: the bytes stay for the pod.
async fn client_gone(client: &TcpStream) {
    let mut byte = [0; 1];
    match client.peek(&mut byte).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// A held connection, counted until dropped.
struct Held<'a> {
    proxy: &'a Proxy,
    waker: Arc<Waker>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.waker.release();
        let metrics = &self.proxy.metrics;
        self.proxy.held.send_modify(|held| {
            *held = held.saturating_sub(1);
            metrics.set_held(*held);
        });
    }
}

/// An open connection, counted until dropped.
struct OpenGuard {
    open: watch::Sender<usize>,
    metrics: Metrics,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let metrics = &self.metrics;
        self.open.send_modify(|n| {
            *n = n.saturating_sub(1);
            metrics.set_open(*n);
        });
    }
}
