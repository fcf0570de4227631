//! The `rolegate.v1.Inspector` service: Explain, Permissions and Who, served by the same
//! [`Authorizer`] state as Check — the same limits, `min_revision` wait, load shedding (the
//! guard in front of every service), metrics, spans and decision log.

use tonic::{Request, Response, Status};

use super::{Authorizer, Call, CallError, When};
use crate::convert::{self, DEFAULT_PAGE_SIZE, Invalid};
use rolegate_api::{self as api, inspector_server};
use rolegate_engine::{Page, Query, WhoError, explain};
use rolegate_telemetry::metrics::Method;

/// What `who` answers for a tenant the snapshot does not hold.
#[derive(Clone, Copy, Debug)]
pub(super) enum UnknownTenant {
    /// Nobody may act in it: an empty list at revision 0, as `Check` denies `UNKNOWN_TENANT`.
    Nobody,
    /// The caller named a tenant that does not exist: `INVALID_ARGUMENT` on `tenant`.
    Invalid,
}

impl Authorizer {
    async fn explain(&self, req: api::CheckRequest, now: When, call: Call) -> Result<api::ExplainResponse, CallError> {
        let api::CheckRequest { tenant, principal, action, resource, context, min_revision } = req;
        let l = &self.limits;
        l.id("tenant", &tenant)?;
        l.id("principal", &principal)?;
        l.id("action", &action)?;
        call.span.record("rolegate.tenant", tenant.as_str());
        call.span.record("rolegate.action", action.as_str());
        let resource = l.resource(&|| "resource".into(), resource)?;
        let context = l.context("context", context)?;
        let snapshot = self.store.at_least(&tenant, min_revision, self.min_revision_wait).await?;
        let q =
            Query { tenant: &tenant, principal: &principal, action: &action, resource: &resource, context: &context };
        let (d, steps) =
            explain(&snapshot, &q, now.at).map_err(|source| CallError::Request { field: "action".into(), source })?;
        let revision = snapshot.tenant(&tenant).map_or(0, |t| t.revision);
        call.span.record("rolegate.allowed", d.allowed);
        call.span.record("rolegate.reason", d.reason.as_str());
        call.span.record("rolegate.revision", i64::try_from(revision).unwrap_or(i64::MAX));
        self.observe(Method::Explain, &q, &d, revision, &call);
        Ok(api::ExplainResponse {
            decision: Some(convert::decision(&d)),
            revision,
            steps: steps.iter().map(convert::step).collect(),
        })
    }

    async fn permissions(
        &self,
        req: api::PermissionsRequest,
        now: When,
        call: Call,
    ) -> Result<api::PermissionsResponse, CallError> {
        let api::PermissionsRequest { tenant, principal, kind, context, min_revision } = req;
        let l = &self.limits;
        l.id("tenant", &tenant)?;
        l.id("principal", &principal)?;
        if kind.len() > l.max_string_bytes {
            let message = format!("is {} bytes, the limit is {}", kind.len(), l.max_string_bytes);
            return Err(Invalid { field: "kind".into(), message }.into());
        }
        call.span.record("rolegate.tenant", tenant.as_str());
        // Checked like Check's, though conditions are reported rather than evaluated.
        l.context("context", context)?;
        let snapshot = self.store.at_least(&tenant, min_revision, self.min_revision_wait).await?;
        let Some(t) = snapshot.tenant(&tenant) else {
            let reason = convert::reason(rolegate_engine::Reason::UnknownTenant) as i32;
            return Ok(api::PermissionsResponse { grants: Vec::new(), revision: 0, reason });
        };
        let p = t
            .permissions(&principal, &kind, now.at)
            .map_err(|e| Invalid { field: "kind".into(), message: e.to_string() })?;
        call.span.record("rolegate.revision", i64::try_from(t.revision).unwrap_or(i64::MAX));
        Ok(api::PermissionsResponse {
            grants: p.grants.iter().map(convert::grant).collect(),
            revision: t.revision,
            reason: p.reason.map_or(api::Reason::Unspecified as i32, |r| convert::reason(r) as i32),
        })
    }

