//! The `rolegate.v1.Authorizer` service: convert, wait for `min_revision`, decide (through the
//! cache when it is on), convert back — inside one span per call, with metrics and the decision
//! log.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::convert::wire::{BatchCall, CheckCall};
use super::convert::{self, Invalid, Limits};
use crate::cache::{DecisionCache, Key};
use crate::shadow::{Job, Shadow};
use rolegate_api::{self as api, authorizer_server};
use rolegate_engine::{Context, Decision, Query, RequestError, Resource, Snapshot, decide};
use rolegate_source::store::{NotReady, Store};
use rolegate_telemetry::metrics::Method;
use rolegate_telemetry::{Telemetry, decision_log, otel};

/// The span of one call, on the RPC target so it exists only while traces are exported: the
/// protocol's fields (`grpc SERVICE / METHOD` or `http POST ROUTE`), then the outcome and
/// rolegate's own fields, every one declared up front (a span records only declared fields) and
/// the same on every API, so one trace query finds decisions however they were asked for.
macro_rules! call_span {
    (grpc $service:literal / $method:literal) => {
        call_span!(
            @ concat!($service, "/", $method),
            rpc.system = "grpc",
            rpc.service = $service,
            rpc.method = $method
        )
    };
    (http POST $route:literal) => {
        call_span!(@ concat!("POST ", $route), http.request.method = "POST", http.route = $route)
    };
    (@ $name:expr, $($protocol:tt)*) => {
        ::tracing::info_span!(
            target: ::rolegate_telemetry::RPC_TARGET,
            $name,
            otel.kind = "server",
            otel.status_code = ::tracing::field::Empty,
            $($protocol)*,
            rpc.grpc.status_code = ::tracing::field::Empty,
            rolegate.tenant = ::tracing::field::Empty,
            rolegate.action = ::tracing::field::Empty,
            rolegate.allowed = ::tracing::field::Empty,
            rolegate.reason = ::tracing::field::Empty,
            rolegate.rule = ::tracing::field::Empty,
            rolegate.cache_hit = ::tracing::field::Empty,
            rolegate.revision = ::tracing::field::Empty,
        )
    };
}

mod evaluations;
pub use evaluations::{ActionSearch, Actions, Evaluated, Evaluations, Item, Semantic};
mod inspect;
mod route;
pub use route::AuthorizerService;
mod unary;

/// Why a call failed; turned into a gRPC status in exactly one place.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// A field is wrong.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The request does not fit the tenant's schema.
    #[error("{field}: {source}")]
    Request {
        /// The field, e.g. `items[3].action`.
        field: String,
        /// What is wrong.
        source: RequestError,
    },
    /// No usable snapshot.
    #[error(transparent)]
    NotReady(#[from] NotReady),
    /// A task of the call ended without an answer (it panicked or was cancelled): never a
    /// decision.
    #[error("{0}")]
    Internal(String),
}

/// Characters of an error message sent to the caller; each echo of its input is shorter still
/// (`convert::ECHO_CHARS`), this bounds their sum.
const MESSAGE_CHARS: usize = 1024;

impl From<CallError> for Status {
    fn from(e: CallError) -> Status {
        let message = convert::shorten(&e.to_string(), MESSAGE_CHARS).into_owned();
        match e {
            CallError::Invalid(_) | CallError::Request { .. } => Status::invalid_argument(message),
            CallError::NotReady(_) => Status::unavailable(message),
            CallError::Internal(_) => Status::internal(message),
        }
    }
}

/// Metadata key that sets the decision instant when the server allows it.
pub const NOW_HEADER: &str = "rolegate-now";

/// The instant a call is decided at, and whether it is the server's clock.
#[derive(Clone, Copy, Debug)]
struct When {
    at: Timestamp,
    is_clock: bool,
}

/// A decision made for this call, or shared with the cache (no allocation when the cache is off).
enum Decided {
    Fresh(Decision),
    Shared(Arc<Decision>),
}

impl std::ops::Deref for Decided {
    type Target = Decision;

    fn deref(&self) -> &Decision {
        match self {
            Decided::Fresh(d) => d,
            Decided::Shared(d) => d,
        }
    }
}

/// Per-call facts for telemetry.
struct Call {
    span: tracing::Span,
    /// The request's metadata: the decision log reads the caller's trace id from it only for
    /// a line it writes.
    metadata: tonic::metadata::MetadataMap,
    /// The wall clock when the call began (not a `rolegate-now` instant): the decision log's time.
    clock: Timestamp,
}

