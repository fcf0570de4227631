//! Odd `:authority` values, as real gRPC clients send them on Unix sockets, reach the service
//! instead of having their stream reset with PROTOCOL_ERROR (see RELIABILITY.md, "Unix socket
//! clients", and the patch in vendor/h2). HTTP/2 frames are written by hand here: no Rust client
//! can send an authority that `http::Uri` refuses to parse.

mod support;

use support::h2wire::{HEALTH, Outcome, SERVING, health_check};
use support::server::Server;

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
