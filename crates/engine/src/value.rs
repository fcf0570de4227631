//! Attribute values carried by members, resources and request contexts, and the literals that
//! conditions compare them with.

use std::fmt;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

/// One attribute value, as sent by a caller or written in a policy document.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A string.
    Text(String),
    /// A signed integer.
    Int(i64),
    /// A boolean.
    Flag(bool),
    /// A floating point number.
    Number(f64),
    /// A list of strings (tags, admins, participants).
    List(Vec<String>),
}

impl Value {
    /// The numeric reading of the value, for `lt`/`le`/`gt`/`ge`.
    #[expect(
        clippy::cast_precision_loss,
        reason = "numbers compare as f64 (docs/policy-language.md); integers past 2^53 round"
    )]
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// True when the value is `s` or, for a list, holds `s`. This is how `relation` scopes and
    /// conditions test a member id against `assignee`, `admins` or `participants`.
    pub fn is_or_contains(&self, s: &str) -> bool {
        match self {
            Value::Text(t) => t == s,
            Value::List(l) => l.iter().any(|v| v == s),
            _ => false,
        }
    }

    /// A short name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Text(_) => "text",
            Value::Int(_) => "int",
            Value::Flag(_) => "flag",
            Value::Number(_) => "number",
            Value::List(_) => "list",
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(t) => f.write_str(t),
            Value::Int(i) => write!(f, "{i}"),
            Value::Flag(b) => write!(f, "{b}"),
            Value::Number(n) => write!(f, "{n}"),
            Value::List(l) => write!(f, "[{}]", l.join(", ")),
        }
    }
}

/// A small ordered set of named attributes. Requests carry a handful of attributes, so a linear
/// scan beats hashing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Attrs(pub Vec<(String, Value)>);

impl Attrs {
    /// The value named `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Adds or replaces an attribute.
    pub fn insert(&mut self, name: impl Into<String>, value: Value) {
        let name = name.into();
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no attributes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, Value)> for Attrs {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        let mut attrs = Attrs::default();
        for (k, v) in iter {
            attrs.insert(k, v);
        }
        attrs
    }
}

/// A scalar written in a policy condition. YAML scalars are untyped text, so a literal keeps
/// every reading it allows and matches a value of any type that reading fits: `3` equals the
/// integer 3, the number 3.0 and the text "3".
#[derive(Clone, Debug, PartialEq)]
pub struct Lit {
    /// The literal as written.
    pub text: String,
    /// Its numeric reading, when it is a number.
    pub num: Option<f64>,
    /// Its boolean reading, when it is `true` or `false`.
    pub flag: Option<bool>,
}

impl Lit {
    /// Builds a literal from its text, deriving the numeric and boolean readings. A quoted YAML
    /// scalar passes `coerce = false` and stays text only.
    pub fn new(text: &str, coerce: bool) -> Self {
        let (num, flag) = if coerce {
            let num = text.parse::<f64>().ok().filter(|n| n.is_finite());
            let flag = match text {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            };
            (num, flag)
        } else {
            (None, None)
        };
        Lit { text: text.to_owned(), num, flag }
    }

    /// Equality of the attribute with the literal; a list attribute matches when it holds the
    /// literal.
    pub fn matches(&self, value: &Value) -> bool {
        match value {
            Value::Text(t) => *t == self.text,
            Value::Int(_) => self.num.is_some() && self.num == value.as_f64(),
            Value::Number(n) => self.num == Some(*n),
            Value::Flag(b) => self.flag == Some(*b),
            Value::List(l) => l.contains(&self.text),
        }
    }
}

/// A test on one attribute inside a `principal`, `resource` or `context` condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Test {
    /// `attr: value` — equals (a list attribute: contains).
    Equals(Lit),
    /// `attr: [a, b]` — equals one of.
    OneOf(Vec<Lit>),
    /// `attr: {lt: 3, contains: vip, present: true}` — every operator must hold.
    Ops(Vec<Op>),
}

