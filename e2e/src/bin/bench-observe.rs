//! What seeing the model costs (bench/observe.sh, `make bench`): `/predict_iris` throughput of
//! the model server on this machine with drift counting and payload logging on and off, in one
//! run. Loopback only; every run bounded. Prints the machine, every run and a markdown table for
//! BENCHMARKS.md. Configurations (targets from issue 27):
//! - `baseline`: drift counting off (`--drift-window-seconds 0`), no payload logging;
//! - `drift`: drift counting on (its default window), no logging (cost <= 3%);
//! - `log-100`: drift off, every request and response posted to a sink in this process on
//!   loopback (cost <= 30%);
//! - `log-0`: drift off, logging on at 0%: what the logging layer costs a request it does not
//!   log (no target; it tells the layer's own cost from the logging's);
//! - `log-dead`: drift off, logging at 100% to a port where nothing listens (cost <= 5%).
//!
//! The server restarts for each configuration (the flags are read at start); the rounds
//! alternate the configurations and the median run of each counts, so background load hits
//! all alike. The sink answers every POST 200 at once and counts what it received.
//!
//! Settings from the environment: DURATION (s, 10), CONNECTIONS (64), THREADS (2), ROUNDS (3),
//! PORT (5099), SINK_PORT (5098), DEAD_PORT (5097), BINARY (the model-server binary; default the
//! static release build).
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use e2e::bench::load::{Run, Wrk};
use e2e::bench::server::{ensure_free, model_server_copy, Server};
use e2e::bench::{env_or, load_average, median_by, print_header};
use e2e::tls::TempDir;
use iris_model::contract;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The configurations measured, with their server flags (the URL's port filled in later).
const CONFIGS: [(&str, &[&str]); 5] = [
    ("baseline", &["--drift-window-seconds", "0"]),
    ("drift", &[]),
    (
        "log-100",
        &[
            "--drift-window-seconds",
            "0",
            "--payload-log-url",
            "http://127.0.0.1:SINK/",
        ],
    ),
    (
        "log-0",
        &[
            "--drift-window-seconds",
            "0",
            "--payload-log-url",
            "http://127.0.0.1:SINK/",
            "--payload-log-sample-percent",
            "0",
        ],
    ),
    (
        "log-dead",
        &[
            "--drift-window-seconds",
            "0",
            "--payload-log-url",
            "http://127.0.0.1:DEAD/",
        ],
    ),
];

/// The largest request head or body the sink reads (an event is a few hundred bytes).
const SINK_MAX: usize = 1 << 20;

struct Settings {
    rounds: usize,
    port: u16,
    sink_port: u16,
    dead_port: u16,
    wrk: Wrk,
}

fn settings() -> Settings {
    Settings {
        rounds: env_or("ROUNDS", 3),
        port: env_or("PORT", 5099),
        sink_port: env_or("SINK_PORT", 5098),
        dead_port: env_or("DEAD_PORT", 5097),
        wrk: Wrk {
            threads: env_or("THREADS", 2),
            connections: env_or("CONNECTIONS", 64),
            seconds: env_or("DURATION", 10),
            pin: None,
        },
    }
}

/// A CloudEvents sink that accepts anything: HTTP/1.1 with keep-alive, each request read to
/// its content-length and answered 200; counts the requests. Bounded: a head line or body over
/// [`SINK_MAX`] closes the connection.
async fn sink(port: u16, received: Arc<AtomicU64>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("bind the sink on 127.0.0.1:{port}"))?;
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let received = received.clone();
            tokio::spawn(async move {
                let _ = sink_connection(socket, &received).await;
            });
        }
    });
    Ok(())
}

