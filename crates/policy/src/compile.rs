//! Document (+ template) → [`Tenant`]: merges the template, resolves every name, interns actions,
//! units and roles, and reports every error with file, line and key. Linear in the tenant's size.

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::diag::{Diagnostic, Report, Spanned};
use super::document::*;
use rolegate_engine::suggest;
use rolegate_engine::{Binding, Bindings, BitSet, Clause, Cond, Effect, Member, MemberKey, Role, Rule, Scope, Tenant};

mod members;
mod prints;
mod roles;

pub use members::{Isolated, MemberChange, compile_members, compile_members_isolated, rejection};
pub use prints::{Prints, recompile, recompile_spliced};

/// Compiles a tenant document with its template (when it names one) at `revision`.
pub fn compile(doc: &Document, template: Option<&Document>, revision: u64) -> Result<Tenant, Vec<Diagnostic>> {
    let mut cx = Cx::new(doc, template);
    cx.schema();
    cx.units();
    cx.roles();
    let members = cx.members();
    let everyone = cx.everyone();
    cx.rules();
    cx.finish(members, everyone, revision)
}

/// A tenant's members by id, and the same members in document order.
type Members = (rolegate_engine::Members, Vec<Arc<Member>>);

struct Cx<'d> {
    doc_src: &'d Document,
    tpl_src: Option<&'d Document>,
    doc: Report,
    tpl: Report,
    kinds: Vec<Arc<str>>,
    kind_ids: FxHashMap<&'d str, u32>,
    actions: FxHashMap<Box<str>, u32>,
    action_names: Vec<Arc<str>>,
    action_kind: Vec<u32>,
    units: FxHashMap<Box<str>, u32>,
    unit_span: Vec<(u32, u32)>,
    unit_names: Vec<Arc<str>>,
    roles: Vec<Role>,
    role_ids: FxHashMap<&'d str, u32>,
    /// Explicit binding ids and rule ids, which share one namespace.
    ids: FxHashMap<&'d str, ()>,
    rules: Vec<Rule>,
    denies: Vec<Vec<u32>>,
    obligations: Vec<Vec<u32>>,
    /// The relation scopes' attribute names, one copy each for all the bindings that name them.
    relations: FxHashSet<Arc<str>>,
}

impl<'d> Cx<'d> {
    fn new(doc: &'d Document, tpl: Option<&'d Document>) -> Self {
        let tpl_file = tpl.map(|t| t.file.clone()).unwrap_or_else(|| doc.file.clone());
        Cx {
            doc_src: doc,
            tpl_src: tpl,
            doc: Report::new(doc.file.clone()),
            tpl: Report::new(tpl_file),
            kinds: Vec::new(),
            kind_ids: FxHashMap::default(),
            actions: FxHashMap::default(),
            action_names: Vec::new(),
            action_kind: Vec::new(),
            units: FxHashMap::default(),
            unit_span: Vec::new(),
            unit_names: Vec::new(),
            roles: Vec::new(),
            role_ids: FxHashMap::default(),
            ids: FxHashMap::default(),
            rules: Vec::new(),
            denies: Vec::new(),
            obligations: Vec::new(),
            relations: FxHashSet::default(),
        }
    }

    /// The tenant, unless an error was reported.
    fn finish(
        mut self,
        (members, roster): Members,
        everyone: Vec<Binding>,
        revision: u64,
    ) -> Result<Tenant, Vec<Diagnostic>> {
        let mut diags = std::mem::take(&mut self.tpl.diags);
        diags.append(&mut self.doc.diags);
        if diags.iter().any(Diagnostic::is_error) {
            return Err(diags);
        }
        Ok(Tenant {
            name: Arc::from(self.doc_src.name.value.as_str()),
            revision,
            generation: 0,
            kinds: self.kinds,
            actions: self.actions,
            action_names: self.action_names,
            action_kind: self.action_kind,
            units: self.units,
            unit_span: self.unit_span,
            unit_names: self.unit_names,
            roles: self.roles,
            members,
            roster,
            everyone,
            rules: self.rules,
            denies: self.denies.into_iter().map(Vec::into_boxed_slice).collect(),
            obligations: self.obligations.into_iter().map(Vec::into_boxed_slice).collect(),
            // The tenant's own setting beats its template's.
            max_staleness: [Some(self.doc_src), self.tpl_src]
                .into_iter()
                .flatten()
                .find_map(|d| d.max_staleness.as_ref().map(|s| s.value))
                .unwrap_or(rolegate_engine::DEFAULT_MAX_STALENESS),
        })
    }

