//! Criterion benches of `decide` and of compiling large tenants (ISSUE: engine benches).
//! Run: `cargo bench --bench engine`. Figures go to BENCHMARKS.md.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use rolegate::engine::{Attrs, Context, Request, Resource, Snapshot, Value, decide};
use rolegate::policy;

#[path = "support/alloc.rs"]
mod alloc;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

#[path = "support/desk.rs"]
mod desk;
use desk::{compile, desk_yaml};

fn req(tenant: &str, principal: &str, action: &str, unit: &str, attrs: &[(&str, &str)]) -> Request {
    let kind = action.split('.').next().unwrap();
    Request {
        tenant: tenant.into(),
        principal: principal.into(),
        action: action.into(),
        resource: Resource {
            kind: kind.into(),
            id: "c-42".into(),
            unit: unit.into(),
            attrs: attrs.iter().map(|(k, v)| (k.to_string(), Value::Text(v.to_string()))).collect::<Attrs>(),
        },
        context: Context::default(),
    }
}

/// The five common cases, for tenant `t`.
fn cases(t: &str) -> Vec<(&'static str, Request)> {
    vec![
        ("allow_relation", req(t, "m7", "conversation.reply", "u57", &[("assignee", "m7")])),
        // m50 is a team admin of u50, a child of u5; the resource sits in u50.
        ("allow_unit_subtree", req(t, "m50", "conversation.assign", "u50", &[("assignee", "m8")])),
        ("deny_by_rule", req(t, "m13", "customer.export", "u13", &[("assignee", "m13")])),
        ("no_grant", req(t, "m7", "conversation.view", "u57", &[("assignee", "m8")])),
        ("allow_with_mask", req(t, "m13", "customer.view", "u13", &[("assignee", "m13")])),
    ]
}

fn bench_decide(c: &mut Criterion) {
    let now: Timestamp = "2026-11-26T10:00:00Z".parse().unwrap();

    let mut one = Snapshot::default();
    one.insert(Arc::new(compile("desk", 10_000)));

    // 10k tenants of 100 members each: 10k tenants of 10k members would need tens of GB.
    let mut many = Snapshot::default();
    for i in 0..10_000 {
        many.insert(Arc::new(compile(&format!("desk-{i}"), 100)));
    }

    for (label, snapshot, tenant) in [("1_tenant", &one, "desk"), ("10k_tenants", &many, "desk-4711")] {
        let mut g = c.benchmark_group(format!("decide/{label}"));
        for (name, request) in cases(tenant) {
            let d = decide(snapshot, &request.query(), now).unwrap();
            let expect_allow = name.starts_with("allow");
            assert_eq!(d.allowed, expect_allow, "{name}: {d:?}");
            g.bench_function(name, |b| b.iter(|| decide(black_box(snapshot), black_box(&request.query()), now)));
        }
        g.finish();
    }
}

fn bench_compile(c: &mut Criterion) {
    let text = desk_yaml("big", 100_000);
    let mut g = c.benchmark_group("load_100k_members");
    g.sample_size(10);
    g.bench_function("parse", |b| b.iter(|| policy::parse_str("big.yaml", black_box(&text), None)));
    let (doc, _) = policy::parse_str("big.yaml", &text, None);
    let doc = doc.unwrap();
    g.bench_function("compile", |b| b.iter(|| policy::compile(black_box(&doc), None, 1).unwrap()));
    g.finish();

    let before = alloc::live();
    let tenant = policy::compile(&doc, None, 1).unwrap();
    let bytes = alloc::live() - before;
    println!("memory: compiled tenant of 100000 members holds {bytes} bytes = {} bytes/member", bytes / 100_000);
    drop(tenant);
}

fn bench_cache(c: &mut Criterion) {
    use rolegate::cache::{CacheConfig, DecisionCache, Key};
    let now: Timestamp = "2026-11-26T10:00:00Z".parse().unwrap();
    let mut one = Snapshot::default();
    one.insert(Arc::new(compile("desk", 10_000)));
    let cache =
        DecisionCache::new(CacheConfig { capacity: 100_000, ttl: std::time::Duration::from_secs(60) }, || ()).unwrap();
    let mut g = c.benchmark_group("cache");
    for (name, request) in cases("desk") {
        let q = request.query();
        let d = Arc::new(decide(&one, &q, now).unwrap());
        cache.insert(Key::new(&q, 1), d, now);
        g.bench_function(format!("evaluate/{name}"), |b| b.iter(|| decide(black_box(&one), black_box(&q), now)));
        g.bench_function(format!("hit/{name}"), |b| b.iter(|| cache.get(&Key::new(black_box(&q), 1), now)));
    }
    let q = cases("desk").remove(0).1;
    g.bench_function("miss", |b| b.iter(|| cache.get(&Key::new(black_box(&q.query()), 2), now)));
    g.finish();
}

criterion_group!(benches, bench_decide, bench_compile, bench_cache);
criterion_main!(benches);
