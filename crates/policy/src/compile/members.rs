//! Recompiling only some members of a compiled tenant. A member added, changed or removed costs
//! the work of that member, of the tenant's schema, roles and units (small), and a copy of the
//! member table's pointers — not a recompile of every member.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashSet;

use super::Cx;
use crate::diag::Diagnostic;
use crate::document::{Document, MemberDoc};
use rolegate_engine::{Member, MemberKey, Members, Tenant};

/// One change to a tenant's members.
#[derive(Clone, Copy, Debug)]
pub enum MemberChange<'d> {
    /// Adds the member, or replaces the member with the same id.
    Put(&'d MemberDoc),
    /// Removes the member with this id, if there is one.
    Remove(&'d str),
    /// Serves the member with this id as invalid (its input was rejected before it could be
    /// parsed): no grant at all, and `why` in every decision.
    Invalid {
        /// Member id.
        id: &'d str,
        /// Why, for the decision's message.
        why: &'d str,
    },
}

/// A tenant compiled by [`compile_members_isolated`].
#[derive(Debug)]
pub struct Isolated {
    /// The tenant, with every rejected member served as invalid.
    pub tenant: Tenant,
    /// The findings about each rejected change, by the change's index.
    pub rejected: BTreeMap<usize, Vec<Diagnostic>>,
}

/// Applies `changes` to `base` at `revision`. `base` must have been compiled from `doc` and
/// `template`; the members of `doc` are not read. Errors name `members[i]`, `i` being the index
/// of the change. The result equals compiling the whole document with the changed members.
pub fn compile_members<'d>(
    doc: &'d Document,
    template: Option<&'d Document>,
    base: &Tenant,
    changes: &[MemberChange<'d>],
    revision: u64,
) -> Result<Tenant, Vec<Diagnostic>> {
    let mut cx = Cx::new(doc, template);
    let everyone = cx.head();
    let members = cx.apply(base, changes);
    let roster = roster(base, &members, changes);
    cx.finish((members, roster), everyone, revision)
}

/// `base`'s member order after `changes`: a kept or changed member keeps its place, a removed
/// one leaves it, an added one comes last (in the order of `changes`). Linear in the tenant, like
/// the copy of its member table.
fn roster(base: &Tenant, members: &Members, changes: &[MemberChange<'_>]) -> Vec<Arc<Member>> {
    let mut out: Vec<Arc<Member>> = Vec::with_capacity(members.len());
    out.extend(base.roster.iter().filter_map(|m| members.get(&*m.id).cloned()));
    let mut added: FxHashSet<&str> = FxHashSet::default();
    for id in changes.iter().filter_map(changed_id) {
        if !base.members.contains_key(id) && added.insert(id) {
            out.extend(members.get(id).cloned());
        }
    }
    out
}

/// Like [`compile_members`], but a member whose change fails does not fail the others: it is
/// served as [`Member::invalid`] (denied everything) and its findings are returned beside the
/// tenant. Only an error outside every member (the head itself) fails the whole.
pub fn compile_members_isolated<'d>(
    doc: &'d Document,
    template: Option<&'d Document>,
    base: &Tenant,
    changes: &[MemberChange<'d>],
    revision: u64,
) -> Result<Isolated, Vec<Diagnostic>> {
    let mut cx = Cx::new(doc, template);
    let everyone = cx.head();
    let mut members = cx.apply(base, changes);
    let mut rejected: BTreeMap<usize, Vec<Diagnostic>> = BTreeMap::new();
    cx.doc.diags.retain(|d| match change_index(&d.key).filter(|_| d.is_error()) {
        Some(i) => {
            rejected.entry(i).or_default().push(d.clone());
            false
        }
        None => true,
    });
    for (i, findings) in &rejected {
        if let Some(id) = changes.get(*i).and_then(changed_id) {
            members.insert(MemberKey::from(id), Arc::new(Member::invalid(id, &rejection(id, findings))));
        }
    }
    let roster = roster(base, &members, changes);
    let tenant = cx.finish((members, roster), everyone, revision)?;
    Ok(Isolated { tenant, rejected })
}

/// The message every decision about a rejected member carries: what was wrong with its input.
/// Keys are shown relative to the member (`bindings[1].role`); at most three findings are spelled
/// out, so that a decision stays small.
pub fn rejection(id: &str, findings: &[Diagnostic]) -> String {
    const SHOWN: usize = 3;
    let mut parts: Vec<String> = findings
        .iter()
        .take(SHOWN)
        .map(|d| match relative(&d.key) {
            "" => d.message.clone(),
            key => format!("{key}: {}", d.message),
        })
        .collect();
    if findings.len() > SHOWN {
        parts.push(format!("and {} more", findings.len() - SHOWN));
    }
    format!("member `{id}` is denied everything because its policy input is invalid: {}", parts.join("; "))
}

/// `i` of a key `members[i]…`.
fn change_index(key: &str) -> Option<usize> {
    let rest = key.strip_prefix("members[")?;
    rest.split_once(']')?.0.parse().ok()
}

/// `key` without its leading `members[i].`.
fn relative(key: &str) -> &str {
    let rest = key.strip_prefix("members[").and_then(|r| r.split_once(']')).map(|(_, rest)| rest);
    rest.map_or(key, |r| r.strip_prefix('.').unwrap_or(r))
}

/// The member id a change is about.
fn changed_id<'d>(change: &MemberChange<'d>) -> Option<&'d str> {
    match *change {
        MemberChange::Put(m) => Some(&m.id.value),
        MemberChange::Remove(id) | MemberChange::Invalid { id, .. } => Some(id),
    }
}

