//! The SQL rendering of a plan against the real PostgreSQL of the test suite: rows of every
//! shape (NULL columns, empty and unknown units, lists, numbers, flags) are inserted, and for
//! each member and action the rows the rendered `WHERE` returns are exactly the rows `Check`
//! allows.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use jiff::Timestamp;
use rolegate::engine::plan::sql::{Mapping, Param, render};
use rolegate::engine::{Attrs, Context, Query, Resource, Snapshot, Value, decide, plan};
use rolegate::policy;
use tokio_postgres::types::ToSql;

const TENANT: &str = r#"tenant: desk
schema:
  conversation: [view, reply, export]
roles:
  reader: {allow: [conversation.view]}
  agent: {allow: [conversation.view, conversation.reply]}
  exporter: {allow: [conversation.export]}
units:
  - {id: hq}
  - {id: eu, parent: hq}
  - {id: eu-west, parent: eu}
  - {id: na, parent: hq}
members:
  - id: lead
    units: [eu]
    attrs: {email: lead@x, level: 3}
    bindings:
      - {role: agent, scope: own_units}
      - {role: exporter, scope: tenant, when: {resource: {priority: {ge: 3}}, not: {resource: {tags: {contains: legal}}}}}
  - id: rep
    units: [na]
    attrs: {email: rep@x, employment: outsourced}
    bindings:
      - {role: agent, scope: {relation: assignee}}
      - {role: reader, scope: {relation: admins}}
      - {role: reader, scope: tenant, when: {resource: {owner_email: {same_as: principal.email}}}}
  - id: auditor
    bindings:
      - {role: reader, scope: tenant, when: {any: [{in_unit: eu}, {resource: {unit: {present: false}}}]}}
      - {role: reader, scope: tenant, when: {resource: {assignee: {same_as: resource.owner}}}}
      - {role: exporter, scope: {unit: na}, when: {resource: {priority: 2}}}
  - {id: gone, status: disabled, bindings: [{role: reader, scope: tenant}]}
everyone:
  - {role: reader, scope: tenant, when: {resource: {tags: [public, open]}}}
rules:
  - {id: outsourced-no-sensitive, effect: deny, actions: ["*"], when: {principal: {employment: outsourced}, resource: {sensitivity: [high, critical]}}}
  - {id: closed-window, effect: deny, actions: [conversation.reply], when: {resource: {window_open: false}}}
  - {id: low-priority-hidden, effect: deny, actions: [conversation.export], when: {resource: {priority: {lt: 1}}}}
"#;

const MAPPING: &str = "id=id,unit=unit,attrs.assignee=assignee,attrs.admins=admins:text[],attrs.tags=tags:text[],\
                       attrs.sensitivity=sensitivity,attrs.priority=priority:number,attrs.owner=owner,\
                       attrs.owner_email=owner_email,attrs.window_open=window_open:bool";

/// One row; `None` is NULL.
#[derive(Debug, Clone)]
struct Row {
    id: String,
    unit: Option<&'static str>,
    assignee: Option<&'static str>,
    admins: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    sensitivity: Option<&'static str>,
    priority: Option<i32>,
    owner: Option<&'static str>,
    owner_email: Option<&'static str>,
    window_open: Option<bool>,
}

/// Rows of every combination the generator reaches, from a fixed seed.
fn rows(n: usize) -> Vec<Row> {
    let mut state = 0x5eed_u64;
    let mut next = move |k: usize| {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) % k as u64) as usize
    };
    let lists: [Option<&[&str]>; 5] = [None, Some(&[]), Some(&["rep"]), Some(&["lead", "rep"]), Some(&["public"])];
    let tags: [Option<&[&str]>; 6] =
        [None, Some(&[]), Some(&["public"]), Some(&["legal"]), Some(&["open", "vip"]), Some(&["legal", "public"])];
    let own = |l: Option<&[&str]>| l.map(|l| l.iter().map(|s| s.to_string()).collect());
    (0..n)
        .map(|i| Row {
            id: format!("c{i:04}"),
            unit: [None, Some(""), Some("hq"), Some("eu"), Some("eu-west"), Some("na"), Some("elsewhere")][next(7)],
            assignee: [None, Some("lead"), Some("rep"), Some("auditor")][next(4)],
            admins: own(lists[next(5)]),
            tags: own(tags[next(6)]),
            sensitivity: [None, Some("high"), Some("low"), Some("critical")][next(4)],
            priority: [None, Some(0), Some(1), Some(2), Some(3), Some(4)][next(6)],
            owner: [None, Some("lead"), Some("rep"), Some("auditor")][next(4)],
            owner_email: [None, Some("rep@x"), Some("lead@x")][next(3)],
            window_open: [None, Some(true), Some(false)][next(3)],
        })
        .collect()
}

