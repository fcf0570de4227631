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
/// with no other parameters). Tests the mapping makes constant (an unmapped field, a type the
/// test can never match) are folded away, so the fragment holds no `TRUE`/`FALSE` inside a
/// compound.
pub fn render(filter: &Filter, mapping: &Mapping, first: usize) -> Result<Sql, SqlError> {
    let r = Renderer { mapping };
    let (clause, params) = match r.part(filter)? {
        Part::Const(b) => ((if b { "TRUE" } else { "FALSE" }).to_owned(), Vec::new()),
        Part::Sql(text, params) => (text, params),
    };
    // Number the placeholders in the order they appear.
    let mut out = String::with_capacity(clause.len());
    let mut n = first;
    for (i, piece) in clause.split(MARK).enumerate() {
        if i > 0 {
            let cast = match params.get(i - 1) {
                Some(Param::Text(_)) => "text",
                Some(Param::Number(_)) => "float8",
                Some(Param::Bool(_)) => "bool",
                Some(Param::TextList(_)) | None => "text[]",
            };
            let _ = write!(out, "${n}::{cast}");
            n += 1;
        }
        out.push_str(piece);
    }
    Ok(Sql { clause: out, params })
}

/// Stands for a placeholder until the whole fragment is known; never in an identifier.
const MARK: char = '\u{1}';

/// A rendered piece: a constant, or SQL text with its parameters in order of appearance.
enum Part {
    Const(bool),
    Sql(String, Vec<Param>),
}

struct Renderer<'a> {
    mapping: &'a Mapping,
}

impl Renderer<'_> {
    fn part(&self, f: &Filter) -> Result<Part, SqlError> {
        Ok(match f {
            Filter::Constant(b) => Part::Const(*b),
            Filter::All(items) => self.join(items, " AND ", true)?,
            Filter::Any(items) => self.join(items, " OR ", false)?,
            Filter::Not(inner) => match self.part(inner)? {
                Part::Const(b) => Part::Const(!b),
                Part::Sql(s, p) => Part::Sql(format!("(NOT {s})"), p),
            },
            Filter::Test(t) => self.test(&t.field, &t.op)?,
        })
    }

    /// `unit` is the constant that drops out (`true` for AND); the other one absorbs.
    fn join(&self, items: &[Filter], op: &str, unit: bool) -> Result<Part, SqlError> {
        let mut texts = Vec::new();
        let mut params = Vec::new();
        for item in items {
            match self.part(item)? {
                Part::Const(b) if b == unit => {}
                Part::Const(b) => return Ok(Part::Const(b)),
                Part::Sql(s, p) => {
                    texts.push(s);
                    params.extend(p);
                }
            }
        }
        Ok(match texts.len() {
            0 => Part::Const(unit),
            1 => Part::Sql(texts.concat(), params),
            _ => Part::Sql(format!("({})", texts.join(op)), params),
        })
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

    fn test(&self, f: &Field, op: &FieldOp) -> Result<Part, SqlError> {
        use ColumnType::{Bool, Number, Text, TextList};
        let Some((col, ty)) = self.column(f)? else {
            return Ok(Part::Const(*op == FieldOp::Present(false)));
        };
        // `{p}` is where the parameter goes.
        let cmp = |sql: String, p: Param| {
            Part::Sql(format!("COALESCE({}, FALSE)", sql.replace("{p}", &MARK.to_string())), vec![p])
        };
        let num = |sym: &str, x: f64| cmp(format!("{col}::float8 {sym} {{p}}"), Param::Number(x));
        let plain = |sql: String| Part::Sql(sql, Vec::new());
        Ok(match (op, ty) {
            (FieldOp::Present(true), _) => plain(format!("({col} IS NOT NULL)")),
            (FieldOp::Present(false), _) => plain(format!("({col} IS NULL)")),
            (FieldOp::Equals(Value::Text(t)), Text) => cmp(format!("{col} = {{p}}"), Param::Text(t.clone())),
            (FieldOp::Equals(v @ (Value::Int(_) | Value::Number(_))), Number) => match v.as_f64() {
                Some(x) if !x.is_nan() => num("=", x),
                _ => Part::Const(false),
            },
            (FieldOp::Equals(Value::Flag(b)), Bool) => cmp(format!("{col} = {{p}}"), Param::Bool(*b)),
            (FieldOp::OneOf(values), Text) => cmp(format!("{col} = ANY({{p}})"), Param::TextList(values.clone())),
            (FieldOp::Lt(x), Number) => num("<", *x),
            (FieldOp::Le(x), Number) => num("<=", *x),
            (FieldOp::Gt(x), Number) => num(">", *x),
            (FieldOp::Ge(x), Number) => num(">=", *x),
            (FieldOp::Contains(s), TextList) => cmp(format!("{{p}} = ANY({col})"), Param::Text(s.clone())),
            (FieldOp::SameAs(other), _) => match self.column(other)? {
                None => Part::Const(false),
                Some((other, other_ty)) => match (ty, other_ty) {
                    (Text, Text) | (Bool, Bool) => plain(format!("COALESCE({col} = {other}, FALSE)")),
                    (Number, Number) => plain(format!("COALESCE({col}::float8 = {other}::float8, FALSE)")),
                    (Text, TextList) => plain(format!("COALESCE({col} = ANY({other}), FALSE)")),
                    (TextList, Text) => plain(format!("COALESCE({other} = ANY({col}), FALSE)")),
                    _ => Part::Const(false),
                },
            },
            // The column cannot hold a value the test could match.
            _ => Part::Const(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::FieldOp;

    fn test(f: &str, op: FieldOp) -> Filter {
        Filter::test(Field::parse(f).unwrap_or(Field::Id), op)
    }

    #[test]
    fn tests_the_columns_cannot_satisfy_fold_away_and_placeholders_number_in_order() {
        let m = Mapping::parse("id=id,unit=t.unit,attrs.tags=tags:text[],attrs.n=n:number").unwrap();
        let f = Filter::all([
            Filter::any([
                test("attrs.tags", FieldOp::Equals(Value::Text("vip".into()))),
                test("attrs.tags", FieldOp::Contains("vip".into())),
            ]),
            Filter::not(test("attrs.n", FieldOp::Ge(3.0))),
            test("attrs.unmapped", FieldOp::Present(false)),
        ]);
        let sql = render(&f, &m, 3).unwrap();
        assert_eq!(
            sql.clause,
            "(COALESCE($3::text = ANY(\"tags\"), FALSE) AND (NOT COALESCE(\"n\"::float8 >= $4::float8, FALSE)))"
        );
        assert_eq!(sql.params, vec![Param::Text("vip".into()), Param::Number(3.0)]);
        let unit = render(&test("unit", FieldOp::OneOf(vec!["eu".into()])), &m, 1).unwrap();
        assert_eq!(unit.clause, "COALESCE(NULLIF(\"t\".\"unit\", '') = ANY($1::text[]), FALSE)");
        assert_eq!(render(&test("attrs.x", FieldOp::Lt(1.0)), &m, 1).unwrap().clause, "FALSE");
    }

    #[test]
    fn a_filter_on_id_needs_id_mapped() {
        let f = test("id", FieldOp::Equals(Value::Text("c1".into())));
        assert_eq!(render(&f, &Mapping::default(), 1), Err(SqlError::IdUnmapped));
    }
}
