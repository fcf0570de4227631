//! Partial evaluation of `decide` over an unknown resource: what is known at plan time (the
//! member, the context, the clock) becomes a constant, what depends on the resource a test.
//! Each function mirrors the part of `decide` or `eval` it stands for.

use std::borrow::Cow;

use jiff::Timestamp;

use super::{Field, FieldOp, Filter, Plan};
use crate::condition::{Clause, Cond, lower};
use crate::decide::{Reason, RequestError};
use crate::eval::{context_value, principal_value};
use crate::ids::UnitId;
use crate::request::Context;
use crate::snapshot::{Member, Scope, Tenant};
use crate::suggest;
use crate::value::{AttrRef, Lit, Op, Side, Test, Value, canonical_ip, same_as};

/// One side of a test: a value known at plan time (possibly missing), or a resource field.
enum Term<'a> {
    Known(Option<Cow<'a, Value>>),
    Field(Field),
}

/// What a plan is evaluated against: everything but the resource.
struct Partial<'a> {
    tenant: &'a Tenant,
    member: &'a Member,
    context: &'a Context,
    /// The action's kind: `resource.kind` of every resource the plan is about.
    kind: &'a str,
    now: Timestamp,
}

impl Tenant {
    /// Plans `action` (`kind.verb`) for `principal` with `context` at `now`: docs/api.md, "Plan".
    pub fn plan(&self, principal: &str, action: &str, context: &Context, now: Timestamp) -> Result<Plan, RequestError> {
        let Some(action_id) = self.action(action) else {
            return Err(RequestError::UnknownAction {
                tenant: self.name.to_string(),
                action: action.to_owned(),
                hint: suggest::hint(action, self.action_names()),
            });
        };
        let never = |reason| Plan { filter: Filter::Constant(false), reason, valid_until: None };
        let Some(member) = self.members.get(principal) else { return Ok(never(Reason::UnknownPrincipal)) };
        if member.invalid.is_some() {
            return Ok(never(Reason::NoGrant));
        }
        if member.disabled {
            return Ok(never(Reason::PrincipalDisabled));
        }
        if member.expires.is_some_and(|e| now >= e) {
            return Ok(never(Reason::PrincipalExpired));
        }
        let kind = self.action_kind.get(action_id as usize).and_then(|k| self.kinds.get(*k as usize));
        let p = Partial { tenant: self, member, context, kind: kind.map_or("", |k| k), now };
        Ok(p.plan(action_id))
    }
}

