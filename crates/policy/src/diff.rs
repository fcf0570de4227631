//! What a policy change does (docs/operations.md, "Changing policies safely"): for every tenant,
//! member and action, the access the change grants or takes away, with the binding, role or rule
//! responsible. It compares compiled tenants, so reformatting a document is no change, and it
//! compares, per member and action, a canonical profile of everything a decision reads
//! ([`profile`]): when any Check answer differs between the two policies, that member and action
//! are reported (or, for a member whose status changed or an action added to or removed from the
//! schema, the member or the schema change is).

pub mod profile;
mod tenant;

use std::collections::BTreeSet;

use rolegate_engine::{Snapshot, Tenant};

pub use profile::{Access, DenyItem, GrantItem, ObligationItem, Reach, Residual, Status};

/// Everything a change does, tenant by tenant (sorted by id).
#[derive(Clone, Debug, Default)]
pub struct Diff {
    /// Tenants with any change.
    pub tenants: Vec<TenantDiff>,
}

/// What a change does to one tenant.
#[derive(Clone, Debug, Default)]
pub struct TenantDiff {
    /// Tenant id.
    pub tenant: String,
    /// Changes to the tenant's document as a whole: the tenant added or removed, schema actions,
    /// units, roles, rules, `everyone` bindings, `max_staleness`. What they do to each member is
    /// in `members`.
    pub notes: Vec<String>,
    /// Members whose access changed, sorted by id.
    pub members: Vec<MemberDiff>,
}

/// What a change does to one member.
#[derive(Clone, Debug)]
pub struct MemberDiff {
    /// Member id.
    pub member: String,
    /// Status before and after, when it changed.
    pub status: Option<(Status, Status)>,
    /// The member may now act where they could not, or longer.
    pub status_gained: bool,
    /// The member may no longer act, or less long.
    pub status_lost: bool,
    /// Actions whose access changed, sorted by name.
    pub actions: Vec<ActionDiff>,
}

/// What a change does to one member's access to one action.
#[derive(Clone, Debug)]
pub struct ActionDiff {
    /// `kind.verb`.
    pub action: String,
    /// Some request is allowed now that was not, or fewer obligations or denies apply.
    pub gained: bool,
    /// Some request allowed before is not now, or more obligations or denies apply.
    pub lost: bool,
    /// Deny rules, grants and obligations that no longer bear on the member.
    pub removed: Vec<Item>,
    /// Deny rules, grants and obligations that now bear on the member.
    pub added: Vec<Item>,
    /// The same items in another order: which binding or rule decides may differ.
    pub reordered: bool,
}

/// One deny rule, grant or obligation bearing on a member's access to an action.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// A deny rule that can apply.
    Deny(DenyItem),
    /// A binding that can grant the action or make it requestable.
    Grant(GrantItem),
    /// A mask or review rule that can apply to an allow.
    Obligation(ObligationItem),
}

impl Diff {
    /// True when the change does nothing.
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// True when some member gains access.
    pub fn gains(&self) -> bool {
        self.members().any(|m| m.status_gained || m.actions.iter().any(|a| a.gained))
    }

    /// True when some member loses access.
    pub fn loses(&self) -> bool {
        self.members().any(|m| m.status_lost || m.actions.iter().any(|a| a.lost))
    }

    fn members(&self) -> impl Iterator<Item = &MemberDiff> {
        self.tenants.iter().flat_map(|t| &t.members)
    }
}

/// The change from `old` to `new`, for every tenant of either (or only `only`, when given).
pub fn diff(old: &Snapshot, new: &Snapshot, only: Option<&str>) -> Diff {
    let mut names: BTreeSet<&str> = old.tenants().chain(new.tenants()).map(|t| &*t.name).collect();
    if let Some(only) = only {
        names.retain(|n| *n == only);
    }
    let tenants = names
        .into_iter()
        .map(|n| diff_tenant(n, old.tenant(n).map(|t| &**t), new.tenant(n).map(|t| &**t)))
        .filter(|t| !t.notes.is_empty() || !t.members.is_empty())
        .collect();
    Diff { tenants }
}

/// The change to one tenant; `None` on a side where it is absent.
pub fn diff_tenant(name: &str, old: Option<&Tenant>, new: Option<&Tenant>) -> TenantDiff {
    let notes = tenant::notes(old, new);
    let ids: BTreeSet<&str> = old.into_iter().chain(new).flat_map(|t| t.members.keys()).map(|k| &**k).collect();
    let actions: BTreeSet<&str> = old.into_iter().chain(new).flat_map(|t| t.action_names()).collect();
    let members = ids.into_iter().filter_map(|id| diff_member(id, old, new, &actions)).collect();
    TenantDiff { tenant: name.to_owned(), notes, members }
}

fn diff_member(id: &str, old: Option<&Tenant>, new: Option<&Tenant>, actions: &BTreeSet<&str>) -> Option<MemberDiff> {
    let (os, ns) = (profile::status(old, id), profile::status(new, id));
    let mut out = MemberDiff {
        member: id.to_owned(),
        status_gained: ns.may_act() && acts_longer(&ns, &os),
        status_lost: os.may_act() && acts_longer(&os, &ns),
        status: (os != ns).then(|| (os.clone(), ns.clone())),
        actions: Vec::new(),
    };
    for action in actions {
        let (before, after) = (access_of(old, id, &os, action), access_of(new, id, &ns, action));
        if before != after {
            out.actions.push(compare(action, &before, &after));
        }
    }
    (out.status.is_some() || !out.actions.is_empty()).then_some(out)
}

