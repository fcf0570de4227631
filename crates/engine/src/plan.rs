//! Plans (docs/api.md, "Plan"): which resources of a kind a member may act on, as a filter over
//! resource fields. [`Tenant::plan`] decides at plan time everything that does not depend on the
//! resource (the member, the context, the clock, networks, schedules) and leaves the rest as
//! tests, so that for every resource `r` the filter holds exactly when `decide` would allow `r`.

mod partial;
pub mod sql;

use std::borrow::Cow;
use std::fmt;

use jiff::Timestamp;

use super::decide::{Reason, RequestError};
use super::request::{Context, Resource};
use super::snapshot::Snapshot;
use super::value::{Value, same_as};

/// The answer to a plan request.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Holds for exactly the resources the member may act on.
    pub filter: Filter,
    /// `GRANTED` unless the filter is constant false; then why (`NO_GRANT`, `DENIED_BY_RULE`,
    /// `UNKNOWN_PRINCIPAL`, ...).
    pub reason: Reason,
    /// The filter cannot change before this instant (on this revision).
    pub valid_until: Option<Timestamp>,
}

/// Plans `action` for `principal` of `tenant` with `context` at `now` (docs/api.md, "Plan"): an
/// unknown tenant gets `constant: false` with `UNKNOWN_TENANT`, like a decision; an action
/// outside the tenant's schema is a caller error.
pub fn plan(
    snapshot: &Snapshot,
    tenant: &str,
    principal: &str,
    action: &str,
    context: &Context,
    now: Timestamp,
) -> Result<Plan, RequestError> {
    match snapshot.tenant(tenant) {
        Some(t) => t.plan(principal, action, context, now),
        None => Ok(Plan { filter: Filter::Constant(false), reason: Reason::UnknownTenant, valid_until: None }),
    }
}

/// A boolean expression over resource fields. Built through [`Filter::all`], [`Filter::any`]
/// and [`Filter::not`], it is simplified: no constant inside a compound, no compound of one item,
/// no `not` of a `not`.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// Holds for every resource (`true`) or none (`false`).
    Constant(bool),
    /// Every item holds.
    All(Vec<Filter>),
    /// At least one item holds.
    Any(Vec<Filter>),
    /// The inner filter does not hold.
    Not(Box<Filter>),
    /// A test on one field.
    Test(FieldTest),
}

/// A resource field a filter tests.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    /// `id`: always present, text.
    Id,
    /// `unit`: text, missing when empty.
    Unit,
    /// `attrs.NAME`.
    Attr(Box<str>),
}

/// One test on a field. A missing field fails every test but `present: false`.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldTest {
    /// The field tested.
    pub field: Field,
    /// The test.
    pub op: FieldOp,
}

/// What a [`FieldTest`] checks.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldOp {
    /// A scalar field equal to the value: text to text, a number to a number of the same value
    /// (integer or not), a flag to a flag. A list field, or a list value, never matches.
    Equals(Value),
    /// A text field among the values.
    OneOf(Vec<String>),
    /// A numeric field `<` the value.
    Lt(f64),
    /// A numeric field `<=` the value.
    Le(f64),
    /// A numeric field `>` the value.
    Gt(f64),
    /// A numeric field `>=` the value.
    Ge(f64),
    /// A list field holding the text.
    Contains(String),
    /// The field is there (`true`) or not (`false`).
    Present(bool),
    /// The field and another field of the same resource are present and the same, as the
    /// `same_as` condition compares them.
    SameAs(Field),
}

impl Field {
    /// Parses the wire name: `id`, `unit` or `attrs.NAME` with a non-empty name.
    pub fn parse(s: &str) -> Option<Field> {
        match s {
            "id" => Some(Field::Id),
            "unit" => Some(Field::Unit),
            _ => s.strip_prefix("attrs.").filter(|n| !n.is_empty()).map(|n| Field::Attr(n.into())),
        }
    }