impl Partial<'_> {
    fn plan(&self, action: u32) -> Plan {
        let t = self.tenant;
        let now = self.now;
        let mut bound = self.member.expires;
        let mut denies = Vec::new();
        let rule_ids: &[u32] = t.denies.get(action as usize).map(|ids| &ids[..]).unwrap_or_default();
        for rule in rule_ids.iter().filter_map(|i| t.rules.get(*i as usize)) {
            if let Some(w) = &rule.when {
                w.edges(now, &mut bound);
            }
            denies.push(rule.when.as_ref().map_or(Filter::Constant(true), |w| self.cond(w)));
        }
        let mut grants = Vec::new();
        for b in self.member.bindings.iter().chain(t.everyone.iter()) {
            if !t.roles.get(b.role as usize).is_some_and(|r| r.allow.contains(action)) {
                continue;
            }
            lower(&mut bound, b.from().filter(|f| *f > now));
            lower(&mut bound, b.until().filter(|u| *u > now));
            if let Some(w) = &b.when {
                w.edges(now, &mut bound);
            }
            if b.from().is_some_and(|f| f > now) || b.until().is_some_and(|u| now >= u) {
                continue;
            }
            let when = b.when.as_ref().map_or(Filter::Constant(true), |w| self.cond(w));
            grants.push(Filter::all([self.scope(&b.scope), when]));
        }
        let denied = Filter::any(denies);
        let reason = match (&denied, Filter::any(grants.iter().cloned())) {
            (Filter::Constant(true), _) => Reason::DeniedByRule,
            (_, Filter::Constant(false)) => Reason::NoGrant,
            _ => Reason::Granted,
        };
        let filter = Filter::all([Filter::not(denied), Filter::any(grants)]);
        let reason =
            if filter == Filter::Constant(false) && reason == Reason::Granted { Reason::NoGrant } else { reason };
        Plan { filter, reason, valid_until: bound }
    }

    fn scope(&self, scope: &Scope) -> Filter {
        match scope {
            Scope::Tenant => Filter::Constant(true),
            Scope::Unit(u) => self.unit_in(&[*u]),
            Scope::OwnUnits => self.unit_in(&self.member.units),
            Scope::Relation(attr) => self.relation(attr),
        }
    }

    /// The resource's unit is one of `units` or below one: the subtrees spelled out, so a unit
    /// the tenant does not define matches none.
    fn unit_in(&self, units: &[UnitId]) -> Filter {
        let t = self.tenant;
        let names: Vec<String> = (0..t.unit_names.len())
            .filter(|v| units.iter().any(|u| u32::try_from(*v).is_ok_and(|v| t.unit_covers(*u, v))))
            .filter_map(|v| t.unit_names.get(v).map(|n| n.to_string()))
            .collect();
        if names.is_empty() { Filter::Constant(false) } else { Filter::test(Field::Unit, FieldOp::OneOf(names)) }
    }

    /// The attribute is the member's id, or a list holding it.
    fn relation(&self, attr: &str) -> Filter {
        self.same_as_value(Field::Attr(attr.into()), &Value::Text(self.member.id.to_string()))
    }

    fn cond(&self, c: &Cond) -> Filter {
        Filter::all(c.clauses.iter().map(|cl| self.clause(cl)))
    }

    fn clause(&self, clause: &Clause) -> Filter {
        match clause {
            Clause::Principal(tests) => {
                Filter::all(tests.iter().map(|(k, t)| self.test(self.term(Side::Principal, k), t)))
            }
            Clause::Resource(tests) => {
                Filter::all(tests.iter().map(|(k, t)| self.test(self.term(Side::Resource, k), t)))
            }
            Clause::Context(tests) => Filter::all(tests.iter().map(|(k, t)| self.test(self.term(Side::Context, k), t))),
            Clause::Ip(nets) => Filter::Constant(
                self.context.client_ip.is_some_and(|ip| nets.iter().any(|n| n.contains(&canonical_ip(ip)))),
            ),
            Clause::Relation(attr) => self.relation(attr),
            Clause::InUnit(u) => self.unit_in(&[*u]),
            Clause::Schedule(s) => Filter::Constant(s.contains(self.now)),
            Clause::Any(cs) => Filter::any(cs.iter().map(|c| self.cond(c))),
            Clause::Not(c) => Filter::not(self.cond(c)),
        }
    }

    /// What a key of `side`'s tests reads: known now, or a field of the resource.
    fn term(&self, side: Side, key: &str) -> Term<'_> {
        match (side, key) {
            (Side::Principal, _) => Term::Known(principal_value(self.tenant, self.member, key)),
            (Side::Context, _) => Term::Known(context_value(self.context, key)),
            (Side::Resource, "kind") => Term::Known(Some(Cow::Owned(Value::Text(self.kind.to_owned())))),
            (Side::Resource, "id") => Term::Field(Field::Id),
            (Side::Resource, "unit") => Term::Field(Field::Unit),
            (Side::Resource, name) => Term::Field(Field::Attr(name.into())),
        }
    }

    fn test(&self, subject: Term<'_>, test: &Test) -> Filter {
        match (subject, test) {
            (Term::Known(v), Test::Equals(_) | Test::OneOf(_)) => Filter::Constant(test.eval(v.as_deref())),
            (Term::Field(f), Test::Equals(lit)) => lit_filter(&f, lit),
            (Term::Field(f), Test::OneOf(lits)) => one_of_filter(&f, lits),
            (Term::Known(v), Test::Ops(ops)) => Filter::all(ops.iter().map(|op| match op {
                Op::SameAs(r) => self.same_as(&Term::Known(v.clone()), &self.term(r.side, &r.name)),
                other => Filter::Constant(other.eval(v.as_deref(), &|_: &AttrRef| None)),
            })),
            (Term::Field(f), Test::Ops(ops)) => Filter::all(ops.iter().map(|op| self.op_filter(&f, op))),
        }
    }

    fn op_filter(&self, f: &Field, op: &Op) -> Filter {
        let text = f.is_text();
        match op {
            Op::Lt(_) | Op::Le(_) | Op::Gt(_) | Op::Ge(_) | Op::Contains(_) if text => Filter::Constant(false),
            Op::Present(p) if *f == Field::Id => Filter::Constant(*p),
            Op::Lt(x) => Filter::test(f.clone(), FieldOp::Lt(*x)),
            Op::Le(x) => Filter::test(f.clone(), FieldOp::Le(*x)),
            Op::Gt(x) => Filter::test(f.clone(), FieldOp::Gt(*x)),
            Op::Ge(x) => Filter::test(f.clone(), FieldOp::Ge(*x)),
            Op::Contains(s) => Filter::test(f.clone(), FieldOp::Contains(s.clone())),
            Op::Present(p) => Filter::test(f.clone(), FieldOp::Present(*p)),
            Op::SameAs(r) => self.same_as(&Term::Field(f.clone()), &self.term(r.side, &r.name)),
        }
    }

    fn same_as(&self, a: &Term<'_>, b: &Term<'_>) -> Filter {
        match (a, b) {
            (Term::Known(x), Term::Known(y)) => Filter::Constant(matches!((x, y), (Some(x), Some(y)) if same_as(x, y))),
            (Term::Known(None), _) | (_, Term::Known(None)) => Filter::Constant(false),
            (Term::Known(Some(v)), Term::Field(f)) | (Term::Field(f), Term::Known(Some(v))) => {
                self.same_as_value(f.clone(), v)
            }
            (Term::Field(f), Term::Field(g)) => Filter::test(f.clone(), FieldOp::SameAs(g.clone())),
        }
    }

    /// The field is `same_as` a known value.
    fn same_as_value(&self, f: Field, v: &Value) -> Filter {
        match v {
            Value::Text(_) if f.is_text() => Filter::test(f, FieldOp::Equals(v.clone())),
            Value::Text(t) => Filter::any([
                Filter::test(f.clone(), FieldOp::Equals(v.clone())),
                Filter::test(f, FieldOp::Contains(t.clone())),
            ]),
            Value::List(l) if l.is_empty() => Filter::Constant(false),
            Value::List(l) => Filter::test(f, FieldOp::OneOf(l.clone())),
            _ if f.is_text() => Filter::Constant(false),
            _ => Filter::test(f, FieldOp::Equals(v.clone())),
        }
    }
}

