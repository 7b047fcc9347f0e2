//! The model server on this machine (bench/model-server.sh, `make bench`): loopback traffic
//! only, every run bounded. Prints the machine, every run and a markdown table for
//! BENCHMARKS.md. Measures (targets from issue 2):
//! - POST /predict_iris single row, wrk -t2 -c64 (>= 50,000 req/s, p99 < 2 ms);
//! - POST /constant, same body and settings (predict within 15% of it);
//! - POST /v2/models/iris/infer, a 1,000-row FP64 batch (rows/s);
//! - process start to ready, builtin source (trains at start) (< 50 ms);
//! - idle RSS from /proc/PID/status (< 10 MB).
//!
//! Settings from the environment: DURATION (s, 10), THREADS (2), CONNECTIONS (64),
//! BATCH_CONNECTIONS (8), WORKERS (server worker threads, 0 = one per CPU), STARTS (20),
//! ROUNDS (3: alternating constant/predict rounds, the median run counts), PORT (5099),
//! SPLIT_CORES=1 (the server on CPU 0 with one worker, as in a 1-CPU pod, wrk on CPU 1 with one
//! thread), BINARY (the model-server binary; default the static release build).
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::bench::load::{Run, Wrk};
use e2e::bench::server::{ensure_free, model_server_copy, Server};
use e2e::bench::{env_flag, env_or, load_average, median_by, print_header, thousands};
use e2e::tls::TempDir;
use serde_json::json;

struct Settings {
    seconds: u64,
    connections: usize,
    batch_connections: usize,
    workers: usize,
    starts: usize,
    rounds: usize,
    port: u16,
    wrk: Wrk,
    server_pin: Option<usize>,
}

fn settings() -> Settings {
    let split = env_flag("SPLIT_CORES");
    let seconds = env_or("DURATION", 10);
    let connections = env_or("CONNECTIONS", 64);
    Settings {
        seconds,
        connections,
        batch_connections: env_or("BATCH_CONNECTIONS", 8),
        workers: if split { 1 } else { env_or("WORKERS", 0) },
        starts: env_or("STARTS", 20),
        rounds: env_or("ROUNDS", 3),
        port: env_or("PORT", 5099),
        wrk: Wrk {
            threads: if split { 1 } else { env_or("THREADS", 2) },
            connections,
            seconds,
            pin: split.then_some(1),
        },
        server_pin: split.then_some(0),
    }
}

/// One start of the server to its first 200 on /v2/health/ready, polled in a tight loop (no
/// sleeps: each refused connect returns at once), in milliseconds.
fn start_to_ready(binary: &Path, port: u16, workers: usize) -> Result<f64> {
    let t0 = Instant::now();
    let mut child = Command::new(binary)
        .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--worker-threads", &workers.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start the model server")?;
    let ready = || -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let mut head = [0u8; 12];
        s.write_all(b"GET /v2/health/ready HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            .is_ok()
            && s.read_exact(&mut head).is_ok()
            && head.starts_with(b"HTTP/1.1 200")
    };
    while !ready() {
        if t0.elapsed() > Duration::from_secs(10) || !matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
            bail!(
                "the server did not become ready (exit {:?})",
                child.try_wait()
            );
        }
    }
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    Ok(ms)
}

/// The bucket holding the 99th percentile of /predict_iris in the server's own histogram.
fn server_p99(metrics: &str) -> Option<String> {
    let prefix = "model_server_http_request_duration_seconds_bucket{route=\"/predict_iris\",code=\"200\",le=\"";
    let buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            Some((le.parse().ok()?, count.trim().parse().ok()?))
        })
        .collect();
    let total = buckets.last()?.1;
    let le = buckets.iter().find(|(_, n)| *n >= 0.99 * total)?.0;
    Some(if le < 1.0 {
        format!("<= {:.0} us", le * 1e6)
    } else {
        format!("<= {le} s")
    })
}

