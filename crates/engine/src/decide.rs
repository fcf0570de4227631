//! The decision function (docs/policy-language.md, "Decision order"): pure, synchronous, and
//! the only place a decision is made.

use std::fmt;
use std::sync::Arc;

use jiff::Timestamp;

use super::condition::lower;
use super::eval::Env;
use super::explain::{self, Step};
use super::request::{Context, Query, Resource};
use super::snapshot::{ActionId, Binding, Member, Rule, Scope, Snapshot, Tenant};
use crate::suggest;

/// Why a decision came out as it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A binding grants the action.
    Granted,
    /// No binding grants the action.
    NoGrant,
    /// A deny rule forbids the action.
    DeniedByRule,
    /// The tenant is not loaded.
    UnknownTenant,
    /// The member is not in the tenant.
    UnknownPrincipal,
    /// The member is disabled.
    PrincipalDisabled,
    /// The member's account has expired.
    PrincipalExpired,
}

impl Reason {
    /// Every reason, for parsing and listing.
    pub const ALL: [Reason; 7] = [
        Reason::Granted,
        Reason::NoGrant,
        Reason::DeniedByRule,
        Reason::UnknownTenant,
        Reason::UnknownPrincipal,
        Reason::PrincipalDisabled,
        Reason::PrincipalExpired,
    ];

    /// The wire name (`NO_GRANT`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Granted => "GRANTED",
            Reason::NoGrant => "NO_GRANT",
            Reason::DeniedByRule => "DENIED_BY_RULE",
            Reason::UnknownTenant => "UNKNOWN_TENANT",
            Reason::UnknownPrincipal => "UNKNOWN_PRINCIPAL",
            Reason::PrincipalDisabled => "PRINCIPAL_DISABLED",
            Reason::PrincipalExpired => "PRINCIPAL_EXPIRED",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to a request.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Allow or deny.
    pub allowed: bool,
    /// Why.
    pub reason: Reason,
    /// The deciding binding (allow) or deny rule.
    pub rule: Option<Arc<str>>,
    /// Fields the caller must mask, sorted, without duplicates.
    pub mask: Vec<Arc<str>>,
    /// The caller must hold the message for review.
    pub review: bool,
    /// The member may ask for the action.
    pub requestable: bool,
    /// A rule marked `alert: true` applied.
    pub alert: bool,
    /// The deciding rule's message.
    pub message: Option<Arc<str>>,
    /// The answer cannot change before this instant (on this revision).
    pub valid_until: Option<Timestamp>,
    /// Reuse the answer no later than this: the earlier of `valid_until` and the decision
    /// instant plus the tenant's `max_staleness`. Set by [`decide`].
    pub cache_until: Option<Timestamp>,
}

impl Decision {
    /// A deny with no details.
    pub fn deny(reason: Reason) -> Self {
        Decision {
            allowed: false,
            reason,
            rule: None,
            mask: Vec::new(),
            review: false,
            requestable: false,
            alert: false,
            message: None,
            valid_until: None,
            cache_until: None,
        }
    }
}

/// A request the caller got wrong: an error, never a deny.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The action is not in the tenant's schema.
    #[error("unknown action `{action}` for tenant `{tenant}`{hint}")]
    UnknownAction {
        /// Tenant id.
        tenant: String,
        /// The action as sent.
        action: String,
        /// A "did you mean" hint, or empty.
        hint: String,
    },
    /// The action's kind is not the resource's kind.
    #[error("action `{action}` does not apply to resource kind `{kind}` (expected `{expected}`)")]
    KindMismatch {
        /// The action as sent.
        action: String,
        /// `resource.kind` as sent.
        kind: String,
        /// The action's kind.
        expected: String,
    },
}

/// Decides `query` on `snapshot` at `now`: docs/policy-language.md, "Decision order".
pub fn decide(snapshot: &Snapshot, query: &Query<'_>, now: Timestamp) -> Result<Decision, RequestError> {
    match snapshot.tenant(query.tenant) {
        Some(tenant) => tenant.decide(query, now),
        None => {
            let mut d = Decision::deny(Reason::UnknownTenant);
            d.cache_until = Some(cache_until(now, None, super::DEFAULT_MAX_STALENESS));
            Ok(d)
        }
    }
}

/// The earlier of `valid_until` and `now + staleness`; `now` itself (never reuse) when the sum
/// is past the end of time.
fn cache_until(now: Timestamp, valid_until: Option<Timestamp>, staleness: std::time::Duration) -> Timestamp {
    let stale = jiff::SignedDuration::try_from(staleness).ok().and_then(|s| now.checked_add(s).ok()).unwrap_or(now);
    valid_until.map_or(stale, |v| v.min(stale))
}