    /// The field's value on `r`, if present.
    pub fn value<'a>(&self, r: &'a Resource) -> Option<Cow<'a, Value>> {
        match self {
            Field::Id => Some(Cow::Owned(Value::Text(r.id.clone()))),
            Field::Unit if r.unit.is_empty() => None,
            Field::Unit => Some(Cow::Owned(Value::Text(r.unit.clone()))),
            Field::Attr(name) => r.attrs.get(name).map(Cow::Borrowed),
        }
    }

    /// True for fields that only ever hold text (`id`, `unit`).
    pub fn is_text(&self) -> bool {
        matches!(self, Field::Id | Field::Unit)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Id => f.write_str("id"),
            Field::Unit => f.write_str("unit"),
            Field::Attr(name) => write!(f, "attrs.{name}"),
        }
    }
}

impl FieldOp {
    /// Evaluates the test on a field value that may be missing; `r` gives a `same_as` its
    /// other field.
    pub fn eval(&self, value: Option<&Value>, r: &Resource) -> bool {
        let Some(v) = value else { return matches!(self, FieldOp::Present(false)) };
        let num = || v.as_f64();
        match self {
            FieldOp::Equals(want) => {
                !matches!(v, Value::List(_)) && !matches!(want, Value::List(_)) && same_as(v, want)
            }
            FieldOp::OneOf(values) => matches!(v, Value::Text(t) if values.contains(t)),
            FieldOp::Lt(x) => num().is_some_and(|n| n < *x),
            FieldOp::Le(x) => num().is_some_and(|n| n <= *x),
            FieldOp::Gt(x) => num().is_some_and(|n| n > *x),
            FieldOp::Ge(x) => num().is_some_and(|n| n >= *x),
            FieldOp::Contains(s) => matches!(v, Value::List(l) if l.contains(s)),
            FieldOp::Present(p) => *p,
            FieldOp::SameAs(other) => other.value(r).is_some_and(|o| same_as(v, &o)),
        }
    }
}

impl Filter {
    /// True when the filter holds for `r`.
    pub fn matches(&self, r: &Resource) -> bool {
        match self {
            Filter::Constant(b) => *b,
            Filter::All(items) => items.iter().all(|f| f.matches(r)),
            Filter::Any(items) => items.iter().any(|f| f.matches(r)),
            Filter::Not(f) => !f.matches(r),
            Filter::Test(t) => t.op.eval(t.field.value(r).as_deref(), r),
        }
    }

    /// A test on one field.
    pub fn test(field: Field, op: FieldOp) -> Filter {
        Filter::Test(FieldTest { field, op })
    }

    /// Every item holds: nested `all`s are flattened, `true` dropped, `false` absorbs.
    pub fn all(items: impl IntoIterator<Item = Filter>) -> Filter {
        Filter::compound(items, true)
    }

    /// At least one item holds: nested `any`s are flattened, `false` dropped, `true` absorbs.
    pub fn any(items: impl IntoIterator<Item = Filter>) -> Filter {
        Filter::compound(items, false)
    }

    /// `unit` (true) for `all`, for `any` the other way round.
    fn compound(items: impl IntoIterator<Item = Filter>, unit: bool) -> Filter {
        let mut out = Vec::new();
        for item in items {
            match item {
                Filter::Constant(b) if b == unit => {}
                Filter::Constant(b) => return Filter::Constant(b),
                Filter::All(inner) if unit => out.extend(inner),
                Filter::Any(inner) if !unit => out.extend(inner),
                other => {
                    if !out.contains(&other) {
                        out.push(other);
                    }
                }
            }
        }
        match out.len() {
            0 => Filter::Constant(unit),
            1 => out.pop().unwrap_or(Filter::Constant(unit)),
            _ if unit => Filter::All(out),
            _ => Filter::Any(out),
        }
    }

