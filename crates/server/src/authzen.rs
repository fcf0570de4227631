//! The AuthZEN Authorization API 1.0 over HTTP/JSON (docs/api.md, "AuthZEN"): HTTP/1.1 and
//! h2c on one listener, beside gRPC and on the same snapshot. Every decision goes through the
//! [`Authorizer`] the gRPC service uses — one code path, the same limits, cache, metrics, spans
//! and decision log; this module only routes, authenticates and translates JSON.
//!
//! Routes, for tenant `T`:
//! - `POST /tenants/T/access/v1/evaluation`, `.../evaluations`, `.../search/subject`,
//!   `.../search/action`;
//! - `GET /.well-known/authzen-configuration/tenants/T`: the PDP metadata.

mod token;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method as HttpMethod, Request, Response, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::authorizer::{ActionSearch, Authorizer, Evaluations};
use crate::callers::{Api, Callers};
use crate::config::Listen;
use crate::convert::{Invalid, Limits};
use crate::guard::GuardLayer;
use crate::peer::Peer;
use rolegate_api::authzen as json;
use rolegate_telemetry::Metrics;
use rolegate_telemetry::metrics::Method;
pub use token::Token;

/// The AuthZEN listener's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Where it listens.
    pub listen: Listen,
    /// A file holding the bearer token callers must present, if any.
    pub token_file: Option<PathBuf>,
}

/// Largest Subject Search page (`page.limit`); without one a page holds 100 members.
pub const MAX_PAGE: u64 = 1000;

/// What every request handler shares.
#[derive(Clone, Debug)]
pub struct Service {
    authorizer: Authorizer,
    limits: Limits,
    guard: GuardLayer,
    metrics: Arc<Metrics>,
    token: Option<Token>,
    /// Who may ask what, when a callers file is set.
    callers: Option<Arc<Callers>>,
    timeout: Duration,
    /// Scheme of the PDP identifier in the metadata: `http`, or `https` behind TLS.
    scheme: &'static str,
}

type Body = Full<Bytes>;

/// An error answer: the status and a message naming what is wrong.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Failure { status, message: message.into() }
    }

    fn code(&self) -> tonic::Code {
        match self.status {
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                tonic::Code::InvalidArgument
            }
            StatusCode::TOO_MANY_REQUESTS => tonic::Code::ResourceExhausted,
            StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
            StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
            StatusCode::FORBIDDEN => tonic::Code::PermissionDenied,
            StatusCode::GATEWAY_TIMEOUT => tonic::Code::DeadlineExceeded,
            _ => tonic::Code::Internal,
        }
    }
}

impl From<Invalid> for Failure {
    fn from(e: Invalid) -> Self {
        Failure::new(StatusCode::BAD_REQUEST, e.to_string())
    }
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        let status = match s.code() {
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange => StatusCode::BAD_REQUEST,
            tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
            tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure::new(status, s.message())
    }
}

/// The endpoint a request path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Evaluation,
    Evaluations,
    SubjectSearch,
    ActionSearch,
    Metadata,
}

impl Endpoint {
    /// The endpoint and tenant of a path, if it is one of ours.
    fn route(path: &str) -> Option<(Endpoint, &str)> {
        if let Some(tenant) = path.strip_prefix("/.well-known/authzen-configuration/tenants/") {
            return Some((Endpoint::Metadata, tenant)).filter(|_| !tenant.contains('/'));
        }
        let rest = path.strip_prefix("/tenants/")?;
        let (tenant, api) = rest.split_once('/')?;
        let endpoint = match api {
            "access/v1/evaluation" => Endpoint::Evaluation,
            "access/v1/evaluations" => Endpoint::Evaluations,
            "access/v1/search/subject" => Endpoint::SubjectSearch,
            "access/v1/search/action" => Endpoint::ActionSearch,
            _ => return None,
        };
        Some((endpoint, tenant))
    }

    /// The API group a callers file grants this endpoint with.
    fn api(self) -> Api {
        match self {
            Endpoint::Evaluation | Endpoint::Evaluations => Api::Check,
            Endpoint::SubjectSearch | Endpoint::ActionSearch => Api::Inspect,
            Endpoint::Metadata => Api::Open,
        }
    }

    fn method(self) -> Option<Method> {
        match self {
            Endpoint::Evaluation => Some(Method::AuthzenEvaluation),
            Endpoint::Evaluations => Some(Method::AuthzenEvaluations),
            Endpoint::SubjectSearch => Some(Method::AuthzenSubjectSearch),
            Endpoint::ActionSearch => Some(Method::AuthzenActionSearch),
            Endpoint::Metadata => None,
        }
    }
}

