//! Loading policy directories: located errors, templates, layout rules, and no panics.

use std::fs;
use std::path::Path;

use jiff::Timestamp;
use proptest::prelude::*;
use rolegate::engine::{Context, Request, Resource, Snapshot, decide};
use rolegate::policy;
use rolegate::source::files;

fn now() -> Timestamp {
    "2026-11-26T10:00:00Z".parse().unwrap()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

const FIVE_MISTAKES: &str = "tenant: shop
schema:
  conversation: [view, reply]
roles:
  agent: {alow: [conversation.view]}
  lead: {allow: [conversation.replay]}
units:
  - {id: eu, parent: europe}
members:
  - id: a
    bindings:
      - {role: agnet, scope: tenant}
      - {role: lead, scope: tenant, when: {ip: [10.0.0.0/33]}}
";

#[test]
fn a_file_with_five_mistakes_yields_five_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "shop.yaml", FIVE_MISTAKES);
    let loaded = files::load_dir(dir.path(), now(), |_| 1).unwrap();
    let errors: Vec<String> = loaded.diagnostics().iter().filter(|d| d.is_error()).map(|d| d.to_string()).collect();
    let expected = [
        ("5:11", "roles.agent.alow", "unknown key `alow` (did you mean `allow`?)"),
        ("6:18", "roles.lead.allow[0]", "unknown action `conversation.replay` (did you mean `conversation.reply`?)"),
        ("8:22", "units[0].parent", "unknown unit `europe`"),
        ("12:16", "members[0].bindings[0].role", "unknown role `agnet` (did you mean `agent`?)"),
        ("13:49", "members[0].bindings[1].when.ip[0]", "invalid CIDR `10.0.0.0/33`"),
    ];
    assert_eq!(errors.len(), 5, "{errors:#?}");
    for (pos, key, msg) in expected {
        assert!(
            errors.iter().any(|e| e.contains(&format!("shop.yaml:{pos}: error: {key}: {msg}"))),
            "missing `{pos} {key}: {msg}` in {errors:#?}"
        );
    }
    assert!(loaded.tenants[0].tenant.is_none(), "a tenant with errors must not load");
}

#[test]
fn template_merge_adds_kinds_replaces_roles_and_appends_rules() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "templates/desk.yaml",
        "schema: {conversation: [view, reply]}
roles:
  agent: {allow: [conversation.view]}
  viewer: {allow: [conversation.view]}
rules:
  - {id: night-review, effect: review, actions: [conversation.reply]}
",
    );
    write(
        dir.path(),
        "tenants/acme.yaml",
        "tenant: acme
template: desk
schema: {customer: [view]}
roles:
  agent: {allow: [conversation.view, conversation.reply, customer.view]}
members:
  - {id: a, bindings: [{role: agent, scope: tenant}]}
  - {id: v, bindings: [{role: viewer, scope: tenant}]}
rules:
  - {id: pii, effect: mask, fields: [phone], actions: [customer.view]}
",
    );
    let loaded = files::load_dir(dir.path(), now(), |_| 7).unwrap();
    assert_eq!(loaded.error_count(), 0, "{:#?}", loaded.diagnostics());
    let mut snapshot = Snapshot::default();
    snapshot.insert(std::sync::Arc::new(loaded.tenants.into_iter().next().unwrap().tenant.unwrap()));
    let ask = |who: &str, action: &str| {
        let req = Request {
            tenant: "acme".into(),
            principal: who.into(),
            action: action.into(),
            resource: Resource { kind: action.split('.').next().unwrap().into(), id: "x".into(), ..Default::default() },
            context: Context::default(),
        };
        decide(&snapshot, &req.query(), now()).unwrap()
    };
    let reply = ask("a", "conversation.reply");
    assert!(reply.allowed && reply.review, "tenant role replaces the template's, template rule applies: {reply:?}");
    assert_eq!(ask("a", "customer.view").mask.len(), 1);
    assert!(!ask("v", "conversation.reply").allowed);
    assert_eq!(snapshot.tenant("acme").unwrap().revision, 7);
}

