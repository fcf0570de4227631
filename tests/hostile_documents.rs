//! Hostile policy documents: every one is a located error in the loader, in `rolegate
//! validate` (exit 1) and in the server, which keeps serving the last good version. None may
//! crash the process, and the loader must not need a big stack.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use jiff::Timestamp;
use rolegate::api;
use rolegate::engine::{Context, Decision, Request, Resource, Snapshot, decide};
use rolegate::policy;
use rolegate::source::files;
use support::server::Server;
use support::wait_until;

fn now() -> Timestamp {
    "2026-11-26T10:00:00Z".parse().unwrap()
}

/// Loads `t.yaml` holding `bytes`; returns every error as rendered, and the snapshot.
fn load(bytes: &[u8]) -> (Vec<String>, Snapshot) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.yaml"), bytes).unwrap();
    let loaded = files::load_dir(dir.path(), now(), |_| 1).unwrap();
    let errors = loaded.diagnostics().iter().filter(|d| d.is_error()).map(|d| d.to_string()).collect();
    let mut snapshot = Snapshot::default();
    for t in loaded.tenants.into_iter().filter_map(|t| t.tenant) {
        snapshot.insert(Arc::new(t));
    }
    (errors, snapshot)
}

/// Runs `f` on a thread with a 256 KiB stack: the loader must not depend on a big one.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(256 * 1024).spawn(f).unwrap().join().unwrap()
}

const HEAD: &str = "tenant: t\nschema: {conversation: [view, reply]}\nroles: {agent: {allow: [conversation.view]}}\n";

fn deep_block(levels: usize) -> String {
    format!("tenant: t\ndescription:\n  {}x\n", "- ".repeat(levels))
}

fn deep_flow(levels: usize) -> String {
    format!("tenant: t\ndescription: {}{}\n", "[".repeat(levels), "]".repeat(levels))
}

fn deep_not(levels: usize) -> String {
    let when = format!("{}{{principal: {{a: b}}}}{}", "{not: ".repeat(levels), "}".repeat(levels));
    format!("{HEAD}rules:\n  - {{id: r, effect: deny, actions: [\"*\"], when: {when}}}\n")
}

/// Every hostile document with the file position and message its error must carry.
fn hostile() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let rule = |when: &str| format!("{HEAD}rules:\n  - {{id: r, effect: deny, actions: [\"*\"], when: {when}}}\n");
    vec![
        ("block nesting 6,000 deep", deep_block(6000).into(), "t.yaml:3:129: error: nested deeper than 64 levels"),
        ("block nesting 100,000 deep", deep_block(100_000).into(), "t.yaml:3:129: error: nested deeper than 64 levels"),
        ("flow nesting 100,000 deep", deep_flow(100_000).into(), "t.yaml:2:269: error: nested deeper than 64 levels"),
        ("3,000 nested `not`", deep_not(3000).into(), "t.yaml:5:"),
        (
            "40 nested `not`",
            deep_not(40).into(),
            "error: rules[0].when.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not.not: conditions nested deeper than 32 levels",
        ),
        (
            "a second document",
            format!("{HEAD}---\nrules: [{{id: all, effect: deny, actions: [\"*\"]}}]\n").into(),
            "t.yaml:4:1: error: a policy file holds one YAML document",
        ),
        ("non-UTF-8 text", b"tenant: t\ndesc\xff: x\n".to_vec(), "t.yaml:2:5: error: the file is not UTF-8 text"),
        (
            "a rule without actions",
            format!("{HEAD}rules: [{{id: r, effect: deny, actions: []}}]\n").into(),
            "t.yaml:4:40: error: rules[0].actions: a rule without actions never applies",
        ),
        (
            "`gt: nan`",
            rule("{context: {n: {gt: nan}}}").into(),
            "t.yaml:5:68: error: rules[0].when.context.n.gt: expected a finite number",
        ),
        ("`lt: inf`", rule("{context: {n: {lt: inf}}}").into(), "rules[0].when.context.n.lt: expected a finite number"),
        (
            "`le: 1e999`",
            rule("{context: {n: {le: 1e999}}}").into(),
            "rules[0].when.context.n.le: expected a finite number",
        ),
        (
            "a mapped network under /96",
            rule("{ip: [\"::ffff:0.0.0.0/90\"]}").into(),
            "t.yaml:5:55: error: rules[0].when.ip[0]: `::ffff:0.0.0.0/90` is an IPv4-mapped network",
        ),
        (
            "a client_ip that is no address",
            rule("{context: {client_ip: intranet}}").into(),
            "rules[0].when.context.client_ip: `intranet` is not an IP address",
        ),
        (
            "an anchor and an alias",
            "tenant: t\nschema: {c: [v]}\nroles:\n  a: &r {allow: [c.v]}\n  b: *r\n".into(),
            "t.yaml:4:9: error: anchors and aliases are not supported",
        ),
        (
            "a `!!binary` tag",
            "tenant: t\ndescription: !!binary aGk=\n".into(),
            "t.yaml:2:23: error: YAML tags are not supported",
        ),
        ("a duplicate key", format!("{HEAD}roles: {{}}\n").into(), "t.yaml:4:1: error: duplicate key `roles`"),
        (
            "a non-string key",
            "tenant: t\nroles: {[a]: {allow: []}}\n".into(),
            "t.yaml:2:9: error: mapping keys must be plain strings",
        ),
        (
            "a tab as indentation",
            "tenant: t\nroles:\n\tagent: {allow: []}\n".into(),
            "t.yaml:3:2: error: invalid YAML: tabs disallowed",
        ),
    ]
}

