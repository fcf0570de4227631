//! Criterion benches of the Inspector on the benchmark tenant (docs/api.md, "Service
//! `Inspector`"): Explain beside the Check it explains, Who over a 50,000-member tenant, and
//! Permissions for a member with 20 bindings.
//! Run: `cargo bench --bench inspect`. Figures go to BENCHMARKS.md.

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use rolegate::engine::{Attrs, Context, Page, Request, Resource, Snapshot, Value, decide, explain};
use rolegate::policy;

#[path = "support/desk.rs"]
#[allow(dead_code, reason = "the inspector benches build their own variant of the tenant")]
mod desk;

fn resource(unit: &str, assignee: &str) -> Resource {
    Resource {
        kind: "conversation".into(),
        id: "c-42".into(),
        unit: unit.into(),
        attrs: [("assignee".to_owned(), Value::Text(assignee.into()))].into_iter().collect::<Attrs>(),
    }
}

/// The benchmark tenant of `members` members plus `auditor`, a member with 20 bindings: team
/// admin of 10 units, viewer windows and relation scopes.
fn tenant(members: usize) -> rolegate::engine::Tenant {
    let mut text = desk::desk_yaml("desk", members);
    text.push_str("  - id: auditor\n    units: [u3]\n    bindings:\n");
    for i in 0..20 {
        let line = match i % 4 {
            0 => format!("      - {{role: team_admin, scope: {{unit: u{i}}}}}"),
            1 => format!("      - {{role: agent, scope: {{relation: watcher{i}}}}}"),
            2 => "      - {role: agent, scope: own_units, until: \"2030-01-01T00:00:00Z\"}".to_owned(),
            _ => format!("      - {{role: admin, scope: {{unit: u{i}}}, when: {{context: {{shift: day}}}}}}"),
        };
        let _ = writeln!(text, "{line}");
    }
    let (doc, diags) = policy::parse_str("bench.yaml", &text, None);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    policy::compile(&doc.unwrap(), None, 1).unwrap()
}

fn bench_inspect(c: &mut Criterion) {
    let now: Timestamp = "2026-11-26T10:00:00Z".parse().unwrap();
    let ctx = Context::default();

    let mut snapshot = Snapshot::default();
    snapshot.insert(Arc::new(tenant(10_000)));
    let mut g = c.benchmark_group("explain/10k_members");
    for (name, principal, action, unit, assignee) in [
        ("allow_relation", "m7", "conversation.reply", "u57", "m7"),
        ("deny_by_rule", "m13", "customer.export", "u13", "m13"),
        ("no_grant", "m7", "conversation.view", "u57", "m8"),
    ] {
        let mut r = resource(unit, assignee);
        r.kind = action.split('.').next().unwrap().into();
        let req = Request {
            tenant: "desk".into(),
            principal: principal.into(),
            action: action.into(),
            resource: r,
            context: ctx.clone(),
        };
        let (d, steps) = explain(&snapshot, &req.query(), now).unwrap();
        assert_eq!(Ok(&d), decide(&snapshot, &req.query(), now).as_ref());
        assert!(!steps.is_empty());
        g.bench_function(format!("check/{name}"), |b| b.iter(|| decide(black_box(&snapshot), &req.query(), now)));
        g.bench_function(format!("explain/{name}"), |b| b.iter(|| explain(black_box(&snapshot), &req.query(), now)));
    }
    g.finish();

    let t = snapshot.tenant("desk").unwrap();
    let mut g = c.benchmark_group("permissions/10k_members");
    let p = t.permissions("auditor", "", now).unwrap();
    assert!(p.grants.len() > 20, "{}", p.grants.len());
    g.bench_function("20_bindings_all_kinds", |b| b.iter(|| t.permissions(black_box("auditor"), "", now)));
    g.bench_function("1_binding_all_kinds", |b| b.iter(|| t.permissions(black_box("m7"), "", now)));
    g.finish();

    let big = tenant(50_000);
    let mut g = c.benchmark_group("who/50k_members");
    g.sample_size(20);
    // Who may view a conversation of u50 assigned to m7: the admins, the team admins above u50,
    // and m7 (2,000 members); every one of the 50,001 members is decided.
    let r = resource("u50", "m7");
    let all = |size: usize| {
        let mut n = 0;
        let mut token = String::new();
        loop {
            let page = big.who("conversation.view", &r, &ctx, now, Page { token: &token, size }).unwrap();
            n += page.principals.len();
            match page.next_page_token {
                Some(t) => token = t,
                None => return n,
            }
        }
    };
    assert!(all(1000) > 1000);
    g.bench_function("all_pages_of_1000", |b| b.iter(|| all(black_box(1000))));
    g.bench_function("first_page_of_100", |b| {
        b.iter(|| big.who("conversation.view", &r, &ctx, now, Page { token: "", size: black_box(100) }))
    });
    g.finish();
}

criterion_group!(benches, bench_inspect);
criterion_main!(benches);
