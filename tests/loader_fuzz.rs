//! Structure-aware fuzzing of the loader: proptest builds tenant documents and templates from a
//! small vocabulary (schema, roles with `extends`/`except`/`requestable`, units with parents
//! including cycles and unknown ones, members with bindings, scopes, windows and nested `when`
//! conditions, rules of every effect), then mutates some of them line by line (delete a line,
//! swap two lines, rename something to an unknown name, give a key a value of the wrong type).
//!
//! Random bytes rarely parse, so they never reach the compiler; these documents mostly do. The
//! loader must never panic, a good fraction must compile (so the compiler is really exercised),
//! and every error must carry a line and a key path.

use jiff::Timestamp;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use rolegate::policy::{self, Diagnostic};

const ROLES: &[&str] = &["r0", "r1", "r2", "r3"];
const UNITS: &[&str] = &["u0", "u1", "u2", "u3"];
const PATTERNS: &[&str] =
    &["\"*\"", "\"conversation.*\"", "\"*.export\"", "conversation.view", "conversation.reply", "customer.export"];
const INSTANTS: &[&str] =
    &["\"2026-03-08T07:00:00Z\"", "\"2026-11-01T06:00:00+01:00\"", "\"2027-01-01T00:00:00+08:00\""];

/// Mostly one of `good`, sometimes one of `bad`.
fn mostly(good: &'static [&'static str], bad: &'static [&'static str]) -> BoxedStrategy<String> {
    if bad.is_empty() {
        return proptest::sample::select(good).prop_map(str::to_owned).boxed();
    }
    prop_oneof![
        49 => proptest::sample::select(good).prop_map(str::to_owned),
        1 => proptest::sample::select(bad).prop_map(str::to_owned),
    ]
    .boxed()
}

fn flow_list(items: Vec<String>) -> String {
    format!("[{}]", items.join(", "))
}

fn names(pool: &'static [&'static str], bad: &'static [&'static str], max: usize) -> BoxedStrategy<String> {
    prop::collection::vec(mostly(pool, bad), 0..max).prop_map(flow_list).boxed()
}

fn schedule() -> impl Strategy<Value = String> {
    let zone = mostly(&["Europe/London", "America/Santiago", "Australia/Lord_Howe", "Asia/Shanghai"], &["Mars/Base"]);
    let time = mostly(&["\"00:00\"", "\"02:00\"", "\"02:30\"", "\"09:00\"", "\"18:00\"", "\"23:30\""], &["\"25:00\""]);
    let days = names(&["mon", "tue", "sat", "sun"], &["funday"], 3);
    (zone, time.clone(), time, days, 0..10).prop_map(|(tz, from, mut to, days, equal_ok)| {
        // An empty window is an error; keep it rare.
        if to == from && equal_ok > 0 {
            to = if from == "\"09:00\"" { "\"17:00\"".to_owned() } else { "\"09:00\"".to_owned() };
        }
        let days = if days == "[]" { String::new() } else { format!(", days: {days}") };
        format!("{{tz: {tz}{days}, from: {from}, to: {to}}}")
    })
}

/// One `when` clause; `inner` builds nested conditions for `any` and `not`.
fn clause(inner: Option<BoxedStrategy<String>>) -> BoxedStrategy<String> {
    let leaves = prop_oneof![
        Just("principal: {employment: outsourced}".to_owned()),
        Just("principal: {level: {lt: 2}, mentor: {present: true}}".to_owned()),
        Just("resource: {sensitivity: [high, critical]}".to_owned()),
        Just("resource: {tags: {contains: vip}, id: [c1, c2]}".to_owned()),
        Just("context: {active_conversations: {ge: 3}}".to_owned()),
        mostly(&["[10.0.0.0/8, \"2001:db8::/32\"]", "203.0.113.7"], &["[10.0.0.0/33]"])
            .prop_map(|n| format!("ip: {n}")),
        mostly(&["assignee", "admins"], &["\"\""]).prop_map(|r| format!("relation: {r}")),
        mostly(UNITS, &["nowhere"]).prop_map(|u| format!("in_unit: {u}")),
        schedule().prop_map(|s| format!("schedule: {s}")),
    ];
    match inner {
        None => leaves.boxed(),
        Some(inner) => prop_oneof![
            3 => leaves,
            1 => prop::collection::vec(inner.clone(), 1..3).prop_map(|ws| format!("any: {}", flow_list(ws))),
            1 => inner.prop_map(|w| format!("not: {w}")),
        ]
        .boxed(),
    }
}