/// Where a decision's steps go: nowhere for `Check` ([`NoSteps`]), a list for `Explain`.
/// Generic rather than an `Option`, so the path every `Check` takes is compiled with none of
/// the explaining code in it.
pub(crate) trait Steps {
    /// The list to record into, if any.
    fn steps(&mut self) -> Option<&mut Vec<Step>>;
}

/// Records nothing.
pub(crate) struct NoSteps;

impl Steps for NoSteps {
    #[inline(always)]
    fn steps(&mut self) -> Option<&mut Vec<Step>> {
        None
    }
}

impl Steps for Vec<Step> {
    fn steps(&mut self) -> Option<&mut Vec<Step>> {
        Some(self)
    }
}

impl Tenant {
    /// Resolves `action` and checks it applies to `kind` (step 2).
    pub fn resolve_action(&self, action: &str, kind: &str) -> Result<ActionId, RequestError> {
        let Some(id) = self.action(action) else {
            return Err(RequestError::UnknownAction {
                tenant: self.name.to_string(),
                action: action.to_owned(),
                hint: suggest::hint(action, self.action_names()),
            });
        };
        let expected = self.action_kind.get(id as usize).and_then(|k| self.kinds.get(*k as usize));
        match expected {
            Some(k) if **k == *kind => Ok(id),
            _ => Err(RequestError::KindMismatch {
                action: action.to_owned(),
                kind: kind.to_owned(),
                expected: expected.map(|k| k.to_string()).unwrap_or_default(),
            }),
        }
    }

    /// Decides a request for this tenant (steps 2–7), with how long the answer may be reused.
    pub fn decide(&self, q: &Query<'_>, now: Timestamp) -> Result<Decision, RequestError> {
        self.decide_traced(q, now, &mut NoSteps)
    }

    /// [`Tenant::decide`], recording a [`Step`] for each thing it weighed when `steps` keeps them:
    /// the one path behind both `Check` and `Explain`.
    pub(crate) fn decide_traced(
        &self,
        q: &Query<'_>,
        now: Timestamp,
        steps: &mut impl Steps,
    ) -> Result<Decision, RequestError> {
        let action = self.resolve_action(q.action, &q.resource.kind)?;
        let mut d = match self.members.get(q.principal) {
            Some(member) => self.decide_member(action, member, q.resource, q.context, now, steps),
            None => {
                if let Some(steps) = steps.steps() {
                    steps.push(Step::principal(q.principal, false, "not a member of the tenant".into()));
                }
                Decision::deny(Reason::UnknownPrincipal)
            }
        };
        d.cache_until = Some(cache_until(now, d.valid_until, self.max_staleness));
        Ok(d)
    }

    /// Steps 3–7 for a known member and a resolved action (no `cache_until`).
    pub(crate) fn decide_member(
        &self,
        action: ActionId,
        member: &Member,
        resource: &Resource,
        context: &Context,
        now: Timestamp,
        steps: &mut impl Steps,
    ) -> Decision {
        let status = if let Some(why) = &member.invalid {
            // Fail closed: nothing of a member whose input was rejected can be trusted.
            Err(Decision { message: Some(why.clone()), ..Decision::deny(Reason::NoGrant) })
        } else if member.disabled {
            Err(Decision::deny(Reason::PrincipalDisabled))
        } else if member.expires.is_some_and(|e| now >= e) {
            Err(Decision::deny(Reason::PrincipalExpired))
        } else {
            Ok(())
        };
        if let Some(steps) = steps.steps() {
            steps.push(Step::principal(&member.id, status.is_ok(), explain::status(member, now)));
        }
        if let Err(d) = status {
            return d;
        }
        let res_unit = match resource.unit.as_str() {
            "" => None,
            name => self.units.get(name).copied(),
        };
        let env = Env { tenant: self, member, resource, context, res_unit, now };
        self.decide_active(action, &env, steps)
    }

