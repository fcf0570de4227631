//! Decisions for the AuthZEN binding: many (principal, action, resource, context) items on one
//! snapshot, and the actions a principal may do on one resource. The same conversion, limits,
//! cache, metrics, spans and decision log as `Check` — only the field names in errors and the
//! wire format differ.

use tonic::{Request, Response, Status};

use super::inspect::UnknownTenant;
use super::{Authorizer, Call, CallError, Decided, Invalid, When};
use rolegate_api as api;
pub use rolegate_api::authzen::{Item, Semantic};
use rolegate_engine::{Query, Resource};
use rolegate_telemetry::metrics::Method;

/// An AuthZEN evaluation (one item, `batch` false) or evaluations call for one tenant.
#[derive(Clone, Debug, Default)]
pub struct Evaluations {
    /// The tenant from the path.
    pub tenant: String,
    /// The questions, in order.
    pub items: Vec<Item>,
    /// Whether the call is an evaluations call: errors name `evaluations[i].…`.
    pub batch: bool,
    /// When to stop.
    pub semantic: Semantic,
}

/// The decisions made, in item order (fewer than the items when a semantic stopped early).
#[derive(Clone, Debug)]
pub struct Evaluated {
    /// One per item decided.
    pub decisions: Vec<api::Decision>,
    /// The tenant's revision on the snapshot used.
    pub revision: u64,
}

/// An AuthZEN action search: the actions of the resource's kind the subject may do on it.
#[derive(Clone, Debug, Default)]
pub struct ActionSearch {
    /// The tenant from the path.
    pub tenant: String,
    /// `subject.id`.
    pub principal: String,
    /// The resource; its kind chooses the actions.
    pub resource: Option<api::Resource>,
    /// The context.
    pub context: Option<api::Context>,
}

/// The allowed actions, as the verbs of the resource's kind, in schema order.
#[derive(Clone, Debug)]
pub struct Actions {
    /// The verbs (`can_read`, not `todo.can_read`).
    pub verbs: Vec<String>,
    /// The tenant's revision on the snapshot used.
    pub revision: u64,
}

/// The AuthZEN name of a field the gRPC conversion names: `kind` is `type`, `attrs` are
/// `properties`.
fn authzen_field(field: &str) -> String {
    field.replace(".kind", ".type").replace(".attrs", ".properties")
}

fn renamed(e: Invalid) -> CallError {
    CallError::Invalid(Invalid { field: authzen_field(&e.field), message: e.message })
}

impl Authorizer {
    /// Decides an AuthZEN evaluation or evaluations call: every item on one snapshot, in
    /// order, stopping as `semantic` says. The request's metadata carries `traceparent` and,
    /// when allowed, `rolegate-now`.
    pub async fn evaluations(&self, request: Request<Evaluations>) -> Result<Response<Evaluated>, Status> {
        let (method, span): (Method, fn() -> tracing::Span) = if request.get_ref().batch {
            (Method::AuthzenEvaluations, || call_span!(http POST "/tenants/{tenant}/access/v1/evaluations"))
        } else {
            (Method::AuthzenEvaluation, || call_span!(http POST "/tenants/{tenant}/access/v1/evaluation"))
        };
        self.traced(method, span, request, |req, now, call| self.evaluate(method, req, now, call)).await
    }

    /// The actions of the resource's kind `principal` may do on it.
    pub async fn action_search(&self, request: Request<ActionSearch>) -> Result<Response<Actions>, Status> {
        let span = || call_span!(http POST "/tenants/{tenant}/access/v1/search/action");
        self.traced(Method::AuthzenActionSearch, span, request, |req, now, call| self.actions(req, now, call)).await
    }

    /// The members `Check` would allow (`Who`), for an AuthZEN subject search: the same paging,
    /// with errors named as the AuthZEN request names its fields.
    pub async fn subject_search(
        &self,
        request: Request<api::WhoRequest>,
    ) -> Result<Response<api::WhoResponse>, Status> {
        let span = || call_span!(http POST "/tenants/{tenant}/access/v1/search/subject");
        self.traced(Method::AuthzenSubjectSearch, span, request, |req, now, call| async move {
            self.who(req, now, call, UnknownTenant::Invalid).await.map_err(|e| match e {
                CallError::Invalid(i) => {
                    let field = match i.field.as_str() {
                        "action" => "action.name".to_owned(),
                        "page_size" => "page.limit".to_owned(),
                        "page_token" => "page.token".to_owned(),
                        other => authzen_field(other),
                    };
                    CallError::Invalid(Invalid { field, message: i.message })
                }
                CallError::Request { source, .. } => CallError::Request { field: "action.name".into(), source },
                e => e,
            })
        })
        .await
    }

