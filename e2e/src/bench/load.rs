//! The load generators and what their output says: wrk (HTTP/1.1, with
//! bench/model-server/post.lua to POST a body) and ghz (gRPC), each run bounded in time and
//! read into one [`Run`].
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// One measured run.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Answers that were not 2xx (or not OK), plus socket errors and timeouts.
    pub errors: u64,
    pub requests: u64,
    /// The server's CPU time per request, in microseconds, when measured.
    pub cpu_us: Option<f64>,
}

/// wrk's settings: threads, connections, seconds, the CPU it is pinned to.
#[derive(Clone, Debug)]
pub struct Wrk {
    pub threads: usize,
    pub connections: usize,
    pub seconds: u64,
    pub pin: Option<usize>,
}

/// The wrk script that POSTs $WRK_BODY_FILE as JSON and reports the non-2xx count.
pub fn post_lua() -> PathBuf {
    crate::cluster::repo_root().join("bench/model-server/post.lua")
}

impl Wrk {
    /// Runs wrk on `url` (POSTing `body` when given; `extra` are more wrk arguments such as
    /// headers) and returns its output; fails when wrk fails or outlives its time by a minute.
    pub fn output(&self, url: &str, body: Option<&Path>, extra: &[String]) -> Result<String> {
        let mut cmd = match self.pin {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string(), "timeout"]);
                c
            }
            None => Command::new("timeout"),
        };
        cmd.arg((self.seconds + 60).to_string()).arg("wrk").args([
            format!("-t{}", self.threads),
            format!("-c{}", self.connections),
            format!("-d{}s", self.seconds),
            "--timeout".into(),
            "10s".into(),
            "--latency".into(),
        ]);
        if let Some(body) = body {
            cmd.env("WRK_BODY_FILE", body).arg("-s").arg(post_lua());
        }
        let out = cmd.args(extra).arg(url).output().context("run wrk")?;
        if !out.status.success() {
            bail!("wrk {url}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A measured run: [`Wrk::output`] read by [`parse_wrk`].
    pub fn run(&self, url: &str, body: Option<&Path>, extra: &[String]) -> Result<Run> {
        let text = self.output(url, body, extra)?;
        parse_wrk(&text).with_context(|| format!("wrk's output for {url}:\n{text}"))
    }
}

/// A wrk duration ("812.00us", "1.43ms", "2.01s") in milliseconds.
fn wrk_ms(v: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60e3)
    } else {
        (v.strip_suffix('s')?, 1e3)
    };
    Some(number.parse::<f64>().ok()? * scale)
}

/// What wrk printed: the rate, the 50th and 99th percentiles (--latency), the non-2xx answers
/// (post.lua's `non-2xx: N` or wrk's own `Non-2xx or 3xx responses: N`) and socket errors.
pub fn parse_wrk(text: &str) -> Result<Run> {
    let after = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    };
    let percentile = |p: &str| -> Result<f64> {
        let v = after(p).with_context(|| format!("no {p} percentile"))?;
        wrk_ms(v).with_context(|| format!("a duration: {v}"))
    };
    let rps: f64 = after("Requests/sec:").context("no Requests/sec")?.parse()?;
    let requests: u64 = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .context("no request count")?
        .parse()?;
    let non_2xx = after("non-2xx:")
        .or_else(|| after("Non-2xx or 3xx responses:"))
        .map_or(Ok(0), str::parse::<u64>)?;
    // "Socket errors: connect 0, read 3, write 0, timeout 1"
    let socket: u64 = after("Socket errors:").map_or(0, |s| {
        s.split([',', ' '])
            .filter_map(|w| w.parse::<u64>().ok())
            .sum()
    });
    Ok(Run {
        rps,
        p50_ms: percentile("50%")?,
        p99_ms: percentile("99%")?,
        errors: non_2xx + socket,
        requests,
        cpu_us: None,
    })
}

/// ghz's settings for a single-row ModelInfer: concurrency, connections, CPUs, seconds.
#[derive(Clone, Debug)]
pub struct Ghz {
    pub binary: PathBuf,
    pub proto: PathBuf,
    pub concurrency: usize,
    pub connections: usize,
    pub cpus: usize,
    pub pin: Option<usize>,
}

