//! Warnings about documents that load but probably do not say what their authors meant.

use jiff::Timestamp;
use rustc_hash::FxHashSet;

use super::diag::{Diagnostic, Report};
use super::document::{Document, Status};
use rolegate_engine::{BitSet, Effect, Tenant};

/// Warns about roles never bound, bindings already expired, grants a deny rule always shadows,
/// and active members with no binding. Only the tenant's own document is linted; its template is
/// shared and may hold roles other tenants use.
pub fn lint(doc: &Document, tpl: Option<&Document>, tenant: &Tenant, now: Timestamp) -> Vec<Diagnostic> {
    let mut r = Report::new(doc.file.clone());
    let layers = || tpl.into_iter().chain(std::iter::once(doc));

    let mut used: FxHashSet<&str> = FxHashSet::default();
    for d in layers() {
        used.extend(d.everyone.iter().map(|b| b.role.value.as_str()));
        used.extend(d.roles.iter().flat_map(|role| &role.extends).map(|e| e.value.as_str()));
    }
    used.extend(doc.members.iter().flat_map(|m| &m.bindings).map(|b| b.role.value.as_str()));
    for role in &doc.roles {
        if !used.contains(role.name.value.as_str()) {
            r.warn(
                role.name.at,
                format!("roles.{}", role.name.value),
                format!("role `{}` is never bound", role.name.value),
            );
        }
    }

    let always_denied = always_denied(tenant);
    for (i, m) in doc.members.iter().enumerate() {
        if m.status == Status::Active && m.bindings.is_empty() && m.expires.is_none_or(|e| e > now) {
            r.warn(m.id.at, format!("members[{i}]"), format!("member `{}` has no binding", m.id.value));
        }
        for (k, b) in m.bindings.iter().enumerate() {
            let path = format!("members[{i}].bindings[{k}]");
            if let Some(until) = b.until.filter(|u| *u <= now) {
                r.warn(b.at, &path, format!("binding expired at {until}"));
            }
            let role = tenant.roles.iter().find(|role| *role.name == b.role.value);
            if let Some(role) = role.filter(|role| !role.allow.is_empty()) {
                let mut rest = role.allow.clone();
                rest.subtract(&always_denied);
                if rest.is_empty() {
                    r.warn(b.at, &path, format!("every action of role `{}` is always denied by a rule", role.name));
                }
            }
        }
    }
    r.diags
}

/// Actions a deny rule without a condition always forbids.
fn always_denied(tenant: &Tenant) -> BitSet {
    let mut set = BitSet::with_len(tenant.action_names.len());
    for (a, rules) in tenant.denies.iter().enumerate() {
        let unconditional = rules
            .iter()
            .filter_map(|i| tenant.rules.get(*i as usize))
            .any(|r| r.effect == Effect::Deny && r.when.is_none());
        if unconditional {
            set.insert(a as u32);
        }
    }
    set
}
