//! The compiled, immutable form of a tenant's policy: names interned to integer ids, role
//! permissions as bit sets, the unit tree as pre-order intervals. Built by
//! `rolegate_policy::compile`, read by `decide`.

use std::sync::Arc;

use jiff::Timestamp;
use rustc_hash::FxHashMap;

use super::bitset::BitSet;
use super::condition::Cond;
pub use super::ids::{ActionId, RoleId, UnitId};
use super::member_key::MemberKey;
use super::value::Attrs;

/// Every tenant rolegate knows, by name.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    tenants: FxHashMap<Box<str>, Arc<Tenant>>,
}

impl Snapshot {
    /// The tenant named `name`.
    #[inline]
    pub fn tenant(&self, name: &str) -> Option<&Arc<Tenant>> {
        self.tenants.get(name)
    }

    /// Adds or replaces a tenant.
    pub fn insert(&mut self, tenant: Arc<Tenant>) {
        self.tenants.insert(tenant.name.as_ref().into(), tenant);
    }

    /// Removes a tenant.
    pub fn remove(&mut self, name: &str) -> Option<Arc<Tenant>> {
        self.tenants.remove(name)
    }

    /// Iterates the tenants in no particular order.
    pub fn tenants(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.tenants.values()
    }

    /// Number of tenants.
    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    /// True when no tenant is loaded.
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }
}

/// One tenant's compiled policy.
#[derive(Clone, Debug)]
pub struct Tenant {
    /// Tenant id.
    pub name: Arc<str>,
    /// Grows with every change of the tenant's data.
    pub revision: u64,
    /// Process-unique number the store gives each published tenant object (0 before it is
    /// published): unlike `revision`, which a source reports and may repeat, it never names two
    /// different objects, so caches key on it.
    pub generation: u64,
    /// Resource kinds of the schema, by kind id.
    pub kinds: Vec<Arc<str>>,
    /// Action names (`kind.verb`) to their ids.
    pub actions: FxHashMap<Box<str>, ActionId>,
    /// Action names, by action id.
    pub action_names: Vec<Arc<str>>,
    /// The kind id of each action.
    pub action_kind: Vec<u32>,
    /// Unit names to their ids.
    pub units: FxHashMap<Box<str>, UnitId>,
    /// Pre-order interval `[start, end)` of each unit: `u` covers `v` iff `v.start` is in `u`'s.
    pub unit_span: Vec<(u32, u32)>,
    /// Unit names, by unit id.
    pub unit_names: Vec<Arc<str>>,
    /// Roles with their effective permissions, by role id.
    pub roles: Vec<Role>,
    /// Keyed by the member's own id; members are shared so that changing one member of a large
    /// tenant copies pointers, not members.
    pub members: Members,
    /// The same members in the tenant document's order (`Who` answers in it). A source that
    /// changes some members keeps the others' places, replaces a changed member in place and
    /// puts an added one last.
    pub roster: Vec<Arc<Member>>,
    /// The `everyone` bindings, in document order.
    pub everyone: Vec<Binding>,
    /// Deny, mask and review rules, in document order.
    pub rules: Vec<Rule>,
    /// Per action, the deny rules that name it, in document order.
    pub denies: Vec<Box<[u32]>>,
    /// Per action, the mask and review rules that name it, in document order.
    pub obligations: Vec<Box<[u32]>>,
    /// How long a caller may reuse an answer (`max_staleness`): a revocation reaches a caller
    /// that caches answers at most this late.
    pub max_staleness: std::time::Duration,
}

/// A tenant's members by id (a short id is kept in the map's slot: see [`MemberKey`]).
pub type Members = FxHashMap<MemberKey, Arc<Member>>;

/// `max_staleness` when neither the tenant nor its template sets it.
pub const DEFAULT_MAX_STALENESS: std::time::Duration = std::time::Duration::from_secs(5);
/// The greatest `max_staleness` a document may set.
pub const MAX_STALENESS_LIMIT: std::time::Duration = std::time::Duration::from_secs(3600);

/// A role's effective permissions after `extends` and `except`.
#[derive(Clone, Debug)]
pub struct Role {
    /// Role name.
    pub name: Arc<str>,
    /// Actions the role grants.
    pub allow: BitSet,
    /// Actions a holder may ask for.
    pub requestable: BitSet,
}

/// A member with their bindings.
#[derive(Clone, Debug)]
pub struct Member {
    /// Member id.
    pub id: Arc<str>,
    /// `status: disabled`.
    pub disabled: bool,
    /// The instant the account expires.
    pub expires: Option<Timestamp>,
    /// The units the member belongs to.
    pub units: Box<[UnitId]>,
    /// Free attributes.
    pub attrs: Attrs,
    /// Own bindings in document order, the first [`INLINE_BINDINGS`] in the member's own
    /// allocation.
    pub bindings: Bindings,
    /// Set when the member's own input was rejected (a source could not compile its rows): the
    /// member is then served with no grant at all, `everyone` included, and this says why.
    pub invalid: Option<Arc<str>>,
}

