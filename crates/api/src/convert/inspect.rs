//! The Inspector's wire types: steps and grants, to the wire for the server and back for clients.

use std::sync::Arc;

use super::{Invalid, invalid, timestamp};
use crate as api;
use rolegate_engine::{Grant, GrantScope, Step, StepKind};

/// The wire step.
pub fn step(s: &Step) -> api::Step {
    let Step { kind, id, applies, why } = s;
    api::Step { kind: kind.as_str().to_owned(), id: id.to_string(), applies: *applies, why: why.clone() }
}

/// A step read back from the wire.
pub fn step_from_wire(s: api::Step) -> Result<Step, Invalid> {
    let api::Step { kind, id, applies, why } = s;
    let kind = match kind.as_str() {
        "principal" => StepKind::Principal,
        "rule" => StepKind::Rule,
        "binding" => StepKind::Binding,
        other => return Err(invalid("steps.kind", format!("unknown step kind `{}`", super::echo(other)))),
    };
    Ok(Step { kind, id: id.into(), applies, why })
}

/// The wire grant.
pub fn grant(g: &Grant) -> api::Grant {
    use api::grant_scope::Kind;
    let Grant { action, scope, conditional, binding, role, from, until, requestable, deny_rules } = g;
    let scope = match scope {
        GrantScope::Tenant => Kind::Tenant(true),
        GrantScope::Units(units) => {
            Kind::Units(api::StringList { values: units.iter().map(|u| u.to_string()).collect() })
        }
        GrantScope::Relation(attr) => Kind::Relation(attr.to_string()),
    };
    api::Grant {
        action: action.to_string(),
        scope: Some(api::GrantScope { kind: Some(scope) }),
        conditional: *conditional,
        binding: binding.to_string(),
        role: role.to_string(),
        from: from.map(timestamp),
        until: until.map(timestamp),
        requestable: *requestable,
        deny_rules: deny_rules.iter().map(|r| r.to_string()).collect(),
    }
}

/// A grant read back from the wire.
pub fn grant_from_wire(g: api::Grant) -> Result<Grant, Invalid> {
    use api::grant_scope::Kind;
    let api::Grant { action, scope, conditional, binding, role, from, until, requestable, deny_rules } = g;
    let scope = match scope.and_then(|s| s.kind) {
        Some(Kind::Tenant(_)) => GrantScope::Tenant,
        Some(Kind::Units(l)) => GrantScope::Units(l.values.into_iter().map(Arc::from).collect()),
        Some(Kind::Relation(attr)) => GrantScope::Relation(attr.into()),
        None => return Err(invalid("grants.scope", "is required")),
    };
    let instant = |field: &str, t: Option<prost_types::Timestamp>| {
        t.map(|t| jiff::Timestamp::new(t.seconds, t.nanos)).transpose().map_err(|e| invalid(field, e.to_string()))
    };
    Ok(Grant {
        action: action.into(),
        scope,
        conditional,
        binding: binding.into(),
        role: role.into(),
        from: instant("grants.from", from)?,
        until: instant("grants.until", until)?,
        requestable,
        deny_rules: deny_rules.into_iter().map(Arc::from).collect(),
    })
}
