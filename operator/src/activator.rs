//! The activator: `iris-operator activator ...`, a TCP proxy that stands in for a model scaled
//! to zero pods.
//!
//! While a model has no pod, the operator points its Service at the activator's pod. The
//! activator holds each incoming connection (bounded in count and time), wakes the model by
//! scaling its Deployment from 0 to 1 through the scale subresource, and forwards the held
//! connections to the first model pod that accepts a TCP connection (the model server binds
//! only once its model is loaded). It never reads a forwarded connection, so HTTP/1.1, HTTP/2
//! (gRPC) and TLS pass through untouched; over its bounds it refuses honestly, in the client's
//! protocol where it can tell (see `refusal`). It runs from the operator's image, one per
//! scale-to-zero model, in the model's namespace.
//!
//! Its bounds: at most `--max-connections` open at once (held and forwarded together; over
//! it a new connection is closed at once), at most `--max-held` held for at most
//! `--hold-timeout-seconds`, and a forwarded connection closed after `--idle-timeout-seconds`
//! without a byte either way. It learns the model's pods from one watch, not from lists.
//!
//! The proxy (`proxy`) reaches the cluster only through a `backend::Backend`, so
//! its tests run on loopback with a fake one.

mod args;
mod backend;
mod forward;
mod metrics;
mod own;
mod proxy;
mod refusal;
#[cfg(test)]
mod tests;
mod waker;

pub use args::{Args, Listen};

use std::sync::Arc;

use anyhow::Context as _;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info};

use crate::server::{self, Health};
use crate::shutdown::{self, stopped, Stop};
use crate::startup;

use backend::KubeBackend;
use metrics::Metrics;
use proxy::Proxy;

/// Runs the activator until SIGTERM or SIGINT, then until its connections are done (bounded).
pub async fn main(args: Args) -> anyhow::Result<()> {
    let settings = args.settings();
    info!(
        version = env!("CARGO_PKG_VERSION"),
        model = %settings.model,
        selector = %args.selector,
        max_held = settings.max_held,
        max_connections = settings.max_connections,
        hold_timeout_seconds = settings.hold_timeout.as_secs_f64(),
        idle_timeout_seconds = settings.idle_timeout.as_secs_f64(),
        "starting the activator"
    );

    let mut registry = Registry::default();
    let metrics = Metrics::default().register(&mut registry);
    let health = Arc::new(Health::new(registry));
    let stop = shutdown::on_signals()?;

    let config = startup::config().await?;
    let client = startup::client(config)?;
    let backend = KubeBackend::new(client, &args.namespace, &args.deployment, &args.selector);
    let proxy = Arc::new(Proxy::new(Arc::new(backend), settings, metrics));

    let routes = proxy::bind(&args.routes()).await?;
    let admin = TcpListener::bind(args.admin_addr)
        .await
        .with_context(|| format!("binding the admin address {}", args.admin_addr))?;
    info!(addr = %args.admin_addr, "serving /metrics, /healthz and /readyz");
    // The admin server outlives the listeners: /readyz says 503 while connections drain.
    let (drained_tx, drained) = watch::channel(false);
    let admin = tokio::spawn(server::serve(admin, health.clone(), stopped(drained)));

    health.set_ready(true);
    tokio::spawn(unready_on(stop.clone(), health.clone()));
    proxy.run(routes, stop).await;

    let _ = drained_tx.send(true);
    match admin.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => error!("admin server failed: {e}"),
        Err(e) => error!("admin server task failed: {e}"),
    }
    info!("stopped");
    Ok(())
}

/// Turns /readyz to 503 as soon as the stop signal fires, so endpoints drop the pod at once.
async fn unready_on(stop: Stop, health: Arc<Health>) {
    stopped(stop).await;
    health.set_ready(false);
}
