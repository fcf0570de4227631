//! A deliberately naive second implementation of docs/policy-language.md ("Decision order", "Conditions"), working on the documents as
//! written: no interning, no bit sets, no indexes. Only the differential test uses it.
//!
//! It has no theory of `valid_until`: an earlier version copied the engine's edge computation
//! (both readings of a local time, a 9-day horizon), which checked nothing. Instead
//! [`first_change`] scans forward minute by minute for the first instant the answer differs, and
//! tests/valid_until.rs checks the engine's bound against re-deciding at later instants.

use jiff::Timestamp;
use jiff::civil::Date;
use rolegate::engine::Effect;
use rolegate::engine::{AttrRef, Lit, Op, Reason, Request, Schedule, Side, Test, Value};
use rolegate::policy::document::{
    BindingDoc, ClauseDoc, Document, MemberDoc, RoleDoc, RuleDoc, ScopeDoc, Status, WhenDoc,
};

/// What the reference decides.
#[derive(Debug, Clone, PartialEq)]
pub struct RefDecision {
    pub allowed: bool,
    pub reason: Reason,
    pub rule: Option<String>,
    pub mask: Vec<String>,
    pub review: bool,
    pub requestable: bool,
    pub alert: bool,
}

fn deny(reason: Reason) -> RefDecision {
    RefDecision { allowed: false, reason, rule: None, mask: vec![], review: false, requestable: false, alert: false }
}

struct World<'a> {
    doc: &'a Document,
    tpl: Option<&'a Document>,
}

impl<'a> World<'a> {
    fn layers(&self) -> Vec<&'a Document> {
        let mut v = Vec::new();
        if let Some(t) = self.tpl {
            v.push(t);
        }
        v.push(self.doc);
        v
    }

    fn action_exists(&self, action: &str) -> bool {
        self.layers()
            .iter()
            .any(|d| d.schema.iter().any(|k| k.verbs.iter().any(|v| format!("{}.{}", k.name.value, v.value) == action)))
    }

    fn role(&self, name: &str) -> Option<&'a RoleDoc> {
        // The tenant's role replaces the template's of the same name.
        let own = self.doc.roles.iter().find(|r| r.name.value == name);
        own.or_else(|| self.tpl.and_then(|t| t.roles.iter().find(|r| r.name.value == name)))
    }

    fn role_has(&self, name: &str, action: &str, depth: usize) -> bool {
        let Some(role) = self.role(name) else {
            return false;
        };
        if depth > 50 {
            return false;
        }
        let granted = role.allow.iter().any(|p| pattern_matches(&p.value, action))
            || role.extends.iter().any(|e| self.role_has(&e.value, action, depth + 1));
        granted && !role.except.iter().any(|p| pattern_matches(&p.value, action))
    }

    fn role_requestable(&self, name: &str, action: &str, depth: usize) -> bool {
        let Some(role) = self.role(name) else {
            return false;
        };
        if depth > 50 {
            return false;
        }
        role.requestable.iter().any(|p| pattern_matches(&p.value, action))
            || role.extends.iter().any(|e| self.role_requestable(&e.value, action, depth + 1))
    }

    /// Walks up the parents of `unit` looking for `ancestor`.
    fn unit_within(&self, unit: &str, ancestor: &str) -> bool {
        if !self.doc.units.iter().any(|u| u.id.value == unit) {
            return false;
        }
        let mut cur = Some(unit.to_owned());
        let mut steps = 0;
        while let Some(u) = cur {
            if u == ancestor {
                return true;
            }
            steps += 1;
            if steps > 1000 {
                return false;
            }
            cur = self
                .doc
                .units
                .iter()
                .find(|x| x.id.value == u)
                .and_then(|x| x.parent.as_ref().map(|p| p.value.clone()));
        }
        false
    }

    fn everyone(&self) -> Vec<(String, &'a BindingDoc)> {
        let mut out = Vec::new();
        for d in self.layers() {
            for b in &d.everyone {
                let id = b.id.as_ref().map(|i| i.value.clone()).unwrap_or_else(|| format!("everyone#{}", out.len()));
                out.push((id, b));
            }
        }
        out
    }

    fn rules(&self) -> Vec<&'a RuleDoc> {
        self.layers().into_iter().flat_map(|d| d.rules.iter()).collect()
    }
}

