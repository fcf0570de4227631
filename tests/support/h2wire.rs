//! HTTP/2 frames written by hand, for what no well-behaved client sends: odd `:authority` values,
//! requests whose answers are never read, streams reset as soon as they open.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const ACK: u8 = 0x1;
/// SETTINGS_INITIAL_WINDOW_SIZE.
pub const INITIAL_WINDOW_SIZE: u16 = 0x4;

/// `SERVING` (1) as a length-prefixed HealthCheckResponse.
pub const SERVING: &[u8] = &[0, 0, 0, 0, 2, 0x08, 0x01];
pub const HEALTH: &str = "/grpc.health.v1.Health/Check";

/// What the server did with the one call on stream 1.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// A gRPC message came back.
    Answered(Vec<u8>),
    /// The stream was reset with this HTTP/2 error code (1 is PROTOCOL_ERROR).
    Reset(u32),
    /// The connection was closed with GOAWAY and this error code.
    GoAway(u32),
}

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK "literal header field without indexing, new name", lengths below 127 or not.
pub fn literal(out: &mut Vec<u8>, name: &str, value: &[u8]) {
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

/// The header block of a gRPC call to `path`, with `authority` when given.
pub fn grpc_headers(path: &str, authority: Option<&[u8]>) -> Vec<u8> {
    let mut block = Vec::new();
    literal(&mut block, ":method", b"POST");
    literal(&mut block, ":scheme", b"http");
    literal(&mut block, ":path", path.as_bytes());
    if let Some(authority) = authority {
        literal(&mut block, ":authority", authority);
    }
    literal(&mut block, "content-type", b"application/grpc");
    literal(&mut block, "te", b"trailers");
    block
}

/// A health check on `stream`: its HEADERS and its one empty, length-prefixed message.
pub fn health_call(stream: u32, authority: Option<&[u8]>, path: &str) -> Vec<u8> {
    let mut out = frame(HEADERS, END_HEADERS, stream, &grpc_headers(path, authority));
    out.extend(frame(DATA, END_STREAM, stream, &[0, 0, 0, 0, 0]));
    out
}

/// Reads frames until stream 1 is answered or reset, or the connection is closed.
pub async fn outcome(conn: &mut (impl AsyncRead + AsyncWrite + Unpin)) -> Outcome {
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

/// Sends one health check on stream 1 of a new connection and reads what became of it.
pub async fn health_check(
    mut conn: impl AsyncRead + AsyncWrite + Unpin,
    authority: Option<&[u8]>,
    path: &str,
) -> Outcome {
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out.extend(health_call(1, authority, path));
    conn.write_all(&out).await.unwrap();
    outcome(&mut conn).await
}