async fn sink_connection(socket: tokio::net::TcpStream, received: &AtomicU64) -> Result<()> {
    let (read, mut write) = socket.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    loop {
        let mut length = 0usize;
        let mut head = 0usize;
        loop {
            line.clear();
            let n = read.read_line(&mut line).await?;
            head += n;
            if n == 0 || head > SINK_MAX {
                return Ok(());
            }
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((name, value)) = trimmed.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        if length > SINK_MAX {
            return Ok(());
        }
        let mut body = vec![0u8; length];
        read.read_exact(&mut body).await?;
        received.fetch_add(1, Ordering::Relaxed);
        write
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await?;
    }
}

/// One measured run of `config`: the server started with its flags, warmed up, measured, stopped.
async fn run_config(
    s: &Settings,
    binary: &Path,
    work: &TempDir,
    body: &Path,
    (name, flags): (&str, &[&str]),
) -> Result<Run> {
    let mut args: Vec<String> = ["serve", "--host", "127.0.0.1", "--port"]
        .into_iter()
        .map(String::from)
        .chain([s.port.to_string()])
        .collect();
    args.extend(flags.iter().map(|f| {
        f.replace("SINK", &s.sink_port.to_string())
            .replace("DEAD", &s.dead_port.to_string())
    }));
    let log = work.0.join(format!("{name}.log"));
    let mut server = Server::start(name, binary, &args, None, None, &log)?;
    let http = e2e::bench::http_client();
    let base = format!("http://127.0.0.1:{}", s.port);
    server
        .wait_ready(
            &http,
            &format!("{base}/v2/health/ready"),
            Duration::from_secs(10),
        )
        .await?;
    let url = format!("{base}/predict_iris");
    let warm_up = Wrk {
        seconds: 2,
        ..s.wrk.clone()
    };
    warm_up.output(&url, Some(body), &[])?;
    let run = s.wrk.run(&url, Some(body), &[])?;
    let page = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let counted = |metric: &str| -> f64 {
        page.lines()
            .filter(|l| l.starts_with(metric))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(0.0, |sum, v| sum + v)
    };
    eprintln!(
        "{name}: {:.0} req/s, p99 {:.2} ms, errors {}; payload log sent {} failed {} dropped {}",
        run.rps,
        run.p99_ms,
        run.errors,
        counted(contract::PAYLOAD_LOG_SENT_TOTAL),
        counted(contract::PAYLOAD_LOG_FAILED_TOTAL),
        counted(contract::PAYLOAD_LOG_DROPPED_TOTAL),
    );
    server.stop();
    Ok(run)
}

#[tokio::main]
async fn main() -> Result<()> {
    let s = settings();
    let work = TempDir::new("bench-observe");
    let (binary, built) = model_server_copy(&work.0)?;
    ensure_free(&[s.port, s.sink_port, s.dead_port])?;
    let received = Arc::new(AtomicU64::new(0));
    sink(s.sink_port, received.clone()).await?;
    let body =
        std::path::PathBuf::from(work.write("single.json", r#"{"features":[5.1,3.5,1.4,0.2]}"#));
    print_header("drift counting and payload logging: /predict_iris cost");
    println!("binary:   {}", built.display());
    println!(
        "wrk:      -t{} -c{} -d{}s, {} rounds",
        s.wrk.threads, s.wrk.connections, s.wrk.seconds, s.rounds
    );
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); CONFIGS.len()];
    for _ in 0..s.rounds {
        for (i, config) in CONFIGS.iter().enumerate() {
            runs[i].push(run_config(&s, &binary, &work, &body, *config).await?);
        }
    }
    let medians: Vec<Run> = runs
        .iter()
        .map(|r| median_by(r, |run| run.rps).context("no run"))
        .collect::<Result<_>>()?;
    let base = medians[0].rps;
    let targets = [None, Some(3.0), Some(30.0), None, Some(5.0)];
    println!(
        "\n| configuration | req/s (median of {}) | p99 | cost | target | |",
        s.rounds
    );
    println!("|---|---|---|---|---|---|");
    for (((name, _), run), target) in CONFIGS.iter().zip(&medians).zip(targets) {
        let cost = 100.0 * (1.0 - run.rps / base);
        let (target, verdict) = match target {
            Some(t) => (
                format!("<= {t:.0}%"),
                if cost <= t { "met" } else { "missed" },
            ),
            None => (String::new(), ""),
        };
        println!(
            "| {name} | {:.0} | {:.2} ms | {cost:.1}% | {target} | {verdict} |",
            run.rps, run.p99_ms
        );
    }
    let errors: u64 = runs.iter().flatten().map(|r| r.errors).sum();
    println!("\nnon-2xx answers and socket errors in all runs: {errors}");
    println!(
        "events the sink received (all log-100 runs, warm-ups included): {}",
        received.load(Ordering::Relaxed)
    );
    println!("load average after: {}", load_average());
    Ok(())
}
