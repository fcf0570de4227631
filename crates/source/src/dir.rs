//! The policy-directory source: rescans a directory, reparses only files whose bytes changed,
//! recompiles only tenants whose document or template changed — and of those, when only members
//! changed, only the changed members — and keeps the last good snapshot of a tenant whose
//! document fails to load, is unreadable or is still being written.
//!
//! Between rounds the source keeps no tenant document's members: serving needs the compiled
//! tenant, and the next per-member compile needs only its [`Prints`]. A document whose tenant
//! must be compiled again without its bytes having changed (its template changed) is read again.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use jiff::Timestamp;

use super::{ReloadReport, Stale};
use crate::files::{self, Listing};
use crate::store::Store;
use rolegate_engine::{Snapshot, Tenant};
use rolegate_policy::layout::{self, Layout, Next, Spliced};
use rolegate_policy::{self as policy, Diagnostic, Document, Parsed, PolicyFile, Prints, Report};

/// A file read and parsed at some round.
#[derive(Debug)]
struct Read {
    /// Hash of its bytes (and of whether it is a template).
    hash: u64,
    /// Its length in bytes.
    len: usize,
    /// The parse without the document's members (a template has none).
    head: Parsed,
}

/// `parsed` without its document's members: what is kept of a file between rounds.
fn head_of(parsed: &mut Parsed) -> Parsed {
    let members = parsed.doc.as_mut().map(|d| std::mem::take(&mut d.members));
    let head = parsed.clone();
    if let (Some(doc), Some(members)) = (parsed.doc.as_mut(), members) {
        doc.members = members;
    }
    head
}

/// The size and modification time of a file, and since when they have not changed.
#[derive(Debug)]
struct Seen {
    len: u64,
    modified: Option<SystemTime>,
    since: Instant,
    /// When the file was first found still changing, while it keeps changing.
    unsettled_since: Option<Instant>,
}

/// State of the directory source between reloads.
#[derive(Debug)]
pub struct DirSource {
    root: PathBuf,
    /// A file is loaded once its size and modification time held for this long.
    settle: Duration,
    /// A file still changing (or open for writing) after this long is loaded as it is.
    max_wait: Duration,
    /// Files a writer has open now, as the watcher saw them: deferred like a changing file.
    writing: HashSet<PathBuf>,
    /// Per file: what was last read of it.
    files: HashMap<PathBuf, Read>,
    /// Per file: its last size and modification time.
    seen: HashMap<PathBuf, Seen>,
    /// Per served tenant: hash of the inputs it was last compiled from.
    compiled: HashMap<String, u64>,
    /// Per served tenant: the revision it was compiled at and what it was compiled from, so that
    /// its next version compiles only the changed members.
    prints: HashMap<String, (u64, Prints)>,
    /// Per served tenant whose document's `members` list could be located line by line: where
    /// each member is in the text it was compiled from, so that the next version of the text is
    /// read only where it changed.
    layouts: HashMap<String, Layout>,
    /// Per tenant whose last inputs failed to compile: their hash and the first error.
    broken: HashMap<String, (u64, String)>,
    /// Per document file: the tenant it declared when it last parsed.
    owners: HashMap<PathBuf, String>,
    /// Unreadable entries already reported, with their error.
    unreadable: HashMap<String, String>,
    /// The last revision given; source-wide, so that a tenant's revision never goes back, not
    /// even after it was removed and restored.
    revision: u64,
    /// Files left for a later round because they were still changing.
    deferred: usize,
    /// Documents the last round read only where they changed.
    spliced: usize,
    /// When the heap trim owed after a document read line by line is due.
    trim_due: Option<Instant>,
}

/// How long after a large document is read line by line the heap is trimmed, at the latest:
/// edits coming faster share one trim.
pub const TRIM_DELAY: Duration = Duration::from_millis(250);

/// A file's bytes, hashed to tell a changed file from an unchanged one: every settled file is
/// hashed each round, so a fast hash of good quality rather than a keyed one (a writer of policy
/// files is trusted).
fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    h.write_usize(bytes.len());
    h.write(bytes);
    h.finish()
}