    async fn evaluate(&self, method: Method, req: Evaluations, now: When, call: Call) -> Result<Evaluated, CallError> {
        let Evaluations { tenant, items, batch, semantic } = req;
        let l = &self.limits;
        l.id("tenant", &tenant)?;
        call.span.record("rolegate.tenant", tenant.as_str());
        if items.len() > l.max_batch_items {
            let message = format!("has {} items, the limit is {}", items.len(), l.max_batch_items);
            return Err(Invalid { field: "evaluations".into(), message }.into());
        }
        // Built only for an error: a valid request formats no field names.
        let name = |i: usize, f: &str| if batch { format!("evaluations[{i}].{f}") } else { f.to_owned() };
        let mut converted = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let Item { principal, action, resource, context } = item;
            l.check_id(&principal).map_err(|m| Invalid { field: name(i, "subject.id"), message: m })?;
            l.check_id(&action).map_err(|m| Invalid { field: name(i, "action.name"), message: m })?;
            let resource = l.resource(&|| name(i, "resource"), resource).map_err(renamed)?;
            let context = l.context(&name(i, "context"), context).map_err(renamed)?;
            converted.push((principal, action, resource, context));
        }
        let snapshot = self.store.at_least(&tenant, 0, self.min_revision_wait).await?;
        let Some(revision) = snapshot.tenant(&tenant).map(|t| t.revision) else {
            let message = format!("unknown tenant `{}`", super::convert::echo(&tenant));
            return Err(Invalid { field: "tenant".into(), message }.into());
        };
        call.span.record("rolegate.revision", i64::try_from(revision).unwrap_or(i64::MAX));
        let mut decided: Vec<Decided> = Vec::with_capacity(converted.len());
        for (i, (principal, action, resource, context)) in converted.iter().enumerate() {
            let q = Query { tenant: &tenant, principal, action, resource, context };
            let (d, _) = self.decide(&snapshot, &q, now, Some(i)).map_err(|e| match e {
                CallError::Request { source, .. } => CallError::Request { field: name(i, "action.name"), source },
                e => e,
            })?;
            let stop = match semantic {
                Semantic::ExecuteAll => false,
                Semantic::DenyOnFirstDeny => !d.allowed,
                Semantic::PermitOnFirstPermit => d.allowed,
            };
            decided.push(d);
            if stop {
                break;
            }
        }
        if let ([d], false) = (decided.as_slice(), batch) {
            let span = &call.span;
            span.record("rolegate.action", converted.first().map_or("", |c| c.1.as_str()));
            span.record("rolegate.allowed", d.allowed);
            span.record("rolegate.reason", d.reason.as_str());
            span.record("rolegate.rule", d.rule.as_deref().unwrap_or_default());
        }
        // Counted and logged only once every item is known to be valid.
        let mut decisions = Vec::with_capacity(decided.len());
        for ((principal, action, resource, context), d) in converted.iter().zip(&decided) {
            let q = Query { tenant: &tenant, principal, action, resource, context };
            self.observe(method, &q, d, revision, &call);
            decisions.push(super::convert::decision(d));
        }
        Ok(Evaluated { decisions, revision })
    }

    async fn actions(&self, req: ActionSearch, now: When, call: Call) -> Result<Actions, CallError> {
        let ActionSearch { tenant, principal, resource, context } = req;
        let l = &self.limits;
        l.id("tenant", &tenant)?;
        l.id("subject.id", &principal)?;
        call.span.record("rolegate.tenant", tenant.as_str());
        let resource: Resource = l.resource(&|| "resource".into(), resource).map_err(renamed)?;
        let context = l.context("context", context).map_err(renamed)?;
        let snapshot = self.store.at_least(&tenant, 0, self.min_revision_wait).await?;
        let Some(t) = snapshot.tenant(&tenant) else {
            let message = format!("unknown tenant `{}`", super::convert::echo(&tenant));
            return Err(Invalid { field: "tenant".into(), message }.into());
        };
        let Some(kind) = t.kinds.iter().position(|k| **k == *resource.kind) else {
            let message = format!("unknown resource type `{}`", super::convert::echo(&resource.kind));
            return Err(Invalid { field: "resource.type".into(), message }.into());
        };
        let prefix = format!("{}.", resource.kind);
        let mut verbs = Vec::new();
        for (a, name) in t.action_names.iter().enumerate() {
            if t.action_kind.get(a).is_none_or(|k| *k as usize != kind) {
                continue;
            }
            let q =
                Query { tenant: &tenant, principal: &principal, action: name, resource: &resource, context: &context };
            let (d, _) = self.decide(&snapshot, &q, now, None)?;
            if d.allowed {
                verbs.push(name.strip_prefix(prefix.as_str()).unwrap_or(name).to_owned());
            }
        }
        Ok(Actions { verbs, revision: t.revision })
    }
}