/// A `when` map nested up to `depth` levels.
fn when(depth: u32) -> BoxedStrategy<String> {
    let inner = (depth > 0).then(|| when(depth - 1));
    prop::collection::btree_set(clause(inner), 1..3)
        .prop_map(|cs| {
            // One clause per key, as YAML requires; the first of each key wins.
            let mut seen = Vec::new();
            let kept: Vec<String> = cs
                .into_iter()
                .filter(|c| {
                    let k = c.split(':').next().unwrap_or_default().to_owned();
                    !seen.contains(&k) && {
                        seen.push(k);
                        true
                    }
                })
                .collect();
            format!("{{{}}}", kept.join(", "))
        })
        .boxed()
}

fn scope() -> BoxedStrategy<String> {
    prop_oneof![
        10 => Just("tenant".to_owned()),
        10 => Just("own_units".to_owned()),
        10 => mostly(UNITS, &["nowhere"]).prop_map(|u| format!("{{unit: {u}}}")),
        10 => Just("{relation: assignee}".to_owned()),
        1 => Just("everywhere".to_owned()),
    ]
    .boxed()
}

/// A binding as block lines at `indent` (the first line carries the list dash).
fn binding(indent: &'static str) -> impl Strategy<Value = String> {
    let id = prop::option::weighted(0.1, proptest::sample::select(&["b-a", "b-b", "rule0"][..]));
    // INSTANTS are in order: a window is mostly well formed, sometimes reversed or empty.
    let window = prop::option::weighted(0.3, (0..INSTANTS.len(), 0..INSTANTS.len(), 0..10)).prop_map(|w| {
        w.map(|(a, b, keep)| {
            let (a, b) = if keep > 0 && a >= b { (b.min(1), (a.max(b) + 1).min(2).max(b.min(1) + 1)) } else { (a, b) };
            (INSTANTS.get(a).copied().unwrap_or_default(), INSTANTS.get(b).copied().unwrap_or_default())
        })
    });
    (id, mostly(ROLES, &["ghost"]), scope(), window, prop::option::weighted(0.5, when(2))).prop_map(
        move |(id, role, scope, window, when)| {
            let mut lines = vec![format!("role: {role}"), format!("scope: {scope}")];
            if let Some(id) = id {
                lines.push(format!("id: {id}"));
            }
            if let Some((from, until)) = window {
                lines.push(format!("from: {from}"));
                lines.push(format!("until: {until}"));
            }
            if let Some(w) = when {
                lines.push(format!("when: {w}"));
            }
            block_item(indent, &lines)
        },
    )
}

/// `- a\n  b\n  c` at `indent`.
fn block_item(indent: &str, lines: &[String]) -> String {
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        let dash = if i == 0 { "- " } else { "  " };
        out.push_str(&format!("{indent}{dash}{l}\n"));
    }
    out
}

fn role(name: &'static str) -> impl Strategy<Value = String> {
    let allow = names(PATTERNS, &["conversation.replay", "ticket.view"], 3);
    let extends = prop::option::weighted(0.15, names(ROLES, &["ghost"], 2));
    let except = prop::option::weighted(0.2, names(PATTERNS, &[], 2));
    let requestable = prop::option::weighted(0.3, names(PATTERNS, &[], 2));
    (allow, extends, except, requestable).prop_map(move |(allow, extends, except, requestable)| {
        let mut out = format!("  {name}:\n    allow: {allow}\n");
        for (k, v) in [("extends", extends), ("except", except), ("requestable", requestable)] {
            if let Some(v) = v {
                out.push_str(&format!("    {k}: {v}\n"));
            }
        }
        out
    })
}

fn roles() -> impl Strategy<Value = String> {
    (role("r0"), role("r1"), role("r2"), role("r3")).prop_map(|(a, b, c, d)| format!("roles:\n{a}{b}{c}{d}"))
}

fn units() -> impl Strategy<Value = String> {
    // Parents point back to earlier units mostly; later ones and unknown ones make cycles and gaps.
    let parent = prop::option::weighted(0.6, (mostly(UNITS, &["nowhere"]), 0..12));
    prop::collection::vec(parent, 4).prop_map(|parents| {
        let mut out = String::from("units:\n");
        for (i, p) in parents.into_iter().enumerate() {
            let id = UNITS.get(i).copied().unwrap_or("u0");
            let lines = match p {
                Some((p, cycle)) if UNITS.iter().position(|u| *u == p).is_none_or(|j| j < i) || cycle == 0 => {
                    vec![format!("id: {id}"), format!("parent: {p}")]
                }
                _ => vec![format!("id: {id}")],
            };
            out.push_str(&block_item("  ", &lines));
        }
        out
    })
}

