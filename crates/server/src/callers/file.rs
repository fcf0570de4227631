//! The callers file (docs/operations.md, "Securing rolegate"): which caller may ask about which
//! tenants through which API groups.
//!
//! ```yaml
//! callers:
//!   - id: spiffe://cluster.local/ns/inbox/sa/inbox-api   # URI SAN of the client certificate
//!     tenants: ["*"]
//!     apis: [check, plan]
//!   - id: dns:crm-export.crm.svc                           # DNS SAN
//!     tenants: [acme-*, globex]
//!     apis: [check, plan, inspect]
//!   - id: uid:1000                                         # a Unix-socket peer
//!     tenants: ["*"]
//!     apis: ["*"]
//! ```

use std::path::Path;

use marked_yaml::{Node, Span};

use super::Api;

/// Entries at most: the file is read on every change and scanned on every call.
pub const MAX_CALLERS: usize = 10_000;
/// Tenant patterns of one entry at most.
pub const MAX_PATTERNS: usize = 1_000;
/// The file's size at most.
pub const MAX_FILE_BYTES: usize = 4 << 20;

/// One caller: who, and what it may ask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The identity it matches: a URI SAN, `dns:NAME` or `uid:N`.
    pub id: String,
    /// Tenant patterns: an exact id, or `*` standing for any run of characters.
    pub tenants: Vec<String>,
    /// The API groups it may call.
    pub apis: Vec<Api>,
}

/// Every entry of a callers file, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// The entries.
    pub entries: Vec<Entry>,
}

