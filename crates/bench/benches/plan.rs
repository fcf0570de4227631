//! Criterion benches of `Plan` on the benchmark tenant (the engine bench's 10,000-member service
//! desk), beside `decide` on the same member, and of rendering a plan as SQL.
//! Run: `cargo bench -p rolegate-bench --bench plan`. Figures go to BENCHMARKS.md.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use rolegate::engine::plan::sql::{Mapping, render};
use rolegate::engine::{Context, Filter, Query, Resource, Snapshot, Value, decide, plan};

#[path = "support/desk.rs"]
mod desk;

fn bench_plan(c: &mut Criterion) {
    let now: Timestamp = "2026-11-26T10:00:00Z".parse().unwrap();
    let mut snapshot = Snapshot::default();
    snapshot.insert(Arc::new(desk::compile("desk", 10_000)));
    let ctx = Context::default();
    // m7: agent on assigned conversations; m50: team admin of u50's subtree and assigned;
    // m1: admin of the tenant; m13: outsourced, denied every export.
    let cases = [
        ("agent_relation", "m7", "conversation.view"),
        ("team_admin_subtree", "m50", "conversation.assign"),
        ("admin_tenant", "m1", "conversation.view"),
        ("outsourced_denied", "m13", "customer.export"),
    ];
    let mut g = c.benchmark_group("plan");
    for (name, principal, action) in cases {
        let p = plan(&snapshot, "desk", principal, action, &ctx, now).unwrap();
        assert!(name != "outsourced_denied" || p.filter == Filter::Constant(false), "{name}: {p:?}");
        g.bench_function(name, |b| {
            b.iter(|| plan(black_box(&snapshot), "desk", black_box(principal), action, &ctx, now))
        });
    }
    // The same member's Check on one resource, for the ratio.
    let resource = Resource {
        kind: "conversation".into(),
        id: "c-42".into(),
        unit: "u57".into(),
        attrs: [("assignee".to_owned(), Value::Text("m7".into()))].into_iter().collect(),
    };
    let q = Query { tenant: "desk", principal: "m7", action: "conversation.view", resource: &resource, context: &ctx };
    g.bench_function("check_agent_relation", |b| b.iter(|| decide(black_box(&snapshot), black_box(&q), now)));
    let p = plan(&snapshot, "desk", "m50", "conversation.assign", &ctx, now).unwrap();
    let mapping = Mapping::parse("id=id,unit=unit,attrs.assignee=assignee").unwrap();
    g.bench_function("sql_team_admin_subtree", |b| b.iter(|| render(black_box(&p.filter), &mapping, 1)));
    g.finish();
}

criterion_group!(benches, bench_plan);
criterion_main!(benches);