impl DirSource {
    /// A source reading `root`. A file is loaded only once its size and modification time held
    /// for `settle`; one still changing after `max_wait` is loaded as it is.
    pub fn new(root: impl Into<PathBuf>, settle: Duration, max_wait: Duration) -> Self {
        // Microseconds since the epoch: grows across restarts, leaves room for many changes.
        let revision = Timestamp::now().as_microsecond().max(0) as u64;
        DirSource {
            root: root.into(),
            settle,
            max_wait,
            writing: HashSet::new(),
            files: HashMap::new(),
            seen: HashMap::new(),
            compiled: HashMap::new(),
            prints: HashMap::new(),
            layouts: HashMap::new(),
            broken: HashMap::new(),
            owners: HashMap::new(),
            unreadable: HashMap::new(),
            revision,
            deferred: 0,
            spliced: 0,
            trim_due: None,
        }
    }

    /// The directory read.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Tells the source which files a writer has open now (modified and not closed since): they
    /// are left for a later round, like a file still changing.
    pub fn set_writing(&mut self, paths: HashSet<PathBuf>) {
        self.writing = paths;
    }

    /// How many files the last reload left for a later round because they were still changing.
    pub fn deferred(&self) -> usize {
        self.deferred
    }

    /// How many documents the last reload read only where their bytes changed (the members
    /// whose lines changed and the head), their tenant then compiled member by member.
    pub fn spliced(&self) -> usize {
        self.spliced
    }

    /// Rescans the directory and publishes every change to `store`. The first successful
    /// rescan that defers nothing always publishes, so a load that finds nothing is still told
    /// apart from none.
    pub fn reload(&mut self, store: &Store) -> ReloadReport {
        self.reload_with(store, &mut crate::sched::ShortSlices::default())
    }

