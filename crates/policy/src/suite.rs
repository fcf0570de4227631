//! Policy tests (`*_test.yaml`, docs/policy-language.md): cases of requests and expected decisions that tenants
//! run in their own CI with `rolegate test DIR`.

use std::fmt::Write as _;
use std::sync::Arc;

use jiff::Timestamp;
use marked_yaml::Node;

use crate::diag::{Loc, Report};
use crate::parse::scalar_value;
use crate::yaml::{self, key, sloc};
use rolegate_engine::{Attrs, Context, Decision, Reason, Request, Resource, Snapshot, Value, decide};

const FILE_KEYS: &[&str] = &["tenant", "now", "description", "cases"];
const CASE_KEYS: &[&str] = &[
    "name",
    "principal",
    "action",
    "resource",
    "context",
    "now",
    "expect",
    "reason",
    "rule",
    "mask",
    "review",
    "requestable",
    "alert",
    "valid_until",
    "cache_until",
    "message",
];
const RESOURCE_KEYS: &[&str] = &["kind", "id", "unit", "attrs"];
const CONTEXT_KEYS: &[&str] = &["client_ip", "attrs"];

/// The expected outcome of a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
    /// A caller error (unknown action, kind mismatch).
    Invalid,
}

/// One test case.
#[derive(Clone, Debug)]
pub struct Case {
    /// Case name.
    pub name: String,
    /// Where it is written.
    pub at: Loc,
    /// The request.
    pub request: Request,
    /// The instant it is decided at.
    pub now: Timestamp,
    /// Expected outcome.
    pub expect: Expect,
    /// Optional expectations, checked when given.
    pub reason: Option<Reason>,
    /// Expected deciding binding or rule id.
    pub rule: Option<String>,
    /// Expected masked fields, compared as sets.
    pub mask: Option<Vec<String>>,
    /// Expected review flag.
    pub review: Option<bool>,
    /// Expected requestable flag.
    pub requestable: Option<bool>,
    /// Expected alert flag.
    pub alert: Option<bool>,
    /// Expected `valid_until`; `Some(None)` is `none`.
    pub valid_until: Option<Option<Timestamp>>,
    /// Expected `cache_until` (always set by a decision).
    pub cache_until: Option<Timestamp>,
    /// Expected message.
    pub message: Option<String>,
}

/// A parsed test file.
#[derive(Clone, Debug)]
pub struct SuiteFile {
    /// The file.
    pub file: Arc<str>,
    /// Its cases.
    pub cases: Vec<Case>,
}

/// Parses a test file; every format error is reported.
pub fn parse(file: &str, text: &str) -> Result<SuiteFile, Vec<crate::Diagnostic>> {
    let mut r = Report::new(Arc::from(file));
    let suite = parse_inner(&mut r, text);
    match suite {
        Some(cases) if !r.has_errors() => Ok(SuiteFile { file: r.file.clone(), cases }),
        _ => Err(r.diags),
    }
}

fn parse_inner(r: &mut Report, text: &str) -> Option<Vec<Case>> {
    let root = yaml::parse(r, text)?;
    let map = yaml::mapping(r, &root, "", FILE_KEYS)?;
    let tenant = map.get_node("tenant").and_then(|n| yaml::string(r, n, "tenant"));
    if tenant.is_none() && map.get_node("tenant").is_none() {
        r.error(yaml::loc(&root), "tenant", "missing key `tenant`");
    }
    let now = map.get_node("now").and_then(|n| yaml::instant(r, n, "now"));
    let Some(cases) = map.get_node("cases") else {
        r.error(yaml::loc(&root), "cases", "missing key `cases`");
        return None;
    };
    let seq = yaml::sequence(r, cases, "cases")?;
    let tenant = tenant?.value;
    let cases = seq.iter().enumerate().filter_map(|(i, n)| case(r, n, &format!("cases[{i}]"), &tenant, now)).collect();
    Some(cases)
}

