//! The fast engine against the naive reference (tests/support/reference.rs) on generated tenants
//! and requests. The vocabulary is small so rules, scopes and schedules actually match. A mismatch
//! prints the documents, the request and the instant: a full reproduction.

mod support;

use std::fmt::Write as _;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use rolegate::engine::{
    Attrs, Context, Decision, Filter, Request, RequestError, Resource, Snapshot, Value, decide, plan,
};
use rolegate::policy;
use rolegate::policy::Document;
use support::reference::{self, RefDecision, RefError};

/// splitmix64: the generator is driven by one proptest seed so a failure reproduces from it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn subset<T: Clone>(&mut self, items: &[T], percent: u64) -> Vec<T> {
        items.iter().filter(|_| self.chance(percent)).cloned().collect()
    }
}

const BASE: &str = "2026-11-23T00:00:00Z"; // a Monday
const ACTIONS: &[&str] =
    &["conversation.view", "conversation.reply", "conversation.export", "customer.view", "customer.export"];
const PATTERNS: &[&str] = &[
    "*",
    "conversation.*",
    "customer.*",
    "*.view",
    "*.export",
    "conversation.view",
    "conversation.reply",
    "conversation.export",
    "customer.view",
    "customer.export",
];
const UNITS: usize = 6;
const MEMBERS: usize = 4;
const ZONES: &[&str] = &["UTC", "Asia/Shanghai", "Europe/Berlin"];
const DAYS: &[&str] = &["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn base() -> Timestamp {
    BASE.parse().unwrap()
}

fn instant(rng: &mut Rng) -> String {
    let hours = rng.below(24 * 9) as i64 - 24;
    (base() + SignedDuration::from_hours(hours)).to_string()
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

fn quoted(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| format!("\"{s}\"")).collect()
}

fn when(rng: &mut Rng, depth: usize) -> String {
    let mut clauses = Vec::new();
    let n = 1 + rng.below(2);
    let keys = ["principal", "resource", "context", "ip", "relation", "in_unit", "schedule", "any", "not"];
    let mut used = Vec::new();
    for _ in 0..n {
        let mut k = *rng.pick(&keys);
        if depth > 1 && (k == "any" || k == "not") {
            k = "principal";
        }
        if used.contains(&k) {
            continue;
        }
        used.push(k);
        let clause = match k {
            "principal" => match rng.below(6) {
                4 => "principal: {team: {same_as: resource.team}}".to_owned(),
                5 => "principal: {level: {same_as: context.active}}".to_owned(),
                0 => "principal: {employment: outsourced}".to_owned(),
                1 => "principal: {level: {lt: 2}}".to_owned(),
                2 => format!("principal: {{units: u{}}}", rng.below(UNITS)),
                _ => format!("principal: {{id: [m{}, m{}]}}", rng.below(MEMBERS), rng.below(MEMBERS)),
            },
            "resource" => match rng.below(8) {
                4 => "resource: {owner_email: {same_as: principal.email}}".to_owned(),
                5 => "resource: {assignee: {same_as: resource.owner}}".to_owned(),
                6 => "resource: {admins: {same_as: principal.id}}".to_owned(),
                7 => format!(
                    "resource: {{{}: {{same_as: {}}}}}",
                    rng.pick(&["team", "admin_count", "unit"]),
                    rng.pick(&["principal.team", "principal.units", "context.active", "resource.id", "context.team",])
                ),
                0 => "resource: {sensitivity: [high, critical]}".to_owned(),
                1 => "resource: {tags: {contains: vip}}".to_owned(),
                2 => "resource: {admin_count: {ge: 10}}".to_owned(),
                _ => "resource: {sensitivity: {present: true}}".to_owned(),
            },
            "context" => match rng.below(4) {
                3 => "context: {team: {same_as: resource.team}}".to_owned(),
                0 => "context: {client_ip: [10.1.2.3, \"::ffff:192.168.1.1\"]}".to_owned(),
                _ => format!("context: {{active: {{lt: {}}}}}", rng.below(5)),
            },
            "ip" => match rng.below(2) {
                0 => "ip: [10.0.0.0/8, \"2001:db8::/32\"]".to_owned(),
                _ => "ip: [\"::ffff:192.168.0.0/112\"]".to_owned(),
            },
            "relation" => format!("relation: {}", rng.pick(&["assignee", "admins"])),
            "in_unit" => format!("in_unit: u{}", rng.below(UNITS)),
            "schedule" => {
                let mut days: Vec<String> = rng.subset(DAYS, 60).iter().map(|d| d.to_string()).collect();
                if days.is_empty() {
                    days.push("mon".into());
                }
                let from = rng.below(24);
                let mut to = rng.below(24);
                if to == from {
                    to = (from + 7) % 24;
                }
                let days = if rng.chance(20) { String::new() } else { format!(", days: {}", list(&days)) };
                let to_min = rng.pick(&["00", "30"]);
                format!("schedule: {{tz: {}{days}, from: \"{from:02}:00\", to: \"{to:02}:{to_min}\"}}", rng.pick(ZONES))
            }
            "any" => format!("any: [{}, {}]", when(rng, depth + 1), when(rng, depth + 1)),
            _ => format!("not: {}", when(rng, depth + 1)),
        };
        clauses.push(clause);
    }
    format!("{{{}}}", clauses.join(", "))
}