/// True when `a` lets the member act at some instant `b` does not.
fn acts_longer(a: &Status, b: &Status) -> bool {
    match (a, b) {
        (Status::Active(_), s) if !s.may_act() => true,
        (Status::Active(None), Status::Active(Some(_))) => true,
        (Status::Active(Some(x)), Status::Active(Some(y))) => x > y,
        _ => false,
    }
}

fn access_of(t: Option<&Tenant>, id: &str, status: &Status, action: &str) -> Access {
    let found = t.and_then(|t| Some((t, t.members.get(id)?, t.action(action)?)));
    match found {
        Some((t, m, a)) if status.may_act() => profile::access(t, m, a),
        _ => Access::default(),
    }
}

fn items(a: &Access) -> Vec<Item> {
    let denies = a.denies.iter().cloned().map(Item::Deny);
    let grants = a.grants.iter().cloned().map(Item::Grant);
    denies.chain(grants).chain(a.obligations.iter().cloned().map(Item::Obligation)).collect()
}

fn compare(action: &str, before: &Access, after: &Access) -> ActionDiff {
    let (old, new) = (items(before), items(after));
    let removed: Vec<Item> = old.iter().filter(|i| !new.contains(i)).cloned().collect();
    let added: Vec<Item> = new.iter().filter(|i| !old.contains(i)).cloned().collect();
    let widened = |g: &GrantItem, base: &Access| !base.grants.iter().any(|o| o.covers(g));
    let gained = removed.iter().any(|i| matches!(i, Item::Deny(_) | Item::Obligation(_)))
        || added.iter().any(|i| matches!(i, Item::Grant(g) if widened(g, before)));
    let lost = added.iter().any(|i| matches!(i, Item::Deny(_) | Item::Obligation(_)))
        || removed.iter().any(|i| matches!(i, Item::Grant(g) if widened(g, after)));
    let reordered = removed.is_empty() && added.is_empty();
    ActionDiff { action: action.to_owned(), gained, lost, removed, added, reordered }
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Deny(d) => d.fmt(f),
            Item::Grant(g) => g.fmt(f),
            Item::Obligation(o) => o.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn snapshot(text: &str) -> Snapshot {
        let (doc, diags) = crate::parse_str("t.yaml", text, None);
        assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
        let mut s = Snapshot::default();
        s.insert(Arc::new(crate::compile(&doc.unwrap(), None, 1).unwrap()));
        s
    }

    const BASE: &str = "tenant: t
schema: {customer: [view, export]}
roles: {agent: {allow: [customer.view]}}
units: [{id: eu}, {id: eu-west, parent: eu}]
members:
  - {id: rep, units: [eu-west], bindings: [{role: agent, scope: own_units}]}
rules:
  - {id: no-export-outsourced, effect: deny, actions: [customer.export], when: {principal: {employment: outsourced}}}
";

    #[test]
    fn reordered_keys_and_flow_style_are_no_change() {
        let block = "tenant: t
rules:
  - when: {principal: {employment: outsourced}}
    actions: [customer.export]
    effect: deny
    id: no-export-outsourced
members:
  - bindings:
      - {scope: own_units, role: agent}
    units: [eu-west]
    id: rep
units:
  - {parent: eu, id: eu-west}
  - {id: eu}
roles:
  agent:
    allow: [customer.view]
schema:
  customer: [export, view]
";
        assert!(diff(&snapshot(BASE), &snapshot(block), None).is_empty());
    }

    #[test]
    fn a_role_gaining_an_action_is_a_gain_for_the_member_bound_to_it() {
        let wider = BASE.replace("allow: [customer.view]", "allow: [customer.view, customer.export]");
        let d = diff(&snapshot(BASE), &snapshot(&wider), None);
        assert!(d.gains() && !d.loses());
        let t = &d.tenants[0];
        assert_eq!(t.notes, ["role `agent` now allows customer.export"]);
        let m = &t.members[0];
        assert_eq!((m.member.as_str(), m.actions.len()), ("rep", 1));
        let a = &m.actions[0];
        assert_eq!(a.action, "customer.export");
        assert_eq!(a.added[0].to_string(), "allowed on units eu-west (binding `rep#0`, role `agent`)");
    }

    #[test]
    fn a_member_becoming_outsourced_loses_export_to_the_deny_rule() {
        let wider = BASE.replace("allow: [customer.view]", "allow: [\"*\"]");
        let outsourced = wider.replace("units: [eu-west],", "units: [eu-west], attrs: {employment: outsourced},");
        let d = diff(&snapshot(&wider), &snapshot(&outsourced), None);
        assert!(d.loses() && !d.gains());
        let a = &d.tenants[0].members[0].actions[0];
        assert_eq!(a.action, "customer.export");
        assert_eq!(a.added[0].to_string(), "denied by rule `no-export-outsourced`");
        assert!(a.removed.iter().all(|i| matches!(i, Item::Grant(_))), "{a:?}");
    }
}
