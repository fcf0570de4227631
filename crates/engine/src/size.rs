//! A cheap estimate of a compiled tenant's heap footprint: what a memory bound weighs tenants
//! by. It counts the structures and the text they own, plus a flat allowance per hash-map entry
//! and per allocation; it does not follow conditions clause by clause. It is an estimate made
//! once per load or change, never on a decision's path.

use std::mem::size_of;

use super::snapshot::{Binding, Member, Role, Rule, Tenant};
use super::value::{Attrs, Value};

/// Bookkeeping of one heap allocation (allocator header and rounding), on average.
const ALLOC: usize = 16;
/// Control bytes and load-factor slack of one hash-map entry, beyond the entry itself.
const MAP_SLACK: usize = 8;

/// Bytes of a shared string (`Arc<str>`): its counts, its text and its allocation.
fn shared(s: &str) -> usize {
    16 + s.len() + ALLOC
}

fn value(v: &Value) -> usize {
    size_of::<Value>()
        + match v {
            Value::Text(t) => t.len() + ALLOC,
            Value::List(l) => l.iter().map(|s| size_of::<String>() + s.len() + ALLOC).sum::<usize>() + ALLOC,
            Value::Int(_) | Value::Flag(_) | Value::Number(_) => 0,
        }
}

fn attrs(a: &Attrs) -> usize {
    if a.0.is_empty() {
        return 0;
    }
    a.0.iter().map(|(k, v)| size_of::<String>() + k.len() + ALLOC + value(v)).sum::<usize>() + ALLOC
}

fn binding(b: &Binding) -> usize {
    // A condition is counted at its top-level size: members rarely carry one.
    let when = b.when.as_ref().map_or(0, |c| size_of::<crate::Cond>() + c.clauses.len() * 64 + ALLOC);
    let window = b.window.as_ref().map_or(0, |_| size_of::<crate::Window>() + ALLOC);
    size_of::<Binding>() + shared(&b.id) + window + when
}

fn member(m: &Member) -> usize {
    let units = if m.units.is_empty() { 0 } else { m.units.len() * 4 + ALLOC };
    // Inline bindings are part of `size_of::<Member>()`; spilled ones have an allocation of their own.
    let own = |b: &Binding| binding(b) - size_of::<Binding>();
    let heap = if m.bindings.spilled() { m.bindings.len() * size_of::<Binding>() + ALLOC } else { 0 };
    let bindings = m.bindings.iter().map(own).sum::<usize>() + heap;
    16 + size_of::<Member>() + ALLOC + shared(&m.id) + units + attrs(&m.attrs) + bindings
}

fn rule(r: &Rule) -> usize {
    size_of::<Rule>()
        + shared(&r.id)
        + r.fields.iter().map(|f| 16 + shared(f)).sum::<usize>()
        + r.message.as_deref().map_or(0, shared)
        + r.when.as_ref().map_or(0, |c| c.clauses.len() * 64 + ALLOC)
}

impl Tenant {
    /// An estimate of the bytes this tenant holds on the heap, members and their bindings
    /// included: proportional to its size, cheap enough to compute at every load and change
    /// (one pass over its members), and what an on-demand memory bound weighs tenants by.
    pub fn approx_bytes(&self) -> usize {
        let names = |v: &[std::sync::Arc<str>]| v.iter().map(|s| 16 + shared(s)).sum::<usize>();
        let keys = |len: usize, n: usize| len + n * (16 + 4 + ALLOC + MAP_SLACK);
        let words = self.action_names.len().div_ceil(64) * 8 + ALLOC;
        let mut n = size_of::<Tenant>() + shared(&self.name);
        n += names(&self.kinds) + names(&self.action_names) + names(&self.unit_names);
        n += keys(self.actions.keys().map(|k| k.len()).sum(), self.actions.len());
        n += keys(self.units.keys().map(|k| k.len()).sum(), self.units.len());
        n += self.action_kind.len() * 4 + self.unit_span.len() * 8;
        n += self.roles.iter().map(|r: &Role| size_of::<Role>() + shared(&r.name) + 2 * words).sum::<usize>();
        // Each member is one shared allocation, keyed by its id in the map and listed in the roster.
        n += self.members.len() * (16 + 8 + MAP_SLACK) + self.roster.len() * 8;
        n += self.roster.iter().map(|m| member(m)).sum::<usize>();
        n += self.everyone.iter().map(binding).sum::<usize>();
        n += self.rules.iter().map(rule).sum::<usize>();
        n += self.denies.iter().chain(&self.obligations).map(|d| 16 + d.len() * 4).sum::<usize>();
        n
    }
}
