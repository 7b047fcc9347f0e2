//! A server under measure, started on this machine: our model server (a private copy of the
//! built binary, so a concurrent build cannot swap it mid-run) or a peer (MLServer), in a
//! process group of its own (so stopping it ends its workers too), optionally pinned to a CPU.
use std::fs::File;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running server; stopped (its whole process group) when dropped.
pub struct Server {
    child: Child,
    pid: u32,
    name: String,
    log: PathBuf,
}

impl Server {
    /// Starts `program args` as `name`, in `cwd` when given, pinned to CPU `pin` when given
    /// (taskset), with RUST_LOG=warn, its output in `log`.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[String],
        pin: Option<usize>,
        cwd: Option<&Path>,
        log: &Path,
    ) -> Result<Server> {
        let mut cmd = match pin {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args).env("RUST_LOG", "warn").process_group(0);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let out = File::create(log).with_context(|| format!("create {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("start {name} ({})", program.display()))?;
        Ok(Server {
            pid: child.id(),
            child,
            name: name.to_string(),
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The last `lines` lines of the server's output (for a failure's message).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Polls `url` with `client` until it answers 2xx, at most `timeout`; fails (with the
    /// server's last output) when the server exits first.
    pub async fn wait_ready(
        &mut self,
        client: &reqwest::Client,
        url: &str,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let answer = client.get(url).timeout(Duration::from_secs(2)).send().await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if self.exited() {
                bail!(
                    "{} exited before {url} answered:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "{}: {url} not ready within {timeout:?}:\n{}",
            self.name,
            self.log_tail(40)
        )
    }

    /// Waits until 127.0.0.1:`port` accepts TCP connections (a gRPC listener may come up after
    /// the REST one), at most `timeout`.
    pub async fn wait_port(&mut self, port: u16, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            if self.exited() {
                bail!(
                    "{} exited before port {port} listened:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!(
            "{}: nothing listens on 127.0.0.1:{port} within {timeout:?}",
            self.name
        )
    }

    /// CPU time the server used so far (user + system), in seconds.
    pub fn cpu_seconds(&self) -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        // The fields after the command (in parentheses): utime is the 14th field, stime the
        // 15th, in clock ticks.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .context("a /proc stat line")?
            .1
            .split_whitespace()
            .collect();
        let ticks = |i: usize| -> Result<f64> {
            Ok(fields.get(i).context("a stat field")?.parse::<f64>()?)
        };
        Ok((ticks(11)? + ticks(12)?) / clock_ticks())
    }

    /// The server's resident memory (VmRSS) in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmRSS")
    }

    /// SIGTERM to the server's process group, up to 30 s for it to exit, then SIGKILL.
    pub fn stop(&mut self) {
        if self.exited() {
            return;
        }
        signal_group(self.pid, "-TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        signal_group(self.pid, "-KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// Clock ticks a second (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The model-server binary to measure: $BINARY, or the static release build
/// (`$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/model-server`, what bench/lib.sh
/// builds), copied into `work`. Returns (the copy, the path it came from).
pub fn model_server_copy(work: &Path) -> Result<(PathBuf, PathBuf)> {
    let built = match std::env::var_os("BINARY").filter(|b| !b.is_empty()) {
        Some(b) => PathBuf::from(b),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| crate::cluster::repo_root().join("target"), PathBuf::from);
            target.join("x86_64-unknown-linux-gnu/release/model-server")
        }
    };
    let copy = work.join("model-server");
    std::fs::copy(&built, &copy)
        .with_context(|| format!("no model-server binary at {}", built.display()))?;
    Ok((copy, built))
}

/// Fails when something already listens on one of `ports` (a leftover server would be
/// measured instead).
pub fn ensure_free(ports: &[u16]) -> Result<()> {
    for port in ports {
        if TcpStream::connect(("127.0.0.1", *port)).is_ok() {
            bail!("port {port} on 127.0.0.1 is in use (a leftover server?): stop it or set the *PORT variables");
        }
    }
    Ok(())
}
