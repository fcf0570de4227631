//! What one member's access to one action depends on, in canonical form: the member's status,
//! the deny rules, the bindings and the obligation rules that name the action, with every part
//! known once the member is known (principal tests, the member's units, unit subtrees) decided,
//! and every part that cannot matter (a binding after one that always grants, grants under a
//! deny that always applies) left out. Two equal profiles give the same answer to every request
//! at every instant; the diff compares profiles.

use std::collections::BTreeSet;
use std::fmt;

use jiff::Timestamp;
use rolegate_engine::{
    ActionId, AttrRef, Binding, Clause, Cond, Effect, Member, Op, Schedule, Scope, Side, Tenant, Test, Value,
};

/// The member's standing, which decides before any binding does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// The tenant is not loaded.
    NoTenant,
    /// The member is not in the tenant.
    Unknown,
    /// The member's input was rejected; denied everything with this message.
    Invalid(String),
    /// `status: disabled`.
    Disabled,
    /// Active, until `expires` when set.
    Active(Option<Timestamp>),
}

impl Status {
    /// True when some request can be allowed.
    pub fn may_act(&self) -> bool {
        matches!(self, Status::Active(_))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::NoTenant => f.write_str("tenant absent"),
            Status::Unknown => f.write_str("absent"),
            Status::Invalid(why) => write!(f, "rejected ({why})"),
            Status::Disabled => f.write_str("disabled"),
            Status::Active(None) => f.write_str("active"),
            Status::Active(Some(t)) => write!(f, "active until {t}"),
        }
    }
}

/// Resources a grant covers, with unit subtrees spelled out.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    /// Every resource of the tenant.
    Tenant,
    /// Resources whose unit is one of these (sorted).
    Units(BTreeSet<String>),
    /// Resources whose attribute holds the member's id.
    Relation(String),
}

impl Reach {
    /// True when every resource `other` covers, this covers too.
    pub fn covers(&self, other: &Reach) -> bool {
        match (self, other) {
            (Reach::Tenant, _) => true,
            (Reach::Units(a), Reach::Units(b)) => b.is_subset(a),
            (Reach::Relation(a), Reach::Relation(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for Reach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reach::Tenant => f.write_str("the whole tenant"),
            Reach::Units(us) => write!(f, "units {}", us.iter().map(String::as_str).collect::<Vec<_>>().join(", ")),
            Reach::Relation(attr) => write!(f, "resources whose `{attr}` is the member"),
        }
    }
}

/// A condition with everything the member decides already decided: the clauses left test the
/// resource, the context or the clock. Sorted and without duplicates, so clause order is no
/// change.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Residual(pub Vec<Part>);

/// One clause of a residual condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    /// `resource.KEY` passes the test.
    Resource(String, Test),
    /// `context.KEY` passes the test.
    Context(String, Test),
    /// The client address is in one of these networks (sorted).
    Ip(Vec<String>),
    /// The member's id is the resource attribute, or is in it.
    Relation(String),
    /// The resource's unit is one of these.
    InUnit(BTreeSet<String>),
    /// `SIDE.KEY` passes a test comparing it with other attributes of the call (`same_as`), with
    /// the member's values of the principal attributes it reads.
    Bound(String, String, Test, Vec<(String, Option<Value>)>),
    /// The instant is inside the weekly window: zone, day bits, start and end seconds.
    Schedule(String, u8, u32, u32),
    /// At least one holds (sorted).
    Any(Vec<Residual>),
    /// The inner one does not hold.
    Not(Residual),
}

/// The outcome of deciding what can be decided of a condition.
enum Simple {
    Always,
    Never,
    Only(Residual),
}

/// The access one active member has to one action.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Access {
    /// Deny rules that can apply, in order; the last one always applies when its `when` is none.
    pub denies: Vec<DenyItem>,
    /// Bindings that can grant or make the action requestable, in decision order.
    pub grants: Vec<GrantItem>,
    /// Mask and review rules that can apply to an allow, in order.
    pub obligations: Vec<ObligationItem>,
}