    /// [`DirSource::reload`] with the request threads' short slices held by the caller: given
    /// here once a changed file is found, if the caller has not already given them.
    pub fn reload_with(&mut self, store: &Store, slices: &mut crate::sched::ShortSlices) -> ReloadReport {
        let mut report = ReloadReport::default();
        let listing = match files::scan(&self.root) {
            Ok(l) => l,
            Err(e) => {
                let why = format!("cannot read {}: {e}", self.root.display());
                report.stale = self.compiled.keys().map(|t| Stale { tenant: t.clone(), why: why.clone() }).collect();
                report.stale.sort_by(|a, b| a.tenant.cmp(&b.tenant));
                report.unreadable = Some(why);
                return report;
            }
        };
        self.report_unreadable(&listing, &mut report);
        let mut round = Round::default();
        let (mut parsed, mut fresh_files) = self.parse_changed(&listing.documents, &mut round, slices);
        let served = store.load();
        let mut fresh = self.apply_spliced(&mut parsed, &mut round, served.as_deref(), &mut report);
        self.spliced = round.spliced_files.len();
        // INVARIANT: after this, every document whose tenant `assemble` compiles is whole.
        self.read_members_again(&mut parsed, &mut fresh_files);
        let (loaded, mut printed) = self.assemble(&parsed, served.as_deref());
        drop(served);
        report.errors.extend(
            loaded.other.iter().filter(|d| d.is_error() && fresh_files.contains(Path::new(d.file.as_ref()))).cloned(),
        );

        let mut seen: HashSet<String> = HashSet::new();
        for outcome in loaded.tenants {
            seen.insert(outcome.name.clone());
            if outcome.unchanged {
                continue;
            }
            let inputs = self.inputs_hash(&outcome.file, outcome.template.as_deref(), &parsed);
            match outcome.tenant {
                Some(tenant) => {
                    report.errors.extend(outcome.diags.iter().filter(|d| d.is_error()).cloned());
                    self.compiled.insert(outcome.name.clone(), inputs);
                    match printed.remove(&outcome.name) {
                        Some(p) => self.prints.insert(outcome.name.clone(), p),
                        None => self.prints.remove(&outcome.name),
                    };
                    match round.layouts.remove(&outcome.file).filter(|_| self.prints.contains_key(&outcome.name)) {
                        Some(l) => self.layouts.insert(outcome.name.clone(), l),
                        None => self.layouts.remove(&outcome.name),
                    };
                    self.broken.remove(&outcome.name);
                    report.applied.push((outcome.name.clone(), tenant.revision));
                    fresh.push(Arc::new(tenant));
                }
                None if self.broken.get(&outcome.name).is_some_and(|(h, _)| *h == inputs) => {}
                None => {
                    let errors: Vec<&Diagnostic> = outcome.diags.iter().filter(|d| d.is_error()).collect();
                    let why = errors.first().map_or_else(|| "failed to load".to_owned(), ToString::to_string);
                    report.errors.extend(errors.into_iter().cloned());
                    self.broken.insert(outcome.name.clone(), (inputs, why));
                    report.failed.push(outcome.name);
                }
            }
        }
        self.broken.retain(|name, _| seen.contains(name));
        self.track_owners(&parsed, &listing, &fresh_files, &mut report);
        let removed = self.gone_tenants(&listing, &seen);
        for name in &removed {
            self.compiled.remove(name);
            self.prints.remove(name);
            self.layouts.remove(name);
        }
        report.stale.retain(|s| self.compiled.contains_key(&s.tenant));
        report.stale.extend(
            self.broken
                .iter()
                .filter(|(name, _)| self.compiled.contains_key(*name))
                .map(|(name, (_, why))| Stale { tenant: name.clone(), why: why.clone() }),
        );
        report.stale.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        report.stale.dedup_by(|a, b| a.tenant == b.tenant);
        if !fresh.is_empty() || !removed.is_empty() || (!store.is_loaded() && self.deferred == 0) {
            store.apply(&removed, fresh);
        }
        report.removed = removed;
        // A document parsed whole left its parse behind; one spliced line by line replaced its
        // tenant by a copy with the change applied. Either way, once a large one is dropped, hand
        // its pages back, or each edit leaves the process holding about one more tenant. After a
        // whole parse at once (its peak is large); after splices only once they stop or
        // `TRIM_DELAY` after the first (see `trim_due`), so that frequent small edits neither wait
        // for it nor pay for it each time.
        let size = |p: &PathBuf| self.files.get(p).map_or(0, |r| r.len);
        let whole_bytes: usize = fresh_files.iter().filter(|p| !round.spliced_files.contains(*p)).map(size).sum();
        let spliced_bytes: usize = round.spliced_files.iter().map(size).sum();
        drop(parsed);
        if whole_bytes >= crate::trim::TRIM_AFTER_BYTES {
            self.trim();
        } else if spliced_bytes >= crate::trim::TRIM_AFTER_BYTES {
            self.trim_due.get_or_insert_with(|| Instant::now() + TRIM_DELAY);
        }
        report
    }

    /// When the heap trim owed since a large document was read line by line is due, if one is:
    /// the caller runs [`DirSource::trim`] on this thread then, or at the latest once no file
    /// changes any more. Until then the trim waits, so that a burst of edits pays for one.
    pub fn trim_due(&self) -> Option<Instant> {
        self.trim_due
    }

    /// Hands the heap pages freed since the last trim back to the system now.
    pub fn trim(&mut self) {
        self.trim_due = None;
        crate::trim::release_freed_memory();
    }

    /// True when the tenant `name`, read from `doc` and `tpl`, was compiled (or failed) from
    /// exactly these inputs already.
    fn unchanged(&self, name: &str, doc: &Parsed, tpl: Option<&Parsed>) -> bool {
        let hash_of = |p: &Parsed| self.files.get(&p.file.path).map(|r| r.hash);
        let mut h = DefaultHasher::new();
        hash_of(doc).hash(&mut h);
        tpl.map(hash_of).hash(&mut h);
        let inputs = h.finish();
        self.compiled.get(name) == Some(&inputs) || self.broken.get(name).is_some_and(|(b, _)| *b == inputs)
    }

