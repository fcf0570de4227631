//! The guard in front of every gRPC service: one concurrency limit for the whole process, shared
//! by every listener, that sheds calls beyond it with `RESOURCE_EXHAUSTED` — except health
//! checks, which a probe must always get an answer to — and the error count of every
//! `Authorizer` call, including the ones tonic rejects before the handler runs (an undecodable
//! message is `INTERNAL`, an over-size one `OUT_OF_RANGE`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tonic::Status;
use tonic::codegen::http;

use rolegate_telemetry::Metrics;
use rolegate_telemetry::metrics::Method;

/// Paths never shed: a liveness or readiness probe must not fail because the server is busy.
const EXEMPT: &str = "/grpc.health.v1.Health/";

/// Builds [`Guard`]s sharing one limit; clone it to use it on several listeners.
#[derive(Clone, Debug)]
pub struct GuardLayer {
    permits: Arc<Semaphore>,
    limit: usize,
    metrics: Arc<Metrics>,
}

impl GuardLayer {
    /// A limit of `limit` calls in flight, counted in `metrics`.
    pub fn new(limit: usize, metrics: Arc<Metrics>) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        GuardLayer { permits: Arc::new(Semaphore::new(limit)), limit, metrics }
    }

    /// A slot for one call served outside the gRPC stack (the AuthZEN listener), from the same
    /// limit; `None`, counted as shed, when every slot is taken.
    pub fn try_admit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let permit = self.permits.clone().try_acquire_owned().ok();
        if permit.is_none() {
            self.metrics.shed.fetch_add(1, Ordering::Relaxed);
        }
        permit
    }

    /// Calls in flight before shedding.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard { inner, layer: self.clone() }
    }
}

/// The guarded service.
#[derive(Clone, Debug)]
pub struct Guard<S> {
    inner: S,
    layer: GuardLayer,
}

/// The gRPC status of a response sent without a body (every unary error), if it has one.
fn status_of<B>(resp: &http::Response<B>) -> Option<tonic::Code> {
    // A name made once: looking one up by `&str` parses and checks it on every call.
    const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
    let code = resp.headers().get(&GRPC_STATUS)?.to_str().ok()?.parse::<i32>().ok()?;
    Some(tonic::Code::from_i32(code)).filter(|c| *c != tonic::Code::Ok)
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, RB> tower::Service<http::Request<B>> for Guard<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        if path.starts_with(EXEMPT) {
            return Box::pin(self.inner.call(req));
        }
        let method = Method::from_path(path);
        let metrics = self.layer.metrics.clone();
        let Ok(permit) = self.layer.permits.clone().try_acquire_owned() else {
            metrics.shed.fetch_add(1, Ordering::Relaxed);
            if let Some(m) = method {
                metrics.error(m, tonic::Code::ResourceExhausted);
            }
            let status = Status::resource_exhausted(format!("over {} calls in flight; retry later", self.layer.limit));
            return Box::pin(std::future::ready(Ok(status.into_http())));
        };
        let call = self.inner.call(req);
        Box::pin(async move {
            let resp = call.await?;
            drop(permit);
            if let Some(m) = method
                && let Some(code) = status_of(&resp)
            {
                metrics.error(m, code);
            }
            Ok(resp)
        })
    }
}
