//! The connection bounds over real loopback sockets, with short timeouts.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::{timeout, Instant};

use super::ConnLimits;
use crate::model::{train, TrainingParams};
use crate::security::Security;
use crate::server::{serve_grpc_until, serve_until, ShutdownTiming};
use crate::state::{AppState, Limits};

/// Upper bound of every wait: a test that would hang fails instead.
const LIMIT: Duration = Duration::from_secs(10);
const LONG: Duration = Duration::from_secs(30);

struct Running {
    addr: SocketAddr,
    state: AppState,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        timeout(LIMIT, self.server).await.unwrap().unwrap().unwrap();
    }
}

fn limits(conn: ConnLimits) -> Limits {
    Limits {
        request_timeout: LONG,
        conn,
        ..Limits::default()
    }
}

fn long_conn() -> ConnLimits {
    ConnLimits {
        header_read_timeout: LONG,
        idle_timeout: LONG,
        ..ConnLimits::default()
    }
}

async fn start(limits: Limits, grpc: bool) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(
        "iris",
        train(&TrainingParams::default()).unwrap(),
        "builtin",
        limits,
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let timing = ShutdownTiming {
        delay: Duration::ZERO,
        grace: Duration::from_secs(2),
    };
    let stopped = async move {
        let _ = stopped.await;
    };
    let server = if grpc {
        tokio::spawn(serve_grpc_until(
            listener,
            state.clone(),
            Security::default(),
            timing,
            stopped,
            std::future::pending(),
        ))
    } else {
        tokio::spawn(serve_until(
            listener,
            state.clone(),
            Security::default(),
            timing,
            stopped,
            std::future::pending(),
        ))
    };
    Running {
        addr,
        state,
        stop,
        server,
    }
}

/// Sends a complete request and reads the whole answer (`connection: close`).
async fn get(addr: SocketAddr, path: &str) -> String {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    conn.write_all(head.as_bytes()).await.unwrap();
    read_all(&mut conn).await
}

