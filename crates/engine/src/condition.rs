//! Compiled `when` conditions (docs/policy-language.md, "Conditions"): the data the compiler
//! builds, and the schedule edges inside it. Evaluating one against a request is the `eval` module.

use ipnet::IpNet;
use jiff::Timestamp;

use super::ids::UnitId;
use super::schedule::Schedule;
use super::value::Test;

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
