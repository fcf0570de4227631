//! `rolegate diff` is exact: on generated policy pairs (a tenant and a copy with a few edits), every
//! request whose Check answer differs between the two is explained by the diff (its member and
//! action, the member's status, or the schema), a request allowed only by the new policy is
//! reported as a gain and one allowed only by the old as a loss; and the same policy written
//! another way (block instead of flow style, keys in another order) reports nothing. A failure
//! prints both documents and the request: a full reproduction.
//!
//! `ROLEGATE_DIFF_EXACT_CASES` sets the number of pairs (default 400: about 10 s of a debug build).

use std::fmt::Write as _;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use rolegate::engine::{Attrs, Context, Decision, Request, Resource, Snapshot, Value, decide};
use rolegate::policy;
use rolegate::policy::diff::{self, Diff};

/// splitmix64, seeded per case so a failure reproduces from its seed.
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
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
    fn subset(&mut self, items: &[&str], percent: u64) -> Vec<String> {
        items.iter().filter(|_| self.chance(percent)).map(|s| s.to_string()).collect()
    }
}

const BASE: &str = "2026-11-23T00:00:00Z"; // a Monday
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
const UNITS: usize = 5;
const MEMBERS: usize = 5;
const ROLES: usize = 4;
const WHENS: &[&str] = &[
    "{principal: {employment: outsourced}}",
    "{principal: {level: {lt: 2}}}",
    "{principal: {units: u1}}",
    "{principal: {id: [m0, m2]}}",
    "{resource: {sensitivity: [high, critical]}}",
    "{resource: {tags: {contains: vip}}}",
    "{resource: {kind: customer}}",
    "{context: {active: {lt: 3}}}",
    "{ip: [10.0.0.0/8]}",
    "{relation: assignee}",
    "{in_unit: u2}",
    "{schedule: {tz: UTC, days: [mon, tue, wed], from: \"09:00\", to: \"18:00\"}}",
    "{any: [{principal: {employment: employee}}, {resource: {sensitivity: high}}]}",
    "{not: {principal: {level: {ge: 2}}}}",
    "{not: {resource: {tags: {contains: vip}}}}",
    "{resource: {assignee: {same_as: principal.id}}}",
    "{principal: {employment: {same_as: context.employment}}}",
    "{context: {level: {same_as: principal.level}}}",
    "{principal: {level: {same_as: principal.rank}}}",
];

fn base() -> Timestamp {
    BASE.parse().unwrap()
}

fn instant(rng: &mut Rng) -> String {
    (base() + SignedDuration::from_hours(rng.below(24 * 6) as i64)).to_string()
}

#[derive(Clone, Debug)]
struct Role {
    allow: Vec<String>,
    except: Vec<String>,
    requestable: Vec<String>,
}

#[derive(Clone, Debug)]
struct Binding {
    id: Option<String>,
    role: usize,
    scope: String,
    from: Option<String>,
    until: Option<String>,
    when: Option<String>,
}

#[derive(Clone, Debug)]
struct Member {
    id: String,
    disabled: bool,
    expires: Option<String>,
    units: Vec<usize>,
    employment: &'static str,
    level: usize,
    bindings: Vec<Binding>,
}

#[derive(Clone, Debug)]
struct Rule {
    id: String,
    effect: &'static str,
    actions: Vec<String>,
    when: Option<String>,
    alert: bool,
}

/// A tenant document as data, so it can be edited and written in more than one style.
#[derive(Clone, Debug)]
struct Pol {
    extra_verb: bool,
    roles: Vec<Role>,
    parents: Vec<Option<usize>>,
    members: Vec<Member>,
    everyone: Vec<Binding>,
    rules: Vec<Rule>,
    staleness: &'static str,
}

fn gen_role(rng: &mut Rng) -> Role {
    Role {
        allow: rng.subset(PATTERNS, 20),
        except: if rng.chance(25) { rng.subset(PATTERNS, 15) } else { vec![] },
        requestable: if rng.chance(40) { rng.subset(PATTERNS, 20) } else { vec![] },
    }
}

fn gen_scope(rng: &mut Rng) -> String {
    match rng.below(5) {
        0 => "tenant".into(),
        1 => "own_units".into(),
        2 => format!("{{unit: u{}}}", rng.below(UNITS)),
        3 => "{relation: assignee}".into(),
        _ => "{relation: admins}".into(),
    }
}