/// A `Check` request with its fields checked and converted, before its snapshot is taken.
struct Checked {
    tenant: String,
    principal: String,
    action: String,
    resource: Resource,
    context: Context,
    min_revision: u64,
}

/// A `CheckBatch` request with its fields checked and converted.
struct BatchChecked {
    tenant: String,
    principal: String,
    context: Context,
    min_revision: u64,
    items: Vec<(String, Resource)>,
}

/// A call answered on the spot, or its request back when the answer must wait for a snapshot
/// (a `min_revision` not yet served, a tenant loaded on demand).
pub(crate) enum Now<Resp, Req> {
    /// The answer.
    Done(Result<Response<Resp>, Status>),
    /// The request, untouched.
    Wait(Request<Req>),
}

/// The service state.
#[derive(Clone, Debug)]
pub struct Authorizer {
    store: Arc<Store>,
    cache: Option<DecisionCache>,
    limits: Limits,
    min_revision_wait: Duration,
    /// Honour the `rolegate-now` header: decide at a caller-given instant (simulations, tests).
    now_header: bool,
    telemetry: Arc<Telemetry>,
    /// Decides sampled calls again on a candidate policy, off the response path.
    shadow: Option<Shadow>,
}

impl Authorizer {
    /// A service over `store`.
    pub fn new(store: Arc<Store>, cache: Option<DecisionCache>, limits: Limits, min_revision_wait: Duration) -> Self {
        Authorizer {
            store,
            cache,
            limits,
            min_revision_wait,
            now_header: false,
            telemetry: Arc::default(),
            shadow: None,
        }
    }

    /// Lets callers choose the decision instant with the `rolegate-now` header.
    pub fn with_now_header(mut self, allow: bool) -> Self {
        self.now_header = allow;
        self
    }

    /// Compares sampled calls with a candidate policy (`--shadow-policies`).
    pub fn with_shadow(mut self, shadow: Option<Shadow>) -> Self {
        self.shadow = shadow;
        self
    }

    /// Records metrics, spans and the decision log through `telemetry`.
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Self {
        self.telemetry = telemetry;
        self
    }

    fn now<T>(&self, req: &Request<T>) -> Result<When, CallError> {
        let clock = When { at: Timestamp::now(), is_clock: true };
        if !self.now_header {
            return Ok(clock);
        }
        match req.metadata().get(NOW_HEADER).map(|v| v.to_str().unwrap_or_default()) {
            None => Ok(clock),
            Some(v) => v.parse().map(|at| When { at, is_clock: false }).map_err(|_| {
                let message = format!("`{}` is not an RFC 3339 instant", convert::echo(v));
                Invalid { field: NOW_HEADER.into(), message }.into()
            }),
        }
    }

    /// Decides one query, through the cache when it is on; `item` names the batch item in
    /// errors. Returns the decision and whether it came from the cache.
    fn decide(
        &self,
        snapshot: &Snapshot,
        q: &Query<'_>,
        now: When,
        item: Option<usize>,
    ) -> Result<(Decided, bool), CallError> {
        let field = || item.map_or_else(|| "action".to_owned(), |i| format!("items[{i}].action"));
        let wrap = |source| CallError::Request { field: field(), source };
        // A cached answer holds from when it was made until `valid_until`: only for the clock.
        let cache = self.cache.as_ref().filter(|_| now.is_clock);
        let now = now.at;
        let Some(cache) = cache else {
            return decide(snapshot, q, now).map(|d| (Decided::Fresh(d), false)).map_err(wrap);
        };
        let generation = snapshot.tenant(q.tenant).map_or(0, |t| t.generation);
        let key = Key::new(q, generation);
        let m = &self.telemetry.metrics;
        if let Some(hit) = cache.get(&key, now) {
            m.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok((Decided::Shared(hit), true));
        }
        m.cache_misses.fetch_add(1, Ordering::Relaxed);
        let d = Arc::new(decide(snapshot, q, now).map_err(wrap)?);
        cache.insert(key, d.clone(), now);
        Ok((Decided::Shared(d), false))
    }

    /// Counts a decision and logs it when the decision log asks for it.
    fn observe(&self, method: Method, q: &Query<'_>, d: &Decision, revision: u64, call: &Call) {
        self.telemetry.metrics.decision(method, d.reason);
        if let Some(log) = &self.telemetry.decision_log
            && log.wants(d)
        {
            let trace_id = otel::trace_id(&call.metadata);
            let trace_id = trace_id.as_deref();
            log.write(&decision_log::Entry { query: q, decision: d, revision, trace_id, time: call.clock });
        }
    }

