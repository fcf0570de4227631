//! What a caller asks: the resource, the context and the request, owned or borrowed.

use std::net::IpAddr;

use super::value::Attrs;

/// The resource a request is about, as the caller knows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resource {
    /// Resource kind (`conversation`).
    pub kind: String,
    /// Resource id.
    pub id: String,
    /// Owning unit; empty when none.
    pub unit: String,
    /// Attributes (`assignee`, `admins`, `tags`, ...).
    pub attrs: Attrs,
}

/// Facts about the end user's request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Context {
    /// The end user's address.
    pub client_ip: Option<IpAddr>,
    /// Attributes (`active_conversations`, ...).
    pub attrs: Attrs,
}

/// An owned authorization request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request {
    /// Tenant id.
    pub tenant: String,
    /// Member id.
    pub principal: String,
    /// `kind.verb`.
    pub action: String,
    /// The resource acted on.
    pub resource: Resource,
    /// The request context.
    pub context: Context,
}

/// A borrowed request: lets a batch share tenant, principal and context across items.
#[derive(Clone, Copy, Debug)]
pub struct Query<'a> {
    /// Tenant id.
    pub tenant: &'a str,
    /// Member id.
    pub principal: &'a str,
    /// `kind.verb`.
    pub action: &'a str,
    /// The resource acted on.
    pub resource: &'a Resource,
    /// The request context.
    pub context: &'a Context,
}

impl Request {
    /// Borrows the request as a [`Query`].
    pub fn query(&self) -> Query<'_> {
        Query {
            tenant: &self.tenant,
            principal: &self.principal,
            action: &self.action,
            resource: &self.resource,
            context: &self.context,
        }
    }
}