fn binding(rng: &mut Rng, roles: usize, explicit_id: &mut usize) -> String {
    let mut fields = vec![format!("role: r{}", rng.below(roles))];
    if rng.chance(15) {
        *explicit_id += 1;
        fields.insert(0, format!("id: b{explicit_id}"));
    }
    fields.push(match rng.below(5) {
        0 => "scope: tenant".to_owned(),
        1 => "scope: own_units".to_owned(),
        2 => format!("scope: {{unit: u{}}}", rng.below(UNITS)),
        3 => "scope: {relation: assignee}".to_owned(),
        _ => "scope: {relation: admins}".to_owned(),
    });
    if rng.chance(30) {
        let a = instant(rng);
        let b = instant(rng);
        let (from, until) = if a < b { (a, b) } else { (b, a) };
        if from != until {
            if rng.chance(70) {
                fields.push(format!("from: \"{from}\""));
            }
            fields.push(format!("until: \"{until}\""));
        }
    }
    if rng.chance(35) {
        fields.push(format!("when: {}", when(rng, 0)));
    }
    format!("{{{}}}", fields.join(", "))
}

fn role(rng: &mut Rng, i: usize, lower_roles: &[String]) -> String {
    let mut f = vec![format!("allow: {}", list(&quoted(&rng.subset(PATTERNS, 20))))];
    let ext = rng.subset(lower_roles, 30);
    if !ext.is_empty() {
        f.push(format!("extends: {}", list(&ext)));
    }
    if rng.chance(30) {
        f.push(format!("except: {}", list(&quoted(&rng.subset(PATTERNS, 15)))));
    }
    if rng.chance(40) {
        f.push(format!("requestable: {}", list(&quoted(&rng.subset(PATTERNS, 20)))));
    }
    format!("  r{i}: {{{}}}\n", f.join(", "))
}

fn rule(rng: &mut Rng, id: usize) -> String {
    let effect = *rng.pick(&["deny", "mask", "review"]);
    let mut actions = rng.subset(PATTERNS, 20);
    if actions.is_empty() {
        actions.push(*rng.pick(PATTERNS));
    }
    let mut s = format!("  - {{id: rule{id}, effect: {effect}, actions: {}", list(&quoted(&actions)));
    if effect == "mask" {
        let _ = write!(
            s,
            ", fields: {}",
            list(
                &rng.subset(&["phone".to_owned(), "email".to_owned()], 60)
                    .into_iter()
                    .chain(["phone".to_owned()])
                    .collect::<Vec<_>>()
            )
        );
    }
    if rng.chance(70) {
        let _ = write!(s, ", when: {}", when(rng, 0));
    }
    if rng.chance(30) {
        s.push_str(", alert: true");
    }
    s.push_str("}\n");
    s
}

