//! Structure-aware documents: `arbitrary` picks schema, roles, units, members with bindings,
//! windows and nested conditions, and rules from a small vocabulary (so names resolve and rules
//! match), rendered as YAML and loaded, compiled and decided like `policy_bytes`. Random bytes
//! rarely get past the parser; these mostly reach the compiler and the engine.
#![no_main]

use arbitrary::Arbitrary;
use std::fmt::Write as _;

const VERBS: &[&str] = &["view", "reply", "export", "assign"];
const KINDS: &[&str] = &["conversation", "customer", "ticket"];
const ROLES: &[&str] = &["r0", "r1", "r2", "r3", "ghost"];
const UNITS: &[&str] = &["u0", "u1", "u2", "u3", "nowhere"];
const PATTERNS: &[&str] =
    &["\"*\"", "\"conversation.*\"", "\"*.export\"", "conversation.view", "customer.export", "ticket.replay"];
const INSTANTS: &[&str] =
    &["\"2030-03-08T07:00:00Z\"", "\"2030-03-08T09:00:00+01:00\"", "2031-01-01", "\"not a time\""];
const ZONES: &[&str] = &["Europe/London", "Asia/Shanghai", "Australia/Lord_Howe", "Mars/Base"];
const TIMES: &[&str] = &["\"00:00\"", "\"02:30\"", "\"09:00\"", "\"18:00\"", "\"25:00\""];
const SCOPES: &[&str] = &["tenant", "own_units", "{unit: u0}", "{unit: u2}", "{relation: assignee}", "everywhere"];
const EFFECTS: &[&str] = &["deny", "mask", "review", "forbid"];
const ATTRS: &[&str] = &["{level: 1}", "{tags: [vip, new]}", "{employment: outsourced}", "{nested: {a: 1}}", "{}"];

fn pick(table: &[&str], i: u8) -> String {
    table.get(usize::from(i) % table.len()).copied().unwrap_or_default().to_owned()
}

fn list(table: &[&str], picks: &[u8]) -> String {
    let items: Vec<String> = picks.iter().take(4).map(|i| pick(table, *i)).collect();
    format!("[{}]", items.join(", "))
}

#[derive(Arbitrary, Debug)]
enum When {
    Principal(u8),
    Resource(u8),
    Ip(u8),
    Relation,
    InUnit(u8),
    Schedule { tz: u8, from: u8, to: u8 },
    Context(i16),
    Any(Vec<When>),
    Not(Box<When>),
}

