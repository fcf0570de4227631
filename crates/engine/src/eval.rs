//! Evaluating a compiled condition against one request (docs/policy-language.md, "Conditions"):
//! every clause must hold, and a missing attribute makes its test false.

use jiff::Timestamp;

use super::condition::{Clause, Cond};
use super::ids::UnitId;
use super::request::{Context, Resource};
use super::snapshot::{Member, Tenant};
use super::value::{Test, Value, canonical_ip};

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
            let key = |side: &str, tests: &[(Box<str>, Test)], test: fn(&Env<'_>, &str, &Test) -> bool| {
                let k = tests.iter().find(|(k, t)| !test(env, k, t)).map_or("", |(k, _)| &**k);
                format!("{at}.{side}.{k}")
            };
            let failed = match clause {
                _ if clause.holds(env) => continue,
                Clause::Principal(tests) => key("principal", tests, principal_test),
                Clause::Resource(tests) => key("resource", tests, resource_test),
                Clause::Context(tests) => key("context", tests, context_test),
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
            Clause::Principal(tests) => tests.iter().all(|(k, t)| principal_test(env, k, t)),
            Clause::Resource(tests) => tests.iter().all(|(k, t)| resource_test(env, k, t)),
            Clause::Context(tests) => tests.iter().all(|(k, t)| context_test(env, k, t)),
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

fn principal_test(env: &Env<'_>, key: &str, test: &Test) -> bool {
    let m = env.member;
    match key {
        "id" => test.eval(Some(&Value::Text(m.id.to_string()))),
        "units" => {
            let names = m.units.iter().filter_map(|u| env.tenant.unit_names.get(*u as usize));
            test.eval(Some(&Value::List(names.map(|n| n.to_string()).collect())))
        }
        _ => test.eval(m.attrs.get(key)),
    }
}

fn resource_test(env: &Env<'_>, key: &str, test: &Test) -> bool {
    let r = env.resource;
    match key {
        "id" => test.eval(Some(&Value::Text(r.id.clone()))),
        "kind" => test.eval(Some(&Value::Text(r.kind.clone()))),
        "unit" if r.unit.is_empty() => test.eval(None),
        "unit" => test.eval(Some(&Value::Text(r.unit.clone()))),
        _ => test.eval(r.attrs.get(key)),
    }
}

fn context_test(env: &Env<'_>, key: &str, test: &Test) -> bool {
    match key {
        "client_ip" => test.eval(env.context.client_ip.map(|ip| Value::Text(canonical_ip(ip).to_string())).as_ref()),
        _ => test.eval(env.context.attrs.get(key)),
    }
}
