//! The console's HTTP/1.1 server: the embedded page and the JSON endpoints, GET only, with a
//! `Host` check that keeps other web sites from reading a loopback console through DNS
//! rebinding.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::api::{self, Failure};
use crate::assets;
use crate::listen::is_loopback;
use crate::load::State;

/// Bytes in a request's path and query.
pub const MAX_URI_BYTES: usize = 16 * 1024;
/// Connections served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 256;
/// Time a client has to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Which `Host` headers the console answers.
#[derive(Clone, Copy, Debug)]
pub struct Guard {
    port: u16,
    any_host: bool,
}

impl Guard {
    /// For a console on `addr`: on a loopback address, only a loopback `Host` with the same port
    /// is answered; with `allow_remote`, any.
    pub fn new(addr: SocketAddr, allow_remote: bool) -> Guard {
        Guard { port: addr.port(), any_host: allow_remote || !is_loopback(addr.ip()) }
    }

    /// True when a request naming `host` may be answered.
    pub fn admits(&self, host: Option<&str>) -> bool {
        if self.any_host {
            return true;
        }
        let Some(host) = host else { return false };
        let Some((name, port)) = host.rsplit_once(':') else { return false };
        if port.parse::<u16>().ok() != Some(self.port) {
            return false;
        }
        let name = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
        name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(is_loopback)
    }
}

/// Serves `state` on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, state: Arc<State>, guard: Guard, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((conn, _)) = accepted else { continue };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&state, guard, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(conn), service)
                .await;
            drop(permit);
        });
    }
}

fn respond(state: &State, guard: Guard, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok());
    if !guard.admits(host) {
        return text(
            StatusCode::FORBIDDEN,
            "this console answers only requests addressed to a loopback host and its port",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "the console is read-only: GET only");
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let uri = req.uri();
    if uri.path_and_query().is_some_and(|pq| pq.as_str().len() > MAX_URI_BYTES) {
        return text(StatusCode::URI_TOO_LONG, "the request is too long");
    }
    let path = uri.path();
    if let Some(name) = path.strip_prefix("/api/") {
        return match api::answer(state, name, uri.query().unwrap_or("")) {
            Ok(json) => body(StatusCode::OK, "application/json", json.to_string().into()),
            Err(Failure::Bad(m)) => error(StatusCode::BAD_REQUEST, &m),
            Err(Failure::NotFound(m)) => error(StatusCode::NOT_FOUND, &m),
        };
    }
    match assets::get(path) {
        Some((ty, bytes)) => body(StatusCode::OK, ty, Bytes::from_static(bytes)),
        None => text(StatusCode::NOT_FOUND, "not found"),
    }
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    body(status, "application/json", serde_json::json!({"error": message}).to_string().into())
}

fn text(status: StatusCode, message: &'static str) -> Response<Full<Bytes>> {
    body(status, "text/plain; charset=utf-8", Bytes::from_static(message.as_bytes()))
}

fn body(status: StatusCode, content_type: &'static str, bytes: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(bytes));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(addr: &str, allow_remote: bool) -> Guard {
        Guard::new(addr.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 1))), allow_remote)
    }

    #[test]
    fn a_loopback_console_answers_loopback_hosts_on_its_port() {
        let g = guard("127.0.0.1:8080", false);
        for h in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST:8080", "[::1]:8080", "127.0.0.2:8080"] {
            assert!(g.admits(Some(h)), "{h}");
        }
    }

    #[test]
    fn a_loopback_console_refuses_rebound_names_and_other_ports() {
        let g = guard("127.0.0.1:8080", false);
        for h in ["evil.example:8080", "127.0.0.1:9090", "127.0.0.1", "localhost.evil.example:8080", ""] {
            assert!(!g.admits(Some(h)), "{h}");
        }
        assert!(!g.admits(None));
    }

    #[test]
    fn a_remote_console_answers_any_host() {
        assert!(guard("0.0.0.0:8080", true).admits(Some("console.internal:8080")));
        assert!(guard("127.0.0.1:8080", true).admits(None));
    }
}
