//! The admin HTTP port: `/healthz` (alive), `/readyz` ([`Store::is_ready`]) and `/metrics`
//! (Prometheus text). A deliberately tiny HTTP/1.1 responder: three fixed GET (or HEAD) routes,
//! at most [`MAX_CONNECTIONS`] connections at once, each given [`CONNECTION_TIMEOUT`] to send
//! its request and read the answer, so idle or slow clients cannot starve the probes.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::accept::Incoming;
use rolegate_source::store::Store;
use rolegate_telemetry::Metrics;

/// Admin connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a connection has to send its request and read the answer.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves the admin routes until the process exits.
pub async fn serve(listener: TcpListener, store: Arc<Store>, metrics: Arc<Metrics>) {
    let name = listener.local_addr().map_or_else(|_| "the admin port".to_owned(), |a| a.to_string());
    let mut incoming = Incoming::new(listener, name);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // Wait for a free slot before accepting, so idle connections cannot pile up.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let conn = incoming.next().await;
        let (store, metrics) = (store.clone(), metrics.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, respond(conn, &store, &metrics)).await;
            drop(slot);
        });
    }
}

/// Reads one request and answers it.
async fn respond(mut conn: TcpStream, store: &Store, metrics: &Metrics) {
    let mut buf = [0u8; 1024];
    let Ok(n) = conn.read(&mut buf).await else { return };
    let head = String::from_utf8_lossy(buf.get(..n).unwrap_or_default());
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or_default();
    let path = words.next().unwrap_or("/");
    let (status, body) = match (method, path) {
        ("GET" | "HEAD", "/healthz") => ("200 OK", "ok\n".to_owned()),
        ("GET" | "HEAD", "/readyz") if store.is_ready() => ("200 OK", "ready\n".to_owned()),
        ("GET" | "HEAD", "/readyz") => {
            ("503 Service Unavailable", "not ready: no tenant loaded or the source stopped\n".to_owned())
        }
        ("GET" | "HEAD", "/metrics") => ("200 OK", metrics.render(store)),
        ("GET" | "HEAD", _) => ("404 Not Found", "not found\n".to_owned()),
        _ => ("405 Method Not Allowed", "only GET and HEAD\n".to_owned()),
    };
    let mut resp =
        format!("HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\n", body.len());
    if status.starts_with("405") {
        resp.push_str("allow: GET, HEAD\r\n");
    }
    resp.push_str("connection: close\r\n\r\n");
    if method != "HEAD" {
        resp.push_str(&body);
    }
    let _ = conn.write_all(resp.as_bytes()).await;
}
