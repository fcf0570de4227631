//! YAML text → [`Document`], reporting every error with line and key.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use marked_yaml::Node;
use marked_yaml::types::MarkedMappingNode;

use super::diag::{Loc, Report, Spanned};
use super::document::*;
use super::when;
use super::yaml::{self, index, key, sloc};
use rolegate_engine::{Attrs, Effect, Value};

const TENANT_KEYS: &[&str] =
    &["tenant", "template", "description", "max_staleness", "schema", "roles", "units", "members", "everyone", "rules"];
const TEMPLATE_KEYS: &[&str] = &["description", "max_staleness", "schema", "roles", "everyone", "rules"];
const ROLE_KEYS: &[&str] = &["allow", "extends", "except", "requestable", "description"];
const UNIT_KEYS: &[&str] = &["id", "parent", "description"];
const MEMBER_KEYS: &[&str] = &["id", "status", "expires", "units", "attrs", "bindings", "description"];
const BINDING_KEYS: &[&str] = &["id", "role", "scope", "from", "until", "when", "description"];
const RULE_KEYS: &[&str] = &["id", "effect", "actions", "when", "fields", "alert", "message", "description"];
/// Member attribute names the conditions reserve.
const RESERVED_ATTRS: &[&str] = &["id", "units"];

/// Parses one document. `template_name` is `Some(stem)` for a file under `templates/`.
/// Returns `None` when the document is unusable; `report` holds every error found.
pub fn document(report: &mut Report, text: &str, template_name: Option<&str>) -> Option<Document> {
    let root = yaml::parse(report, text)?;
    from_root(report, &root, template_name)
}

/// [`document`] from its parsed YAML.
pub(crate) fn from_root(report: &mut Report, root: &Node, template_name: Option<&str>) -> Option<Document> {
    let kind = if template_name.is_some() { DocKind::Template } else { DocKind::Tenant };
    let allowed = if template_name.is_some() { TEMPLATE_KEYS } else { TENANT_KEYS };
    let map = yaml::mapping(report, root, "", allowed)?;
    let name = match template_name {
        Some(stem) => Spanned { value: stem.to_owned(), at: Loc { line: 1, col: 1 } },
        None => match map.get_node("tenant") {
            Some(n) => yaml::string(report, n, "tenant")?,
            None => {
                report.error(Loc { line: 1, col: 1 }, "tenant", "missing key `tenant`");
                return None;
            }
        },
    };
    let mut doc = Document {
        file: report.file.clone(),
        kind,
        name,
        template: map.get_node("template").and_then(|n| yaml::string(report, n, "template")),
        schema: Vec::new(),
        roles: Vec::new(),
        units: Vec::new(),
        members: Vec::new(),
        everyone: Vec::new(),
        rules: Vec::new(),
        max_staleness: map.get_node("max_staleness").and_then(|n| yaml::duration(report, n, "max_staleness")),
        head_print: head_print(map),
    };
    if let Some(n) = map.get_node("schema") {
        doc.schema = schema(report, n);
    }
    if let Some(n) = map.get_node("roles") {
        doc.roles = roles(report, n);
    }
    if let Some(n) = map.get_node("units") {
        doc.units = each(report, n, "units", unit);
    }
    if let Some(n) = map.get_node("members") {
        doc.members = each(report, n, "members", member);
    }
    if let Some(n) = map.get_node("everyone") {
        doc.everyone = each(report, n, "everyone", binding);
    }
    if let Some(n) = map.get_node("rules") {
        doc.rules = each(report, n, "rules", rule);
    }
    Some(doc)
}

/// The print of every top-level entry but `members` and `description`, in document order.
fn head_print(map: &MarkedMappingNode) -> u64 {
    let mut h = DefaultHasher::new();
    for (k, v) in map.iter().filter(|(k, _)| !matches!(k.as_str(), "members" | "description")) {
        k.as_str().hash(&mut h);
        yaml::print(v, &mut h);
    }
    h.finish()
}

/// Parses every element of a list, keeping the good ones.
fn each<T>(r: &mut Report, node: &Node, path: &str, f: fn(&mut Report, &Node, &str) -> Option<T>) -> Vec<T> {
    let Some(seq) = yaml::sequence(r, node, path) else {
        return Vec::new();
    };
    seq.iter().enumerate().filter_map(|(i, n)| f(r, n, &index(path, i))).collect()
}

fn required<'n>(r: &mut Report, map: &'n MarkedMappingNode, node: &Node, path: &str, k: &str) -> Option<&'n Node> {
    let n = map.get_node(k);
    if n.is_none() {
        r.error(yaml::loc(node), path, format!("missing key `{k}`"));
    }
    n
}