fn pattern_matches(pattern: &str, action: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let (pk, pv) = pattern.split_once('.').unwrap_or((pattern, ""));
    let (ak, av) = action.split_once('.').unwrap_or((action, ""));
    (pk == "*" || pk == ak) && (pv == "*" || pv == av)
}

struct Facts<'a> {
    world: &'a World<'a>,
    member: &'a MemberDoc,
    req: &'a Request,
    now: Timestamp,
}

fn lit_equals(lit: &Lit, v: &Value) -> bool {
    match v {
        Value::Text(t) => t.as_str() == lit.text.as_str(),
        Value::Int(i) => matches!(lit.num, Some(n) if n == *i as f64),
        Value::Number(x) => matches!(lit.num, Some(n) if n == *x),
        Value::Flag(b) => matches!(lit.flag, Some(f) if f == *b),
        Value::List(items) => items.contains(&lit.text),
    }
}

fn number_of(v: Option<&Value>) -> Option<f64> {
    match v {
        Some(Value::Int(i)) => Some(*i as f64),
        Some(Value::Number(n)) => Some(*n),
        _ => None,
    }
}

/// `same_as`, spelled out case by case from docs/policy-language.md.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Text(x), Value::Text(y)) => x == y,
        (Value::Flag(x), Value::Flag(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Int(x), Value::Number(y)) | (Value::Number(y), Value::Int(x)) => *x as f64 == *y,
        (Value::Number(x), Value::Number(y)) => x == y,
        (Value::List(l), Value::Text(t)) => l.contains(t),
        (Value::Text(t), Value::List(l)) => l.contains(t),
        _ => false,
    }
}

fn test_holds(test: &Test, v: Option<&Value>, facts: &Facts<'_>) -> bool {
    match test {
        Test::Equals(lit) => v.map(|v| lit_equals(lit, v)).unwrap_or(false),
        Test::OneOf(lits) => v.map(|v| lits.iter().any(|l| lit_equals(l, v))).unwrap_or(false),
        Test::Ops(ops) => {
            for op in ops {
                let ok = match op {
                    Op::Lt(x) => number_of(v).map(|n| n < *x).unwrap_or(false),
                    Op::Le(x) => number_of(v).map(|n| n <= *x).unwrap_or(false),
                    Op::Gt(x) => number_of(v).map(|n| n > *x).unwrap_or(false),
                    Op::Ge(x) => number_of(v).map(|n| n >= *x).unwrap_or(false),
                    Op::Contains(s) => matches!(v, Some(Value::List(l)) if l.contains(s)),
                    Op::Present(p) => v.is_some() == *p,
                    Op::SameAs(AttrRef { side, name }) => match (v, facts.value(*side, name)) {
                        (Some(a), Some(b)) => same_value(a, &b),
                        _ => false,
                    },
                };
                if !ok {
                    return false;
                }
            }
            true
        }
    }
}

fn related(v: Option<&Value>, id: &str) -> bool {
    match v {
        Some(Value::Text(t)) => t == id,
        Some(Value::List(l)) => l.iter().any(|x| x == id),
        _ => false,
    }
}

