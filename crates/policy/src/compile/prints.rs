//! The next version of a tenant, compiled member by member: a tenant's fingerprints ([`Prints`])
//! say what it was compiled from, so a changed document costs the members whose print changed
//! plus the tenant's head, and no copy of the document needs to be kept between versions.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::{Cx, MemberChange};
use crate::document::{Document, MemberDoc};
use crate::layout::{Entry, Spliced};
use rolegate_engine::{Member, Tenant};

/// What a tenant was compiled from, as fingerprints: its head with its template, and each member
/// by id. About 30 bytes per member (the ids are shared with the compiled tenant).
#[derive(Clone, Debug, Default)]
pub struct Prints {
    head: u64,
    members: FxHashMap<Arc<str>, u64>,
}

impl Prints {
    /// The prints of `tenant`, compiled from `doc` and `template` without errors.
    pub fn of(doc: &Document, template: Option<&Document>, tenant: &Tenant) -> Prints {
        let mut members = FxHashMap::default();
        members.reserve(doc.members.len());
        for m in &doc.members {
            let id = tenant.members.get_key_value(m.id.value.as_str()).map(|(id, _)| id.clone());
            members.insert(id.unwrap_or_else(|| Arc::from(m.id.value.as_str())), m.print);
        }
        Prints { head: head(doc, template), members }
    }

    /// Number of members printed.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when no member is printed.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

fn head(doc: &Document, template: Option<&Document>) -> u64 {
    let mut h = DefaultHasher::new();
    doc.head_print.hash(&mut h);
    template.map(|t| t.head_print).hash(&mut h);
    h.finish()
}

/// Compiles `doc` (with `template`) at `revision` from `base`, the tenant `prints` describe:
/// only members whose print changed are compiled, the others are `base`'s, and the members come
/// in `doc`'s order. The result equals `compile(doc, template, revision)`.
///
/// `None` when that cannot be done member by member — the head or template changed, a member id
/// repeats, or anything fails to compile — and the caller compiles the whole document, which
/// also reports the errors exactly as a first load does.
pub fn recompile<'d>(
    doc: &'d Document,
    template: Option<&'d Document>,
    base: &Tenant,
    prints: &'d Prints,
    revision: u64,
) -> Option<(Tenant, Prints)> {
    let slots: Vec<Slot<'d>> = doc.members.iter().map(Slot::Read).collect();
    recompile_slots(doc, template, &slots, base, prints, revision)
}

/// [`recompile`] for a document reparsed where it changed: `spliced.doc` holds the members
/// parsed again, and its roster says where they go among the members kept as they were. A kept
/// member must be one of `prints` (and so of `base`): the layout the splice was read against
/// must have been taken with `base` and `prints`.
pub fn recompile_spliced(
    spliced: &Spliced,
    template: Option<&Document>,
    base: &Tenant,
    prints: &Prints,
    revision: u64,
) -> Option<(Tenant, Prints)> {
    let doc = &spliced.doc;
    let slots: Vec<Slot<'_>> = spliced
        .roster
        .iter()
        .map(|e| match e {
            Entry::Kept(id) => Some(Slot::Kept(id)),
            Entry::Parsed(i) => doc.members.get(*i).map(Slot::Read),
        })
        .collect::<Option<_>>()?;
    recompile_slots(doc, template, &slots, base, prints, revision)
}

/// A member of the next version: read from its document, or kept as the base has it.
#[derive(Clone, Copy)]
enum Slot<'d> {
    Read(&'d MemberDoc),
    Kept(&'d str),
}

impl<'d> Slot<'d> {
    fn id(self) -> &'d str {
        match self {
            Slot::Read(m) => &m.id.value,
            Slot::Kept(id) => id,
        }
    }
}