    /// A `Check` request's fields checked and converted.
    fn checked(&self, req: CheckCall, call: &Call) -> Result<Checked, CallError> {
        let CheckCall { tenant, principal, action, resource, context, min_revision } = req;
        let l = &self.limits;
        l.id("tenant", &tenant)?;
        l.id("principal", &principal)?;
        l.id("action", &action)?;
        call.span.record("rolegate.tenant", tenant.as_str());
        call.span.record("rolegate.action", action.as_str());
        let resource = l.resource(&|| "resource".into(), resource)?;
        let context = l.context("context", context)?;
        Ok(Checked { tenant, principal, action, resource, context, min_revision })
    }

    /// Decides a checked `Check` on `snapshot`.
    fn check(
        &self,
        checked: Checked,
        snapshot: &Snapshot,
        now: When,
        call: &Call,
    ) -> Result<api::CheckResponse, CallError> {
        let Checked { tenant, principal, action, resource, context, min_revision: _ } = checked;
        let q =
            Query { tenant: &tenant, principal: &principal, action: &action, resource: &resource, context: &context };
        let (d, hit) = self.decide(snapshot, &q, now, None)?;
        let revision = snapshot.tenant(&tenant).map_or(0, |t| t.revision);
        let span = &call.span;
        span.record("rolegate.allowed", d.allowed);
        span.record("rolegate.reason", d.reason.as_str());
        span.record("rolegate.rule", d.rule.as_deref().unwrap_or_default());
        span.record("rolegate.cache_hit", hit);
        span.record("rolegate.revision", i64::try_from(revision).unwrap_or(i64::MAX));
        self.observe(Method::Check, &q, &d, revision, call);
        let response = api::CheckResponse { decision: Some(convert::decision(&d)), revision };
        if let Some(shadow) = self.shadow.as_ref().filter(|s| s.sampled()) {
            let live = d.clone();
            let now = now.at;
            shadow.submit(Job { tenant, principal, action, resource, context, now, live, live_revision: revision });
        }
        Ok(response)
    }

    /// A `CheckBatch` request's fields checked and converted.
    fn batch_checked(&self, req: BatchCall, call: &Call) -> Result<BatchChecked, CallError> {
        let BatchCall { tenant, principal, context, min_revision, items } = req;
        let l = &self.limits;
        l.id("tenant", &tenant)?;
        l.id("principal", &principal)?;
        call.span.record("rolegate.tenant", tenant.as_str());
        if items.len() > l.max_batch_items {
            let msg = format!("has {} items, the limit is {}", items.len(), l.max_batch_items);
            return Err(Invalid { field: "items".into(), message: msg }.into());
        }
        let context = l.context("context", context)?;
        let mut converted = Vec::with_capacity(items.len());
        for (i, (action, resource)) in items.into_iter().enumerate() {
            l.check_id(&action).map_err(|m| Invalid { field: format!("items[{i}].action"), message: m })?;
            converted.push((action, l.resource(&|| format!("items[{i}].resource"), resource)?));
        }
        Ok(BatchChecked { tenant, principal, context, min_revision, items: converted })
    }

    /// Decides a checked `CheckBatch` on `snapshot`: one snapshot for the whole batch.
    fn check_batch(
        &self,
        checked: BatchChecked,
        snapshot: &Snapshot,
        now: When,
        call: &Call,
    ) -> Result<api::CheckBatchResponse, CallError> {
        let BatchChecked { tenant, principal, context, min_revision: _, items: converted } = checked;
        let revision = snapshot.tenant(&tenant).map_or(0, |t| t.revision);
        call.span.record("rolegate.revision", i64::try_from(revision).unwrap_or(i64::MAX));
        let mut decided = Vec::with_capacity(converted.len());
        for (i, (action, resource)) in converted.iter().enumerate() {
            let q = Query { tenant: &tenant, principal: &principal, action, resource, context: &context };
            decided.push(self.decide(snapshot, &q, now, Some(i))?.0);
        }
        // Counted and logged only once the whole batch is known to be valid.
        let mut decisions = Vec::with_capacity(decided.len());
        for ((action, resource), d) in converted.iter().zip(&decided) {
            let q = Query { tenant: &tenant, principal: &principal, action, resource, context: &context };
            self.observe(Method::CheckBatch, &q, d, revision, call);
            decisions.push(convert::decision(d));
        }
        if let Some(shadow) = &self.shadow {
            for ((action, resource), d) in converted.into_iter().zip(&decided) {
                if shadow.sampled() {
                    shadow.submit(Job {
                        tenant: tenant.clone(),
                        principal: principal.clone(),
                        action,
                        resource,
                        context: context.clone(),
                        now: now.at,
                        live: (**d).clone(),
                        live_revision: revision,
                    });
                }
            }
        }
        Ok(api::CheckBatchResponse { decisions, revision })
    }