fn gen_window(rng: &mut Rng, b: &mut Binding) {
    b.from = None;
    b.until = None;
    if rng.chance(30) {
        let (x, y) = (instant(rng), instant(rng));
        let (from, until) = if x < y { (x, y) } else { (y, x) };
        if from != until {
            b.from = rng.chance(70).then_some(from);
            b.until = Some(until);
        }
    }
}

fn gen_binding(rng: &mut Rng, next_id: &mut usize) -> Binding {
    let mut b =
        Binding { id: None, role: rng.below(ROLES), scope: gen_scope(rng), from: None, until: None, when: None };
    if rng.chance(20) {
        *next_id += 1;
        b.id = Some(format!("b{next_id}"));
    }
    gen_window(rng, &mut b);
    b.when = rng.chance(35).then(|| rng.pick(WHENS).to_string());
    b
}

fn gen_member(rng: &mut Rng, i: usize, next_id: &mut usize) -> Member {
    Member {
        id: format!("m{i}"),
        disabled: rng.chance(10),
        expires: rng.chance(15).then(|| instant(rng)),
        units: (0..UNITS).filter(|_| rng.chance(25)).collect(),
        employment: rng.pick(&["outsourced", "employee"]),
        level: rng.below(3),
        bindings: (0..rng.below(4)).map(|_| gen_binding(rng, next_id)).collect(),
    }
}

fn gen_rule(rng: &mut Rng, id: usize) -> Rule {
    let mut actions = rng.subset(PATTERNS, 20);
    if actions.is_empty() {
        actions.push(rng.pick(PATTERNS).to_string());
    }
    Rule {
        id: format!("rule{id}"),
        effect: rng.pick(&["deny", "deny", "mask", "review"]),
        actions,
        when: rng.chance(70).then(|| rng.pick(WHENS).to_string()),
        alert: rng.chance(30),
    }
}

fn generate(rng: &mut Rng) -> Pol {
    let mut next_id = 0;
    Pol {
        extra_verb: false,
        roles: (0..ROLES).map(|_| gen_role(rng)).collect(),
        parents: (0..UNITS).map(|u| (u > 0 && rng.chance(70)).then(|| rng.below(u))).collect(),
        members: (0..MEMBERS - 1).map(|i| gen_member(rng, i, &mut next_id)).collect(),
        everyone: (0..rng.below(3)).map(|_| gen_binding(rng, &mut next_id)).collect(),
        rules: (0..rng.below(4)).map(|i| gen_rule(rng, i)).collect(),
        staleness: "5s",
    }
}

/// One random edit of the kinds a policy pull request makes.
fn edit(rng: &mut Rng, p: &mut Pol) {
    let mut next_id = 100 + rng.below(100);
    let m = rng.below(p.members.len());
    match rng.below(22) {
        0 => p.roles[rng.below(ROLES)].allow.push(rng.pick(PATTERNS).to_string()),
        1 => {
            let r = &mut p.roles[rng.below(ROLES)];
            if !r.allow.is_empty() {
                let i = rng.below(r.allow.len());
                r.allow.remove(i);
            }
        }
        2 => p.roles[rng.below(ROLES)].requestable = rng.subset(PATTERNS, 30),
        3 => p.roles[rng.below(ROLES)].except = rng.subset(PATTERNS, 20),
        4 => p.members[m].bindings.push(gen_binding(rng, &mut next_id)),
        5 => {
            let bs = &mut p.members[m].bindings;
            if !bs.is_empty() {
                let i = rng.below(bs.len());
                bs.remove(i);
            }
        }
        6 => {
            if let Some(b) = p.members[m].bindings.first_mut() {
                b.scope = gen_scope(rng);
            }
        }
        7 => {
            if let Some(b) = p.members[m].bindings.last_mut() {
                gen_window(rng, b);
            }
        }
        8 => {
            if let Some(b) = p.members[m].bindings.first_mut() {
                b.when = rng.chance(60).then(|| rng.pick(WHENS).to_string());
            }
        }
        9 => {
            if let Some(b) = p.members[m].bindings.first_mut() {
                b.role = rng.below(ROLES);
            }
        }
        10 => p.members[m].disabled = !p.members[m].disabled,
        11 => p.members[m].expires = rng.chance(50).then(|| instant(rng)),
        12 => p.members[m].units = (0..UNITS).filter(|_| rng.chance(30)).collect(),
        13 => {
            let mm = &mut p.members[m];
            mm.employment = if mm.employment == "employee" { "outsourced" } else { "employee" };
            mm.level = rng.below(3);
        }
        14 => {
            let i = p.members.len();
            if i < MEMBERS {
                p.members.push(gen_member(rng, i, &mut next_id));
            }
        }
        15 => {
            p.members.remove(m);
        }
        16 => {
            let u = 1 + rng.below(UNITS - 1);
            p.parents[u] = rng.chance(70).then(|| rng.below(u));
        }
        17 => {
            let id = 10 + rng.below(10);
            p.rules.push(gen_rule(rng, id));
        }
        18 => {
            if !p.rules.is_empty() {
                let i = rng.below(p.rules.len());
                if rng.chance(50) {
                    p.rules.remove(i);
                } else {
                    p.rules[i].when = rng.chance(50).then(|| rng.pick(WHENS).to_string());
                    p.rules[i].alert = rng.chance(50);
                }
            }
        }
        19 => p.rules.reverse(),
        20 => {
            if rng.chance(50) || p.everyone.is_empty() {
                p.everyone.push(gen_binding(rng, &mut next_id));
            } else {
                p.everyone.remove(0);
            }
        }
        _ => p.extra_verb = !p.extra_verb,
    }
    if rng.chance(10) {
        p.staleness = if p.staleness == "5s" { "2s" } else { "5s" };
    }
}