/// A deny rule as it bears on one member.
#[derive(Clone, Debug, PartialEq)]
pub struct DenyItem {
    /// Rule id.
    pub id: String,
    /// `None`: always applies.
    pub when: Option<Residual>,
    /// `alert: true`.
    pub alert: bool,
    /// Its message.
    pub message: Option<String>,
}

/// A binding as it bears on one member and action.
#[derive(Clone, Debug)]
pub struct GrantItem {
    /// Binding id.
    pub id: String,
    /// Role name (shown; the role's effect is in `allows`).
    pub role: String,
    /// True: the role has the action; false: it only lists it as requestable.
    pub allows: bool,
    /// Resources covered.
    pub reach: Reach,
    /// Window start, inclusive.
    pub from: Option<Timestamp>,
    /// Window end, exclusive.
    pub until: Option<Timestamp>,
    /// `None`: no condition left.
    pub when: Option<Residual>,
    /// Granted through an `everyone` binding.
    pub everyone: bool,
}

impl PartialEq for GrantItem {
    /// The role's name is not part of any answer: a renamed role granting the same is no change.
    fn eq(&self, o: &Self) -> bool {
        self.id == o.id
            && self.allows == o.allows
            && self.reach == o.reach
            && self.from == o.from
            && self.until == o.until
            && self.when == o.when
    }
}

impl GrantItem {
    /// True when this grant gives everything `other` does: it allows (or both only make the
    /// action requestable), and its reach, window and condition are at least as wide.
    pub fn covers(&self, other: &GrantItem) -> bool {
        (self.allows || !other.allows)
            && self.reach.covers(&other.reach)
            && self.from.is_none_or(|f| other.from.is_some_and(|g| f <= g))
            && self.until.is_none_or(|u| other.until.is_some_and(|v| v <= u))
            && (self.when.is_none() || self.when == other.when)
    }

    fn always(&self) -> bool {
        self.allows && self.reach == Reach::Tenant && self.from.is_none() && self.until.is_none() && self.when.is_none()
    }
}

/// A mask or review rule as it bears on one member.
#[derive(Clone, Debug, PartialEq)]
pub struct ObligationItem {
    /// Rule id.
    pub id: String,
    /// Mask or review.
    pub effect: Effect,
    /// Fields masked (sorted).
    pub fields: Vec<String>,
    /// `None`: always applies.
    pub when: Option<Residual>,
    /// `alert: true`.
    pub alert: bool,
    /// Its message.
    pub message: Option<String>,
}

/// The status of member `id` in `tenant`.
pub fn status(tenant: Option<&Tenant>, id: &str) -> Status {
    let Some(t) = tenant else { return Status::NoTenant };
    match t.members.get(id) {
        None => Status::Unknown,
        Some(m) => match (&m.invalid, m.disabled) {
            (Some(why), _) => Status::Invalid(why.to_string()),
            (None, true) => Status::Disabled,
            (None, false) => Status::Active(m.expires),
        },
    }
}

/// The access of an active `member` to `action`.
pub fn access(t: &Tenant, m: &Member, action: ActionId) -> Access {
    let kind = t.action_kind.get(action as usize).and_then(|k| t.kinds.get(*k as usize)).map(|k| k.to_string());
    let cx = Cx { t, m, kind: kind.unwrap_or_default() };
    let mut out = Access::default();
    for rule in rules(t, &t.denies, action) {
        let Some(when) = cx.when(rule.when.as_ref()) else { continue };
        let always = when.is_none();
        out.denies.push(DenyItem {
            id: rule.id.to_string(),
            when,
            alert: rule.alert,
            message: rule.message.as_deref().map(str::to_owned),
        });
        if always {
            // Nothing after a deny that always applies is ever reached.
            return out;
        }
    }
    let own = m.bindings.iter().map(|b| (b, false));
    for (b, everyone) in own.chain(t.everyone.iter().map(|b| (b, true))) {
        let Some(item) = cx.grant(b, action, everyone) else { continue };
        let always = item.always();
        out.grants.push(item);
        if always {
            break;
        }
    }
    if !out.grants.iter().any(|g| g.allows) {
        return out;
    }
    for rule in rules(t, &t.obligations, action) {
        let Some(when) = cx.when(rule.when.as_ref()) else { continue };
        let mut fields: Vec<String> = rule.fields.iter().map(|f| f.to_string()).collect();
        fields.sort_unstable();
        fields.dedup();
        out.obligations.push(ObligationItem {
            id: rule.id.to_string(),
            effect: rule.effect,
            fields,
            when,
            alert: rule.alert,
            message: rule.message.as_deref().map(str::to_owned),
        });
    }
    out
}