    /// Reads again, whole, the documents kept without their members whose tenant must be
    /// compiled this round (because their template changed): a tenant is never compiled from a
    /// document without its members.
    fn read_members_again(&mut self, parsed: &mut [Parsed], fresh: &mut HashSet<PathBuf>) {
        let mut again: Vec<PathBuf> = Vec::new();
        policy::assemble_with(
            parsed,
            |name, doc, tpl| {
                if !fresh.contains(&doc.file.path) && !self.unchanged(name, doc, tpl) {
                    again.push(doc.file.path.clone());
                }
                None
            },
            |_, _, _, _| Err(Vec::new()),
        );
        for p in parsed.iter_mut().filter(|p| again.contains(&p.file.path)) {
            let bytes = std::fs::read(&p.file.path).unwrap_or_default();
            let hash = hash_bytes(&bytes);
            let mut full = files::parse_file(&p.file);
            let head = head_of(&mut full);
            if self.files.get(&p.file.path).is_none_or(|r| r.hash != hash) {
                fresh.insert(p.file.path.clone());
            }
            self.files.insert(p.file.path.clone(), Read { hash, len: bytes.len(), head });
            *p = full;
        }
    }

    /// Compiles the tenants whose inputs changed, each at the next source-wide revision: member
    /// by member from the tenant `served` when only members changed, else whole. A tenant whose
    /// inputs already failed is not compiled again until they change. Returns also the prints of
    /// every tenant compiled.
    fn assemble(
        &mut self,
        parsed: &[Parsed],
        served: Option<&Snapshot>,
    ) -> (policy::Loaded, HashMap<String, (u64, Prints)>) {
        let mut printed = HashMap::new();
        let mut revision = self.revision;
        let this = &*self;
        let loaded = policy::assemble_with(
            parsed,
            |name, doc, tpl| {
                if this.unchanged(name, doc, tpl) {
                    return None;
                }
                revision += 1;
                Some(revision)
            },
            |name, doc, tpl, revision| {
                let base = this.prints.get(name).and_then(|(at, prints)| {
                    let base = served?.tenant(name).filter(|t| t.revision == *at)?;
                    Some((base, prints))
                });
                let (tenant, prints) = build(doc, tpl, base, revision)?;
                printed.insert(name.to_owned(), (revision, prints));
                Ok((tenant, Vec::new()))
            },
        );
        self.revision = revision;
        (loaded, printed)
    }

    /// Reports each unreadable entry once, until it changes or goes away.
    fn report_unreadable(&mut self, listing: &Listing, report: &mut ReloadReport) {
        let mut now = HashMap::with_capacity(listing.unreadable.len());
        for d in &listing.unreadable {
            if self.unreadable.get(d.file.as_ref()) != Some(&d.message) {
                report.errors.push(d.clone());
            }
            now.insert(d.file.to_string(), d.message.clone());
        }
        self.unreadable = now;
    }