impl When {
    fn render(&self, depth: u32) -> String {
        // Deeper than the language's nesting limit on purpose, now and then: the limit must hold.
        if depth > 40 {
            return "relation: assignee".to_owned();
        }
        match self {
            When::Principal(i) => format!(
                "principal: {}",
                pick(&["{level: {lt: 2}}", "{employment: outsourced}", "{tags: {contains: vip}}"], *i)
            ),
            When::Resource(i) => format!(
                "resource: {}",
                pick(&["{tags: {contains: vip}}", "{id: [x, y]}", "{assignee: {same_as: principal.id}}"], *i)
            ),
            When::Ip(i) => {
                format!("ip: {}", pick(&["[10.0.0.0/8]", "203.0.113.7", "\"::ffff:10.0.0.1\"", "[10.0.0.0/33]"], *i))
            }
            When::Relation => "relation: assignee".to_owned(),
            When::InUnit(i) => format!("in_unit: {}", pick(UNITS, *i)),
            When::Schedule { tz, from, to } => {
                format!(
                    "schedule: {{tz: {}, from: {}, to: {}}}",
                    pick(ZONES, *tz),
                    pick(TIMES, *from),
                    pick(TIMES, *to)
                )
            }
            When::Context(n) => format!("context: {{active_conversations: {{ge: {n}}}}}"),
            When::Any(ws) => {
                let inner: Vec<String> = ws.iter().take(3).map(|w| format!("{{{}}}", w.render(depth + 1))).collect();
                format!("any: [{}]", inner.join(", "))
            }
            When::Not(w) => format!("not: {{{}}}", w.render(depth + 1)),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Binding {
    role: u8,
    scope: u8,
    window: Option<(u8, u8)>,
    when: Option<When>,
}

#[derive(Arbitrary, Debug)]
struct Member {
    units: Vec<u8>,
    attrs: u8,
    disabled: bool,
    expires: Option<u8>,
    bindings: Vec<Binding>,
}

#[derive(Arbitrary, Debug)]
struct Role {
    allow: Vec<u8>,
    extends: Vec<u8>,
    except: Vec<u8>,
    requestable: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct Rule {
    effect: u8,
    actions: Vec<u8>,
    when: Option<When>,
    alert: bool,
}

#[derive(Arbitrary, Debug)]
struct Doc {
    verbs: Vec<u8>,
    roles: Vec<Role>,
    parents: Vec<Option<u8>>,
    members: Vec<Member>,
    everyone: Option<Binding>,
    rules: Vec<Rule>,
    max_staleness: Option<u8>,
    on_template: bool,
}

fn binding(out: &mut String, indent: &str, b: &Binding) {
    let _ = writeln!(out, "{indent}- role: {}", pick(ROLES, b.role));
    let _ = writeln!(out, "{indent}  scope: {}", pick(SCOPES, b.scope));
    if let Some((from, until)) = b.window {
        let _ = writeln!(out, "{indent}  from: {}\n{indent}  until: {}", pick(INSTANTS, from), pick(INSTANTS, until));
    }
    if let Some(w) = &b.when {
        let _ = writeln!(out, "{indent}  when: {{{}}}", w.render(0));
    }
}

fn render(d: &Doc) -> String {
    let mut out = String::from("tenant: fuzzed\n");
    if d.on_template {
        // The example template: its schema and roles, with this document's additions.
        out.push_str("template: customer-service-desk\n");
    }
    if let Some(s) = d.max_staleness {
        let _ = writeln!(out, "max_staleness: {s}s");
    }
    out.push_str("schema:\n");
    for kind in KINDS {
        let _ = writeln!(out, "  {kind}: {}", list(VERBS, if d.verbs.is_empty() { &[0] } else { &d.verbs }));
    }
    out.push_str("roles:\n");
    for (i, r) in d.roles.iter().take(4).enumerate() {
        let _ = writeln!(out, "  r{i}:\n    allow: {}", list(PATTERNS, &r.allow));
        for (key, picks, table) in
            [("extends", &r.extends, ROLES), ("except", &r.except, PATTERNS), ("requestable", &r.requestable, PATTERNS)]
        {
            if !picks.is_empty() {
                let _ = writeln!(out, "    {key}: {}", list(table, picks));
            }
        }
    }
    if !d.parents.is_empty() {
        out.push_str("units:\n");
        for (i, p) in d.parents.iter().take(4).enumerate() {
            let _ = writeln!(out, "  - id: u{i}");
            if let Some(p) = p {
                let _ = writeln!(out, "    parent: {}", pick(UNITS, *p));
            }
        }
    }
    if !d.members.is_empty() {
        out.push_str("members:\n");
        for (i, m) in d.members.iter().take(6).enumerate() {
            let _ = writeln!(
                out,
                "  - id: m{i}\n    units: {}\n    attrs: {}",
                list(UNITS, &m.units),
                pick(ATTRS, m.attrs)
            );
            if m.disabled {
                out.push_str("    status: disabled\n");
            }
            if let Some(e) = m.expires {
                let _ = writeln!(out, "    expires: {}", pick(INSTANTS, e));
            }
            if !m.bindings.is_empty() {
                out.push_str("    bindings:\n");
                for b in m.bindings.iter().take(4) {
                    binding(&mut out, "      ", b);
                }
            }
        }
    }
    if let Some(b) = &d.everyone {
        out.push_str("everyone:\n");
        binding(&mut out, "  ", b);
    }
    if !d.rules.is_empty() {
        out.push_str("rules:\n");
        for (i, r) in d.rules.iter().take(4).enumerate() {
            let effect = pick(EFFECTS, r.effect);
            let _ = writeln!(
                out,
                "  - id: rule{i}\n    effect: {effect}\n    actions: {}",
                list(PATTERNS, if r.actions.is_empty() { &[0] } else { &r.actions })
            );
            if effect == "mask" {
                out.push_str("    fields: [phone, email]\n");
            }
            if let Some(w) = &r.when {
                let _ = writeln!(out, "    when: {{{}}}", w.render(0));
            }
            if r.alert {
                out.push_str("    alert: true\n    message: audited\n");
            }
        }
    }
    out
}

libfuzzer_sys::fuzz_target!(|doc: Doc| rolegate_fuzz::load_and_decide(render(&doc).as_bytes()));
