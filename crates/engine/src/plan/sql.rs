//! A filter as a PostgreSQL `WHERE` fragment with bind parameters (docs/api.md, "Plan in
//! SQL"), given which column holds each resource field. Every test renders NULL-safe, so a NULL
//! column is a missing attribute exactly as in a condition: its tests are false and `NOT` of them
//! true. No database client is needed: parameters come back as plain values for the caller to
//! bind.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Field, FieldOp, Filter};
use crate::value::Value;

/// What a column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// `text` (or `varchar`): a text attribute.
    Text,
    /// Any numeric type (`integer`, `bigint`, `numeric`, `double precision`), compared as
    /// `float8` like the engine compares numbers.
    Number,
    /// `boolean`: a flag attribute.
    Bool,
    /// `text[]`: a list attribute.
    TextList,
}

/// A column and its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// `name` or `table.name`: letters, digits and `_`, not starting with a digit.
    pub name: String,
    /// What it holds.
    pub ty: ColumnType,
}

/// Which column holds each resource field. A field with no column is missing on every row
/// (tests on it are false, `present: false` true), except `id`, which every resource has: a
/// filter testing `id` needs it mapped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mapping(pub BTreeMap<Field, Column>);

/// A rendered filter.
#[derive(Clone, Debug, PartialEq)]
pub struct Sql {
    /// A boolean SQL expression, never NULL, with placeholders `$first..`.
    pub clause: String,
    /// The values of the placeholders, in order.
    pub params: Vec<Param>,
}

/// A bind parameter; the placeholder casts it (`$1::text`, `$2::float8`, `$3::bool`,
/// `$4::text[]`), so it binds as that type.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    /// `text`.
    Text(String),
    /// `float8`.
    Number(f64),
    /// `bool`.
    Bool(bool),
    /// `text[]`.
    TextList(Vec<String>),
}

/// Why a mapping or a filter cannot be rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// A mapping entry is malformed.
    #[error("mapping `{entry}`: {why}")]
    Mapping {
        /// The entry as written.
        entry: String,
        /// What is wrong.
        why: String,
    },
    /// The filter tests `id`, which the mapping gives no column.
    #[error("the filter tests `id`, which the mapping gives no column")]
    IdUnmapped,
}

impl ColumnType {
    fn parse(s: &str) -> Option<ColumnType> {
        match s {
            "text" => Some(ColumnType::Text),
            "number" => Some(ColumnType::Number),
            "bool" => Some(ColumnType::Bool),
            "text[]" => Some(ColumnType::TextList),
            _ => None,
        }
    }
}

fn is_identifier(s: &str) -> bool {
    s.split('.').all(|part| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    }) && s.split('.').count() <= 2
}

impl Mapping {
    /// Parses `FIELD=COLUMN[:TYPE],...`: `FIELD` is `id`, `unit` or `attrs.NAME`; `TYPE` is
    /// `text` (the default), `number`, `bool` or `text[]`; `id` and `unit` are text.
    /// Example: `id=id,unit=unit_id,attrs.assignee=assignee,attrs.tags=tags:text[]`.
    pub fn parse(s: &str) -> Result<Mapping, SqlError> {
        let mut map = BTreeMap::new();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = |why: &str| SqlError::Mapping { entry: entry.to_owned(), why: why.to_owned() };
            let (field, column) = entry.split_once('=').ok_or_else(|| bad("expected `FIELD=COLUMN[:TYPE]`"))?;
            let field =
                Field::parse(field.trim()).ok_or_else(|| bad("the field must be `id`, `unit` or `attrs.NAME`"))?;
            let (name, ty) = column.trim().split_once(':').unwrap_or((column.trim(), "text"));
            let ty =
                ColumnType::parse(ty).ok_or_else(|| bad("the type must be `text`, `number`, `bool` or `text[]`"))?;
            if !is_identifier(name) {
                return Err(bad("the column must be `name` or `table.name` (letters, digits, `_`)"));
            }
            if field.is_text() && ty != ColumnType::Text {
                return Err(bad("`id` and `unit` are text columns"));
            }
            if map.insert(field, Column { name: name.to_owned(), ty }).is_some() {
                return Err(bad("the field is mapped twice"));
            }
        }
        Ok(Mapping(map))
    }
}

/// Renders `filter` as a `WHERE` fragment whose placeholders start at `$first` (1 for a query
/// with no other parameters).
pub fn render(filter: &Filter, mapping: &Mapping, first: usize) -> Result<Sql, SqlError> {
    let mut r = Renderer { mapping, params: Vec::new(), first, out: String::new() };
    r.filter(filter)?;
    Ok(Sql { clause: r.out, params: r.params })
}

struct Renderer<'a> {
    mapping: &'a Mapping,
    params: Vec<Param>,
    first: usize,
    out: String,
}