fn member(i: usize) -> impl Strategy<Value = String> {
    let status = prop::option::weighted(0.2, mostly(&["active", "disabled"], &["retired"]));
    let expires = prop::option::weighted(0.2, proptest::sample::select(INSTANTS));
    let units = names(UNITS, &["nowhere"], 3);
    let attrs = mostly(
        &["{employment: outsourced, level: 1}", "{email: a@example.com, mentor: m0}", "{tags: [vip, new]}"],
        &["{id: m9}", "{nested: {a: 1}}"],
    );
    let bindings = prop::collection::vec(binding("      "), 0..3);
    (status, expires, units, attrs, bindings).prop_map(move |(status, expires, units, attrs, bindings)| {
        let mut out = format!("  - id: m{i}\n    units: {units}\n    attrs: {attrs}\n");
        if let Some(s) = status {
            out.push_str(&format!("    status: {s}\n"));
        }
        if let Some(e) = expires {
            out.push_str(&format!("    expires: {e}\n"));
        }
        if !bindings.is_empty() {
            out.push_str(&format!("    bindings:\n{}", bindings.concat()));
        }
        out
    })
}

fn rule(i: usize) -> impl Strategy<Value = String> {
    let effect = mostly(&["deny", "mask", "review"], &["forbid"]);
    // A rule names at least one action: `actions: []` is an error of its own, kept out of the mix.
    let actions = prop::collection::vec(mostly(PATTERNS, &["conversation.replay"]), 1..3).prop_map(flow_list);
    let when = prop::option::weighted(0.6, when(2));
    (effect, actions, when, any::<bool>()).prop_map(move |(effect, actions, when, alert)| {
        let mut lines = vec![format!("id: rule{i}"), format!("effect: {effect}"), format!("actions: {actions}")];
        if effect == "mask" {
            lines.push("fields: [phone, email]".to_owned());
        }
        if let Some(w) = when {
            lines.push(format!("when: {w}"));
        }
        if alert {
            lines.push("alert: true".to_owned());
            lines.push("message: exports are audited".to_owned());
        }
        block_item("  ", &lines)
    })
}

/// A tenant document and, sometimes, the template it names.
fn documents() -> impl Strategy<Value = (String, Option<String>)> {
    let members = (member(0), member(1), prop::option::weighted(0.5, member(2)));
    let rules = (prop::option::weighted(0.6, rule(0)), prop::option::weighted(0.4, rule(1)));
    let everyone = prop::option::weighted(0.3, binding("  "));
    (any::<bool>(), roles(), units(), members, everyone, rules).prop_map(
        |(templated, roles, units, (m0, m1, m2), everyone, (r0, r1))| {
            let schema = "schema:\n  conversation: [view, reply, export]\n";
            let mut doc = String::from("tenant: t\n");
            let mut rules = format!("rules:\n{}{}", r0.unwrap_or_default(), r1.unwrap_or_default());
            if rules == "rules:\n" {
                rules.clear();
            }
            let tpl = templated.then(|| format!("{schema}{roles}{rules}"));
            if templated {
                doc.push_str("template: base\nschema:\n  customer: [view, export]\n");
            } else {
                doc.push_str(&format!("{schema}  customer: [view, export]\n{roles}"));
            }
            doc.push_str(&format!("{units}members:\n{m0}{m1}{}", m2.unwrap_or_default()));
            if let Some(e) = everyone {
                doc.push_str(&format!("everyone:\n{e}"));
            }
            if !templated {
                doc.push_str(&rules);
            }
            (doc, tpl)
        },
    )
}

/// A line-level edit of a document.
#[derive(Clone, Debug)]
enum Mutation {
    DeleteLine(usize),
    SwapLines(usize, usize),
    Rename(usize),
    WrongType(usize, &'static str),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        any::<usize>().prop_map(Mutation::Rename),
        (any::<usize>(), proptest::sample::select(&["[a, b]", "{x: 1}", "42", "\"\"", "true", "~"][..]))
            .prop_map(|(i, v)| Mutation::WrongType(i, v)),
    ]
}