/// One operator of a map-form attribute test.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Numerically less than.
    Lt(f64),
    /// Numerically less than or equal.
    Le(f64),
    /// Numerically greater than.
    Gt(f64),
    /// Numerically greater than or equal.
    Ge(f64),
    /// A list attribute holds the string.
    Contains(String),
    /// The attribute is present (`true`) or absent (`false`).
    Present(bool),
    /// The attribute equals another attribute of the same call (see [`same_as`]).
    SameAs(AttrRef),
}

/// Whose attribute a reference names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The member asking.
    Principal,
    /// The resource asked about.
    Resource,
    /// The request's context.
    Context,
}

impl Side {
    /// The name written in a policy (`principal`).
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Principal => "principal",
            Side::Resource => "resource",
            Side::Context => "context",
        }
    }
}

/// An attribute of the call named in a condition: `principal.email`, `resource.unit`. The name
/// is read like a key of that side's tests (`principal.id`, `principal.units`, `resource.id`,
/// `resource.kind`, `resource.unit`, `context.client_ip`, else an attribute).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrRef {
    /// Whose attribute.
    pub side: Side,
    /// The key.
    pub name: Box<str>,
}

impl fmt::Display for AttrRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.side.as_str(), self.name)
    }
}

/// `same_as` between two present attributes: equal scalars (a number equals a number of the same
/// value, whether integer or not; text equals text; a flag equals a flag), or a list holding
/// the other, a text. Two lists are never the same.
pub fn same_as(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Text(x), Value::Text(y)) => x == y,
        (Value::Flag(x), Value::Flag(y)) => x == y,
        (Value::List(l), Value::Text(t)) | (Value::Text(t), Value::List(l)) => l.contains(t),
        (Value::List(_), _) | (_, Value::List(_)) => false,
        _ => matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y),
    }
}

impl Test {
    /// Evaluates the test on an attribute that may be missing. A missing attribute fails every
    /// test except `present: false`. A `same_as` is false here: use [`Test::eval_with`].
    pub fn eval(&self, value: Option<&Value>) -> bool {
        self.eval_with(value, &|_| None)
    }

    /// Evaluates the test, reading the attributes a `same_as` names through `lookup`.
    pub fn eval_with(&self, value: Option<&Value>, lookup: &dyn Fn(&AttrRef) -> Option<Value>) -> bool {
        match self {
            Test::Equals(lit) => value.is_some_and(|v| lit.matches(v)),
            Test::OneOf(lits) => value.is_some_and(|v| lits.iter().any(|l| l.matches(v))),
            Test::Ops(ops) => ops.iter().all(|op| op.eval(value, lookup)),
        }
    }
}

impl Op {
    /// Evaluates the operator on an attribute that may be missing.
    pub fn eval(&self, value: Option<&Value>, lookup: &dyn Fn(&AttrRef) -> Option<Value>) -> bool {
        let num = || value.and_then(Value::as_f64);
        match self {
            Op::Lt(x) => num().is_some_and(|n| n < *x),
            Op::Le(x) => num().is_some_and(|n| n <= *x),
            Op::Gt(x) => num().is_some_and(|n| n > *x),
            Op::Ge(x) => num().is_some_and(|n| n >= *x),
            Op::Contains(s) => matches!(value, Some(Value::List(l)) if l.iter().any(|v| v == s)),
            Op::Present(p) => value.is_some() == *p,
            Op::SameAs(other) => value.is_some_and(|v| lookup(other).is_some_and(|o| same_as(v, &o))),
        }
    }
}

/// The one form of a client address that conditions compare: an IPv4-mapped IPv6 address
/// (`::ffff:10.0.0.1`) is its IPv4 address (`10.0.0.1`), so a dual-stack listener cannot
/// smuggle an IPv4 client past a rule written for it. Used for request addresses and for
/// addresses written in policies alike.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// A policy network that cannot be written in canonical form.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is an IPv4-mapped network with a prefix shorter than /96: write it as an IPv4 network")]
pub struct MappedPrefixError(pub IpNet);

