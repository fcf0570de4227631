//! The admin HTTP port: `/healthz` (alive), `/readyz` (a snapshot is loaded) and `/metrics`
//! (Prometheus text). A deliberately tiny HTTP/1.1 responder: three fixed GET routes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::source::dir::ReloadReport;
use crate::store::Store;

/// Counters exposed on `/metrics`. Labels are bounded: never a tenant or member id.
#[derive(Debug, Default)]
pub struct Metrics {
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    tenants_failed: AtomicU64,
    last_reload_unix: AtomicU64,
}

impl Metrics {
    /// Records one reload and logs its errors with file, line and key.
    pub fn record_reload(&self, report: &ReloadReport) {
        for d in &report.errors {
            tracing::error!(rolegate.source = "dir", "{d}");
        }
        if let Some(e) = &report.unreadable {
            tracing::error!(rolegate.source = "dir", "{e}");
        }
        for (tenant, revision) in &report.applied {
            tracing::info!(rolegate.tenant = %tenant, rolegate.revision = revision, "tenant loaded");
        }
        for tenant in &report.failed {
            tracing::warn!(rolegate.tenant = %tenant, "tenant failed to load; keeping its last good snapshot");
        }
        for tenant in &report.removed {
            tracing::info!(rolegate.tenant = %tenant, "tenant removed");
        }
        let failed = report.unreadable.is_some() || !report.failed.is_empty() || !report.errors.is_empty();
        let counter = if failed { &self.reloads_failed } else { &self.reloads_ok };
        counter.fetch_add(1, Ordering::Relaxed);
        self.tenants_failed.fetch_add(report.failed.len() as u64, Ordering::Relaxed);
        let now = jiff::Timestamp::now().as_second().max(0) as u64;
        self.last_reload_unix.store(now, Ordering::Relaxed);
    }

    fn render(&self, store: &Store) -> String {
        let tenants = store.load().map_or(0, |s| s.len());
        let ready = u8::from(store.is_loaded());
        format!(
            "# TYPE rolegate_reloads_total counter\n\
             rolegate_reloads_total{{source=\"dir\",result=\"ok\"}} {}\n\
             rolegate_reloads_total{{source=\"dir\",result=\"failed\"}} {}\n\
             # TYPE rolegate_tenant_load_failures_total counter\n\
             rolegate_tenant_load_failures_total{{source=\"dir\"}} {}\n\
             # TYPE rolegate_last_reload_timestamp_seconds gauge\n\
             rolegate_last_reload_timestamp_seconds{{source=\"dir\"}} {}\n\
             # TYPE rolegate_tenants gauge\n\
             rolegate_tenants {tenants}\n\
             # TYPE rolegate_ready gauge\n\
             rolegate_ready {ready}\n",
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed),
            self.tenants_failed.load(Ordering::Relaxed),
            self.last_reload_unix.load(Ordering::Relaxed),
        )
    }
}

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
                "/readyz" if store.is_loaded() => ("200 OK", "ready\n".to_owned()),
                "/readyz" => ("503 Service Unavailable", "no policy snapshot loaded yet\n".to_owned()),
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
