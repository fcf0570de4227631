//! Changes to a tenant's document as a whole, in the policy's own names: what a reviewer reads
//! first, before what each change does to each member.

use std::collections::{BTreeMap, BTreeSet};

use rolegate_engine::{Binding, BitSet, Effect, Rule, Scope, Tenant};

/// One line per change of the tenant's schema, units, roles, rules, `everyone` bindings and
/// `max_staleness`.
pub fn notes(old: Option<&Tenant>, new: Option<&Tenant>) -> Vec<String> {
    let (o, n) = match (old, new) {
        (None, None) => return Vec::new(),
        (None, Some(_)) => return vec!["tenant added".to_owned()],
        (Some(_), None) => return vec!["tenant removed".to_owned()],
        (Some(o), Some(n)) => (o, n),
    };
    let mut out = Vec::new();
    let (oa, na): (BTreeSet<&str>, BTreeSet<&str>) = (o.action_names().collect(), n.action_names().collect());
    sets(&mut out, "schema", "action", &oa, &na);
    units(&mut out, o, n);
    roles(&mut out, o, n);
    rules(&mut out, o, n);
    everyone(&mut out, o, n);
    if o.max_staleness != n.max_staleness {
        out.push(format!("max_staleness {:?} -> {:?}", o.max_staleness, n.max_staleness));
    }
    out
}

fn sets(out: &mut Vec<String>, whose: &str, what: &str, old: &BTreeSet<&str>, new: &BTreeSet<&str>) {
    let added: Vec<&str> = new.difference(old).copied().collect();
    let removed: Vec<&str> = old.difference(new).copied().collect();
    if !added.is_empty() {
        out.push(format!("{whose}: {what}s added: {}", added.join(", ")));
    }
    if !removed.is_empty() {
        out.push(format!("{whose}: {what}s removed: {}", removed.join(", ")));
    }
}

fn subtrees(t: &Tenant) -> BTreeMap<&str, BTreeSet<&str>> {
    let names = || t.unit_names.iter().enumerate();
    names()
        .map(|(u, name)| {
            let below = names().filter(|(v, _)| t.unit_covers(u as u32, *v as u32)).map(|(_, n)| &**n).collect();
            (&**name, below)
        })
        .collect()
}

fn units(out: &mut Vec<String>, o: &Tenant, n: &Tenant) {
    let (os, ns) = (subtrees(o), subtrees(n));
    sets(out, "units", "unit", &os.keys().copied().collect(), &ns.keys().copied().collect());
    for (unit, below) in &ns {
        if let Some(before) = os.get(unit).filter(|b| *b != below) {
            let list = |s: &BTreeSet<&str>| s.iter().copied().collect::<Vec<_>>().join(", ");
            out.push(format!("unit `{unit}` covers {} (was {})", list(below), list(before)));
        }
    }
}

fn names(t: &Tenant, set: &BitSet) -> BTreeSet<String> {
    set.iter().filter_map(|a| t.action_names.get(a as usize)).map(|a| a.to_string()).collect()
}

fn roles(out: &mut Vec<String>, o: &Tenant, n: &Tenant) {
    let by_name = |t: &Tenant| t.roles.iter().map(|r| (r.name.to_string(), r.clone())).collect::<BTreeMap<_, _>>();
    let (or, nr) = (by_name(o), by_name(n));
    let keys: BTreeSet<&String> = or.keys().chain(nr.keys()).collect();
    for name in keys {
        let (a, b) = (or.get(name), nr.get(name));
        let allow = |t: &Tenant, r: Option<&rolegate_engine::Role>| r.map(|r| names(t, &r.allow)).unwrap_or_default();
        let asks =
            |t: &Tenant, r: Option<&rolegate_engine::Role>| r.map(|r| names(t, &r.requestable)).unwrap_or_default();
        match (a, b) {
            (None, Some(_)) => out.push(format!("role `{name}` added")),
            (Some(_), None) => out.push(format!("role `{name}` removed")),
            _ => {}
        }
        change(out, &format!("role `{name}`"), "allows", &allow(o, a), &allow(n, b));
        change(out, &format!("role `{name}`"), "lists as requestable", &asks(o, a), &asks(n, b));
    }
}