impl<'d> Cx<'d> {
    /// Compiles what members compile against: schema, units, roles, rules; returns `everyone`.
    pub(super) fn head(&mut self) -> Vec<rolegate_engine::Binding> {
        // Same inputs, same interning: the ids of roles, units and actions match `base`'s.
        self.schema();
        self.units();
        self.roles();
        let everyone = self.everyone();
        self.rules();
        everyone
    }

    /// `base`'s members with `changes` applied; errors name `members[i]`.
    pub(super) fn apply(&mut self, base: &Tenant, changes: &[MemberChange<'d>]) -> Members {
        let mut members = base.members.clone();
        let mut touched: FxHashSet<&str> = FxHashSet::default();
        for (i, change) in changes.iter().enumerate() {
            match *change {
                MemberChange::Put(m) => {
                    let path = format!("members[{i}]");
                    if !touched.insert(&m.id.value) {
                        self.doc.error(m.id.at, format!("{path}.id"), format!("duplicate member `{}`", m.id.value));
                        continue;
                    }
                    let member = self.member(m, &path);
                    members.insert(MemberKey::from(&member.id), Arc::new(member));
                }
                MemberChange::Remove(id) => {
                    touched.insert(id);
                    members.remove(id);
                }
                MemberChange::Invalid { id, why } => {
                    touched.insert(id);
                    members.insert(MemberKey::from(id), Arc::new(Member::invalid(id, why)));
                }
            }
        }
        self.clashes_with_kept(base, &touched, changes);
        members
    }
}

impl Cx<'_> {
    /// Reports explicit binding ids of the put members that a kept member of `base` already
    /// uses: binding and rule ids are unique in a tenant. Clashes with rules, `everyone` and
    /// the other put members were reported while compiling the put members.
    fn clashes_with_kept(&mut self, base: &Tenant, touched: &FxHashSet<&str>, changes: &[MemberChange<'_>]) {
        let new_ids: FxHashSet<&str> = changes
            .iter()
            .filter_map(put)
            .flat_map(|m| m.bindings.iter().filter_map(|b| b.id.as_ref().map(|id| id.value.as_str())))
            .collect();
        if new_ids.is_empty() {
            return;
        }
        let mut clashing: FxHashSet<&str> = FxHashSet::default();
        for m in base.members.values().filter(|m| !touched.contains(&*m.id)) {
            for (k, b) in m.bindings.iter().enumerate() {
                if new_ids.contains(&*b.id) && !is_default_id(&b.id, &m.id, k) {
                    clashing.insert(&b.id);
                }
            }
        }
        for (i, m) in changes.iter().enumerate().filter_map(|(i, c)| put(c).map(|m| (i, m))) {
            for (k, b) in m.bindings.iter().enumerate() {
                if let Some(id) = b.id.as_ref().filter(|id| clashing.contains(id.value.as_str())) {
                    let msg = format!("duplicate id `{}` (binding and rule ids must be unique in a tenant)", id.value);
                    self.doc.error(id.at, format!("members[{i}].bindings[{k}].id"), msg);
                }
            }
        }
    }
}

fn put<'d>(change: &MemberChange<'d>) -> Option<&'d MemberDoc> {
    match *change {
        MemberChange::Put(m) => Some(m),
        MemberChange::Remove(_) | MemberChange::Invalid { .. } => None,
    }
}

