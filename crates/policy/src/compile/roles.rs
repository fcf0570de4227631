//! Roles: `extends` expanded with an explicit stack (any depth, cycles reported), then `except`
//! removed and `requestable` resolved, each role's permissions a bit set over the actions.

use super::*;

impl<'d> Cx<'d> {
    pub(super) fn roles(&mut self) {
        // Template roles first; a tenant role with the same name replaces the template's.
        let mut docs: Vec<(&'d RoleDoc, bool)> = Vec::new();
        for (layer, is_tpl) in self.layers() {
            for role in &layer.roles {
                match self.role_ids.get(role.name.value.as_str()) {
                    Some(&i) => docs[i as usize] = (role, is_tpl),
                    None => {
                        self.role_ids.insert(&role.name.value, docs.len() as u32);
                        docs.push((role, is_tpl));
                    }
                }
            }
        }
        let n = self.action_names.len();
        let mut own: Vec<(BitSet, BitSet, BitSet)> = Vec::with_capacity(docs.len());
        for (role, is_tpl) in &docs {
            let path = format!("roles.{}", role.name.value);
            let allow = self.patterns(&role.allow, &format!("{path}.allow"), *is_tpl);
            let except = self.patterns(&role.except, &format!("{path}.except"), *is_tpl);
            let req = self.patterns(&role.requestable, &format!("{path}.requestable"), *is_tpl);
            own.push((allow, except, req));
        }
        let mut state = vec![Visit::New; docs.len()];
        let mut done: Vec<Option<(BitSet, BitSet)>> = vec![None; docs.len()];
        for i in 0..docs.len() {
            self.expand(i, &docs, &own, &mut state, &mut done);
        }
        self.roles = docs
            .iter()
            .zip(done)
            .map(|((doc, _), sets)| {
                let (allow, requestable) = sets.unwrap_or_else(|| (BitSet::with_len(n), BitSet::with_len(n)));
                Role { name: Arc::from(doc.name.value.as_str()), allow, requestable }
            })
            .collect();
    }

    /// Effective permissions of role `i` and of every role it extends: (allow ∪ extended roles'
    /// allow) − except, and the union of requestable actions. Reports unknown roles and cycles
    /// in `extends`. Depth-first with an explicit stack, so a chain of any length neither
    /// overflows the thread's stack nor hits a depth limit.
    fn expand(
        &mut self,
        i: usize,
        docs: &[(&'d RoleDoc, bool)],
        own: &[(BitSet, BitSet, BitSet)],
        state: &mut [Visit],
        done: &mut [Option<(BitSet, BitSet)>],
    ) {
        let Some(Visit::New) = state.get(i) else { return };
        // INVARIANT: role indices come from `role_ids`, built from `docs`; `own`, `state` and
        // `done` have one entry per doc.
        let mut stack = vec![Frame::new(i, own)];
        state[i] = Visit::Active;
        while let Some(top) = stack.last_mut() {
            let (role, is_tpl) = docs[top.role];
            let Some(parent) = role.extends.get(top.next) else {
                // Every parent is merged: the role is complete.
                let Some(Frame { role: r, mut allow, except, req, .. }) = stack.pop() else { break };
                allow.subtract(&except);
                done[r] = Some((allow, req));
                state[r] = Visit::Done;
                continue;
            };
            let path = format!("roles.{}.extends[{}]", role.name.value, top.next);
            let Some(&p) = self.role_ids.get(parent.value.as_str()) else {
                top.next += 1;
                let hint = suggest::hint(&parent.value, docs.iter().map(|(d, _)| d.name.value.as_str()));
                self.report(is_tpl).error(parent.at, path, format!("unknown role `{}`{hint}", parent.value));
                continue;
            };
            let p = p as usize;
            match state[p] {
                Visit::New => {
                    // Come back to this parent once it is done.
                    state[p] = Visit::Active;
                    stack.push(Frame::new(p, own));
                }
                Visit::Active => {
                    top.next += 1;
                    let msg = format!(
                        "role `{}` extends `{}`, which leads back to it (cycle in `extends`)",
                        role.name.value, parent.value
                    );
                    self.report(is_tpl).error(parent.at, path, msg);
                }
                Visit::Done => {
                    top.next += 1;
                    if let Some((pa, pr)) = &done[p] {
                        top.allow.union_with(pa);
                        top.req.union_with(pr);
                    }
                }
            }
        }
    }

    pub(super) fn role(&mut self, name: &Spanned<String>, path: String, is_tpl: bool) -> Option<u32> {
        let id = self.role_ids.get(name.value.as_str()).copied();
        if id.is_none() {
            let hint = suggest::hint(&name.value, self.roles.iter().map(|r| r.name.as_ref()));
            self.report(is_tpl).error(name.at, path, format!("unknown role `{}`{hint}", name.value));
        }
        id
    }
}

/// A role being expanded: its own sets so far and the next `extends` entry to merge.
struct Frame {
    role: usize,
    next: usize,
    allow: BitSet,
    except: BitSet,
    req: BitSet,
}

impl Frame {
    fn new(role: usize, own: &[(BitSet, BitSet, BitSet)]) -> Self {
        let (allow, except, req) = own[role].clone();
        Frame { role, next: 0, allow, except, req }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    New,
    Active,
    Done,
}
