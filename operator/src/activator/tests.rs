//! The proxy on loopback with a fake [`Backend`]: the hold and the wake, the refusals, the
//! warm path and the drain. The fake's pods are always 127.0.0.1; a "pod" accepts once the
//! test starts listening on its port.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::{join_all, BoxFuture};
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

use super::backend::Backend;
use super::metrics::{Metrics, Outcome};
use super::proxy::{bind, Proxy, Settings};
use super::refusal::HTTP2_PREFACE;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The longest any wait of these tests may take.
const BOUND: Duration = Duration::from_secs(10);
const REQUEST: &[u8] = b"GET /v1/models/iris HTTP/1.1\r\nHost: iris\r\n\r\n";
const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";

/// A Deployment at zero replicas until woken, whose only pod is 127.0.0.1.
#[derive(Default)]
struct FakeBackend {
    replicas: AtomicI32,
    wakes: AtomicUsize,
}

impl FakeBackend {
    fn wakes(&self) -> usize {
        self.wakes.load(Ordering::SeqCst)
    }
}

impl Backend for FakeBackend {
    fn wake(&self) -> BoxFuture<'_, anyhow::Result<i32>> {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        let found = self.replicas.fetch_max(1, Ordering::SeqCst);
        async move { Ok(found) }.boxed()
    }

    fn pods(&self) -> BoxFuture<'_, anyhow::Result<Vec<IpAddr>>> {
        async { Ok(vec![LOCALHOST]) }.boxed()
    }
}

/// A port on loopback that refuses connections until the socket listens.
fn reserve_port() -> (TcpSocket, u16) {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind(SocketAddr::new(LOCALHOST, 0))
        .expect("bind loopback");
    let port = socket.local_addr().expect("its address").port();
    (socket, port)
}

/// A model server: answers [`ANSWER`] to each request, then closes.
fn serve_http(listener: TcpListener) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return, // a probe
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(ANSWER).await;
                let _ = conn.shutdown().await;
            });
        }
    })
}

/// A proxy serving one route on loopback to `port`.
struct Running {
    proxy: Arc<Proxy>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    /// Fires once the listener is closed.
    closed: oneshot::Receiver<()>,
    /// The drain's count of cut connections.
    done: JoinHandle<usize>,
}

async fn start(
    backend: Arc<FakeBackend>,
    port: u16,
    max_held: usize,
    hold_timeout: Duration,
) -> Running {
    let settings = Settings {
        model: "default/iris".to_string(),
        max_held,
        hold_timeout,
        retry_after_seconds: 1,
    };
    let proxy = Arc::new(Proxy::new(backend, settings, Metrics::default()));
    let routes = bind(&[(SocketAddr::new(LOCALHOST, 0), port)])
        .await
        .expect("bind the route");
    let addr = routes[0].local_addr().expect("its address");
    let (stop, stop_rx) = watch::channel(false);
    let (closed_tx, closed) = oneshot::channel();
    let done = tokio::spawn({
        let proxy = proxy.clone();
        async move {
            proxy.accept(routes, stop_rx).await;
            let _ = closed_tx.send(());
            proxy.drain().await
        }
    });
    Running {
        proxy,
        addr,
        stop,
        closed,
        done,
    }
}

/// A client that connected and sent `bytes`.
async fn send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut client = TcpStream::connect(addr).await.expect("connect");
    client.write_all(bytes).await.expect("send");
    client
}

/// Everything the proxy answers until it closes.
async fn answer(mut client: TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    timeout(BOUND, client.read_to_end(&mut out))
        .await
        .expect("an answer in time")
        .expect("read the answer");
    out
}

/// Waits until `count` connections are held.
async fn wait_held(proxy: &Proxy, count: usize) {
    let mut held = proxy.held();
    timeout(BOUND, held.wait_for(|n| *n == count))
        .await
        .expect("held in time")
        .map(|_| ())
        .expect("the proxy is alive");
}

