//! YAML text → marked nodes in one pass over the parser's events, refusing on the way what a
//! policy file must not hold.
//!
//! The parser's events are pulled one at a time and the nodes built on an explicit stack, so
//! hostile nesting costs no native stack: nesting deeper than [`MAX_YAML_DEPTH`] stops the load
//! before a deeper node exists (nodes are also dropped recursively, so none may be deeper). A
//! second document after `---`, anchors, aliases, tags, non-scalar keys and duplicate keys are
//! refused at the first one found. Scalars keep whether they were plain, so that only a plain
//! `3` or `true` is a number or a boolean.

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode, MarkedSequenceNode};
use marked_yaml::{Marker, Node, Span};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker as YamlMarker, ScanError, TScalarStyle};

use super::super::diag::Loc;

/// Deepest nesting of YAML mappings and sequences a policy file may use. Real documents need
/// about ten levels; conditions have their own, smaller limit.
pub const MAX_YAML_DEPTH: usize = 64;

/// A collection still being read.
enum Open {
    Map { map: MarkedMappingNode, key: Option<MarkedScalarNode> },
    Seq { start: Marker, items: Vec<Node> },
}

const NO_ALIASES: &str = "anchors and aliases are not supported";

/// Loads the one document of `text`: a mapping (empty for an empty file), or the first problem,
/// located.
pub fn load(text: &str) -> Result<Node, (Loc, String)> {
    load_at(text, 0, Root::Mapping)
}

/// What the root of a document must be.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// A policy file: a mapping.
    Mapping,
    /// A slice of a document's `members` list: a list.
    Sequence,
}

/// Like [`load`], for text that starts at line `lines + 1` of its file, with a root of `root`.
pub fn load_at(text: &str, lines: usize, root_kind: Root) -> Result<Node, (Loc, String)> {
    events(text, lines, root_kind).map_err(|e| shifted(e, lines))
}

