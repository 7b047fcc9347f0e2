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

    /// Image pull Secrets, comma-separated names, for the model-server pods of IrisModels that
    /// do not set spec.imagePullSecrets (each in the IrisModel's namespace; never read).
    #[arg(
        long,
        env = "MODEL_SERVER_IMAGE_PULL_SECRETS",
        default_value = "",
        value_delimiter = ','
    )]
    pub model_server_image_pull_secrets: Vec<String>,

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

    /// Image of the activator of scale-to-zero models: the operator's own image.
    #[arg(
        long,
        env = "ACTIVATOR_IMAGE",
        default_value = "iris-operator/operator:0.1.0"
    )]
    pub activator_image: String,

    /// Connections an activator holds at once while its model has no pod (more get a 503).
    #[arg(long, env = "ACTIVATOR_MAX_HELD", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub activator_max_held: u32,

    /// Seconds an activator holds one connection before answering 503.
    #[arg(long, env = "ACTIVATOR_HOLD_TIMEOUT_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=600))]
    pub activator_hold_timeout_seconds: u32,

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

    /// The default image pull Secrets without blanks, or the first name that is not a Secret
    /// name, as an error for the start-up.
    pub fn image_pull_secrets(&self) -> Result<Vec<String>, String> {
        let names: Vec<String> = self
            .model_server_image_pull_secrets
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        match names.iter().find(|n| !is_dns_subdomain(n)) {
            Some(bad) => Err(format!(
                "--model-server-image-pull-secrets (MODEL_SERVER_IMAGE_PULL_SECRETS): {bad:?} is \
                 not a Secret name (lowercase letters, digits, '-' and '.', at most 253)"
            )),
            None => Ok(names),
        }
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

/// A DNS-1123 subdomain: what Kubernetes accepts as a Secret name.
fn is_dns_subdomain(name: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    name.len() <= 253 && name.split('.').all(label_ok)
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
        assert_eq!(cli.image_pull_secrets(), Ok(vec![]));
    }

    #[test]
    fn default_image_pull_secrets_are_checked_names() {
        let cli = Cli::try_parse_from([
            "iris-operator",
            "--model-server-image-pull-secrets",
            "regcred, ghcr.io-token,,",
        ])
        .expect("parses");
        assert_eq!(
            cli.image_pull_secrets(),
            Ok(vec!["regcred".to_string(), "ghcr.io-token".to_string()])
        );
        let bad = Cli::try_parse_from([
            "iris-operator",
            "--model-server-image-pull-secrets",
            "regcred,Reg_Cred",
        ])
        .expect("parses");
        let error = bad.image_pull_secrets().expect_err("an invalid name");
        assert!(
            error.contains("MODEL_SERVER_IMAGE_PULL_SECRETS") && error.contains("\"Reg_Cred\""),
            "{error}"
        );
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
