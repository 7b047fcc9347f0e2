//! An honest refusal, in the client's protocol where it can be told from the first bytes:
//! an HTTP/1 503 with Retry-After and the model server's JSON error shape, or for HTTP/2
//! (gRPC) a GOAWAY with REFUSED_STREAM, which gRPC clients report as UNAVAILABLE and retry.
//! Anything else (a TLS ClientHello) is closed: the activator holds no certificate.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use tracing::debug;

/// The client connection preface of HTTP/2 (RFC 9113 section 3.4).
pub(super) const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The most read from a client to tell its protocol.
const HEAD_MAX: usize = 64;
/// The longest wait for those bytes.
const HEAD_WAIT: Duration = Duration::from_secs(1);
/// The longest wait, after the answer, for the client to close: closing a socket with unread
/// bytes resets it, and a reset can destroy the answer before the client reads it.
const LINGER: Duration = Duration::from_secs(1);
/// HTTP/2 frame types and the error code of the GOAWAY.
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_GOAWAY: u8 = 0x7;
const REFUSED_STREAM: u32 = 0x7;
/// The smallest maximum frame payload every HTTP/2 peer accepts.
const MAX_FRAME: usize = 16_384;

/// What the first bytes of a connection say about its protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Protocol {
    Http2,
    Http1,
    Other,
    /// Not yet known: more bytes may tell.
    Undecided,
}

/// Tells the protocol from the first bytes. "PRI " would look like an HTTP/1 method, so the
/// HTTP/2 preface is checked first.
pub(super) fn sniff(head: &[u8]) -> Protocol {
    if head.starts_with(HTTP2_PREFACE) {
        return Protocol::Http2;
    }
    if HTTP2_PREFACE.starts_with(head) {
        return Protocol::Undecided;
    }
    let method = head.iter().take_while(|b| b.is_ascii_uppercase()).count();
    match head.get(method) {
        Some(b' ') if method > 0 => Protocol::Http1,
        None if head.len() < HEAD_MAX => Protocol::Undecided,
        _ => Protocol::Other,
    }
}

/// An HTTP/1.1 503 that asks to retry, with `{"error": message}` as its body.
pub(super) fn http1_unavailable(message: &str, retry_after_seconds: u64) -> Vec<u8> {
    let body = serde_json::json!({ "error": message }).to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\n\
         Retry-After: {retry_after_seconds}\r\n\
         Content-Type: application/json\r\n\
         Content-Length: {}\r\n\
         Connection: close\r\n\
         \r\n\
         {body}",
        body.len()
    )
    .into_bytes()
}

/// An empty server SETTINGS frame (the server's preface), then a GOAWAY that refuses every
/// stream (last stream 0, REFUSED_STREAM) with the message as its debug data.
pub(super) fn http2_refused(message: &str) -> Vec<u8> {
    let mut debug = message.as_bytes();
    debug = &debug[..debug.len().min(MAX_FRAME - 8)];
    let mut goaway = Vec::with_capacity(8 + debug.len());
    goaway.extend_from_slice(&0u32.to_be_bytes());
    goaway.extend_from_slice(&REFUSED_STREAM.to_be_bytes());
    goaway.extend_from_slice(debug);
    let mut out = frame(FRAME_SETTINGS, &[]);
    out.extend(frame(FRAME_GOAWAY, &goaway));
    out
}

/// An HTTP/2 frame on stream 0 without flags.
fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    // The payload is at most MAX_FRAME bytes, so its length fits the 24-bit field.
    let length = u32::try_from(payload.len()).unwrap_or(0).to_be_bytes();
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&length[1..]);
    out.push(kind);
    out.push(0); // flags
    out.extend_from_slice(&0u32.to_be_bytes()); // stream 0
    out.extend_from_slice(payload);
    out
}

/// Refuses a connection: reads its first bytes, answers in its protocol, and closes.
pub(super) async fn refuse(client: TcpStream, message: &str, retry_after_seconds: u64) {
    let (mut read, mut write) = client.into_split();
    let head = read_head(&mut read).await;
    let answer = match sniff(&head) {
        Protocol::Http2 => http2_refused(message),
        Protocol::Http1 => http1_unavailable(message, retry_after_seconds),
        Protocol::Other | Protocol::Undecided => Vec::new(),
    };
    if let Err(e) = write.write_all(&answer).await {
        debug!("cannot write the refusal: {e}");
    }
    let _ = write.shutdown().await;
    linger(read).await;
}

/// Up to [`HEAD_MAX`] bytes, as many as tell the protocol, waiting at most [`HEAD_WAIT`].
async fn read_head(read: &mut OwnedReadHalf) -> Vec<u8> {
    let deadline = Instant::now() + HEAD_WAIT;
    let mut head = Vec::with_capacity(HEAD_MAX);
    let mut buf = [0; HEAD_MAX];
    while sniff(&head) == Protocol::Undecided {
        let room = HEAD_MAX - head.len();
        match timeout_at(deadline, read.read(&mut buf[..room])).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    head
}

/// Reads and drops what the client still sends until it closes, for at most [`LINGER`].
async fn linger(mut read: OwnedReadHalf) {
    let deadline = Instant::now() + LINGER;
    let mut buf = [0; 4096];
    while let Ok(Ok(n)) = timeout_at(deadline, read.read(&mut buf)).await {
        if n == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_tells_http2_http1_and_the_rest() {
        assert_eq!(sniff(b""), Protocol::Undecided);
        assert_eq!(sniff(b"PRI * HTTP"), Protocol::Undecided);
        assert_eq!(sniff(HTTP2_PREFACE), Protocol::Http2);
        assert_eq!(
            sniff(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0"),
            Protocol::Http2
        );
        assert_eq!(sniff(b"GET / HTTP/1.1\r\n"), Protocol::Http1);
        assert_eq!(sniff(b"POST /v1/models/iris:predict"), Protocol::Http1);
        assert_eq!(sniff(b"PRI /x HTTP/1.1"), Protocol::Http1);
        assert_eq!(sniff(b"POS"), Protocol::Undecided);
        assert_eq!(sniff(b"\x16\x03\x01\x02\x00"), Protocol::Other);
        assert_eq!(sniff(b"get / HTTP/1.1"), Protocol::Other);
        assert_eq!(sniff(&[b'A'; HEAD_MAX]), Protocol::Other);
    }

    #[test]
    fn http1_refusal_is_a_503_with_the_json_error() {
        let text = String::from_utf8(http1_unavailable("a \"quoted\" reason", 3)).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nRetry-After: 3"), "{head}");
        assert!(
            head.contains("\r\nContent-Type: application/json"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\nContent-Length: {}", body.len())),
            "{head}"
        );
        assert!(head.contains("\r\nConnection: close"), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(json, serde_json::json!({"error": "a \"quoted\" reason"}));
    }

    #[test]
    fn http2_refusal_is_settings_then_goaway_refused_stream() {
        let bytes = http2_refused("busy");
        assert_eq!(bytes[..9], [0, 0, 0, FRAME_SETTINGS, 0, 0, 0, 0, 0]);
        let goaway = &bytes[9..];
        assert_eq!(goaway[..9], [0, 0, 12, FRAME_GOAWAY, 0, 0, 0, 0, 0]);
        assert_eq!(goaway[9..13], [0, 0, 0, 0]); // last stream id
        assert_eq!(goaway[13..17], [0, 0, 0, 7]); // REFUSED_STREAM
        assert_eq!(&goaway[17..], b"busy");
    }
}