/// The loader itself; errors are located in `text`, nodes in the file.
fn events(text: &str, lines: usize, root_kind: Root) -> Result<Node, (Loc, String)> {
    let mut parser = Parser::new_from_str(text);
    let mut open: Vec<Open> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    loop {
        let (event, at) = parser.next_token().map_err(scan_error)?;
        let mark = Marker::new(0, at.index(), at.line().saturating_add(lines), at.col() + 1);
        match event {
            Event::StreamEnd => break,
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 && !is_empty_document(&mut parser)? {
                    let msg = "a policy file holds one YAML document: remove this second document (after `---`) \
                               or move it to its own file";
                    return Err((loc(&at), msg.into()));
                }
            }
            Event::Alias(_) => return Err((loc(&at), NO_ALIASES.into())),
            Event::Scalar(value, style, anchor, tag) => {
                refuse(anchor, tag.is_some(), &at)?;
                let mut node = MarkedScalarNode::new(Span::new_start(mark), value);
                node.set_coerce(style == TScalarStyle::Plain);
                add(&mut open, &mut root, Node::from(node), &at, lines)?;
            }
            Event::MappingStart(anchor, ref tag) | Event::SequenceStart(anchor, ref tag) => {
                refuse(anchor, tag.is_some(), &at)?;
                if let Some(Open::Map { key: None, .. }) = open.last() {
                    return Err((loc(&at), "mapping keys must be plain strings".into()));
                }
                if open.len() >= MAX_YAML_DEPTH {
                    return Err((loc(&at), format!("nested deeper than {MAX_YAML_DEPTH} levels")));
                }
                let is_map = matches!(event, Event::MappingStart(..));
                if open.is_empty() && is_map != (root_kind == Root::Mapping) {
                    return Err((loc(&at), "the document must be a mapping".into()));
                }
                open.push(if is_map {
                    Open::Map { map: MarkedMappingNode::new_empty(Span::new_start(mark)), key: None }
                } else {
                    Open::Seq { start: mark, items: Vec::new() }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let node = match open.pop() {
                    Some(Open::Map { mut map, .. }) => {
                        map.span_mut().set_end(Some(mark));
                        Node::from(map)
                    }
                    Some(Open::Seq { start, items }) => {
                        Node::from(MarkedSequenceNode::new(Span::new_with_marks(start, mark), items))
                    }
                    None => return Err((loc(&at), "invalid YAML: unbalanced collection".into())),
                };
                add(&mut open, &mut root, node, &at, lines)?;
            }
        }
    }
    match (root, root_kind) {
        (Some(node), _) => Ok(node),
        (None, Root::Mapping) => Ok(Node::from(MarkedMappingNode::new_empty(Span::new_blank()))),
        (None, Root::Sequence) => Ok(Node::from(MarkedSequenceNode::new_empty(Span::new_blank()))),
    }
}

fn shifted((at, msg): (Loc, String), lines: usize) -> (Loc, String) {
    let line = at.line.saturating_add(u32::try_from(lines).unwrap_or(u32::MAX));
    (Loc { line, ..at }, msg)
}

/// Refuses an anchor (`&a`) and a tag (`!t`).
fn refuse(anchor: usize, tagged: bool, at: &YamlMarker) -> Result<(), (Loc, String)> {
    if anchor != 0 {
        return Err((loc(at), NO_ALIASES.into()));
    }
    if tagged {
        return Err((loc(at), "YAML tags are not supported".into()));
    }
    Ok(())
}

/// Puts a finished node where it belongs: a key or a value of the open mapping, an item of the
/// open sequence, or the document.
fn add(
    open: &mut [Open],
    root: &mut Option<Node>,
    node: Node,
    at: &YamlMarker,
    lines: usize,
) -> Result<(), (Loc, String)> {
    match open.last_mut() {
        None if matches!(node, Node::Mapping(_) | Node::Sequence(_)) => *root = Some(node),
        None => return Err((loc(at), "the document must be a mapping".into())),
        Some(Open::Seq { items, .. }) => items.push(node),
        Some(Open::Map { map, key, .. }) => match (key.take(), node) {
            (None, Node::Scalar(k)) => *key = Some(k),
            (None, _) => return Err((loc(at), "mapping keys must be plain strings".into())),
            (Some(k), value) => {
                if map.contains_key(&k) {
                    let at = k.span().start().map(|m| Loc {
                        line: u32::try_from(m.line().saturating_sub(lines)).unwrap_or(u32::MAX),
                        col: m.column() as u32,
                    });
                    return Err((at.unwrap_or_default(), format!("duplicate key `{}`", k.as_str())));
                }
                map.insert(k, value);
            }
        },
    }
    Ok(())
}

/// After a second `DocumentStart`: true when that document is empty (a trailing `---`).
fn is_empty_document(parser: &mut Parser<std::str::Chars<'_>>) -> Result<bool, (Loc, String)> {
    let next = parser.next_token().map_err(scan_error)?;
    Ok(matches!(next.0, Event::Scalar(ref v, TScalarStyle::Plain, 0, None) if v == "~" || v.is_empty()))
}

/// A scanner error, located. The scanner reads ahead of the events and stops flow nesting at
/// 256 levels itself; that is reported like our own, smaller limit.
fn scan_error(e: ScanError) -> (Loc, String) {
    let msg = match e.info() {
        "recursion limit exceeded" => format!("nested deeper than {MAX_YAML_DEPTH} levels"),
        info => format!("invalid YAML: {info}"),
    };
    (loc(e.marker()), msg)
}

fn loc(m: &YamlMarker) -> Loc {
    Loc { line: u32::try_from(m.line()).unwrap_or(u32::MAX), col: u32::try_from(m.col() + 1).unwrap_or(u32::MAX) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        let (at, msg) = load(text).expect_err("refused");
        format!("{}:{}: {msg}", at.line, at.col)
    }

    #[test]
    fn hostile_yaml_is_refused_at_its_first_problem_with_its_position() {
        let deep_block = format!("tenant: t\ndescription:\n  {}x\n", "- ".repeat(100_000));
        let deep_flow = format!("tenant: t\ndescription: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let cases = [
            (deep_block.as_str(), "3:129: nested deeper than 64 levels"),
            (deep_flow.as_str(), "2:269: nested deeper than 64 levels"),
            ("tenant: t\n---\ntenant: u\n", "2:1: a policy file holds one YAML document"),
            ("tenant: t\nschema: {c: [v]}\nroles:\n  a: &r {allow: [c.v]}\n  b: *r\n", "4:9: anchors and aliases"),
            ("tenant: t\ndescription: !!binary aGk=\n", "2:23: YAML tags are not supported"),
            ("tenant: t\nroles: {}\nroles: {}\n", "3:1: duplicate key `roles`"),
            ("tenant: t\nroles: {[a]: {allow: []}}\n", "2:9: mapping keys must be plain strings"),
            ("tenant: t\nroles:\n\tagent: {allow: []}\n", "3:2: invalid YAML: tabs disallowed"),
            ("- a\n", "1:1: the document must be a mapping"),
            ("just text\n", "1:1: the document must be a mapping"),
        ];
        for (text, want) in cases {
            let got = error(text);
            assert!(got.starts_with(want), "{want}: got {got}");
        }
    }

    #[test]
    fn an_empty_file_or_a_trailing_separator_is_an_empty_or_one_document() {
        assert!(load("").unwrap().as_mapping().is_some_and(|m| m.is_empty()));
        assert!(load("# only a comment\n").unwrap().as_mapping().is_some_and(|m| m.is_empty()));
        let one = load("tenant: t\nn: 3\nq: '3'\n---\n").unwrap();
        let map = one.as_mapping().unwrap();
        assert_eq!(map.get_scalar("tenant").map(|s| s.as_str()), Some("t"));
        assert!(map.get_scalar("n").unwrap().may_coerce() && !map.get_scalar("q").unwrap().may_coerce());
    }
}
