//! Command line and environment: `model-server train | inspect | serve`. Every flag can also
//! be set through the environment variable named in [`mod@env`]; the operator sets those.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::conn::ConnLimits;
use crate::model::{IrisClass, Task, TrainingParams};
use crate::source::ModelSource;
use crate::state::Limits;

/// Environment variable names, one per flag (shared with the operator, which sets them).
pub use iris_model::env;

/// Default `--port`.
pub const DEFAULT_PORT: u16 = 5001;

/// Default `--grpc-port` (KServe's gRPC port).
pub const DEFAULT_GRPC_PORT: u16 = 8081;

/// Iris model server: train, inspect and serve logistic-regression models of the Iris data.
#[derive(Debug, Parser)]
#[command(name = "model-server", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr (level from RUST_LOG, default info).
    #[arg(long, env = env::LOG_FORMAT, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
// Parsed once at start-up: the size of `ServeArgs` does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model on the embedded Iris data and write the artifact.
    Train(TrainArgs),
    /// Validate an artifact and print a summary; fails on a bad artifact.
    Inspect(InspectArgs),
    /// Serve predictions over HTTP (and OIP v2 over gRPC).
    Serve(ServeArgs),
}

/// Training hyper-parameters (for `train`, and for `serve --source builtin`).
#[derive(Clone, Debug, Args)]
pub struct TrainingArgs {
    /// binary ("is it `<positive-class>`?", one vs rest) or multiclass.
    #[arg(long, env = env::TASK, value_enum, default_value_t = Task::Binary)]
    pub task: Task,
    /// The class a binary model recognises (ignored for multiclass).
    #[arg(long, env = env::POSITIVE_CLASS, value_enum, default_value_t = IrisClass::Setosa)]
    pub positive_class: IrisClass,
    /// Upper bound on L-BFGS iterations.
    #[arg(long, env = env::MAX_ITERATIONS, default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_iterations: u64,
    /// L2 regularisation strength (>= 0).
    #[arg(long, env = env::L2_PENALTY, default_value_t = 1.0)]
    pub l2_penalty: f64,
    /// Share of each class held out to measure accuracy (strictly between 0 and 1).
    #[arg(long, env = env::TEST_FRACTION, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// Seed of the train/test split.
    #[arg(long, env = env::SEED, default_value_t = 42)]
    pub seed: u64,
}

impl TrainingArgs {
    /// The library's parameters (range checks happen in [`crate::train`]).
    pub fn params(&self) -> TrainingParams {
        TrainingParams {
            task: self.task,
            positive_class: match self.task {
                Task::Binary => Some(self.positive_class),
                Task::Multiclass => None,
            },
            max_iterations: self.max_iterations,
            l2_penalty: self.l2_penalty,
            test_fraction: self.test_fraction,
            seed: self.seed,
        }
    }
}

/// `model-server train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Hyper-parameters.
    #[command(flatten)]
    pub training: TrainingArgs,
    /// Where to write the artifact (`-` for stdout).
    #[arg(long, env = env::OUT)]
    pub out: PathBuf,
}

/// `model-server inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The artifact to check.
    #[arg(env = env::ARTIFACT)]
    pub path: PathBuf,
}

