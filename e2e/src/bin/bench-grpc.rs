//! OIP v2 gRPC (bench/grpc.sh, `make bench`): single-row ModelInfer with ghz against our
//! model server and against MLServer (scikit-learn runtime, the same Iris LogisticRegression)
//! as the peer, plus the single-row OIP REST figure of each (wrk), so both the ours/MLServer and
//! the gRPC/REST ratios come out of one run. Loopback only, every run bounded in time.
//!
//! Load: ghz --concurrency 64 --connections 4 (CONCURRENCY, GRPC_CONNECTIONS), ModelInfer with
//! one FP32 [1,4] row as typed contents, the proto model-server/proto/open_inference_grpc.proto;
//! wrk -t2 -c64 POST /v2/models/iris/infer with the same row as JSON. From the environment:
//! GHZ (the ghz binary) and MLS_VENV (MLServer's venv), given by bench/grpc.sh; DURATION (15),
//! WARMUP (2), THREADS, CONNECTIONS, WORKERS, MLS_PARALLEL_WORKERS, READY_TIMEOUT (120 s),
//! SPLIT_CORES=1 (servers on CPU 0 with one worker, load on CPU 1), SKIP_OURS=1 or
//! SKIP_MLSERVER=1 (one side only), PORT/GRPC_PORT (5099/5098), MLS_HTTP_PORT/MLS_GRPC_PORT/
//! MLS_METRICS_PORT (5097/5096/5095), BINARY.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use e2e::bench::load::{Ghz, Run, Wrk};
use e2e::bench::server::{ensure_free, model_server_copy, Server};
use e2e::bench::{env_flag, env_or, load_average, print_header};
use e2e::cluster::repo_root;
use e2e::tls::TempDir;
use serde_json::json;

/// The row, as f64 so that JSON carries it as written (5.1, not 5.099999904632568).
const ROW: [f64; 4] = [5.1, 3.5, 1.4, 0.2];

struct Bench {
    wrk: Wrk,
    ghz: Ghz,
    warmup: u64,
    seconds: u64,
    ready: Duration,
    pin: Option<usize>,
    rest_body: PathBuf,
    work: TempDir,
    results: Vec<(&'static str, Run)>,
}

impl Bench {
    fn grpc_body() -> String {
        json!({"model_name": "iris", "inputs": [{"name": "input-0", "datatype": "FP32",
            "shape": [1, 4], "contents": {"fp32_contents": ROW}}]})
        .to_string()
    }

    /// A warm-up, then one measured wrk run on `url`.
    fn rest(&mut self, name: &'static str, url: &str) -> Result<()> {
        eprintln!("wrk {name} ({url}, {}s)", self.seconds);
        Wrk {
            seconds: self.warmup,
            ..self.wrk.clone()
        }
        .output(url, Some(&self.rest_body), &[])?;
        let run = self.wrk.run(url, Some(&self.rest_body), &[])?;
        eprintln!("{name} {:.0} req/s, {} errors", run.rps, run.errors);
        self.results.push((name, run));
        Ok(())
    }

    /// A warm-up, then one measured ghz run on `addr`.
    fn grpc(&mut self, name: &'static str, addr: &str) -> Result<()> {
        eprintln!("ghz {name} ({addr}, {}s)", self.seconds);
        let body = Self::grpc_body();
        let _ = self.ghz.run(addr, &body, self.warmup);
        let run = self.ghz.run(addr, &body, self.seconds)?;
        eprintln!("{name} {:.0} req/s, {} errors", run.rps, run.errors);
        self.results.push((name, run));
        Ok(())
    }

