//! A hostile "model server" for e2e/tests/tenants.rs: a tenant's image that passes every
//! health probe but serves a `/metrics` page made to hurt whoever reads it (the operator's
//! request-rate autoscaler and canary analysis). The suite builds it static and loads it as
//! `$HOSTILE_IMAGE` (e2e/run-suite.sh).
//!
//! It runs where the model server runs: it listens on `MODEL_SERVER_PORT` (5001) of
//! `MODEL_SERVER_HOST` (all addresses), ignores the model server's other settings and any
//! argument but `--mode`, and answers every `/v2/health/...` route (and `/v2/models/NAME/ready`)
//! 200 at once. Its mode comes from `--mode MODE`, else `HOSTILE_MODE`, else the start of the
//! IrisModel's name (`MODEL_NAME`, which the operator sets), else of `HOSTNAME`:
//!
//! - `brace`: `/metrics` is `}{`;
//! - `huge`: a 10 MiB page of well-formed samples;
//! - `buckets`: one histogram with 100,000 buckets;
//! - `nan`: counters and buckets that are NaN, +Inf or negative;
//! - `slow`: the page trickles out over 10 s (headers at once, a line a second);
//! - anything else: a small, well-formed page with no traffic.
//!
//! One request per connection (`Connection: close`); SIGTERM ends it at once.
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Brace,
    Huge,
    Buckets,
    Nan,
    Slow,
    Plain,
}

impl Mode {
    fn from_name(name: &str) -> Mode {
        let name = name.to_ascii_lowercase();
        [
            ("brace", Mode::Brace),
            ("huge", Mode::Huge),
            ("buckets", Mode::Buckets),
            ("nan", Mode::Nan),
            ("slow", Mode::Slow),
        ]
        .into_iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map_or(Mode::Plain, |(_, mode)| mode)
    }

    /// `--mode X` / `--mode=X`, else HOSTILE_MODE, MODEL_NAME, HOSTNAME.
    fn chosen() -> Mode {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let from_args = args.iter().enumerate().find_map(|(i, a)| {
            a.strip_prefix("--mode=")
                .map(str::to_string)
                .or_else(|| (a == "--mode").then(|| args.get(i + 1).cloned()).flatten())
        });
        let name = from_args
            .or_else(|| std::env::var("HOSTILE_MODE").ok())
            .or_else(|| std::env::var("MODEL_NAME").ok())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_default();
        Mode::from_name(&name)
    }
}

/// How big the `huge` page is.
const HUGE_BYTES: usize = 10 << 20;
/// How many buckets the `buckets` page's histogram has.
const BUCKETS: usize = 100_000;
/// How long the `slow` page takes.
const SLOW_FOR: Duration = Duration::from_secs(10);
/// The most of a request head read.
const MAX_HEAD: usize = 16 << 10;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A small, well-formed page: a model that served nothing yet.
fn plain_page() -> String {
    let model = std::env::var("MODEL_NAME").unwrap_or_else(|_| "hostile".to_string());
    format!(
        "# TYPE model_server_model_info gauge\n\
         model_server_model_info{{model=\"{model}\",digest=\"sha256:0\"}} 1\n\
         # TYPE model_server_http_requests_total counter\n\
         model_server_http_requests_total{{route=\"/predict_iris\",code=\"200\"}} 0\n\
         # TYPE model_server_http_request_duration_seconds histogram\n\
         model_server_http_request_duration_seconds_bucket{{route=\"/predict_iris\",code=\"200\",le=\"0.001\"}} 0\n\
         model_server_http_request_duration_seconds_bucket{{route=\"/predict_iris\",code=\"200\",le=\"+Inf\"}} 0\n\
         model_server_http_request_duration_seconds_sum{{route=\"/predict_iris\",code=\"200\"}} 0\n\
         model_server_http_request_duration_seconds_count{{route=\"/predict_iris\",code=\"200\"}} 0\n"
    )
}

