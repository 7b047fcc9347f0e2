//! The proxy on loopback with a fake [`Backend`]: the hold and the wake, the refusals, the
//! warm path, the bounds (connections, idle time) and the drain. The fake's watched pods are
//! 127.0.0.1 unless a test says otherwise; a "pod" accepts once the test listens on its port.

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

/// A Deployment at zero replicas until woken, whose watched pods are 127.0.0.1 (or none).
struct FakeBackend {
    replicas: AtomicI32,
    wakes: AtomicUsize,
    pods: watch::Sender<Vec<IpAddr>>,
}

impl Default for FakeBackend {
    fn default() -> Self {
        Self::with_pods(vec![LOCALHOST])
    }
}

impl FakeBackend {
    fn with_pods(pods: Vec<IpAddr>) -> Self {
        Self {
            replicas: AtomicI32::new(0),
            wakes: AtomicUsize::new(0),
            pods: watch::Sender::new(pods),
        }
    }

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

    fn pods(&self) -> watch::Receiver<Vec<IpAddr>> {
        self.pods.subscribe()
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
        idle_timeout: BOUND,
        max_connections: 1024,
    };
    start_with(backend, port, settings).await
}

async fn start_with(backend: Arc<FakeBackend>, port: u16, settings: Settings) -> Running {
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
        idle_timeout: BOUND,
        max_connections: 1024,
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

/// The bounds of these tests: a short hold, a cap and an idle timeout.
fn settings(max_connections: usize, idle_timeout: Duration) -> Settings {
    Settings {
        model: "default/iris".to_string(),
        max_held: 100,
        hold_timeout: BOUND,
        retry_after_seconds: 1,
        idle_timeout,
        max_connections,
    }
}

/// A pod that never answers: it reads until the client closes, then closes too.
async fn silent_pod() -> (u16, JoinHandle<()>) {
    let pod = TcpListener::bind(SocketAddr::new(LOCALHOST, 0))
        .await
        .expect("bind the pod");
    let port = pod.local_addr().expect("its address").port();
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = pod.accept().await {
            tokio::spawn(async move {
                let mut sink = Vec::new();
                let _ = conn.read_to_end(&mut sink).await;
            });
        }
    });
    (port, task)
}

/// Waits until `count` connections are open.
async fn wait_open(proxy: &Proxy, count: usize) {
    let mut open = proxy.open();
    timeout(BOUND, open.wait_for(|n| *n == count))
        .await
        .expect("open in time")
        .map(|_| ())
        .expect("the proxy is alive");
}

/// Waits until `count` connections were forwarded.
async fn wait_forwarded(metrics: &Metrics, count: u64) {
    timeout(BOUND, async {
        while metrics.connections_of(Outcome::Forwarded) < count {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("forwarded in time");
}

#[tokio::test]
async fn over_max_connections_a_new_connection_is_closed_at_once() {
    let (port, _pod) = silent_pod().await;
    let backend = Arc::new(FakeBackend::default());
    let running = start_with(backend, port, settings(2, BOUND)).await;

    // Two forwarded connections that stay open: the cap.
    let first = send(running.addr, b"").await;
    let second = send(running.addr, b"").await;
    wait_forwarded(&running.proxy.metrics, 2).await;

    // A third is accepted by the kernel, then closed at once, unanswered.
    let started = Instant::now();
    let mut third = send(running.addr, b"").await;
    let mut buf = [0; 16];
    match timeout(BOUND, third.read(&mut buf))
        .await
        .expect("closed in time")
    {
        Ok(n) => assert_eq!(n, 0, "no answer"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2), "promptly");
    let metrics = &running.proxy.metrics;
    assert_eq!(metrics.connections_of(Outcome::RefusedOverCap), 1);
    assert_eq!(metrics.connections_of(Outcome::Forwarded), 2);

    // One ends: a new connection is forwarded again.
    drop(first);
    wait_open(&running.proxy, 1).await;
    let _fourth = send(running.addr, b"").await;
    wait_forwarded(metrics, 3).await;
    assert_eq!(*running.proxy.open().borrow(), 2);
    assert_eq!(metrics.connections_of(Outcome::RefusedOverCap), 1);
    drop(second);
}

#[tokio::test]
async fn an_idle_forwarded_connection_is_closed() {
    let (port, _pod) = silent_pod().await;
    let backend = Arc::new(FakeBackend::default());
    let idle = Duration::from_millis(300);
    let running = start_with(backend, port, settings(1024, idle)).await;

    let started = Instant::now();
    let client = send(running.addr, REQUEST).await;
    let answer = answer(client).await;
    assert!(answer.is_empty(), "{answer:?}");
    assert!(started.elapsed() >= idle);
    wait_open(&running.proxy, 0).await;
    assert_eq!(running.proxy.metrics.connections_of(Outcome::Forwarded), 1);
}

#[tokio::test]
async fn forwarded_bytes_arrive_exactly_both_ways() {
    // An echo pod.
    let pod = TcpListener::bind(SocketAddr::new(LOCALHOST, 0))
        .await
        .expect("bind the pod");
    let port = pod.local_addr().expect("its address").port();
    let _pod = tokio::spawn(async move {
        while let Ok((conn, _)) = pod.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = conn.into_split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    let running = start(Arc::new(FakeBackend::default()), port, 100, BOUND).await;

    let sent: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let client = TcpStream::connect(running.addr).await.expect("connect");
    let (mut read, mut write) = client.into_split();
    let writing = tokio::spawn({
        let sent = sent.clone();
        async move {
            write.write_all(&sent).await.expect("send");
            write.shutdown().await.expect("half-close");
        }
    });
    let mut echoed = Vec::new();
    timeout(BOUND, read.read_to_end(&mut echoed))
        .await
        .expect("echoed in time")
        .expect("read the echo");
    writing.await.expect("the writer");
    assert_eq!(echoed.len(), sent.len());
    assert!(echoed == sent, "byte-exact");
}

#[tokio::test]
async fn a_held_connection_is_forwarded_when_the_watch_lists_a_pod() {
    // The pod listens from the start, but the watch lists no pod yet.
    let pod = TcpListener::bind(SocketAddr::new(LOCALHOST, 0))
        .await
        .expect("bind the pod");
    let port = pod.local_addr().expect("its address").port();
    let _pod = serve_http(pod);
    let backend = Arc::new(FakeBackend::with_pods(Vec::new()));
    let running = start(backend.clone(), port, 100, BOUND).await;

    let client = send(running.addr, REQUEST).await;
    wait_held(&running.proxy, 1).await;
    sleep(Duration::from_millis(100)).await;
    assert_eq!(backend.wakes(), 1, "woken once, waiting on the watch");

    // The watch lists the pod: the notification reaches the wake loop (which otherwise
    // wakes only for its once-a-second re-wake) and the held connection goes to the pod.
    let listed = Instant::now();
    backend.pods.send_replace(vec![LOCALHOST]);
    let answer = answer(client).await;
    assert_eq!(
        String::from_utf8_lossy(&answer),
        String::from_utf8_lossy(ANSWER)
    );
    assert!(
        listed.elapsed() < Duration::from_millis(600),
        "forwarded on the notification, not a timer: {:?}",
        listed.elapsed()
    );
    assert_eq!(backend.wakes(), 1);
    assert_eq!(running.proxy.metrics.connections_of(Outcome::Forwarded), 1);
}
