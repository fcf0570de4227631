//! Reading marked YAML nodes while collecting every error instead of stopping at the first.

use std::hash::{Hash, Hasher};

use jiff::Timestamp;
use marked_yaml::Node;
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode, MarkedSequenceNode};

use super::diag::{Loc, Report, Spanned};
use rolegate_engine::suggest;

mod load;

pub use load::MAX_YAML_DEPTH;
pub(crate) use load::{Root, load_at};

/// Parses YAML text; a syntax error, nesting deeper than [`MAX_YAML_DEPTH`], a second document,
/// an anchor, an alias, a tag or a duplicate key is reported and yields `None`. A leading
/// byte-order mark is skipped. Quoted scalars stay text: only a plain `3` or `true` is a number
/// or a boolean.
pub fn parse(report: &mut Report, text: &str) -> Option<Node> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match load::load(text) {
        Ok(node) => Some(node),
        Err((at, msg)) => {
            report.error(at, "", msg);
            None
        }
    }
}

/// Feeds a node as written into `h`, positions aside: its scalars with whether they were plain
/// (a plain `3` is a number, a quoted one text), its lists and its mappings in order. Recursion
/// is bounded: [`parse`] refuses nesting deeper than [`MAX_YAML_DEPTH`].
pub fn print(node: &Node, h: &mut impl Hasher) {
    match node {
        Node::Scalar(s) => {
            0u8.hash(h);
            s.as_str().hash(h);
            s.may_coerce().hash(h);
        }
        Node::Sequence(seq) => {
            1u8.hash(h);
            seq.len().hash(h);
            seq.iter().for_each(|n| print(n, h));
        }
        Node::Mapping(map) => {
            2u8.hash(h);
            map.len().hash(h);
            for (k, v) in map.iter() {
                k.as_str().hash(h);
                k.may_coerce().hash(h);
                print(v, h);
            }
        }
    }
}

/// Position of a node.
pub fn loc(node: &Node) -> Loc {
    node.span().start().map(|m| Loc { line: m.line() as u32, col: m.column() as u32 }).unwrap_or_default()
}

/// Position of a scalar.
pub fn sloc(node: &MarkedScalarNode) -> Loc {
    node.span().start().map(|m| Loc { line: m.line() as u32, col: m.column() as u32 }).unwrap_or_default()
}

/// Joins a key path and a child key.
pub fn key(path: &str, child: &str) -> String {
    if path.is_empty() { child.to_owned() } else { format!("{path}.{child}") }
}

/// Joins a key path and an index.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Expects a mapping whose keys are all in `allowed`; reports each unknown key with a hint.
pub fn mapping<'n>(r: &mut Report, node: &'n Node, path: &str, allowed: &[&str]) -> Option<&'n MarkedMappingNode> {
    let Some(map) = node.as_mapping() else {
        r.error(loc(node), path, format!("expected a mapping with keys {}", list(allowed)));
        return None;
    };
    for k in map.keys() {
        if !allowed.contains(&k.as_str()) {
            let hint = suggest::hint(k.as_str(), allowed.iter().copied());
            r.error(sloc(k), key(path, k.as_str()), format!("unknown key `{}`{hint}", k.as_str()));
        }
    }
    Some(map)
}

fn list(keys: &[&str]) -> String {
    keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
}

/// Expects a sequence.
pub fn sequence<'n>(r: &mut Report, node: &'n Node, path: &str) -> Option<&'n MarkedSequenceNode> {
    let seq = node.as_sequence();
    if seq.is_none() {
        r.error(loc(node), path, "expected a list");
    }
    seq
}

/// Expects a non-empty plain string.
pub fn string(r: &mut Report, node: &Node, path: &str) -> Option<Spanned<String>> {
    match node.as_scalar() {
        Some(s) if !s.as_str().is_empty() => Some(Spanned { value: s.as_str().to_owned(), at: sloc(s) }),
        Some(s) => {
            r.error(sloc(s), path, "must not be empty");
            None
        }
        None => {
            r.error(loc(node), path, "expected a string");
            None
        }
    }
}

/// Expects a list of non-empty strings.
pub fn strings(r: &mut Report, node: &Node, path: &str) -> Vec<Spanned<String>> {
    let Some(seq) = sequence(r, node, path) else {
        return Vec::new();
    };
    seq.iter().enumerate().filter_map(|(i, n)| string(r, n, &index(path, i))).collect()
}

/// Expects `true` or `false`.
pub fn boolean(r: &mut Report, node: &Node, path: &str) -> Option<bool> {
    let b = node.as_scalar().and_then(MarkedScalarNode::as_bool);
    if b.is_none() {
        r.error(loc(node), path, "expected `true` or `false`");
    }
    b
}

/// Expects an RFC 3339 instant with an offset.
pub fn instant(r: &mut Report, node: &Node, path: &str) -> Option<Timestamp> {
    let s = string(r, node, path)?;
    match s.value.parse::<Timestamp>() {
        Ok(ts) => Some(ts),
        Err(_) => {
            r.error(
                s.at,
                path,
                format!(
                    "invalid instant `{}` (expected RFC 3339 with an offset, e.g. `2026-12-31T00:00:00Z`)",
                    s.value
                ),
            );
            None
        }
    }
}

/// Expects a duration, `0s`, `500ms`, `5s`, `2m` or `1h`, up to
/// [`MAX_STALENESS_LIMIT`](rolegate_engine::MAX_STALENESS_LIMIT).
pub fn duration(r: &mut Report, node: &Node, path: &str) -> Option<Spanned<std::time::Duration>> {
    use std::time::Duration;
    let s = string(r, node, path)?;
    let text = s.value.trim();
    let (num, unit) = text.find(|c: char| !c.is_ascii_digit()).map_or((text, ""), |i| text.split_at(i));
    let n = num.parse::<u64>().ok();
    let d = match unit {
        "ms" => n.map(Duration::from_millis),
        "s" => n.map(Duration::from_secs),
        "m" => n.and_then(|n| n.checked_mul(60)).map(Duration::from_secs),
        "h" => n.and_then(|n| n.checked_mul(3600)).map(Duration::from_secs),
        _ => None,
    };
    let limit = rolegate_engine::MAX_STALENESS_LIMIT;
    match d {
        Some(d) if d <= limit => Some(Spanned { value: d, at: s.at }),
        Some(_) => {
            r.error(s.at, path, format!("`{}` is longer than the limit of {}s", s.value, limit.as_secs()));
            None
        }
        None => {
            r.error(s.at, path, format!("invalid duration `{}` (e.g. `0s`, `500ms`, `5s`, `1m`)", s.value));
            None
        }
    }
}

/// Expects a finite number: `nan` would make every comparison false, `inf` every one true.
pub fn number(r: &mut Report, node: &Node, path: &str) -> Option<f64> {
    let n = node.as_scalar().filter(|s| s.may_coerce()).and_then(|s| s.as_str().parse::<f64>().ok());
    match n {
        Some(x) if x.is_finite() => Some(x),
        Some(_) => {
            r.error(loc(node), path, "expected a finite number (not `nan`, `inf` or one beyond 1.8e308)");
            None
        }
        None => {
            r.error(loc(node), path, "expected a number");
            None
        }
    }
}