impl Service {
    /// A service deciding through `authorizer`, shedding with `guard`'s shared limit.
    pub fn new(
        authorizer: Authorizer,
        limits: Limits,
        guard: GuardLayer,
        metrics: Arc<Metrics>,
        token: Option<Token>,
        timeout: Duration,
    ) -> Self {
        Service { authorizer, limits, guard, metrics, token, callers: None, timeout, scheme: "http" }
    }

    /// Admits callers by the callers file, as on gRPC listeners.
    pub fn with_callers(mut self, callers: Option<Arc<Callers>>) -> Self {
        self.callers = callers;
        self
    }

    /// Says the listener is behind TLS: the metadata names `https` endpoints.
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.scheme = if tls { "https" } else { "http" };
        self
    }

    /// Answers one HTTP request; never fails at the HTTP level.
    pub async fn handle(self: Arc<Self>, peer: Peer, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        let request_id = req.headers().get("x-request-id").cloned();
        let route = Endpoint::route(req.uri().path()).map(|(e, t)| (e, t.to_owned()));
        let method = route.as_ref().and_then(|(e, _)| e.method());
        let answer = match route {
            None => Err(Failure::new(StatusCode::NOT_FOUND, format!("no AuthZEN endpoint at {}", req.uri().path()))),
            Some((endpoint, tenant)) => self.clone().endpoint(endpoint, tenant, &peer, req).await,
        };
        let mut resp = match answer {
            Ok(body) => json_response(StatusCode::OK, body),
            Err(f) => {
                if let Some(m) = method {
                    self.metrics.error(m, f.code());
                }
                let mut resp = Response::new(Full::from(format!("{}\n", f.message)));
                *resp.status_mut() = f.status;
                let headers = resp.headers_mut();
                headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
                match f.status {
                    StatusCode::UNAUTHORIZED => {
                        headers.insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
                    }
                    StatusCode::TOO_MANY_REQUESTS => {
                        headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                    }
                    StatusCode::METHOD_NOT_ALLOWED => {
                        headers.insert(header::ALLOW, header::HeaderValue::from_static("POST"));
                    }
                    _ => {}
                }
                resp
            }
        };
        if let Some(id) = request_id {
            resp.headers_mut().insert("x-request-id", id);
        }
        Ok(resp)
    }

    async fn endpoint(
        self: Arc<Self>,
        endpoint: Endpoint,
        tenant: String,
        peer: &Peer,
        req: Request<Incoming>,
    ) -> Result<String, Failure> {
        if let Some(token) = &self.token {
            token.admit(req.headers().get(header::AUTHORIZATION))?;
        }
        if let Some(callers) = &self.callers {
            let api = Some(endpoint.api());
            if let Err(why) = callers.admit(peer, api).and_then(|a| a.tenant(&tenant)) {
                callers.record_denial(api, req.uri().path(), Some(&tenant), &why);
                return Err(Failure::new(StatusCode::FORBIDDEN, why.0));
            }
        }
        let expected = if endpoint == Endpoint::Metadata { HttpMethod::GET } else { HttpMethod::POST };
        if req.method() != expected {
            let message = format!("{} takes {expected}, not {}", req.uri().path(), req.method());
            return Err(Failure::new(StatusCode::METHOD_NOT_ALLOWED, message));
        }
        self.limits.id("tenant", &tenant)?;
        if endpoint == Endpoint::Metadata {
            let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost").to_owned();
            return text(&self.metadata(&host, &tenant));
        }
        let Some(_permit) = self.guard.try_admit() else {
            let message = format!("over {} calls in flight; retry later", self.guard.limit());
            return Err(Failure::new(StatusCode::TOO_MANY_REQUESTS, message));
        };
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.post(endpoint, tenant, req)).await {
            Ok(answer) => answer,
            Err(_) => Err(Failure::new(StatusCode::GATEWAY_TIMEOUT, format!("not answered within {timeout:?}"))),
        }
    }

    /// The PDP metadata of `tenant`, with its endpoints under the base URL the caller used.
    fn metadata(&self, host: &str, tenant: &str) -> Value {
        let base = format!("{}://{host}/tenants/{tenant}", self.scheme);
        json!({
            "policy_decision_point": base,
            "access_evaluation_endpoint": format!("{base}/access/v1/evaluation"),
            "access_evaluations_endpoint": format!("{base}/access/v1/evaluations"),
            "search_subject_endpoint": format!("{base}/access/v1/search/subject"),
            "search_action_endpoint": format!("{base}/access/v1/search/action"),
        })
    }

    async fn post(&self, endpoint: Endpoint, tenant: String, req: Request<Incoming>) -> Result<String, Failure> {
        let (parts, body) = req.into_parts();
        let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            let message =
                format!("content-type: must be application/json, not `{}`", crate::convert::echo(content_type));
            return Err(Failure::new(StatusCode::BAD_REQUEST, message));
        }
        let max = self.limits.max_message_bytes;
        let bytes = match Limited::new(body, max).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(Failure::new(StatusCode::BAD_REQUEST, format!("body: over {max} bytes, the limit")));
            }
            Err(e) => return Err(Failure::new(StatusCode::BAD_REQUEST, format!("body: cannot be read: {e}"))),
        };
        let body = json::body(&bytes)?;
        // `traceparent` and `rolegate-now` are read from the metadata as for gRPC.
        let metadata = tonic::metadata::MetadataMap::from_headers(parts.headers);
        fn call<T>(metadata: &tonic::metadata::MetadataMap, req: T) -> tonic::Request<T> {
            tonic::Request::from_parts(metadata.clone(), tonic::Extensions::default(), req)
        }
        match endpoint {
            Endpoint::Evaluation | Endpoint::Evaluations => {
                let (items, semantic, batch) = match (endpoint, json::evaluations(&body, self.limits.max_batch_items)?)
                {
                    (Endpoint::Evaluations, Some((items, semantic))) => (items, semantic, true),
                    _ => (vec![json::evaluation(&body)?], Default::default(), false),
                };
                let req = Evaluations { tenant, items, batch, semantic };
                let done = self.authorizer.evaluations(call(&metadata, req)).await?.into_inner();
                let decisions: Vec<_> = done.decisions.iter().map(|d| json::decision(d, done.revision)).collect();
                match (batch, decisions.first()) {
                    (true, _) => text(&json::Evaluations { evaluations: decisions }),
                    (false, Some(d)) => text(d),
                    (false, None) => Err(Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "no decision")),
                }
            }
            Endpoint::ActionSearch => {
                let (principal, resource, context) = json::action_search(&body)?;
                let req = ActionSearch { tenant, principal, resource: Some(resource), context };
                let found = self.authorizer.action_search(call(&metadata, req)).await?.into_inner();
                let results = found.verbs.iter().map(|name| json::Action { name }).collect();
                let page = json::PageOut { next_token: "" };
                text(&json::Actions { page, results, context: json::Revision { revision: found.revision } })
            }
            Endpoint::SubjectSearch => {
                let search = json::subject_search(&body)?;
                let page_size = match search.limit {
                    None => 0,
                    Some(n) if n <= MAX_PAGE => n as u32,
                    Some(n) => {
                        let message = format!("page.limit: is {n}, the limit is {MAX_PAGE}");
                        return Err(Failure::new(StatusCode::BAD_REQUEST, message));
                    }
                };
                let item = search.item;
                let req = rolegate_api::WhoRequest {
                    tenant,
                    action: item.action,
                    resource: item.resource,
                    context: item.context,
                    page_size,
                    page_token: search.token,
                    min_revision: 0,
                };
                let found = self.authorizer.subject_search(call(&metadata, req)).await?.into_inner();
                let results =
                    found.principals.iter().map(|id| json::Subject { r#type: &search.subject_type, id }).collect();
                let page = json::PageOut { next_token: &found.next_page_token };
                text(&json::Search { page, results, context: json::Revision { revision: found.revision } })
            }
            Endpoint::Metadata => Err(Failure::new(StatusCode::METHOD_NOT_ALLOWED, "metadata takes GET")),
        }
    }
}

/// A value as JSON text, keeping the field order of its type.
fn text(value: &impl serde::Serialize) -> Result<String, Failure> {
    serde_json::to_string(value).map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    resp
}

/// Serves AuthZEN on `incoming` until `stop` turns true, then lets in-flight calls finish.
pub async fn serve(service: Arc<Service>, mut incoming: crate::conn::Connections, mut stop: watch::Receiver<bool>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio_stream::StreamExt as _;
    use tonic::transport::server::Connected as _;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let conn = tokio::select! {
            conn = incoming.next() => match conn {
                Some(Ok(conn)) => conn,
                _ => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let (svc, peer) = (service.clone(), conn.connect_info());
        let hyper_service = hyper::service::service_fn(move |req| svc.clone().handle(peer.clone(), req));
        let conn = builder.serve_connection(TokioIo::new(conn), hyper_service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}