    async fn ours(&mut self, workers: usize) -> Result<()> {
        let (port, grpc_port): (u16, u16) = (env_or("PORT", 5099), env_or("GRPC_PORT", 5098));
        let (binary, built) = model_server_copy(&self.work.0)?;
        println!(
            "binary:   {} ({} bytes)",
            built.display(),
            std::fs::metadata(&binary)?.len()
        );
        ensure_free(&[port, grpc_port])?;
        let args: Vec<String> = ["serve", "--host", "127.0.0.1", "--port", &port.to_string()]
            .into_iter()
            .chain([
                "--worker-threads",
                &workers.to_string(),
                "--task",
                "multiclass",
            ])
            .chain(["--grpc-port", &grpc_port.to_string()])
            .map(String::from)
            .collect();
        let log = self.work.0.join("ours.log");
        let mut server = Server::start("model-server", &binary, &args, self.pin, None, &log)?;
        let url = format!("http://127.0.0.1:{port}/v2/models/iris");
        server
            .wait_ready(
                &e2e::bench::http_client(),
                &format!("{url}/ready"),
                self.ready,
            )
            .await?;
        self.rest("ours_rest", &format!("{url}/infer"))?;
        server.wait_port(grpc_port, self.ready).await?;
        self.grpc("ours_grpc", &format!("127.0.0.1:{grpc_port}"))?;
        server.stop();
        Ok(())
    }

    async fn mlserver(&mut self, venv: &Path) -> Result<String> {
        let python = venv.join("bin/python");
        let version = |pkgs: &str| -> String {
            let code = format!("import importlib.metadata as m; print(', '.join(f'{{p}} {{m.version(p)}}' for p in {pkgs}))");
            Command::new(&python)
                .args(["-c", &code])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        };
        let workers = std::env::var("MLS_PARALLEL_WORKERS")
            .ok()
            .filter(|w| !w.is_empty());
        println!(
            "mlserver: {}; default settings but host and ports{}",
            version("('mlserver', 'mlserver-sklearn', 'scikit-learn', 'uvloop')"),
            workers
                .as_ref()
                .map(|w| format!(", parallel_workers {w}"))
                .unwrap_or_default()
        );
        let dir = self.work.0.join("mlserver");
        std::fs::create_dir_all(&dir)?;
        let trained = Command::new(&python)
            .arg(repo_root().join("bench/mlserver/train_iris.py"))
            .arg(dir.join("iris"))
            .status()?;
        if !trained.success() {
            bail!("bench/mlserver/train_iris.py failed");
        }
        let (http, grpc, metrics): (u16, u16, u16) = (
            env_or("MLS_HTTP_PORT", 5097),
            env_or("MLS_GRPC_PORT", 5096),
            env_or("MLS_METRICS_PORT", 5095),
        );
        let mut settings = json!({"host": "127.0.0.1", "http_port": http, "grpc_port": grpc, "metrics_port": metrics, "debug": false});
        if let Some(w) = &workers {
            settings["parallel_workers"] =
                json!(w.parse::<u64>().context("MLS_PARALLEL_WORKERS")?);
        }
        std::fs::write(dir.join("settings.json"), settings.to_string())?;
        ensure_free(&[http, grpc, metrics])?;
        let log = self.work.0.join("mlserver.log");
        let mut server = Server::start(
            "MLServer",
            &venv.join("bin/mlserver"),
            &["start".into(), ".".into()],
            self.pin,
            Some(&dir),
            &log,
        )?;
        let url = format!("http://127.0.0.1:{http}/v2/models/iris");
        let client = e2e::bench::http_client();
        server
            .wait_ready(&client, &format!("{url}/ready"), self.ready)
            .await?;
        // Sanity: MLServer answers the REST body.
        let answer = client
            .post(format!("{url}/infer"))
            .header("content-type", "application/json")
            .body(std::fs::read(&self.rest_body)?)
            .send()
            .await?
            .text()
            .await?;
        eprintln!("{answer}");
        self.rest("mlserver_rest", &format!("{url}/infer"))?;
        server.wait_port(grpc, self.ready).await?;
        self.grpc("mlserver_grpc", &format!("127.0.0.1:{grpc}"))?;
        server.stop();
        Ok(version("('mlserver',)")
            .trim_start_matches("mlserver ")
            .to_string())
    }

    fn get(&self, name: &str) -> Option<&Run> {
        self.results
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| r)
    }

    fn ratio(&self, a: &str, b: &str) -> String {
        match (self.get(a), self.get(b)) {
            (Some(a), Some(b)) => format!("{:.2}x", a.rps / b.rps),
            _ => "n/a".into(),
        }
    }