/// Generates a tenant document and, half of the time, a template it uses.
fn tenant(rng: &mut Rng) -> (String, Option<String>) {
    let use_tpl = rng.chance(50);
    let roles = 4;
    let mut explicit_id = 0;
    let mut tpl = String::from("schema:\n  conversation: [view, reply, export]\nroles:\n");
    let mut doc = String::from("tenant: t\n");
    if use_tpl {
        doc.push_str("template: base\nschema:\n  customer: [view, export]\nroles:\n");
    } else {
        doc.push_str("schema:\n  conversation: [view, reply, export]\n  customer: [view, export]\nroles:\n");
    }
    let names: Vec<String> = (0..roles).map(|i| format!("r{i}")).collect();
    for i in 0..roles {
        let r = role(rng, i, &names[..i]);
        // With a template, r0 and r1 live there; sometimes the tenant replaces r1.
        if use_tpl && i < 2 {
            tpl.push_str(&r);
            if i == 1 && rng.chance(40) {
                doc.push_str(&role(rng, 1, &names[..1]));
            }
        } else {
            doc.push_str(&r);
        }
    }
    doc.push_str("units:\n");
    for u in 0..UNITS {
        let parent = if u > 0 && rng.chance(75) { format!(", parent: u{}", rng.below(u)) } else { String::new() };
        let _ = writeln!(doc, "  - {{id: u{u}{parent}}}");
    }
    doc.push_str("members:\n");
    for m in 0..MEMBERS {
        let mut f = vec![format!("id: m{m}")];
        if rng.chance(10) {
            f.push("status: disabled".into());
        }
        if rng.chance(15) {
            f.push(format!("expires: \"{}\"", instant(rng)));
        }
        let units: Vec<String> = (0..UNITS).filter(|_| rng.chance(25)).map(|u| format!("u{u}")).collect();
        f.push(format!("units: {}", list(&units)));
        let team = match rng.below(3) {
            0 => String::new(),
            1 => format!(", team: {}", rng.pick(&["red", "blue"])),
            _ => ", team: [red, blue]".to_owned(),
        };
        let email = if rng.chance(80) { format!(", email: m{m}@x") } else { String::new() };
        f.push(format!(
            "attrs: {{employment: {}, level: {}{team}{email}}}",
            rng.pick(&["outsourced", "employee"]),
            rng.below(3)
        ));
        let bindings: Vec<String> = (0..rng.below(4)).map(|_| binding(rng, roles, &mut explicit_id)).collect();
        f.push(format!("bindings: {}", list(&bindings)));
        let _ = writeln!(doc, "  - {{{}}}", f.join(", "));
    }
    let everyone: Vec<String> = (0..rng.below(3)).map(|_| binding(rng, roles, &mut explicit_id)).collect();
    let (tpl_everyone, doc_everyone) = everyone.split_at(if use_tpl { everyone.len() / 2 } else { 0 });
    if !doc_everyone.is_empty() {
        let _ = writeln!(doc, "everyone: {}", list(doc_everyone));
    }
    if !tpl_everyone.is_empty() {
        let _ = writeln!(tpl, "everyone: {}", list(tpl_everyone));
    }
    let rules: Vec<String> = (0..rng.below(4)).map(|i| rule(rng, i)).collect();
    let (tpl_rules, doc_rules) = rules.split_at(if use_tpl { rules.len() / 2 } else { 0 });
    if !doc_rules.is_empty() {
        let _ = writeln!(doc, "rules:\n{}", doc_rules.concat());
    }
    if !tpl_rules.is_empty() {
        let _ = writeln!(tpl, "rules:\n{}", tpl_rules.concat());
    }
    (doc, use_tpl.then_some(tpl))
}

