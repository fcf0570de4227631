//! A deliberately naive second implementation of DESIGN §3–4, working on the documents as
//! written: no interning, no bit sets, no indexes. Only the differential test uses it.

use jiff::Timestamp;
use jiff::civil::Date;
use rolegate::engine::Effect;
use rolegate::engine::{Lit, Op, Reason, Request, Schedule, Test, Value};
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
    pub valid_until: Option<Timestamp>,
}

fn deny(reason: Reason) -> RefDecision {
    RefDecision {
        allowed: false,
        reason,
        rule: None,
        mask: vec![],
        review: false,
        requestable: false,
        alert: false,
        valid_until: None,
    }
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

fn test_holds(test: &Test, v: Option<&Value>) -> bool {
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
    fn when_holds(&self, w: &WhenDoc) -> bool {
        w.clauses.iter().all(|c| self.clause_holds(c))
    }

    fn clause_holds(&self, c: &ClauseDoc) -> bool {
        let r = &self.req.resource;
        match c {
            ClauseDoc::Principal(tests) => tests.iter().all(|(k, t)| {
                let v = match k.as_str() {
                    "id" => Some(Value::Text(self.member.id.value.clone())),
                    "units" => Some(Value::List(self.member.units.iter().map(|u| u.value.clone()).collect())),
                    other => self.member.attrs.get(other).cloned(),
                };
                test_holds(t, v.as_ref())
            }),
            ClauseDoc::Resource(tests) => tests.iter().all(|(k, t)| {
                let v = match k.as_str() {
                    "id" => Some(Value::Text(r.id.clone())),
                    "kind" => Some(Value::Text(r.kind.clone())),
                    "unit" => (!r.unit.is_empty()).then(|| Value::Text(r.unit.clone())),
                    other => r.attrs.get(other).cloned(),
                };
                test_holds(t, v.as_ref())
            }),
            ClauseDoc::Context(tests) => tests.iter().all(|(k, t)| {
                let v = match k.as_str() {
                    // An IPv4-mapped client is its IPv4 address (README, Policies).
                    "client_ip" => self.req.context.client_ip.map(|ip| match ip {
                        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                            Some(v4) => Value::Text(v4.to_string()),
                            None => Value::Text(v6.to_string()),
                        },
                        v4 => Value::Text(v4.to_string()),
                    }),
                    other => self.req.context.attrs.get(other).cloned(),
                };
                test_holds(t, v.as_ref())
            }),
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

/// Both readings of a local time (they differ only around a clock change).
fn local_instants(s: &Schedule, d: Date, secs: u32) -> Vec<Timestamp> {
    let dt = d.at((secs / 3600) as i8, ((secs / 60) % 60) as i8, (secs % 60) as i8, 0);
    let amb = s.tz.to_ambiguous_timestamp(dt);
    vec![amb.earlier().unwrap(), amb.later().unwrap()]
}

fn schedule_edges(s: &Schedule, now: Timestamp, out: &mut Vec<Timestamp>) {
    let today = s.tz.to_datetime(now).date();
    for offset in -2i64..=9 {
        let d = today.checked_add(jiff::Span::new().days(offset)).unwrap();
        if !day_listed(s, d) {
            continue;
        }
        out.extend(local_instants(s, d, s.from));
        let end_day = if s.to <= s.from { d.tomorrow().unwrap() } else { d };
        out.extend(local_instants(s, end_day, s.to));
    }
    // Clock changes within the horizon flip windows too.
    let horizon = now + jiff::SignedDuration::from_hours(24 * 9);
    for t in s.tz.following(now) {
        if t.timestamp() >= horizon {
            break;
        }
        out.push(t.timestamp());
    }
}

fn when_edges(w: &WhenDoc, now: Timestamp, out: &mut Vec<Timestamp>) {
    for c in &w.clauses {
        match c {
            ClauseDoc::Schedule(s) => schedule_edges(s, now, out),
            ClauseDoc::Any(ws) => ws.iter().for_each(|w| when_edges(w, now, out)),
            ClauseDoc::Not(w) => when_edges(w, now, out),
            _ => {}
        }
    }
}

/// Decides per DESIGN §3; `Err` for a caller error.
pub fn decide(doc: &Document, tpl: Option<&Document>, req: &Request, now: Timestamp) -> Result<RefDecision, String> {
    let world = World { doc, tpl };
    if req.tenant != doc.name.value {
        return Ok(deny(Reason::UnknownTenant));
    }
    if !world.action_exists(&req.action) {
        return Err(format!("unknown action {}", req.action));
    }
    if req.action.split('.').next() != Some(req.resource.kind.as_str()) {
        return Err("kind mismatch".into());
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

    // Candidate instants for valid_until.
    let mut instants: Vec<Timestamp> = member.expires.into_iter().collect();

    let matching_rules: Vec<&RuleDoc> =
        world.rules().into_iter().filter(|r| r.actions.iter().any(|p| pattern_matches(&p.value, action))).collect();
    for r in &matching_rules {
        if let Some(w) = &r.when {
            when_edges(w, now, &mut instants);
        }
    }

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
        let has = world.role_has(&b.role.value, action, 0);
        let asks = world.role_requestable(&b.role.value, action, 0);
        let covers = facts.covers(&b.scope);
        if (has || asks) && covers {
            instants.extend(b.from);
            instants.extend(b.until);
            if let Some(w) = &b.when {
                when_edges(w, now, &mut instants);
            }
        }
        let window = b.from.map(|f| f <= now).unwrap_or(true) && b.until.map(|u| now < u).unwrap_or(true);
        let holds = b.when.as_ref().map(|w| facts.when_holds(w)).unwrap_or(true);
        if window && covers && holds {
            if has && first_grant.is_none() {
                first_grant = Some(id.clone());
            }
            if asks {
                requestable = true;
            }
        }
    }
    let valid_until = instants.into_iter().filter(|t| *t > now).min();

    for r in &matching_rules {
        if r.effect == Effect::Deny && r.when.as_ref().map(|w| facts.when_holds(w)).unwrap_or(true) {
            return Ok(RefDecision {
                rule: Some(r.id.value.clone()),
                alert: r.alert,
                valid_until,
                ..deny(Reason::DeniedByRule)
            });
        }
    }
    let Some(rule) = first_grant else {
        return Ok(RefDecision { requestable, valid_until, ..deny(Reason::NoGrant) });
    };
    let mut d =
        RefDecision { allowed: true, reason: Reason::Granted, rule: Some(rule), valid_until, ..deny(Reason::Granted) };
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
