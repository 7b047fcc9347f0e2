//! Half-open connections against one model server on loopback (`make bench`, issue "Tenants"):
//! starts `model-server serve` (MODEL_SERVER_BIN), opens HALFOPEN_CONNECTIONS (default 10,000)
//! TCP connections that each send half a request line and stop, and while they are held
//! samples the server's resident memory (/proc/PID/status VmRSS) and times normal
//! `/predict_iris` requests on fresh connections. Prints one line per figure; bounded in count
//! and time (every wait has a deadline), loopback only.
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Command;

const PORT: u16 = 15_801;
const GRPC_PORT: u16 = 15_802;
const PREDICT: &str =
    "POST /predict_iris HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
    content-length: 30\r\nconnection: close\r\n\r\n{\"features\":[5.1,3.5,1.4,0.2]}";

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

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

#[tokio::main]
async fn main() -> Result<()> {
    let bin =
        std::env::var("MODEL_SERVER_BIN").context("MODEL_SERVER_BIN: the model-server binary")?;
    let count: usize = std::env::var("HALFOPEN_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
        .min(60_000);
    let mut server = Command::new(&bin)
        .args([
            "serve",
            "--port",
            &PORT.to_string(),
            "--grpc-port",
            &GRPC_PORT.to_string(),
        ])
        .kill_on_drop(true)
        .spawn()
        .context("start the model server")?;
    let pid = server.id().context("server pid")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(
        tokio::time::timeout(Duration::from_secs(2), predict()).await,
        Ok(Ok(_))
    ) {
        if Instant::now() > deadline {
            bail!("the model server did not answer within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (idle, _) = timed_predictions(50).await;
    let before = rss_kib(pid)?;
    println!(
        "halfopen: idle server {before} KiB resident; /predict_iris p50 {} max {}",
        ms(idle.get(idle.len() / 2)),
        ms(idle.last())
    );

    // The connections: half a request line each, then nothing. Connects past the server's
    // connection cap wait in the kernel's backlog (or are refused when it is full): counted.
    let t0 = Instant::now();
    let mut held = Vec::with_capacity(count);
    let mut refused = 0usize;
    // In batches of 1,000 at once, each connect bounded by 1 s.
    for batch in 0..count.div_ceil(1_000) {
        let n = (count - batch * 1_000).min(1_000);
        let connects = (0..n).map(|_| async {
            let mut s = tokio::time::timeout(
                Duration::from_secs(1),
                TcpStream::connect(("127.0.0.1", PORT)),
            )
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
    println!(
        "halfopen: {} connections opened with half a request ({refused} not opened) in {:.1} s",
        held.len(),
        t0.elapsed().as_secs_f64()
    );
    let mut peak = before;
    for _ in 0..5 {
        peak = peak.max(rss_kib(pid)?);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (loaded, failed) = timed_predictions(50).await;
    peak = peak.max(rss_kib(pid)?);
    println!(
        "halfopen: while held: peak {peak} KiB resident ({:.1} MiB); /predict_iris p50 {} max {} ({failed} of 50 failed)",
        peak as f64 / 1024.0,
        ms(loaded.get(loaded.len() / 2)),
        ms(loaded.last())
    );
    // How many the server closed within its header-read timeout (default 10 s) plus slack.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let mut closed = 0usize;
    for s in &mut held {
        let mut buf = [0u8; 512];
        // An answer (a 408) or an end of stream or a reset: the server let go of it.
        if tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf))
            .await
            .is_ok()
        {
            closed += 1;
        }
    }
    println!(
        "halfopen: after 12 s, {closed} of {} closed by the server; {} KiB resident",
        held.len(),
        rss_kib(pid)?
    );
    drop(held);
    server.kill().await.ok();
    Ok(())
}
