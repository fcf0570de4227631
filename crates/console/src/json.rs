//! The page's view of a tenant and of a member, as JSON: the unit tree with its members, a
//! member's bindings and their effective-permission matrix (actions × scopes), each cell with
//! the grants and rules that explain it.

use jiff::Timestamp;
use rolegate_engine::{ActionId, Binding, Decision, Member, Scope, Step, Tenant};
use rolegate_policy::diff::profile::{self, DenyItem, GrantItem};
use serde_json::{Value as Json, json};

/// Column labels in first-seen order: a member holds grants in a handful of scopes.
#[derive(Default)]
struct Columns(Vec<String>);

impl Columns {
    /// The position of `label`, added when new.
    fn of(&mut self, label: String) -> usize {
        match self.0.iter().position(|l| *l == label) {
            Some(i) => i,
            None => {
                self.0.push(label);
                self.0.len() - 1
            }
        }
    }
}

/// A member's standing: `active`, `disabled`, `expired` or `rejected`.
pub fn status(m: &Member, now: Timestamp) -> &'static str {
    if m.invalid.is_some() {
        "rejected"
    } else if m.disabled {
        "disabled"
    } else if m.expires.is_some_and(|e| now >= e) {
        "expired"
    } else {
        "active"
    }
}

fn unit_names<'a>(t: &'a Tenant, units: &[u32]) -> Vec<&'a str> {
    units.iter().filter_map(|u| t.unit_names.get(*u as usize)).map(|n| &**n).collect()
}

/// The tenant page: the unit tree in pre-order with depth and parent, and every member.
pub fn tenant(t: &Tenant, now: Timestamp) -> Json {
    let mut order: Vec<usize> = (0..t.unit_names.len()).collect();
    order.sort_unstable_by_key(|u| t.unit_span.get(*u).map_or(0, |s| s.0));
    let mut direct = vec![0usize; t.unit_names.len()];
    for m in &t.roster {
        for u in m.units.iter() {
            if let Some(c) = direct.get_mut(*u as usize) {
                *c += 1;
            }
        }
    }
    // INVARIANT: spans nest (pre-order intervals), so the open ancestors form a stack.
    let mut open: Vec<(u32, usize)> = Vec::new();
    let mut units = Vec::with_capacity(order.len());
    for u in order {
        let (start, end) = t.unit_span.get(u).copied().unwrap_or_default();
        while open.last().is_some_and(|(e, _)| *e <= start) {
            open.pop();
        }
        let parent = open.last().and_then(|(_, p)| t.unit_names.get(*p)).map(|n| &**n);
        units.push(json!({
            "id": t.unit_names.get(u).map(|n| &**n),
            "parent": parent,
            "depth": open.len(),
            "members": direct.get(u).copied().unwrap_or_default(),
        }));
        open.push((end, u));
    }
    let members: Vec<Json> = t
        .roster
        .iter()
        .map(|m| json!({"id": &*m.id, "status": status(m, now), "units": unit_names(t, &m.units)}))
        .collect();
    json!({
        "tenant": &*t.name,
        "revision": t.revision,
        "units": units,
        "members": members,
        "actions": t.action_names().collect::<Vec<_>>(),
        "kinds": t.kinds.iter().map(|k| &**k).collect::<Vec<_>>(),
    })
}

/// How the page names a binding's scope.
fn scope_label(t: &Tenant, scope: &Scope, member: &Member) -> String {
    match scope {
        Scope::Tenant => "tenant".to_owned(),
        Scope::Unit(u) => format!("unit {}", t.unit_names.get(*u as usize).map_or("?", |n| &**n)),
        Scope::OwnUnits => format!("own units ({})", unit_names(t, &member.units).join(", ")),
        Scope::Relation(attr) => format!("relation {attr}"),
    }
}

fn window(b: &Binding, now: Timestamp) -> &'static str {
    match (b.from(), b.until()) {
        (Some(f), _) if now < f => "starts later",
        (_, Some(u)) if now >= u => "ended",
        _ => "in force",
    }
}

/// A member: standing, units, attributes, bindings (own, then `everyone`) and the matrix.
pub fn member(t: &Tenant, m: &Member, now: Timestamp) -> Json {
    let all = || m.bindings.iter().map(|b| (b, false)).chain(t.everyone.iter().map(|b| (b, true)));
    let bindings: Vec<Json> = all()
        .map(|(b, everyone)| {
            json!({
                "id": &*b.id,
                "role": t.roles.get(b.role as usize).map(|r| &*r.name),
                "scope": scope_label(t, &b.scope, m),
                "from": b.from().map(|f| f.to_string()),
                "until": b.until().map(|u| u.to_string()),
                "when": b.when.is_some(),
                "window": window(b, now),
                "everyone": everyone,
            })
        })
        .collect();
    let attrs: Vec<Json> = m.attrs.0.iter().map(|(k, v)| json!({"name": k, "value": v.to_string()})).collect();
    json!({
        "id": &*m.id,
        "status": status(m, now),
        "why": m.invalid.as_deref(),
        "expires": m.expires.map(|e| e.to_string()),
        "units": unit_names(t, &m.units),
        "attrs": attrs,
        "bindings": bindings,
        "matrix": matrix(t, m, now),
        "now": now.to_string(),
    })
}

