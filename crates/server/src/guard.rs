//! The guard in front of every gRPC service: one concurrency limit for the whole process, shared
//! by every listener, that sheds calls beyond it with `RESOURCE_EXHAUSTED` — except health
//! checks, which a probe must always get an answer to — and the error count of every
//! `Authorizer` call, including the ones tonic rejects before the handler runs (an undecodable
//! message is `INTERNAL`, an over-size one `OUT_OF_RANGE`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use tonic::Status;
use tonic::codegen::http;

use rolegate_telemetry::Metrics;
use rolegate_telemetry::metrics::Method;

/// Paths never shed: a liveness or readiness probe must not fail because the server is busy.
const EXEMPT: &str = "/grpc.health.v1.Health/";

/// What every listener's guard shares: the calls in flight, the limit and the metrics.
#[derive(Debug)]
struct Shared {
    in_flight: AtomicUsize,
    limit: usize,
    metrics: Arc<Metrics>,
}

/// One call's place under the limit, given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    /// A slot when fewer than `limit` calls are in flight; never waits. The count guards nothing
    /// but itself, so a compare-and-swap is all it takes (a semaphore's release would also lock
    /// its queue of waiters, and nothing here ever waits).
    fn take(self: &Arc<Self>) -> Option<Slot> {
        let mut n = self.in_flight.load(Ordering::Relaxed);
        loop {
            if n >= self.limit {
                return None;
            }
            match self.in_flight.compare_exchange_weak(n, n + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(Slot(self.clone())),
                Err(seen) => n = seen,
            }
        }
    }
}

/// Builds [`Guard`]s sharing one limit; clone it to use it on several listeners.
#[derive(Clone, Debug)]
pub struct GuardLayer {
    shared: Arc<Shared>,
}

impl GuardLayer {
    /// A limit of `limit` calls in flight (at least one), counted in `metrics`.
    pub fn new(limit: usize, metrics: Arc<Metrics>) -> Self {
        GuardLayer { shared: Arc::new(Shared { in_flight: AtomicUsize::new(0), limit: limit.max(1), metrics }) }
    }

    /// A slot for one call served outside the gRPC stack (the AuthZEN listener), from the same
    /// limit; `None`, counted as shed, when every slot is taken.
    pub fn try_admit(&self) -> Option<Slot> {
        let slot = self.shared.take();
        if slot.is_none() {
            self.shared.metrics.shed.fetch_add(1, Ordering::Relaxed);
        }
        slot
    }

    /// Calls in flight before shedding.
    pub fn limit(&self) -> usize {
        self.shared.limit
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

pub use answer::Guarded;

mod answer {
    // The projection pin-project-lite writes for the variants has fields it cannot document.
    #![allow(missing_docs)]
    use super::{Method, Slot, http};

    pin_project_lite::pin_project! {
        /// A guarded call's answer: the inner service's, or the shedding error. Not boxed: the
        /// guard adds no allocation to a call.
        #[project = GuardedProj]
        pub enum Guarded<F, RB> {
            /// A health check, passed through as it is.
            Exempt { #[pin] call: F },
            /// Shed before it ran: `answer` is `RESOURCE_EXHAUSTED`.
            Shed { answer: Option<http::Response<RB>> },
            /// Admitted: holds its slot until answered, and counts an error answer of `method`.
            Admitted { #[pin] call: F, slot: Option<Slot>, method: Option<Method> },
        }
    }
}
use answer::GuardedProj;

impl<F, RB, E> Future for Guarded<F, RB>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
    RB: Default,
{
    type Output = Result<http::Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GuardedProj::Exempt { call } => call.poll(cx),
            GuardedProj::Shed { answer } => Poll::Ready(Ok(answer.take().unwrap_or_default())),
            GuardedProj::Admitted { call, slot, method } => {
                let resp = ready!(call.poll(cx));
                // The slot is given back here, whatever the answer.
                if let (Some(slot), Ok(resp), Some(m)) = (slot.take(), &resp, *method)
                    && let Some(code) = status_of(resp)
                {
                    slot.0.metrics.error(m, code);
                }
                Poll::Ready(resp)
            }
        }
    }
}

impl<S, B, RB> tower::Service<http::Request<B>> for Guard<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    RB: Default,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = Guarded<S::Future, RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        if path.starts_with(EXEMPT) {
            return Guarded::Exempt { call: self.inner.call(req) };
        }
        let method = Method::from_path(path);
        let shared = &self.layer.shared;
        let Some(slot) = shared.take() else {
            shared.metrics.shed.fetch_add(1, Ordering::Relaxed);
            if let Some(m) = method {
                shared.metrics.error(m, tonic::Code::ResourceExhausted);
            }
            let status = Status::resource_exhausted(format!("over {} calls in flight; retry later", shared.limit));
            return Guarded::Shed { answer: Some(status.into_http()) };
        };
        Guarded::Admitted { call: self.inner.call(req), slot: Some(slot), method }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_run_out_at_the_limit_and_come_back_when_dropped() {
        let layer = GuardLayer::new(2, Arc::default());
        let a = layer.try_admit().expect("first slot");
        let b = layer.try_admit().expect("second slot");
        assert!(layer.try_admit().is_none(), "a third call over a limit of two");
        assert_eq!(layer.shared.metrics.shed.load(Ordering::Relaxed), 1);
        drop(a);
        let c = layer.try_admit().expect("the slot given back");
        assert!(layer.try_admit().is_none());
        drop((b, c));
        assert_eq!(layer.shared.in_flight.load(Ordering::Relaxed), 0);
        assert_eq!(GuardLayer::new(0, Arc::default()).limit(), 1, "a limit is at least one call");
    }
}