    async fn plan(&self, req: api::PlanRequest, now: When, call: Call) -> Result<api::PlanResponse, CallError> {
        let api::PlanRequest { tenant, principal, action, context, min_revision } = req;
        let l = &self.limits;
        l.id("tenant", &tenant)?;
        l.id("principal", &principal)?;
        l.id("action", &action)?;
        let span = &call.span;
        span.record("rolegate.tenant", tenant.as_str());
        span.record("rolegate.action", action.as_str());
        let context = l.context("context", context)?;
        let snapshot = self.store.at_least(&tenant, min_revision, self.min_revision_wait).await?;
        let p = rolegate_engine::plan(&snapshot, &tenant, &principal, &action, &context, now.at)
            .map_err(|source| CallError::Request { field: "action".into(), source })?;
        let revision = snapshot.tenant(&tenant).map_or(0, |t| t.revision);
        span.record("rolegate.allowed", p.filter != rolegate_engine::Filter::Constant(false));
        span.record("rolegate.reason", p.reason.as_str());
        span.record("rolegate.revision", i64::try_from(revision).unwrap_or(i64::MAX));
        // A plan is no decision about one resource: counted, traced, not in the decision log.
        self.telemetry.metrics.decision(Method::Plan, p.reason);
        Ok(rolegate_api::plan::response(&p, revision))
    }

    /// [`Store::ready`] for a call's tenant. An id over the size limit is not looked up (a
    /// hostile 4 MiB id would be hashed for nothing): the call's checks refuse it before the
    /// snapshot is used.
    fn ready(&self, tenant: &str, min_revision: u64) -> Option<Result<Arc<Snapshot>, NotReady>> {
        if tenant.len() > self.limits.max_string_bytes {
            return Some(Err(NotReady::NoSnapshot));
        }
        self.store.ready(tenant, min_revision)
    }

    /// `Check`, traced, answered on the spot when its snapshot needs no wait; else the
    /// request comes back for [`Authorizer::check_call`].
    pub(crate) fn check_now(&self, request: Request<CheckCall>) -> Now<api::CheckResponse, CheckCall> {
        let r = request.get_ref();
        let Some(snapshot) = self.ready(&r.tenant, r.min_revision) else { return Now::Wait(request) };
        let span = || call_span!(grpc "rolegate.v1.Authorizer" / "Check");
        Now::Done(self.traced_now(Method::Check, span, request, |req, now, call| {
            let checked = self.checked(req, call)?;
            self.check(checked, &*snapshot?, now, call)
        }))
    }

    /// `Check`, traced, waiting for its snapshot.
    pub(crate) async fn check_call(&self, request: Request<CheckCall>) -> Result<Response<api::CheckResponse>, Status> {
        let span = || call_span!(grpc "rolegate.v1.Authorizer" / "Check");
        self.traced(Method::Check, span, request, |req, now, call| async move {
            let checked = self.checked(req, &call)?;
            let snapshot = self.store.at_least(&checked.tenant, checked.min_revision, self.min_revision_wait).await?;
            self.check(checked, &snapshot, now, &call)
        })
        .await
    }

    /// `CheckBatch`, traced, answered on the spot when its snapshot needs no wait; else the
    /// request comes back for [`Authorizer::batch_call`].
    pub(crate) fn batch_now(&self, request: Request<BatchCall>) -> Now<api::CheckBatchResponse, BatchCall> {
        let r = request.get_ref();
        let Some(snapshot) = self.ready(&r.tenant, r.min_revision) else { return Now::Wait(request) };
        let span = || call_span!(grpc "rolegate.v1.Authorizer" / "CheckBatch");
        Now::Done(self.traced_now(Method::CheckBatch, span, request, |req, now, call| {
            let checked = self.batch_checked(req, call)?;
            self.check_batch(checked, &*snapshot?, now, call)
        }))
    }