/// Cell states, strongest first.
const STATES: [&str; 4] = ["allowed", "conditional", "requestable", "none"];

/// The effective-permission matrix: one row per action of the schema, one column per scope the
/// member holds a grant in. Built from the access profile the diff uses, which has already
/// decided every condition on the member (their attributes, ids and units): a deny rule that
/// always applies to this member makes the row `denied`, one that never does is left out, and
/// what remains of a condition (resource, context, clock) makes a grant `conditional`.
fn matrix(t: &Tenant, m: &Member, now: Timestamp) -> Json {
    let perms = match t.permissions(&m.id, "", now) {
        Ok(p) => p,
        Err(e) => return json!({"error": e.to_string()}),
    };
    if let Some(reason) = perms.reason {
        return json!({"inactive": reason.as_str(), "columns": [], "tips": [], "rows": []});
    }
    let bindings: Vec<&Binding> = m.bindings.iter().chain(t.everyone.iter()).collect();
    let mut columns = Columns::default();
    let mut tips: Vec<String> = Vec::new();
    let mut rows = Vec::with_capacity(t.action_names.len());
    for (id, action) in t.action_names.iter().enumerate() {
        let Ok(id) = ActionId::try_from(id) else { break };
        let access = profile::access(t, m, id);
        let denied = access.denies.last().filter(|d| d.when.is_none()).map(|d| d.id.clone());
        let mut cells: Vec<(usize, usize, Vec<String>)> = Vec::new();
        if denied.is_none() {
            for g in access.grants.iter().filter(|g| g.until.is_none_or(|u| now < u)) {
                let label = match bindings.iter().find(|b| *b.id == *g.id) {
                    Some(b) => scope_label(t, &b.scope, m),
                    None => g.reach.to_string(),
                };
                let col = columns.of(label);
                if tips.len() <= col {
                    tips.push(g.reach.to_string());
                }
                let state = cell_state(g, !access.denies.is_empty(), now);
                match cells.iter_mut().find(|(c, ..)| *c == col) {
                    Some(cell) => {
                        cell.1 = cell.1.min(state);
                        cell.2.push(grant_line(g, &access.denies));
                    }
                    None => cells.push((col, state, vec![grant_line(g, &access.denies)])),
                }
            }
        }
        rows.push((action, denied, cells));
    }
    let width = columns.0.len();
    let rows: Vec<Json> = rows
        .into_iter()
        .map(|(action, denied, cells)| {
            let cells: Vec<Json> = (0..width)
                .map(|col| match (&denied, cells.iter().find(|(c, ..)| *c == col)) {
                    (Some(rule), _) => {
                        json!({"state": "denied", "why": [format!("deny rule `{rule}` always applies to this member")]})
                    }
                    (None, Some((_, state, why))) => {
                        json!({"state": STATES.get(*state).copied().unwrap_or("none"), "why": why})
                    }
                    (None, None) => json!({"state": "none", "why": []}),
                })
                .collect();
            json!({"action": &**action, "denied": denied, "cells": cells})
        })
        .collect();
    json!({"columns": columns.0, "tips": tips, "rows": rows})
}

/// Allowed (0), conditional (1) or requestable (2).
fn cell_state(g: &GrantItem, denies: bool, now: Timestamp) -> usize {
    if !g.allows {
        2
    } else if g.when.is_some() || denies || g.from.is_some_and(|f| now < f) {
        1
    } else {
        0
    }
}

fn grant_line(g: &GrantItem, denies: &[DenyItem]) -> String {
    let whose = if g.everyone { "everyone binding" } else { "binding" };
    let mut s = if g.allows {
        format!("{whose} `{}` (role `{}`) grants it", g.id, g.role)
    } else {
        format!("{whose} `{}` (role `{}`) lets the member request it", g.id, g.role)
    };
    if let Some(f) = g.from {
        s.push_str(&format!(" from {f}"));
    }
    if let Some(u) = g.until {
        s.push_str(&format!(" until {u}"));
    }
    if let Some(w) = &g.when {
        s.push_str(&format!(", when {w}"));
    }
    for d in denies {
        match &d.when {
            Some(w) => s.push_str(&format!("; unless rule `{}` applies (when {w})", d.id)),
            None => s.push_str(&format!("; rule `{}` denies it", d.id)),
        }
    }
    s
}

/// A decision, in the shape `rolegate check` prints.
pub fn decision(d: &Decision) -> Json {
    json!({
        "allowed": d.allowed,
        "reason": d.reason.as_str(),
        "rule": d.rule.as_deref(),
        "mask": d.mask.iter().map(|m| &**m).collect::<Vec<_>>(),
        "review": d.review,
        "requestable": d.requestable,
        "alert": d.alert,
        "message": d.message.as_deref(),
        "valid_until": d.valid_until.map(|t| t.to_string()),
    })
}

/// Explain steps.
pub fn steps(steps: &[Step]) -> Json {
    steps.iter().map(|s| json!({"kind": s.kind.as_str(), "id": &*s.id, "applies": s.applies, "why": s.why})).collect()
}