fn flow(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// Writes the policy. `block` uses block style and reverses the order of every map's keys: the
/// same policy, written another way.
fn render(p: &Pol, block: bool) -> String {
    let map = |fields: Vec<(&str, String)>| -> String {
        let mut fields = fields;
        if block {
            fields.reverse();
        }
        let inner: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        format!("{{{}}}", inner.join(", "))
    };
    let binding = |b: &Binding| {
        let mut f = vec![("role", format!("r{}", b.role)), ("scope", b.scope.clone())];
        if let Some(id) = &b.id {
            f.push(("id", id.clone()));
        }
        if let Some(x) = &b.from {
            f.push(("from", format!("\"{x}\"")));
        }
        if let Some(x) = &b.until {
            f.push(("until", format!("\"{x}\"")));
        }
        if let Some(w) = &b.when {
            f.push(("when", w.clone()));
        }
        map(f)
    };
    let verbs = if p.extra_verb { "[view, reply, export, close]" } else { "[view, reply, export]" };
    let mut sections: Vec<String> = Vec::new();
    sections.push(format!("schema:\n  customer: [view, export]\n  conversation: {verbs}\n"));
    let mut roles = String::from("roles:\n");
    for (i, r) in p.roles.iter().enumerate() {
        let mut f = vec![("allow", flow(&r.allow))];
        if !r.except.is_empty() {
            f.push(("except", flow(&r.except)));
        }
        if !r.requestable.is_empty() {
            f.push(("requestable", flow(&r.requestable)));
        }
        let _ = writeln!(roles, "  r{i}: {}", map(f));
    }
    sections.push(roles);
    let mut units = String::from("units:\n");
    for (u, parent) in p.parents.iter().enumerate() {
        let mut f = vec![("id", format!("u{u}"))];
        if let Some(parent) = parent {
            f.push(("parent", format!("u{parent}")));
        }
        let _ = writeln!(units, "  - {}", map(f));
    }
    sections.push(units);
    let mut members = String::from("members:\n");
    for m in &p.members {
        let units: Vec<String> = m.units.iter().map(|u| format!("u{u}")).collect();
        let bindings: Vec<String> = m.bindings.iter().map(binding).collect();
        let mut f = vec![
            ("id", m.id.clone()),
            ("units", format!("[{}]", units.join(", "))),
            (
                "attrs",
                map(vec![
                    ("employment", m.employment.to_owned()),
                    ("level", m.level.to_string()),
                    ("rank", (m.level % 2).to_string()),
                ]),
            ),
        ];
        if m.disabled {
            f.push(("status", "disabled".into()));
        }
        if let Some(e) = &m.expires {
            f.push(("expires", format!("\"{e}\"")));
        }
        if block {
            f.reverse();
            let _ = writeln!(members, "  - {}: {}", f[0].0, f[0].1);
            for (k, v) in &f[1..] {
                let _ = writeln!(members, "    {k}: {v}");
            }
            members.push_str("    bindings:\n");
            for b in &bindings {
                let _ = writeln!(members, "      - {b}");
            }
            if bindings.is_empty() {
                members.pop();
                members.push_str(" []\n");
            }
        } else {
            f.push(("bindings", format!("[{}]", bindings.join(", "))));
            let _ = writeln!(members, "  - {}", map(f));
        }
    }
    sections.push(members);
    if !p.everyone.is_empty() {
        let list: Vec<String> = p.everyone.iter().map(binding).collect();
        sections.push(format!("everyone: [{}]\n", list.join(", ")));
    }
    if !p.rules.is_empty() {
        let mut rules = String::from("rules:\n");
        for r in &p.rules {
            let mut f = vec![("id", r.id.clone()), ("effect", r.effect.to_owned()), ("actions", flow(&r.actions))];
            if r.effect == "mask" {
                f.push(("fields", "[phone, email]".into()));
            }
            if let Some(w) = &r.when {
                f.push(("when", w.clone()));
            }
            if r.alert {
                f.push(("alert", "true".into()));
            }
            let _ = writeln!(rules, "  - {}", map(f));
        }
        sections.push(rules);
    }
    sections.push(format!("max_staleness: {}\n", p.staleness));
    if block {
        sections.reverse();
    }
    format!("tenant: t\n{}", sections.concat())
}

fn compile(text: &str) -> Option<Snapshot> {
    let (doc, diags) = policy::parse_str("t.yaml", text, None);
    if diags.iter().any(|d| d.is_error()) {
        return None;
    }
    let tenant = policy::compile(&doc?, None, 1).ok()?;
    let mut s = Snapshot::default();
    s.insert(Arc::new(tenant));
    Some(s)
}

fn request(rng: &mut Rng) -> (Request, Timestamp) {
    let action = rng.pick(&[
        "conversation.view",
        "conversation.reply",
        "conversation.export",
        "conversation.close",
        "customer.view",
        "customer.export",
    ]);
    let kind = action.split('.').next().unwrap().to_owned();
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
        attrs.insert("tags", Value::List(rng.subset(&["vip", "new"], 50)));
    }
    let mut ctx = Attrs::default();
    if rng.chance(60) {
        ctx.insert("active", Value::Int(rng.below(5) as i64));
    }
    if rng.chance(50) {
        ctx.insert("employment", Value::Text(rng.pick(&["outsourced", "employee"]).to_owned()));
    }
    if rng.chance(50) {
        ctx.insert("level", Value::Int(rng.below(3) as i64));
    }
    let ip = [None, Some("10.1.2.3"), Some("192.168.1.1")][rng.below(3)].map(|s| s.parse().unwrap());
    let unit = match rng.below(UNITS + 2) {
        u if u < UNITS => format!("u{u}"),
        u if u == UNITS => String::new(),
        _ => "elsewhere".into(),
    };
    let req = Request {
        tenant: "t".into(),
        principal: member(rng),
        action: action.to_owned(),
        resource: Resource { kind, id: "r1".into(), unit, attrs },
        context: Context { client_ip: ip, attrs: ctx },
    };
    let now = base() + SignedDuration::from_mins(rng.below(60 * 24 * 6) as i64 - 60);
    (req, now)
}

