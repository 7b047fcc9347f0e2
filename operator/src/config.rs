//! Command-line flags of `iris-operator`; each also reads an environment variable, which is
//! how the Helm chart sets them.

use std::net::SocketAddr;

use clap::{ArgAction, Parser};

use crate::telemetry::LogFormat;

/// Kubernetes operator serving Iris models from IrisModel resources.
#[derive(Clone, Debug, Parser)]
#[command(name = "iris-operator", version, about)]
pub struct Cli {
    /// Model-server image for IrisModels that do not set spec.image.
    #[arg(
        long,
        env = "MODEL_SERVER_IMAGE",
        default_value = "iris-operator/model-server:0.1.0"
    )]
    pub model_server_image: String,

    /// Namespaces to watch, comma-separated; empty watches all namespaces.
    #[arg(
        long,
        env = "WATCH_NAMESPACES",
        default_value = "",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,

    /// Log filter, RUST_LOG syntax ("info", "debug", "operator=debug,kube=warn").
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// Run the controller only while holding a Lease, so several replicas can run.
    #[arg(
        long,
        env = "LEADER_ELECTION",
        action = ArgAction::Set,
        num_args = 0..=1,
        default_value_t = false,
        default_missing_value = "true"
    )]
    pub leader_election: bool,

    /// Name of the leader-election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "iris-operator-leader")]
    pub lease_name: String,

    /// Namespace of the Lease; defaults to the pod's namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Identity in the Lease and in Events; defaults to the host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// DNS domain of the cluster, used in status.endpoint.
    #[arg(long, env = "CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
}

impl Cli {
    /// The watched namespaces without blanks (`WATCH_NAMESPACES=""` means all).
    pub fn watched_namespaces(&self) -> Vec<String> {
        self.namespaces
            .iter()
            .map(|ns| ns.trim().to_string())
            .filter(|ns| !ns.is_empty())
            .collect()
    }

    /// This replica's identity: POD_NAME, else the host name.
    pub fn identity(&self) -> String {
        self.identity
            .clone()
            .filter(|id| !id.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| "iris-operator".to_string())
    }

    /// Namespace of the Lease: POD_NAMESPACE, else the service account's, else `default`.
    pub fn lease_namespace(&self) -> String {
        self.lease_namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                    .ok()
                    .map(|ns| ns.trim().to_string())
                    .filter(|ns| !ns.is_empty())
            })
            .unwrap_or_else(|| "default".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let cli = Cli::try_parse_from(["iris-operator"]).expect("parses");
        assert_eq!(cli.model_server_image, "iris-operator/model-server:0.1.0");
        assert!(cli.watched_namespaces().is_empty());
        assert_eq!(cli.metrics_addr.to_string(), "0.0.0.0:8080");
        assert!(!cli.leader_election);
        assert_eq!(cli.lease_name, "iris-operator-leader");
        assert_eq!(cli.log_format, LogFormat::Text);
    }

    #[test]
    fn flags() {
        let cli = Cli::try_parse_from([
            "iris-operator",
            "--namespaces",
            "a, b,,c",
            "--leader-election",
            "--log-format",
            "json",
        ])
        .expect("parses");
        assert_eq!(cli.watched_namespaces(), ["a", "b", "c"]);
        assert!(cli.leader_election);
        assert_eq!(cli.log_format, LogFormat::Json);
        let cli =
            Cli::try_parse_from(["iris-operator", "--leader-election=false"]).expect("parses");
        assert!(!cli.leader_election);
    }
}