    /// Reads the listed files: reparses those whose bytes changed, keeps the last read of those
    /// still changing. Returns every usable parse — whole for the files parsed this round, without
    /// members for the others — and the files parsed this round.
    fn parse_changed(
        &mut self,
        files: &[PolicyFile],
        round: &mut Round,
        slices: &mut crate::sched::ShortSlices,
    ) -> (Vec<Parsed>, HashSet<PathBuf>) {
        let mut next = HashMap::with_capacity(files.len());
        let mut out = Vec::with_capacity(files.len());
        let mut fresh = HashSet::new();
        let clock = Instant::now();
        self.seen.retain(|p, _| files.iter().any(|f| &f.path == p));
        self.deferred = 0;
        for file in files {
            let prev = self.files.remove(&file.path);
            if !self.settled(&file.path, clock) {
                self.deferred += 1;
                if let Some(r) = prev {
                    out.push(r.head.clone());
                    next.insert(file.path.clone(), r);
                }
                continue;
            }
            let bytes = std::fs::read(&file.path).unwrap_or_default();
            let hash = hash_bytes(&bytes) ^ u64::from(file.template.is_some());
            let read = match prev {
                Some(r) if r.hash == hash => {
                    out.push(r.head.clone());
                    r
                }
                prev => {
                    if let Some(p) = prev.filter(|p| bytes.len() < p.len / 2) {
                        tracing::warn!(
                            rolegate.source = "dir",
                            "{} shrank from {} to {} bytes; writers should write a new file and rename it into place",
                            file.path.display(),
                            p.len,
                            bytes.len()
                        );
                    }
                    slices.begin();
                    fresh.insert(file.path.clone());
                    let len = bytes.len();
                    let mut full = self.parse_fresh(file, bytes, round);
                    let head = head_of(&mut full);
                    out.push(full);
                    Read { hash, len, head }
                }
            };
            next.insert(file.path.clone(), read);
        }
        self.files = next;
        out.sort_by(|a, b| a.file.cmp(&b.file));
        (out, fresh)
    }

    /// True when `path` may be read now: no writer has it open and its size and modification
    /// time held for `settle` (or it was last modified over `max_wait` ago), or it has kept
    /// changing for `max_wait` (so a file rewritten without pause is still loaded eventually).
    fn settled(&mut self, path: &Path, clock: Instant) -> bool {
        let meta = std::fs::metadata(path).ok();
        let (len, modified) = (meta.as_ref().map_or(0, |m| m.len()), meta.and_then(|m| m.modified().ok()));
        let max_wait = self.max_wait;
        let seen =
            self.seen.entry(path.to_path_buf()).or_insert(Seen { len, modified, since: clock, unsettled_since: None });
        if seen.len != len || seen.modified != modified {
            *seen = Seen { len, modified, since: clock, unsettled_since: seen.unsettled_since };
        }
        let old =
            !self.writing.contains(path) && modified.and_then(|m| m.elapsed().ok()).is_some_and(|age| age >= max_wait);
        let held = clock.duration_since(seen.since) >= self.settle && !self.writing.contains(path);
        let overdue = seen.unsettled_since.is_some_and(|s| clock.duration_since(s) >= max_wait);
        let settled = old || held || overdue;
        seen.unsettled_since = if settled { None } else { Some(seen.unsettled_since.unwrap_or(clock)) };
        settled
    }
}

/// What one round learned beside the parses it hands to `assemble`.
#[derive(Default)]
struct Round {
    /// Documents parsed whole without error whose `members` list could be located, by file.
    layouts: HashMap<PathBuf, Layout>,
    /// Documents read again only where they changed, with their text, by file.
    spliced: Vec<(PathBuf, Spliced, String)>,
    /// The files of `spliced` whose tenant was compiled from the splice.
    spliced_files: HashSet<PathBuf>,
}