#[test]
fn every_hostile_document_is_a_located_error_on_a_small_stack() {
    for (name, bytes, expected) in hostile() {
        let (errors, snapshot) = on_small_stack(move || load(&bytes));
        assert!(errors.iter().any(|e| e.contains(expected)), "{name}: want `{expected}` in {errors:#?}");
        assert!(snapshot.tenant("t").is_none(), "{name}: a document with errors must not load");
    }
}

#[test]
fn deep_nesting_is_rejected_on_the_main_thread_too() {
    for text in [deep_block(100_000), deep_flow(100_000), deep_not(3000)] {
        let (errors, _) = load(text.as_bytes());
        assert!(errors.iter().any(|e| e.contains("nested deeper than 64 levels")), "{errors:#?}");
    }
    let (errors, snapshot) = load(deep_not(30).as_bytes());
    assert_eq!(errors, Vec::<String>::new(), "30 levels of `not` are within the limit");
    assert!(snapshot.tenant("t").is_some());
}

#[test]
fn an_unreadable_file_is_named_without_a_fake_position() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where a file is expected cannot be read as one.
    std::fs::create_dir(dir.path().join("t.yaml")).unwrap();
    let file = policy::PolicyFile { path: dir.path().join("t.yaml"), template: None };
    let parsed = files::parse_file(&file);
    let shown = parsed.diags.first().map(ToString::to_string).unwrap_or_default();
    assert!(shown.contains("t.yaml: error: cannot read file"), "{shown}");
    assert!(!shown.contains(":0:0"), "{shown}");
}

#[test]
fn a_byte_order_mark_and_a_trailing_document_marker_are_accepted() {
    let (errors, snapshot) = load(format!("\u{feff}{HEAD}---\n").as_bytes());
    assert_eq!(errors, Vec::<String>::new());
    assert!(snapshot.tenant("t").is_some());
}

fn ask(snapshot: &Snapshot, who: &str, ip: Option<&str>) -> Decision {
    let req = Request {
        tenant: "t".into(),
        principal: who.into(),
        action: "conversation.view".into(),
        resource: Resource { kind: "conversation".into(), id: "c".into(), ..Default::default() },
        context: Context { client_ip: ip.map(|s| s.parse().unwrap()), ..Default::default() },
    };
    decide(snapshot, &req.query(), now()).unwrap()
}

/// A chain declared from its top: `r0` extends `r1` … extends the last, which grants.
fn chain(len: usize) -> String {
    let mut text = String::from("tenant: t\nschema: {conversation: [view]}\nroles:\n");
    for i in 0..len - 1 {
        text.push_str(&format!("  r{i}: {{extends: [r{}]}}\n", i + 1));
    }
    text.push_str(&format!("  r{}: {{allow: [conversation.view]}}\n", len - 1));
    text.push_str("members: [{id: m, bindings: [{role: r0, scope: tenant}]}]\n");
    text
}

#[test]
fn long_acyclic_extends_chains_compile_and_grant_the_root_role() {
    for len in [300, 10_000] {
        let (errors, snapshot) = on_small_stack(move || load(chain(len).as_bytes()));
        assert_eq!(errors, Vec::<String>::new(), "chain of {len}");
        assert!(ask(&snapshot, "m", None).allowed, "chain of {len}");
    }
    let cycle = "tenant: t\nschema: {c: [v]}\nroles:\n  a: {extends: [b]}\n  b: {extends: [c]}\n  c: {extends: [a]}\n";
    let (errors, _) = load(cycle.as_bytes());
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("t.yaml:6:17: error: roles.c.extends[0]: role `c` extends `a`"), "{errors:#?}");
}