/// `attr: literal`: the literal matches every reading it allows, and a list holding its text.
fn lit_filter(f: &Field, lit: &Lit) -> Filter {
    one_of_filter(f, std::slice::from_ref(lit))
}

/// `attr: [a, b]`: a text among the literals, a list holding one, or a number or flag one of
/// them reads as.
fn one_of_filter(f: &Field, lits: &[Lit]) -> Filter {
    let texts: Vec<String> = lits.iter().map(|l| l.text.clone()).collect();
    let text_test = match texts.as_slice() {
        [] => Filter::Constant(false),
        [one] => Filter::test(f.clone(), FieldOp::Equals(Value::Text(one.clone()))),
        _ => Filter::test(f.clone(), FieldOp::OneOf(texts.clone())),
    };
    if f.is_text() {
        return text_test;
    }
    let mut alternatives = vec![text_test];
    alternatives.extend(texts.into_iter().map(|t| Filter::test(f.clone(), FieldOp::Contains(t))));
    for lit in lits {
        if let Some(n) = lit.num {
            alternatives.push(Filter::test(f.clone(), FieldOp::Equals(Value::Number(n))));
        }
        if let Some(b) = lit.flag {
            alternatives.push(Filter::test(f.clone(), FieldOp::Equals(Value::Flag(b))));
        }
    }
    Filter::any(alternatives)
}
