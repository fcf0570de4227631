//! `cache_until`: how long a caller may reuse an answer. The earlier of `valid_until` and the
//! decision instant plus the tenant's `max_staleness` (a tenant or template setting, default
//! 5s), computed by the pure engine, sent on the wire and honoured by the server's own cache.

mod support;

use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use rolegate::api::{self, attr_value::Kind};
use rolegate::cli::load_snapshot;
use rolegate::engine::{Context, Request, Resource, decide};
use rolegate::policy;
use support::server::Server;
use support::wait_until;

fn now() -> Timestamp {
    "2026-11-26T10:00:00Z".parse().unwrap()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn desk(staleness: &str, until: &str) -> String {
    format!(
        "tenant: desk
{staleness}
schema: {{conversation: [view]}}
roles: {{agent: {{allow: [conversation.view]}}}}
members:
  - {{id: rep, bindings: [{{role: agent, scope: tenant{until}}}]}}
"
    )
}

fn view(tenant: &str) -> Request {
    Request {
        tenant: tenant.into(),
        principal: "rep".into(),
        action: "conversation.view".into(),
        resource: Resource {
            kind: "conversation".into(),
            id: "c1".into(),
            unit: String::new(),
            attrs: Default::default(),
        },
        context: Context::default(),
    }
}

fn cache_until(dir: &Path, tenant: &str) -> Option<Timestamp> {
    let (snapshot, loaded) = load_snapshot(dir).unwrap();
    assert!(loaded.diagnostics().iter().all(|d| !d.is_error()), "{:?}", loaded.diagnostics());
    decide(&snapshot, &view(tenant).query(), now()).unwrap().cache_until
}

#[test]
fn a_long_grant_is_reused_only_for_the_tenants_max_staleness() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "desk.yaml", &desk("max_staleness: 3s", ", until: \"2026-11-27T10:00:00Z\""));
    assert_eq!(cache_until(dir.path(), "desk"), Some("2026-11-26T10:00:03Z".parse().unwrap()));
}

#[test]
fn a_grant_ending_sooner_bounds_reuse_by_its_end() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "desk.yaml", &desk("max_staleness: 1m", ", until: \"2026-11-26T10:00:20Z\""));
    assert_eq!(cache_until(dir.path(), "desk"), Some("2026-11-26T10:00:20Z".parse().unwrap()));
}

#[test]
fn without_a_setting_or_a_time_bound_reuse_is_bounded_by_the_default() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "desk.yaml", &desk("", ""));
    let default = rolegate::engine::DEFAULT_MAX_STALENESS.as_secs() as i64;
    assert_eq!(cache_until(dir.path(), "desk"), Some(now() + jiff::SignedDuration::from_secs(default)));
    // An unknown tenant's deny is bounded the same way.
    assert_eq!(cache_until(dir.path(), "nobody"), Some(now() + jiff::SignedDuration::from_secs(default)));
}

#[test]
fn zero_staleness_means_never_reuse() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "desk.yaml", &desk("max_staleness: 0s", ""));
    assert_eq!(cache_until(dir.path(), "desk"), Some(now()));
}

#[test]
fn the_tenant_setting_beats_the_templates() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "templates/base.yaml", "max_staleness: 40s\nschema: {conversation: [view]}\n");
    let member = "members: [{id: rep, bindings: [{role: agent, scope: tenant}]}]\n";
    let roles = "roles: {agent: {allow: [conversation.view]}}\n";
    write(dir.path(), "a.yaml", &format!("tenant: a\ntemplate: base\n{roles}{member}"));
    write(dir.path(), "b.yaml", &format!("tenant: b\ntemplate: base\nmax_staleness: 500ms\n{roles}{member}"));
    assert_eq!(cache_until(dir.path(), "a"), Some("2026-11-26T10:00:40Z".parse().unwrap()));
    assert_eq!(cache_until(dir.path(), "b"), Some("2026-11-26T10:00:00.5Z".parse().unwrap()));
}

#[test]
fn a_bad_max_staleness_is_a_located_error() {
    for (value, want) in [
        ("soon", "invalid duration `soon`"),
        ("2d", "invalid duration `2d`"),
        ("2h", "`2h` is longer than the limit of 3600s"),
        ("99999999999999999999h", "invalid duration"),
    ] {
        let (_, diags) = policy::parse_str("desk.yaml", &desk(&format!("max_staleness: {value}"), ""), None);
        let d = diags.iter().find(|d| d.is_error()).unwrap_or_else(|| panic!("no error for `{value}`"));
        let shown = d.to_string();
        assert!(shown.starts_with("desk.yaml:2:16: error: max_staleness: "), "{shown}");
        assert!(shown.contains(want), "{shown}");
    }
}

fn ask() -> api::CheckRequest {
    api::CheckRequest {
        tenant: "desk".into(),
        principal: "rep".into(),
        action: "conversation.view".into(),
        resource: Some(api::Resource {
            kind: "conversation".into(),
            id: "c1".into(),
            unit: String::new(),
            attrs: [("x".to_owned(), api::AttrValue { kind: Some(Kind::Int(1)) })].into(),
        }),
        context: None,
        min_revision: 0,
    }
}

fn ts(t: Option<prost_types::Timestamp>) -> Timestamp {
    let t = t.expect("a timestamp");
    Timestamp::new(t.seconds, t.nanos).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_sends_cache_until_and_its_cache_never_serves_past_it() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "desk.yaml", &desk("max_staleness: 1s", ", until: \"2099-01-01T00:00:00Z\""));
    let server =
        Server::start(dir.path(), &["--cache-capacity", "100", "--cache-ttl", "1h", "--admin-listen", "127.0.0.1:0"]);
    let mut client = server.client().await;
    let before = Timestamp::now();
    let first = client.check(ask()).await.unwrap().into_inner().decision.unwrap();
    let until = ts(first.cache_until);
    assert!(until > before && until <= Timestamp::now() + jiff::SignedDuration::from_secs(1), "{until}");
    assert!(ts(first.valid_until) > until, "valid_until is not a cache lifetime");
    // A hit carries the same bound: the server's cache is a reuse too.
    let hit = client.check(ask()).await.unwrap().into_inner().decision.unwrap();
    assert_eq!(ts(hit.cache_until), until);
    // Once it has passed, the answer is decided afresh, with a new bound.
    let passed = async || (Timestamp::now() > until).then_some(());
    wait_until("the clock to pass cache_until", Duration::from_secs(5), passed).await;
    let fresh = client.check(ask()).await.unwrap().into_inner().decision.unwrap();
    assert!(ts(fresh.cache_until) > until);
    let text = server.metrics().await;
    assert!(text.contains("rolegate_cache_hits_total 1\n"), "{text}");
    assert!(text.contains("rolegate_cache_misses_total 2\n"), "{text}");
}