fn rules<'t>(
    t: &'t Tenant,
    index: &'t [Box<[u32]>],
    action: ActionId,
) -> impl Iterator<Item = &'t rolegate_engine::Rule> {
    let ids: &[u32] = index.get(action as usize).map(|ids| &ids[..]).unwrap_or_default();
    ids.iter().filter_map(|i| t.rules.get(*i as usize))
}

/// What a profile is built against.
struct Cx<'a> {
    t: &'a Tenant,
    m: &'a Member,
    /// The action's kind: a request's resource has it, or the request is an error.
    kind: String,
}

impl Cx<'_> {
    /// `None` when the condition never holds; `Some(None)` when it always does.
    fn when(&self, cond: Option<&Cond>) -> Option<Option<Residual>> {
        match cond.map(|c| self.simplify(c)) {
            None | Some(Simple::Always) => Some(None),
            Some(Simple::Never) => None,
            Some(Simple::Only(r)) => Some(Some(r)),
        }
    }

    fn grant(&self, b: &Binding, action: ActionId, everyone: bool) -> Option<GrantItem> {
        let role = self.t.roles.get(b.role as usize)?;
        let allows = role.allow.contains(action);
        if !allows && !role.requestable.contains(action) {
            return None;
        }
        if let (Some(f), Some(u)) = (b.from(), b.until())
            && f >= u
        {
            return None;
        }
        let reach = match &b.scope {
            Scope::Tenant => Reach::Tenant,
            Scope::Unit(u) => Reach::Units(self.subtree(*u)),
            Scope::OwnUnits => {
                let all: BTreeSet<String> = self.m.units.iter().flat_map(|u| self.subtree(*u)).collect();
                if all.is_empty() {
                    return None;
                }
                Reach::Units(all)
            }
            Scope::Relation(attr) => Reach::Relation(attr.to_string()),
        };
        let when = self.when(b.when.as_deref())?;
        Some(GrantItem {
            id: b.id.to_string(),
            role: role.name.to_string(),
            allows,
            reach,
            from: b.from(),
            until: b.until(),
            when,
            everyone,
        })
    }

    fn subtree(&self, u: u32) -> BTreeSet<String> {
        let names = self.t.unit_names.iter().enumerate();
        names.filter(|(v, _)| self.t.unit_covers(u, *v as u32)).map(|(_, n)| n.to_string()).collect()
    }

    fn simplify(&self, cond: &Cond) -> Simple {
        let mut parts = Vec::new();
        for clause in cond.clauses.iter() {
            match clause {
                Clause::Principal(tests) => {
                    for (k, test) in tests.iter() {
                        if refs(test).all(|r| r.side == Side::Principal) {
                            let lookup = |r: &AttrRef| self.principal(&r.name);
                            if !test.eval_with(self.principal(k).as_ref(), &lookup) {
                                return Simple::Never;
                            }
                        } else {
                            parts.push(self.bound(Side::Principal, k, test));
                        }
                    }
                }
                Clause::Resource(tests) => {
                    for (k, test) in tests.iter() {
                        if refs(test).next().is_some() {
                            parts.push(self.bound(Side::Resource, k, test));
                        } else if &**k == "kind" {
                            if !test.eval(Some(&Value::Text(self.kind.clone()))) {
                                return Simple::Never;
                            }
                        } else {
                            parts.push(Part::Resource(k.to_string(), test.clone()));
                        }
                    }
                }
                Clause::Context(tests) => {
                    for (k, test) in tests.iter() {
                        if refs(test).next().is_some() {
                            parts.push(self.bound(Side::Context, k, test));
                        } else {
                            parts.push(Part::Context(k.to_string(), test.clone()));
                        }
                    }
                }
                Clause::Ip(nets) => {
                    let mut nets: Vec<String> = nets.iter().map(|n| n.trunc().to_string()).collect();
                    if nets.is_empty() {
                        return Simple::Never;
                    }
                    nets.sort_unstable();
                    nets.dedup();
                    parts.push(Part::Ip(nets));
                }
                Clause::Relation(attr) => parts.push(Part::Relation(attr.to_string())),
                Clause::InUnit(u) => parts.push(Part::InUnit(self.subtree(*u))),
                Clause::Schedule(s) => parts.push(schedule(s)),
                Clause::Any(cs) => {
                    let mut alts = Vec::new();
                    for c in cs.iter() {
                        match self.simplify(c) {
                            Simple::Always => {
                                alts.clear();
                                alts.push(None);
                                break;
                            }
                            Simple::Never => {}
                            Simple::Only(r) => alts.push(Some(r)),
                        }
                    }
                    let mut alts: Vec<Residual> = match alts.as_slice() {
                        [] => return Simple::Never,
                        [None] => continue,
                        _ => alts.into_iter().flatten().collect(),
                    };
                    sort(&mut alts);
                    match <[Residual; 1]>::try_from(alts) {
                        Ok([one]) => parts.extend(one.0),
                        Err(alts) => parts.push(Part::Any(alts)),
                    }
                }
                Clause::Not(c) => match self.simplify(c) {
                    Simple::Always => return Simple::Never,
                    Simple::Never => {}
                    Simple::Only(r) => parts.push(Part::Not(r)),
                },
            }
        }
        if parts.is_empty() {
            return Simple::Always;
        }
        sort(&mut parts);
        Simple::Only(Residual(parts))
    }

    /// The value a principal test on `key` reads.
    fn principal(&self, key: &str) -> Option<Value> {
        let m = self.m;
        match key {
            "id" => Some(Value::Text(m.id.to_string())),
            "units" => {
                let names = m.units.iter().filter_map(|u| self.t.unit_names.get(*u as usize));
                Some(Value::List(names.map(|n| n.to_string()).collect()))
            }
            _ => m.attrs.get(key).cloned(),
        }
    }

    /// A test that compares with another side of the call: kept, with the member's values of
    /// every principal attribute it reads, so a change of those values is a change.
    fn bound(&self, side: Side, key: &str, test: &Test) -> Part {
        let mut names: Vec<&str> = refs(test).filter(|r| r.side == Side::Principal).map(|r| &*r.name).collect();
        if side == Side::Principal {
            names.push(key);
        }
        names.sort_unstable();
        names.dedup();
        let values = names.into_iter().map(|n| (n.to_owned(), self.principal(n))).collect();
        Part::Bound(side.as_str().to_owned(), key.to_owned(), test.clone(), values)
    }
}