fn schema(r: &mut Report, node: &Node) -> Vec<SchemaKind> {
    let Some(map) = node.as_mapping() else {
        r.error(yaml::loc(node), "schema", "expected a mapping of resource kinds to their verbs");
        return Vec::new();
    };
    let mut kinds = Vec::new();
    for (k, v) in map.iter() {
        let path = key("schema", k.as_str());
        if !is_name(k.as_str()) {
            r.error(sloc(k), &path, format!("invalid kind name `{}` (letters, digits, `_` and `-` only)", k.as_str()));
            continue;
        }
        let verbs = yaml::strings(r, v, &path);
        for verb in &verbs {
            if !is_name(&verb.value) {
                r.error(verb.at, &path, format!("invalid verb `{}` (letters, digits, `_` and `-` only)", verb.value));
            }
        }
        kinds.push(SchemaKind { name: Spanned { value: k.as_str().to_owned(), at: sloc(k) }, verbs });
    }
    kinds
}

/// Names of kinds, verbs and attributes: no dots or wildcards, so patterns stay unambiguous.
pub fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

fn roles(r: &mut Report, node: &Node) -> Vec<RoleDoc> {
    let Some(map) = node.as_mapping() else {
        r.error(yaml::loc(node), "roles", "expected a mapping of role names to roles");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in map.iter() {
        let path = key("roles", k.as_str());
        let Some(m) = yaml::mapping(r, v, &path, ROLE_KEYS) else {
            continue;
        };
        let mut list =
            |field: &str| m.get_node(field).map(|n| yaml::strings(r, n, &key(&path, field))).unwrap_or_default();
        out.push(RoleDoc {
            name: Spanned { value: k.as_str().to_owned(), at: sloc(k) },
            allow: list("allow"),
            extends: list("extends"),
            except: list("except"),
            requestable: list("requestable"),
        });
    }
    out
}

fn unit(r: &mut Report, node: &Node, path: &str) -> Option<UnitDoc> {
    let m = yaml::mapping(r, node, path, UNIT_KEYS)?;
    let id_node = required(r, m, node, path, "id")?;
    let id = yaml::string(r, id_node, &key(path, "id"))?;
    let parent = m.get_node("parent").and_then(|n| yaml::string(r, n, &key(path, "parent")));
    Some(UnitDoc { id, parent })
}

/// Parses one member mapping; errors are reported under `path`.
pub fn member(r: &mut Report, node: &Node, path: &str) -> Option<MemberDoc> {
    let m = yaml::mapping(r, node, path, MEMBER_KEYS)?;
    let id_node = required(r, m, node, path, "id")?;
    let id = yaml::string(r, id_node, &key(path, "id"))?;
    let status = match m.get_node("status").and_then(|n| yaml::string(r, n, &key(path, "status"))) {
        None => Status::Active,
        Some(s) if s.value == "active" => Status::Active,
        Some(s) if s.value == "disabled" => Status::Disabled,
        Some(s) => {
            r.error(
                s.at,
                key(path, "status"),
                format!("unknown status `{}` (expected `active` or `disabled`)", s.value),
            );
            Status::Active
        }
    };
    let expires = m.get_node("expires").and_then(|n| yaml::instant(r, n, &key(path, "expires")));
    let units = m.get_node("units").map(|n| yaml::strings(r, n, &key(path, "units"))).unwrap_or_default();
    let attrs = m.get_node("attrs").map(|n| attrs(r, n, &key(path, "attrs"))).unwrap_or_default();
    let bindings = m.get_node("bindings").map(|n| each(r, n, &key(path, "bindings"), binding)).unwrap_or_default();
    let mut h = DefaultHasher::new();
    yaml::print(node, &mut h);
    Some(MemberDoc { id, status, expires, units, attrs, bindings, print: h.finish() })
}

fn attrs(r: &mut Report, node: &Node, path: &str) -> Attrs {
    let Some(map) = node.as_mapping() else {
        r.error(yaml::loc(node), path, "expected a mapping of attribute names to values");
        return Attrs::default();
    };
    let mut out = Attrs::default();
    for (k, v) in map.iter() {
        let p = key(path, k.as_str());
        if RESERVED_ATTRS.contains(&k.as_str()) {
            r.error(sloc(k), &p, format!("`{}` is reserved: it is the member's own {}", k.as_str(), k.as_str()));
            continue;
        }
        let value = match v {
            Node::Scalar(s) if s.as_str().is_empty() => {
                r.error(sloc(s), &p, "must not be empty");
                continue;
            }
            Node::Scalar(s) => scalar_value(s.as_str(), s.may_coerce()),
            Node::Sequence(_) => Value::List(yaml::strings(r, v, &p).into_iter().map(|s| s.value).collect()),
            Node::Mapping(_) => {
                r.error(yaml::loc(v), &p, "expected a value or a list of values");
                continue;
            }
        };
        out.insert(k.as_str(), value);
    }
    out
}

/// Types a YAML scalar: an unquoted integer, number or boolean becomes one, anything else text.
pub fn scalar_value(s: &str, coerce: bool) -> Value {
    if coerce {
        if let Ok(i) = s.parse::<i64>() {
            return Value::Int(i);
        }
        if let Ok(n) = s.parse::<f64>().map_err(drop).and_then(|n| if n.is_finite() { Ok(n) } else { Err(()) }) {
            return Value::Number(n);
        }
        match s {
            "true" => return Value::Flag(true),
            "false" => return Value::Flag(false),
            _ => {}
        }
    }
    Value::Text(s.to_owned())
}

fn binding(r: &mut Report, node: &Node, path: &str) -> Option<BindingDoc> {
    let m = yaml::mapping(r, node, path, BINDING_KEYS)?;
    let id = m.get_node("id").and_then(|n| yaml::string(r, n, &key(path, "id")));
    let role = required(r, m, node, path, "role").and_then(|n| yaml::string(r, n, &key(path, "role")));
    let scope = required(r, m, node, path, "scope").and_then(|n| scope(r, n, &key(path, "scope")));
    let from = m.get_node("from").and_then(|n| yaml::instant(r, n, &key(path, "from")));
    let until = m.get_node("until").and_then(|n| yaml::instant(r, n, &key(path, "until")));
    if let (Some(f), Some(u), Some(n)) = (from, until, m.get_node("until"))
        && u <= f
    {
        let msg = format!("`until` ({u}) must be after `from` ({f})");
        r.error(yaml::loc(n), key(path, "until"), msg);
    }
    let when = m.get_node("when").and_then(|n| when::parse(r, n, &key(path, "when")));
    Some(BindingDoc { at: yaml::loc(node), id, role: role?, scope: scope?, from, until, when })
}

fn scope(r: &mut Report, node: &Node, path: &str) -> Option<ScopeDoc> {
    const EXPECTED: &str = "expected `tenant`, `own_units`, `{unit: U}` or `{relation: ATTR}`";
    match node {
        Node::Scalar(s) => match s.as_str() {
            "tenant" => Some(ScopeDoc::Tenant),
            "own_units" => Some(ScopeDoc::OwnUnits),
            other => {
                let hint = rolegate_engine::suggest::hint(other, ["tenant", "own_units"]);
                r.error(sloc(s), path, format!("unknown scope `{other}`{hint}; {EXPECTED}"));
                None
            }
        },
        Node::Mapping(m) if m.len() == 1 => {
            let m = yaml::mapping(r, node, path, &["unit", "relation"])?;
            if let Some(n) = m.get_node("unit") {
                return yaml::string(r, n, &key(path, "unit")).map(ScopeDoc::Unit);
            }
            let rel = yaml::string(r, m.get_node("relation")?, &key(path, "relation"))?;
            Some(ScopeDoc::Relation(rel.value))
        }
        _ => {
            r.error(yaml::loc(node), path, EXPECTED);
            None
        }
    }
}

fn rule(r: &mut Report, node: &Node, path: &str) -> Option<RuleDoc> {
    let m = yaml::mapping(r, node, path, RULE_KEYS)?;
    let id = required(r, m, node, path, "id").and_then(|n| yaml::string(r, n, &key(path, "id")));
    let effect = required(r, m, node, path, "effect").and_then(|n| yaml::string(r, n, &key(path, "effect")));
    let effect = effect.and_then(|e| match e.value.as_str() {
        "deny" => Some(Effect::Deny),
        "mask" => Some(Effect::Mask),
        "review" => Some(Effect::Review),
        other => {
            let hint = rolegate_engine::suggest::hint(other, ["deny", "mask", "review"]);
            r.error(e.at, key(path, "effect"), format!("unknown effect `{other}`{hint}"));
            None
        }
    });
    let actions = required(r, m, node, path, "actions").map(|n| {
        let list = yaml::strings(r, n, &key(path, "actions"));
        if list.is_empty() && n.as_sequence().is_some_and(|s| s.is_empty()) {
            r.error(yaml::loc(n), key(path, "actions"), "a rule without actions never applies: list at least one");
        }
        list
    });
    let fields: Vec<String> = m
        .get_node("fields")
        .map(|n| yaml::strings(r, n, &key(path, "fields")))
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.value)
        .collect();
    match (effect, m.get_node("fields")) {
        (Some(Effect::Mask), _) if fields.is_empty() => {
            r.error(yaml::loc(node), key(path, "fields"), "a `mask` rule needs at least one field");
        }
        (Some(Effect::Deny | Effect::Review), Some(n)) => {
            r.error(yaml::loc(n), key(path, "fields"), "only `mask` rules take `fields`");
        }
        _ => {}
    }
    let when = m.get_node("when").and_then(|n| when::parse(r, n, &key(path, "when")));
    let alert = m.get_node("alert").and_then(|n| yaml::boolean(r, n, &key(path, "alert"))).unwrap_or(false);
    let message = m.get_node("message").and_then(|n| yaml::string(r, n, &key(path, "message"))).map(|s| s.value);
    Some(RuleDoc { id: id?, effect: effect?, actions: actions?, when, fields, alert, message })
}