impl Mutation {
    fn apply(&self, text: &str) -> String {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let n = lines.len().max(1);
        match *self {
            Mutation::DeleteLine(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            Mutation::SwapLines(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
            Mutation::Rename(i) => {
                // Rename one name to one nothing defines; it may be a role, unit, member or verb.
                if let Some(line) = lines.get_mut(i % n) {
                    for name in ["r1", "u1", "m0", "view", "base", "assignee", "conversation"] {
                        if line.contains(name) {
                            *line = line.replacen(name, "zz-unknown", 1);
                            break;
                        }
                    }
                }
            }
            Mutation::WrongType(i, value) => {
                if let Some(line) = lines.get_mut(i % n)
                    && let Some((k, _)) = line.split_once(": ")
                {
                    *line = format!("{k}: {value}");
                }
            }
            _ => {}
        }
        lines.join("\n") + "\n"
    }
}

/// Documents, two in five of them mutated.
fn cases() -> impl Strategy<Value = (String, Option<String>)> {
    (documents(), prop::option::weighted(0.4, prop::collection::vec(mutation(), 1..3)), any::<bool>()).prop_map(
        |((doc, tpl), muts, on_template)| match (muts, tpl) {
            (None, tpl) => (doc, tpl),
            (Some(m), Some(tpl)) if on_template => (doc, Some(m.iter().fold(tpl, |t, m| m.apply(&t)))),
            (Some(m), tpl) => (m.iter().fold(doc, |d, m| m.apply(&d)), tpl),
        },
    )
}

/// How far a case got.
#[derive(Debug, PartialEq)]
enum Outcome {
    ParseFailed,
    CompileFailed,
    Compiled,
}

/// Errors a YAML syntax error or a document that is not a mapping yields: they have a line but
/// no key path to name.
fn document_level(d: &Diagnostic) -> bool {
    ["invalid YAML", "duplicate key", "the document must be", "expected a mapping with keys"]
        .iter()
        .any(|p| d.message.starts_with(p))
}

/// Loads a case like a policy directory would; `Err` names a diagnostic without line or key.
fn load(doc: &str, tpl: Option<&str>) -> Result<Outcome, String> {
    let (tenant, mut diags) = policy::parse_str("t.yaml", doc, None);
    let template = tpl.map(|t| policy::parse_str("templates/base.yaml", t, Some("base")));
    let template_doc = template.as_ref().and_then(|(d, _)| d.clone());
    diags.extend(template.into_iter().flat_map(|(_, d)| d));
    let parsed_ok = !diags.iter().any(Diagnostic::is_error);
    let outcome = match &tenant {
        Some(t) if parsed_ok => match policy::compile(t, template_doc.as_ref(), 1) {
            Ok(compiled) => {
                let now: Timestamp = "2026-11-01T06:30:00Z".parse().map_err(|e| format!("{e}"))?;
                diags.extend(policy::lint::lint(t, template_doc.as_ref(), &compiled, now));
                Outcome::Compiled
            }
            Err(errors) => {
                if errors.is_empty() {
                    return Err("compile failed without a diagnostic".into());
                }
                diags.extend(errors);
                Outcome::CompileFailed
            }
        },
        _ => {
            if !diags.iter().any(Diagnostic::is_error) {
                return Err("parse failed without an error".into());
            }
            Outcome::ParseFailed
        }
    };
    for d in &diags {
        if d.at.line < 1 || !(d.file.as_ref() == "t.yaml" || d.file.as_ref() == "templates/base.yaml") {
            return Err(format!("diagnostic without a line or file: {d:?}"));
        }
        if d.key.is_empty() && !document_level(d) {
            return Err(format!("diagnostic without a key path: {d:?}"));
        }
    }
    Ok(outcome)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Generated and mutated documents never panic the loader, and every finding is located.
    #[test]
    fn loader_never_panics_and_locates_every_error((doc, tpl) in cases()) {
        if let Err(why) = load(&doc, tpl.as_deref()) {
            prop_assert!(false, "{}\n--- t.yaml\n{}\n--- templates/base.yaml\n{}", why, doc, tpl.unwrap_or_default());
        }
    }
}

#[test]
fn generated_documents_reach_the_compiler() {
    // Guards the generator: a fuzzer whose documents never parse tests only the YAML reader.
    let mut runner = TestRunner::deterministic();
    let strategy = cases();
    let (mut compiled, mut compile_failed, total) = (0, 0, 600);
    for _ in 0..total {
        let (doc, tpl) = strategy.new_tree(&mut runner).unwrap().current();
        match load(&doc, tpl.as_deref()) {
            Ok(Outcome::Compiled) => compiled += 1,
            Ok(Outcome::CompileFailed) => compile_failed += 1,
            Ok(Outcome::ParseFailed) => {}
            Err(why) => panic!("{why}\n--- t.yaml\n{doc}\n--- templates/base.yaml\n{}", tpl.unwrap_or_default()),
        }
    }
    eprintln!("{compiled} of {total} compiled, {compile_failed} failed in the compiler");
    assert!(compiled * 10 > total * 3, "only {compiled} of {total} generated documents compiled");
    assert!(compile_failed * 10 > total, "only {compile_failed} of {total} documents failed in the compiler");
}