const MAPPED: &str = "tenant: t
schema: {conversation: [view]}
roles: {agent: {allow: [conversation.view]}}
members:
  - {id: m, bindings: [{role: agent, scope: tenant}]}
  - {id: lan, bindings: [{role: agent, scope: tenant, when: {ip: [\"::ffff:192.168.0.0/112\"]}}]}
rules:
  - {id: blocked, effect: deny, actions: [\"*\"], when: {context: {client_ip: 10.0.0.1}}}
  - {id: blocked-mapped, effect: deny, actions: [\"*\"], when: {context: {client_ip: [\"::ffff:10.0.0.2\"]}}}
";

#[test]
fn ipv4_mapped_addresses_and_networks_match_their_ipv4_form() {
    let (errors, snapshot) = load(MAPPED.as_bytes());
    assert_eq!(errors, Vec::<String>::new());
    for (ip, rule) in [("10.0.0.1", "blocked"), ("::ffff:10.0.0.1", "blocked"), ("10.0.0.2", "blocked-mapped")] {
        let d = ask(&snapshot, "m", Some(ip));
        assert!(!d.allowed && d.rule.as_deref() == Some(rule), "{ip}: {d:?}");
    }
    assert!(ask(&snapshot, "m", Some("::ffff:10.0.0.3")).allowed);
    for ip in ["192.168.1.1", "::ffff:192.168.1.1"] {
        assert!(ask(&snapshot, "lan", Some(ip)).allowed, "{ip} is in the mapped network");
    }
    assert!(!ask(&snapshot, "lan", Some("192.169.0.1")).allowed);
}

fn check(tenant: &str, who: &str, ip: &str) -> api::CheckRequest {
    api::CheckRequest {
        tenant: tenant.into(),
        principal: who.into(),
        action: "conversation.view".into(),
        resource: Some(api::Resource { kind: "conversation".into(), id: "c".into(), ..Default::default() }),
        context: Some(api::Context { client_ip: ip.into(), attrs: Default::default() }),
        min_revision: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapped_client_address_is_denied_by_an_ipv4_rule_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.yaml"), MAPPED).unwrap();
    let server = Server::start(dir.path(), &["--cache-capacity", "100"]);
    let mut client = server.client().await;
    let plain = client.check(check("t", "m", "10.0.0.1")).await.unwrap().into_inner().decision.unwrap();
    let mapped = client.check(check("t", "m", "::ffff:10.0.0.1")).await.unwrap().into_inner().decision.unwrap();
    assert!(!plain.allowed && !mapped.allowed, "{plain:?} {mapped:?}");
    assert_eq!(mapped.rule, "blocked");
}

fn validate(dir: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rolegate")).arg("validate").arg(dir).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn validate_rejects_every_hostile_document_with_its_location() {
    for (name, bytes, expected) in hostile() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.yaml"), &bytes).unwrap();
        let (code, out) = validate(dir.path());
        assert_eq!(code, Some(1), "{name}: {out}");
        assert!(out.contains(expected), "{name}: want `{expected}` in {out}");
    }
}

fn tenant_text(ip: &str) -> String {
    format!(
        "tenant: t\nschema: {{conversation: [view]}}\nroles: {{agent: {{allow: [conversation.view]}}}}
members: [{{id: m, bindings: [{{role: agent, scope: tenant}}]}}]
rules: [{{id: blocked, effect: deny, actions: [\"*\"], when: {{context: {{client_ip: {ip}}}}}}}]\n"
    )
}

/// Waits for the server to log an error about `t.yaml` containing `what`, for the document `name`.
fn logged(server: &Server, name: &str, what: &str) {
    let about = format!("for {name}: an error about `t.yaml` with `{what}`");
    server.log_line(&about, |l| l.contains("t.yaml") && l.contains(what));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_keeps_the_last_good_version_when_a_hostile_document_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.yaml");
    std::fs::write(&file, tenant_text("10.0.0.1")).unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let mut client = server.client().await;
    let good = client.check(check("t", "m", "10.0.0.1")).await.unwrap().into_inner();
    assert!(!good.decision.unwrap().allowed);
    for (name, bytes, expected) in hostile() {
        std::fs::write(&file, &bytes).unwrap();
        let message = expected.split(": error: ").last().unwrap_or(expected);
        logged(&server, name, message);
        let still = client.check(check("t", "m", "10.0.0.1")).await.unwrap().into_inner();
        assert_eq!(still.revision, good.revision, "{name}");
        let d = still.decision.unwrap();
        assert!(!d.allowed && d.rule == "blocked", "{name}: the last good version must keep denying: {d:?}");
    }
    assert!(server.child.try_wait().unwrap().is_none(), "the server must still run");
    // A good change still applies after all of them.
    std::fs::write(&file, tenant_text("10.0.0.9")).unwrap();
    let applied = wait_until("the good document to apply", std::time::Duration::from_secs(10), async || {
        let r = client.check(check("t", "m", "10.0.0.1")).await.unwrap().into_inner();
        (r.revision > good.revision).then_some(r)
    })
    .await;
    assert!(applied.decision.unwrap().allowed);
}