    /// The inner filter does not hold.
    #[expect(clippy::should_implement_trait, reason = "a constructor beside `all` and `any`, not an operator")]
    pub fn not(inner: Filter) -> Filter {
        match inner {
            Filter::Constant(b) => Filter::Constant(!b),
            Filter::Not(f) => *f,
            other => Filter::Not(Box::new(other)),
        }
    }

    /// Number of nodes, for limits and benchmarks.
    pub fn size(&self) -> usize {
        match self {
            Filter::All(items) | Filter::Any(items) => 1 + items.iter().map(Filter::size).sum::<usize>(),
            Filter::Not(f) => 1 + f.size(),
            Filter::Constant(_) | Filter::Test(_) => 1,
        }
    }

    /// Depth of nesting (a test or constant is 1).
    pub fn depth(&self) -> usize {
        match self {
            Filter::All(items) | Filter::Any(items) => 1 + items.iter().map(Filter::depth).max().unwrap_or(0),
            Filter::Not(f) => 1 + f.depth(),
            Filter::Constant(_) | Filter::Test(_) => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(unit: &str, attrs: &[(&str, Value)]) -> Resource {
        let attrs = attrs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        Resource { kind: "conversation".into(), id: "c1".into(), unit: unit.into(), attrs }
    }

    fn test(name: &str, op: FieldOp) -> Filter {
        Filter::test(Field::Attr(name.into()), op)
    }

    #[test]
    fn compounds_drop_units_absorb_and_flatten() {
        let a = test("a", FieldOp::Present(true));
        let b = test("b", FieldOp::Present(true));
        assert_eq!(Filter::all([Filter::Constant(true), a.clone()]), a);
        assert_eq!(Filter::all([Filter::Constant(false), a.clone()]), Filter::Constant(false));
        assert_eq!(Filter::any([Filter::Constant(true), a.clone()]), Filter::Constant(true));
        assert_eq!(Filter::any(Vec::new()), Filter::Constant(false));
        assert_eq!(Filter::all([Filter::all([a.clone(), b.clone()]), a.clone()]), Filter::All(vec![a.clone(), b]));
        assert_eq!(Filter::not(Filter::not(a.clone())), a);
        assert_eq!(Filter::not(Filter::Constant(true)), Filter::Constant(false));
    }

    #[test]
    fn a_missing_field_fails_every_test_but_absent() {
        let r = res("", &[]);
        for op in [FieldOp::Equals(Value::Text("x".into())), FieldOp::Lt(1.0), FieldOp::Present(true)] {
            assert!(!test("a", op.clone()).matches(&r), "{op:?}");
            assert!(Filter::not(test("a", op)).matches(&r));
        }
        assert!(test("a", FieldOp::Present(false)).matches(&r));
        assert!(!Filter::test(Field::Unit, FieldOp::Present(true)).matches(&r), "an empty unit is no unit");
    }

    #[test]
    fn equals_is_for_scalars_and_contains_for_lists() {
        let list = res("", &[("tags", Value::List(vec!["vip".into()]))]);
        assert!(!test("tags", FieldOp::Equals(Value::Text("vip".into()))).matches(&list));
        assert!(test("tags", FieldOp::Contains("vip".into())).matches(&list));
        let int = res("", &[("n", Value::Int(3))]);
        assert!(test("n", FieldOp::Equals(Value::Number(3.0))).matches(&int));
        assert!(!test("n", FieldOp::Equals(Value::Text("3".into()))).matches(&int));
        assert!(!test("n", FieldOp::OneOf(vec!["3".into()])).matches(&int));
    }

    #[test]
    fn field_names_parse_and_print_alike() {
        for s in ["id", "unit", "attrs.assignee"] {
            assert_eq!(Field::parse(s).map(|f| f.to_string()).as_deref(), Some(s));
        }
        assert_eq!(Field::parse("attrs."), None);
        assert_eq!(Field::parse("kind"), None);
    }
}
