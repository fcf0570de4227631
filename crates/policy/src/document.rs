//! Policy documents as written (docs/policy-language.md), before names are resolved. Every element keeps its
//! position so the compiler can report file, line and key.

use std::sync::Arc;

use ipnet::IpNet;
use jiff::Timestamp;

use super::diag::{Loc, Spanned};
use rolegate_engine::{Attrs, Effect, Schedule, Test};

/// Tenant document or template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocKind {
    /// One tenant's document.
    Tenant,
    /// A template, shared by tenants that name it.
    Template,
}

/// A parsed policy document.
#[derive(Clone, Debug)]
pub struct Document {
    /// File (or database row) it came from.
    pub file: Arc<str>,
    /// Tenant document or template.
    pub kind: DocKind,
    /// `tenant:`; for a template, its name (the file stem).
    pub name: Spanned<String>,
    /// `template:`.
    pub template: Option<Spanned<String>>,
    /// `schema:` kinds in document order.
    pub schema: Vec<SchemaKind>,
    /// `roles:` in document order.
    pub roles: Vec<RoleDoc>,
    /// `units:`.
    pub units: Vec<UnitDoc>,
    /// `members:`.
    pub members: Vec<MemberDoc>,
    /// `everyone:` bindings.
    pub everyone: Vec<BindingDoc>,
    /// `rules:`.
    pub rules: Vec<RuleDoc>,
    /// `max_staleness:`, how long a caller may reuse an answer.
    pub max_staleness: Option<Spanned<std::time::Duration>>,
    /// Fingerprint of every top-level key but `members` and `description`, as the parser read
    /// them (positions aside): two documents with the same head print compile the same schema,
    /// units, roles, `everyone` and rules. A source that edits a parsed document must not rely
    /// on it.
    pub head_print: u64,
}

/// A resource kind and its verbs.
#[derive(Clone, Debug)]
pub struct SchemaKind {
    /// Kind name.
    pub name: Spanned<String>,
    /// Verbs.
    pub verbs: Vec<Spanned<String>>,
}

/// A role as written.
#[derive(Clone, Debug)]
pub struct RoleDoc {
    /// Role name.
    pub name: Spanned<String>,
    /// Granted action patterns.
    pub allow: Vec<Spanned<String>>,
    /// Roles whose actions this one includes.
    pub extends: Vec<Spanned<String>>,
    /// Patterns removed last.
    pub except: Vec<Spanned<String>>,
    /// Patterns a holder may ask for.
    pub requestable: Vec<Spanned<String>>,
}

/// A node of the organisation tree.
#[derive(Clone, Debug)]
pub struct UnitDoc {
    /// Unit id.
    pub id: Spanned<String>,
    /// Parent unit.
    pub parent: Option<Spanned<String>>,
}

/// Active or disabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// May act.
    Active,
    /// Denied everything.
    Disabled,
}

/// A member as written.
#[derive(Clone, Debug)]
pub struct MemberDoc {
    /// Member id.
    pub id: Spanned<String>,
    /// Active or disabled.
    pub status: Status,
    /// When the account expires.
    pub expires: Option<Timestamp>,
    /// Units the member belongs to.
    pub units: Vec<Spanned<String>>,
    /// Free attributes.
    pub attrs: Attrs,
    /// Own bindings.
    pub bindings: Vec<BindingDoc>,
    /// Fingerprint of the member as written (positions aside): against the same head, members
    /// with the same print compile to the same member.
    pub print: u64,
}

/// A binding as written.
#[derive(Clone, Debug)]
pub struct BindingDoc {
    /// Where the binding starts.
    pub at: Loc,
    /// Explicit id.
    pub id: Option<Spanned<String>>,
    /// Role name.
    pub role: Spanned<String>,
    /// Covered resources.
    pub scope: ScopeDoc,
    /// Window start, inclusive.
    pub from: Option<Timestamp>,
    /// Window end, exclusive.
    pub until: Option<Timestamp>,
    /// Extra condition.
    pub when: Option<WhenDoc>,
}

/// A scope as written.
#[derive(Clone, Debug, PartialEq)]
pub enum ScopeDoc {
    /// `tenant`.
    Tenant,
    /// `{unit: U}`.
    Unit(Spanned<String>),
    /// `own_units`.
    OwnUnits,
    /// `{relation: ATTR}`.
    Relation(String),
}

/// A rule as written.
#[derive(Clone, Debug)]
pub struct RuleDoc {
    /// Rule id.
    pub id: Spanned<String>,
    /// Effect.
    pub effect: Effect,
    /// Action patterns.
    pub actions: Vec<Spanned<String>>,
    /// Extra condition.
    pub when: Option<WhenDoc>,
    /// Fields to mask.
    pub fields: Vec<String>,
    /// Raise an alert.
    pub alert: bool,
    /// Text for the caller.
    pub message: Option<String>,
}

/// A `when` map as written: every clause must hold.
#[derive(Clone, Debug, PartialEq)]
pub struct WhenDoc {
    /// Clauses in document order.
    pub clauses: Vec<ClauseDoc>,
}

/// One key of a `when` map.
#[derive(Clone, Debug, PartialEq)]
pub enum ClauseDoc {
    /// `principal: {...}`.
    Principal(Vec<(String, Test)>),
    /// `resource: {...}`.
    Resource(Vec<(String, Test)>),
    /// `context: {...}`.
    Context(Vec<(String, Test)>),
    /// `ip: [...]`.
    Ip(Vec<IpNet>),
    /// `relation: ATTR`.
    Relation(String),
    /// `in_unit: U`, with its key path for errors.
    InUnit(Spanned<String>, String),
    /// `schedule: {...}`.
    Schedule(Schedule),
    /// `any: [...]`.
    Any(Vec<WhenDoc>),
    /// `not: {...}`.
    Not(Box<WhenDoc>),
}
