//! Warnings about documents that load but probably do not say what their authors meant.

use jiff::Timestamp;
use rustc_hash::FxHashSet;

use super::diag::{Diagnostic, Report};
use super::document::{Document, Status};
use rolegate_engine::{BitSet, Effect, Tenant};

mod order;

/// Warns about roles never bound, bindings already expired, grants a deny rule always shadows,
/// active members with no binding, and deny rules whose order changes the answer (a later rule
/// whose alert or message an earlier one hides). Only the tenant's own document is linted; its template is
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
    for o in order::overlaps(tenant) {
        let (Some(first), Some(later)) = (tenant.rules.get(o.first), tenant.rules.get(o.later)) else { continue };
        // A pair inside the template is the template's to fix; it is reported where it is added.
        let Some((k, doc_rule)) = doc.rules.iter().enumerate().find(|(_, d)| *d.id.value == *later.id) else {
            continue;
        };
        let action = tenant.action_names.get(o.action as usize).map_or("?", |a| &**a);
        let more = if o.shared > 1 { format!(" (and {} more actions)", o.shared - 1) } else { String::new() };
        r.warn(
            doc_rule.id.at,
            format!("rules[{k}]"),
            format!(
                "rule `{}` is never reported where rule `{}` also denies `{action}`{more}: `{}` comes first and \
                 decides, so `{}`'s {} is lost there; move it first or make the conditions exclusive",
                later.id,
                first.id,
                first.id,
                later.id,
                o.lost.join(" and "),
            ),
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The lint's messages for a desk tenant with these rules.
    fn warnings(rules: &str) -> Vec<String> {
        let text = format!(
            "tenant: t
schema: {{customer: [view, export], conversation: [view, export]}}
roles: {{admin: {{allow: [\"*\"]}}}}
units: [{{id: hq}}, {{id: sales, parent: hq}}, {{id: finance, parent: hq}}]
members: [{{id: a, units: [sales], bindings: [{{role: admin, scope: tenant}}]}}]
rules:
{rules}"
        );
        let (doc, diags) = crate::parse_str("t.yaml", &text, None);
        assert!(diags.is_empty(), "{diags:#?}");
        let doc = doc.expect("parses");
        let tenant = crate::compile(&doc, None, 1).expect("compiles");
        let now = Timestamp::UNIX_EPOCH;
        lint(&doc, None, &tenant, now)
            .iter()
            .map(ToString::to_string)
            .filter(|w| w.contains("never reported"))
            .collect()
    }

    #[test]
    fn a_later_alerting_deny_hidden_by_an_earlier_one_is_reported_at_the_later_rule() {
        let w = warnings(
            "  - {id: no-export, effect: deny, actions: [\"*.export\"], when: {principal: {level: junior}}}
  - {id: export-alarm, effect: deny, actions: [customer.export], when: {in_unit: finance}, alert: true}
",
        );
        assert_eq!(w.len(), 1, "{w:#?}");
        assert!(w[0].starts_with("t.yaml:8:"), "{w:#?}");
        assert!(
            w[0].contains(
                "rule `export-alarm` is never reported where rule `no-export` also denies `customer.export`: \
                 `no-export` comes first and decides, so `export-alarm`'s alert is lost there"
            ),
            "{w:#?}"
        );
    }

    #[test]
    fn the_same_rules_in_the_other_order_or_with_exclusive_conditions_are_not_reported() {
        // The alerting rule first: it decides where both hold, nothing is lost.
        assert!(
            warnings(
                "  - {id: export-alarm, effect: deny, actions: [customer.export], when: {in_unit: finance}, alert: true}
  - {id: no-export, effect: deny, actions: [\"*.export\"], when: {principal: {level: junior}}}
"
            )
            .is_empty()
        );
        // Units in different subtrees, present against absent, disjoint ranges, a clause and its `not`.
        for (first, later) in [
            ("{in_unit: sales}", "{in_unit: finance}"),
            ("{resource: {vip: {present: true}}}", "{resource: {vip: {present: false}}}"),
            ("{context: {n: {lt: 3}}}", "{context: {n: {ge: 3}}}"),
            ("{resource: {unit: [sales]}}", "{resource: {unit: finance}}"),
            ("{in_unit: finance}", "{not: {in_unit: finance}}"),
        ] {
            let rules = format!(
                "  - {{id: one, effect: deny, actions: [customer.export], when: {first}}}
  - {{id: two, effect: deny, actions: [customer.export], when: {later}, alert: true, message: no}}
"
            );
            assert!(warnings(&rules).is_empty(), "{first} / {later}: {:#?}", warnings(&rules));
        }
    }

    #[test]
    fn overlapping_conditions_and_a_lost_message_are_reported() {
        for (first, later) in [
            // Nested units overlap; two values of a member attribute can both hold on a list.
            ("{in_unit: hq}", "{in_unit: finance}"),
            ("{principal: {level: junior}}", "{principal: {level: senior}}"),
            ("{context: {n: {lt: 3}}}", "{context: {n: {le: 3}}}"),
        ] {
            let rules = format!(
                "  - {{id: one, effect: deny, actions: [customer.export], when: {first}}}
  - {{id: two, effect: deny, actions: [\"*.export\"], when: {later}, message: ask finance}}
"
            );
            let w = warnings(&rules);
            assert_eq!(w.len(), 1, "{first} / {later}: {w:#?}");
            assert!(w[0].contains("`two`'s message is lost there"), "{w:#?}");
        }
    }
}