fn request(rng: &mut Rng) -> (Request, Timestamp) {
    let action = match rng.below(100) {
        0..=2 => rng.pick(&["conversation.delete", "conversation.veiw", "ticket.view"]).to_string(),
        _ => rng.pick(ACTIONS).to_string(),
    };
    let mut kind = action.split('.').next().unwrap().to_owned();
    if rng.chance(3) {
        kind = "customer".into();
    }
    let member = |rng: &mut Rng| format!("m{}", rng.below(MEMBERS + 1));
    let mut attrs = Attrs::default();
    if rng.chance(60) {
        attrs.insert("assignee", Value::Text(member(rng)));
    }
    if rng.chance(40) {
        attrs.insert("admins", Value::List(vec![member(rng), member(rng)]));
    }
    if rng.chance(40) {
        attrs.insert("sensitivity", Value::Text(rng.pick(&["high", "low"]).to_string()));
    }
    if rng.chance(30) {
        attrs.insert("tags", Value::List(rng.subset(&["vip".to_owned(), "new".to_owned()], 50)));
    }
    if rng.chance(30) {
        attrs.insert("admin_count", Value::Int(rng.below(12) as i64));
    }
    if rng.chance(40) {
        attrs.insert("owner", Value::Text(member(rng)));
    }
    if rng.chance(40) {
        let m = member(rng);
        attrs.insert("owner_email", Value::Text(format!("{m}@x")));
    }
    if rng.chance(50) {
        let team = match rng.below(4) {
            0 => Value::List(vec!["red".into()]),
            1 => Value::Int(1),
            _ => Value::Text(rng.pick(&["red", "blue"]).to_string()),
        };
        attrs.insert("team", team);
    }
    let mut ctx = Attrs::default();
    if rng.chance(30) {
        ctx.insert("team", Value::Text(rng.pick(&["red", "blue", "u1"]).to_string()));
    }
    if rng.chance(60) {
        ctx.insert("active", Value::Int(rng.below(5) as i64));
    }
    let ip = [
        None,
        Some("10.1.2.3"),
        Some("192.168.1.1"),
        Some("2001:db8::7"),
        Some("::ffff:10.1.2.3"),
        Some("::ffff:192.168.1.1"),
    ][rng.below(6)]
    .map(|s| s.parse().unwrap());
    let unit = match rng.below(UNITS + 2) {
        u if u < UNITS => format!("u{u}"),
        u if u == UNITS => String::new(),
        _ => "elsewhere".into(),
    };
    let tenant = if rng.chance(2) { "other" } else { "t" };
    let req = Request {
        tenant: tenant.into(),
        principal: member(rng),
        action,
        resource: Resource { kind, id: "r1".into(), unit, attrs },
        context: Context { client_ip: ip, attrs: ctx },
    };
    // A third of the instants fall on whole hours, where windows and schedules start and end.
    let now = if rng.chance(33) {
        base() + SignedDuration::from_hours(rng.below(24 * 8) as i64)
    } else {
        base() + SignedDuration::from_mins(rng.below(60 * 24 * 8) as i64)
    };
    (req, now)
}

fn check(seed: u64) -> Result<(), String> {
    let mut rng = Rng(seed);
    let (doc_text, tpl_text) = tenant(&mut rng);
    let (doc, diags) = policy::parse_str("t.yaml", &doc_text, None);
    let tpl = tpl_text.as_ref().map(|t| policy::parse_str("templates/base.yaml", t, Some("base")));
    let repro = |extra: &str| {
        format!(
            "seed {seed}\n--- t.yaml\n{doc_text}\n--- templates/base.yaml\n{}\n{extra}",
            tpl_text.clone().unwrap_or_default()
        )
    };
    if diags.iter().any(|d| d.is_error()) || tpl.as_ref().is_some_and(|(_, d)| d.iter().any(|d| d.is_error())) {
        return Err(repro(&format!("generated document does not parse: {diags:?}")));
    }
    let doc = doc.ok_or_else(|| repro("no document"))?;
    let tpl_doc = tpl.and_then(|(d, _)| d);
    let tenant = policy::compile(&doc, tpl_doc.as_ref(), 1).map_err(|d| repro(&format!("compile failed: {d:?}")))?;
    let mut snapshot = Snapshot::default();
    snapshot.insert(Arc::new(tenant));
    for _ in 0..16 {
        let (req, now) = request(&mut rng);
        let fast = decide(&snapshot, &req.query(), now);
        let slow = reference::decide(&doc, tpl_doc.as_ref(), &req, now);
        if let Err(why) = agree(&fast, &slow) {
            return Err(repro(&format!(
                "now: {now}\nrequest: {req:#?}\nengine:    {fast:?}\nreference: {slow:?}\n{why}"
            )));
        }
    }
    Ok(())
}

/// Compares one answer; `Err` says which part differs.
fn agree(fast: &Result<Decision, RequestError>, slow: &Result<RefDecision, RefError>) -> Result<(), String> {
    match (fast, slow) {
        (Ok(f), Ok(s)) => same_decision(f, s),
        (Err(f), Err(s)) => same_error(f, s),
        _ => Err("one answered, the other returned a caller error".into()),
    }
}

/// Every field of the decision except `valid_until`, which the reference does not compute (see
/// [`valid_until_never_outlives_the_references_answer`]).
fn same_decision(f: &Decision, s: &RefDecision) -> Result<(), String> {
    let mask: Vec<String> = f.mask.iter().map(|m| m.to_string()).collect();
    let pairs = [
        ("allowed", f.allowed == s.allowed),
        ("reason", f.reason == s.reason),
        ("rule", f.rule.as_deref() == s.rule.as_deref()),
        ("mask", mask == s.mask),
        ("review", f.review == s.review),
        ("requestable", f.requestable == s.requestable),
        ("alert", f.alert == s.alert),
    ];
    match pairs.iter().find(|(_, same)| !same) {
        Some((field, _)) => Err(format!("`{field}` differs")),
        None => Ok(()),
    }
}