impl Renderer<'_> {
    fn filter(&mut self, f: &Filter) -> Result<(), SqlError> {
        match f {
            Filter::Constant(b) => self.out.push_str(if *b { "TRUE" } else { "FALSE" }),
            Filter::All(items) => self.join(items, " AND ")?,
            Filter::Any(items) => self.join(items, " OR ")?,
            Filter::Not(inner) => {
                self.out.push_str("(NOT ");
                self.filter(inner)?;
                self.out.push(')');
            }
            Filter::Test(t) => {
                let sql = self.test(&t.field, &t.op)?;
                self.out.push_str(&sql);
            }
        }
        Ok(())
    }

    fn join(&mut self, items: &[Filter], op: &str) -> Result<(), SqlError> {
        self.out.push('(');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.out.push_str(op);
            }
            self.filter(item)?;
        }
        self.out.push(')');
        Ok(())
    }

    fn param(&mut self, p: Param) -> String {
        let cast = match p {
            Param::Text(_) => "text",
            Param::Number(_) => "float8",
            Param::Bool(_) => "bool",
            Param::TextList(_) => "text[]",
        };
        self.params.push(p);
        format!("${}::{cast}", self.first + self.params.len() - 1)
    }

    /// The column expression of a field with its type; `None` when unmapped.
    fn column(&self, f: &Field) -> Result<Option<(String, ColumnType)>, SqlError> {
        let Some(c) = self.mapping.0.get(f) else {
            return if *f == Field::Id { Err(SqlError::IdUnmapped) } else { Ok(None) };
        };
        let quoted: Vec<String> = c.name.split('.').map(|p| format!("\"{p}\"")).collect();
        let quoted = quoted.join(".");
        // An empty unit is no unit, as in a request.
        let expr = if *f == Field::Unit { format!("NULLIF({quoted}, '')") } else { quoted };
        Ok(Some((expr, c.ty)))
    }

    fn test(&mut self, f: &Field, op: &FieldOp) -> Result<String, SqlError> {
        use ColumnType::{Bool, Number, Text, TextList};
        let Some((col, ty)) = self.column(f)? else {
            return Ok(if *op == FieldOp::Present(false) { "TRUE" } else { "FALSE" }.to_owned());
        };
        let cmp = |this: &mut Self, sql: &str, p: Param| {
            let p = this.param(p);
            format!("COALESCE({}, FALSE)", sql.replace("{p}", &p))
        };
        let num =
            |this: &mut Self, sym: &str, x: f64| cmp(this, &format!("{col}::float8 {sym} {{p}}"), Param::Number(x));
        Ok(match (op, ty) {
            (FieldOp::Present(true), _) => format!("({col} IS NOT NULL)"),
            (FieldOp::Present(false), _) => format!("({col} IS NULL)"),
            (FieldOp::Equals(Value::Text(t)), Text) => cmp(self, &format!("{col} = {{p}}"), Param::Text(t.clone())),
            (FieldOp::Equals(v @ (Value::Int(_) | Value::Number(_))), Number) => match v.as_f64() {
                Some(x) if !x.is_nan() => num(self, "=", x),
                _ => "FALSE".to_owned(),
            },
            (FieldOp::Equals(Value::Flag(b)), Bool) => cmp(self, &format!("{col} = {{p}}"), Param::Bool(*b)),
            (FieldOp::OneOf(values), Text) => {
                cmp(self, &format!("{col} = ANY({{p}})"), Param::TextList(values.clone()))
            }
            (FieldOp::Lt(x), Number) => num(self, "<", *x),
            (FieldOp::Le(x), Number) => num(self, "<=", *x),
            (FieldOp::Gt(x), Number) => num(self, ">", *x),
            (FieldOp::Ge(x), Number) => num(self, ">=", *x),
            (FieldOp::Contains(s), TextList) => cmp(self, &format!("{{p}} = ANY({col})"), Param::Text(s.clone())),
            (FieldOp::SameAs(other), _) => match self.column(other)? {
                None => "FALSE".to_owned(),
                Some((other, other_ty)) => match (ty, other_ty) {
                    (Text, Text) | (Bool, Bool) => format!("COALESCE({col} = {other}, FALSE)"),
                    (Number, Number) => format!("COALESCE({col}::float8 = {other}::float8, FALSE)"),
                    (Text, TextList) => format!("COALESCE({col} = ANY({other}), FALSE)"),
                    (TextList, Text) => format!("COALESCE({other} = ANY({col}), FALSE)"),
                    _ => "FALSE".to_owned(),
                },
            },
            // The column cannot hold a value the test could match.
            _ => "FALSE".to_owned(),
        })
    }
}

/// Writes the parameters as a short human-readable list, for the CLI.
pub fn describe(params: &[Param]) -> String {
    let mut s = String::new();
    for (i, p) in params.iter().enumerate() {
        let _ = match p {
            Param::Text(t) => write!(s, "{}{t:?}", if i > 0 { ", " } else { "" }),
            Param::Number(n) => write!(s, "{}{n}", if i > 0 { ", " } else { "" }),
            Param::Bool(b) => write!(s, "{}{b}", if i > 0 { ", " } else { "" }),
            Param::TextList(l) => write!(s, "{}{l:?}", if i > 0 { ", " } else { "" }),
        };
    }
    s
}
