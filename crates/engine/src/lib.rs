//! The pure decision engine: compiled snapshots and `decide`. Synchronous and free of any
//! runtime, so a test can call it with nothing running.

mod bitset;
mod condition;
mod decide;
mod eval;
mod explain;
mod ids;
mod member_key;
mod permissions;
pub mod plan;
mod request;
mod schedule;
mod size;
mod snapshot;
pub mod suggest;
mod value;
mod who;

pub use bitset::BitSet;
pub use condition::{Clause, Cond};
pub use decide::{Decision, Reason, RequestError, decide};
pub use eval::Env;
pub use explain::{Step, StepKind, explain};
pub use member_key::MemberKey;
pub use permissions::{Grant, GrantScope, Permissions, UnknownKind};
pub use plan::{Field, FieldOp, FieldTest, Filter, Plan, plan};
pub use request::{Context, Query, Request, Resource};
pub use schedule::{EVERY_DAY, Schedule};
pub use snapshot::{
    ActionId, Binding, Bindings, DEFAULT_MAX_STALENESS, Effect, INLINE_BINDINGS, MAX_STALENESS_LIMIT, Member, Members,
    Role, RoleId, Rule, Scope, Snapshot, Tenant, UnitId, Window,
};
pub use value::{AttrRef, Attrs, Lit, MappedPrefixError, Op, Side, Test, Value, canonical_ip, canonical_net, same_as};
pub use who::{Page, WhoError, WhoPage};