/// The canonical form of a policy network: an IPv4-mapped network `::ffff:a.b.c.d/(96+n)` is
/// the IPv4 network `a.b.c.d/n`, which is what [`canonical_ip`] turns mapped clients into. A
/// mapped network with a prefix under 96 is an error: it would also cover non-mapped IPv6.
pub fn canonical_net(net: IpNet) -> Result<IpNet, MappedPrefixError> {
    let IpNet::V6(v6) = net else { return Ok(net) };
    let Some(v4) = v6.addr().to_ipv4_mapped() else { return Ok(net) };
    let prefix = v6.prefix_len().checked_sub(96).ok_or(MappedPrefixError(net))?;
    Ipv4Net::new(v4, prefix).map(IpNet::V4).map_err(|_| MappedPrefixError(net))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquoted_number_literal_matches_int_number_and_text() {
        let lit = Lit::new("3", true);
        assert!(lit.matches(&Value::Int(3)));
        assert!(lit.matches(&Value::Number(3.0)));
        assert!(lit.matches(&Value::Text("3".into())));
        assert!(!lit.matches(&Value::Int(4)));
    }

    #[test]
    fn quoted_literal_is_text_only() {
        let lit = Lit::new("true", false);
        assert!(!lit.matches(&Value::Flag(true)));
        assert!(lit.matches(&Value::Text("true".into())));
    }

    #[test]
    fn missing_attribute_fails_all_but_absent() {
        assert!(!Test::Ops(vec![Op::Lt(3.0)]).eval(None));
        assert!(Test::Ops(vec![Op::Present(false)]).eval(None));
        assert!(!Test::Equals(Lit::new("x", true)).eval(None));
    }

    #[test]
    fn mapped_addresses_and_networks_become_ipv4() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        assert_eq!(canonical_ip(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(canonical_ip(ip("2001:db8::1")), ip("2001:db8::1"));
        assert_eq!(canonical_net(net("::ffff:192.168.0.0/112")), Ok(net("192.168.0.0/16")));
        assert_eq!(canonical_net(net("::ffff:10.0.0.1/128")), Ok(net("10.0.0.1/32")));
        assert_eq!(canonical_net(net("2001:db8::/32")), Ok(net("2001:db8::/32")));
        assert_eq!(canonical_net(net("::ffff:0.0.0.0/95")), Err(MappedPrefixError(net("::ffff:0.0.0.0/95"))));
    }

    #[test]
    fn same_as_compares_scalars_by_value_and_lists_by_membership() {
        let text = |s: &str| Value::Text(s.into());
        assert!(same_as(&text("a@x"), &text("a@x")));
        assert!(!same_as(&text("a@x"), &text("b@x")));
        assert!(same_as(&Value::Int(3), &Value::Number(3.0)));
        assert!(!same_as(&Value::Int(3), &text("3")));
        assert!(same_as(&Value::Flag(true), &Value::Flag(true)));
        assert!(!same_as(&Value::Flag(true), &Value::Int(1)));
        let list = Value::List(vec!["red".into(), "blue".into()]);
        assert!(same_as(&list, &text("red")) && same_as(&text("blue"), &list));
        assert!(!same_as(&list, &list.clone()));
        assert!(!same_as(&list, &Value::Int(1)));
    }

    #[test]
    fn same_as_is_false_when_either_side_is_missing() {
        let r = AttrRef { side: Side::Principal, name: "email".into() };
        let test = Test::Ops(vec![Op::SameAs(r.clone())]);
        let found = |_: &AttrRef| Some(Value::Text("a@x".into()));
        assert!(test.eval_with(Some(&Value::Text("a@x".into())), &found));
        assert!(!test.eval_with(None, &found));
        assert!(!test.eval_with(Some(&Value::Text("a@x".into())), &|_| None));
        assert!(!test.eval(Some(&Value::Text("a@x".into()))));
        assert_eq!(r.to_string(), "principal.email");
    }

    #[test]
    fn contains_only_matches_lists() {
        let op = Test::Ops(vec![Op::Contains("vip".into())]);
        assert!(op.eval(Some(&Value::List(vec!["vip".into()]))));
        assert!(!op.eval(Some(&Value::Text("vip".into()))));
    }
}
