//! The sampled request log through the real binary: `--log-format json` with
//! `--log-requests-per-second N` writes at most N lines a second, each one JSON object with the
//! model's namespace and name, the route template, the code and the latency, and never the
//! path's values, the query string, a header or the body.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const TOKEN: &str = "tok-3f9a1c-never-logged";
const QUERY: &str = "q-7b2e-never-logged";
const BODY_MARK: &str = "5.123456789";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(port: u16, per_second: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_model-server"))
        .arg("serve")
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--grpc-port",
            "0",
        ])
        .args([
            "--log-format",
            "json",
            "--log-requests-per-second",
            per_second,
        ])
        .env("MODEL_NAMESPACE", "team-a")
        .env("MODEL_NAME", "iris-prod")
        .env("RUST_LOG", "info")
        .env_remove("MODEL_SERVER_AUTH_TOKENS_FILE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// One HTTP/1.1 request on its own connection; the status code.
fn request(port: u16, method: &str, path: &str, body: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while request(port, "GET", "/v2/health/live", "").is_none() {
        assert!(
            Instant::now() < deadline,
            "the server did not listen within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop(mut child: Child) -> String {
    // SIGTERM: a graceful stop flushes the log.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

fn request_lines(log: &str) -> Vec<Value> {
    log.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|v| v["target"] == "model_server::request")
        .collect()
}

#[test]
fn sampled_request_lines_carry_the_model_route_code_and_latency_and_no_secret() {
    let port = free_port();
    let child = start(port, "3");
    wait_listening(port);
    let body = format!("{{\"features\": [{BODY_MARK}, 3.5, 1.4, 0.2]}}");
    let mut codes = Vec::new();
    for _ in 0..10 {
        codes.push(request(
            port,
            "POST",
            &format!("/predict_iris?debug={QUERY}"),
            &body,
        ));
        codes.push(request(
            port,
            "POST",
            "/v2/models/iris-prod/infer",
            "{\"inputs\": 1}",
        ));
    }
    let log = stop(child);
    assert!(
        codes.iter().all(|c| c.is_some()),
        "every request answered: {codes:?}"
    );

    let lines = request_lines(&log);
    // The bucket holds one second's worth; the 21 requests (with the first health check) take
    // well under a second, so at most 3 lines, plus 3 a second if the machine is slow.
    assert!(!lines.is_empty(), "no request line in:\n{log}");
    assert!(
        lines.len() <= 6,
        "{} lines for a rate of 3/s:\n{log}",
        lines.len()
    );
    for line in &lines {
        assert_eq!(line["level"], "INFO", "{line}");
        assert_eq!(line["namespace"], "team-a", "{line}");
        assert_eq!(line["name"], "iris-prod", "{line}");
        let route = line["route"]
            .as_str()
            .unwrap_or_else(|| panic!("no route: {line}"));
        assert!(
            [
                "/v2/health/live",
                "/predict_iris",
                "/v2/models/{name}/infer"
            ]
            .contains(&route),
            "the route is the template: {line}"
        );
        assert!(
            line["code"]
                .as_u64()
                .is_some_and(|c| (200..600).contains(&c)),
            "{line}"
        );
        assert!(
            line["latency_ms"].as_f64().is_some_and(|l| l >= 0.0),
            "{line}"
        );
    }
    for secret in [TOKEN, QUERY, BODY_MARK, "iris-prod/infer", "Bearer"] {
        assert!(!log.contains(secret), "{secret:?} is in the log:\n{log}");
    }
}

#[test]
fn no_request_is_logged_by_default() {
    let port = free_port();
    let child = start(port, "0");
    wait_listening(port);
    for _ in 0..5 {
        assert_eq!(
            request(
                port,
                "POST",
                "/predict_iris",
                "{\"features\": [5.1, 3.5, 1.4, 0.2]}"
            ),
            Some(200)
        );
    }
    let log = stop(child);
    assert!(
        request_lines(&log).is_empty(),
        "request lines with the rate 0:\n{log}"
    );
    assert!(
        log.contains("\"message\":\"ready\""),
        "the server logged its start:\n{log}"
    );
}
