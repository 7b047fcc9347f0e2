//! Half-open connections against one model server on loopback (`make bench`, issue "Tenants"):
//! starts `model-server serve` (MODEL_SERVER_BIN), opens HALFOPEN_CONNECTIONS (default 10,000)
//! TCP connections that each send half a request line and stop, and while they are held
//! samples the server's resident memory (/proc/PID/status VmRSS) and times normal
//! `/predict_iris` requests on fresh connections. Prints one line per figure; bounded in count
//! and time (every wait has a deadline), loopback only.
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::bench::env_or;
use e2e::bench::server::Server;
use e2e::tls::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PORT: u16 = 15_801;
const GRPC_PORT: u16 = 15_802;
const PREDICT: &str =
    "POST /predict_iris HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
    content-length: 30\r\nconnection: close\r\n\r\n{\"features\":[5.1,3.5,1.4,0.2]}";

/// One prediction on a fresh connection: its latency, or why it failed.
async fn predict() -> Result<Duration> {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", PORT)).await?;
    s.write_all(PREDICT.as_bytes()).await?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await?;
    if !answer.starts_with(b"HTTP/1.1 200") {
        bail!("{}", String::from_utf8_lossy(&answer));
    }
    Ok(t0.elapsed())
}

async fn timed_predictions(n: usize) -> (Vec<Duration>, usize) {
    let mut times = Vec::new();
    let mut failed = 0;
    for i in 0..n {
        match tokio::time::timeout(Duration::from_secs(5), predict()).await {
            Ok(Ok(t)) => times.push(t),
            Ok(Err(e)) => {
                failed += 1;
                println!("halfopen: request {i} failed: {e:#}");
            }
            Err(_) => {
                failed += 1;
                println!("halfopen: request {i} not answered within 5 s");
            }
        }
    }
    times.sort();
    (times, failed)
}

fn ms(d: Option<&Duration>) -> String {
    d.map_or("n/a".into(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3))
}

/// Opens `count` connections that each send half a request line, then nothing, in batches of
/// 1,000 at once, each connect bounded by 1 s. Connects past the server's connection cap wait
/// in the kernel's backlog (or are refused when it is full): returns the held ones and how
/// many did not open.
async fn open_half(count: usize) -> (Vec<TcpStream>, usize) {
    let mut held = Vec::with_capacity(count);
    let mut refused = 0usize;
    for batch in 0..count.div_ceil(1_000) {
        let n = (count - batch * 1_000).min(1_000);
        let connects = (0..n).map(|_| async {
            let connect = TcpStream::connect(("127.0.0.1", PORT));
            let mut s = tokio::time::timeout(Duration::from_secs(1), connect)
                .await
                .ok()?
                .ok()?;
            s.write_all(b"GET /v2/health/ready HT").await.ok()?;
            Some(s)
        });
        for s in futures::future::join_all(connects).await {
            match s {
                Some(s) => held.push(s),
                None => refused += 1,
            }
        }
    }
    (held, refused)
}

/// How many of `held` the server let go of: an answer (a 408), an end of stream or a reset.
async fn closed_by_the_server(held: &mut [TcpStream]) -> usize {
    let mut closed = 0usize;
    for s in held {
        let mut buf = [0u8; 512];
        if tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf))
            .await
            .is_ok()
        {
            closed += 1;
        }
    }
    closed
}

#[tokio::main]
async fn main() -> Result<()> {
    let bin =
        std::env::var("MODEL_SERVER_BIN").context("MODEL_SERVER_BIN: the model-server binary")?;
    let count: usize = env_or("HALFOPEN_CONNECTIONS", 10_000).min(60_000);
    let work = TempDir::new("halfopen");
    let args = [
        "serve",
        "--port",
        &PORT.to_string(),
        "--grpc-port",
        &GRPC_PORT.to_string(),
    ]
    .map(String::from);
    let log = work.0.join("server.log");
    let mut server = Server::start("model-server", Path::new(&bin), &args, None, None, &log)?;
    let ready = format!("http://127.0.0.1:{PORT}/v2/health/ready");
    server
        .wait_ready(&e2e::bench::http_client(), &ready, Duration::from_secs(60))
        .await?;
    let (idle, _) = timed_predictions(50).await;
    let before = server.rss_kib()?;
    println!(
        "halfopen: idle server {before} KiB resident; /predict_iris p50 {} max {}",
        ms(idle.get(idle.len() / 2)),
        ms(idle.last())
    );
    let t0 = Instant::now();
    let (mut held, refused) = open_half(count).await;
    println!(
        "halfopen: {} connections opened with half a request ({refused} not opened) in {:.1} s",
        held.len(),
        t0.elapsed().as_secs_f64()
    );
    let mut peak = before;
    for _ in 0..5 {
        peak = peak.max(server.rss_kib()?);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (loaded, failed) = timed_predictions(50).await;
    peak = peak.max(server.rss_kib()?);
    println!(
        "halfopen: while held: peak {peak} KiB resident ({:.1} MiB); /predict_iris p50 {} max {} ({failed} of 50 failed)",
        peak as f64 / 1024.0,
        ms(loaded.get(loaded.len() / 2)),
        ms(loaded.last())
    );
    // How many the server closed within its header-read timeout (default 10 s) plus slack.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let closed = closed_by_the_server(&mut held).await;
    println!(
        "halfopen: after 12 s, {closed} of {} closed by the server; {} KiB resident",
        held.len(),
        server.rss_kib()?
    );
    drop(held);
    server.stop();
    Ok(())
}