/// The attributes of other sides a test compares with (`same_as`).
fn refs(test: &Test) -> impl Iterator<Item = &AttrRef> {
    let ops: &[Op] = match test {
        Test::Ops(ops) => ops,
        _ => &[],
    };
    ops.iter().filter_map(|op| match op {
        Op::SameAs(r) => Some(r),
        _ => None,
    })
}

fn schedule(s: &Schedule) -> Part {
    Part::Schedule(s.tz_name.clone(), s.days, s.from, s.to)
}

/// Sorts by the debug form, which spells out every field, and drops duplicates.
fn sort<T: fmt::Debug>(items: &mut Vec<T>) {
    let mut keyed: Vec<(String, T)> = items.drain(..).map(|i| (format!("{i:?}"), i)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.dedup_by(|a, b| a.0 == b.0);
    items.extend(keyed.into_iter().map(|(_, i)| i));
}

fn lit(l: &rolegate_engine::Lit) -> String {
    let bare_reads_otherwise = l.num.is_none() && l.flag.is_none() && {
        let again = rolegate_engine::Lit::new(&l.text, true);
        again.num.is_some() || again.flag.is_some()
    };
    if bare_reads_otherwise || l.text.is_empty() || l.text.contains([',', '[', ']', ' ']) {
        format!("{:?}", l.text)
    } else {
        l.text.clone()
    }
}

fn test_text(f: &mut fmt::Formatter<'_>, key: &str, t: &Test) -> fmt::Result {
    use rolegate_engine::Op;
    match t {
        Test::Equals(l) => write!(f, "{key} = {}", lit(l)),
        Test::OneOf(ls) => write!(f, "{key} in [{}]", ls.iter().map(lit).collect::<Vec<_>>().join(", ")),
        Test::Ops(ops) => {
            let ops: Vec<String> = ops
                .iter()
                .map(|op| match op {
                    Op::Lt(x) => format!("{key} < {x}"),
                    Op::Le(x) => format!("{key} <= {x}"),
                    Op::Gt(x) => format!("{key} > {x}"),
                    Op::Ge(x) => format!("{key} >= {x}"),
                    Op::Contains(s) => format!("{key} contains {s:?}"),
                    Op::Present(true) => format!("{key} present"),
                    Op::Present(false) => format!("{key} absent"),
                    Op::SameAs(r) => format!("{key} same as {r}"),
                })
                .collect();
            f.write_str(&ops.join(" and "))
        }
    }
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |s: &BTreeSet<String>| s.iter().map(String::as_str).collect::<Vec<_>>().join(", ");
        match self {
            Part::Resource(k, t) => test_text(f, &format!("resource.{k}"), t),
            Part::Context(k, t) => test_text(f, &format!("context.{k}"), t),
            Part::Ip(nets) => write!(f, "ip in [{}]", nets.join(", ")),
            Part::Relation(a) => write!(f, "relation {a}"),
            Part::InUnit(us) => write!(f, "resource.unit in [{}]", set(us)),
            Part::Bound(side, k, t, values) => {
                test_text(f, &format!("{side}.{k}"), t)?;
                let values: Vec<String> = values
                    .iter()
                    .map(|(n, v)| {
                        format!("principal.{n} = {}", v.as_ref().map_or("absent".to_owned(), ToString::to_string))
                    })
                    .collect();
                if !values.is_empty() {
                    write!(f, " (here {})", values.join(", "))?;
                }
                Ok(())
            }
            Part::Schedule(tz, days, from, to) => {
                let days: Vec<&str> =
                    DAYS.iter().enumerate().filter(|(i, _)| days & (1 << i) != 0).map(|(_, d)| *d).collect();
                let hm = |s: &u32| format!("{:02}:{:02}", s / 3600, s / 60 % 60);
                write!(f, "schedule {tz} {} {}-{}", days.join(","), hm(from), hm(to))
            }
            Part::Any(alts) => {
                write!(f, "any of ({})", alts.iter().map(ToString::to_string).collect::<Vec<_>>().join(" | "))
            }
            Part::Not(r) => write!(f, "not ({r})"),
        }
    }
}

