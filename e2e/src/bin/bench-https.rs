//! HTTPS against plain HTTP, in the same run, on loopback only, every run bounded
//! (bench/https.sh, `make bench`):
//! - POST /predict_iris single row over keep-alive connections (wrk -t2 -c64): plain HTTP,
//!   HTTPS, and HTTPS with a bearer token (--auth-tokens);
//! - new connections: wrk with `Connection: close` (one TCP connection, and one full TLS
//!   handshake, per request) on GET /v2/health/live, plain and HTTPS;
//! - sequential full handshakes from one client: `openssl s_time -new`.
//!
//! The certificate is a throwaway ECDSA P-256 one made here (rcgen). Settings from the
//! environment: DURATION (s a wrk run, 10), ROUNDS (3: alternating rounds, the median run of
//! each counts), THREADS (2), CONNECTIONS (64), WORKERS (0 = one per CPU), HANDSHAKE_SECONDS
//! (5), PORT (5199: plain; +1 HTTPS; +2 HTTPS with tokens), BINARY.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use e2e::bench::load::{Run, Wrk};
use e2e::bench::server::{ensure_free, model_server_copy, Server};
use e2e::bench::{env_or, median_by, print_header};
use e2e::tls::{https_client, Pki, TempDir};

/// The three servers (plain on PORT, HTTPS on PORT+1, HTTPS with a token on PORT+2) and what
/// the runs send them.
struct Bench {
    wrk: Wrk,
    port: u16,
    single: PathBuf,
    token: String,
    servers: Vec<Server>,
}

/// 128 bits from the kernel's random source, for the bench token.
fn rand_u128() -> u128 {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    u128::from_le_bytes(bytes)
}

/// Starts the three servers; returns them and the token of the third.
fn spawn(binary: &Path, work: &TempDir, pki: &Pki, port: u16) -> Result<(Vec<Server>, String)> {
    let workers: usize = env_or("WORKERS", 0);
    let cert = work.write("tls.crt", &pki.cert_pem);
    let key = work.write("tls.key", &pki.key_pem);
    let token = format!("{:032x}{:032x}", rand_u128(), rand_u128());
    let tokens = work.write("tokens", &format!("# bench token\n{token}\n"));
    let tls = vec!["--tls-cert".into(), cert, "--tls-key".into(), key];
    let token_args = [tls.clone(), vec!["--auth-tokens".into(), tokens]].concat();
    let mut servers = Vec::new();
    for (i, extra) in [vec![], tls, token_args].into_iter().enumerate() {
        let p = (port + i as u16).to_string();
        let args = [
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            &p,
            "--grpc-port",
            "0",
        ]
        .into_iter()
        .chain(["--worker-threads", &workers.to_string()])
        .map(String::from)
        .chain(extra)
        .collect::<Vec<_>>();
        let log = work.0.join(format!("server{i}.log"));
        servers.push(Server::start(
            &format!("server {i}"),
            binary,
            &args,
            None,
            None,
            &log,
        )?);
    }
    Ok((servers, token))
}

/// Waits until the three answer, then checks that the TLS port refuses plain HTTP and that the
/// token is needed where it is set.
async fn check(servers: &mut [Server], pki: &Pki, port: u16) -> Result<()> {
    let plain = e2e::bench::http_client();
    let https = |p: u16| {
        https_client(
            &[&pki.ca],
            "localhost",
            SocketAddr::from(([127, 0, 0, 1], p)),
        )
    };
    for (i, server) in servers.iter_mut().enumerate() {
        let p = port + i as u16;
        let (client, url) = match i {
            0 => (
                plain.clone(),
                format!("http://127.0.0.1:{p}/v2/health/ready"),
            ),
            _ => (https(p), format!("https://localhost:{p}/v2/health/ready")),
        };
        server
            .wait_ready(&client, &url, Duration::from_secs(10))
            .await?;
    }
    let on_tls_port = format!("http://127.0.0.1:{}/v2/health/ready", port + 1);
    if plain
        .get(on_tls_port)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        bail!("plain HTTP was answered on the TLS port");
    }
    let url = format!("https://localhost:{}/v2", port + 2);
    let code = https(port + 2).get(url).send().await?.status();
    if code != reqwest::StatusCode::UNAUTHORIZED {
        bail!("expected 401 without a token, got {code}");
    }
    Ok(())
}

impl Bench {
    /// One wrk run against server `i` (on `route`, POSTing the row when `post`), with the
    /// server's CPU time per request.
    fn run(&self, name: &str, i: usize, route: &str, post: bool, extra: &[String]) -> Result<Run> {
        let scheme = if i == 0 { "http" } else { "https" };
        let url = format!("{scheme}://127.0.0.1:{}{route}", self.port + i as u16);
        eprintln!("wrk {name} ({url}, {}s)", self.wrk.seconds);
        let cpu0 = self.servers[i].cpu_seconds()?;
        let mut run = self
            .wrk
            .run(&url, post.then_some(self.single.as_path()), extra)?;
        let cpu = self.servers[i].cpu_seconds()? - cpu0;
        run.cpu_us = Some(cpu * 1e6 / run.requests.max(1) as f64);
        eprintln!(
            "{name} {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, {} errors",
            run.rps, run.p50_ms, run.p99_ms, run.errors
        );
        Ok(run)
    }
}

