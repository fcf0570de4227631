//! Plans ⇄ the wire: `PlanResponse` and its `Filter`, both ways (the server sends them, the
//! CLI and tests read them back).

use crate as api;
use crate::convert::{Invalid, reason};
use rolegate_engine::{Field, FieldOp, FieldTest, Filter, Plan, Reason, Value};

/// The wire response of a plan.
pub fn response(plan: &Plan, revision: u64) -> api::PlanResponse {
    let Plan { filter: f, reason: r, valid_until } = plan;
    api::PlanResponse {
        filter: Some(filter(f)),
        revision,
        valid_until: valid_until
            .map(|t| prost_types::Timestamp { seconds: t.as_second(), nanos: t.subsec_nanosecond() }),
        reason: reason(*r) as i32,
    }
}

/// The wire filter.
pub fn filter(f: &Filter) -> api::Filter {
    use api::filter::Node;
    let items = |fs: &[Filter]| api::Filters { items: fs.iter().map(filter).collect() };
    let node = match f {
        Filter::Constant(b) => Node::Constant(*b),
        Filter::All(fs) => Node::All(items(fs)),
        Filter::Any(fs) => Node::Any(items(fs)),
        Filter::Not(inner) => Node::Not(Box::new(filter(inner))),
        Filter::Test(t) => Node::Test(test(t)),
    };
    api::Filter { node: Some(node) }
}

fn test(t: &FieldTest) -> api::Test {
    use api::test::Op;
    let op = match &t.op {
        FieldOp::Equals(v) => Op::Equals(api::AttrValue { kind: Some(value(v)) }),
        FieldOp::OneOf(values) => Op::OneOf(api::StringList { values: values.clone() }),
        FieldOp::Lt(x) => Op::Lt(*x),
        FieldOp::Le(x) => Op::Le(*x),
        FieldOp::Gt(x) => Op::Gt(*x),
        FieldOp::Ge(x) => Op::Ge(*x),
        FieldOp::Contains(s) => Op::Contains(s.clone()),
        FieldOp::Present(p) => Op::Present(*p),
        FieldOp::SameAs(other) => Op::SameAs(other.to_string()),
    };
    api::Test { field: t.field.to_string(), op: Some(op) }
}

fn value(v: &Value) -> api::attr_value::Kind {
    use api::attr_value::Kind;
    match v {
        Value::Text(t) => Kind::Text(t.clone()),
        Value::Int(i) => Kind::Int(*i),
        Value::Flag(b) => Kind::Flag(*b),
        Value::Number(n) => Kind::Number(*n),
        Value::List(l) => Kind::List(api::StringList { values: l.clone() }),
    }
}

fn invalid(field: &str, message: impl Into<String>) -> Invalid {
    Invalid { field: field.to_owned(), message: message.into() }
}

/// A plan read back from the wire, with its revision.
pub fn response_from_wire(r: api::PlanResponse) -> Result<(Plan, u64), Invalid> {
    let api::PlanResponse { filter, revision, valid_until, reason } = r;
    let reason = api::Reason::try_from(reason)
        .ok()
        .and_then(|r| Reason::parse(r.as_str_name()))
        .ok_or_else(|| invalid("reason", format!("unknown reason {reason}")))?;
    let valid_until = valid_until
        .map(|t| jiff::Timestamp::new(t.seconds, t.nanos))
        .transpose()
        .map_err(|e| invalid("valid_until", e.to_string()))?;
    let filter = filter_from_wire(filter.ok_or_else(|| invalid("filter", "is required"))?, "filter")?;
    Ok((Plan { filter, reason, valid_until }, revision))
}

/// A filter read back from the wire; `at` names it in errors. Compounds are rebuilt as sent
/// (not re-simplified), so a client evaluates exactly what the server sent.
pub fn filter_from_wire(f: api::Filter, at: &str) -> Result<Filter, Invalid> {
    use api::filter::Node;
    let items = |fs: api::Filters, what: &str| -> Result<Vec<Filter>, Invalid> {
        fs.items.into_iter().enumerate().map(|(i, f)| filter_from_wire(f, &format!("{at}.{what}[{i}]"))).collect()
    };
    Ok(match f.node.ok_or_else(|| invalid(at, "node is not set"))? {
        Node::Constant(b) => Filter::Constant(b),
        Node::All(fs) => Filter::All(items(fs, "all")?),
        Node::Any(fs) => Filter::Any(items(fs, "any")?),
        Node::Not(inner) => Filter::Not(Box::new(filter_from_wire(*inner, &format!("{at}.not"))?)),
        Node::Test(t) => Filter::Test(test_from_wire(t, &format!("{at}.test"))?),
    })
}

fn test_from_wire(t: api::Test, at: &str) -> Result<FieldTest, Invalid> {
    use api::attr_value::Kind;
    use api::test::Op;
    let api::Test { field, op } = t;
    let parse_field = |s: &str| Field::parse(s).ok_or_else(|| invalid(at, format!("unknown field `{s}`")));
    let field = parse_field(&field)?;
    let op = match op.ok_or_else(|| invalid(at, "op is not set"))? {
        Op::Equals(api::AttrValue { kind }) => {
            FieldOp::Equals(match kind.ok_or_else(|| invalid(at, "value is not set"))? {
                Kind::Text(t) => Value::Text(t),
                Kind::Int(i) => Value::Int(i),
                Kind::Flag(b) => Value::Flag(b),
                Kind::Number(n) => Value::Number(n),
                Kind::List(api::StringList { values }) => Value::List(values),
            })
        }
        Op::OneOf(api::StringList { values }) => FieldOp::OneOf(values),
        Op::Lt(x) => FieldOp::Lt(x),
        Op::Le(x) => FieldOp::Le(x),
        Op::Gt(x) => FieldOp::Gt(x),
        Op::Ge(x) => FieldOp::Ge(x),
        Op::Contains(s) => FieldOp::Contains(s),
        Op::Present(p) => FieldOp::Present(p),
        Op::SameAs(other) => FieldOp::SameAs(parse_field(&other)?),
    };
    Ok(FieldTest { field, op })
}