/// A measured wrk run with the server's CPU time per request.
fn measured(server: &Server, wrk: &Wrk, url: &str, body: &Path, name: &str) -> Result<Run> {
    eprintln!(
        "wrk {name} ({url}, -c{}, {}s)",
        wrk.connections, wrk.seconds
    );
    let cpu0 = server.cpu_seconds()?;
    let mut run = wrk.run(url, Some(body), &[])?;
    let cpu = server.cpu_seconds()? - cpu0;
    run.cpu_us = Some(cpu * 1e6 / run.requests.max(1) as f64);
    eprintln!(
        "{name} {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, {} errors, {:.2} us CPU a request",
        run.rps,
        run.p50_ms,
        run.p99_ms,
        run.errors,
        run.cpu_us.unwrap_or_default()
    );
    Ok(run)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

struct Figures {
    starts: Vec<f64>,
    constant: Vec<Run>,
    predict: Vec<Run>,
    batch: Run,
    idle_kib: u64,
    loaded_kib: u64,
    server_p99: String,
}

/// The request bodies: one row for /predict_iris and /constant, and a 1,000-row FP64 OIP
/// tensor.
fn bodies(work: &TempDir) -> (PathBuf, PathBuf) {
    let single = PathBuf::from(work.write("single.json", r#"{"features":[5.1,3.5,1.4,0.2]}"#));
    let rows = [
        [5.1, 3.5, 1.4, 0.2],
        [5.9, 2.8, 4.3, 1.3],
        [6.2, 3.4, 5.4, 2.3],
        [4.9, 3.0, 1.4, 0.2],
    ];
    let data: Vec<f64> = (0..1000).flat_map(|i| rows[i % 4]).collect();
    let body = json!({"inputs": [{"name": "input-0", "shape": [1000, 4], "datatype": "FP64", "data": data}]});
    (
        single,
        PathBuf::from(work.write("batch.json", &body.to_string())),
    )
}

/// The server the load runs measure, ready.
async fn serve(
    s: &Settings,
    binary: &Path,
    work: &TempDir,
    http: &reqwest::Client,
) -> Result<Server> {
    let args = [
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        &s.port.to_string(),
    ]
    .into_iter()
    .chain(["--worker-threads", &s.workers.to_string()])
    .map(String::from)
    .collect::<Vec<_>>();
    let log = work.0.join("server.log");
    let mut server = Server::start("model-server", binary, &args, s.server_pin, None, &log)?;
    let ready = format!("http://127.0.0.1:{}/v2/health/ready", s.port);
    server
        .wait_ready(http, &ready, Duration::from_secs(10))
        .await?;
    Ok(server)
}

async fn measure(s: &Settings, binary: &Path, work: &TempDir) -> Result<Figures> {
    eprintln!("start-to-ready ({} runs)", s.starts);
    let mut starts = (0..s.starts)
        .map(|_| start_to_ready(binary, s.port, s.workers))
        .collect::<Result<Vec<f64>>>()?;
    starts.sort_by(f64::total_cmp);
    let http = e2e::bench::http_client();
    let server = serve(s, binary, work, &http).await?;
    let idle_kib = server.rss_kib()?;
    let (single, batch) = bodies(work);
    let base = format!("http://127.0.0.1:{}", s.port);
    let run = |wrk: &Wrk, route: &str, body: &Path, name: &str| {
        measured(&server, wrk, &format!("{base}{route}"), body, name)
    };
    // Warm up (connections, allocator, caches), not measured.
    let warm_up = Wrk {
        seconds: 2,
        ..s.wrk.clone()
    };
    warm_up.output(&format!("{base}/predict_iris"), Some(&single), &[])?;
    // The two single-row routes alternate, and the median run of each counts: background
    // load on a shared machine then hits both alike.
    let (mut constant, mut predict) = (Vec::new(), Vec::new());
    for _ in 0..s.rounds {
        constant.push(run(&s.wrk, "/constant", &single, "constant")?);
        predict.push(run(&s.wrk, "/predict_iris", &single, "predict_iris")?);
    }
    let batch_wrk = Wrk {
        connections: s.batch_connections,
        ..s.wrk.clone()
    };
    let batch = run(&batch_wrk, "/v2/models/iris/infer", &batch, "v2_infer_1000")?;
    // Let the connections close before measuring idle memory again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded_kib = server.rss_kib()?;
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(Figures {
        starts,
        constant,
        predict,
        batch,
        idle_kib,
        loaded_kib,
        server_p99: server_p99(&metrics).unwrap_or_else(|| "?".into()),
    })
}

fn print_table(s: &Settings, f: &Figures) -> Result<()> {
    let (c, p) = (
        median_by(&f.constant, |r| r.rps).context("no constant run")?,
        median_by(&f.predict, |r| r.rps).context("no predict run")?,
    );
    let b = &f.batch;
    let all = |runs: &[Run]| {
        runs.iter()
            .map(|r| format!("{:.0}", r.rps))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let start_ms = median_by(&f.starts, |v| *v).unwrap_or(f64::NAN);
    let start_max = f.starts.last().copied().unwrap_or(f64::NAN);
    let (t, conns) = (s.wrk.threads, s.connections);
    let cpu = |r: &Run| r.cpu_us.map_or("?".into(), |v| format!("{v:.2}"));
    let errors: u64 = f
        .constant
        .iter()
        .chain(&f.predict)
        .chain([b])
        .map(|r| r.errors)
        .sum();
    println!(
        "\nruns (req/s): constant [{}], predict_iris [{}]\n",
        all(&f.constant),
        all(&f.predict)
    );
    println!("| measure | result | target | |\n|---|---|---|---|");
    println!("| /predict_iris single row, -t{t} -c{conns} (median of {}) | {:.0} req/s | >= 50,000 req/s | {} |", s.rounds, p.rps, verdict(p.rps >= 50_000.0));
    println!(
        "| /predict_iris latency p50 / p99 (same run) | {:.2} ms / {:.2} ms | p99 < 2 ms | {} |",
        p.p50_ms,
        p.p99_ms,
        verdict(p.p99_ms < 2.0)
    );
    println!(
        "| /predict_iris p99 inside the server (its own histogram) | {} | | |",
        f.server_p99
    );
    println!("| /constant, same POST body and settings (median of {}) | {:.0} req/s, p50 / p99 {:.2} ms / {:.2} ms | (HTTP ceiling) | |", s.rounds, c.rps, c.p50_ms, c.p99_ms);
    println!(
        "| predict / constant throughput | {:.1}% | >= 85% | {} |",
        p.rps / c.rps * 100.0,
        verdict(p.rps >= 0.85 * c.rps)
    );
    println!(
        "| server CPU per request: predict / constant | {} / {} us | | |",
        cpu(&p),
        cpu(&c)
    );
    println!("| OIP v2 infer, 1,000-row FP64 batch, -t{t} -c{} | {:.0} req/s = {} rows/s, p99 {:.2} ms | | |", s.batch_connections, b.rps, thousands(b.rps * 1000.0), b.p99_ms);
    println!("| start to ready (builtin source, trains at start), median of {} | {start_ms:.1} ms (max {start_max:.1}) | < 50 ms | {} |", s.starts, verdict(start_ms < 50.0));
    println!("| idle RSS after start / idle after the load runs | {:.1} MiB / {:.1} MiB | < 10 MB | {} |", f.idle_kib as f64 / 1024.0, f.loaded_kib as f64 / 1024.0, verdict(f.idle_kib * 1024 < 10_000_000));
    println!("| non-2xx answers and socket errors in all runs | {errors} | 0 | |");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let s = settings();
    let work = TempDir::new("bench-model-server");
    let (binary, built) = model_server_copy(&work.0)?;
    ensure_free(&[s.port])?;
    print_header("model-server benchmark");
    println!(
        "binary:   {} ({} bytes)",
        built.display(),
        std::fs::metadata(&binary)?.len()
    );
    println!(
        "wrk:      -t{} -c{} -d{}s; server workers: {} (0 = per CPU)",
        s.wrk.threads, s.connections, s.seconds, s.workers
    );
    let figures = measure(&s, &binary, &work).await?;
    print_table(&s, &figures)?;
    println!("\nload average after: {}", load_average());
    Ok(())
}