fn case(r: &mut Report, node: &Node, path: &str, tenant: &str, file_now: Option<Timestamp>) -> Option<Case> {
    let m = yaml::mapping(r, node, path, CASE_KEYS)?;
    let mut get = |k: &str| {
        let n = m.get_node(k);
        if n.is_none() {
            r.error(yaml::loc(node), path, format!("missing key `{k}`"));
        }
        n
    };
    let (name, principal, action, resource, expect) =
        (get("name"), get("principal"), get("action"), get("resource"), get("expect"));
    let name = name.and_then(|n| yaml::string(r, n, &key(path, "name")));
    let principal = principal.and_then(|n| yaml::string(r, n, &key(path, "principal")));
    let action = action.and_then(|n| yaml::string(r, n, &key(path, "action")));
    let resource = resource.and_then(|n| resource_of(r, n, &key(path, "resource")));
    let context = m.get_node("context").map_or(Some(Context::default()), |n| context_of(r, n, &key(path, "context")));
    let expect = expect.and_then(|n| yaml::string(r, n, &key(path, "expect"))).and_then(|e| match e.value.as_str() {
        "allow" => Some(Expect::Allow),
        "deny" => Some(Expect::Deny),
        "invalid" => Some(Expect::Invalid),
        other => {
            r.error(
                e.at,
                key(path, "expect"),
                format!("unknown expectation `{other}` (expected `allow`, `deny` or `invalid`)"),
            );
            None
        }
    });
    let now = match m.get_node("now") {
        Some(n) => yaml::instant(r, n, &key(path, "now")),
        None if file_now.is_some() => file_now,
        None => {
            r.error(yaml::loc(node), key(path, "now"), "no `now` for this case or for the file");
            None
        }
    };
    let reason = m.get_node("reason").and_then(|n| yaml::string(r, n, &key(path, "reason"))).and_then(|s| {
        let reason = Reason::parse(&s.value);
        if reason.is_none() {
            let hint = rolegate_engine::suggest::hint(&s.value, Reason::ALL.iter().map(|r| r.as_str()));
            r.error(s.at, key(path, "reason"), format!("unknown reason `{}`{hint}", s.value));
        }
        reason
    });
    let flag = |r: &mut Report, k: &str| m.get_node(k).and_then(|n| yaml::boolean(r, n, &key(path, k)));
    let (review, requestable, alert) = (flag(r, "review"), flag(r, "requestable"), flag(r, "alert"));
    let text = |r: &mut Report, k: &str| m.get_node(k).and_then(|n| yaml::string(r, n, &key(path, k))).map(|s| s.value);
    let (rule, message) = (text(r, "rule"), text(r, "message"));
    let mask =
        m.get_node("mask").map(|n| yaml::strings(r, n, &key(path, "mask")).into_iter().map(|s| s.value).collect());
    let valid_until = match m.get_node("valid_until") {
        Some(Node::Scalar(s)) if s.as_str() == "none" => Some(None),
        Some(n) => yaml::instant(r, n, &key(path, "valid_until")).map(Some),
        None => None,
    };
    let cache_until = m.get_node("cache_until").and_then(|n| yaml::instant(r, n, &key(path, "cache_until")));
    let request = Request {
        tenant: tenant.to_owned(),
        principal: principal?.value,
        action: action?.value,
        resource: resource?,
        context: context?,
    };
    Some(Case {
        name: name?.value,
        at: yaml::loc(node),
        request,
        now: now?,
        expect: expect?,
        reason,
        rule,
        mask,
        review,
        requestable,
        alert,
        valid_until,
        cache_until,
        message,
    })
}

fn resource_of(r: &mut Report, node: &Node, path: &str) -> Option<Resource> {
    let m = yaml::mapping(r, node, path, RESOURCE_KEYS)?;
    let text = |r: &mut Report, k: &str| m.get_node(k).and_then(|n| yaml::string(r, n, &key(path, k))).map(|s| s.value);
    let kind = text(r, "kind");
    if kind.is_none() && m.get_node("kind").is_none() {
        r.error(yaml::loc(node), path, "missing key `kind`");
    }
    Some(Resource {
        kind: kind?,
        id: text(r, "id").unwrap_or_default(),
        unit: text(r, "unit").unwrap_or_default(),
        attrs: m.get_node("attrs").map(|n| attrs_of(r, n, &key(path, "attrs"))).unwrap_or_default(),
    })
}

fn context_of(r: &mut Report, node: &Node, path: &str) -> Option<Context> {
    let m = yaml::mapping(r, node, path, CONTEXT_KEYS)?;
    let client_ip = match m.get_node("client_ip").and_then(|n| yaml::string(r, n, &key(path, "client_ip"))) {
        None => None,
        Some(s) => match s.value.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                r.error(s.at, key(path, "client_ip"), format!("invalid IP address `{}`", s.value));
                return None;
            }
        },
    };
    let attrs = m.get_node("attrs").map(|n| attrs_of(r, n, &key(path, "attrs"))).unwrap_or_default();
    Some(Context { client_ip, attrs })
}

