//! `iris-operator`: reconciles IrisModels into model-server Deployments and Services.

use std::ffi::OsStr;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use prometheus_client::registry::Registry;
use tracing::{error, info};

use operator::config::Cli;
use operator::context::{ActivatorSettings, Context, Settings};
use operator::leader::{self, Elector, LeaseConfig};
use operator::metrics::Metrics;
use operator::server::{self, Health};
use operator::shutdown::{self, stopped};
use operator::{run, startup, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args_os().nth(1).as_deref() == Some(OsStr::new("activator")) {
        return activator().await;
    }
    let cli = Cli::parse();
    telemetry::init(&cli.log_level, cli.log_format)?;
    // A bad default is refused at start-up, not found in a pod's events later.
    let pull_secrets = cli.image_pull_secrets().map_err(anyhow::Error::msg)?;
    info!(
        version = env!("CARGO_PKG_VERSION"),
        "starting iris-operator"
    );

    let mut registry = Registry::default();
    let metrics = Metrics::default().register(&mut registry);
    let health = Arc::new(Health::new(registry));

    let shutdown = shutdown::on_signals()?;

    let listener = tokio::net::TcpListener::bind(cli.metrics_addr)
        .await
        .with_context(|| format!("binding the metrics address {}", cli.metrics_addr))?;
    info!(addr = %cli.metrics_addr, "serving /metrics, /healthz and /readyz");
    let server = tokio::spawn(server::serve(
        listener,
        health.clone(),
        stopped(shutdown.clone()),
    ));

    let config = startup::config().await?;
    let client = startup::client(config.clone())?;
    if startup::wait_for_crd(client.clone(), &shutdown).await {
        let identity = cli.identity();
        let namespaces = cli.watched_namespaces();
        let settings = Settings {
            default_image: cli.model_server_image.clone(),
            cluster_domain: cli.cluster_domain.clone(),
            default_image_pull_secrets: pull_secrets.clone(),
            activator: ActivatorSettings {
                image: cli.activator_image.clone(),
                max_held: cli.activator_max_held,
                hold_timeout_seconds: cli.activator_hold_timeout_seconds,
            },
        };
        info!(
            image = %settings.default_image,
            image_pull_secrets = %settings.default_image_pull_secrets.join(","),
            namespaces = %if namespaces.is_empty() { "all".to_string() } else { namespaces.join(",") },
            identity = %identity,
            leader_election = cli.leader_election,
            "controller configured"
        );
        let ctx = Arc::new(Context::new(
            client.clone(),
            settings,
            metrics.clone(),
            Some(identity.clone()),
        ));
        // Ready from here: as the leader running the controller, or as a standby.
        health.set_ready(true);
        if cli.leader_election {
            let lease = LeaseConfig::new(cli.lease_name.clone(), cli.lease_namespace(), identity);
            let elector = Elector::new(startup::client(config)?, lease);
            leader::run_elected(
                elector,
                shutdown.clone(),
                |leading| metrics.set_leader(leading),
                |stop| run::run(client.clone(), &namespaces, ctx.clone(), stop),
            )
            .await;
        } else {
            metrics.set_leader(true);
            run::run(client.clone(), &namespaces, ctx, shutdown.clone()).await;
            metrics.set_leader(false);
        }
        health.set_ready(false);
    }

    // The controller stops on a signal, which also stops the HTTP server.
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => error!("metrics server failed: {e}"),
        Err(e) => error!("metrics server task failed: {e}"),
    }
    info!("stopped");
    Ok(())
}

/// `iris-operator activator ...`: the scale-from-zero proxy of one model, from the operator's
/// image (see `operator::activator`).
async fn activator() -> anyhow::Result<()> {
    let mut argv = std::env::args_os();
    let argv0 = argv.next().unwrap_or_else(|| "iris-operator".into());
    // Without the word "activator", so clap sees only the activator's flags.
    let args = operator::activator::Args::parse_from(std::iter::once(argv0).chain(argv.skip(1)));
    telemetry::init(&args.log_level, args.log_format)?;
    operator::activator::main(args).await
}