async fn read_all(conn: &mut TcpStream) -> String {
    let mut out = Vec::new();
    timeout(LIMIT, conn.read_to_end(&mut out))
        .await
        .expect("the server closed the connection in time")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits until the server closes `conn` (EOF or reset), returning when that happened.
async fn closed_by_server(conn: &mut TcpStream) -> Instant {
    let mut buf = [0u8; 1024];
    timeout(LIMIT, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closed the connection in time")
}

/// Waits (at most [`LIMIT`]) for `condition`.
async fn until(condition: impl Fn() -> bool, what: &str) {
    timeout(LIMIT, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting: {what}"));
}

/// Slow loris: connections that send half a request line and stop are closed after the
/// header-read timeout, not before, and complete requests are answered meanwhile.
#[tokio::test]
async fn half_requests_are_closed_after_the_header_read_timeout() {
    let header = Duration::from_millis(300);
    let server = start(
        limits(ConnLimits {
            header_read_timeout: header,
            ..long_conn()
        }),
        false,
    )
    .await;
    let started = Instant::now();
    let mut lorises = Vec::new();
    for _ in 0..50 {
        let mut conn = TcpStream::connect(server.addr).await.unwrap();
        conn.write_all(b"GET /v2/health/ready HT").await.unwrap();
        lorises.push(conn);
    }
    let answer = get(server.addr, "/v2/health/ready").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    for conn in &mut lorises {
        let closed = closed_by_server(conn).await;
        assert!(
            closed - started >= header - Duration::from_millis(50),
            "closed after {:?}, before the header-read timeout",
            closed - started
        );
    }
    // Their permits came back.
    until(|| server.state.http_gate().open() == 0, "all closed").await;
    server.stop().await;
}

/// An HTTP/1 keep-alive connection waiting for its next request is bounded by the same
/// timer; one that sends nothing at all (protocol detection) by the idle timeout.
#[tokio::test]
async fn idle_and_silent_connections_are_closed() {
    let server = start(
        limits(ConnLimits {
            header_read_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(1500),
            ..ConnLimits::default()
        }),
        false,
    )
    .await;
    let mut keep_alive = TcpStream::connect(server.addr).await.unwrap();
    keep_alive
        .write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    keep_alive.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    let answered = Instant::now();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    let closed = closed_by_server(&mut keep_alive).await - answered;
    assert!(
        closed >= Duration::from_millis(250) && closed < Duration::from_millis(1200),
        "keep-alive connection closed {closed:?} after its answer, not after the header-read timeout"
    );
    let closed = closed_by_server(&mut silent).await;
    assert!(
        closed - started >= Duration::from_millis(1450),
        "silent connection closed after {:?}, before the idle timeout",
        closed - started
    );
    server.stop().await;
}

/// Sends a keep-alive request on `conn` and reads the start of its answer.
async fn ask(conn: &mut TcpStream, path: &str) -> String {
    let head = format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n");
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = timeout(LIMIT, conn.read(&mut buf)).await.unwrap().unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// With a cap of 4 and 4 open connections that have been answered (and so are never shed),
/// a 5th is accepted by the kernel but not served until one of the 4 closes.
#[tokio::test]
async fn the_connection_cap_holds() {
    let server = start(
        limits(ConnLimits {
            max_connections: 4,
            ..long_conn()
        }),
        false,
    )
    .await;
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut conn = TcpStream::connect(server.addr).await.unwrap();
        let answer = ask(&mut conn, "/v2/health/live").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        open.push(conn);
    }
    until(
        || server.state.http_gate().open() == 4,
        "4 connections accepted",
    )
    .await;

    let mut fifth = TcpStream::connect(server.addr).await.unwrap();
    fifth
        .write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    let early = timeout(Duration::from_millis(300), fifth.read_exact(&mut buf)).await;
    assert!(early.is_err(), "the 5th connection was served over the cap");
    assert_eq!(server.state.http_gate().open(), 4);

    drop(open.pop());
    let answer = read_all(&mut fifth).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(open);
    until(
        || server.state.http_gate().open() == 0,
        "closed connections give their permits back",
    )
    .await;
    server.stop().await;
}

/// A request whose body never finishes arriving gets a 503 JSON error after the request
/// timeout; other requests are unaffected.
#[tokio::test]
async fn slow_requests_get_a_503_after_the_request_timeout() {
    let server = start(
        Limits {
            request_timeout: Duration::from_millis(300),
            conn: long_conn(),
            ..Limits::default()
        },
        false,
    )
    .await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(
        b"POST /predict_iris HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
          content-length: 100\r\n\r\n{\"features\":",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let answer = read_all(&mut slow).await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    let message = json["error"].as_str().unwrap();
    assert!(message.contains("request timeout of 300 ms"), "{message}");

    let answer = get(server.addr, "/v2/health/ready").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.stop().await;
}

/// gRPC port: a connection that sends half the HTTP/2 preface is closed after the idle
/// timeout, and the cap holds there too.
#[tokio::test]
async fn grpc_half_prefaces_are_closed_and_capped() {
    let server = start(
        limits(ConnLimits {
            idle_timeout: Duration::from_millis(600),
            max_connections: 2,
            ..long_conn()
        }),
        true,
    )
    .await;
    let started = Instant::now();
    let mut halves = Vec::new();
    for _ in 0..2 {
        let mut conn = TcpStream::connect(server.addr).await.unwrap();
        conn.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        halves.push(conn);
    }
    until(
        || server.state.grpc_gate().open() == 2,
        "2 connections accepted",
    )
    .await;
    // A third waits in the backlog: its preface is not answered while the two are open.
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 9];
    let early = timeout(Duration::from_millis(200), third.read_exact(&mut buf)).await;
    assert!(early.is_err(), "the 3rd connection was served over the cap");
    for conn in &mut halves {
        let closed = closed_by_server(conn).await;
        assert!(closed - started >= Duration::from_millis(550));
    }
    // Then the third is served: the server's SETTINGS frame (type 4) arrives.
    timeout(LIMIT, third.read_exact(&mut buf))
        .await
        .expect("3rd connection served once the others closed")
        .unwrap();
    assert_eq!(buf[3], 4, "{buf:?}");
    drop(third);
    until(|| server.state.grpc_gate().open() == 0, "permits back").await;
    server.stop().await;
}

/// At the cap, a new connection takes the place of the oldest one that never sent a whole
/// request head: with a cap of 2 held by two half requests (header-read timeout 30 s), a
/// third client is answered at once and the oldest half request is closed.
#[tokio::test]
async fn half_open_connections_make_room_at_the_cap() {
    let server = start(
        limits(ConnLimits {
            max_connections: 2,
            ..long_conn()
        }),
        false,
    )
    .await;
    let mut halves = Vec::new();
    for _ in 0..2 {
        let mut conn = TcpStream::connect(server.addr).await.unwrap();
        conn.write_all(b"GET /v2/health/ready HT").await.unwrap();
        halves.push(conn);
        until(
            || server.state.http_gate().open() == halves.len(),
            "half request accepted",
        )
        .await;
    }
    let started = Instant::now();
    let answer = get(server.addr, "/v2/health/ready").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    closed_by_server(&mut halves[0]).await;
    // The younger half request was not needed: still open.
    let mut buf = [0u8; 16];
    let still = timeout(Duration::from_millis(200), halves[1].read(&mut buf)).await;
    assert!(
        still.is_err(),
        "the younger half request was closed: {still:?}"
    );
    assert!(server.state.http_gate().open() <= 2);
    drop(halves);
    until(|| server.state.http_gate().open() == 0, "permits back").await;
    server.stop().await;
}

/// The header-read timeout does not cut a request in flight (its body is bounded by the
/// request timeout), nor an HTTP/2 connection waiting between requests.
#[tokio::test]
async fn the_header_timeout_is_for_http1_heads_only() {
    let server = start(
        Limits {
            request_timeout: Duration::from_millis(800),
            conn: ConnLimits {
                header_read_timeout: Duration::from_millis(300),
                ..long_conn()
            },
            ..Limits::default()
        },
        false,
    )
    .await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(
        b"POST /predict_iris HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
          content-length: 100\r\n\r\n{\"features\":",
    )
    .await
    .unwrap();
    let mut h2 = TcpStream::connect(server.addr).await.unwrap();
    // The preface and an empty SETTINGS frame.
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let answer = read_all(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // 800 ms on, past the header-read timeout: the HTTP/2 connection is still open.
    let mut buf = [0u8; 256];
    let open = timeout(Duration::from_millis(200), async {
        loop {
            match h2.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(open.is_err(), "the HTTP/2 connection was closed");
    server.stop().await;
}
