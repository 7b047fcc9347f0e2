//! `kubectl port-forward` to a Service or pod, as the README tells users to query a model.
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `kubectl port-forward`; the process is killed on drop.
pub struct PortForward {
    child: Child,
    /// The local port on 127.0.0.1.
    pub port: u16,
}

impl PortForward {
    /// Starts `kubectl port-forward -n NS TARGET :REMOTE` (TARGET such as `svc/iris`) and waits
    /// until it listens, reading the local port kubectl chose from its output.
    pub fn start(ns: &str, target: &str, remote_port: u16) -> PortForward {
        let mut child = Command::new(super::kubectl::binary())
            .args(["port-forward", "-n", ns, target])
            .arg(format!(":{remote_port}"))
            .args(["--address", "127.0.0.1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start kubectl port-forward");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // "Forwarding from 127.0.0.1:41234 -> 5001"; keep draining afterwards so kubectl
            // never blocks on a full pipe ("Handling connection for ..." lines).
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(port) = parse_forwarding_line(&line) {
                        let _ = tx.send(port);
                        sent = true;
                    }
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(port) => PortForward { child, port },
            Err(_) => {
                let _ = child.kill();
                panic!("kubectl port-forward -n {ns} {target} did not start listening within 30 s")
            }
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_forwarding_line(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("Forwarding from 127.0.0.1:")?;
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_forwarding_line;

    #[test]
    fn reads_the_local_port_from_kubectl_output() {
        assert_eq!(
            parse_forwarding_line("Forwarding from 127.0.0.1:41234 -> 5001"),
            Some(41234)
        );
        assert_eq!(
            parse_forwarding_line("Forwarding from [::1]:41234 -> 5001"),
            None
        );
        assert_eq!(parse_forwarding_line("Handling connection for 41234"), None);
    }
}