/// True when `id` is the id a binding without an explicit one gets: `<member>#<index>`.
fn is_default_id(id: &str, member: &str, index: usize) -> bool {
    id.strip_prefix(member).and_then(|r| r.strip_prefix('#')).is_some_and(|n| n.parse() == Ok(index))
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::{compile, parse_str};
    use rolegate_engine::{Attrs, Context, Request, Resource, Scope, Snapshot, Value, decide};

    const HEAD: &str = "tenant: t
schema: {conversation: [view, reply, export]}
roles:
  agent: {allow: [conversation.view, conversation.reply]}
  admin: {allow: [\"*\"], requestable: [conversation.export]}
units: [{id: eu}, {id: eu-west, parent: eu}]
rules:
  - {id: no-export, effect: deny, actions: [conversation.export], when: {principal: {employment: outsourced}}}
";

    const MEMBERS: &[&str] = &[
        "{id: rep, units: [eu-west], bindings: [{role: agent, scope: {relation: assignee}}]}",
        "{id: lead, units: [eu], bindings: [{id: lead-grant, role: admin, scope: own_units}]}",
        "{id: ext, attrs: {employment: outsourced}, bindings: [{role: admin, scope: tenant}]}",
    ];

    fn doc(members: &[&str]) -> Document {
        let mut text = HEAD.to_owned();
        text.push_str("members:\n");
        for m in members {
            text.push_str(&format!("  - {m}\n"));
        }
        let (doc, diags) = parse_str("t.yaml", &text, None);
        assert!(diags.is_empty(), "{diags:?}");
        doc.unwrap()
    }

    fn decisions(t: Tenant) -> Vec<String> {
        let mut s = Snapshot::default();
        s.insert(Arc::new(t));
        let now: Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
        let mut out = Vec::new();
        for who in ["rep", "lead", "ext", "new"] {
            for action in ["conversation.view", "conversation.reply", "conversation.export"] {
                for unit in ["", "eu-west"] {
                    let attrs: Attrs = [("assignee".to_owned(), Value::Text("rep".into()))].into_iter().collect();
                    let req = Request {
                        tenant: "t".into(),
                        principal: who.into(),
                        action: action.into(),
                        resource: Resource { kind: "conversation".into(), id: "c".into(), unit: unit.into(), attrs },
                        context: Context::default(),
                    };
                    out.push(format!("{who} {action} {unit}: {:?}", decide(&s, &req.query(), now)));
                }
            }
        }
        out
    }

    #[test]
    fn bindings_share_one_relation_name_and_long_ids_are_found() {
        let long = "support-agent-with-a-very-long-member-id-0001";
        let t = compile(
            &doc(&[MEMBERS[0], &format!("{{id: {long}, bindings: [{{role: agent, scope: {{relation: assignee}}}}]}}")]),
            None,
            1,
        )
        .unwrap();
        let relation = |id: &str| match &t.members.get(id).unwrap().bindings[0].scope {
            Scope::Relation(attr) => attr.clone(),
            other => panic!("{other:?}"),
        };
        assert!(Arc::ptr_eq(&relation("rep"), &relation(long)));
        assert_eq!(&*t.members.get(long).unwrap().id, long);
        assert!(!t.members.contains_key(&long[..long.len() - 1]));
    }

    #[test]
    fn putting_changing_and_removing_a_member_equals_a_full_compile() {
        let before = doc(&MEMBERS[..2]);
        let base = compile(&before, None, 1).unwrap();
        let new = doc(&["{id: new, status: disabled, bindings: [{role: agent, scope: tenant}]}"]);
        let changed_rep = doc(&["{id: rep, units: [eu], bindings: [{role: admin, scope: own_units}]}"]);
        let ext = doc(&MEMBERS[2..]);
        let changes = [
            MemberChange::Put(&ext.members[0]),
            MemberChange::Put(&new.members[0]),
            MemberChange::Put(&changed_rep.members[0]),
            MemberChange::Remove("lead"),
        ];
        let got = compile_members(&before, None, &base, &changes, 2).unwrap();
        assert_eq!(got.revision, 2);
        let want_doc = doc(&[
            "{id: rep, units: [eu], bindings: [{role: admin, scope: own_units}]}",
            MEMBERS[2],
            "{id: new, status: disabled, bindings: [{role: agent, scope: tenant}]}",
        ]);
        let want = compile(&want_doc, None, 2).unwrap();
        let order = |t: &Tenant| t.roster.iter().map(|m| m.id.to_string()).collect::<Vec<_>>();
        assert_eq!(order(&got), ["rep", "ext", "new"], "kept members keep their place, added ones come last");
        assert_eq!(order(&got), order(&want));
        assert!(got.roster.iter().all(|m| Arc::ptr_eq(m, &got.members[&*m.id])));
        assert_eq!(decisions(got), decisions(want));
    }

    #[test]
    fn a_bad_member_is_reported_under_its_change_and_fails_the_update() {
        let before = doc(MEMBERS);
        let base = compile(&before, None, 1).unwrap();
        let bad = doc(&["{id: rep, units: [mars], bindings: [{role: agnet, scope: tenant}]}"]);
        let errs = compile_members(
            &before,
            None,
            &base,
            &[MemberChange::Remove("ext"), MemberChange::Put(&bad.members[0])],
            2,
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["members[1].units[0]", "members[1].bindings[0].role"], "{errs:?}");
        assert!(errs[1].message.contains("did you mean `agent`"), "{}", errs[1].message);
    }

    #[test]
    fn an_explicit_binding_id_used_by_a_kept_member_or_a_rule_is_a_duplicate() {
        let before = doc(MEMBERS);
        let base = compile(&before, None, 1).unwrap();
        let other = doc(&[
            "{id: rep, bindings: [{id: lead-grant, role: agent, scope: tenant}, {id: no-export, role: agent, scope: tenant}]}",
        ]);
        let errs = compile_members(&before, None, &base, &[MemberChange::Put(&other.members[0])], 2).unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["members[0].bindings[1].id", "members[0].bindings[0].id"], "{errs:?}");
        // The member that held the id is replaced in the same update: no clash.
        let lead = doc(&["{id: lead, bindings: [{role: agent, scope: tenant}]}"]);
        let ok = [MemberChange::Put(&lead.members[0]), MemberChange::Put(&other.members[0])];
        let errs = compile_members(&before, None, &base, &ok, 2).unwrap_err();
        assert_eq!(errs.len(), 1, "only the rule id clashes: {errs:?}");
    }

    #[test]
    fn default_ids_are_recognised() {
        assert!(is_default_id("rep#1", "rep", 1));
        assert!(!is_default_id("rep#1", "rep", 0));
        assert!(!is_default_id("rep-1", "rep", 1));
    }
}
