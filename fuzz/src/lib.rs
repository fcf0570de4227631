//! What the fuzz targets share: the example policies compiled once, and a few queries to run on
//! whatever a target compiled, so compiled tenants are exercised, not only built.

use std::path::PathBuf;
use std::sync::OnceLock;

use jiff::Timestamp;
use rolegate_engine::{Attrs, Context, Query, Resource, Snapshot, Tenant, Value};
use rolegate_policy::set::{self, Parsed, PolicyFile};

/// A fixed instant, so a crash reproduces whatever the day.
pub fn now() -> Timestamp {
    Timestamp::from_second(1_900_000_000).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The repository's `examples/`.
pub fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The example templates, parsed, to resolve a fuzzed tenant's `template:` against.
pub fn templates() -> &'static [Parsed] {
    static T: OnceLock<Vec<Parsed>> = OnceLock::new();
    T.get_or_init(|| {
        let dir = examples().join("templates");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
            if let Ok(bytes) = std::fs::read(&path) {
                out.push(set::parse_bytes(&PolicyFile { path: path.clone(), template: Some(stem) }, bytes));
            }
        }
        out
    })
}

/// The example policies compiled into one snapshot.
pub fn example_snapshot() -> &'static Snapshot {
    static S: OnceLock<Snapshot> = OnceLock::new();
    S.get_or_init(|| rolegate_source::dir::load_snapshot(&examples()).map(|(s, _)| s).unwrap_or_default())
}

/// Parses `bytes` as one tenant document beside the example templates and compiles it, as a
/// directory reload would; then decides a few queries on every tenant that compiled.
pub fn load_and_decide(bytes: &[u8]) {
    let file = PolicyFile { path: PathBuf::from("fuzzed.yaml"), template: None };
    let mut parsed = templates().to_vec();
    parsed.push(set::parse_bytes(&file, bytes.to_vec()));
    let loaded = set::assemble(&parsed, now(), |_, _, _| Some(1));
    for t in loaded.tenants {
        // INVARIANT: a tenant either compiles or says why, never both silently.
        assert!(
            t.tenant.is_some() || t.diags.iter().any(|d| d.is_error()),
            "tenant `{}` neither compiled nor failed",
            t.name
        );
        if let Some(tenant) = t.tenant {
            probe(&tenant);
        }
    }
}

/// Decides every action of `tenant` for a few members and resources.
pub fn probe(tenant: &Tenant) {
    let actions: Vec<String> = tenant.action_names().map(str::to_owned).take(16).collect();
    let members = ["m0", "m1", "r0", "admin", "agent"];
    let attrs = Attrs(vec![
        ("assignee".to_owned(), Value::Text("m0".to_owned())),
        ("tags".to_owned(), Value::List(vec!["vip".to_owned()])),
    ]);
    let context = Context { client_ip: "10.1.2.3".parse().ok(), attrs: Attrs(Vec::new()) };
    for action in &actions {
        let kind = action.split('.').next().unwrap_or_default().to_owned();
        for unit in ["", "u0", "u1"] {
            let resource =
                Resource { kind: kind.clone(), id: "x".to_owned(), unit: unit.to_owned(), attrs: attrs.clone() };
            for principal in members {
                let q = Query { tenant: &*tenant.name, principal, action, resource: &resource, context: &context };
                if let Ok(d) = tenant.decide(&q, now()) {
                    // INVARIANT: an answer is never cached past the instant it may change.
                    if let (Some(v), Some(c)) = (d.valid_until, d.cache_until) {
                        assert!(c <= v, "cache_until {c} after valid_until {v}");
                    }
                }
            }
        }
    }
}