/// `model-server serve`.
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on: an IP address (no DNS lookups; `localhost` means 127.0.0.1).
    #[arg(long, env = env::HOST, default_value = "0.0.0.0", value_parser = parse_host)]
    pub host: IpAddr,
    /// TCP port.
    #[arg(long, env = env::PORT, default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// TCP port of the Open Inference Protocol v2 gRPC service, on the same host; 0 disables
    /// it.
    #[arg(long, env = env::GRPC_PORT, default_value_t = DEFAULT_GRPC_PORT)]
    pub grpc_port: u16,
    /// Model name in KServe v1 and OIP v2 paths (no '/' or ':').
    #[arg(long, env = env::MODEL_NAME, default_value = "iris", value_parser = parse_model_name)]
    pub model_name: String,
    /// The model's Kubernetes namespace, carried by the request log lines with the model
    /// name (the operator sets it from the pod's namespace).
    #[arg(long, env = env::NAMESPACE)]
    pub namespace: Option<String>,
    /// Where the model comes from: `builtin` (train at start-up with the training flags)
    /// or `file:/path/model.json` (an artifact from `model-server train`).
    #[arg(long, env = env::SOURCE, default_value = "builtin")]
    pub source: ModelSource,
    /// Training hyper-parameters, used with `--source builtin` only.
    #[command(flatten)]
    pub training: TrainingArgs,
    /// Largest request body in bytes (larger: 413).
    #[arg(long, env = env::MAX_BODY_BYTES, default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_body_bytes: u64,
    /// Most rows in one batch request (more: 413).
    #[arg(long, env = env::MAX_BATCH_ROWS, default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_batch_rows: u64,
    /// Seconds a connection has to send a complete HTTP/1 request head (request line and
    /// headers); a slower one is closed. Also bounds idle HTTP/1 keep-alive connections
    /// (hyper starts the timer as soon as a connection waits for its next request).
    #[arg(long, value_name = "SECONDS", env = env::HEADER_READ_TIMEOUT_SECONDS, default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_read_timeout_seconds: u64,
    /// Seconds a request may take, reading its body included: then HTTP answers 503
    /// `{"error": ...}` and gRPC CANCELLED ("Timeout expired"; a shorter grpc-timeout from
    /// the client wins). Keep it below --idle-timeout-seconds.
    #[arg(long, value_name = "SECONDS", env = env::REQUEST_TIMEOUT_SECONDS, default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout_seconds: u64,
    /// Seconds without a byte read or written after which a connection (either port) is
    /// closed; catches clients that connect and send nothing, or half an HTTP/2 preface.
    #[arg(long, value_name = "SECONDS", env = env::IDLE_TIMEOUT_SECONDS, default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub idle_timeout_seconds: u64,
    /// Open connections per port (the HTTP workers share one count, gRPC has its own);
    /// further clients wait in the kernel's listen backlog until one closes. About 25-50 KiB
    /// each: the default keeps a full server under about 64 MiB.
    #[arg(long, value_name = "N", env = env::MAX_CONNECTIONS, default_value_t = 512,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Concurrent HTTP/2 streams (gRPC calls, or h2 requests on --port) per connection.
    #[arg(long, value_name = "N", env = env::MAX_CONCURRENT_STREAMS, default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,
    /// Seconds between HTTP/2 keep-alive PINGs on both ports.
    #[arg(long, value_name = "SECONDS", env = env::HTTP2_KEEPALIVE_INTERVAL_SECONDS,
          default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http2_keepalive_interval_seconds: u64,
    /// Seconds to wait for a PING's answer before closing the HTTP/2 connection.
    #[arg(long, value_name = "SECONDS", env = env::HTTP2_KEEPALIVE_TIMEOUT_SECONDS,
          default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http2_keepalive_timeout_seconds: u64,
    /// After SIGTERM/SIGINT, how long in-flight requests may take before the process exits.
    #[arg(long, env = env::SHUTDOWN_GRACE_SECONDS, default_value_t = 20)]
    pub shutdown_grace_seconds: u64,
    /// After SIGTERM/SIGINT, how long to keep accepting connections while readiness is
    /// already failing, so that endpoints are removed before the listener closes.
    #[arg(long, env = env::SHUTDOWN_DELAY_SECONDS, default_value_t = 0)]
    pub shutdown_delay_seconds: u64,
    /// HTTP worker threads, each a single-threaded runtime with its own listening socket
    /// on the port (SO_REUSEPORT); 0 means one per available CPU (respecting cgroup limits).
    #[arg(long, env = env::WORKER_THREADS, default_value_t = 0)]
    pub worker_threads: usize,
    /// PEM certificate chain (leaf first): serve HTTPS only on --port and gRPC over TLS
    /// only on --grpc-port (TLS 1.2 and 1.3); needs --tls-key. From a kubernetes.io/tls
    /// Secret mounted at DIR: DIR/tls.crt. Re-read every --reload-seconds: a renewed
    /// certificate is served to new connections without a restart.
    #[arg(long, value_name = "FILE", env = env::TLS_CERT_FILE, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1); needs --tls-cert. From a
    /// kubernetes.io/tls Secret mounted at DIR: DIR/tls.key.
    #[arg(long, value_name = "FILE", env = env::TLS_KEY_FILE, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// File of accepted bearer tokens, one per line (blank lines and lines starting with #
    /// are ignored). When set, every route but /v2/health/live and /v2/health/ready (and
    /// /metrics, see --auth-metrics), and every gRPC method but ServerLive and ServerReady,
    /// needs `Authorization: Bearer <token>`: 401 (gRPC: UNAUTHENTICATED) otherwise. A file
    /// without tokens refuses every such request. Re-read every --reload-seconds.
    #[arg(long, value_name = "FILE", env = env::AUTH_TOKENS_FILE)]
    pub auth_tokens: Option<PathBuf>,
    /// Require a bearer token on /metrics too (needs --auth-tokens).
    #[arg(long, env = env::AUTH_METRICS)]
    pub auth_metrics: bool,
    /// How often the --tls-cert/--tls-key and --auth-tokens files are re-read (1-3600); an
    /// unreadable or invalid file keeps the previous certificate or tokens.
    #[arg(long, value_name = "SECONDS", env = env::RELOAD_SECONDS, default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub reload_seconds: u64,
    /// Log at most N finished HTTP requests a second (route template, status code,
    /// latency_ms; never bodies, headers or query strings), sampled by a token bucket. 0: off.
    #[arg(long, value_name = "N", env = env::LOG_REQUESTS_PER_SECOND, default_value_t = 0)]
    pub log_requests_per_second: u32,
    /// Input drift counting (`--drift-window-seconds`, `--drift-window-slices`).
    #[command(flatten)]
    pub drift: crate::drift::DriftArgs,
    /// Payload logging: requests and responses as CloudEvents to a sink.
    #[command(flatten)]
    pub payload_log: crate::payload_log::PayloadLogArgs,
}