/// 10 MiB exactly of distinct, well-formed counter samples.
fn huge_page() -> Vec<u8> {
    let mut page = String::with_capacity(HUGE_BYTES + 128);
    page.push_str("# TYPE model_server_http_requests_total counter\n");
    let mut n = 0u64;
    loop {
        let line = format!(
            "model_server_http_requests_total{{route=\"/predict_iris\",code=\"200\",n=\"{n}\"}} {n}\n"
        );
        if page.len() + line.len() > HUGE_BYTES {
            break;
        }
        page.push_str(&line);
        n += 1;
    }
    // Pad to the exact size with a comment line.
    let left = HUGE_BYTES - page.len();
    if left > 0 {
        page.push('#');
        page.push_str(&" ".repeat(left.saturating_sub(2)));
        if left >= 2 {
            page.push('\n');
        }
    }
    page.into_bytes()
}

/// One histogram of the request duration with 100,000 buckets, and traffic to go with it.
fn buckets_page() -> Vec<u8> {
    let mut page = String::with_capacity(BUCKETS * 72);
    page.push_str("# TYPE model_server_http_requests_total counter\n");
    page.push_str(&format!(
        "model_server_http_requests_total{{route=\"/predict_iris\",code=\"200\"}} {BUCKETS}\n"
    ));
    page.push_str("# TYPE model_server_http_request_duration_seconds histogram\n");
    for i in 1..=BUCKETS {
        page.push_str(&format!(
            "model_server_http_request_duration_seconds_bucket{{route=\"/predict_iris\",code=\"200\",le=\"{:.6}\"}} {i}\n",
            i as f64 * 1e-6
        ));
    }
    page.push_str(&format!(
        "model_server_http_request_duration_seconds_bucket{{route=\"/predict_iris\",code=\"200\",le=\"+Inf\"}} {BUCKETS}\n\
         model_server_http_request_duration_seconds_sum{{route=\"/predict_iris\",code=\"200\"}} 5\n\
         model_server_http_request_duration_seconds_count{{route=\"/predict_iris\",code=\"200\"}} {BUCKETS}\n"
    ));
    page.into_bytes()
}

/// Counters and buckets that no arithmetic survives.
fn nan_page() -> String {
    "# TYPE model_server_http_requests_total counter\n\
     model_server_http_requests_total{route=\"/predict_iris\",code=\"200\"} NaN\n\
     model_server_http_requests_total{route=\"/predict_iris\",code=\"500\"} +Inf\n\
     model_server_http_requests_total{route=\"/v1/models/{name}:predict\",code=\"200\"} -12\n\
     model_server_http_requests_total{route=\"/v2/models/{name}/infer\",code=\"200\"} 1e308\n\
     # TYPE model_server_http_request_duration_seconds histogram\n\
     model_server_http_request_duration_seconds_bucket{route=\"/predict_iris\",code=\"200\",le=\"0.001\"} NaN\n\
     model_server_http_request_duration_seconds_bucket{route=\"/predict_iris\",code=\"200\",le=\"NaN\"} 3\n\
     model_server_http_request_duration_seconds_bucket{route=\"/predict_iris\",code=\"200\",le=\"0.01\"} -Inf\n\
     model_server_http_request_duration_seconds_bucket{route=\"/predict_iris\",code=\"200\",le=\"+Inf\"} NaN\n\
     model_server_http_request_duration_seconds_sum{route=\"/predict_iris\",code=\"200\"} NaN\n\
     model_server_http_request_duration_seconds_count{route=\"/predict_iris\",code=\"200\"} NaN\n\
     # TYPE model_server_grpc_requests_total counter\n\
     model_server_grpc_requests_total{method=\"ModelInfer\",code=\"OK\"} NaN\n"
        .to_string()
}

