//! Evaluating a compiled condition against one request (docs/policy-language.md, "Conditions"):
//! every clause must hold, and a missing attribute makes its test false.

use std::borrow::Cow;

use jiff::Timestamp;

use super::condition::{Clause, Cond};
use super::ids::UnitId;
use super::request::{Context, Resource};
use super::snapshot::{Member, Tenant};
use super::value::{AttrRef, Side, Test, Value, canonical_ip};

/// What a condition is evaluated against.
pub struct Env<'a> {
    /// The tenant, for unit names and subtrees.
    pub tenant: &'a Tenant,
    /// The member asking.
    pub member: &'a Member,
    /// The resource asked about.
    pub resource: &'a Resource,
    /// The request's context.
    pub context: &'a Context,
    /// The resource's unit, when the tenant defines it.
    pub res_unit: Option<UnitId>,
    /// The instant of the decision.
    pub now: Timestamp,
}

impl Cond {
    /// True when every clause holds.
    pub fn holds(&self, env: &Env<'_>) -> bool {
        self.clauses.iter().all(|c| c.holds(env))
    }
}

impl Cond {
    /// The path of the first clause (and key) that does not hold, under `at` (`when`):
    /// `when.principal.employment`, `when.schedule`, `when.any`. `None` when the condition
    /// holds. Agrees with [`Cond::holds`] by construction: it asks the same tests.
    pub(crate) fn first_false(&self, env: &Env<'_>, at: &str) -> Option<String> {
        for clause in self.clauses.iter() {
            let key = |side: Side, name: &str, tests: &[(Box<str>, Test)]| {
                let k = tests.iter().find(|(k, t)| !env.test(side, k, t)).map_or("", |(k, _)| &**k);
                format!("{at}.{name}.{k}")
            };
            let failed = match clause {
                _ if clause.holds(env) => continue,
                Clause::Principal(tests) => key(Side::Principal, "principal", tests),
                Clause::Resource(tests) => key(Side::Resource, "resource", tests),
                Clause::Context(tests) => key(Side::Context, "context", tests),
                Clause::Ip(_) => format!("{at}.ip"),
                Clause::Relation(_) => format!("{at}.relation"),
                Clause::InUnit(_) => format!("{at}.in_unit"),
                Clause::Schedule(_) => format!("{at}.schedule"),
                Clause::Any(_) => format!("{at}.any"),
                Clause::Not(_) => format!("{at}.not"),
            };
            return Some(failed);
        }
        None
    }
}

impl Clause {
    fn holds(&self, env: &Env<'_>) -> bool {
        match self {
            Clause::Principal(tests) => tests.iter().all(|(k, t)| env.test(Side::Principal, k, t)),
            Clause::Resource(tests) => tests.iter().all(|(k, t)| env.test(Side::Resource, k, t)),
            Clause::Context(tests) => tests.iter().all(|(k, t)| env.test(Side::Context, k, t)),
            Clause::Ip(nets) => {
                env.context.client_ip.is_some_and(|ip| nets.iter().any(|n| n.contains(&canonical_ip(ip))))
            }
            Clause::Relation(attr) => env.resource.attrs.get(attr).is_some_and(|v| v.is_or_contains(&env.member.id)),
            Clause::InUnit(u) => env.res_unit.is_some_and(|r| env.tenant.unit_covers(*u, r)),
            Clause::Schedule(s) => s.contains(env.now),
            Clause::Any(cs) => cs.iter().any(|c| c.holds(env)),
            Clause::Not(c) => !c.holds(env),
        }
    }
}

impl Env<'_> {
    /// The value a key of `side`'s tests reads, if present: `principal.id`, `principal.units`,
    /// `resource.id`, `resource.kind`, `resource.unit` (absent when empty), `context.client_ip`
    /// (canonical), else an attribute.
    pub fn lookup(&self, side: Side, key: &str) -> Option<Cow<'_, Value>> {
        match side {
            Side::Principal => principal_value(self.tenant, self.member, key),
            Side::Resource => resource_value(self.resource, key),
            Side::Context => context_value(self.context, key),
        }
    }

    fn test(&self, side: Side, key: &str, test: &Test) -> bool {
        let lookup = |r: &AttrRef| self.lookup(r.side, &r.name).map(Cow::into_owned);
        test.eval_with(self.lookup(side, key).as_deref(), &lookup)
    }
}

/// The value a principal test on `key` reads.
pub(crate) fn principal_value<'a>(tenant: &Tenant, m: &'a Member, key: &str) -> Option<Cow<'a, Value>> {
    match key {
        "id" => Some(Cow::Owned(Value::Text(m.id.to_string()))),
        "units" => {
            let names = m.units.iter().filter_map(|u| tenant.unit_names.get(*u as usize));
            Some(Cow::Owned(Value::List(names.map(|n| n.to_string()).collect())))
        }
        _ => m.attrs.get(key).map(Cow::Borrowed),
    }
}

/// The value a resource test on `key` reads; shared with plan filters, which test the same
/// fields.
pub(crate) fn resource_value<'a>(r: &'a Resource, key: &str) -> Option<Cow<'a, Value>> {
    match key {
        "id" => Some(Cow::Owned(Value::Text(r.id.clone()))),
        "kind" => Some(Cow::Owned(Value::Text(r.kind.clone()))),
        "unit" if r.unit.is_empty() => None,
        "unit" => Some(Cow::Owned(Value::Text(r.unit.clone()))),
        _ => r.attrs.get(key).map(Cow::Borrowed),
    }
}

/// The value a context test on `key` reads.
pub(crate) fn context_value<'a>(c: &'a Context, key: &str) -> Option<Cow<'a, Value>> {
    match key {
        "client_ip" => c.client_ip.map(|ip| Cow::Owned(Value::Text(canonical_ip(ip).to_string()))),
        _ => c.attrs.get(key).map(Cow::Borrowed),
    }
}
