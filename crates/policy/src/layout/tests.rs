use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::{Prints, compile, recompile_spliced};
use rolegate_engine::Tenant;

const HEAD: &str = "tenant: t
schema: {conversation: [view, reply, export]}
roles:
  agent: {allow: [conversation.view, conversation.reply]}
  admin: {allow: [\"*\"]}
units: [{id: eu}, {id: eu-west, parent: eu}]
";

/// A document: `HEAD`, then `members:` with `items` at `indent`, then `tail`.
fn text(indent: &str, items: &[&str], tail: &str) -> String {
    let mut t = format!("{HEAD}members: # everyone\n");
    for item in items {
        t.push_str(&format!("{indent}# member\n{indent}- {item}\n"));
    }
    t.push_str(tail);
    t
}

/// The tenant compiled from the whole text, with its prints and layout.
fn full(text: &str) -> (Tenant, Prints, Option<Layout>) {
    let mut r = Report::new(Arc::from("t.yaml"));
    let (doc, layout) = document_with_layout(&mut r, text);
    assert!(!r.has_errors(), "{:?}", r.diags);
    let doc = doc.unwrap();
    let tenant = compile(&doc, None, 1).unwrap();
    let prints = Prints::of(&doc, None, &tenant);
    (tenant, prints, layout)
}

/// The next version from the splice, or `None` (then the caller parses whole).
fn spliced(before: &str, after: &str) -> Option<(Tenant, Spliced)> {
    let (base, mut prints, layout) = full(before);
    let s = reparse(&mut Report::new(Arc::from("t.yaml")), after, &layout?)?;
    let tenant = recompile_spliced(&s, None, &base, &mut prints, 2)?;
    Some((tenant, s))
}

fn canonical(t: &Tenant) -> String {
    let mut rest = t.clone();
    rest.members = Default::default();
    rest.revision = 0;
    format!("{rest:?}")
}

fn whole(after: &str) -> Tenant {
    let (doc, diags) = crate::parse_str("t.yaml", after, None);
    assert!(!diags.iter().any(|d| d.is_error()), "{diags:?}");
    compile(&doc.unwrap(), None, 2).unwrap()
}

fn parsed(s: &Spliced) -> Vec<&str> {
    s.doc.members.iter().map(|m| m.id.value.as_str()).collect()
}

const A: &str = "{id: a, units: [eu], bindings: [{role: agent, scope: own_units}]}";
const B: &str = "{id: b, bindings: [{role: admin, scope: tenant}]}";
const C: &str = "id: c\n    bindings:\n      - {role: agent, scope: {relation: assignee}}";

#[test]
fn an_edited_member_is_the_only_one_read_again() {
    let before = text("  ", &[A, B, C], "");
    let after = text("  ", &[A, "{id: b, status: disabled, bindings: [{role: admin, scope: tenant}]}", C], "");
    let (got, s) = spliced(&before, &after).expect("spliced");
    assert_eq!(parsed(&s), ["b"]);
    assert_eq!(canonical(&got), canonical(&whole(&after)));
    assert_ne!(canonical(&got), canonical(&whole(&before)), "the edit shows");
}

#[test]
fn added_removed_and_moved_members_are_spliced_in_order() {
    const C: &str = "{id: c}";
    let before = text("", &[A, B, C], "everyone: []\n");
    // Each item is preceded by a comment, which goes with the item before it: an item whose
    // next neighbour changed is read again, one whose bytes stayed is not, wherever it moved.
    let cases = [
        (vec![A, B, C, "{id: d}"], vec!["c", "d"]),
        (vec![A, C], vec![]),
        (vec![C, A, B], vec!["c", "b"]),
        (vec!["{id: d}", B], vec!["d", "b"]),
    ];
    for (items, read) in cases {
        let after = text("", &items, "everyone: []\n");
        let (got, s) = spliced(&before, &after).expect("spliced");
        assert_eq!(canonical(&got), canonical(&whole(&after)), "{items:?}");
        assert_eq!(parsed(&s), read, "{items:?}");
    }
}

#[test]
fn a_member_read_again_keeps_its_lines_in_the_file() {
    let before = text("  ", &[A, B, C], "");
    let after = text("  ", &[A, B, "id: c\n    bindings:\n      - {role: agnet, scope: tenant}"], "");
    let (base, mut prints, layout) = full(&before);
    let mut r = Report::new(Arc::from("t.yaml"));
    let s = reparse(&mut r, &after, &layout.unwrap()).expect("the member parses");
    let role = &s.doc.members[0].bindings[0].role;
    let line = after.lines().position(|l| l.contains("agnet")).unwrap() + 1;
    assert_eq!((role.value.as_str(), role.at.line as usize), ("agnet", line));
    let kept = format!("{prints:?}");
    assert!(recompile_spliced(&s, None, &base, &mut prints, 2).is_none(), "an unknown role fails the splice");
    assert_eq!(format!("{prints:?}"), kept, "a failed splice leaves the prints as they were");
}

#[test]
fn a_syntax_error_inside_one_member_is_not_spliced() {
    let before = text("  ", &[A, B, C], "");
    for bad in ["{id: b, bindings: [{role: admin, scope: tenant}]", "{id: b, bogus: 1}", "{id: b, id: c}"] {
        let after = text("  ", &[A, bad, C], "");
        let (_, _, layout) = full(&before);
        assert!(reparse(&mut Report::new(Arc::from("t.yaml")), &after, &layout.unwrap()).is_none(), "{bad}");
    }
}

#[test]
fn a_change_to_the_head_is_not_spliced() {
    let before = text("  ", &[A, B, C], "");
    let after = text("  ", &[A, B, C], "").replace("agent: {allow: [conversation.view, ", "agent: {allow: [");
    assert!(spliced(&before, &after).is_none());
    let described = format!("description: any\n{before}");
    let (got, s) = spliced(&before, &described).expect("a description is not the head");
    assert!(parsed(&s).is_empty());
    assert_eq!(canonical(&got), canonical(&whole(&described)));
}

#[test]
fn texts_without_a_plain_block_list_have_no_layout() {
    let flow = format!("{HEAD}members: [{A}, {B}]\n");
    let twice = format!("{}members: []\n", text("  ", &[A], ""));
    let odd = format!("{HEAD}members:\n    - {A}\n  - {B}\n");
    let quoted = format!("{HEAD}members:\n  - {{id: a, description: \"x\n  - y\"}}\n  - {B}\n");
    for t in [flow.as_str(), twice.as_str(), odd.as_str(), quoted.as_str()] {
        let mut r = Report::new(Arc::from("t.yaml"));
        let (_, layout) = document_with_layout(&mut r, t);
        assert!(layout.is_none(), "{t}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the edit, a splice that succeeds serves exactly what the whole document compiles to.
    #[test]
    fn a_splice_equals_a_whole_parse(
        before in prop::collection::vec(0..MEMBERS.len(), 0..6),
        after in prop::collection::vec(0..MEMBERS.len(), 0..6),
        indent in prop::sample::select(vec!["", "  ", "    "]),
        tail in prop::sample::select(vec!["", "everyone: []\n", "# end\n"]),
    ) {
        let pick = |ix: &[usize]| ix.iter().map(|i| MEMBERS[*i]).collect::<Vec<_>>();
        let (b, a) = (text(indent, &pick(&before), tail), text(indent, &pick(&after), tail));
        let mut r = Report::new(Arc::from("t.yaml"));
        let (doc, layout) = document_with_layout(&mut r, &b);
        let Some(base) = doc.filter(|_| !r.has_errors()).and_then(|d| compile(&d, None, 1).ok().map(|t| (t, d))) else {
            return Ok(());
        };
        let mut prints = Prints::of(&base.1, None, &base.0);
        let Some(layout) = layout else { return Ok(()) };
        let Some(s) = reparse(&mut Report::new(Arc::from("t.yaml")), &a, &layout) else { return Ok(()) };
        if let Some(got) = recompile_spliced(&s, None, &base.0, &mut prints, 2) {
            let (doc, diags) = crate::parse_str("t.yaml", &a, None);
            prop_assert!(!diags.iter().any(|d| d.is_error()), "{:?}", diags);
            let want = compile(&doc.unwrap(), None, 2);
            prop_assert!(want.is_ok(), "spliced where a whole compile fails: {:?}", want);
            prop_assert_eq!(canonical(&got), canonical(&want.unwrap()));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A run of edits — members added, removed, changed, moved — each applied as the directory
    /// source does (spliced against the last served version and its layout, else parsed whole),
    /// serves after every step what a whole compile of that step's text gives, with the prints
    /// and layout a whole parse would give.
    #[test]
    fn a_run_of_splices_equals_whole_parses(
        versions in prop::collection::vec(prop::collection::vec(0..MEMBERS.len(), 0..8), 1..6),
        indent in prop::sample::select(vec!["", "  "]),
    ) {
        let pick = |ix: &[usize]| ix.iter().map(|i| MEMBERS[*i]).collect::<Vec<_>>();
        let mut served: Option<(Tenant, Prints, Layout)> = None;
        for (step, members) in versions.iter().enumerate() {
            let t = text(indent, &pick(members), "everyone: []\n");
            let mut r = Report::new(Arc::from("t.yaml"));
            let (doc, layout) = document_with_layout(&mut r, &t);
            let want = doc.filter(|_| !r.has_errors()).and_then(|d| compile(&d, None, 2).ok().map(|w| (w, d)));
            let splice = served.as_ref().and_then(|(_, _, l)| reparse(&mut Report::new(Arc::from("t.yaml")), &t, l));
            let got = match (splice, served.as_mut()) {
                (Some(s), Some((base, prints, layout))) => {
                    let before = prints.clone();
                    match recompile_spliced(&s, None, base, prints, 2) {
                        Some(got) => {
                            let mut next = layout.clone();
                            next.advance(s.layout);
                            Some((got, next))
                        }
                        None => {
                            prop_assert_eq!(&*prints, &before, "a failed splice changed the prints");
                            None
                        }
                    }
                }
                _ => None,
            };
            match (got, want) {
                (Some((got, layout)), Some((want, doc))) => {
                    prop_assert!(got.roster.iter().all(|m| Arc::ptr_eq(m, &got.members[&*m.id])), "step {}", step);
                    prop_assert_eq!(canonical(&got), canonical(&want), "step {}", step);
                    let prints = &served.as_ref().unwrap().1;
                    prop_assert_eq!(prints, &Prints::of(&doc, None, &want), "step {}", step);
                    let whole_layout = document_with_layout(&mut Report::new(Arc::from("t.yaml")), &t).1;
                    prop_assert_eq!(Some(&layout), whole_layout.as_ref(), "step {}", step);
                    let prints = prints.clone();
                    served = Some((got, prints, layout));
                }
                (Some((got, _)), None) => prop_assert!(false, "step {step}: spliced {got:?} where a whole compile fails"),
                (None, Some((want, doc))) => {
                    let prints = Prints::of(&doc, None, &want);
                    served = layout.map(|l| (want, prints, l));
                }
                (None, None) => {}
            }
        }
    }
}

/// Members for the property: repeated ids, block and flow items, a bad role.
const MEMBERS: &[&str] = &[
    A,
    B,
    C,
    "{id: a, status: disabled}",
    "{id: d, bindings: [{role: agnet, scope: tenant}]}",
    "id: d\n    units: [eu-west]",
    "{id: e, attrs: {level: 3}}",
];