impl DirSource {
    /// Parses a file whose bytes changed: a tenant document with a layout of its last served
    /// version only where it changed (kept in `round`, the parse returned is then its head),
    /// anything else whole.
    fn parse_fresh(&self, file: &PolicyFile, bytes: Vec<u8>, round: &mut Round) -> Parsed {
        if file.template.is_some() || bytes.is_empty() || bytes.len() as u64 > files::MAX_FILE_BYTES {
            return files::parse_file(file);
        }
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => return policy::parse_bytes(file, e.into_bytes()),
        };
        let label: Arc<str> = Arc::from(file.path.display().to_string());
        let layout = self.owners.get(&file.path).and_then(|t| self.layouts.get(t));
        if let Some(spliced) = layout.and_then(|l| layout::reparse(&mut Report::new(label.clone()), &text, l)) {
            let mut head = spliced.doc.clone();
            head.members.clear();
            round.spliced.push((file.path.clone(), spliced, text));
            return Parsed { file: file.clone(), doc: Some(head), diags: Vec::new() };
        }
        whole(file, label, &text, round)
    }

    /// Compiles each tenant whose document was read only where it changed, member by member from
    /// the tenant `served`, and returns them. A document that cannot be compiled that way (its
    /// head or template changed, another document declares its tenant, an error) is parsed whole
    /// in `parsed` instead, for `assemble` to compile and report as a first load does.
    fn apply_spliced(
        &mut self,
        parsed: &mut [Parsed],
        round: &mut Round,
        served: Option<&Snapshot>,
        report: &mut ReloadReport,
    ) -> Vec<Arc<Tenant>> {
        let mut fresh = Vec::new();
        for (path, spliced, text) in std::mem::take(&mut round.spliced) {
            let name = spliced.doc.name.value.clone();
            match self.splice(parsed, &path, &spliced, served) {
                Some(tenant) => {
                    self.revision += 1;
                    let template = spliced.doc.template.as_ref().map(|t| t.value.as_str());
                    let inputs = self.inputs_hash(&path, template, parsed);
                    self.compiled.insert(name.clone(), inputs);
                    match (self.layouts.get_mut(&name), spliced.layout) {
                        (Some(layout), next) => layout.advance(next),
                        (None, Next::Whole(layout)) => drop(self.layouts.insert(name.clone(), layout)),
                        (None, Next::Patch(_)) => {}
                    }
                    self.broken.remove(&name);
                    report.applied.push((name, tenant.revision));
                    round.spliced_files.insert(path);
                    fresh.push(Arc::new(tenant));
                }
                None => {
                    let Some(p) = parsed.iter_mut().find(|p| p.file.path == path) else { continue };
                    let label: Arc<str> = Arc::from(path.display().to_string());
                    let mut full = whole(&p.file, label, &text, round);
                    if let Some(read) = self.files.get_mut(&path) {
                        read.head = head_of(&mut full);
                    }
                    *p = full;
                }
            }
        }
        fresh
    }

    /// The next version of the tenant `spliced` declares, at the next revision, or `None`. On
    /// success the tenant's prints are brought up to it.
    fn splice(
        &mut self,
        parsed: &[Parsed],
        path: &Path,
        spliced: &Spliced,
        served: Option<&Snapshot>,
    ) -> Option<Tenant> {
        let name = spliced.doc.name.value.as_str();
        if self.owners.get(path).map(String::as_str) != Some(name) {
            return None;
        }
        let declaring =
            parsed.iter().filter(|p| p.file.template.is_none() && p.doc.as_ref().is_some_and(|d| d.name.value == name));
        if declaring.count() != 1 {
            return None;
        }
        let template = match &spliced.doc.template {
            None => None,
            Some(t) => {
                let mut found = parsed.iter().filter(|p| p.file.template.as_deref() == Some(t.value.as_str()));
                let (one, None) = (found.next()?, found.next()) else { return None };
                Some(one.doc.as_ref()?)
            }
        };
        let (at, prints) = self.prints.get_mut(name)?;
        let base = served?.tenant(name).filter(|t| t.revision == *at)?;
        let tenant = policy::recompile_spliced(spliced, template, base, prints, self.revision + 1)?;
        *at = tenant.revision;
        Some(tenant)
    }
}

/// Parses a document whole; keeps its layout in `round` when it has one.
fn whole(file: &PolicyFile, label: Arc<str>, text: &str, round: &mut Round) -> Parsed {
    let mut report = Report::new(label);
    let (doc, layout) = layout::document_with_layout(&mut report, text);
    if let Some(l) = layout {
        round.layouts.insert(file.path.clone(), l);
    }
    Parsed { file: file.clone(), doc, diags: report.diags }
}