/// The answer a caller acts on: everything but `valid_until` and `cache_until`, which bound how
/// long it may be reused.
fn answer(d: &Result<Decision, rolegate::engine::RequestError>) -> String {
    match d {
        Ok(d) => format!(
            "{} {} {:?} {:?} {} {} {} {:?}",
            d.allowed, d.reason, d.rule, d.mask, d.review, d.requestable, d.alert, d.message
        ),
        Err(_) => "invalid".into(),
    }
}

fn allowed(d: &Result<Decision, rolegate::engine::RequestError>) -> bool {
    d.as_ref().is_ok_and(|d| d.allowed)
}

/// Checks one request against the diff; `Err` says what the diff missed.
fn explained(d: &Diff, req: &Request, old: &Snapshot, new: &Snapshot, now: Timestamp) -> Result<(), String> {
    let (a, b) = (decide(old, &req.query(), now), decide(new, &req.query(), now));
    if answer(&a) == answer(&b) {
        return Ok(());
    }
    let t = d.tenants.iter().find(|t| t.tenant == req.tenant).ok_or("no entry for the tenant")?;
    let in_schema = |s: &Snapshot| s.tenant(&req.tenant).is_some_and(|t| t.action(&req.action).is_some());
    if in_schema(old) != in_schema(new) {
        let named = t.notes.iter().any(|n| n.starts_with("schema:") && n.contains(&req.action));
        return if named { Ok(()) } else { Err(format!("schema change of `{}` not reported", req.action)) };
    }
    let m = t.members.iter().find(|m| m.member == req.principal).ok_or("the member is not reported")?;
    let entry = m.actions.iter().find(|x| x.action == req.action);
    if m.status.is_none() && entry.is_none() {
        return Err("the member is reported, not this action".into());
    }
    let gained = m.status_gained || entry.is_some_and(|e| e.gained);
    let lost = m.status_lost || entry.is_some_and(|e| e.lost);
    if allowed(&b) && !allowed(&a) && !gained {
        return Err("allowed only by the new policy, not reported as a gain".into());
    }
    if allowed(&a) && !allowed(&b) && !lost {
        return Err("allowed only by the old policy, not reported as a loss".into());
    }
    Ok(())
}

