//! The model server's environment variable names, one per flag of `model-server`. The
//! operator sets these on the pods it makes; the server reads them (clap's `env`).

/// `--host`: address to listen on (an IP address; `localhost` means 127.0.0.1).
pub const HOST: &str = "MODEL_SERVER_HOST";
/// `--port`: TCP port.
pub const PORT: &str = "MODEL_SERVER_PORT";
/// `--grpc-port`: TCP port of the OIP v2 gRPC service; 0 disables it.
pub const GRPC_PORT: &str = "MODEL_SERVER_GRPC_PORT";
/// `--model-name`: the name in KServe/OIP paths.
pub const MODEL_NAME: &str = "MODEL_NAME";
/// `--namespace`: the model's Kubernetes namespace, carried by the request log lines (the
/// operator sets it from the pod's own, through the downward API).
pub const NAMESPACE: &str = "MODEL_NAMESPACE";
/// `--source`: `builtin` or `file:/path/model.json`.
pub const SOURCE: &str = "MODEL_SOURCE";
/// `--task`: `binary` or `multiclass`.
pub const TASK: &str = "MODEL_TASK";
/// `--positive-class`: `setosa`, `versicolor` or `virginica` (binary only).
pub const POSITIVE_CLASS: &str = "MODEL_POSITIVE_CLASS";
/// `--max-iterations`.
pub const MAX_ITERATIONS: &str = "MODEL_MAX_ITERATIONS";
/// `--l2-penalty`.
pub const L2_PENALTY: &str = "MODEL_L2_PENALTY";
/// `--test-fraction`.
pub const TEST_FRACTION: &str = "MODEL_TEST_FRACTION";
/// `--seed`.
pub const SEED: &str = "MODEL_SEED";
/// `--max-body-bytes`.
pub const MAX_BODY_BYTES: &str = "MODEL_SERVER_MAX_BODY_BYTES";
/// `--max-batch-rows`.
pub const MAX_BATCH_ROWS: &str = "MODEL_SERVER_MAX_BATCH_ROWS";
/// `--shutdown-grace-seconds`.
pub const SHUTDOWN_GRACE_SECONDS: &str = "MODEL_SERVER_SHUTDOWN_GRACE_SECONDS";
/// `--shutdown-delay-seconds`.
pub const SHUTDOWN_DELAY_SECONDS: &str = "MODEL_SERVER_SHUTDOWN_DELAY_SECONDS";
/// `--log-requests-per-second`: at most this many request log lines a second (0: none).
pub const LOG_REQUESTS_PER_SECOND: &str = "MODEL_SERVER_LOG_REQUESTS_PER_SECOND";
/// `--drift-window-seconds`: the sliding window of input drift counting; 0 turns it off.
pub const DRIFT_WINDOW_SECONDS: &str = "MODEL_SERVER_DRIFT_WINDOW_SECONDS";
/// `--drift-window-slices`: the drift window is a ring of this many slices, the oldest
/// dropped each window/slices.
pub const DRIFT_WINDOW_SLICES: &str = "MODEL_SERVER_DRIFT_WINDOW_SLICES";
/// `--worker-threads`.
pub const WORKER_THREADS: &str = "MODEL_SERVER_WORKER_THREADS";
/// `--tls-cert`: PEM certificate chain (leaf first) for HTTPS and gRPC over TLS; with
/// `--tls-key`. From a `kubernetes.io/tls` Secret volume: `<dir>/tls.crt`.
pub const TLS_CERT_FILE: &str = "MODEL_SERVER_TLS_CERT_FILE";
/// `--tls-key`: PEM private key (PKCS#8, PKCS#1 or SEC1) of `--tls-cert`. From a
/// `kubernetes.io/tls` Secret volume: `<dir>/tls.key`.
pub const TLS_KEY_FILE: &str = "MODEL_SERVER_TLS_KEY_FILE";
/// `--auth-tokens`: file of accepted bearer tokens, one per line.
pub const AUTH_TOKENS_FILE: &str = "MODEL_SERVER_AUTH_TOKENS_FILE";
/// `--auth-metrics`: `true` to require a token on `/metrics` too.
pub const AUTH_METRICS: &str = "MODEL_SERVER_AUTH_METRICS";
/// `--reload-seconds`: how often the TLS and token files are re-read.
pub const RELOAD_SECONDS: &str = "MODEL_SERVER_RELOAD_SECONDS";
/// `--log-format`: `text` or `json`. The level comes from `RUST_LOG`.
pub const LOG_FORMAT: &str = "LOG_FORMAT";
/// `train --out`.
pub const OUT: &str = "MODEL_OUT";
/// `inspect PATH`.
pub const ARTIFACT: &str = "MODEL_ARTIFACT";
/// `--header-read-timeout-seconds`: time for a connection to send its first request, and for
/// an HTTP/1 request's head.
pub const HEADER_READ_TIMEOUT_SECONDS: &str = "MODEL_SERVER_HEADER_READ_TIMEOUT_SECONDS";
/// `--request-timeout-seconds`: longest request (HTTP 503, gRPC CANCELLED after it).
pub const REQUEST_TIMEOUT_SECONDS: &str = "MODEL_SERVER_REQUEST_TIMEOUT_SECONDS";
/// `--idle-timeout-seconds`: a connection with no bytes in either direction for this long is
/// closed.
pub const IDLE_TIMEOUT_SECONDS: &str = "MODEL_SERVER_IDLE_TIMEOUT_SECONDS";
/// `--max-connections`: open connections per port; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: &str = "MODEL_SERVER_MAX_CONNECTIONS";
/// `--max-concurrent-streams`: HTTP/2 streams (gRPC calls) per connection.
pub const MAX_CONCURRENT_STREAMS: &str = "MODEL_SERVER_MAX_CONCURRENT_STREAMS";
/// `--http2-keepalive-interval-seconds`: HTTP/2 PING interval.
pub const HTTP2_KEEPALIVE_INTERVAL_SECONDS: &str = "MODEL_SERVER_HTTP2_KEEPALIVE_INTERVAL_SECONDS";
/// `--http2-keepalive-timeout-seconds`: close when a PING is not answered within this.
pub const HTTP2_KEEPALIVE_TIMEOUT_SECONDS: &str = "MODEL_SERVER_HTTP2_KEEPALIVE_TIMEOUT_SECONDS";
/// `--payload-log-url`: post each sampled prediction's request and response as CloudEvents
/// (HTTP binary mode) to this `http://` URL.
pub const PAYLOAD_LOG_URL: &str = "MODEL_SERVER_PAYLOAD_LOG_URL";
/// `--payload-log-mode`: `all`, `request` or `response`.
pub const PAYLOAD_LOG_MODE: &str = "MODEL_SERVER_PAYLOAD_LOG_MODE";
/// `--payload-log-sample-percent`: share of predictions logged, 0-100.
pub const PAYLOAD_LOG_SAMPLE_PERCENT: &str = "MODEL_SERVER_PAYLOAD_LOG_SAMPLE_PERCENT";
/// `--payload-log-headers-file`: extra HTTP headers of every post, `Name: value` lines.
pub const PAYLOAD_LOG_HEADERS_FILE: &str = "MODEL_SERVER_PAYLOAD_LOG_HEADERS_FILE";
/// `--payload-log-queue`: predictions waiting to be posted; more are dropped and counted.
pub const PAYLOAD_LOG_QUEUE: &str = "MODEL_SERVER_PAYLOAD_LOG_QUEUE";
/// `--payload-log-concurrency`: posts in flight at once.
pub const PAYLOAD_LOG_CONCURRENCY: &str = "MODEL_SERVER_PAYLOAD_LOG_CONCURRENCY";
/// `--payload-log-timeout-ms`: time limit of one post.
pub const PAYLOAD_LOG_TIMEOUT_MS: &str = "MODEL_SERVER_PAYLOAD_LOG_TIMEOUT_MS";
/// `--payload-log-retries`: further attempts of a failed post, with a doubling back-off.
pub const PAYLOAD_LOG_RETRIES: &str = "MODEL_SERVER_PAYLOAD_LOG_RETRIES";