    /// The members `Check` would allow. A tenant the snapshot does not hold has none (`Who`),
    /// or is the caller's error (`UnknownTenant::Invalid`, AuthZEN's subject search).
    pub(super) async fn who(
        &self,
        req: api::WhoRequest,
        now: When,
        call: Call,
        unknown: UnknownTenant,
    ) -> Result<api::WhoResponse, CallError> {
        let api::WhoRequest { tenant, action, resource, context, page_size, page_token, min_revision } = req;
        let l = &self.limits;
        l.id("tenant", &tenant)?;
        l.id("action", &action)?;
        call.span.record("rolegate.tenant", tenant.as_str());
        call.span.record("rolegate.action", action.as_str());
        let size = match usize::try_from(page_size) {
            Ok(0) => DEFAULT_PAGE_SIZE,
            Ok(n) if n <= l.max_page_size => n,
            _ => {
                let message = format!("is {page_size}, the limit is {}", l.max_page_size);
                return Err(Invalid { field: "page_size".into(), message }.into());
            }
        };
        if page_token.len() > l.max_string_bytes {
            let message = format!("is {} bytes, the limit is {}", page_token.len(), l.max_string_bytes);
            return Err(Invalid { field: "page_token".into(), message }.into());
        }
        let resource = l.resource(&|| "resource".into(), resource)?;
        let context = l.context("context", context)?;
        let snapshot = self.store.at_least(&tenant, min_revision, self.min_revision_wait).await?;
        let Some(t) = snapshot.tenant(&tenant) else {
            return match unknown {
                UnknownTenant::Nobody => {
                    Ok(api::WhoResponse { principals: Vec::new(), next_page_token: String::new(), revision: 0 })
                }
                UnknownTenant::Invalid => {
                    let message = format!("unknown tenant `{}`", convert::echo(&tenant));
                    Err(Invalid { field: "tenant".into(), message }.into())
                }
            };
        };
        call.span.record("rolegate.revision", i64::try_from(t.revision).unwrap_or(i64::MAX));
        let revision = t.revision;
        let tenant = t.clone();
        // A page decides up to every member of the tenant (milliseconds for tens of thousands):
        // off the runtime's workers, so Checks on the same worker do not wait behind it.
        let decided = tokio::task::spawn_blocking(move || {
            tenant.who(&action, &resource, &context, now.at, Page { token: &page_token, size })
        })
        .await;
        let page = match decided {
            Ok(page) => page,
            Err(e) => return Err(CallError::Internal(format!("the Who task failed: {e}"))),
        }
        .map_err(|e| match e {
            WhoError::Request(source) => CallError::Request { field: "action".into(), source },
            WhoError::PageToken => {
                Invalid { field: "page_token".into(), message: WhoError::PageToken.to_string() }.into()
            }
        })?;
        Ok(api::WhoResponse {
            principals: page.principals.iter().map(|p| p.to_string()).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
            revision,
        })
    }
}

#[tonic::async_trait]
impl inspector_server::Inspector for Authorizer {
    async fn explain(&self, request: Request<api::CheckRequest>) -> Result<Response<api::ExplainResponse>, Status> {
        let span = || call_span!(grpc "rolegate.v1.Inspector" / "Explain");
        self.traced(Method::Explain, span, request, |req, now, call| Authorizer::explain(self, req, now, call)).await
    }

    async fn permissions(
        &self,
        request: Request<api::PermissionsRequest>,
    ) -> Result<Response<api::PermissionsResponse>, Status> {
        let span = || call_span!(grpc "rolegate.v1.Inspector" / "Permissions");
        self.traced(Method::Permissions, span, request, |req, now, call| Authorizer::permissions(self, req, now, call))
            .await
    }

    async fn who(&self, request: Request<api::WhoRequest>) -> Result<Response<api::WhoResponse>, Status> {
        let span = || call_span!(grpc "rolegate.v1.Inspector" / "Who");
        self.traced(Method::Who, span, request, |req, now, call| {
            Authorizer::who(self, req, now, call, UnknownTenant::Nobody)
        })
        .await
    }
}