#[test]
fn hidden_folders_and_test_files_are_skipped_and_duplicate_tenants_fail() {
    let dir = tempfile::tempdir().unwrap();
    let doc = "tenant: t\nschema: {a: [b]}\nroles: {r: {allow: [a.b]}}\nmembers: [{id: m, bindings: [{role: r, scope: tenant}]}]\n";
    write(dir.path(), "t.yaml", doc);
    // A Kubernetes ConfigMap mount keeps the real files under `..data`.
    write(dir.path(), "..2026_11_26/t.yaml", doc);
    write(dir.path(), "t_test.yaml", "not: [a, policy");
    let loaded = files::load_dir(dir.path(), now(), |_| 1).unwrap();
    assert_eq!(loaded.error_count(), 0, "{:#?}", loaded.diagnostics());
    assert_eq!(loaded.tenants.len(), 1);

    write(dir.path(), "copy.yml", doc);
    let loaded = files::load_dir(dir.path(), now(), |_| 1).unwrap();
    assert!(loaded.tenants[0].tenant.is_none());
    assert!(loaded.diagnostics().iter().any(|d| d.message.contains("also defined in")));
}

#[test]
fn cycles_in_extends_and_unknown_template_are_reported() {
    let (doc, diags) = policy::parse_str(
        "c.yaml",
        "tenant: c\nschema: {a: [b]}\nroles:\n  x: {extends: [y]}\n  y: {extends: [x]}\n",
        None,
    );
    assert!(diags.is_empty());
    let errs = policy::compile(&doc.unwrap(), None, 1).unwrap_err();
    assert!(errs.iter().any(|d| d.message.contains("cycle in `extends`")), "{errs:#?}");

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "c.yaml", "tenant: c\ntemplate: dsek\n");
    write(dir.path(), "templates/desk.yaml", "schema: {a: [b]}\n");
    let loaded = files::load_dir(dir.path(), now(), |_| 1).unwrap();
    let all: Vec<String> = loaded.diagnostics().iter().map(|d| d.to_string()).collect();
    assert!(all.iter().any(|d| d.contains("unknown template `dsek` (did you mean `desk`?)")), "{all:#?}");
}

#[test]
fn warnings_name_unbound_roles_expired_bindings_shadowed_grants_and_idle_members() {
    let (doc, _) = policy::parse_str(
        "w.yaml",
        "tenant: w
schema: {customer: [view, export]}
roles:
  exporter: {allow: [customer.export]}
  unused: {allow: [customer.view]}
members:
  - {id: a, bindings: [{role: exporter, scope: tenant, until: \"2026-01-01T00:00:00Z\"}]}
  - {id: idle}
rules:
  - {id: never-export, effect: deny, actions: [customer.export]}
",
        None,
    );
    let doc = doc.unwrap();
    let tenant = policy::compile(&doc, None, 1).unwrap();
    let warnings: Vec<String> = policy::lint::lint(&doc, None, &tenant, now()).iter().map(|d| d.to_string()).collect();
    for want in
        ["role `unused` is never bound", "binding expired", "always denied by a rule", "member `idle` has no binding"]
    {
        assert!(warnings.iter().any(|w| w.contains(want)), "missing `{want}` in {warnings:#?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Arbitrary YAML-ish text never panics the loader.
    #[test]
    fn loader_never_panics(text in "[a-z:{}\\[\\], \\n\"*.#0-9-]{0,200}") {
        let (doc, _) = policy::parse_str("fuzz.yaml", &text, None);
        if let Some(doc) = doc {
            let _ = policy::compile(&doc, None, 1);
        }
    }

    /// Mutations of a valid document never panic the loader either.
    #[test]
    fn mutated_documents_never_panic(pos in 0usize..400, byte in "[a-z:{}\\[\\], \\n\"*.#0-9-]") {
        let mut text = FIVE_MISTAKES.to_owned();
        let pos = pos.min(text.len());
        if text.is_char_boundary(pos) {
            text.insert_str(pos, &byte);
        }
        let (doc, _) = policy::parse_str("m.yaml", &text, None);
        if let Some(doc) = doc {
            let _ = policy::compile(&doc, None, 1);
        }
    }
}