/// The JSON error of a 503, after checking its head.
fn unavailable_error(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    assert!(
        head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{text}"
    );
    assert!(head.contains("\r\nRetry-After: 1\r\n"), "{text}");
    assert!(
        head.contains("\r\nContent-Type: application/json\r\n"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    json["error"]
        .as_str()
        .expect("an error message")
        .to_string()
}

#[tokio::test]
async fn held_requests_are_forwarded_once_a_pod_listens_after_one_wake() {
    let backend = Arc::new(FakeBackend::default());
    let (pod, port) = reserve_port();
    let running = start(backend.clone(), port, 100, BOUND).await;

    let clients = join_all((0..5).map(|_| send(running.addr, REQUEST))).await;
    wait_held(&running.proxy, 5).await;
    sleep(Duration::from_millis(300)).await;
    let _pod = serve_http(pod.listen(64).expect("listen"));

    for answer in join_all(clients.into_iter().map(answer)).await {
        assert_eq!(
            String::from_utf8_lossy(&answer),
            String::from_utf8_lossy(ANSWER)
        );
    }
    assert_eq!(backend.wakes(), 1, "one wake for all held connections");
    let metrics = &running.proxy.metrics;
    assert_eq!(metrics.connections_of(Outcome::Forwarded), 5);
}

#[tokio::test]
async fn over_max_held_http1_gets_a_503_and_http2_a_goaway() {
    let backend = Arc::new(FakeBackend::default());
    let (_pod, port) = reserve_port(); // never listens
    let running = start(backend, port, 2, BOUND).await;
    let _held = join_all((0..2).map(|_| send(running.addr, REQUEST))).await;
    wait_held(&running.proxy, 2).await;

    let http1 = answer(send(running.addr, REQUEST).await).await;
    assert_eq!(
        unavailable_error(&http1),
        "model default/iris is starting from zero pods and 2 requests are already waiting; \
         retry after 1 s"
    );

    // A gRPC client: the preface, then its SETTINGS.
    let mut preface = HTTP2_PREFACE.to_vec();
    preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let http2 = answer(send(running.addr, &preface).await).await;
    assert!(http2.len() > 26, "{http2:?}");
    assert_eq!(http2[..9], [0, 0, 0, 4, 0, 0, 0, 0, 0], "an empty SETTINGS");
    let (goaway, payload) = http2[9..].split_at(9);
    let length = usize::from(goaway[1]) << 8 | usize::from(goaway[2]);
    assert_eq!(length, payload.len());
    assert_eq!(goaway[3], 0x7, "GOAWAY");
    assert_eq!(goaway[5..9], [0, 0, 0, 0], "on stream 0");
    assert_eq!(payload[..4], [0, 0, 0, 0], "last stream id 0");
    assert_eq!(payload[4..8], [0, 0, 0, 0x7], "REFUSED_STREAM");
    let debug = String::from_utf8_lossy(&payload[8..]);
    assert!(debug.contains("2 requests are already waiting"), "{debug}");

    let metrics = &running.proxy.metrics;
    assert_eq!(metrics.connections_of(Outcome::RefusedFull), 2);
}

#[tokio::test]
async fn a_connection_held_past_the_hold_timeout_is_refused() {
    let backend = Arc::new(FakeBackend::default());
    let (_pod, port) = reserve_port(); // never listens
    let running = start(backend, port, 100, Duration::from_millis(500)).await;

    // A client that leaves while held frees its place.
    let leaving = TcpStream::connect(running.addr).await.expect("connect");
    wait_held(&running.proxy, 1).await;
    drop(leaving);
    wait_held(&running.proxy, 0).await;

    let started = Instant::now();
    let tls = send(running.addr, b"\x16\x03\x01\x00\x05hello").await;
    let (http1, tls) = tokio::join!(answer(send(running.addr, REQUEST).await), answer(tls));
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(
        unavailable_error(&http1),
        "no pod of model default/iris accepted a connection within 0.5 s; retry after 1 s"
    );
    assert!(tls.is_empty(), "TLS is closed without an answer: {tls:?}");

    let metrics = &running.proxy.metrics;
    assert_eq!(metrics.connections_of(Outcome::RefusedTimeout), 2);
    assert_eq!(metrics.connections_of(Outcome::Failed), 1);
}

#[tokio::test]
async fn with_a_pod_up_connections_go_straight_to_it_without_a_wake() {
    let backend = Arc::new(FakeBackend::default());
    let pod = TcpListener::bind(SocketAddr::new(LOCALHOST, 0))
        .await
        .expect("bind the pod");
    let port = pod.local_addr().expect("its address").port();
    let _pod = serve_http(pod);
    let running = start(backend.clone(), port, 100, BOUND).await;

    for _ in 0..3 {
        let answer = answer(send(running.addr, REQUEST).await).await;
        assert_eq!(
            String::from_utf8_lossy(&answer),
            String::from_utf8_lossy(ANSWER)
        );
    }
    assert_eq!(backend.wakes(), 0);
    let metrics = &running.proxy.metrics;
    assert_eq!(metrics.connections_of(Outcome::Forwarded), 3);
}

#[tokio::test]
async fn on_shutdown_held_connections_are_still_answered_and_new_ones_refused() {
    let backend = Arc::new(FakeBackend::default());
    let (pod, port) = reserve_port();
    let running = start(backend, port, 100, BOUND).await;
    let held = send(running.addr, REQUEST).await;
    wait_held(&running.proxy, 1).await;

    running.stop.send(true).expect("the proxy listens for stop");
    timeout(BOUND, running.closed)
        .await
        .expect("the listener closes in time")
        .expect("the accept loop ended");
    assert!(
        TcpStream::connect(running.addr).await.is_err(),
        "the listener is closed"
    );

    let _pod = serve_http(pod.listen(64).expect("listen"));
    let answer = answer(held).await;
    assert_eq!(
        String::from_utf8_lossy(&answer),
        String::from_utf8_lossy(ANSWER)
    );
    let cut = timeout(BOUND, running.done)
        .await
        .expect("the drain ends once no connection is left")
        .expect("the drain task");
    assert_eq!(cut, 0);
}

#[tokio::test]
async fn the_activator_never_forwards_to_itself() {
    // The "pod" is the activator: 127.0.0.1 on the port it listens on.
    let backend = Arc::new(FakeBackend::default());
    let (socket, port) = reserve_port();
    drop(socket);
    let settings = Settings {
        model: "default/iris".to_string(),
        max_held: 100,
        hold_timeout: Duration::from_millis(500),
        retry_after_seconds: 1,
    };
    let proxy = Arc::new(Proxy::new(backend, settings, Metrics::default()));
    let routes = bind(&[(SocketAddr::new(LOCALHOST, port), port)])
        .await
        .expect("bind the route");
    let (_stop, stop) = watch::channel(false);
    tokio::spawn({
        let proxy = proxy.clone();
        async move { proxy.run(routes, stop).await }
    });

    let answer = answer(send(SocketAddr::new(LOCALHOST, port), REQUEST).await).await;
    assert!(unavailable_error(&answer).contains("within 0.5 s"));
    assert_eq!(proxy.metrics.connections_of(Outcome::Forwarded), 0);
    assert_eq!(proxy.metrics.connections_of(Outcome::RefusedTimeout), 1);
}