    /// `CheckBatch`, traced, waiting for its snapshot.
    pub(crate) async fn batch_call(
        &self,
        request: Request<BatchCall>,
    ) -> Result<Response<api::CheckBatchResponse>, Status> {
        let span = || call_span!(grpc "rolegate.v1.Authorizer" / "CheckBatch");
        self.traced(Method::CheckBatch, span, request, |req, now, call| async move {
            let checked = self.batch_checked(req, &call)?;
            let snapshot = self.store.at_least(&checked.tenant, checked.min_revision, self.min_revision_wait).await?;
            self.check_batch(checked, &snapshot, now, &call)
        })
        .await
    }

    /// Runs one call inside its span, with the caller's trace context as parent, and records
    /// its latency and outcome.
    async fn traced<Req, Resp, F>(
        &self,
        method: Method,
        make_span: fn() -> tracing::Span,
        request: Request<Req>,
        run: impl FnOnce(Req, When, Call) -> F,
    ) -> Result<Response<Resp>, Status>
    where
        F: Future<Output = Result<Resp, CallError>>,
    {
        let start = Instant::now();
        let span = self.span(make_span, &request);
        let result = match self.call(request, &span) {
            Ok((req, now, call)) => run(req, now, call).instrument(span.clone()).await,
            Err(e) => Err(e),
        };
        self.finish(method, start, &span, result)
    }

    /// [`Authorizer::traced`] for a call that needs no wait: no future at all.
    fn traced_now<Req, Resp>(
        &self,
        method: Method,
        make_span: fn() -> tracing::Span,
        request: Request<Req>,
        run: impl FnOnce(Req, When, &Call) -> Result<Resp, CallError>,
    ) -> Result<Response<Resp>, Status> {
        let start = Instant::now();
        let span = self.span(make_span, &request);
        let result = match self.call(request, &span) {
            Ok((req, now, call)) => span.in_scope(|| run(req, now, &call)),
            Err(e) => Err(e),
        };
        self.finish(method, start, &span, result)
    }

    /// The call's span: a child of the caller's trace context when it is sampled, else none.
    fn span<Req>(&self, make_span: fn() -> tracing::Span, request: &Request<Req>) -> tracing::Span {
        match otel::sample(request.metadata()) {
            Some(parent) => {
                let span = make_span();
                let _ = span.set_parent(parent);
                span
            }
            None => tracing::Span::none(),
        }
    }

    /// The call's message, its decision instant and its facts for telemetry.
    fn call<Req>(&self, request: Request<Req>, span: &tracing::Span) -> Result<(Req, When, Call), CallError> {
        let now = self.now(&request)?;
        let clock = if now.is_clock { now.at } else { Timestamp::now() };
        let (metadata, _, message) = request.into_parts();
        Ok((message, now, Call { span: span.clone(), metadata, clock }))
    }

    /// Records a call's latency and, for an error, its status on the span.
    fn finish<Resp>(
        &self,
        method: Method,
        start: Instant,
        span: &tracing::Span,
        result: Result<Resp, CallError>,
    ) -> Result<Response<Resp>, Status> {
        self.telemetry.metrics.latency(method, start.elapsed());
        match result {
            Ok(resp) => Ok(Response::new(resp)),
            Err(e) => {
                // Counted by the guard in front of every service, with the errors tonic
                // raises before a handler runs.
                let status = Status::from(e);
                span.record("otel.status_code", "ERROR");
                span.record("rpc.grpc.status_code", status.code() as i32);
                Err(status)
            }
        }
    }
}

#[tonic::async_trait]
impl authorizer_server::Authorizer for Authorizer {
    // `AuthorizerService` serves these two with requests read by `convert::wire`; these are the
    // same calls for whoever serves the generated service alone.
    async fn check(&self, request: Request<api::CheckRequest>) -> Result<Response<api::CheckResponse>, Status> {
        match self.check_now(request.map(CheckCall::from)) {
            Now::Done(answer) => answer,
            Now::Wait(request) => self.check_call(request).await,
        }
    }

    async fn check_batch(
        &self,
        request: Request<api::CheckBatchRequest>,
    ) -> Result<Response<api::CheckBatchResponse>, Status> {
        match self.batch_now(request.map(BatchCall::from)) {
            Now::Done(answer) => answer,
            Now::Wait(request) => self.batch_call(request).await,
        }
    }

    async fn plan(&self, request: Request<api::PlanRequest>) -> Result<Response<api::PlanResponse>, Status> {
        let span = || call_span!(grpc "rolegate.v1.Authorizer" / "Plan");
        self.traced(Method::Plan, span, request, |req, now, call| Authorizer::plan(self, req, now, call)).await
    }
}