/// Full handshakes a wall-clock second from one client (`openssl s_time -new`), or "?".
fn s_time(port: u16, seconds: u64) -> String {
    let t0 = Instant::now();
    let out = Command::new("timeout")
        .arg((seconds + 10).to_string())
        .args([
            "openssl",
            "s_time",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-new",
        ])
        .args(["-time", &seconds.to_string()])
        .stdin(Stdio::null())
        .output();
    let took = t0.elapsed().as_secs_f64();
    let count = out.ok().and_then(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .find(|l| l.contains("connections in") && l.contains("real seconds"))
            .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
    });
    count.map_or("?".into(), |n| format!("{:.0}", n / took))
}

fn row(label: &str, runs: &[Run]) -> Result<String> {
    let r = median_by(runs, |r| r.rps).with_context(|| format!("no run of {label}"))?;
    let cpu = r.cpu_us.unwrap_or(f64::NAN);
    Ok(format!(
        "| {label} | {:.0} req/s | {:.2} ms / {:.2} ms | {cpu:.2} us | {} |",
        r.rps, r.p50_ms, r.p99_ms, r.errors
    ))
}

/// Every run, then the table.
fn runs_and_table(b: &Bench, rounds: usize) -> Result<()> {
    // Warm-up, not measured.
    let warm_up = Wrk {
        seconds: 1,
        ..b.wrk.clone()
    };
    let https = format!("https://127.0.0.1:{}/predict_iris", b.port + 1);
    warm_up.output(&https, Some(&b.single), &[])?;
    let auth = [
        "-H".to_string(),
        format!("Authorization: Bearer {}", b.token),
    ];
    let close = ["-H".to_string(), "Connection: close".to_string()];
    let (mut p, mut h, mut t) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        p.push(b.run("plain", 0, "/predict_iris", true, &[])?);
        h.push(b.run("https", 1, "/predict_iris", true, &[])?);
        t.push(b.run("https_token", 2, "/predict_iris", true, &auth)?);
    }
    let plain_new = b.run("plain_new_conn", 0, "/v2/health/live", false, &close)?;
    let https_new = b.run("https_new_conn", 1, "/v2/health/live", false, &close)?;
    let handshake_seconds = env_or("HANDSHAKE_SECONDS", 5);
    eprintln!("openssl s_time -new ({handshake_seconds}s)");
    let handshakes = s_time(b.port + 1, handshake_seconds);
    let all = |runs: &[Run]| {
        runs.iter()
            .map(|r| format!("{:.0}", r.rps))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "runs (req/s): plain [{}], https [{}], https_token [{}]\n",
        all(&p),
        all(&h),
        all(&t)
    );
    println!("| measure (median of {rounds} for keep-alive) | throughput | p50 / p99 | server CPU per request | errors |");
    println!("|---|---|---|---|---|");
    println!("{}", row("POST /predict_iris, plain HTTP, keep-alive", &p)?);
    println!("{}", row("POST /predict_iris, HTTPS, keep-alive", &h)?);
    println!(
        "{}",
        row("POST /predict_iris, HTTPS + bearer token, keep-alive", &t)?
    );
    println!(
        "{}",
        row(
            "GET /v2/health/live, plain HTTP, new connection per request",
            &[plain_new]
        )?
    );
    println!(
        "{}",
        row(
            "GET /v2/health/live, HTTPS, new connection (full handshake) per request",
            &[https_new]
        )?
    );
    let rps = |runs: &[Run]| median_by(runs, |r| r.rps).map_or(f64::NAN, |r| r.rps);
    let (https_share, token_share) = (rps(&h) / rps(&p) * 100.0, rps(&t) / rps(&h) * 100.0);
    println!(
        "\nHTTPS keep-alive / plain: {https_share:.1}%; with token / without: {token_share:.1}%"
    );
    println!("openssl s_time -new, one client, sequential: {handshakes} full handshakes/s");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let port: u16 = env_or("PORT", 5199);
    let wrk = Wrk {
        threads: env_or("THREADS", 2),
        connections: env_or("CONNECTIONS", 64),
        seconds: env_or("DURATION", 10),
        pin: None,
    };
    let work = TempDir::new("bench-https");
    let (binary, built) = model_server_copy(&work.0)?;
    ensure_free(&[port, port + 1, port + 2])?;
    let pki = Pki::new("bench", &["localhost".into(), "127.0.0.1".into()]);
    let (mut servers, token) = spawn(&binary, &work, &pki, port)?;
    check(&mut servers, &pki, port).await?;
    let single = PathBuf::from(work.write("single.json", r#"{"features":[5.1,3.5,1.4,0.2]}"#));
    let openssl = Command::new("openssl").arg("version").output();
    let openssl = openssl.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    print_header("model-server HTTPS benchmark");
    println!("binary:   {}", built.display());
    println!(
        "wrk:      -t{} -c{} -d{}s; server workers: {} (0 = per CPU); {}",
        wrk.threads,
        wrk.connections,
        wrk.seconds,
        env_or::<usize>("WORKERS", 0),
        openssl.unwrap_or_default()
    );
    let b = Bench {
        wrk,
        port,
        single,
        token,
        servers,
    };
    runs_and_table(&b, env_or("ROUNDS", 3))
}
