//! The security flags through the real binary and its environment variables: what a
//! misconfigured pod would print before serving anything.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn serve(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_model-server"));
    cmd.arg("serve")
        .args(["--host", "127.0.0.1", "--port", "0", "--grpc-port", "0"])
        .args(args)
        .env("RUST_LOG", "error");
    for (k, v) in env {
        cmd.env(k, v);
    }
    for k in [
        "MODEL_SERVER_TLS_CERT_FILE",
        "MODEL_SERVER_TLS_KEY_FILE",
        "MODEL_SERVER_AUTH_TOKENS_FILE",
        "MODEL_SERVER_AUTH_METRICS",
    ] {
        if !env.iter().any(|(name, _)| *name == k) {
            cmd.env_remove(k);
        }
    }
    // A server that starts after all would never exit: give it 30 s, then kill it.
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

fn refused(out: &Output) -> String {
    assert!(!out.status.success(), "the server started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_certificate_without_a_key_is_refused_by_flag_or_by_env() {
    let e = refused(&serve(&[], &["--tls-cert", "/nonexistent/tls.crt"]));
    assert!(e.contains("--tls-key"), "{e}");
    let e = refused(&serve(
        &[("MODEL_SERVER_TLS_KEY_FILE", "/nonexistent/tls.key")],
        &[],
    ));
    assert!(e.contains("--tls-cert"), "{e}");
}

#[test]
fn unreadable_files_are_named() {
    let e = refused(&serve(
        &[
            ("MODEL_SERVER_TLS_CERT_FILE", "/nonexistent/tls.crt"),
            ("MODEL_SERVER_TLS_KEY_FILE", "/nonexistent/tls.key"),
        ],
        &[],
    ));
    assert!(
        e.contains("cannot read certificate /nonexistent/tls.crt"),
        "{e}"
    );
    let e = refused(&serve(
        &[("MODEL_SERVER_AUTH_TOKENS_FILE", "/nonexistent/tokens")],
        &[],
    ));
    assert!(
        e.contains("cannot read the tokens file /nonexistent/tokens"),
        "{e}"
    );
}

#[test]
fn auth_metrics_needs_tokens() {
    let e = refused(&serve(&[("MODEL_SERVER_AUTH_METRICS", "true")], &[]));
    assert!(e.contains("--auth-metrics needs --auth-tokens"), "{e}");
}