/// The same kind of caller error, about the same action and kind, and a message naming them.
fn same_error(f: &RequestError, s: &RefError) -> Result<(), String> {
    let message = f.to_string();
    let named = |what: &str| message.contains(&format!("`{what}`"));
    let ok = match (f, s) {
        (
            RequestError::UnknownAction { tenant, action, .. },
            RefError::UnknownAction { tenant: want_tenant, action: want_action },
        ) => tenant == want_tenant && action == want_action && named(action) && named(tenant),
        (
            RequestError::KindMismatch { action, kind, expected },
            RefError::KindMismatch { action: want_action, kind: want_kind, expected: want_expected },
        ) => {
            action == want_action
                && kind == want_kind
                && expected == want_expected
                && named(action)
                && named(kind)
                && named(expected)
        }
        _ => false,
    };
    if ok { Ok(()) } else { Err(format!("caller errors differ: engine says `{message}`")) }
}

fn cases() -> u32 {
    std::env::var("ROLEGATE_DIFF_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn engine_agrees_with_reference(seed in any::<u64>()) {
        if let Err(repro) = check(seed) {
            prop_assert!(false, "engine and reference disagree\n{}", repro);
        }
    }
}

#[test]
fn generated_tenants_exercise_every_reason() {
    // Guards the generator: a vocabulary too sparse to reach a reason would make agreement vacuous.
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..400u64 {
        let mut rng = Rng(seed);
        let (doc_text, tpl_text) = tenant(&mut rng);
        let (doc, _) = policy::parse_str("t.yaml", &doc_text, None);
        let tpl = tpl_text.as_ref().and_then(|t| policy::parse_str("b.yaml", t, Some("base")).0);
        let tenant = policy::compile(&doc.unwrap(), tpl.as_ref(), 1).unwrap();
        let mut snapshot = Snapshot::default();
        snapshot.insert(Arc::new(tenant));
        for _ in 0..16 {
            let (req, now) = request(&mut rng);
            match decide(&snapshot, &req.query(), now) {
                Ok(d) => {
                    seen.insert(d.reason.as_str());
                    if !d.mask.is_empty() {
                        seen.insert("mask");
                    }
                    if d.review {
                        seen.insert("review");
                    }
                    if d.requestable {
                        seen.insert("requestable");
                    }
                    if d.valid_until.is_some() {
                        seen.insert("valid_until");
                    }
                }
                Err(RequestError::UnknownAction { .. }) => {
                    seen.insert("unknown action");
                }
                Err(RequestError::KindMismatch { .. }) => {
                    seen.insert("kind mismatch");
                }
            }
        }
    }
    for want in [
        "GRANTED",
        "NO_GRANT",
        "DENIED_BY_RULE",
        "UNKNOWN_TENANT",
        "UNKNOWN_PRINCIPAL",
        "PRINCIPAL_DISABLED",
        "PRINCIPAL_EXPIRED",
        "mask",
        "review",
        "requestable",
        "valid_until",
        "unknown action",
        "kind mismatch",
    ] {
        assert!(seen.contains(want), "the generator never produced {want}; saw {seen:?}");
    }
}

/// Compiles a generated tenant into a snapshot beside its parsed documents.
fn generated(seed: u64) -> (Rng, Document, Option<Document>, Snapshot) {
    let mut rng = Rng(seed);
    let (doc_text, tpl_text) = tenant(&mut rng);
    let doc = policy::parse_str("t.yaml", &doc_text, None).0.unwrap();
    let tpl = tpl_text.and_then(|t| policy::parse_str("templates/base.yaml", &t, Some("base")).0);
    let mut snapshot = Snapshot::default();
    snapshot.insert(Arc::new(policy::compile(&doc, tpl.as_ref(), 1).unwrap()));
    (rng, doc, tpl, snapshot)
}