impl Ghz {
    /// ModelInfer with `body` (JSON) on `addr` for `seconds`; the calls still in flight when
    /// the time is up are not counted (`--duration-stop ignore`).
    pub fn run(&self, addr: &str, body: &str, seconds: u64) -> Result<Run> {
        let mut cmd = match self.pin {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string(), "timeout"]);
                c
            }
            None => Command::new("timeout"),
        };
        let dir = self.proto.parent().context("the proto's directory")?;
        cmd.arg((seconds + 60).to_string())
            .arg(&self.binary)
            .args(["--insecure", "--proto"])
            .arg(&self.proto)
            .arg("--import-paths")
            .arg(dir)
            .args(["--call", "inference.GRPCInferenceService/ModelInfer"])
            .args(["--duration-stop", "ignore", "--format", "json", "-d", body])
            .args(["--concurrency", &self.concurrency.to_string()])
            .args(["--connections", &self.connections.to_string()])
            .args(["--cpus", &self.cpus.to_string()])
            .args(["--duration", &format!("{seconds}s"), addr]);
        let out = cmd.output().context("run ghz")?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!("ghz {addr}: {}{text}", String::from_utf8_lossy(&out.stderr));
        }
        parse_ghz(&serde_json::from_str(&text).context("ghz's JSON report")?)
    }
}

/// ghz's JSON report: the rate, the 50th and 99th percentiles, and every status but OK as an
/// error (a run in which no call completed counts as one error: it is not a figure).
pub fn parse_ghz(report: &Value) -> Result<Run> {
    let percentile = |p: u64| {
        report["latencyDistribution"]
            .as_array()
            .and_then(|d| d.iter().find(|e| e["percentage"].as_u64() == Some(p)))
            .and_then(|e| e["latency"].as_f64())
            .map_or(f64::NAN, |ns| ns / 1e6)
    };
    let count = report["count"]
        .as_u64()
        .context("no count in ghz's report")?;
    let mut errors: u64 = report["statusCodeDistribution"]
        .as_object()
        .map(|codes| {
            codes
                .iter()
                .filter(|(code, _)| code.as_str() != "OK")
                .filter_map(|(_, n)| n.as_u64())
                .sum()
        })
        .unwrap_or(0);
    if count == 0 {
        errors = errors.max(1);
    }
    Ok(Run {
        rps: report["rps"].as_f64().context("no rps in ghz's report")?,
        p50_ms: percentile(50),
        p99_ms: percentile(99),
        errors,
        requests: count,
        cpu_us: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const WRK: &str = "Running 10s test @ http://127.0.0.1:5099/predict_iris
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   741.25us  312.10us  12.01ms   88.12%
    Req/Sec    43.50k     2.10k   47.00k    71.00%
  Latency Distribution
     50%  690.00us
     75%  820.00us
     90%    1.01ms
     99%    1.43ms
  866012 requests in 10.00s, 98.26MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  86600.12
Transfer/sec:      9.83MB
non-2xx: 4
";

    #[test]
    fn wrk_output_gives_the_rate_the_percentiles_and_every_error() {
        let run = parse_wrk(WRK).unwrap();
        assert_eq!(run.rps, 86600.12);
        assert!((run.p50_ms - 0.69).abs() < 1e-9);
        assert!((run.p99_ms - 1.43).abs() < 1e-9);
        assert_eq!((run.errors, run.requests), (4 + 3, 866_012));
    }

    #[test]
    fn wrk_without_the_lua_count_reads_its_own_non_2xx_line_and_seconds() {
        let text = WRK
            .replace("non-2xx: 4\n", "  Non-2xx or 3xx responses: 9\n")
            .replace(
                "  Socket errors: connect 0, read 2, write 0, timeout 1\n",
                "",
            )
            .replace("1.43ms", "2.50s");
        let run = parse_wrk(&text).unwrap();
        assert_eq!(run.errors, 9);
        assert_eq!(run.p99_ms, 2500.0);
    }

    #[test]
    fn wrk_output_without_a_rate_is_an_error_not_a_zero() {
        assert!(parse_wrk("unable to connect to 127.0.0.1:5099 Connection refused").is_err());
    }

    #[test]
    fn ghz_report_counts_every_status_but_ok_as_errors() {
        let report = json!({"count": 1000, "rps": 12345.6,
            "latencyDistribution": [{"percentage": 50, "latency": 1_500_000},
                                    {"percentage": 99, "latency": 4_000_000}],
            "statusCodeDistribution": {"OK": 990, "Unavailable": 10}});
        let run = parse_ghz(&report).unwrap();
        assert_eq!((run.rps, run.p50_ms, run.p99_ms), (12345.6, 1.5, 4.0));
        assert_eq!((run.errors, run.requests), (10, 1000));
    }

    #[test]
    fn a_ghz_run_in_which_nothing_completed_is_an_error() {
        let run = parse_ghz(&json!({"count": 0, "rps": 0.0})).unwrap();
        assert_eq!(run.errors, 1);
        assert!(run.p50_ms.is_nan());
    }
}
