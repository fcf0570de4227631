//! The `rolegate.v1.Authorizer` service: convert, wait for `min_revision`, decide (through the
//! cache when it is on), convert back.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tonic::{Request, Response, Status};

use super::convert::{self, Invalid, Limits};
use crate::api::{self, authorizer_server};
use crate::cache::{DecisionCache, Key};
use crate::engine::{Decision, Query, RequestError, Snapshot, decide};
use crate::store::{NotReady, Store};

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
}

impl From<CallError> for Status {
    fn from(e: CallError) -> Status {
        match e {
            CallError::Invalid(_) | CallError::Request { .. } => Status::invalid_argument(e.to_string()),
            CallError::NotReady(_) => Status::unavailable(e.to_string()),
        }
    }
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
}

/// The instant a call is decided at, and whether it is the server's clock.
#[derive(Clone, Copy, Debug)]
struct When {
    at: Timestamp,
    is_clock: bool,
}

/// Metadata key that sets the decision instant when the server allows it.
pub const NOW_HEADER: &str = "rolegate-now";

impl Authorizer {
    /// A service over `store`.
    pub fn new(store: Arc<Store>, cache: Option<DecisionCache>, limits: Limits, min_revision_wait: Duration) -> Self {
        Authorizer { store, cache, limits, min_revision_wait, now_header: false }
    }

    /// Lets callers choose the decision instant with the `rolegate-now` header.
    pub fn with_now_header(mut self, allow: bool) -> Self {
        self.now_header = allow;
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
                Invalid { field: NOW_HEADER.into(), message: format!("`{v}` is not an RFC 3339 instant") }.into()
            }),
        }
    }

    /// Decides one query; `item` names the batch item in errors.
    fn decide(
        &self,
        snapshot: &Snapshot,
        q: &Query<'_>,
        now: When,
        item: Option<usize>,
    ) -> Result<Arc<Decision>, CallError> {
        let field = || item.map_or_else(|| "action".to_owned(), |i| format!("items[{i}].action"));
        let wrap = |source| CallError::Request { field: field(), source };
        // A cached answer is valid from when it was made until `valid_until`: only for the clock.
        let cache = self.cache.as_ref().filter(|_| now.is_clock);
        let now = now.at;
        let Some(cache) = cache else {
            return decide(snapshot, q, now).map(Arc::new).map_err(wrap);
        };
        let revision = snapshot.tenant(q.tenant).map_or(0, |t| t.revision);
        let key = Key::new(q, revision);
        if let Some(hit) = cache.get(&key, now) {
            return Ok(hit);
        }
        let d = Arc::new(decide(snapshot, q, now).map_err(wrap)?);
        cache.insert(key, d.clone(), now);
        Ok(d)
    }

    async fn check(&self, req: api::CheckRequest, now: When) -> Result<api::CheckResponse, CallError> {
        let api::CheckRequest { tenant, principal, action, resource, context, min_revision } = req;
        let l = &self.limits;
        l.id("tenant", &tenant)?;
        l.id("principal", &principal)?;
        l.id("action", &action)?;
        let resource = l.resource("resource", resource)?;
        let context = l.context("context", context)?;
        let snapshot = self.store.at_least(&tenant, min_revision, self.min_revision_wait).await?;
        let q =
            Query { tenant: &tenant, principal: &principal, action: &action, resource: &resource, context: &context };
        let d = self.decide(&snapshot, &q, now, None)?;
        let revision = snapshot.tenant(&tenant).map_or(0, |t| t.revision);
        Ok(api::CheckResponse { decision: Some(convert::decision(&d)), revision })
    }

    async fn check_batch(&self, req: api::CheckBatchRequest, now: When) -> Result<api::CheckBatchResponse, CallError> {
        let api::CheckBatchRequest { tenant, principal, context, min_revision, items } = req;
        let l = &self.limits;
        l.id("tenant", &tenant)?;
        l.id("principal", &principal)?;
        if items.len() > l.max_batch_items {
            let msg = format!("has {} items, the limit is {}", items.len(), l.max_batch_items);
            return Err(Invalid { field: "items".into(), message: msg }.into());
        }
        let context = l.context("context", context)?;
        let mut converted = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let api::BatchItem { action, resource } = item;
            l.id(&format!("items[{i}].action"), &action)?;
            converted.push((action, l.resource(&format!("items[{i}].resource"), resource)?));
        }
        // One snapshot for the whole batch.
        let snapshot = self.store.at_least(&tenant, min_revision, self.min_revision_wait).await?;
        let mut decisions = Vec::with_capacity(converted.len());
        for (i, (action, resource)) in converted.iter().enumerate() {
            let q = Query { tenant: &tenant, principal: &principal, action, resource, context: &context };
            let d = self.decide(&snapshot, &q, now, Some(i))?;
            decisions.push(convert::decision(&d));
        }
        let revision = snapshot.tenant(&tenant).map_or(0, |t| t.revision);
        Ok(api::CheckBatchResponse { decisions, revision })
    }
}

#[tonic::async_trait]
impl authorizer_server::Authorizer for Authorizer {
    async fn check(&self, request: Request<api::CheckRequest>) -> Result<Response<api::CheckResponse>, Status> {
        let now = self.now(&request)?;
        Ok(Response::new(Authorizer::check(self, request.into_inner(), now).await?))
    }

    async fn check_batch(
        &self,
        request: Request<api::CheckBatchRequest>,
    ) -> Result<Response<api::CheckBatchResponse>, Status> {
        let now = self.now(&request)?;
        Ok(Response::new(Authorizer::check_batch(self, request.into_inner(), now).await?))
    }
}