#[test]
fn valid_until_never_outlives_the_references_answer() {
    // The reference finds the first change minute by minute (generated instants and schedule
    // times are whole minutes, so no change hides between two probes); the engine's bound must
    // not be after it. A scan is slow, so few tenants: the property test in tests/valid_until.rs
    // covers clock changes in depth.
    let horizon = SignedDuration::from_hours(24 * 9);
    let mut bounded = 0;
    for seed in 0..cases().div_ceil(250) as u64 {
        let (mut rng, doc, tpl, snapshot) = generated(seed);
        for _ in 0..4 {
            let (req, now) = request(&mut rng);
            let Ok(fast) = decide(&snapshot, &req.query(), now) else { continue };
            if let Some(until) = fast.valid_until {
                assert!(until > now, "seed {seed}: valid_until {until} is not after now {now}");
                bounded += 1;
            }
            let end = fast.valid_until.unwrap_or(now + horizon).min(now + horizon);
            if let Some(changed) = reference::first_change(&doc, tpl.as_ref(), &req, now, end) {
                panic!(
                    "seed {seed}: the answer changes at {changed}, before valid_until {:?}\nnow: {now}\nrequest: {req:#?}\n\
                     before: {fast:?}\nafter: {:?}",
                    fast.valid_until,
                    reference::decide(&doc, tpl.as_ref(), &req, changed)
                );
            }
        }
    }
    assert!(bounded > 0, "no generated decision carried a valid_until");
}

/// A resource of `kind` from the request generator's vocabulary, with an id that sometimes
/// equals another attribute so `same_as` on `resource.id` can hold.
fn resource(rng: &mut Rng, kind: &str) -> Resource {
    let (req, _) = request(rng);
    let id = rng.pick(&["r1", "m1", "red", "u1"]).to_string();
    Resource { kind: kind.to_owned(), id, ..req.resource }
}

/// True when no compound holds a constant or a single item and no `not` holds a `not`.
fn simplified(f: &Filter) -> bool {
    match f {
        Filter::All(items) | Filter::Any(items) => {
            items.len() > 1 && items.iter().all(|i| !matches!(i, Filter::Constant(_)) && simplified(i))
        }
        Filter::Not(inner) => !matches!(**inner, Filter::Constant(_) | Filter::Not(_)) && simplified(inner),
        Filter::Constant(_) | Filter::Test(_) => true,
    }
}

