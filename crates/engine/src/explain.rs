//! Why a decision came out as it did (docs/api.md, "Explain"): the steps `decide` weighs, in the
//! policy's own names. The decision itself is made by `decide`, which records these steps when
//! asked; nothing here decides.

use std::sync::Arc;

use jiff::Timestamp;

use super::condition::Cond;
use super::decide::{Decision, RequestError};
use super::eval::Env;
use super::request::Query;
use super::snapshot::{ActionId, Binding, Member, Role, Rule, Scope, Snapshot, Tenant};

/// What a step is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    /// The member's status (known, active, not expired).
    Principal,
    /// A deny rule naming the action.
    Rule,
    /// A binding whose role has the action.
    Binding,
}

impl StepKind {
    /// The wire name: `principal`, `rule` or `binding`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Principal => "principal",
            StepKind::Rule => "rule",
            StepKind::Binding => "binding",
        }
    }
}

/// One thing the decision weighed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// What it is about.
    pub kind: StepKind,
    /// The member id, rule id or binding id.
    pub id: Arc<str>,
    /// The member is active; the rule forbids; the binding grants.
    pub applies: bool,
    /// Why, in the policy's names: the first reason it does not apply, or what it does.
    pub why: String,
}

impl Step {
    pub(crate) fn principal(id: &str, applies: bool, why: String) -> Step {
        Step { kind: StepKind::Principal, id: Arc::from(id), applies, why }
    }

    pub(crate) fn rule(rule: &Rule, why_not: Option<String>) -> Step {
        let (applies, why) = match why_not {
            Some(path) => (false, format!("condition `{path}` is false")),
            None if rule.when.is_some() => (true, "forbids the action: its condition holds".to_owned()),
            None => (true, "forbids the action: it has no condition".to_owned()),
        };
        Step { kind: StepKind::Rule, id: rule.id.clone(), applies, why }
    }

    pub(crate) fn binding(b: &Binding, role: &Role, applies: bool, why: String) -> Step {
        Step { kind: StepKind::Binding, id: b.id.clone(), applies, why: format!("role `{}`: {why}", role.name) }
    }
}

/// The member's status, as the principal step says it.
pub(crate) fn status(member: &Member, now: Timestamp) -> String {
    match (&member.invalid, member.expires) {
        (Some(why), _) => why.to_string(),
        _ if member.disabled => "disabled".to_owned(),
        (None, Some(e)) if now >= e => format!("expired at {e}"),
        (None, Some(e)) => format!("active until {e}"),
        (None, None) => "active".to_owned(),
    }
}

/// The first clause of `when` that is false, as `when.principal.employment`; `None` when the
/// condition holds or there is none.
pub(crate) fn when_false(when: Option<&Cond>, env: &Env<'_>) -> Option<String> {
    when.and_then(|w| w.first_false(env, "when"))
}

/// Why a binding's window does not hold at `now`.
pub(crate) fn window(b: &Binding, now: Timestamp) -> String {
    match (b.from(), b.until()) {
        (Some(f), _) if now < f => format!("outside its time window: starts {f}"),
        (_, Some(u)) => format!("outside its time window: ended {u}"),
        _ => "outside its time window".to_owned(),
    }
}

/// What a binding whose window, scope and condition were weighed did: `why_not` is the first
/// of them that failed, `denied` the deny rule in force, `first` an earlier granting binding.
pub(crate) fn grant(
    why_not: Option<String>,
    denied: Option<&Rule>,
    first: Option<Arc<str>>,
    action: ActionId,
    tenant: &Tenant,
) -> String {
    match (why_not, denied, first) {
        (Some(path), ..) if path.starts_with("outside") => path,
        (Some(path), ..) => format!("condition `{path}` is false"),
        (None, Some(rule), _) => format!("shadowed by rule `{}`", rule.id),
        (None, None, Some(first)) => format!("also grants it; binding `{first}` comes first"),
        (None, None, None) => {
            let name = tenant.action_names.get(action as usize).map_or("the action", |a| &**a);
            format!("grants `{name}`")
        }
    }
}

impl Tenant {
    /// Why `scope` does not cover the resource of `env`.
    pub(crate) fn scope_why(&self, scope: &Scope, env: &Env<'_>) -> String {
        let unit = &env.resource.unit;
        let resource_unit = || match env.res_unit {
            _ if unit.is_empty() => "a resource without a unit".to_owned(),
            None => format!("unit `{unit}` (not a unit of the tenant)"),
            Some(_) => format!("unit `{unit}`"),
        };
        match scope {
            Scope::Tenant => "scope `tenant` covers every resource".to_owned(),
            Scope::Unit(u) => {
                let name = self.unit_names.get(*u as usize).map_or("?", |n| &**n);
                format!("scope `{{unit: {name}}}` does not cover {}", resource_unit())
            }
            Scope::OwnUnits => {
                let names: Vec<&str> =
                    env.member.units.iter().filter_map(|u| self.unit_names.get(*u as usize)).map(|n| &**n).collect();
                format!("scope `own_units` ({}) does not cover {}", names.join(", "), resource_unit())
            }
            Scope::Relation(attr) => match env.resource.attrs.get(attr) {
                Some(v) => {
                    format!("scope `{{relation: {attr}}}`: resource.attrs.{attr} `{v}` does not name the member")
                }
                None => format!("scope `{{relation: {attr}}}`: the resource has no attribute `{attr}`"),
            },
        }
    }

    /// Decides `q` like [`Tenant::decide`] and says why: the principal's status, then every
    /// deny rule naming the action, then every binding whose role has it (the member's, then
    /// `everyone`'s), each with whether it applies and its first reason.
    pub fn explain(&self, q: &Query<'_>, now: Timestamp) -> Result<(Decision, Vec<Step>), RequestError> {
        let mut steps = Vec::new();
        let d = self.decide_traced(q, now, &mut steps)?;
        Ok((d, steps))
    }
}

/// [`crate::decide`] with its steps; an unknown tenant has none.
pub fn explain(snapshot: &Snapshot, q: &Query<'_>, now: Timestamp) -> Result<(Decision, Vec<Step>), RequestError> {
    match snapshot.tenant(q.tenant) {
        Some(tenant) => tenant.explain(q, now),
        None => Ok((crate::decide(snapshot, q, now)?, Vec::new())),
    }
}
