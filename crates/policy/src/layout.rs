//! A tenant document's `members` list located in its text, line by line, so that a changed
//! document is read again only where its bytes changed: a one-member edit to a document of
//! 50,000 members parses the document's head and that member, not the 50,000.
//!
//! The list is found by its lines: a `members:` key at column 0 followed by a block list whose
//! items start with `- ` at one indentation; each item runs to the next item's line (comments
//! and blank lines go with the item before them). A [`Layout`] — kept from a full parse that
//! found exactly these items, one per line range, without any error — maps each item's bytes
//! (as a hash) to its member id. An item whose bytes are in the layout is known without reading
//! it; any other is parsed alone, at its own line. A text that does not have this shape, or any
//! error at all, gives `None`, and the caller parses the whole document, which reports errors
//! exactly as a first load does.

use std::hash::Hasher;
use std::ops::Range;

use marked_yaml::Node;
use rustc_hash::{FxHashMap, FxHashSet, FxHasher};

use crate::diag::Report;
use crate::document::Document;
use crate::parse;
use crate::yaml::{self, Root};

/// The position of each item of a document's `members` list — which is also the position of its
/// member in the roster of the tenant compiled from the document — by the hash of the item's
/// bytes, and those hashes in order. About 30 bytes per member, and no pointer into the tenant:
/// a new version of the document is matched against it without touching the tenant's members.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    items: FxHashMap<u64, u32>,
    order: Vec<u64>,
}

impl Layout {
    /// Number of items located.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when no item is located.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The layout of items with these hashes, in order; `None` if two are the same.
    fn of(order: Vec<u64>) -> Option<Layout> {
        let mut items = FxHashMap::default();
        items.reserve(order.len());
        for (i, h) in order.iter().enumerate() {
            if items.insert(*h, u32::try_from(i).ok()?).is_some() {
                return None;
            }
        }
        Some(Layout { items, order })
    }

    /// Moves to the layout of the text a [`Spliced`] was read from (`next`, its
    /// [`Spliced::layout`]); `self` must be the layout it was read against.
    pub fn advance(&mut self, next: Next) {
        match next {
            Next::Whole(layout) => *self = layout,
            Next::Patch(changed) => {
                for (at, h) in changed {
                    let Some(slot) = self.order.get_mut(at as usize) else {
                        *self = Layout::default();
                        return;
                    };
                    let old = std::mem::replace(slot, h);
                    self.items.remove(&old);
                    self.items.insert(h, at);
                }
            }
        }
    }
}

/// The layout of a reparsed text, from the layout it was read against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// A layout of its own (items were added, removed or moved).
    Whole(Layout),
    /// The same items at the same places but these, each at its position with its new hash:
    /// members edited in place. Applied by [`Layout::advance`] at the cost of the change.
    Patch(Vec<(u32, u64)>),
}

/// One item of a reparsed `members` list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Bytes unchanged since the layout: the member at this position of the roster of the tenant
    /// the layout was taken with, as it was.
    Kept(u32),
    /// Bytes changed: the member at this index of [`Spliced::doc`]'s members.
    Parsed(usize),
}

/// A document reparsed where it changed.
#[derive(Debug)]
pub struct Spliced {
    /// The document with only the members parsed again.
    pub doc: Document,
    /// Every item of the `members` list, in order.
    pub roster: Vec<Entry>,
    /// The layout of the new text, from the layout it was read against.
    pub layout: Next,
    /// How many items the layout the text was read against had: the member count of the tenant
    /// it was taken with.
    pub base_len: usize,
}

/// Parses a tenant document (as [`parse::document`]) and, when it parsed without any error and
/// its `members` list has the shape this module reads, its layout.
pub fn document_with_layout(report: &mut Report, text: &str) -> (Option<Document>, Option<Layout>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(root) = yaml::parse(report, text) else {
        return (None, None);
    };
    let doc = parse::from_root(report, &root, None);
    let layout = match &doc {
        Some(doc) if !report.has_errors() => layout_of(text, &root, doc),
        _ => None,
    };
    (doc, layout)
}

fn layout_of(text: &str, root: &Node, doc: &Document) -> Option<Layout> {
    let split = split(text)?;
    let seq = root.as_mapping()?.get_node("members")?.as_sequence()?;
    if seq.len() != split.each.len() || doc.members.len() != split.each.len() {
        return None;
    }
    let mut order = Vec::with_capacity(split.each.len());
    for (item, (range, line)) in seq.iter().zip(&split.each) {
        if yaml::loc(item).line as usize != *line {
            return None;
        }
        order.push(hash(text.get(range.clone())?));
    }
    Layout::of(order)
}

/// Parses `text`, a new version of the document `layout` was taken from, reading only the items
/// of its `members` list whose bytes are not in `layout`. `None` when the text does not have the
/// shape of this module or anything in it is an error (then nothing is reported in `report`
/// that the caller must keep: it parses the whole document instead).
pub fn reparse(report: &mut Report, text: &str, layout: &Layout) -> Option<Spliced> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let split = split(text)?;
    let mut doc = parse::document(report, &head_text(text, &split)?, None)?;
    if report.has_errors() || !doc.members.is_empty() {
        return None;
    }
    let mut roster = Vec::with_capacity(split.each.len());
    let mut order = Vec::with_capacity(split.each.len());
    // Where the next item was in the layout, if nothing moved since the last item found there:
    // looked at before the hash table, so that items in their places cost no lookup.
    let mut shift = 0isize;
    for (i, (range, line)) in split.each.iter().enumerate() {
        let bytes = text.get(range.clone())?;
        let h = hash(bytes);
        let guess = i.checked_add_signed(shift).filter(|g| layout.order.get(*g) == Some(&h));
        let at = match guess {
            Some(g) => u32::try_from(g).ok(),
            None => layout.items.get(&h).copied(),
        };
        match at {
            Some(at) => {
                shift = at as isize - i as isize;
                roster.push(Entry::Kept(at));
            }
            None => {
                let node = yaml::load_at(bytes, line - 1, Root::Sequence).ok()?;
                let [item] = node.as_sequence()?.as_slice() else { return None };
                if yaml::loc(item).line as usize != *line {
                    return None;
                }
                let member = parse::member(report, item, &yaml::index("members", i))?;
                if report.has_errors() {
                    return None;
                }
                roster.push(Entry::Parsed(doc.members.len()));
                doc.members.push(member);
            }
        }
        order.push(h);
    }
    let next = next_layout(layout, &roster, order)?;
    Some(Spliced { doc, roster, layout: next, base_len: layout.len() })
}