fn attrs_of(r: &mut Report, node: &Node, path: &str) -> Attrs {
    let Some(map) = node.as_mapping() else {
        r.error(yaml::loc(node), path, "expected a mapping of attribute names to values");
        return Attrs::default();
    };
    let mut out = Attrs::default();
    for (k, v) in map.iter() {
        let value = match v {
            Node::Scalar(s) => scalar_value(s.as_str(), s.may_coerce()),
            Node::Sequence(_) => {
                Value::List(yaml::strings(r, v, &key(path, k.as_str())).into_iter().map(|s| s.value).collect())
            }
            Node::Mapping(_) => {
                r.error(sloc(k), key(path, k.as_str()), "expected a value or a list of values");
                continue;
            }
        };
        out.insert(k.as_str(), value);
    }
    out
}

/// Runs a case; `Err` describes every unmet expectation.
pub fn run_case(snapshot: &Snapshot, case: &Case) -> Result<(), String> {
    let outcome = decide(snapshot, &case.request.query(), case.now);
    let d = match (outcome, case.expect) {
        (Err(_), Expect::Invalid) => return Ok(()),
        (Err(e), _) => {
            return Err(format!("expected {:?}, got a caller error: {e}", case.expect).to_lowercase());
        }
        (Ok(d), Expect::Invalid) => return Err(format!("expected invalid, got {}", summary(&d))),
        (Ok(d), _) => d,
    };
    let mut problems = Vec::new();
    if d.allowed != (case.expect == Expect::Allow) {
        problems.push(format!(
            "expected {}, got {}",
            if case.expect == Expect::Allow { "allow" } else { "deny" },
            summary(&d)
        ));
    }
    if let Some(reason) = case.reason.filter(|r| *r != d.reason) {
        problems.push(format!("reason: expected {reason}, got {}", d.reason));
    }
    if let Some(rule) = case.rule.as_deref().filter(|r| Some(*r) != d.rule.as_deref()) {
        problems.push(format!("rule: expected `{rule}`, got `{}`", d.rule.as_deref().unwrap_or("")));
    }
    if let Some(mask) = &case.mask {
        let mut want: Vec<&str> = mask.iter().map(String::as_str).collect();
        want.sort_unstable();
        want.dedup();
        let got: Vec<&str> = d.mask.iter().map(|m| m.as_ref()).collect();
        if want != got {
            problems.push(format!("mask: expected {want:?}, got {got:?}"));
        }
    }
    let flags = [
        ("review", case.review, d.review),
        ("requestable", case.requestable, d.requestable),
        ("alert", case.alert, d.alert),
    ];
    for (name, want, got) in flags {
        if want.is_some_and(|w| w != got) {
            problems.push(format!("{name}: expected {}, got {got}", !got));
        }
    }
    if let Some(vu) = case.valid_until.filter(|vu| *vu != d.valid_until) {
        let show = |t: Option<Timestamp>| t.map_or("none".to_owned(), |t| t.to_string());
        problems.push(format!("valid_until: expected {}, got {}", show(vu), show(d.valid_until)));
    }
    if let Some(cu) = case.cache_until.filter(|cu| Some(*cu) != d.cache_until) {
        let got = d.cache_until.map_or("none".to_owned(), |t| t.to_string());
        problems.push(format!("cache_until: expected {cu}, got {got}"));
    }
    if let Some(msg) = case.message.as_deref().filter(|m| Some(*m) != d.message.as_deref()) {
        problems.push(format!("message: expected `{msg}`, got `{}`", d.message.as_deref().unwrap_or("")));
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

fn summary(d: &Decision) -> String {
    let mut s = format!("{} ({}", if d.allowed { "allow" } else { "deny" }, d.reason);
    if let Some(rule) = &d.rule {
        let _ = write!(s, " by `{rule}`");
    }
    s.push(')');
    s
}

/// The result of running a directory's tests.
#[derive(Debug, Default)]
pub struct Outcome {
    /// One line per failure.
    pub failures: Vec<String>,
    /// Passed cases.
    pub passed: usize,
}

/// Runs the test file `text` (named `label` in failures) against `snapshot`, adding to `out`.
pub fn run_file(out: &mut Outcome, snapshot: &Snapshot, label: &str, text: &str) {
    let suite = match parse(label, text) {
        Ok(s) => s,
        Err(diags) => {
            out.failures.extend(diags.iter().filter(|d| d.is_error()).map(|d| d.to_string()));
            return;
        }
    };
    for case in &suite.cases {
        if snapshot.tenant(&case.request.tenant).is_none() {
            out.failures.push(format!(
                "{label}:{}: {}: tenant `{}` is not loaded",
                case.at.line, case.name, case.request.tenant
            ));
            continue;
        }
        match run_case(snapshot, case) {
            Ok(()) => out.passed += 1,
            Err(why) => out.failures.push(format!("{label}:{}: {}: {why}", case.at.line, case.name)),
        }
    }
}