/// Plan, exactly: for every generated resource the filter (sent over the wire and read back)
/// holds iff `decide` allows; a never-allowed principal gets `constant: false` and decide's
/// reason; the filter is the same at any instant before its `valid_until`.
fn check_plan(seed: u64, resources: usize) -> Result<(), String> {
    let (mut rng, _, _, snapshot) = generated(seed);
    for _ in 0..8 {
        let (req, now) = request(&mut rng);
        let kind = req.action.split('.').next().unwrap_or_default().to_owned();
        let planned = plan(&snapshot, &req.tenant, &req.principal, &req.action, &req.context, now);
        let p = match planned {
            Ok(p) => p,
            Err(e) => {
                // Plan has no resource, so no kind mismatch: only an unknown action.
                if !matches!(e, RequestError::UnknownAction { .. }) {
                    return Err(format!("seed {seed}: unexpected plan error {e}"));
                }
                continue;
            }
        };
        if !simplified(&p.filter) {
            return Err(format!("seed {seed}: filter not simplified: {:?}", p.filter));
        }
        let wire = rolegate::api::plan::filter(&p.filter);
        let filter = rolegate::api::plan::filter_from_wire(wire, "filter").map_err(|e| e.to_string())?;
        let later = p.valid_until.filter(|v| *v > now + SignedDuration::from_mins(1)).map(|v| {
            let span = (v - SignedDuration::from_mins(1)).as_second() - now.as_second();
            now + SignedDuration::from_secs((rng.next() % span.max(1) as u64) as i64 + 1)
        });
        let later_plan = later.map(|t| (t, plan(&snapshot, &req.tenant, &req.principal, &req.action, &req.context, t)));
        for _ in 0..resources {
            let r = resource(&mut rng, &kind);
            let q = rolegate::engine::Query {
                tenant: &req.tenant,
                principal: &req.principal,
                action: &req.action,
                resource: &r,
                context: &req.context,
            };
            let d = decide(&snapshot, &q, now).map_err(|e| format!("seed {seed}: decide failed: {e}"))?;
            let repro =
                || format!("seed {seed}\nnow: {now}\nrequest: {req:#?}\nresource: {r:#?}\nfilter: {:#?}", p.filter);
            if filter.matches(&r) != d.allowed {
                return Err(format!("plan and check disagree (check: {d:?})\n{}", repro()));
            }
            use rolegate::engine::Reason as R;
            let never = [R::UnknownTenant, R::UnknownPrincipal, R::PrincipalDisabled, R::PrincipalExpired];
            if never.contains(&p.reason) && (p.filter != Filter::Constant(false) || d.reason != p.reason) {
                return Err(format!("plan reason {} but check says {}\n{}", p.reason, d.reason, repro()));
            }
            if (p.reason == R::Granted) == (p.filter == Filter::Constant(false)) {
                return Err(format!("plan reason {} with filter {:?}\n{}", p.reason, p.filter, repro()));
            }
            if let Some((t, Ok(lp))) = &later_plan
                && lp.filter.matches(&r) != filter.matches(&r)
            {
                return Err(format!("the filter changed at {t}, before valid_until {:?}\n{}", p.valid_until, repro()));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases().div_ceil(20),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn plan_filter_holds_exactly_where_check_allows(seed in any::<u64>()) {
        if let Err(repro) = check_plan(seed, 150) {
            prop_assert!(false, "{}", repro);
        }
    }
}

#[test]
fn generated_plans_exercise_every_kind_of_filter() {
    // Guards the plan property against a vacuous generator: filters must test resources, and
    // some plans must allow everything or nothing.
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..300u64 {
        let (mut rng, _, _, snapshot) = generated(seed);
        for _ in 0..8 {
            let (req, now) = request(&mut rng);
            let Ok(p) = plan(&snapshot, &req.tenant, &req.principal, &req.action, &req.context, now) else { continue };
            seen.insert(p.reason.as_str().to_owned());
            walk(&p.filter, &mut seen);
        }
    }
    for want in [
        "GRANTED",
        "NO_GRANT",
        "DENIED_BY_RULE",
        "UNKNOWN_PRINCIPAL",
        "PRINCIPAL_DISABLED",
        "constant true",
        "constant false",
        "all",
        "any",
        "not",
        "equals",
        "one_of",
        "contains",
        "present",
        "ge",
        "same_as",
    ] {
        assert!(seen.contains(want), "no generated plan had {want}; saw {seen:?}");
    }
}

fn walk(f: &Filter, seen: &mut std::collections::BTreeSet<String>) {
    use rolegate::engine::FieldOp;
    let name = match f {
        Filter::Constant(b) => format!("constant {b}"),
        Filter::All(items) | Filter::Any(items) => {
            items.iter().for_each(|i| walk(i, seen));
            if matches!(f, Filter::All(_)) { "all" } else { "any" }.to_owned()
        }
        Filter::Not(inner) => {
            walk(inner, seen);
            "not".to_owned()
        }
        Filter::Test(t) => match t.op {
            FieldOp::Equals(_) => "equals",
            FieldOp::OneOf(_) => "one_of",
            FieldOp::Lt(_) => "lt",
            FieldOp::Le(_) => "le",
            FieldOp::Gt(_) => "gt",
            FieldOp::Ge(_) => "ge",
            FieldOp::Contains(_) => "contains",
            FieldOp::Present(_) => "present",
            FieldOp::SameAs(_) => "same_as",
        }
        .to_owned(),
    };
    seen.insert(name);
}

/// The Inspector against Check: Explain's decision is decide's and its steps name the deciding
/// rule or binding; Who, paged with tokens, is exactly the members decide allows, in document
/// order; Permissions holds a grant for every allow, and every unconditional grant in its window
/// whose scope covers the resource allows.
fn check_inspector(seed: u64) -> Result<[usize; 3], String> {
    use rolegate::engine::{GrantScope, Page, Reason as R, StepKind, explain};
    let (mut rng, _, _, snapshot) = generated(seed);
    let tenant = snapshot.tenant("t").ok_or("no tenant")?.clone();
    // Allows explained, non-empty Who answers, covering grants found: the property's reach.
    let mut seen = [0; 3];
    for _ in 0..8 {
        let (req, now) = request(&mut rng);
        let repro = |what: String| format!("seed {seed}\nnow: {now}\nrequest: {req:#?}\n{what}");
        let fast = decide(&snapshot, &req.query(), now);
        let explained = explain(&snapshot, &req.query(), now);
        let d = match (&fast, &explained) {
            (Ok(d), Ok((e, _))) if d == e => d,
            (Err(a), Err(b)) if a == b => continue,
            _ => return Err(repro(format!("explain {explained:?} but check {fast:?}"))),
        };
        let steps = &explained.as_ref().map_err(|e| e.to_string())?.1;
        if d.reason == R::UnknownTenant {
            if !steps.is_empty() {
                return Err(repro(format!("steps for an unknown tenant: {steps:#?}")));
            }
            continue;
        }
        if steps.first().map(|s| s.kind) != Some(StepKind::Principal) {
            return Err(repro(format!("no principal step first: {steps:#?}")));
        }
        let first_applying = |kind| steps.iter().find(|s| s.kind == kind && s.applies).map(|s| &*s.id);
        let rule = d.rule.as_deref();
        let ok = match d.reason {
            R::Granted => first_applying(StepKind::Binding) == rule && first_applying(StepKind::Rule).is_none(),
            R::DeniedByRule => first_applying(StepKind::Rule) == rule && first_applying(StepKind::Binding).is_none(),
            R::NoGrant => first_applying(StepKind::Binding).is_none() && first_applying(StepKind::Rule).is_none(),
            _ => steps.len() == 1 && !steps[0].applies,
        };
        if !ok {
            return Err(repro(format!("steps do not match the decision {d:?}: {steps:#?}")));
        }
        seen[0] += usize::from(d.allowed);

        // Who, through every page.
        let size = 1 + rng.below(7);
        let (mut got, mut token) = (Vec::new(), String::new());
        loop {
            let page = tenant
                .who(&req.action, &req.resource, &req.context, now, Page { token: &token, size })
                .map_err(|e| repro(format!("who failed: {e}")))?;
            got.extend(page.principals.iter().map(|p| p.to_string()));
            match page.next_page_token {
                Some(t) => token = t,
                None => break,
            }
        }
        let mut want = Vec::new();
        for m in &tenant.roster {
            let q = rolegate::engine::Query { principal: &m.id, ..req.query() };
            if decide(&snapshot, &q, now).map_err(|e| e.to_string())?.allowed {
                want.push(m.id.to_string());
            }
        }
        if got != want {
            return Err(repro(format!("who {got:?} but check allows {want:?}")));
        }
        seen[1] += usize::from(!got.is_empty());

        // Permissions of the asking member.
        let perms = tenant.permissions(&req.principal, "", now).map_err(|e| e.to_string())?;
        let inactive = [R::UnknownPrincipal, R::PrincipalDisabled, R::PrincipalExpired];
        if inactive.contains(&d.reason) && (perms.reason != Some(d.reason) || !perms.grants.is_empty()) {
            return Err(repro(format!("permissions {perms:?} for a {} member", d.reason)));
        }
        let grants: Vec<_> = perms.grants.iter().filter(|g| *g.action == *req.action).collect();
        if d.allowed && !grants.iter().any(|g| Some(&*g.binding) == rule && !g.requestable) {
            return Err(repro(format!("check allows through {rule:?} but permissions list {grants:#?}")));
        }
        let covers = |s: &GrantScope| match s {
            GrantScope::Tenant => true,
            GrantScope::Units(units) => units.iter().any(|u| **u == *req.resource.unit),
            GrantScope::Relation(attr) => {
                req.resource.attrs.get(attr).is_some_and(|v| v.is_or_contains(&req.principal))
            }
        };
        let in_window =
            |g: &rolegate::engine::Grant| g.from.is_none_or(|f| f <= now) && g.until.is_none_or(|u| now < u);
        if let Some(g) = grants.iter().find(|g| !g.requestable && !g.conditional && in_window(g) && covers(&g.scope)) {
            if !d.allowed {
                return Err(repro(format!("grant {g:#?} covers the request but check says {d:?}")));
            }
            seen[2] += 1;
        }
    }
    Ok(seen)
}

#[test]
fn generated_inspections_reach_allows_members_and_covering_grants() {
    let mut seen = [0; 3];
    for seed in 0..200u64 {
        let s = check_inspector(seed).unwrap_or_else(|repro| panic!("{repro}"));
        seen.iter_mut().zip(s).for_each(|(a, b)| *a += b);
    }
    assert!(seen.iter().all(|n| *n > 20), "allows, non-empty Who, covering grants: {seen:?}");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases().div_ceil(20),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn explain_who_and_permissions_agree_with_check(seed in any::<u64>()) {
        if let Err(repro) = check_inspector(seed).map(|_| ()) {
            prop_assert!(false, "{}", repro);
        }
    }
}
