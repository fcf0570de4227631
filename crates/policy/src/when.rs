//! Parsing `when` conditions (docs/policy-language.md, "Conditions"). Every name, CIDR, zone and time is checked here.

use ipnet::IpNet;
use jiff::tz::TimeZone;
use marked_yaml::Node;

use super::diag::{Report, Spanned};
use super::document::{ClauseDoc, WhenDoc};
use super::yaml::{self, index, key};
use rolegate_engine::{AttrRef, EVERY_DAY, Lit, Op, Schedule, Side, Test, canonical_ip, canonical_net};

const WHEN_KEYS: &[&str] = &["principal", "resource", "context", "ip", "relation", "in_unit", "schedule", "any", "not"];
const OP_KEYS: &[&str] = &["lt", "le", "gt", "ge", "contains", "present", "same_as"];
const SCHEDULE_KEYS: &[&str] = &["tz", "days", "from", "to"];
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Deepest nesting of `when` maps through `not` and `any` (the outer `when` is level 1). The
/// compiler and the engine walk conditions recursively; this bounds their stack use.
pub const MAX_WHEN_DEPTH: usize = 32;

/// Parses a `when` map; `None` when any part of it is wrong.
pub fn parse(r: &mut Report, node: &Node, path: &str) -> Option<WhenDoc> {
    nested(r, node, path, 1)
}

/// Parses a `when` map at nesting level `depth`.
fn nested(r: &mut Report, node: &Node, path: &str, depth: usize) -> Option<WhenDoc> {
    if depth > MAX_WHEN_DEPTH {
        let msg = format!("conditions nested deeper than {MAX_WHEN_DEPTH} levels of `not` and `any`");
        r.error(yaml::loc(node), path, msg);
        return None;
    }
    let map = yaml::mapping(r, node, path, WHEN_KEYS)?;
    if map.is_empty() {
        r.error(yaml::loc(node), path, "an empty `when` always holds; remove it or add a condition");
        return None;
    }
    let before = r.diags.len();
    let mut clauses = Vec::new();
    for (k, v) in map.iter() {
        if !WHEN_KEYS.contains(&k.as_str()) {
            continue;
        }
        let p = key(path, k.as_str());
        let clause = match k.as_str() {
            "principal" => tests(r, v, &p, false).map(ClauseDoc::Principal),
            "resource" => tests(r, v, &p, false).map(ClauseDoc::Resource),
            "context" => tests(r, v, &p, true).map(ClauseDoc::Context),
            "ip" => networks(r, v, &p).map(ClauseDoc::Ip),
            "relation" => yaml::string(r, v, &p).map(|s| ClauseDoc::Relation(s.value)),
            "in_unit" => yaml::string(r, v, &p).map(|s| ClauseDoc::InUnit(s, p.clone())),
            "schedule" => schedule(r, v, &p).map(ClauseDoc::Schedule),
            "any" => any(r, v, &p, depth).map(ClauseDoc::Any),
            _ => nested(r, v, &p, depth + 1).map(|w| ClauseDoc::Not(Box::new(w))),
        };
        clauses.extend(clause);
    }
    (r.diags.len() == before).then_some(WhenDoc { clauses })
}

fn any(r: &mut Report, node: &Node, path: &str, depth: usize) -> Option<Vec<WhenDoc>> {
    let seq = yaml::sequence(r, node, path)?;
    if seq.is_empty() {
        r.error(yaml::loc(node), path, "`any` needs at least one condition");
        return None;
    }
    let parsed: Vec<_> = seq.iter().enumerate().map(|(i, n)| nested(r, n, &index(path, i), depth + 1)).collect();
    parsed.into_iter().collect()
}