impl ServeArgs {
    /// Request and connection limits from the flags.
    pub fn limits(&self) -> Limits {
        Limits {
            max_body_bytes: usize::try_from(self.max_body_bytes).unwrap_or(usize::MAX),
            max_batch_rows: usize::try_from(self.max_batch_rows).unwrap_or(usize::MAX),
            request_timeout: Duration::from_secs(self.request_timeout_seconds),
            conn: ConnLimits {
                header_read_timeout: Duration::from_secs(self.header_read_timeout_seconds),
                idle_timeout: Duration::from_secs(self.idle_timeout_seconds),
                max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
                max_concurrent_streams: self.max_concurrent_streams,
                keepalive_interval: Duration::from_secs(self.http2_keepalive_interval_seconds),
                keepalive_timeout: Duration::from_secs(self.http2_keepalive_timeout_seconds),
            },
        }
    }
}

fn parse_host(s: &str) -> Result<IpAddr, String> {
    if s == "localhost" {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    s.parse()
        .map_err(|_| format!("{s:?} is not an IP address (the static binary does no DNS lookups)"))
}

fn parse_model_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains(['/', ':']) {
        Err(format!(
            "invalid model name {s:?}: must be non-empty, without '/' or ':'"
        ))
    } else {
        Ok(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_defaults() {
        let cli = Cli::try_parse_from(["model-server", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.host, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(args.port, 5001);
        assert_eq!(args.grpc_port, 8081);
        assert_eq!(args.model_name, "iris");
        assert_eq!(args.source, ModelSource::Builtin);
        assert_eq!(args.training.params(), TrainingParams::default());
        assert_eq!(args.limits(), Limits::default());
        assert_eq!(args.shutdown_grace_seconds, 20);
    }

    #[test]
    fn serve_flags() {
        let cli = Cli::try_parse_from([
            "model-server",
            "serve",
            "--host",
            "localhost",
            "--port",
            "8080",
            "--grpc-port",
            "0",
            "--source",
            "file:/models/iris.json",
            "--task",
            "multiclass",
            "--model-name",
            "flowers",
            "--max-batch-rows",
            "5",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.log_format, LogFormat::Json);
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.host, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(args.port, 8080);
        assert_eq!(args.grpc_port, 0);
        assert_eq!(args.source, ModelSource::File("/models/iris.json".into()));
        assert_eq!(args.training.params().positive_class, None);
        assert_eq!(args.limits().max_batch_rows, 5);
    }

    #[test]
    fn security_flags() {
        let serve = |extra: &[&str]| {
            let argv = ["model-server", "serve"].iter().chain(extra).copied();
            Cli::try_parse_from(argv).map(|cli| match cli.command {
                Command::Serve(args) => args,
                _ => panic!("not serve"),
            })
        };
        let args = serve(&[]).unwrap();
        assert_eq!(
            (args.tls_cert, args.tls_key, args.auth_tokens),
            (None, None, None)
        );
        assert!(!args.auth_metrics);
        assert_eq!(args.reload_seconds, 10);

        let args = serve(&[
            "--tls-cert",
            "/tls/tls.crt",
            "--tls-key",
            "/tls/tls.key",
            "--auth-tokens",
            "/auth/tokens",
            "--auth-metrics",
            "--reload-seconds",
            "2",
        ])
        .unwrap();
        assert_eq!(args.tls_cert, Some("/tls/tls.crt".into()));
        assert_eq!(args.tls_key, Some("/tls/tls.key".into()));
        assert_eq!(args.auth_tokens, Some("/auth/tokens".into()));
        assert!(args.auth_metrics);
        assert_eq!(args.reload_seconds, 2);

        for half in [&["--tls-cert", "/c"][..], &["--tls-key", "/k"]] {
            let e = serve(half).unwrap_err().to_string();
            assert!(e.contains("--tls-"), "{e}");
        }
        for bad in ["0", "3601", "x"] {
            assert!(serve(&["--reload-seconds", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn connection_limit_flags() {
        let serve = |extra: &[&str]| {
            let argv = ["model-server", "serve"].iter().chain(extra).copied();
            Cli::try_parse_from(argv).map(|cli| match cli.command {
                Command::Serve(args) => args.limits(),
                _ => panic!("not serve"),
            })
        };
        let defaults = serve(&[]).unwrap();
        assert_eq!(defaults.request_timeout, Duration::from_secs(30));
        assert_eq!(
            defaults.conn,
            ConnLimits {
                header_read_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60),
                max_connections: 512,
                max_concurrent_streams: 100,
                keepalive_interval: Duration::from_secs(30),
                keepalive_timeout: Duration::from_secs(20),
            }
        );
        assert_eq!(defaults.conn, ConnLimits::default());

        let set = serve(&[
            "--header-read-timeout-seconds",
            "2",
            "--request-timeout-seconds",
            "3",
            "--idle-timeout-seconds",
            "4",
            "--max-connections",
            "5",
            "--max-concurrent-streams",
            "6",
            "--http2-keepalive-interval-seconds",
            "7",
            "--http2-keepalive-timeout-seconds",
            "8",
        ])
        .unwrap();
        assert_eq!(set.request_timeout, Duration::from_secs(3));
        assert_eq!(
            set.conn,
            ConnLimits {
                header_read_timeout: Duration::from_secs(2),
                idle_timeout: Duration::from_secs(4),
                max_connections: 5,
                max_concurrent_streams: 6,
                keepalive_interval: Duration::from_secs(7),
                keepalive_timeout: Duration::from_secs(8),
            }
        );
        for flag in [
            "--header-read-timeout-seconds",
            "--request-timeout-seconds",
            "--idle-timeout-seconds",
            "--max-connections",
            "--max-concurrent-streams",
            "--http2-keepalive-interval-seconds",
            "--http2-keepalive-timeout-seconds",
        ] {
            for bad in ["0", "-1", "x"] {
                assert!(serve(&[flag, bad]).is_err(), "{flag} {bad}");
            }
        }
    }

    #[test]
    fn bad_values_are_refused() {
        for argv in [
            &["model-server", "serve", "--host", "example.com"][..],
            &[
                "model-server",
                "serve",
                "--source",
                "s3://bucket/model.json",
            ],
            &["model-server", "serve", "--model-name", "a:b"],
            &["model-server", "serve", "--positive-class", "rose"],
            &["model-server", "serve", "--max-batch-rows", "0"],
            &["model-server", "train"],
        ] {
            assert!(Cli::try_parse_from(argv).is_err(), "{argv:?}");
        }
    }
}