impl Member {
    /// A member whose input was rejected: denied everything, with `why` in every decision.
    pub fn invalid(id: &str, why: &str) -> Self {
        Member {
            id: Arc::from(id),
            disabled: false,
            expires: None,
            units: Box::default(),
            attrs: Attrs::default(),
            bindings: Bindings::new(),
            invalid: Some(Arc::from(why)),
        }
    }
}

/// Bindings a member keeps in its own allocation; more go to one of their own.
pub const INLINE_BINDINGS: usize = 2;

/// A member's own bindings. Most members have one or two: kept inline, they sit beside the
/// member's status in memory, so a `Check` on a large tenant, where few members are in cache,
/// reads both in one trip to memory instead of two that wait on each other.
pub type Bindings = smallvec::SmallVec<[Binding; INLINE_BINDINGS]>;

/// A role granted within a scope, a time window and a condition.
#[derive(Clone, Debug)]
pub struct Binding {
    /// Explicit id, or `<member>#<index>` / `everyone#<index>`.
    pub id: Arc<str>,
    /// The granted role.
    pub role: RoleId,
    /// The resources covered.
    pub scope: Scope,
    /// The time window, when there is one: most bindings have none, and kept apart it leaves a
    /// binding one cache line.
    pub window: Option<Box<Window>>,
    /// Extra condition.
    pub when: Option<Box<Cond>>,
}

/// A binding's time window.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Start, inclusive.
    pub from: Option<Timestamp>,
    /// End, exclusive.
    pub until: Option<Timestamp>,
}

impl Binding {
    /// The window of `from` and `until`, `None` when neither is set.
    pub fn window(from: Option<Timestamp>, until: Option<Timestamp>) -> Option<Box<Window>> {
        (from.is_some() || until.is_some()).then(|| Box::new(Window { from, until }))
    }

    /// Start of the window, inclusive.
    #[inline]
    pub fn from(&self) -> Option<Timestamp> {
        self.window.as_ref().and_then(|w| w.from)
    }

    /// End of the window, exclusive.
    #[inline]
    pub fn until(&self) -> Option<Timestamp> {
        self.window.as_ref().and_then(|w| w.until)
    }
}

/// Which resources a binding covers.
#[derive(Clone, Debug, PartialEq)]
pub enum Scope {
    /// All of the tenant's resources.
    Tenant,
    /// Resources whose unit is this unit or below it.
    Unit(UnitId),
    /// Resources in or below any unit of the member.
    OwnUnits,
    /// Resources whose attribute equals or contains the member's id (the name is shared by
    /// every binding of the tenant that names it).
    Relation(Arc<str>),
}

/// What a rule does when it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Forbid; beats every grant.
    Deny,
    /// The caller must mask the rule's fields.
    Mask,
    /// The caller must hold the message for review.
    Review,
}

/// A tenant-wide rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Rule id.
    pub id: Arc<str>,
    /// Effect.
    pub effect: Effect,
    /// Extra condition.
    pub when: Option<Cond>,
    /// Fields to mask.
    pub fields: Box<[Arc<str>]>,
    /// Raise an alert when the rule applies.
    pub alert: bool,
    /// Text for the caller.
    pub message: Option<Arc<str>>,
}

impl Tenant {
    /// True when unit `outer` is `inner` or one of its ancestors.
    #[inline]
    pub fn unit_covers(&self, outer: UnitId, inner: UnitId) -> bool {
        match (self.unit_span.get(outer as usize), self.unit_span.get(inner as usize)) {
            (Some(&(start, end)), Some(&(pos, _))) => start <= pos && pos < end,
            _ => false,
        }
    }

    /// The action id of `name` (`kind.verb`).
    pub fn action(&self, name: &str) -> Option<ActionId> {
        self.actions.get(name).copied()
    }

    /// Names of every action of the schema.
    pub fn action_names(&self) -> impl Iterator<Item = &str> {
        self.action_names.iter().map(|a| a.as_ref())
    }

    /// Number of members.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binding_fits_one_cache_line_and_a_member_keeps_two_in_its_record() {
        // `Check` reads a member's status and first bindings: four cache lines at most.
        assert!(size_of::<Binding>() <= 64, "{}", size_of::<Binding>());
        assert!(size_of::<Member>() <= 256, "{}", size_of::<Member>());
    }
}