/// The layout of items hashed `order`, read against `layout` as `roster`: a patch of `layout`
/// when only members in place were read again, their new bytes each unlike any other item's;
/// else a layout of its own. `None` when two items are the same.
fn next_layout(layout: &Layout, roster: &[Entry], order: Vec<u64>) -> Option<Next> {
    let in_place = order.len() == layout.order.len()
        && roster.iter().enumerate().all(|(i, e)| matches!(e, Entry::Parsed(_)) || *e == Entry::Kept(i as u32));
    if !in_place {
        return Layout::of(order).map(Next::Whole);
    }
    // Kept items are in their places, so distinct from each other; an item read again is not in
    // `layout`, so distinct from every kept one: only the items read again can repeat.
    let mut changed: Vec<(u32, u64)> = Vec::new();
    for (i, e) in roster.iter().enumerate() {
        if matches!(e, Entry::Parsed(_)) {
            changed.push((u32::try_from(i).ok()?, *order.get(i)?));
        }
    }
    let mut fresh = FxHashSet::default();
    if !changed.iter().all(|(_, h)| fresh.insert(*h)) {
        return None;
    }
    Some(Next::Patch(changed))
}

/// The document without its items: the list replaced by `[]` and as many line ends as the items
/// took, so that everything after the list keeps its lines.
fn head_text(text: &str, split: &Split) -> Option<String> {
    let items = &split.items;
    let (before, after) = (text.get(..items.start)?, text.get(items.end..)?);
    let lines = split.lines;
    let mut head = String::with_capacity(before.len() + 3 + lines + after.len());
    head.push_str(before);
    head.push_str(" []");
    head.extend(std::iter::repeat_n('\n', lines));
    head.push_str(after);
    Some(head)
}

fn hash(text: &str) -> u64 {
    let bytes = text.as_bytes();
    let mut h = FxHasher::default();
    h.write_usize(bytes.len());
    h.write(bytes);
    h.finish()
}

/// The `members` list of a text, by lines.
#[derive(Debug, PartialEq)]
struct Split {
    /// Bytes of all items: from the first item's line to the line after the last item.
    items: Range<usize>,
    /// Each item's bytes, and the line (from 1) where it starts.
    each: Vec<(Range<usize>, usize)>,
    /// Line ends in `items`.
    lines: usize,
}

/// Where the scan of the lines is.
#[derive(Clone, Copy)]
enum State {
    /// Before the `members:` key.
    Head,
    /// After the key, before the first item.
    Key,
    /// In the items, which start at this column.
    Items(usize),
    /// After the items.
    Tail,
}

/// Locates the `members` list; `None` unless the text has the shape the module reads.
fn split(text: &str) -> Option<Split> {
    let mut state = State::Head;
    let mut each: Vec<(Range<usize>, usize)> = Vec::new();
    let mut end = text.len();
    let (mut at, mut number, mut lines) = (0usize, 0usize, 0usize);
    while at < text.len() {
        let rest = text.get(at..)?;
        let len = rest.find('\n').map_or(rest.len(), |i| i + 1);
        let line = rest.get(..len)?;
        number += 1;
        let indent = line.bytes().take_while(|b| *b == b' ').count();
        let body = line.get(indent..)?.trim_end_matches(['\n', '\r']);
        let quiet = body.is_empty() || body.starts_with('#');
        let dash = body == "-" || body.starts_with("- ");
        state = match state {
            State::Head if indent == 0 && is_members_key(body) => State::Key,
            State::Head => State::Head,
            State::Key if quiet => State::Key,
            State::Key if dash => {
                each.push((at..at, number));
                State::Items(indent)
            }
            State::Key => return None,
            State::Items(_) if quiet => state,
            State::Items(n) if indent == n && dash => {
                each.push((at..at, number));
                state
            }
            State::Items(n) if indent > n => state,
            State::Items(_) if indent == 0 => {
                end = at;
                if is_members_key(body) {
                    return None;
                }
                State::Tail
            }
            State::Items(_) => return None,
            State::Tail if indent == 0 && is_members_key(body) => return None,
            State::Tail => State::Tail,
        };
        if matches!(state, State::Items(_)) && line.ends_with('\n') {
            lines += 1;
        }
        at += len;
    }
    if !matches!(state, State::Items(_) | State::Tail) {
        return None;
    }
    let starts: Vec<usize> = each.iter().map(|(r, _)| r.start).collect();
    for (i, (range, _)) in each.iter_mut().enumerate() {
        range.end = starts.get(i + 1).copied().unwrap_or(end);
    }
    Some(Split { items: starts.first().copied().unwrap_or(end)..end, each, lines })
}

/// True for a line `members:`, maybe with a comment.
fn is_members_key(body: &str) -> bool {
    body.strip_prefix("members:").is_some_and(|rest| {
        let rest = rest.trim_start_matches(' ');
        rest.is_empty() || rest.starts_with('#')
    })
}

#[cfg(test)]
mod tests;
