//! The policy-directory source: rescans a directory, reparses only files whose bytes changed,
//! recompiles only tenants whose document or template changed, and keeps the last good snapshot
//! of a tenant whose document fails to load.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;

use super::ReloadReport;
use crate::policy::{self, Parsed, PolicyFile};
use crate::store::Store;

/// State of the directory source between reloads.
#[derive(Debug)]
pub struct DirSource {
    root: PathBuf,
    /// Per file: hash of its bytes and its parse.
    files: HashMap<PathBuf, (u64, Parsed)>,
    /// Per tenant: hash of the inputs it was last compiled from, and its revision.
    compiled: HashMap<String, (u64, u64)>,
    /// Per document file: the tenant it declared when it last parsed.
    owners: HashMap<PathBuf, String>,
    /// Revisions start here so that a restarted server never reuses a revision it served before.
    base_revision: u64,
}

fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

impl DirSource {
    /// A source reading `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        // Seconds since the epoch: grows across restarts, leaves room for many changes a second.
        let base_revision = (Timestamp::now().as_second().max(0) as u64) * 1000;
        DirSource {
            root: root.into(),
            files: HashMap::new(),
            compiled: HashMap::new(),
            owners: HashMap::new(),
            base_revision,
        }
    }

    /// The directory read.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Rescans the directory and publishes every change to `store`. The first successful
    /// rescan always publishes, so readiness follows the first load even of an empty directory.
    pub fn reload(&mut self, store: &Store, now: Timestamp) -> ReloadReport {
        let mut report = ReloadReport::default();
        let listing = match policy::scan(&self.root) {
            Ok(l) => l,
            Err(e) => {
                report.unreadable = Some(format!("cannot read {}: {e}", self.root.display()));
                return report;
            }
        };
        let parsed = self.parse_changed(&listing.documents);
        let hashes: HashMap<&Path, u64> = self.files.iter().map(|(p, (h, _))| (p.as_path(), *h)).collect();
        let compiled = &self.compiled;
        let base = self.base_revision;
        let loaded = policy::assemble(&parsed, now, |name, doc, tpl| {
            let mut h = DefaultHasher::new();
            hashes.get(doc.file.path.as_path()).hash(&mut h);
            tpl.map(|t| hashes.get(t.file.path.as_path())).hash(&mut h);
            let inputs = h.finish();
            match compiled.get(name) {
                Some((prev, _)) if *prev == inputs => None,
                Some((_, rev)) => Some(rev + 1),
                None => Some(base + 1),
            }
        });
        report.errors.extend(loaded.other.iter().filter(|d| d.is_error()).cloned());

        let mut fresh = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for outcome in loaded.tenants {
            seen.insert(outcome.name.clone());
            if outcome.unchanged {
                continue;
            }
            report.errors.extend(outcome.diags.iter().filter(|d| d.is_error()).cloned());
            match outcome.tenant {
                Some(tenant) => {
                    let inputs = self.inputs_hash(&outcome.file, outcome.template.as_deref(), &parsed);
                    self.compiled.insert(outcome.name.clone(), (inputs, tenant.revision));
                    report.applied.push((outcome.name.clone(), tenant.revision));
                    fresh.push(Arc::new(tenant));
                }
                None => report.failed.push(outcome.name),
            }
        }
        let removed = self.gone_tenants(&listing.documents, &seen);
        for name in &removed {
            self.compiled.remove(name);
        }
        // A file that does not parse keeps the owner it had, however many bad edits follow.
        let previous = std::mem::take(&mut self.owners);
        self.owners = parsed
            .iter()
            .filter(|p| p.file.template.is_none())
            .filter_map(|p| {
                let owner = p.doc.as_ref().map(|d| d.name.value.clone());
                owner.or_else(|| previous.get(&p.file.path).cloned()).map(|o| (p.file.path.clone(), o))
            })
            .collect();
        if !fresh.is_empty() || !removed.is_empty() || !store.is_loaded() {
            store.apply(&removed, fresh);
        }
        report.removed = removed;
        report
    }

    fn parse_changed(&mut self, files: &[PolicyFile]) -> Vec<Parsed> {
        let mut next = HashMap::with_capacity(files.len());
        for file in files {
            let bytes = std::fs::read(&file.path).unwrap_or_default();
            let h = hash_bytes(&bytes) ^ u64::from(file.template.is_some());
            let parsed = match self.files.remove(&file.path) {
                Some((prev, p)) if prev == h => p,
                _ => policy::parse_file(file),
            };
            next.insert(file.path.clone(), (h, parsed));
        }
        self.files = next;
        let mut out: Vec<Parsed> = self.files.values().map(|(_, p)| p.clone()).collect();
        out.sort_by(|a, b| a.file.cmp(&b.file));
        out
    }

    fn inputs_hash(&self, doc: &Path, template: Option<&str>, parsed: &[Parsed]) -> u64 {
        let hash_of = |p: &Path| self.files.get(p).map(|(h, _)| *h);
        let tpl_path = template
            .and_then(|t| parsed.iter().find(|p| p.file.template.as_deref() == Some(t)).map(|p| p.file.path.as_path()));
        let mut h = DefaultHasher::new();
        hash_of(doc).hash(&mut h);
        tpl_path.map(hash_of).hash(&mut h);
        h.finish()
    }

    /// Tenants served now that no document declares any more. A document that fails to parse
    /// still owns the tenant it declared last, so a broken file never removes a tenant.
    fn gone_tenants(&self, files: &[PolicyFile], seen: &HashSet<String>) -> Vec<String> {
        let present: HashSet<&Path> = files.iter().map(|f| f.path.as_path()).collect();
        let mut kept: HashSet<&str> = HashSet::new();
        for (path, owner) in &self.owners {
            let unparseable = self.files.get(path).is_some_and(|(_, p)| p.doc.is_none());
            if present.contains(path.as_path()) && unparseable {
                kept.insert(owner);
            }
        }
        let mut gone: Vec<String> =
            self.compiled.keys().filter(|n| !seen.contains(*n) && !kept.contains(n.as_str())).cloned().collect();
        gone.sort();
        gone
    }
}