    fn print(&self, mls_version: &str) {
        let (c, conns) = (self.ghz.concurrency, self.ghz.connections);
        let (t, wc) = (self.wrk.threads, self.wrk.connections);
        println!("\n| single-row OIP v2 infer, 127.0.0.1 | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|");
        for (name, label) in [
            (
                "ours_grpc",
                format!("model-server gRPC ModelInfer (ghz -c{c}, {conns} conns)"),
            ),
            (
                "ours_rest",
                format!("model-server REST /v2/models/iris/infer (wrk -t{t} -c{wc})"),
            ),
            (
                "mlserver_grpc",
                format!("MLServer {mls_version} gRPC ModelInfer (ghz -c{c}, {conns} conns)"),
            ),
            (
                "mlserver_rest",
                format!("MLServer REST /v2/models/iris/infer (wrk -t{t} -c{wc})"),
            ),
        ] {
            if let Some(r) = self.get(name) {
                println!(
                    "| {label} | {:.0} | {:.3} | {:.3} | {} |",
                    r.rps, r.p50_ms, r.p99_ms, r.errors
                );
            }
        }
        println!(
            "\nratios (req/s): ours/MLServer gRPC {}, ours/MLServer REST {}; gRPC/REST ours {}, MLServer {}",
            self.ratio("ours_grpc", "mlserver_grpc"),
            self.ratio("ours_rest", "mlserver_rest"),
            self.ratio("ours_grpc", "ours_rest"),
            self.ratio("mlserver_grpc", "mlserver_rest")
        );
        println!("load average after: {}", load_average());
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let split = env_flag("SPLIT_CORES");
    let seconds = env_or("DURATION", 15);
    let work = TempDir::new("bench-grpc");
    let rest =
        json!({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": ROW}]});
    let rest_body = PathBuf::from(work.write("rest.json", &rest.to_string()));
    let ghz = Ghz {
        binary: std::env::var_os("GHZ")
            .map(PathBuf::from)
            .context("GHZ: the ghz binary (bench/grpc.sh builds it)")?,
        proto: repo_root().join("model-server/proto/open_inference_grpc.proto"),
        concurrency: env_or("CONCURRENCY", 64),
        connections: env_or("GRPC_CONNECTIONS", 4),
        cpus: if split {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        },
        pin: split.then_some(1),
    };
    let wrk = Wrk {
        threads: if split { 1 } else { env_or("THREADS", 2) },
        connections: env_or("CONNECTIONS", 64),
        seconds,
        pin: split.then_some(1),
    };
    let mut b = Bench {
        wrk,
        ghz,
        warmup: env_or("WARMUP", 2),
        seconds,
        ready: Duration::from_secs(env_or("READY_TIMEOUT", 120)),
        pin: split.then_some(0),
        rest_body,
        work,
        results: Vec::new(),
    };
    print_header("OIP v2 gRPC benchmark (ours vs MLServer)");
    println!("ghz:      --concurrency {} --connections {} --cpus {}, {seconds}s (after {}s warm-up); proto: model-server/proto/open_inference_grpc.proto", b.ghz.concurrency, b.ghz.connections, b.ghz.cpus, b.warmup);
    println!(
        "wrk:      -t{} -c{} -d{seconds}s; split cores: {}",
        b.wrk.threads,
        b.wrk.connections,
        u8::from(split)
    );
    if !env_flag("SKIP_OURS") {
        b.ours(if split { 1 } else { env_or("WORKERS", 0) }).await?;
    }
    let mut mls_version = String::new();
    if !env_flag("SKIP_MLSERVER") {
        let venv = std::env::var_os("MLS_VENV")
            .map(PathBuf::from)
            .context("MLS_VENV: MLServer's venv (bench/grpc.sh makes it)")?;
        mls_version = b.mlserver(&venv).await?;
    }
    b.print(&mls_version);
    // Errors from our server fail the run; the peer's are reported in its row only.
    let errors: u64 = b
        .results
        .iter()
        .filter(|(n, _)| n.starts_with("ours_"))
        .map(|(_, r)| r.errors)
        .sum();
    if errors > 0 {
        bail!("error answers from model-server in the runs: {errors}");
    }
    Ok(())
}