impl Facts<'_> {
    /// What a key of `side`'s tests (or a `same_as` naming `side.key`) reads.
    fn value(&self, side: Side, key: &str) -> Option<Value> {
        let r = &self.req.resource;
        match (side, key) {
            (Side::Principal, "id") => Some(Value::Text(self.member.id.value.clone())),
            (Side::Principal, "units") => {
                Some(Value::List(self.member.units.iter().map(|u| u.value.clone()).collect()))
            }
            (Side::Principal, other) => self.member.attrs.get(other).cloned(),
            (Side::Resource, "id") => Some(Value::Text(r.id.clone())),
            (Side::Resource, "kind") => Some(Value::Text(r.kind.clone())),
            (Side::Resource, "unit") => (!r.unit.is_empty()).then(|| Value::Text(r.unit.clone())),
            (Side::Resource, other) => r.attrs.get(other).cloned(),
            // An IPv4-mapped client is its IPv4 address (README, Policies).
            (Side::Context, "client_ip") => self.req.context.client_ip.map(|ip| match ip {
                std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => Value::Text(v4.to_string()),
                    None => Value::Text(v6.to_string()),
                },
                v4 => Value::Text(v4.to_string()),
            }),
            (Side::Context, other) => self.req.context.attrs.get(other).cloned(),
        }
    }

    fn when_holds(&self, w: &WhenDoc) -> bool {
        w.clauses.iter().all(|c| self.clause_holds(c))
    }

    fn clause_holds(&self, c: &ClauseDoc) -> bool {
        let r = &self.req.resource;
        match c {
            ClauseDoc::Principal(tests) => {
                tests.iter().all(|(k, t)| test_holds(t, self.value(Side::Principal, k).as_ref(), self))
            }
            ClauseDoc::Resource(tests) => {
                tests.iter().all(|(k, t)| test_holds(t, self.value(Side::Resource, k).as_ref(), self))
            }
            ClauseDoc::Context(tests) => {
                tests.iter().all(|(k, t)| test_holds(t, self.value(Side::Context, k).as_ref(), self))
            }
            ClauseDoc::Ip(nets) => match self.req.context.client_ip {
                Some(ip) => nets.iter().any(|n| n.contains(&ip.to_canonical())),
                None => false,
            },
            ClauseDoc::Relation(attr) => related(r.attrs.get(attr), &self.member.id.value),
            ClauseDoc::InUnit(u, _) => !r.unit.is_empty() && self.world.unit_within(&r.unit, &u.value),
            ClauseDoc::Schedule(s) => schedule_active(s, self.now),
            ClauseDoc::Any(ws) => ws.iter().any(|w| self.when_holds(w)),
            ClauseDoc::Not(w) => !self.when_holds(w),
        }
    }

    fn covers(&self, scope: &ScopeDoc) -> bool {
        let r = &self.req.resource;
        match scope {
            ScopeDoc::Tenant => true,
            ScopeDoc::Unit(u) => !r.unit.is_empty() && self.world.unit_within(&r.unit, &u.value),
            ScopeDoc::OwnUnits => {
                !r.unit.is_empty() && self.member.units.iter().any(|u| self.world.unit_within(&r.unit, &u.value))
            }
            ScopeDoc::Relation(attr) => related(r.attrs.get(attr), &self.member.id.value),
        }
    }
}

fn day_listed(s: &Schedule, d: Date) -> bool {
    let names = [
        jiff::civil::Weekday::Monday,
        jiff::civil::Weekday::Tuesday,
        jiff::civil::Weekday::Wednesday,
        jiff::civil::Weekday::Thursday,
        jiff::civil::Weekday::Friday,
        jiff::civil::Weekday::Saturday,
        jiff::civil::Weekday::Sunday,
    ];
    let i = names.iter().position(|w| *w == d.weekday()).unwrap();
    (s.days >> i) & 1 == 1
}

fn schedule_active(s: &Schedule, now: Timestamp) -> bool {
    let local = s.tz.to_datetime(now);
    let secs = local.hour() as u32 * 3600 + local.minute() as u32 * 60 + local.second() as u32;
    if s.from < s.to {
        day_listed(s, local.date()) && secs >= s.from && secs < s.to
    } else {
        // Overnight: either it started today, or it started yesterday and has not ended yet.
        let started_today = day_listed(s, local.date()) && secs >= s.from;
        let started_yesterday = day_listed(s, local.date().yesterday().unwrap()) && secs < s.to;
        started_today || started_yesterday
    }
}

/// A caller error, as the reference sees it (docs/policy-language.md, "Decision order", step 2): never a deny.
#[derive(Debug, Clone, PartialEq)]
pub enum RefError {
    /// The action is in no schema kind of the tenant or its template.
    UnknownAction { tenant: String, action: String },
    /// The action's kind (`expected`) is not the resource's kind.
    KindMismatch { action: String, kind: String, expected: String },
}

