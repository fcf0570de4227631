//! A first, event-by-event pass over YAML text that rejects what the node loader must never see.
//!
//! marked-yaml (through yaml-rust2's `Parser::load`) builds nodes recursively, one stack frame
//! per nesting level, and its nodes are dropped recursively too: a 12 KB file nested a few
//! thousand levels deep overflows any thread's stack. This pass pulls the same parser's events
//! one at a time, keeping only a counter, and stops at the first problem, so it needs constant
//! stack and reads at most a bounded prefix of a hostile file. It also rejects what the loader
//! would silently drop or accept: a second document after `---`, anchors and aliases.

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, ScanError};

use super::super::diag::Loc;

/// Deepest nesting of YAML mappings and sequences a policy file may use. Real documents need
/// about ten levels; conditions have their own, smaller limit.
pub const MAX_YAML_DEPTH: usize = 64;

/// Checks the shape of `text`; `Err` holds the first problem, located.
pub fn check(text: &str) -> Result<(), (Loc, String)> {
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    let mut documents = 0usize;
    loop {
        let (event, mark) = parser.next_token().map_err(scan_error)?;
        match event {
            Event::StreamEnd => return Ok(()),
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 && !is_empty_document(&mut parser)? {
                    let msg = "a policy file holds one YAML document: remove this second document (after `---`) \
                               or move it to its own file";
                    return Err((loc(&mark), msg.into()));
                }
            }
            Event::Alias(_) => return Err((loc(&mark), "anchors and aliases are not supported".into())),
            Event::Scalar(_, _, anchor, _) if anchor != 0 => {
                return Err((loc(&mark), "anchors and aliases are not supported".into()));
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                if anchor != 0 {
                    return Err((loc(&mark), "anchors and aliases are not supported".into()));
                }
                depth += 1;
                if depth > MAX_YAML_DEPTH {
                    return Err((loc(&mark), format!("nested deeper than {MAX_YAML_DEPTH} levels")));
                }
            }
            Event::MappingEnd | Event::SequenceEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
}

/// After a second `DocumentStart`: true when that document is empty (a trailing `---`).
fn is_empty_document(parser: &mut Parser<std::str::Chars<'_>>) -> Result<bool, (Loc, String)> {
    let next = parser.next_token().map_err(scan_error)?;
    Ok(
        matches!(next.0, Event::Scalar(ref v, yaml_rust2::scanner::TScalarStyle::Plain, 0, None) if v == "~" || v.is_empty()),
    )
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

fn loc(m: &Marker) -> Loc {
    Loc { line: u32::try_from(m.line()).unwrap_or(u32::MAX), col: u32::try_from(m.col() + 1).unwrap_or(u32::MAX) }
}