impl fmt::Display for Residual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.iter().map(ToString::to_string).collect::<Vec<_>>().join(" and "))
    }
}

impl fmt::Display for DenyItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "denied by rule `{}`", self.id)?;
        if let Some(w) = &self.when {
            write!(f, " when {w}")?;
        }
        if self.alert {
            f.write_str(" (alert)")?;
        }
        if let Some(m) = &self.message {
            write!(f, " with message {m:?}")?;
        }
        Ok(())
    }
}

impl fmt::Display for GrantItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.allows { "allowed on " } else { "requestable on " })?;
        write!(f, "{}", self.reach)?;
        if let Some(from) = self.from {
            write!(f, " from {from}")?;
        }
        if let Some(until) = self.until {
            write!(f, " until {until}")?;
        }
        if let Some(w) = &self.when {
            write!(f, " when {w}")?;
        }
        let whose = if self.everyone { "everyone binding" } else { "binding" };
        write!(f, " ({whose} `{}`, role `{}`)", self.id, self.role)
    }
}

impl fmt::Display for ObligationItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.effect {
            Effect::Review => f.write_str("held for review")?,
            _ => write!(f, "masks {}", self.fields.join(", "))?,
        }
        write!(f, " by rule `{}`", self.id)?;
        if let Some(w) = &self.when {
            write!(f, " when {w}")?;
        }
        if self.alert {
            f.write_str(" (alert)")?;
        }
        if let Some(m) = &self.message {
            write!(f, " with message {m:?}")?;
        }
        Ok(())
    }
}
