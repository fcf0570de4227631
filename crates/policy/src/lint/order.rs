//! Deny rules whose order changes the answer. The first deny rule (document order) whose actions
//! match and whose condition holds decides, with its id, `alert` and `message`; a later rule on
//! the same action whose condition can hold at the same time is never the one reported there.
//! That is silent harm when the later rule carries what the earlier lacks: an `alert` never
//! raised, or a `message` never shown where the earlier has none. Moving the later rule first
//! changes what callers and the security team are told.

use rolegate_engine::{Clause, Cond, Effect, Op, Rule, Tenant, Test};

/// A pair of deny rules whose order matters: rule indices in the tenant, the first action they
/// share, and how many they share.
#[derive(Debug, PartialEq)]
pub struct Overlap {
    /// The rule listed first: it decides where both hold.
    pub first: usize,
    /// The later rule, never reported where both hold.
    pub later: usize,
    /// One action both deny.
    pub action: u32,
    /// How many actions both deny.
    pub shared: usize,
    /// What the later rule would give and never does there: `alert`, `message`.
    pub lost: Vec<&'static str>,
}

/// Every pair of deny rules that share an action and may hold together, where the later one's
/// alert or message is lost to the earlier one.
pub fn overlaps(tenant: &Tenant) -> Vec<Overlap> {
    let denies: Vec<(usize, &Rule)> =
        tenant.rules.iter().enumerate().filter(|(_, r)| r.effect == Effect::Deny).collect();
    let mut out = Vec::new();
    for (n, &(a, ra)) in denies.iter().enumerate() {
        for &(b, rb) in denies.iter().skip(n + 1) {
            let lost = lost(ra, rb);
            if lost.is_empty() || exclusive(tenant, ra.when.as_ref(), rb.when.as_ref()) {
                continue;
            }
            let shared: Vec<u32> = tenant
                .denies
                .iter()
                .enumerate()
                .filter(|(_, rules)| rules.contains(&(a as u32)) && rules.contains(&(b as u32)))
                .map(|(action, _)| action as u32)
                .collect();
            if let Some(&action) = shared.first() {
                out.push(Overlap { first: a, later: b, action, shared: shared.len(), lost });
            }
        }
    }
    out
}

/// What `later` gives that `first` does not, where `first` decides.
fn lost(first: &Rule, later: &Rule) -> Vec<&'static str> {
    let mut d = Vec::new();
    if later.alert && !first.alert {
        d.push("alert");
    }
    if later.message.is_some() && first.message.is_none() {
        d.push("message");
    }
    d
}

/// True only when the two conditions can never hold on the same call (a missing condition
/// always holds). Sound, not complete: conditions it cannot tell apart count as overlapping.
fn exclusive(t: &Tenant, a: Option<&Cond>, b: Option<&Cond>) -> bool {
    let (Some(a), Some(b)) = (a, b) else { return false };
    a.clauses.iter().any(|x| b.clauses.iter().any(|y| clauses_exclusive(t, x, y)))
}

fn clauses_exclusive(t: &Tenant, x: &Clause, y: &Clause) -> bool {
    match (x, y) {
        (Clause::InUnit(u), Clause::InUnit(v)) => !t.unit_covers(*u, *v) && !t.unit_covers(*v, *u),
        (Clause::Not(n), other) | (other, Clause::Not(n)) => matches!(&*n.clauses, [only] if only == other),
        (Clause::Principal(p), Clause::Principal(q)) => tests_exclusive(p, q, &["id"]),
        (Clause::Resource(p), Clause::Resource(q)) => tests_exclusive(p, q, &["id", "unit", "kind"]),
        (Clause::Context(p), Clause::Context(q)) => tests_exclusive(p, q, &["client_ip"]),
        _ => false,
    }
}

/// Two sets of attribute tests no call can pass together. Equality proves it only on `scalars`
/// (fields that are never lists: `attr: v` on a list attribute means "contains", so two values
/// can both hold); presence and numeric ranges prove it on any attribute.
fn tests_exclusive(p: &[(Box<str>, Test)], q: &[(Box<str>, Test)], scalars: &[&str]) -> bool {
    p.iter().any(|(name, s)| {
        q.iter().filter(|(other, _)| other == name).any(|(_, u)| {
            let scalar = scalars.contains(&&**name);
            (scalar && values_disjoint(s, u)) || presence_differs(s, u) || ranges_disjoint(s, u)
        })
    })
}

fn values(t: &Test) -> Option<Vec<&str>> {
    match t {
        Test::Equals(l) => Some(vec![l.text.as_str()]),
        Test::OneOf(ls) => Some(ls.iter().map(|l| l.text.as_str()).collect()),
        Test::Ops(_) => None,
    }
}

fn values_disjoint(s: &Test, u: &Test) -> bool {
    match (values(s), values(u)) {
        (Some(a), Some(b)) => !a.iter().any(|v| b.contains(v)),
        _ => false,
    }
}

fn presence(t: &Test) -> Option<bool> {
    match t {
        Test::Ops(ops) => ops.iter().find_map(|o| if let Op::Present(p) = o { Some(*p) } else { None }),
        // Any value test needs the attribute.
        Test::Equals(_) | Test::OneOf(_) => Some(true),
    }
}

fn presence_differs(s: &Test, u: &Test) -> bool {
    matches!((presence(s), presence(u)), (Some(a), Some(b)) if a != b)
}

/// The numbers a test admits, as (low, low included, high, high included).
fn range(t: &Test) -> Option<(f64, bool, f64, bool)> {
    let Test::Ops(ops) = t else { return None };
    let mut r = (f64::NEG_INFINITY, false, f64::INFINITY, false);
    let mut numeric = false;
    for o in ops {
        match *o {
            Op::Gt(v) if v >= r.0 => (r.0, r.1, numeric) = (v, false, true),
            Op::Ge(v) if v > r.0 => (r.0, r.1, numeric) = (v, true, true),
            Op::Lt(v) if v <= r.2 => (r.2, r.3, numeric) = (v, false, true),
            Op::Le(v) if v < r.2 => (r.2, r.3, numeric) = (v, true, true),
            Op::Gt(_) | Op::Ge(_) | Op::Lt(_) | Op::Le(_) => numeric = true,
            _ => {}
        }
    }
    numeric.then_some(r)
}

fn ranges_disjoint(s: &Test, u: &Test) -> bool {
    let (Some(a), Some(b)) = (range(s), range(u)) else { return false };
    let (lo, lo_in) = if a.0 > b.0 || (a.0 == b.0 && !a.1) { (a.0, a.1) } else { (b.0, b.1) };
    let (hi, hi_in) = if a.2 < b.2 || (a.2 == b.2 && !a.3) { (a.2, a.3) } else { (b.2, b.3) };
    lo > hi || (lo == hi && !(lo_in && hi_in))
}
