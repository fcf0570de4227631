//! The admin HTTP port: `/healthz` (alive), `/readyz` ([`Store::is_ready`]) and `/metrics`
//! (Prometheus text). A deliberately tiny HTTP/1.1 responder: three fixed GET routes.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::store::Store;
use crate::telemetry::Metrics;

/// Serves the admin routes until the process exits.
pub async fn serve(listener: TcpListener, store: Arc<Store>, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else { continue };
        let (store, metrics) = (store.clone(), metrics.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = match tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let head = String::from_utf8_lossy(&buf[..n]);
            let path = head.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = match path {
                "/healthz" => ("200 OK", "ok\n".to_owned()),
                "/readyz" if store.is_ready() => ("200 OK", "ready\n".to_owned()),
                "/readyz" => {
                    ("503 Service Unavailable", "not ready: no tenant loaded or the source stopped\n".to_owned())
                }
                "/metrics" => ("200 OK", metrics.render(&store)),
                _ => ("404 Not Found", "not found\n".to_owned()),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(resp.as_bytes()).await;
        });
    }
}