fn recompile_slots<'d>(
    doc: &'d Document,
    template: Option<&'d Document>,
    slots: &[Slot<'d>],
    base: &Tenant,
    prints: &'d Prints,
    revision: u64,
) -> Option<(Tenant, Prints)> {
    if prints.head != head(doc, template) || base.members.len() != prints.members.len() {
        return None;
    }
    let mut seen: FxHashSet<&str> = FxHashSet::default();
    seen.reserve(slots.len());
    let mut changes = Vec::new();
    for slot in slots {
        if !seen.insert(slot.id()) {
            return None;
        }
        match *slot {
            Slot::Read(m) if prints.members.get(m.id.value.as_str()) != Some(&m.print) => {
                changes.push(MemberChange::Put(m));
            }
            Slot::Read(_) => {}
            Slot::Kept(id) if prints.members.contains_key(id) => {}
            Slot::Kept(_) => return None,
        }
    }
    changes.extend(prints.members.keys().filter(|id| !seen.contains(&***id)).map(|id| MemberChange::Remove(id)));
    let mut cx = Cx::new(doc, template);
    let everyone = cx.head();
    let members = cx.apply(base, &changes);
    if cx.doc.has_errors() || cx.tpl.has_errors() {
        return None;
    }
    let roster: Vec<Arc<Member>> = slots.iter().map(|s| members.get(s.id()).cloned()).collect::<Option<_>>()?;
    let mut next = prints.members.clone();
    for change in &changes {
        match *change {
            MemberChange::Put(m) => {
                let (id, _) = members.get_key_value(m.id.value.as_str())?;
                next.insert(id.clone(), m.print);
            }
            MemberChange::Remove(id) => {
                next.remove(id);
            }
            MemberChange::Invalid { .. } => {}
        }
    }
    let tenant = cx.finish((members, roster), everyone, revision).ok()?;
    Some((tenant, Prints { head: prints.head, members: next }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{compile, parse_str};

    const HEADS: &[&str] = &[
        "tenant: t
schema: {conversation: [view, reply, export]}
roles:
  agent: {allow: [conversation.view, conversation.reply]}
  admin: {allow: [\"*\"], requestable: [conversation.export]}
units: [{id: eu}, {id: eu-west, parent: eu}]
everyone: [{role: agent, scope: {relation: assignee}}]
rules:
  - {id: r1, effect: deny, actions: [conversation.export], when: {principal: {employment: outsourced}}}
",
        "tenant: t
schema: {conversation: [view, reply, export]}
roles:
  agent: {allow: [conversation.view]}
  admin: {allow: [\"*\"]}
units: [{id: eu}, {id: eu-west, parent: eu}]
rules:
  - {id: r1, effect: mask, fields: [phone], actions: [conversation.view]}
",
    ];

    /// One member from a small vocabulary, so that documents share members, repeat ids and
    /// binding ids, and sometimes name a role or unit that does not exist.
    fn member() -> impl Strategy<Value = String> {
        let id = prop::sample::select(vec!["m0", "m1", "m2", "m3", "m4", "m5"]);
        let status = prop::sample::select(vec!["", ", status: disabled"]);
        let units = prop::sample::select(vec!["", ", units: [eu]", ", units: [eu-west, eu]", ", units: [mars]"]);
        let attrs = prop::sample::select(vec!["", ", attrs: {employment: outsourced}", ", attrs: {level: 3}"]);
        let binding = (
            prop::sample::select(vec!["agent", "admin", "agnet"]),
            prop::sample::select(vec!["tenant", "own_units", "{unit: eu-west}", "{relation: owner}"]),
            prop::sample::select(vec!["", ", id: b1", ", id: b2", ", id: r1"]),
            prop::sample::select(vec!["", ", until: \"2030-01-01T00:00:00Z\"", ", when: {in_unit: eu}"]),
        )
            .prop_map(|(role, scope, id, extra)| format!("{{role: {role}, scope: {scope}{id}{extra}}}"));
        (id, status, units, attrs, prop::collection::vec(binding, 0..3)).prop_map(|(id, status, units, attrs, b)| {
            format!("{{id: {id}{status}{units}{attrs}, bindings: [{}]}}", b.join(", "))
        })
    }

    fn doc(head: usize, members: &[String]) -> Document {
        let mut text = HEADS[head].to_owned();
        text.push_str(if members.is_empty() { "members: []\n" } else { "description: any text\nmembers:\n" });
        for m in members {
            text.push_str(&format!("  # a member\n  - {m}\n"));
        }
        let (doc, diags) = parse_str("t.yaml", &text, None);
        assert!(!diags.iter().any(|d| d.is_error()), "{diags:?}");
        doc.unwrap()
    }

    /// Everything a tenant serves, in a canonical text: its members by id and in order.
    fn canonical(t: &Tenant) -> String {
        assert!(t.roster.iter().all(|m| Arc::ptr_eq(m, &t.members[&m.id])), "roster and member table disagree");
        assert_eq!(t.roster.len(), t.members.len());
        let mut rest = t.clone();
        rest.members = FxHashMap::default();
        format!("{rest:?}")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn member_by_member_equals_a_full_compile(
            versions in prop::collection::vec((0..HEADS.len(), prop::collection::vec(member(), 0..6)), 2..5),
        ) {
            let mut served: Option<(Tenant, Prints)> = None;
            for (revision, (head, members)) in versions.iter().enumerate() {
                let next = doc(*head, members);
                let full = compile(&next, None, revision as u64);
                let step = served.as_ref().and_then(|(base, prints)| recompile(&next, None, base, prints, revision as u64));
                match (&full, step) {
                    (Ok(want), Some((got, prints))) => {
                        prop_assert_eq!(canonical(&got), canonical(want));
                        prop_assert_eq!(prints.len(), want.member_count());
                        served = Some((got, prints));
                    }
                    (Ok(want), None) => {
                        let same_head = served.as_ref().is_none_or(|(_, p)| p.head != head_of(&next));
                        prop_assert!(same_head, "a change of members only must not need a full compile");
                        served = Some((want.clone(), Prints::of(&next, None, want)));
                    }
                    (Err(_), Some((got, _))) => prop_assert!(false, "served {got:?} where a full compile fails"),
                    (Err(_), None) => {}
                }
            }
        }
    }

    fn head_of(doc: &Document) -> u64 {
        head(doc, None)
    }

    #[test]
    fn a_moved_or_reformatted_member_is_not_compiled_again() {
        let a = "{id: a, bindings: [{role: agent, scope: tenant}]}".to_owned();
        let b = "{id: b, units: [eu], bindings: [{role: admin, scope: own_units}]}".to_owned();
        let before = doc(0, &[a.clone(), b.clone()]);
        let base = compile(&before, None, 1).unwrap();
        let prints = Prints::of(&before, None, &base);
        let b_block = "id: b\n    units: [eu]\n    bindings:\n      - {role: admin, scope: own_units}".to_owned();
        let after = doc(0, &[b_block, a]);
        let (got, _) = recompile(&after, None, &base, &prints, 2).unwrap();
        assert_eq!(got.roster.iter().map(|m| &*m.id).collect::<Vec<_>>(), ["b", "a"]);
        assert!(
            Arc::ptr_eq(&got.members["a"], &base.members["a"]) && Arc::ptr_eq(&got.members["b"], &base.members["b"])
        );
        assert_eq!(canonical(&got), canonical(&compile(&after, None, 2).unwrap()));
    }
}
