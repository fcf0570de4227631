//! Compiled `when` conditions and their evaluation against a request.

use ipnet::IpNet;
use jiff::Timestamp;

use super::decide::Env;
use super::schedule::Schedule;
use super::snapshot::UnitId;
use super::value::{Test, Value, canonical_ip};

/// A `when` map: every clause must hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Cond {
    /// The clauses, in document order.
    pub clauses: Box<[Clause]>,
    /// True when a schedule appears anywhere inside, so time edges are worth computing.
    pub has_schedule: bool,
}

/// One key of a `when` map.
#[derive(Clone, Debug, PartialEq)]
pub enum Clause {
    /// Tests on the member: `id`, `units` or a member attribute.
    Principal(Box<[(Box<str>, Test)]>),
    /// Tests on the resource: `id`, `kind`, `unit` or a resource attribute.
    Resource(Box<[(Box<str>, Test)]>),
    /// Tests on the request context: `client_ip` or a context attribute.
    Context(Box<[(Box<str>, Test)]>),
    /// The client address is inside one of the networks.
    Ip(Box<[IpNet]>),
    /// The member's id is the resource attribute, or is in it.
    Relation(Box<str>),
    /// The resource's unit is in this unit's subtree.
    InUnit(UnitId),
    /// The current instant is inside the weekly window.
    Schedule(Schedule),
    /// At least one holds.
    Any(Box<[Cond]>),
    /// The inner condition does not hold.
    Not(Box<Cond>),
}

impl Cond {
    /// Builds a condition, working out whether it contains a schedule.
    pub fn new(clauses: Vec<Clause>) -> Self {
        let has_schedule = clauses.iter().any(|c| match c {
            Clause::Schedule(_) => true,
            Clause::Any(cs) => cs.iter().any(|c| c.has_schedule),
            Clause::Not(c) => c.has_schedule,
            _ => false,
        });
        Cond { clauses: clauses.into_boxed_slice(), has_schedule }
    }

    /// True when every clause holds.
    pub fn holds(&self, env: &Env<'_>) -> bool {
        self.clauses.iter().all(|c| c.holds(env))
    }

    /// Lowers `bound` to the first schedule edge after `now` inside this condition.
    pub fn edges(&self, now: Timestamp, bound: &mut Option<Timestamp>) {
        if !self.has_schedule {
            return;
        }
        for clause in self.clauses.iter() {
            match clause {
                Clause::Schedule(s) => lower(bound, s.next_edge(now)),
                Clause::Any(cs) => cs.iter().for_each(|c| c.edges(now, bound)),
                Clause::Not(c) => c.edges(now, bound),
                _ => {}
            }
        }
    }
}

/// Lowers `bound` to `candidate` when that is earlier.
pub fn lower(bound: &mut Option<Timestamp>, candidate: Option<Timestamp>) {
    if let Some(c) = candidate {
        *bound = Some(bound.map_or(c, |b| b.min(c)));
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