/// Compiles a tenant: member by member from `base` (the tenant served, and what it was compiled
/// from) when only members changed, whole otherwise.
fn build(
    doc: &Document,
    tpl: Option<&Document>,
    base: Option<(&Arc<Tenant>, &Prints)>,
    revision: u64,
) -> Result<(Tenant, Prints), Vec<Diagnostic>> {
    if let Some((base, prints)) = base
        && let Some(next) = policy::recompile(doc, tpl, base, prints, revision)
    {
        return Ok(next);
    }
    let tenant = policy::compile(doc, tpl, revision)?;
    let prints = Prints::of(doc, tpl, &tenant);
    Ok((tenant, prints))
}

impl DirSource {
    fn inputs_hash(&self, doc: &Path, template: Option<&str>, parsed: &[Parsed]) -> u64 {
        let hash_of = |p: &Path| self.files.get(p).map(|r| r.hash);
        let tpl_path = template
            .and_then(|t| parsed.iter().find(|p| p.file.template.as_deref() == Some(t)).map(|p| p.file.path.as_path()));
        let mut h = DefaultHasher::new();
        hash_of(doc).hash(&mut h);
        tpl_path.map(hash_of).hash(&mut h);
        h.finish()
    }

    /// Records which tenant each document declares. A document that fails to parse, or that
    /// cannot be read, keeps the tenant it declared last: its tenant stays served at its last
    /// good version, is reported stale every round, and is counted failed once per content.
    fn track_owners(
        &mut self,
        parsed: &[Parsed],
        listing: &Listing,
        fresh_files: &HashSet<PathBuf>,
        report: &mut ReloadReport,
    ) {
        let mut owners = HashMap::with_capacity(parsed.len());
        for p in parsed.iter().filter(|p| p.file.template.is_none()) {
            let path = &p.file.path;
            match (&p.doc, self.owners.get(path)) {
                (Some(d), _) => {
                    owners.insert(path.clone(), d.name.value.clone());
                }
                (None, Some(owner)) => {
                    let why = p.diags.iter().find(|d| d.is_error()).map_or_else(String::new, ToString::to_string);
                    if fresh_files.contains(path) {
                        report.failed.push(owner.clone());
                    }
                    report.stale.push(Stale { tenant: owner.clone(), why });
                    owners.insert(path.clone(), owner.clone());
                }
                (None, None) => {}
            }
        }
        for (path, owner) in &self.owners {
            if listing.is_unreadable(path) {
                let why =
                    listing.unreadable.iter().find(|d| path.starts_with(d.file.as_ref())).map(ToString::to_string);
                report.stale.push(Stale { tenant: owner.clone(), why: why.unwrap_or_default() });
                owners.insert(path.clone(), owner.clone());
            }
        }
        self.owners = owners;
    }

    /// Tenants served now that no document declares any more. A document that fails to parse
    /// or cannot be read still owns the tenant it declared last, so it never removes a tenant.
    fn gone_tenants(&self, listing: &Listing, seen: &HashSet<String>) -> Vec<String> {
        let present: HashSet<&Path> = listing.documents.iter().map(|f| f.path.as_path()).collect();
        let kept: HashSet<&str> = self
            .owners
            .iter()
            .filter(|(path, _)| present.contains(path.as_path()) || listing.is_unreadable(path))
            .map(|(_, owner)| owner.as_str())
            .collect();
        let mut gone: Vec<String> =
            self.compiled.keys().filter(|n| !seen.contains(*n) && !kept.contains(n.as_str())).cloned().collect();
        gone.sort();
        gone
    }
}

/// Loads every good tenant of `dir` into a snapshot, at revision 1; also returns the load
/// report. For one-shot commands (`validate`, `test`, `check --policies`, `import`).
pub fn load_snapshot(dir: &Path) -> anyhow::Result<(Snapshot, policy::Loaded)> {
    use anyhow::Context as _;
    let mut loaded =
        files::load_dir(dir, Timestamp::now(), |_| 1).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut snapshot = Snapshot::default();
    for t in &mut loaded.tenants {
        if let Some(tenant) = t.tenant.take() {
            snapshot.insert(Arc::new(tenant));
        }
    }
    Ok((snapshot, loaded))
}

#[cfg(test)]
mod tests;