fn cases() -> u64 {
    std::env::var("ROLEGATE_DIFF_EXACT_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(400)
}

#[test]
fn every_changed_answer_is_explained_by_the_diff() {
    let (mut compared, mut changed) = (0, 0);
    for seed in 0..cases() {
        let mut rng = Rng(seed);
        let old = generate(&mut rng);
        let mut new = old.clone();
        for _ in 0..1 + rng.below(3) {
            edit(&mut rng, &mut new);
        }
        let (old_text, new_text) = (render(&old, false), render(&new, rng.chance(50)));
        let (Some(os), Some(ns)) = (compile(&old_text), compile(&new_text)) else { continue };
        compared += 1;
        let d = diff::diff(&os, &ns, None);
        for _ in 0..96 {
            let (req, now) = request(&mut rng);
            if answer(&decide(&os, &req.query(), now)) != answer(&decide(&ns, &req.query(), now)) {
                changed += 1;
            }
            if let Err(why) = explained(&d, &req, &os, &ns, now) {
                panic!(
                    "seed {seed}: {why}\nnow: {now}\nrequest: {req:#?}\nold: {:?}\nnew: {:?}\ndiff: {d:#?}\n--- old\n{old_text}\n--- new\n{new_text}",
                    decide(&os, &req.query(), now),
                    decide(&ns, &req.query(), now)
                );
            }
        }
    }
    // Guards the generator: edits that never changed an answer would make the property vacuous.
    assert!(compared as u64 > cases() * 8 / 10, "only {compared} of {} generated pairs compiled", cases());
    assert!(changed > compared, "only {changed} changed answers over {compared} pairs");
}

#[test]
fn the_same_policy_written_another_way_reports_nothing() {
    for seed in 0..cases() / 2 {
        let mut rng = Rng(seed);
        let p = generate(&mut rng);
        let (flow_text, block_text) = (render(&p, false), render(&p, true));
        let (Some(a), Some(b)) = (compile(&flow_text), compile(&block_text)) else {
            panic!("seed {seed}: a generated policy does not compile\n{flow_text}\n---\n{block_text}");
        };
        let d = diff::diff(&a, &b, None);
        assert!(d.is_empty(), "seed {seed}: {d:#?}\n--- flow\n{flow_text}\n--- block\n{block_text}");
    }
}

#[test]
fn an_unrelated_edit_reports_only_what_it_changes() {
    // A role gaining an action reaches exactly the members bound to it where no deny applies.
    let mut rng = Rng(7);
    let mut p = generate(&mut rng);
    p.rules.clear();
    p.everyone.clear();
    p.roles = vec![
        Role { allow: vec!["conversation.view".into()], except: vec![], requestable: vec![] },
        Role { allow: vec!["customer.view".into()], except: vec![], requestable: vec![] },
        Role { allow: vec![], except: vec![], requestable: vec![] },
        Role { allow: vec![], except: vec![], requestable: vec![] },
    ];
    for (i, m) in p.members.iter_mut().enumerate() {
        m.disabled = false;
        m.expires = None;
        m.bindings =
            vec![Binding { id: None, role: i % 2, scope: "tenant".into(), from: None, until: None, when: None }];
    }
    let mut q = p.clone();
    q.roles[0].allow.push("customer.export".into());
    let d = diff::diff(&compile(&render(&p, false)).unwrap(), &compile(&render(&q, true)).unwrap(), None);
    let t = &d.tenants[0];
    assert_eq!(t.notes, vec!["role `r0` now allows customer.export".to_owned()]);
    let reported: Vec<&str> = t.members.iter().map(|m| m.member.as_str()).collect();
    let bound: Vec<&str> = p.members.iter().enumerate().filter(|(i, _)| i % 2 == 0).map(|(_, m)| &*m.id).collect();
    assert_eq!(reported, bound);
    for m in &t.members {
        assert_eq!(m.actions.len(), 1);
        assert_eq!(m.actions[0].action, "customer.export");
        assert!(m.actions[0].gained && !m.actions[0].lost);
    }
    assert!(d.gains() && !d.loses());
}
