//! Command-line flags of `iris-operator activator`; each also reads an environment variable.
//! The operator builds the activator's Deployment with these flags.

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;

use super::proxy::Settings;
use crate::telemetry::LogFormat;

/// Holds connections to a model scaled to zero pods, wakes it, and forwards them to its pods.
#[derive(Clone, Debug, Parser)]
#[command(name = "activator", bin_name = "iris-operator activator", version)]
pub struct Args {
    /// Namespace of the model (and of this pod).
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: String,

    /// Name of the model's Deployment, scaled from 0 to 1 through its scale subresource.
    #[arg(long, env = "ACTIVATOR_DEPLOYMENT")]
    pub deployment: String,

    /// Label selector of the model's pods ("app.kubernetes.io/instance=iris,...").
    #[arg(long, env = "ACTIVATOR_SELECTOR")]
    pub selector: String,

    /// A port to proxy, NAME=PORT: listen on 0.0.0.0:PORT and forward to PORT on a model pod.
    /// Repeated, or comma-separated.
    #[arg(long, env = "ACTIVATOR_LISTEN", required = true, value_delimiter = ',')]
    pub listen: Vec<Listen>,

    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "ACTIVATOR_ADMIN_ADDR", default_value = "0.0.0.0:9091")]
    pub admin_addr: SocketAddr,

    /// Connections held at once while no model pod accepts; more are refused.
    #[arg(long, env = "ACTIVATOR_MAX_HELD", default_value_t = 1000)]
    pub max_held: usize,

    /// Connections open at once, held and forwarded together. Over it a new connection is
    /// closed at once, unanswered, and counted as outcome "refused_over_cap".
    #[arg(
        long,
        env = "ACTIVATOR_MAX_CONNECTIONS",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections: u32,

    /// How long one connection may be held before it is refused.
    #[arg(
        long,
        env = "ACTIVATOR_HOLD_TIMEOUT_SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub hold_timeout_seconds: u64,

    /// How long a forwarded connection may go without a byte either way before it is closed
    /// (both sides). A held connection is bounded by --hold-timeout-seconds instead.
    #[arg(
        long,
        env = "ACTIVATOR_IDLE_TIMEOUT_SECONDS",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub idle_timeout_seconds: u64,

    /// The Retry-After (seconds) of a refusal.
    #[arg(long, env = "ACTIVATOR_RETRY_AFTER_SECONDS", default_value_t = 1)]
    pub retry_after_seconds: u64,

    /// Log filter, RUST_LOG syntax ("info", "debug", "operator=debug,kube=warn").
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Args {
    /// The proxy's bounds and the model's name in its messages.
    pub(super) fn settings(&self) -> Settings {
        Settings {
            model: format!("{}/{}", self.namespace, self.deployment),
            max_held: self.max_held,
            hold_timeout: Duration::from_secs(self.hold_timeout_seconds),
            retry_after_seconds: self.retry_after_seconds,
            idle_timeout: Duration::from_secs(self.idle_timeout_seconds),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
        }
    }

    /// (listen address, backend port) of each `--listen`: the same port on all interfaces.
    pub(super) fn routes(&self) -> Vec<(SocketAddr, u16)> {
        self.listen
            .iter()
            .map(|l| (SocketAddr::from((Ipv4Addr::UNSPECIFIED, l.port)), l.port))
            .collect()
    }
}

/// One `--listen NAME=PORT`; the name is for people (it matches the Service's port name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    pub name: String,
    pub port: u16,
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, port) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not NAME=PORT (e.g. http=8080)"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("{s:?} has no name before '=' (e.g. http=8080)"));
        }
        let port = port
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{s:?}: the port must be a number from 1 to 65535"))?;
        Ok(Listen {
            name: name.to_string(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let base = [
            "iris-operator",
            "--namespace",
            "default",
            "--deployment",
            "iris",
            "--selector",
            "app.kubernetes.io/instance=iris,app.kubernetes.io/name=model-server",
        ];
        Args::try_parse_from(base.iter().chain(extra))
    }

    #[test]
    fn flags_and_defaults() {
        let args = parse(&["--listen", "http=8080", "--listen", "grpc=9000"]).expect("args");
        assert_eq!(
            args.routes(),
            vec![
                ("0.0.0.0:8080".parse().expect("addr"), 8080),
                ("0.0.0.0:9000".parse().expect("addr"), 9000)
            ]
        );
        assert_eq!(
            args.selector,
            "app.kubernetes.io/instance=iris,app.kubernetes.io/name=model-server"
        );
        assert_eq!(args.admin_addr, "0.0.0.0:9091".parse().expect("addr"));
        let settings = args.settings();
        assert_eq!(settings.model, "default/iris");
        assert_eq!(settings.max_held, 1000);
        assert_eq!(settings.hold_timeout, Duration::from_secs(30));
        assert_eq!(settings.retry_after_seconds, 1);
        assert_eq!(settings.idle_timeout, Duration::from_secs(300));
        assert_eq!(settings.max_connections, 1024);
        assert_eq!(args.log_format, LogFormat::Text);
    }

    #[test]
    fn listen_is_required_and_checked() {
        assert!(parse(&[]).is_err());
        for bad in ["http", "=8080", "http=0", "http=70000", "http=x"] {
            assert!(parse(&["--listen", bad]).is_err(), "{bad}");
        }
        assert!(parse(&["--listen", "http=8080", "--hold-timeout-seconds", "0"]).is_err());
        assert!(parse(&["--listen", "http=8080", "--idle-timeout-seconds", "0"]).is_err());
        assert!(parse(&["--listen", "http=8080", "--max-connections", "0"]).is_err());
        let args = parse(&["--listen", "http=8080,grpc=9000"]).expect("args");
        assert_eq!(args.listen.len(), 2);
        // The operator's Deployment writes --flag=value.
        let args = parse(&["--listen=http=8080", "--max-held=5"]).expect("args");
        assert_eq!(
            args.listen,
            [Listen {
                name: "http".to_string(),
                port: 8080
            }]
        );
        assert_eq!(args.max_held, 5);
    }
}
