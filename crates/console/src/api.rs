//! The JSON endpoints the page fetches (docs/console.md, "JSON endpoints"). Each reads the
//! snapshot loaded at start and answers in-process; none changes anything.

use std::sync::Arc;

use rolegate_engine::{Page, Query, RequestError, Tenant, WhoError};
use rolegate_policy::Severity;
use rolegate_policy::diff::{Diff, Item};
use serde_json::{Value as Json, json};

use crate::json;
use crate::load::{Compared, State};
use crate::query::{BadParam, Params, echo};

/// Members a `who` answer lists at most; the page says when there were more.
pub const MAX_WHO: usize = 10_000;

/// An answer other than 200.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// 400: a parameter is wrong; the message names it.
    Bad(String),
    /// 404: no such tenant, member or endpoint.
    NotFound(String),
}

impl From<BadParam> for Failure {
    fn from(e: BadParam) -> Self {
        Failure::Bad(e.to_string())
    }
}

impl From<RequestError> for Failure {
    fn from(e: RequestError) -> Self {
        Failure::Bad(format!("action: {e}"))
    }
}

type Answer = Result<Json, Failure>;

/// Answers `GET /api/{name}?{query}`.
pub fn answer(state: &State, name: &str, query: &str) -> Answer {
    let p = Params::parse(query)?;
    match name {
        "overview" => Ok(overview(state)),
        "tenant" => Ok(json::tenant(tenant(state, &p)?, p.instant()?)),
        "member" => member(state, &p),
        "explain" => explain(state, &p),
        "who" => who(state, &p),
        "diff" => Ok(diff(&state.compared)),
        "problems" => Ok(problems(state)),
        _ => Err(Failure::NotFound(format!("no endpoint `/api/{}`", echo(name)))),
    }
}

fn tenant<'a>(state: &'a State, p: &Params) -> Result<&'a Arc<Tenant>, Failure> {
    let name = p.required("tenant")?;
    state.snapshot.tenant(name).ok_or_else(|| Failure::NotFound(format!("tenant: unknown tenant `{}`", echo(name))))
}

fn overview(state: &State) -> Json {
    let mut tenants: Vec<&Arc<Tenant>> = state.snapshot.tenants().collect();
    tenants.sort_by(|a, b| a.name.cmp(&b.name));
    let count = |severity: Severity, file: Option<&str>| {
        state.problems.iter().filter(|d| d.severity == severity && file.is_none_or(|f| *d.file == *f)).count()
    };
    let rows: Vec<Json> = tenants
        .iter()
        .map(|t| {
            json!({
                "tenant": &*t.name,
                "revision": t.revision,
                "members": t.member_count(),
                "units": t.unit_names.len(),
                "actions": t.action_names.len(),
                "roles": t.roles.len(),
                "rules": t.rules.len(),
            })
        })
        .collect();
    json!({
        "origin": state.origin,
        "loaded_at": state.loaded_at.to_string(),
        "tenants": rows,
        "errors": count(Severity::Error, None),
        "warnings": count(Severity::Warning, None),
        "diff": !matches!(state.compared, Compared::NoBase),
    })
}

fn member(state: &State, p: &Params) -> Answer {
    let t = tenant(state, p)?;
    let id = p.required("member")?;
    let m = t.members.get(id).ok_or_else(|| Failure::NotFound(format!("member: unknown member `{}`", echo(id))))?;
    Ok(json::member(t, m, p.instant()?))
}

fn explain(state: &State, p: &Params) -> Answer {
    let tenant = p.required("tenant")?;
    let principal = p.required("member")?;
    let action = p.required("action")?;
    let resource = p.resource(action)?;
    let context = p.context()?;
    let now = p.instant()?;
    let q = Query { tenant, principal, action, resource: &resource, context: &context };
    let (d, steps) = rolegate_engine::explain(&state.snapshot, &q, now)?;
    let revision = state.snapshot.tenant(tenant).map_or(0, |t| t.revision);
    Ok(json!({
        "decision": json::decision(&d),
        "steps": json::steps(&steps),
        "revision": revision,
        "now": now.to_string(),
    }))
}

fn who(state: &State, p: &Params) -> Answer {
    let t = tenant(state, p)?;
    let action = p.required("action")?;
    let resource = p.resource(action)?;
    let context = p.context()?;
    let now = p.instant()?;
    let mut principals = Vec::new();
    let mut token = String::new();
    let more = loop {
        let page =
            t.who(action, &resource, &context, now, Page { token: &token, size: 1000 }).map_err(|e| match e {
                WhoError::Request(e) => Failure::from(e),
                WhoError::PageToken => Failure::Bad(e.to_string()),
            })?;
        principals.extend(page.principals.iter().map(|m| m.to_string()));
        match page.next_page_token {
            Some(next) if principals.len() < MAX_WHO => token = next,
            Some(_) => break true,
            None => break false,
        }
    };
    Ok(json!({"principals": principals, "more": more, "revision": t.revision, "now": now.to_string()}))
}

fn diff(compared: &Compared) -> Json {
    let (base, d): (&str, &Diff) = match compared {
        Compared::NoBase => {
            return json!({"available": false, "message": "start the console with --base DIR or --base DSN to compare"});
        }
        Compared::Broken(why) => return json!({"available": false, "message": why}),
        Compared::Diff { base, diff } => (base, diff),
    };
    let texts = |items: &[Item]| items.iter().map(|i| i.to_string()).collect::<Vec<_>>();
    let tenants: Vec<Json> = d
        .tenants
        .iter()
        .map(|t| {
            let members: Vec<Json> = t
                .members
                .iter()
                .map(|m| {
                    let actions: Vec<Json> = m
                        .actions
                        .iter()
                        .map(|a| {
                            json!({"action": a.action, "gained": a.gained, "lost": a.lost, "added": texts(&a.added),
                                   "removed": texts(&a.removed), "reordered": a.reordered})
                        })
                        .collect();
                    json!({
                        "member": m.member,
                        "status": m.status.as_ref().map(|(old, new)| format!("{old} → {new}")),
                        "gained": m.status_gained || m.actions.iter().any(|a| a.gained),
                        "lost": m.status_lost || m.actions.iter().any(|a| a.lost),
                        "actions": actions,
                    })
                })
                .collect();
            json!({"tenant": t.tenant, "notes": t.notes, "members": members})
        })
        .collect();
    json!({"available": true, "base": base, "tenants": tenants, "gains": d.gains(), "loses": d.loses()})
}

fn problems(state: &State) -> Json {
    let rows: Vec<Json> = state
        .problems
        .iter()
        .map(|d| {
            json!({
                "file": &*d.file,
                "line": d.at.line,
                "col": d.at.col,
                "severity": if d.is_error() { "error" } else { "warning" },
                "key": d.key,
                "message": d.message,
            })
        })
        .collect();
    json!({"problems": rows})
}