    /// The template first, then the tenant document: the merge order of docs/policy-language.md, "Template merge rules".
    fn layers(&self) -> impl Iterator<Item = (&'d Document, bool)> + use<'d> {
        self.tpl_src.map(|t| (t, true)).into_iter().chain(std::iter::once((self.doc_src, false)))
    }

    fn report(&mut self, from_template: bool) -> &mut Report {
        if from_template { &mut self.tpl } else { &mut self.doc }
    }

    fn schema(&mut self) {
        for (layer, is_tpl) in self.layers() {
            for kind in &layer.schema {
                let kid = *self.kind_ids.entry(&kind.name.value).or_insert_with(|| {
                    self.kinds.push(Arc::from(kind.name.value.as_str()));
                    self.kinds.len() as u32 - 1
                });
                let mut seen: Vec<&str> = Vec::new();
                for verb in &kind.verbs {
                    let name = format!("{}.{}", kind.name.value, verb.value);
                    if seen.contains(&verb.value.as_str()) {
                        let msg = format!("duplicate verb `{}`", verb.value);
                        self.report(is_tpl).error(verb.at, format!("schema.{}", kind.name.value), msg);
                        continue;
                    }
                    seen.push(&verb.value);
                    if !self.actions.contains_key(name.as_str()) {
                        self.actions.insert(name.as_str().into(), self.action_names.len() as u32);
                        self.action_names.push(Arc::from(name));
                        self.action_kind.push(kid);
                    }
                }
            }
        }
        self.denies = vec![Vec::new(); self.action_names.len()];
        self.obligations = vec![Vec::new(); self.action_names.len()];
    }

    /// Expands an action pattern (`*`, `kind.*`, `*.verb`, `kind.verb`) into `set`.
    fn pattern(&mut self, pat: &Spanned<String>, path: &str, is_tpl: bool, set: &mut BitSet) {
        let p = pat.value.as_str();
        if p == "*" {
            (0..self.action_names.len() as u32).for_each(|a| set.insert(a));
            return;
        }
        match p.split_once('.') {
            Some(("*", verb)) => {
                let mut found = false;
                for (i, name) in self.action_names.iter().enumerate() {
                    if name.split_once('.').is_some_and(|(_, v)| v == verb) {
                        set.insert(i as u32);
                        found = true;
                    }
                }
                if !found {
                    let msg = format!("no kind of the schema has the verb `{verb}` in `{p}`");
                    self.report(is_tpl).error(pat.at, path, msg);
                }
            }
            Some((kind, "*")) => match self.kind_ids.get(kind) {
                Some(kid) => {
                    for (i, k) in self.action_kind.iter().enumerate() {
                        if k == kid {
                            set.insert(i as u32);
                        }
                    }
                }
                None => {
                    let hint = suggest::hint(kind, self.kinds.iter().map(|k| k.as_ref()));
                    self.report(is_tpl).error(pat.at, path, format!("unknown kind `{kind}` in `{p}`{hint}"));
                }
            },
            _ => match self.actions.get(p) {
                Some(a) => set.insert(*a),
                None => {
                    let hint = suggest::hint(p, self.action_names.iter().map(|a| a.as_ref()));
                    self.report(is_tpl).error(pat.at, path, format!("unknown action `{p}`{hint}"));
                }
            },
        }
    }

    fn patterns(&mut self, pats: &[Spanned<String>], path: &str, is_tpl: bool) -> BitSet {
        let mut set = BitSet::with_len(self.action_names.len());
        for (i, p) in pats.iter().enumerate() {
            self.pattern(p, &format!("{path}[{i}]"), is_tpl, &mut set);
        }
        set
    }

    fn units(&mut self) {
        let units = &self.doc_src.units;
        for (i, u) in units.iter().enumerate() {
            if self.units.contains_key(u.id.value.as_str()) {
                self.doc.error(u.id.at, format!("units[{i}].id"), format!("duplicate unit `{}`", u.id.value));
                continue;
            }
            self.units.insert(u.id.value.as_str().into(), i as u32);
        }
        // Only the first definition of a duplicated id takes part in the tree.
        let first = |i: usize, u: &UnitDoc| self.units.get(u.id.value.as_str()) == Some(&(i as u32));
        let mut children: Vec<Vec<u32>> = vec![Vec::new(); units.len()];
        let mut roots = Vec::new();
        for (i, u) in units.iter().enumerate().filter(|(i, u)| first(*i, u)) {
            match &u.parent {
                None => roots.push(i as u32),
                Some(p) => match self.units.get(p.value.as_str()) {
                    Some(&pi) => children[pi as usize].push(i as u32),
                    None => {
                        let hint = suggest::hint(&p.value, units.iter().map(|u| u.id.value.as_str()));
                        self.doc.error(p.at, format!("units[{i}].parent"), format!("unknown unit `{}`{hint}", p.value));
                        roots.push(i as u32);
                    }
                },
            }
        }
        // Pre-order numbering with explicit enter/exit so deep trees cannot overflow the stack.
        let mut span = vec![(u32::MAX, u32::MAX); units.len()];
        let mut counter = 0u32;
        let mut stack: Vec<(u32, bool)> = roots.iter().rev().map(|r| (*r, false)).collect();
        while let Some((n, exiting)) = stack.pop() {
            if exiting {
                span[n as usize].1 = counter;
                continue;
            }
            span[n as usize].0 = counter;
            counter += 1;
            stack.push((n, true));
            stack.extend(children[n as usize].iter().rev().map(|c| (*c, false)));
        }
        for (i, u) in units.iter().enumerate().filter(|(i, u)| first(*i, u)) {
            if span[i].0 == u32::MAX {
                let at = u.parent.as_ref().map_or(u.id.at, |p| p.at);
                self.doc.error(
                    at,
                    format!("units[{i}].parent"),
                    format!("unit `{}` is part of a cycle of parents", u.id.value),
                );
            }
        }
        self.unit_span = span;
        self.unit_names = units.iter().map(|u| Arc::from(u.id.value.as_str())).collect();
    }

    fn unit(&mut self, name: &Spanned<String>, path: String, is_tpl: bool) -> Option<u32> {
        let id = self.units.get(name.value.as_str()).copied();
        if id.is_none() {
            let hint = suggest::hint(&name.value, self.unit_names.iter().map(|u| u.as_ref()));
            let msg = if is_tpl {
                format!("unknown unit `{}`: tenant `{}` has no such unit", name.value, self.doc_src.name.value)
            } else {
                format!("unknown unit `{}`{hint}", name.value)
            };
            self.report(is_tpl).error(name.at, path, msg);
        }
        id
    }

    fn unique_id(&mut self, id: &'d Spanned<String>, path: String, is_tpl: bool) {
        if self.ids.insert(&id.value, ()).is_some() {
            let msg = format!("duplicate id `{}` (binding and rule ids must be unique in a tenant)", id.value);
            self.report(is_tpl).error(id.at, path, msg);
        }
    }

    /// The one shared copy of a relation scope's attribute name: a `Check` compares it with the
    /// resource's attribute names, and one copy stays in cache where each binding's own would not.
    fn relation(&mut self, attr: &str) -> Arc<str> {
        if let Some(r) = self.relations.get(attr) {
            return r.clone();
        }
        let r: Arc<str> = Arc::from(attr);
        self.relations.insert(r.clone());
        r
    }

    fn binding(&mut self, b: &'d BindingDoc, path: &str, default_id: String, is_tpl: bool) -> Option<Binding> {
        let id = match &b.id {
            Some(id) => {
                self.unique_id(id, format!("{path}.id"), is_tpl);
                Arc::from(id.value.as_str())
            }
            None => Arc::from(default_id),
        };
        let role = self.role(&b.role, format!("{path}.role"), is_tpl);
        let scope = match &b.scope {
            ScopeDoc::Tenant => Some(Scope::Tenant),
            ScopeDoc::OwnUnits => Some(Scope::OwnUnits),
            ScopeDoc::Relation(attr) => Some(Scope::Relation(self.relation(attr))),
            ScopeDoc::Unit(u) => self.unit(u, format!("{path}.scope.unit"), is_tpl).map(Scope::Unit),
        };
        let when = b.when.as_ref().and_then(|w| self.when(w, is_tpl)).map(Box::new);
        if b.when.is_some() && when.is_none() {
            return None;
        }
        Some(Binding { id, role: role?, scope: scope?, window: Binding::window(b.from, b.until), when })
    }

    fn when(&mut self, w: &WhenDoc, is_tpl: bool) -> Option<Cond> {
        let mut clauses = Vec::with_capacity(w.clauses.len());
        let mut ok = true;
        for c in &w.clauses {
            let clause = match c {
                ClauseDoc::Principal(t) => Some(Clause::Principal(tests(t))),
                ClauseDoc::Resource(t) => Some(Clause::Resource(tests(t))),
                ClauseDoc::Context(t) => Some(Clause::Context(tests(t))),
                ClauseDoc::Ip(nets) => Some(Clause::Ip(nets.clone().into_boxed_slice())),
                ClauseDoc::Relation(a) => Some(Clause::Relation(a.as_str().into())),
                ClauseDoc::InUnit(u, path) => self.unit(u, path.clone(), is_tpl).map(Clause::InUnit),
                ClauseDoc::Schedule(s) => Some(Clause::Schedule(s.clone())),
                ClauseDoc::Any(ws) => {
                    let inner: Option<Vec<Cond>> = ws.iter().map(|w| self.when(w, is_tpl)).collect();
                    inner.map(|v| Clause::Any(v.into_boxed_slice()))
                }
                ClauseDoc::Not(w) => self.when(w, is_tpl).map(|c| Clause::Not(Box::new(c))),
            };
            match clause {
                Some(c) => clauses.push(c),
                None => ok = false,
            }
        }
        ok.then(|| Cond::new(clauses))
    }

    /// The members by id, and in document order.
    fn members(&mut self) -> Members {
        let doc = self.doc_src;
        let mut out = rolegate_engine::Members::default();
        out.reserve(doc.members.len());
        let mut roster = Vec::with_capacity(doc.members.len());
        for (i, m) in doc.members.iter().enumerate() {
            let path = format!("members[{i}]");
            if out.contains_key(m.id.value.as_str()) {
                self.doc.error(m.id.at, format!("{path}.id"), format!("duplicate member `{}`", m.id.value));
                continue;
            }
            let member = Arc::new(self.member(m, &path));
            roster.push(member.clone());
            out.insert(MemberKey::from(&member.id), member);
        }
        (out, roster)
    }

    /// Resolves one member's units and bindings; errors are reported under `path`.
    fn member(&mut self, m: &'d MemberDoc, path: &str) -> Member {
        let units: Vec<u32> =
            m.units.iter().enumerate().filter_map(|(k, u)| self.unit(u, format!("{path}.units[{k}]"), false)).collect();
        let bindings: Bindings = m
            .bindings
            .iter()
            .enumerate()
            .filter_map(|(k, b)| {
                self.binding(b, &format!("{path}.bindings[{k}]"), format!("{}#{k}", m.id.value), false)
            })
            .collect();
        Member {
            id: Arc::from(m.id.value.as_str()),
            disabled: m.status == Status::Disabled,
            expires: m.expires,
            units: units.into_boxed_slice(),
            attrs: m.attrs.clone(),
            bindings,
            invalid: None,
        }
    }

    fn everyone(&mut self) -> Vec<Binding> {
        let mut out = Vec::new();
        let mut index = 0;
        for (layer, is_tpl) in self.layers() {
            for (k, b) in layer.everyone.iter().enumerate() {
                out.extend(self.binding(b, &format!("everyone[{k}]"), format!("everyone#{index}"), is_tpl));
                index += 1;
            }
        }
        out
    }

    fn rules(&mut self) {
        for (layer, is_tpl) in self.layers() {
            for (k, r) in layer.rules.iter().enumerate() {
                let path = format!("rules[{k}]");
                self.unique_id(&r.id, format!("{path}.id"), is_tpl);
                let actions = self.patterns(&r.actions, &format!("{path}.actions"), is_tpl);
                let Some(when) = r.when.as_ref().map(|w| self.when(w, is_tpl)).map_or(Some(None), |c| c.map(Some))
                else {
                    continue;
                };
                let idx = self.rules.len() as u32;
                let index = if r.effect == Effect::Deny { &mut self.denies } else { &mut self.obligations };
                for a in actions.iter() {
                    if let Some(list) = index.get_mut(a as usize) {
                        list.push(idx);
                    }
                }
                self.rules.push(Rule {
                    id: Arc::from(r.id.value.as_str()),
                    effect: r.effect,
                    when,
                    fields: r.fields.iter().map(|f| Arc::from(f.as_str())).collect(),
                    alert: r.alert,
                    message: r.message.as_deref().map(Arc::from),
                });
            }
        }
    }
}

fn tests(t: &[(String, rolegate_engine::Test)]) -> Box<[(Box<str>, rolegate_engine::Test)]> {
    t.iter().map(|(k, v)| (k.as_str().into(), v.clone())).collect()
}