fn change(out: &mut Vec<String>, who: &str, verb: &str, old: &BTreeSet<String>, new: &BTreeSet<String>) {
    let added: Vec<&str> = new.difference(old).map(String::as_str).collect();
    let removed: Vec<&str> = old.difference(new).map(String::as_str).collect();
    if !added.is_empty() {
        out.push(format!("{who} now {verb} {}", added.join(", ")));
    }
    if !removed.is_empty() {
        out.push(format!("{who} no longer {verb} {}", removed.join(", ")));
    }
}

/// A rule in the policy's own names, without its condition (what the condition does to each
/// member is in the member's entries).
fn rule_text(t: &Tenant, index: usize, r: &Rule) -> String {
    let lists = if r.effect == Effect::Deny { &t.denies } else { &t.obligations };
    let actions: Vec<&str> = lists
        .iter()
        .enumerate()
        .filter(|(_, rs)| rs.contains(&(index as u32)))
        .filter_map(|(a, _)| t.action_names.get(a).map(|n| &**n))
        .collect();
    let effect = match r.effect {
        Effect::Deny => "deny",
        Effect::Mask => "mask",
        Effect::Review => "review",
    };
    let mut s = format!("{effect} {}", actions.join(", "));
    if !r.fields.is_empty() {
        s.push_str(&format!(" fields {}", r.fields.iter().map(|f| &**f).collect::<Vec<_>>().join(", ")));
    }
    if r.when.is_some() {
        s.push_str(" when …");
    }
    if r.alert {
        s.push_str(" (alert)");
    }
    s
}

fn rules(out: &mut Vec<String>, o: &Tenant, n: &Tenant) {
    let texts = |t: &Tenant| -> Vec<(String, String)> {
        t.rules.iter().enumerate().map(|(i, r)| (r.id.to_string(), rule_text(t, i, r))).collect()
    };
    let (or, nr) = (texts(o), texts(n));
    for (id, text) in &nr {
        match or.iter().find(|(i, _)| i == id) {
            None => out.push(format!("rule `{id}` added: {text}")),
            Some((_, before)) if before != text => out.push(format!("rule `{id}` changed: {before} -> {text}")),
            Some(_) => {}
        }
    }
    for (id, text) in &or {
        if !nr.iter().any(|(i, _)| i == id) {
            out.push(format!("rule `{id}` removed: {text}"));
        }
    }
    let order = |rs: &[(String, String)], other: &[(String, String)]| -> Vec<String> {
        rs.iter().filter(|(i, _)| other.iter().any(|(j, _)| i == j)).map(|(i, _)| i.clone()).collect()
    };
    if order(&or, &nr) != order(&nr, &or) {
        out.push(format!("rules reordered: {}", order(&nr, &or).join(", ")));
    }
}

/// An `everyone` binding in the policy's own names.
pub fn binding_text(t: &Tenant, b: &Binding) -> String {
    let role = t.roles.get(b.role as usize).map_or("?", |r| &*r.name);
    let scope = match &b.scope {
        Scope::Tenant => "tenant".to_owned(),
        Scope::OwnUnits => "own_units".to_owned(),
        Scope::Unit(u) => format!("unit {}", t.unit_names.get(*u as usize).map_or("?", |n| &**n)),
        Scope::Relation(a) => format!("relation {a}"),
    };
    let mut s = format!("`{}`: role `{role}` on {scope}", b.id);
    if let Some(f) = b.from() {
        s.push_str(&format!(" from {f}"));
    }
    if let Some(u) = b.until() {
        s.push_str(&format!(" until {u}"));
    }
    if b.when.is_some() {
        s.push_str(" when …");
    }
    s
}

fn everyone(out: &mut Vec<String>, o: &Tenant, n: &Tenant) {
    let (ob, nb): (Vec<String>, Vec<String>) = (
        o.everyone.iter().map(|b| binding_text(o, b)).collect(),
        n.everyone.iter().map(|b| binding_text(n, b)).collect(),
    );
    for b in nb.iter().filter(|b| !ob.contains(b)) {
        out.push(format!("everyone binding added {b}"));
    }
    for b in ob.iter().filter(|b| !nb.contains(b)) {
        out.push(format!("everyone binding removed {b}"));
    }
}