    fn decide_active(&self, action: ActionId, env: &Env<'_>, steps: &mut impl Steps) -> Decision {
        let now = env.now;
        let mut bound = env.member.expires;

        let mut denied: Option<&Rule> = None;
        for rule in self.rules_for(&self.denies, action) {
            if let Some(w) = &rule.when {
                w.edges(now, &mut bound);
            }
            if let Some(steps) = steps.steps() {
                let why = explain::when_false(rule.when.as_ref(), env);
                if denied.is_none() && why.is_none() {
                    denied = Some(rule);
                }
                steps.push(Step::rule(rule, why));
            } else if denied.is_none() && rule.when.as_ref().is_none_or(|w| w.holds(env)) {
                denied = Some(rule);
            }
        }

        let (granted, requestable) = self.grants(action, env, denied, &mut bound, steps);

        let mut d = Decision::deny(Reason::NoGrant);
        for rule in self.rules_for(&self.obligations, action) {
            if let Some(w) = &rule.when {
                w.edges(now, &mut bound);
            }
            if denied.is_none() && granted.is_some() && rule.when.as_ref().is_none_or(|w| w.holds(env)) {
                d.mask.extend(rule.fields.iter().cloned());
                d.review |= rule.effect == super::snapshot::Effect::Review;
                d.alert |= rule.alert;
                if d.message.is_none() {
                    d.message = rule.message.clone();
                }
            }
        }
        d.valid_until = bound;

        if let Some(rule) = denied {
            d.reason = Reason::DeniedByRule;
            d.rule = Some(rule.id.clone());
            d.alert = rule.alert;
            d.message = rule.message.clone();
        } else if let Some(b) = granted {
            d.allowed = true;
            d.reason = Reason::Granted;
            d.rule = Some(b.id.clone());
            if d.mask.len() > 1 {
                d.mask.sort_unstable();
                d.mask.dedup();
            }
        } else {
            d.requestable = requestable;
        }
        d
    }

    /// Step 5 and the binding part of step 7: the first granting binding, whether the action is
    /// requestable, and the window and schedule edges of every binding that could grant it.
    /// With `steps`, every binding whose role has the action is weighed in full and recorded.
    fn grants<'t>(
        &'t self,
        action: ActionId,
        env: &Env<'t>,
        denied: Option<&Rule>,
        bound: &mut Option<Timestamp>,
        steps: &mut impl Steps,
    ) -> (Option<&'t Binding>, bool) {
        let now = env.now;
        let mut granted = None;
        let mut requestable = false;
        for b in env.member.bindings.iter().chain(self.everyone.iter()) {
            let Some(role) = self.roles.get(b.role as usize) else {
                continue;
            };
            let has = role.allow.contains(action);
            let asks = role.requestable.contains(action);
            if !(has || asks) {
                continue;
            }
            let in_window = b.from().is_none_or(|f| f <= now) && b.until().is_none_or(|u| now < u);
            if !self.scope_covers(&b.scope, env) {
                if let Some(steps) = steps.steps().filter(|_| has) {
                    let why = if in_window { self.scope_why(&b.scope, env) } else { explain::window(b, now) };
                    steps.push(Step::binding(b, role, false, why));
                }
                continue;
            }
            lower(bound, b.from().filter(|f| *f > now));
            lower(bound, b.until().filter(|u| *u > now));
            if let Some(w) = &b.when {
                w.edges(now, bound);
            }
            let decided = denied.is_some() || granted.is_some() || (requestable && !has);
            if let Some(steps) = steps.steps() {
                let why =
                    if in_window { explain::when_false(b.when.as_deref(), env) } else { Some(explain::window(b, now)) };
                let holds = why.is_none();
                if has {
                    let first = granted.map(|g: &Binding| g.id.clone());
                    steps.push(Step::binding(
                        b,
                        role,
                        holds && denied.is_none(),
                        explain::grant(why, denied, first, action, self),
                    ));
                }
                if decided || !holds {
                    continue;
                }
            } else if decided || !in_window || !b.when.as_ref().is_none_or(|w| w.holds(env)) {
                continue;
            }
            if has {
                granted = Some(b);
            } else {
                requestable = true;
            }
        }
        (granted, requestable)
    }

    fn rules_for<'t>(&'t self, index: &'t [Box<[u32]>], action: ActionId) -> impl Iterator<Item = &'t Rule> {
        let ids: &[u32] = index.get(action as usize).map(|ids| &ids[..]).unwrap_or_default();
        ids.iter().filter_map(|i| self.rules.get(*i as usize))
    }

    fn scope_covers(&self, scope: &Scope, env: &Env<'_>) -> bool {
        match scope {
            Scope::Tenant => true,
            Scope::Unit(u) => env.res_unit.is_some_and(|r| self.unit_covers(*u, r)),
            Scope::OwnUnits => env.res_unit.is_some_and(|r| env.member.units.iter().any(|u| self.unit_covers(*u, r))),
            Scope::Relation(attr) => env.resource.attrs.get(attr).is_some_and(|v| v.is_or_contains(&env.member.id)),
        }
    }
}
