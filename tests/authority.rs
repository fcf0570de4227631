//! Odd `:authority` values, as real gRPC clients send them on Unix sockets, reach the service
//! instead of having their stream reset with PROTOCOL_ERROR (see RELIABILITY.md, "Unix socket
//! clients", and the patch in vendor/h2). HTTP/2 frames are written by hand here: no Rust client
//! can send an authority that `http::Uri` refuses to parse.

mod support;

use std::time::Duration;

use support::server::Server;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

/// What the server did with the one call on stream 1.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// A gRPC message came back: the serving status of a health check.
    Answered(Vec<u8>),
    /// The stream was reset with this HTTP/2 error code (1 is PROTOCOL_ERROR).
    Reset(u32),
    /// The connection was closed with GOAWAY and this error code.
    GoAway(u32),
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK "literal header field without indexing, new name", lengths below 127 or not.
fn literal(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(0x00);
    for s in [name.as_bytes(), value] {
        hpack_int(out, s.len());
        out.extend_from_slice(s);
    }
}

/// A 7-bit-prefix HPACK integer with the Huffman bit clear.
fn hpack_int(out: &mut Vec<u8>, mut n: usize) {
    if n < 127 {
        out.push(n as u8);
        return;
    }
    out.push(127);
    n -= 127;
    while n >= 128 {
        out.push((n % 128 + 128) as u8);
        n /= 128;
    }
    out.push(n as u8);
}

/// Sends one `grpc.health.v1.Health/Check` for the whole server on stream 1 with `authority` (and
/// `path`), and reads frames until the call is answered or reset.
async fn health_check(mut conn: impl AsyncRead + AsyncWrite + Unpin, authority: Option<&[u8]>, path: &str) -> Outcome {
    let mut block = Vec::new();
    literal(&mut block, ":method", b"POST");
    literal(&mut block, ":scheme", b"http");
    literal(&mut block, ":path", path.as_bytes());
    if let Some(authority) = authority {
        literal(&mut block, ":authority", authority);
    }
    literal(&mut block, "content-type", b"application/grpc");
    literal(&mut block, "te", b"trailers");
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out.extend(frame(HEADERS, END_HEADERS, 1, &block));
    // An empty HealthCheckRequest: uncompressed, zero length.
    out.extend(frame(DATA, END_STREAM, 1, &[0, 0, 0, 0, 0]));
    conn.write_all(&out).await.unwrap();

    let read = async {
        loop {
            let mut head = [0u8; 9];
            conn.read_exact(&mut head).await.expect("the server closed the connection without answering");
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let (kind, flags) = (head[3], head[4]);
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; len];
            conn.read_exact(&mut payload).await.unwrap();
            match kind {
                SETTINGS if flags & ACK == 0 => conn.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap(),
                DATA if stream == 1 => return Outcome::Answered(payload),
                RST_STREAM if stream == 1 => {
                    return Outcome::Reset(u32::from_be_bytes(payload[..4].try_into().unwrap()));
                }
                GOAWAY => return Outcome::GoAway(u32::from_be_bytes(payload[4..8].try_into().unwrap())),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.expect("an answer within 10 s")
}

/// `SERVING` (1) as a length-prefixed HealthCheckResponse.
const SERVING: &[u8] = &[0, 0, 0, 0, 2, 0x08, 0x01];
const HEALTH: &str = "/grpc.health.v1.Health/Check";

/// The `:authority` values clients are known to send, and a few nobody should.
fn authorities(sock: &str) -> Vec<Vec<u8>> {
    let encoded = sock.replace('/', "%2F");
    vec![
        sock.as_bytes().to_vec(),                   // grpc-java, grpc-go: the raw path
        encoded.as_bytes().to_vec(),                // grpcio >= 1.57: percent-encoded
        format!("unix:{sock}").into_bytes(),        // the target as written
        b"localhost".to_vec(),                      // grpc-js, tonic
        b"".to_vec(),                               // empty
        b"a b\"<>{}".to_vec(),                      // characters no authority may hold
        "x".repeat(8 * 1024).into_bytes(),          // long
        b"user@host:99999999999999999999".to_vec(), // a port that does not fit
    ]
}

#[tokio::test]
async fn odd_authorities_are_answered_over_unix_socket_and_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("rg.sock");
    let unix = format!("unix:{}", sock.display());
    let server = Server::start(std::path::Path::new("examples"), &["--listen", &unix]);
    server.ready().await;
    let sock_str = sock.to_str().unwrap();
    for authority in authorities(sock_str) {
        let shown = String::from_utf8_lossy(&authority[..authority.len().min(40)]).into_owned();
        let over_unix = tokio::net::UnixStream::connect(&sock).await.unwrap();
        let answer = health_check(over_unix, Some(&authority), HEALTH).await;
        assert_eq!(answer, Outcome::Answered(SERVING.to_vec()), "unix socket, :authority `{shown}`");
        let over_tcp = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
        let answer = health_check(over_tcp, Some(&authority), HEALTH).await;
        assert_eq!(answer, Outcome::Answered(SERVING.to_vec()), "tcp, :authority `{shown}`");
    }
    let none = health_check(tokio::net::UnixStream::connect(&sock).await.unwrap(), None, HEALTH).await;
    assert_eq!(none, Outcome::Answered(SERVING.to_vec()), "no :authority at all");
}

/// The patch relaxes `:authority` only: a malformed `:path` is still a stream error (which also
/// proves this harness sees resets), and a pseudo-header that is not UTF-8 still closes its
/// connection, while the server goes on answering on others.
#[tokio::test]
async fn malformed_path_is_still_reset() {
    let server = Server::start(std::path::Path::new("examples"), &[]);
    server.ready().await;
    let conn = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let answer = health_check(conn, Some(b"localhost"), "/grpc.health.v1.Health/Check\u{7f}x").await;
    assert_eq!(answer, Outcome::Reset(1), "a malformed :path is a PROTOCOL_ERROR");
    let conn = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let answer = health_check(conn, Some(&[0xff, 0xfe, b'x']), HEALTH).await;
    assert_eq!(answer, Outcome::GoAway(1), "an :authority that is not UTF-8 ends its connection");
    let conn = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    assert_eq!(health_check(conn, None, HEALTH).await, Outcome::Answered(SERVING.to_vec()));
}