/// Decides per docs/policy-language.md, "Decision order", steps 1–6; `Err` for a caller error. Step 7 (`valid_until`) is not
/// computed here: [`first_change`] finds it by brute force, and tests/valid_until.rs checks the
/// engine's bound against the meaning of the decision itself.
pub fn decide(doc: &Document, tpl: Option<&Document>, req: &Request, now: Timestamp) -> Result<RefDecision, RefError> {
    let world = World { doc, tpl };
    if req.tenant != doc.name.value {
        return Ok(deny(Reason::UnknownTenant));
    }
    if !world.action_exists(&req.action) {
        return Err(RefError::UnknownAction { tenant: doc.name.value.clone(), action: req.action.clone() });
    }
    let expected = req.action.split('.').next().unwrap_or_default();
    if expected != req.resource.kind {
        return Err(RefError::KindMismatch {
            action: req.action.clone(),
            kind: req.resource.kind.clone(),
            expected: expected.to_owned(),
        });
    }
    let Some(member) = doc.members.iter().find(|m| m.id.value == req.principal) else {
        return Ok(deny(Reason::UnknownPrincipal));
    };
    if member.status == Status::Disabled {
        return Ok(deny(Reason::PrincipalDisabled));
    }
    if member.expires.is_some_and(|e| now >= e) {
        return Ok(deny(Reason::PrincipalExpired));
    }
    let facts = Facts { world: &world, member, req, now };
    let action = req.action.as_str();
    let matching_rules: Vec<&RuleDoc> =
        world.rules().into_iter().filter(|r| r.actions.iter().any(|p| pattern_matches(&p.value, action))).collect();

    let mut bindings: Vec<(String, &BindingDoc)> = member
        .bindings
        .iter()
        .enumerate()
        .map(|(i, b)| (b.id.as_ref().map(|x| x.value.clone()).unwrap_or(format!("{}#{i}", member.id.value)), b))
        .collect();
    bindings.extend(world.everyone());

    let mut first_grant: Option<String> = None;
    let mut requestable = false;
    for (id, b) in &bindings {
        let window = b.from.map(|f| f <= now).unwrap_or(true) && b.until.map(|u| now < u).unwrap_or(true);
        let holds = b.when.as_ref().map(|w| facts.when_holds(w)).unwrap_or(true);
        if window && facts.covers(&b.scope) && holds {
            if world.role_has(&b.role.value, action, 0) && first_grant.is_none() {
                first_grant = Some(id.clone());
            }
            if world.role_requestable(&b.role.value, action, 0) {
                requestable = true;
            }
        }
    }

    for r in &matching_rules {
        if r.effect == Effect::Deny && r.when.as_ref().map(|w| facts.when_holds(w)).unwrap_or(true) {
            return Ok(RefDecision { rule: Some(r.id.value.clone()), alert: r.alert, ..deny(Reason::DeniedByRule) });
        }
    }
    let Some(rule) = first_grant else {
        return Ok(RefDecision { requestable, ..deny(Reason::NoGrant) });
    };
    let mut d = RefDecision { allowed: true, reason: Reason::Granted, rule: Some(rule), ..deny(Reason::Granted) };
    for r in &matching_rules {
        if r.effect != Effect::Deny && r.when.as_ref().map(|w| facts.when_holds(w)).unwrap_or(true) {
            if r.effect == Effect::Mask {
                d.mask.extend(r.fields.iter().cloned());
            }
            if r.effect == Effect::Review {
                d.review = true;
            }
            d.alert = d.alert || r.alert;
        }
    }
    d.mask.sort();
    d.mask.dedup();
    Ok(d)
}

/// The first instant in `(now, end)` at which the reference's answer differs from its answer at
/// `now`, found by asking again every minute: slow, but it needs no theory of clock changes,
/// overnight windows or horizons. Exact when `now` and every edge of the tenant (instants and
/// schedule times) fall on whole minutes, as they do in the generated tenants.
pub fn first_change(
    doc: &Document,
    tpl: Option<&Document>,
    req: &Request,
    now: Timestamp,
    end: Timestamp,
) -> Option<Timestamp> {
    let at_now = decide(doc, tpl, req, now);
    let mut t = now;
    loop {
        t = t.checked_add(jiff::SignedDuration::from_mins(1)).ok()?;
        if t >= end {
            return None;
        }
        if decide(doc, tpl, req, t) != at_now {
            return Some(t);
        }
    }
}