/// The page of a mode (built once: the big ones are shared by every request).
fn page(mode: Mode) -> &'static [u8] {
    static PAGE: OnceLock<Vec<u8>> = OnceLock::new();
    PAGE.get_or_init(|| match mode {
        Mode::Brace => b"}{".to_vec(),
        Mode::Huge => huge_page(),
        Mode::Buckets => buckets_page(),
        Mode::Nan => nan_page().into_bytes(),
        Mode::Slow | Mode::Plain => plain_page().into_bytes(),
    })
}

fn head(status: &str, content_type: &str, length: usize) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n"
    )
}

/// Reads the request head (at most MAX_HEAD bytes, 10 s) and returns its method and path.
async fn read_request(stream: &mut TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let read = async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_HEAD {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .ok()??;
    let text = String::from_utf8_lossy(&buf);
    let mut parts = text.lines().next()?.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    Some((method, path))
}

fn is_health(path: &str) -> bool {
    path.starts_with("/v2/health/")
        || matches!(path, "/healthz" | "/readyz" | "/livez" | "/v2")
        || (path.starts_with("/v2/models/") && path.ends_with("/ready"))
}

async fn serve(mut stream: TcpStream, mode: Mode) {
    let Some((_method, path)) = read_request(&mut stream).await else {
        return;
    };
    let path = path.split('?').next().unwrap_or("").to_string();
    let written = if is_health(&path) {
        let body = "{\"live\":true,\"ready\":true}";
        let answer = head("200 OK", "application/json", body.len()) + body;
        stream.write_all(answer.as_bytes()).await
    } else if path == "/metrics" {
        let body = page(mode);
        let wrote = stream
            .write_all(head("200 OK", CONTENT_TYPE, body.len()).as_bytes())
            .await;
        match (wrote, mode) {
            (Err(e), _) => Err(e),
            (Ok(()), Mode::Slow) => trickle(&mut stream, body).await,
            (Ok(()), _) => stream.write_all(body).await,
        }
    } else {
        let body = "not found\n";
        let answer = head("404 Not Found", "text/plain", body.len()) + body;
        stream.write_all(answer.as_bytes()).await
    };
    if written.is_ok() {
        let _ = stream.shutdown().await;
    }
}

/// Writes `body` in ten pieces, one a second.
async fn trickle(stream: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    let pieces = 10usize;
    let size = body.len().div_ceil(pieces).max(1);
    let pause = SLOW_FOR / pieces as u32;
    for piece in body.chunks(size) {
        tokio::time::sleep(pause).await;
        stream.write_all(piece).await?;
        stream.flush().await?;
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mode = Mode::chosen();
    let host = std::env::var("MODEL_SERVER_HOST").unwrap_or_else(|_| "0.0.0.0".to_string());
    let port: u16 = std::env::var("MODEL_SERVER_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5001);
    // Built before listening: the first scrape gets the whole page at once.
    let size = page(mode).len();
    let listener = TcpListener::bind((host.as_str(), port)).await?;
    eprintln!(
        "hostile-model: mode {mode:?} ({size} bytes of /metrics) on {}",
        listener.local_addr()?
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(serve(stream, mode));
                }
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    eprintln!("hostile-model: stopping");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_comes_from_the_start_of_the_name() {
        assert_eq!(Mode::from_name("brace-rate"), Mode::Brace);
        assert_eq!(Mode::from_name("huge"), Mode::Huge);
        assert_eq!(Mode::from_name("buckets-rate-7d9f-abcde"), Mode::Buckets);
        assert_eq!(Mode::from_name("nan-rollout"), Mode::Nan);
        assert_eq!(Mode::from_name("SLOW"), Mode::Slow);
        assert_eq!(Mode::from_name("iris"), Mode::Plain);
    }

    #[test]
    fn the_big_pages_have_their_size() {
        assert_eq!(huge_page().len(), HUGE_BYTES);
        let buckets = String::from_utf8(buckets_page()).expect("utf-8");
        assert_eq!(buckets.matches("_bucket{").count(), BUCKETS + 1);
    }
}
