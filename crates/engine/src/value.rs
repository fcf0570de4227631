//! Attribute values carried by members, resources and request contexts, and the literals that
//! conditions compare them with.

use std::fmt;

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
}

impl Test {
    /// Evaluates the test on an attribute that may be missing. A missing attribute fails every
    /// test except `present: false`.
    pub fn eval(&self, value: Option<&Value>) -> bool {
        match self {
            Test::Equals(lit) => value.is_some_and(|v| lit.matches(v)),
            Test::OneOf(lits) => value.is_some_and(|v| lits.iter().any(|l| l.matches(v))),
            Test::Ops(ops) => ops.iter().all(|op| op.eval(value)),
        }
    }
}

impl Op {
    fn eval(&self, value: Option<&Value>) -> bool {
        let num = || value.and_then(Value::as_f64);
        match self {
            Op::Lt(x) => num().is_some_and(|n| n < *x),
            Op::Le(x) => num().is_some_and(|n| n <= *x),
            Op::Gt(x) => num().is_some_and(|n| n > *x),
            Op::Ge(x) => num().is_some_and(|n| n >= *x),
            Op::Contains(s) => matches!(value, Some(Value::List(l)) if l.iter().any(|v| v == s)),
            Op::Present(p) => value.is_some() == *p,
        }
    }
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
    fn contains_only_matches_lists() {
        let op = Test::Ops(vec![Op::Contains("vip".into())]);
        assert!(op.eval(Some(&Value::List(vec!["vip".into()]))));
        assert!(!op.eval(Some(&Value::Text("vip".into()))));
    }
}
