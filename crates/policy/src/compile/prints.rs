//! The next version of a tenant, compiled member by member: a tenant's fingerprints ([`Prints`])
//! say what it was compiled from, so a changed document costs the members whose print changed
//! plus the tenant's head, and no copy of the document needs to be kept between versions.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::{Cx, MemberChange};
use crate::document::Document;
use crate::layout::{Entry, Spliced};
use rolegate_engine::{Member, Members, Tenant};

/// What a tenant was compiled from, as fingerprints: its head with its template, and each member
/// by id. About 30 bytes per member (the ids are shared with the compiled tenant).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
            let id = tenant.members.get(m.id.value.as_str()).map(|member| member.id.clone());
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
pub fn recompile(
    doc: &Document,
    template: Option<&Document>,
    base: &Tenant,
    prints: &Prints,
    revision: u64,
) -> Option<(Tenant, Prints)> {
    if prints.head != head(doc, template) || base.members.len() != prints.members.len() {
        return None;
    }
    let mut seen: FxHashSet<&str> = FxHashSet::default();
    seen.reserve(doc.members.len());
    let mut changes = Vec::new();
    for m in &doc.members {
        if !seen.insert(&m.id.value) {
            return None;
        }
        if prints.members.get(m.id.value.as_str()) != Some(&m.print) {
            changes.push(MemberChange::Put(m));
        }
    }
    changes.extend(prints.members.keys().filter(|id| !seen.contains(&***id)).map(|id| MemberChange::Remove(id)));
    let mut cx = Cx::new(doc, template);
    let everyone = cx.head();
    let members = cx.apply(base, &changes);
    if cx.doc.has_errors() || cx.tpl.has_errors() {
        return None;
    }
    let roster: Vec<Arc<Member>> =
        doc.members.iter().map(|m| members.get(m.id.value.as_str()).cloned()).collect::<Option<_>>()?;
    let mut next = prints.members.clone();
    for (id, print) in put_prints(&members, &changes)? {
        next.insert(id, print);
    }
    for change in &changes {
        if let MemberChange::Remove(id) = *change {
            next.remove(id);
        }
    }
    let tenant = cx.finish((members, roster), everyone, revision).ok()?;
    Some((tenant, Prints { head: prints.head, members: next }))
}

/// The prints of the members `changes` put, keyed by the ids of `members`.
fn put_prints(members: &Members, changes: &[MemberChange<'_>]) -> Option<Vec<(Arc<str>, u64)>> {
    let mut out = Vec::new();
    for change in changes {
        if let MemberChange::Put(m) = *change {
            out.push((members.get(m.id.value.as_str())?.id.clone(), m.print));
        }
    }
    Some(out)
}

/// [`recompile`] for a document reparsed where it changed: `spliced.doc` holds the members
/// parsed again, and its roster says where they go among the members kept as they were, each
/// kept member named by its position in `base`'s roster. The layout the splice was read against
/// must have been taken with `base` and `prints`.
///
/// Costs the changed members plus one copy of `base`'s member table and roster: the kept members
/// are neither looked up by id nor printed again. On success `prints` is brought up to the
/// result in place; on `None` it is left as it was.
pub fn recompile_spliced(
    spliced: &Spliced,
    template: Option<&Document>,
    base: &Tenant,
    prints: &mut Prints,
    revision: u64,
) -> Option<Tenant> {
    let doc = &spliced.doc;
    let n = base.roster.len();
    if prints.head != head(doc, template)
        || base.members.len() != prints.members.len()
        || base.members.len() != n
        || spliced.base_len != n
    {
        return None;
    }
    // Which of base's members stay as they were, by position; which ids are read again.
    let mut kept = vec![false; n];
    let mut read: FxHashSet<&str> = FxHashSet::default();
    for entry in &spliced.roster {
        match *entry {
            Entry::Kept(at) => {
                let slot = kept.get_mut(at as usize)?;
                if std::mem::replace(slot, true) {
                    return None;
                }
            }
            Entry::Parsed(i) => {
                if !read.insert(&doc.members.get(i)?.id.value) {
                    return None;
                }
            }
        }
    }
    // A member of base not kept is removed, unless it is read again.
    let unkept: FxHashSet<&str> =
        base.roster.iter().zip(&kept).filter(|(_, kept)| !**kept).map(|(m, _)| &*m.id).collect();
    let mut changes = Vec::new();
    for m in &doc.members {
        let id = m.id.value.as_str();
        if base.members.contains_key(id) && !unkept.contains(id) {
            return None; // the id of a kept member: a duplicate, reported by a whole parse
        }
        if prints.members.get(id) != Some(&m.print) {
            changes.push(MemberChange::Put(m));
        }
    }
    changes.extend(unkept.iter().filter(|id| !read.contains(*id)).map(|id| MemberChange::Remove(id)));
    let mut cx = Cx::new(doc, template);
    let everyone = cx.head();
    let members = cx.apply(base, &changes);
    if cx.doc.has_errors() || cx.tpl.has_errors() {
        return None;
    }
    let mut roster: Vec<Arc<Member>> = Vec::with_capacity(spliced.roster.len());
    for entry in &spliced.roster {
        roster.push(match *entry {
            Entry::Kept(at) => base.roster.get(at as usize)?.clone(),
            Entry::Parsed(i) => members.get(doc.members.get(i)?.id.value.as_str())?.clone(),
        });
    }
    if roster.len() != members.len() {
        return None;
    }
    let puts = put_prints(&members, &changes)?;
    let tenant = cx.finish((members, roster), everyone, revision).ok()?;
    for change in &changes {
        if let MemberChange::Remove(id) = *change {
            prints.members.remove(id);
        }
    }
    prints.members.extend(puts);
    Some(tenant)
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
        assert!(t.roster.iter().all(|m| Arc::ptr_eq(m, &t.members[&*m.id])), "roster and member table disagree");
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