/// Attribute tests; `context` is true for `context:`, whose `client_ip` is the client address.
fn tests(r: &mut Report, node: &Node, path: &str, context: bool) -> Option<Vec<(String, Test)>> {
    let Some(map) = node.as_mapping() else {
        r.error(yaml::loc(node), path, "expected a mapping of attribute names to tests");
        return None;
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (k, v) in map.iter() {
        let lit: LitFn = if context && k.as_str() == "client_ip" { ip_lit } else { lit };
        match test(r, v, &key(path, k.as_str()), lit) {
            Some(t) => out.push((k.as_str().to_owned(), t)),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn lit(r: &mut Report, node: &Node, path: &str) -> Option<Lit> {
    match node.as_scalar() {
        Some(s) => Some(Lit::new(s.as_str(), s.may_coerce())),
        None => {
            r.error(yaml::loc(node), path, "expected a value");
            None
        }
    }
}

/// Reads a literal of an attribute test.
type LitFn = fn(&mut Report, &Node, &str) -> Option<Lit>;

/// A literal compared with `context.client_ip`, in the canonical form requests are compared in
/// (an IPv4-mapped address is its IPv4 address); one that is no address could never match.
fn ip_lit(r: &mut Report, node: &Node, path: &str) -> Option<Lit> {
    let s = yaml::string(r, node, path)?;
    match s.value.parse() {
        Ok(ip) => Some(Lit::new(&canonical_ip(ip).to_string(), false)),
        Err(_) => {
            r.error(s.at, path, format!("`{}` is not an IP address (use `ip:` to test networks)", s.value));
            None
        }
    }
}

fn test(r: &mut Report, node: &Node, path: &str, lit: LitFn) -> Option<Test> {
    match node {
        Node::Scalar(_) => lit(r, node, path).map(Test::Equals),
        Node::Sequence(seq) => {
            let lits: Vec<_> = seq.iter().enumerate().map(|(i, n)| lit(r, n, &index(path, i))).collect();
            lits.into_iter().collect::<Option<Vec<_>>>().map(Test::OneOf)
        }
        Node::Mapping(_) => {
            let map = yaml::mapping(r, node, path, OP_KEYS)?;
            let mut ops = Vec::new();
            for (k, v) in map.iter() {
                let p = key(path, k.as_str());
                let op = match k.as_str() {
                    "lt" => yaml::number(r, v, &p).map(Op::Lt),
                    "le" => yaml::number(r, v, &p).map(Op::Le),
                    "gt" => yaml::number(r, v, &p).map(Op::Gt),
                    "ge" => yaml::number(r, v, &p).map(Op::Ge),
                    "contains" => yaml::string(r, v, &p).map(|s| Op::Contains(s.value)),
                    "present" => yaml::boolean(r, v, &p).map(Op::Present),
                    "same_as" => attr_ref(r, v, &p).map(Op::SameAs),
                    _ => return None,
                };
                ops.push(op?);
            }
            if ops.is_empty() {
                r.error(yaml::loc(node), path, format!("expected one of the operators {}", OP_KEYS.join(", ")));
                return None;
            }
            Some(Test::Ops(ops))
        }
    }
}

/// `principal.NAME`, `resource.NAME` or `context.NAME`: attributes are flat, so `NAME` has no dot.
fn attr_ref(r: &mut Report, node: &Node, path: &str) -> Option<AttrRef> {
    let s = yaml::string(r, node, path)?;
    let (side, name) = s.value.split_once('.').unwrap_or((s.value.as_str(), ""));
    let side = match side {
        "principal" => Side::Principal,
        "resource" => Side::Resource,
        "context" => Side::Context,
        _ => {
            let msg = format!(
                "`{}` names no attribute of the call (expected `principal.NAME`, `resource.NAME` or `context.NAME`)",
                s.value
            );
            r.error(s.at, path, msg);
            return None;
        }
    };
    if name.is_empty() || name.contains('.') || name.trim() != name {
        let msg =
            format!("`{}` is not an attribute path (expected `{}.NAME` with one plain name)", s.value, side.as_str());
        r.error(s.at, path, msg);
        return None;
    }
    Some(AttrRef { side, name: name.into() })
}

fn networks(r: &mut Report, node: &Node, path: &str) -> Option<Vec<IpNet>> {
    let items: Vec<Spanned<String>> = match node {
        Node::Scalar(_) => yaml::string(r, node, path).into_iter().collect(),
        _ => yaml::strings(r, node, path),
    };
    let mut nets = Vec::new();
    let mut ok = !items.is_empty();
    for (i, item) in items.iter().enumerate() {
        match parse_net(&item.value).map(canonical_net) {
            Some(Ok(n)) => nets.push(n),
            Some(Err(e)) => {
                r.error(item.at, index(path, i), e.to_string());
                ok = false;
            }
            None => {
                r.error(
                    item.at,
                    index(path, i),
                    format!("invalid CIDR `{}` (e.g. `203.0.113.0/24` or `2001:db8::/32`)", item.value),
                );
                ok = false;
            }
        }
    }
    ok.then_some(nets)
}

/// Parses a network, accepting a bare address as a single-host network.
pub fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>().ok().or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

fn schedule(r: &mut Report, node: &Node, path: &str) -> Option<Schedule> {
    let map = yaml::mapping(r, node, path, SCHEDULE_KEYS)?;
    let before = r.diags.len();
    let mut need = |k: &str| {
        let n = map.get_node(k);
        if n.is_none() {
            r.error(yaml::loc(node), path, format!("missing key `{k}`"));
        }
        n
    };
    let (tz, from, to) = (need("tz"), need("from"), need("to"));
    let tz = tz.and_then(|n| yaml::string(r, n, &key(path, "tz"))).and_then(|s| match TimeZone::get(&s.value) {
        Ok(tz) => Some((s.value, tz)),
        Err(_) => {
            r.error(
                s.at,
                key(path, "tz"),
                format!("unknown time zone `{}` (expected an IANA name such as `Asia/Shanghai`)", s.value),
            );
            None
        }
    });
    let from = from.and_then(|n| time_of_day(r, n, &key(path, "from")));
    let to = to.and_then(|n| time_of_day(r, n, &key(path, "to")));
    let days = match map.get_node("days") {
        None => EVERY_DAY,
        Some(n) => days(r, n, &key(path, "days")),
    };
    if let (Some(f), Some(t)) = (from, to)
        && f == t
    {
        let msg = "`from` and `to` are equal: the window would be empty";
        r.error(yaml::loc(node), key(path, "to"), msg);
    }
    if r.diags.len() != before {
        return None;
    }
    let (tz_name, tz) = tz?;
    Some(Schedule { tz_name, tz, days, from: from?, to: to? })
}

fn days(r: &mut Report, node: &Node, path: &str) -> u8 {
    let mut mask = 0u8;
    for (i, d) in yaml::strings(r, node, path).into_iter().enumerate() {
        match DAYS.iter().position(|x| *x == d.value.to_ascii_lowercase()) {
            Some(bit) => mask |= 1 << bit,
            None => r.error(
                d.at,
                index(path, i),
                format!("unknown day `{}` (expected one of {})", d.value, DAYS.join(", ")),
            ),
        }
    }
    if mask == 0 {
        r.error(yaml::loc(node), path, "list at least one day");
    }
    mask
}

/// `HH:MM` or `HH:MM:SS` → seconds after midnight.
fn time_of_day(r: &mut Report, node: &Node, path: &str) -> Option<u32> {
    let s = yaml::string(r, node, path)?;
    let parts: Vec<_> = s.value.split(':').map(|p| p.parse::<u32>().ok().filter(|_| p.len() == 2)).collect();
    let secs = match parts.as_slice() {
        [Some(h), Some(m)] if *h < 24 && *m < 60 => Some(h * 3600 + m * 60),
        [Some(h), Some(m), Some(sec)] if *h < 24 && *m < 60 && *sec < 60 => Some(h * 3600 + m * 60 + sec),
        _ => None,
    };
    if secs.is_none() {
        r.error(s.at, path, format!("invalid time `{}` (expected `HH:MM`, e.g. `09:00`)", s.value));
    }
    secs
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rolegate_engine::{Attrs, Context, Query, Resource, Snapshot, Value, decide};

    const DOC: &str = "tenant: shop
schema:
  customer: [view]
roles:
  viewer: {allow: [customer.view]}
members:
  - id: ann
    attrs: {email: ann@shop.example, teams: [red, blue]}
    bindings:
      - {role: viewer, scope: tenant, when: {resource: {owner_email: {same_as: principal.email}}}}
      - {role: viewer, scope: tenant, when: {principal: {teams: {same_as: resource.team}}}}
";

    fn errors(text: &str) -> Vec<String> {
        let (_, diags) = crate::parse_str("shop.yaml", text, None);
        diags.iter().filter(|d| d.is_error()).map(ToString::to_string).collect()
    }

    fn allowed(attrs: &[(&str, Value)]) -> bool {
        let (doc, diags) = crate::parse_str("shop.yaml", DOC, None);
        assert!(diags.is_empty(), "{diags:?}");
        let mut snapshot = Snapshot::default();
        snapshot.insert(Arc::new(crate::compile(&doc.unwrap(), None, 1).unwrap()));
        let attrs: Attrs = attrs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        let resource = Resource { kind: "customer".into(), id: "c1".into(), unit: String::new(), attrs };
        let q = Query {
            tenant: "shop",
            principal: "ann",
            action: "customer.view",
            resource: &resource,
            context: &Context::default(),
        };
        decide(&snapshot, &q, jiff::Timestamp::UNIX_EPOCH).unwrap().allowed
    }

    #[test]
    fn same_as_compares_a_resource_attribute_with_the_members() {
        let text = |s: &str| Value::Text(s.into());
        assert!(allowed(&[("owner_email", text("ann@shop.example"))]));
        assert!(!allowed(&[("owner_email", text("bob@shop.example"))]));
        assert!(!allowed(&[]), "a missing attribute makes same_as false");
        assert!(allowed(&[("team", text("blue"))]), "a member's list holding the resource's text");
        assert!(!allowed(&[("team", text("green"))]));
    }

    #[test]
    fn same_as_with_an_unknown_side_or_path_is_a_located_error() {
        let with = |r: &str| DOC.replace("principal.email", r);
        let unknown_side = errors(&with("member.email"));
        assert_eq!(unknown_side.len(), 1, "{unknown_side:?}");
        assert!(
            unknown_side[0].starts_with(
                "shop.yaml:10:80: error: members[0].bindings[0].when.resource.owner_email.same_as: `member.email` names \
                 no attribute of the call"
            ),
            "{unknown_side:?}"
        );
        for bad in ["principal", "principal.", "principal.contact.email"] {
            let e = errors(&with(bad));
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
            assert!(e[0].contains("when.resource.owner_email.same_as: `"), "{e:?}");
            assert!(e[0].contains("is not an attribute path"), "{e:?}");
        }
    }
}