/// Parses a callers file's text; every error names `path` and its line.
pub fn parse(path: &Path, text: &str) -> Result<Table, Vec<String>> {
    let at = |span: &Span| format!("{}:{}", path.display(), span.start().map_or(0, |m| m.line()));
    if text.len() > MAX_FILE_BYTES {
        return Err(vec![format!("{}: over {MAX_FILE_BYTES} bytes", path.display())]);
    }
    let root = marked_yaml::parse_yaml(0, text).map_err(|e| vec![format!("{}: invalid YAML: {e}", path.display())])?;
    let Some(map) = root.as_mapping() else {
        return Err(vec![format!("{}: expected a mapping with `callers:`", at(root.span()))]);
    };
    let mut errors = Vec::new();
    let mut table = Table::default();
    for (k, _) in map.iter() {
        if k.as_str() != "callers" {
            errors.push(format!("{}: unknown key `{}` (expected `callers`)", at(k.span()), k.as_str()));
        }
    }
    let Some(list) = map.get_node("callers") else {
        errors.push(format!("{}: `callers:` is missing", at(root.span())));
        return Err(errors);
    };
    let Some(list) = list.as_sequence() else {
        errors.push(format!("{}: `callers` must be a list", at(list.span())));
        return Err(errors);
    };
    if list.len() > MAX_CALLERS {
        errors.push(format!("{}: over {MAX_CALLERS} callers", at(root.span())));
        return Err(errors);
    }
    for node in list.iter() {
        match entry(node, &at) {
            Ok(e) if table.entries.iter().any(|o| o.id == e.id) => {
                errors.push(format!("{}: caller `{}` is listed twice", at(node.span()), e.id))
            }
            Ok(e) => table.entries.push(e),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() { Ok(table) } else { Err(errors) }
}

/// One entry of the list.
fn entry(node: &Node, at: &impl Fn(&Span) -> String) -> Result<Entry, Vec<String>> {
    let Some(map) = node.as_mapping() else {
        return Err(vec![format!("{}: a caller is a mapping with `id`, `tenants` and `apis`", at(node.span()))]);
    };
    let mut errors = Vec::new();
    for (k, _) in map.iter() {
        if !["id", "tenants", "apis"].contains(&k.as_str()) {
            let hint = rolegate_engine::suggest::hint(k.as_str(), ["id", "tenants", "apis"]);
            errors.push(format!("{}: unknown key `{}`{hint}", at(k.span()), k.as_str()));
        }
    }
    let id = match map.get_scalar("id").map(|s| s.as_str().trim()) {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => {
            errors.push(format!("{}: `id` is required: a URI SAN, `dns:NAME` or `uid:N`", at(node.span())));
            String::new()
        }
    };
    let tenants = strings(map.get_node("tenants"), "tenants", node, at, &mut errors);
    if tenants.len() > MAX_PATTERNS {
        errors.push(format!("{}: over {MAX_PATTERNS} tenant patterns", at(node.span())));
    }
    let mut apis = Vec::new();
    for name in strings(map.get_node("apis"), "apis", node, at, &mut errors) {
        match name.as_str() {
            "*" => apis.extend(Api::GRANTED),
            other => match Api::GRANTED.into_iter().find(|a| a.name() == other) {
                Some(api) => apis.push(api),
                None => errors.push(format!(
                    "{}: unknown API group `{other}` (expected `check`, `plan`, `inspect` or `*`)",
                    at(node.span())
                )),
            },
        }
    }
    if errors.is_empty() { Ok(Entry { id, tenants, apis }) } else { Err(errors) }
}

/// A non-empty list of non-empty strings under `key`.
fn strings(
    value: Option<&Node>,
    key: &str,
    owner: &Node,
    at: &impl Fn(&Span) -> String,
    errors: &mut Vec<String>,
) -> Vec<String> {
    let Some(value) = value else {
        errors.push(format!("{}: `{key}` is required (a list; `[\"*\"]` for all)", at(owner.span())));
        return Vec::new();
    };
    let Some(list) = value.as_sequence() else {
        errors.push(format!("{}: `{key}` must be a list", at(value.span())));
        return Vec::new();
    };
    let mut out = Vec::new();
    let before = errors.len();
    for item in list.iter() {
        match item.as_scalar().map(|s| s.as_str().trim()) {
            Some(s) if !s.is_empty() => out.push(s.to_owned()),
            _ => errors.push(format!("{}: `{key}` holds non-empty strings only", at(item.span()))),
        }
    }
    if out.is_empty() && errors.len() == before {
        errors.push(format!(
            "{}: `{key}` is empty, so the caller could ask nothing; remove it instead",
            at(value.span())
        ));
    }
    out
}

/// Whether `tenant` matches `pattern`, where `*` stands for any run of characters.
pub fn matches(pattern: &str, tenant: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = tenant.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Table, Vec<String>> {
        parse(Path::new("callers.yaml"), text)
    }

    #[test]
    fn the_design_example_parses() {
        let table = parse_text(
            "callers:
  - id: spiffe://cluster.local/ns/inbox/sa/inbox-api
    tenants: [\"*\"]
    apis: [check, plan]
  - id: dns:crm-export.crm.svc
    tenants: [acme-*, globex]
    apis: [check, plan, inspect]
  - id: uid:1000
    tenants: [\"*\"]
    apis: [\"*\"]
",
        )
        .unwrap();
        assert_eq!(table.entries.len(), 3);
        assert_eq!(table.entries[0].apis, [Api::Check, Api::Plan]);
        assert_eq!(table.entries[1].tenants, ["acme-*", "globex"]);
        assert_eq!(table.entries[2].apis, Api::GRANTED);
    }

    #[test]
    fn every_mistake_is_reported_with_its_line() {
        let errors = parse_text(
            "callers:
  - id: dns:a
    tenants: [acme]
    apis: [check]
  - id: dns:b
    tenants: [acme]
    apis: [check, export]
  - tenants: []
    apis: [check]
    role: admin
  - {id: dns:a, tenants: [acme], apis: [plan]}
",
        )
        .unwrap_err();
        let export = "callers.yaml:5: unknown API group `export` (expected `check`, `plan`, `inspect` or `*`)";
        assert!(errors.contains(&export.to_owned()), "{errors:#?}");
        assert!(errors.contains(&"callers.yaml:11: caller `dns:a` is listed twice".to_owned()), "{errors:#?}");
        assert!(errors.iter().any(|e| e.starts_with("callers.yaml:8: `id` is required")), "{errors:#?}");
        assert!(errors.iter().any(|e| e.starts_with("callers.yaml:10: unknown key `role`")), "{errors:#?}");
        assert!(errors.iter().any(|e| e.starts_with("callers.yaml:8: `tenants` is empty")), "{errors:#?}");
        assert_eq!(parse_text("- a\n").unwrap_err(), ["callers.yaml: invalid YAML: 1:1: Top level must be a mapping"]);
    }

    #[test]
    fn tenant_patterns_match_whole_ids() {
        assert!(matches("*", "acme"));
        assert!(matches("acme-*", "acme-eu"));
        assert!(matches("acme-*", "acme-"));
        assert!(!matches("acme-*", "acme"));
        assert!(!matches("acme-*", "xacme-eu"));
        assert!(matches("globex", "globex"));
        assert!(!matches("globex", "globex2"));
        assert!(!matches("globex", "globe"));
        assert!(matches("*-eu", "acme-eu"));
        assert!(!matches("*-eu", "acme-us"));
        assert!(matches("a*b*c", "a-b-c"));
        assert!(!matches("a*b*c", "a-c-b"));
        assert!(!matches("ab*ba", "aba"));
    }
}