/// The resource `Check` is asked about for a row: a NULL column is a missing attribute.
fn resource(r: &Row) -> Resource {
    let mut attrs = Attrs::default();
    let text = |s: &str| Value::Text(s.to_owned());
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            attrs.insert(k, v);
        }
    };
    put("assignee", r.assignee.map(text));
    put("admins", r.admins.clone().map(Value::List));
    put("tags", r.tags.clone().map(Value::List));
    put("sensitivity", r.sensitivity.map(text));
    put("priority", r.priority.map(|p| Value::Int(i64::from(p))));
    put("owner", r.owner.map(text));
    put("owner_email", r.owner_email.map(text));
    put("window_open", r.window_open.map(Value::Flag));
    Resource { kind: "conversation".into(), id: r.id.clone(), unit: r.unit.unwrap_or_default().to_owned(), attrs }
}

fn bind(p: &Param) -> Box<dyn ToSql + Sync> {
    match p {
        Param::Text(t) => Box::new(t.clone()),
        Param::Number(n) => Box::new(*n),
        Param::Bool(b) => Box::new(*b),
        Param::TextList(l) => Box::new(l.clone()),
    }
}

#[tokio::test]
async fn the_rows_the_sql_filter_returns_are_the_rows_check_allows() {
    let Some(dsn) = support::pg::database("plan_sql").await else { return };
    let client = support::pg::connect(&dsn).await;
    client
        .batch_execute(
            "CREATE TABLE conversations (id text PRIMARY KEY, unit text, assignee text, admins text[], tags text[], \
             sensitivity text, priority integer, owner text, owner_email text, window_open boolean)",
        )
        .await
        .unwrap();
    let rows = rows(600);
    for r in &rows {
        client
            .execute(
                "INSERT INTO conversations VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    &r.id,
                    &r.unit,
                    &r.assignee,
                    &r.admins,
                    &r.tags,
                    &r.sensitivity,
                    &r.priority,
                    &r.owner,
                    &r.owner_email,
                    &r.window_open,
                ],
            )
            .await
            .unwrap();
    }

    let (doc, diags) = policy::parse_str("desk.yaml", TENANT, None);
    assert!(!diags.iter().any(|d| d.is_error()), "{diags:?}");
    let mut snapshot = Snapshot::default();
    snapshot.insert(Arc::new(policy::compile(&doc.unwrap(), None, 1).unwrap()));
    let mapping = Mapping::parse(MAPPING).unwrap();
    let now: Timestamp = "2026-11-26T10:00:00Z".parse().unwrap();
    let context = Context::default();

    let (mut some, mut partial) = (0, 0);
    for principal in ["lead", "rep", "auditor", "gone", "nobody"] {
        for action in ["conversation.view", "conversation.reply", "conversation.export"] {
            let p = plan(&snapshot, "desk", principal, action, &context, now).unwrap();
            let sql = render(&p.filter, &mapping, 1).unwrap();
            let params: Vec<Box<dyn ToSql + Sync>> = sql.params.iter().map(bind).collect();
            let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|b| b.as_ref()).collect();
            let query = format!("SELECT id FROM conversations WHERE {} ORDER BY id", sql.clause);
            let got: BTreeSet<String> = client
                .query(&query, &refs)
                .await
                .unwrap_or_else(|e| panic!("{query}: {e}"))
                .iter()
                .map(|r| r.get(0))
                .collect();
            let want: BTreeSet<String> = rows
                .iter()
                .filter(|r| {
                    let res = resource(r);
                    let q = Query { tenant: "desk", principal, action, resource: &res, context: &context };
                    decide(&snapshot, &q, now).unwrap().allowed
                })
                .map(|r| r.id.clone())
                .collect();
            assert_eq!(
                got.symmetric_difference(&want).collect::<Vec<_>>(),
                Vec::<&String>::new(),
                "{principal} {action}: the SQL and Check differ\nWHERE {}\nparams {:?}\nfilter {:#?}",
                sql.clause,
                sql.params,
                p.filter
            );
            some += usize::from(!want.is_empty());
            partial += usize::from(!want.is_empty() && want.len() < rows.len());
        }
    }
    // Guards the fixture: most plans must select some rows but not all.
    assert!(some >= 7 && partial >= 7, "too few selective plans: {some} non-empty, {partial} partial");
}

#[test]
fn a_mapping_with_a_bad_column_or_type_is_refused() {
    for bad in ["id=\"id\"", "attrs.x=x:json", "unit=u:number", "tags=tags", "id=a;drop", "id=id,id=id2"] {
        assert!(Mapping::parse(bad).is_err(), "{bad} parsed");
    }
    assert!(Mapping::parse("id=c.id,attrs.tags=c.tags:text[]").is_ok());
}
