//! Criterion bench of the callers check's work per call: the API group of the path, the caller's
//! entry (the last of 100), the tenant decoded from a gRPC-framed `CheckRequest` and matched
//! against the entry's patterns. Run: `cargo bench --bench callers`. Figures go to
//! BENCHMARKS.md; the end-to-end cost is `scripts/bench-callers.sh`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use prost::Message as _;
use rolegate::api::{self, attr_value::Kind};
use rolegate::server::callers::{Api, Callers, layer, parse};
use rolegate::server::peer::Peer;

/// A `Check` as the load generator sends it, framed as on the wire.
fn body() -> Vec<u8> {
    let request = api::CheckRequest {
        tenant: "meiqia-service-desk".into(),
        principal: "agent-1234".into(),
        action: "conversation.reply".into(),
        resource: Some(api::Resource {
            kind: "conversation".into(),
            id: "conv-98765".into(),
            unit: "team-12".into(),
            attrs: [("assignee".to_owned(), api::AttrValue { kind: Some(Kind::Text("agent-1234".into())) })].into(),
        }),
        context: Some(api::Context { client_ip: "203.0.113.7".into(), attrs: Default::default() }),
        min_revision: 0,
    };
    let message = request.encode_to_vec();
    let mut framed = vec![0];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    framed
}

fn bench(c: &mut Criterion) {
    let mut text = String::from("callers:\n");
    for i in 0..99 {
        let _ = writeln!(
            text,
            "  - {{id: \"spiffe://cluster.local/ns/team-{i}/sa/api\", tenants: [\"team-{i}-*\"], apis: [check]}}"
        );
    }
    text.push_str(
        "  - {id: \"uid:1000\", tenants: [acme-*, globex, \"*-eu\", meiqia-service-desk], apis: [check, plan]}\n",
    );
    let callers = Callers::fixed(parse(Path::new("callers.yaml"), &text).unwrap(), Arc::default());
    let peer = Peer::from_uid(1000);
    let body = body();
    c.bench_function("callers: group, entry (last of 100), tenant decoded and matched", |b| {
        b.iter(|| {
            let api = Api::from_path(black_box("/rolegate.v1.Authorizer/Check"));
            let admitted = callers.admit(black_box(&peer), api).unwrap();
            for tenant in layer::tenants(black_box(&body)).unwrap() {
                admitted.tenant(&tenant).unwrap();
            }
        })
    });
    c.bench_function("callers: tenant decoded only", |b| b.iter(|| layer::tenants(black_box(&body)).unwrap()));
}

criterion_group!(benches, bench);
criterion_main!(benches);
