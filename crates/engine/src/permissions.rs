//! What a member may do (docs/api.md, "Permissions"): every action of the schema (or of one
//! kind) a binding of the member grants somewhere, with its scope spelled out, the binding and
//! role it comes from, its window, whether a condition can take it away, and what the member may
//! request.

use std::sync::Arc;

use jiff::Timestamp;

use super::decide::Reason;
use super::snapshot::{ActionId, Binding, Member, Rule, Scope, Tenant, UnitId};
use crate::suggest;

/// A `kind` the tenant's schema does not have: a caller error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown kind `{kind}` for tenant `{tenant}`{hint}")]
pub struct UnknownKind {
    /// Tenant id.
    pub tenant: String,
    /// The kind as sent.
    pub kind: String,
    /// A "did you mean" hint, or empty.
    pub hint: String,
}

/// Where a grant holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantScope {
    /// Every resource of the tenant.
    Tenant,
    /// Resources whose unit is one of these (each unit's subtree spelled out, in tree order).
    Units(Vec<Arc<str>>),
    /// Resources whose attribute equals or contains the member's id.
    Relation(Arc<str>),
}

/// One action granted (or requestable) through one binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// `kind.verb`.
    pub action: Arc<str>,
    /// Where it holds.
    pub scope: GrantScope,
    /// The binding has a `when`, or a deny rule with a `when` names the action: a condition
    /// decides each request.
    pub conditional: bool,
    /// The binding's id.
    pub binding: Arc<str>,
    /// The binding's role.
    pub role: Arc<str>,
    /// Start of the binding's window, inclusive.
    pub from: Option<Timestamp>,
    /// End of the binding's window, exclusive.
    pub until: Option<Timestamp>,
    /// The role does not grant the action but lists it as requestable: the member may ask.
    pub requestable: bool,
    /// Deny rules with a condition that name the action: when one holds, it forbids.
    pub deny_rules: Vec<Arc<str>>,
}

/// A member's permissions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permissions {
    /// Set when the member may do nothing at all: unknown, disabled, expired, or rejected input
    /// (`NoGrant`).
    pub reason: Option<Reason>,
    /// Grants in schema order of their action, then binding order (member's, then `everyone`).
    pub grants: Vec<Grant>,
}

impl Tenant {
    /// The grants of `principal` at `now`, for every action or those of `kind` (empty: all).
    /// Bindings whose window has ended and scopes covering nothing are left out; a binding that
    /// starts later is listed with its window. An action a deny rule without a condition names
    /// is granted nowhere and left out.
    pub fn permissions(&self, principal: &str, kind: &str, now: Timestamp) -> Result<Permissions, UnknownKind> {
        let kind_id = match kind {
            "" => None,
            k => Some(self.kind_id(k)?),
        };
        let Some(member) = self.members.get(principal) else {
            return Ok(Permissions { reason: Some(Reason::UnknownPrincipal), grants: Vec::new() });
        };
        let inactive = if member.invalid.is_some() {
            Some(Reason::NoGrant)
        } else if member.disabled {
            Some(Reason::PrincipalDisabled)
        } else if member.expires.is_some_and(|e| now >= e) {
            Some(Reason::PrincipalExpired)
        } else {
            None
        };
        if inactive.is_some() {
            return Ok(Permissions { reason: inactive, grants: Vec::new() });
        }
        let mut grants = Vec::new();
        for (action, name) in self.action_names.iter().enumerate() {
            let Ok(action) = ActionId::try_from(action) else { break };
            if kind_id.is_some_and(|k| self.action_kind.get(action as usize) != Some(&k)) {
                continue;
            }
            self.action_grants(member, action, name, now, &mut grants);
        }
        Ok(Permissions { reason: None, grants })
    }

    fn action_grants(&self, member: &Member, action: ActionId, name: &Arc<str>, now: Timestamp, out: &mut Vec<Grant>) {
        let denies: Vec<&Rule> = self.deny_rules(action).collect();
        if denies.iter().any(|r| r.when.is_none()) {
            return;
        }
        let deny_rules: Vec<Arc<str>> = denies.iter().map(|r| r.id.clone()).collect();
        for b in member.bindings.iter().chain(self.everyone.iter()) {
            let Some(role) = self.roles.get(b.role as usize) else { continue };
            let has = role.allow.contains(action);
            if !(has || role.requestable.contains(action)) || b.until().is_some_and(|u| u <= now) {
                continue;
            }
            let Some(scope) = self.grant_scope(b, member) else { continue };
            out.push(Grant {
                action: name.clone(),
                scope,
                conditional: b.when.is_some() || !deny_rules.is_empty(),
                binding: b.id.clone(),
                role: role.name.clone(),
                from: b.from(),
                until: b.until(),
                requestable: !has,
                deny_rules: deny_rules.clone(),
            });
        }
    }

    fn deny_rules(&self, action: ActionId) -> impl Iterator<Item = &Rule> {
        let ids: &[u32] = self.denies.get(action as usize).map(|ids| &ids[..]).unwrap_or_default();
        ids.iter().filter_map(|i| self.rules.get(*i as usize))
    }

    /// The binding's scope with its units spelled out; `None` when it covers nothing.
    fn grant_scope(&self, b: &Binding, member: &Member) -> Option<GrantScope> {
        match &b.scope {
            Scope::Tenant => Some(GrantScope::Tenant),
            Scope::Relation(attr) => Some(GrantScope::Relation(Arc::from(&**attr))),
            Scope::Unit(u) => Some(GrantScope::Units(self.subtrees(std::slice::from_ref(u)))),
            Scope::OwnUnits if member.units.is_empty() => None,
            Scope::OwnUnits => Some(GrantScope::Units(self.subtrees(&member.units))),
        }
    }

    /// Every unit in or below one of `roots`, in tree (pre-)order, each once.
    pub fn subtrees(&self, roots: &[UnitId]) -> Vec<Arc<str>> {
        let mut found: Vec<(u32, &Arc<str>)> = self
            .unit_names
            .iter()
            .enumerate()
            .filter(|(v, _)| UnitId::try_from(*v).is_ok_and(|v| roots.iter().any(|r| self.unit_covers(*r, v))))
            .filter_map(|(v, name)| Some((self.unit_span.get(v)?.0, name)))
            .collect();
        found.sort_unstable_by_key(|(start, _)| *start);
        found.into_iter().map(|(_, n)| n.clone()).collect()
    }

    /// The kind id of `kind`, or an error naming it.
    fn kind_id(&self, kind: &str) -> Result<u32, UnknownKind> {
        match self.kinds.iter().position(|k| **k == *kind).map(u32::try_from) {
            Some(Ok(id)) => Ok(id),
            _ => Err(UnknownKind {
                tenant: self.name.to_string(),
                kind: kind.to_owned(),
                hint: suggest::hint(kind, self.kinds.iter().map(|k| &**k)),
            }),
        }
    }
}
