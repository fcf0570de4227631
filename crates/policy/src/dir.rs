//! Policy directories (DESIGN §5): files under a `templates` folder are templates named after
//! their stem; every other `*.yaml`/`*.yml` not ending in `_test.yaml` is a tenant document.
//! Hidden entries are skipped, so the `..data` folders of a Kubernetes ConfigMap mount are not
//! read twice; symlinks are followed.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;

use super::diag::{Diagnostic, Loc, Report};
use super::document::Document;
use super::{compile, lint, parse};
use rolegate_engine::Tenant;

/// Size limit of one policy file.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// A policy file found in a directory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PolicyFile {
    /// Path on disk.
    pub path: PathBuf,
    /// `Some(stem)` for a template.
    pub template: Option<String>,
}

/// What `scan` finds: policy documents and policy test files, each sorted by path, and the
/// entries it had to skip.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    /// Tenant documents and templates.
    pub documents: Vec<PolicyFile>,
    /// `*_test.yaml` files.
    pub tests: Vec<PathBuf>,
    /// Entries that could not be read (a dangling symlink, a symlink loop, a folder without
    /// permission, nesting too deep), one error each naming the path, sorted by path. Everything
    /// else is still listed.
    pub unreadable: Vec<Diagnostic>,
}

impl Listing {
    /// True when `path` is an unreadable entry or lies under one.
    pub fn is_unreadable(&self, path: &Path) -> bool {
        self.unreadable.iter().any(|d| path.starts_with(d.file.as_ref()))
    }
}

/// Folders nested deeper than this below the policy directory are skipped.
pub const MAX_DEPTH: usize = 32;

/// Lists the policy and test files under `dir`, recursively. Only `dir` itself being unreadable
/// is an error; an unreadable entry below it is skipped and reported in
/// [`Listing::unreadable`].
pub fn scan(dir: &Path) -> io::Result<Listing> {
    let mut listing = Listing::default();
    let entries = std::fs::read_dir(dir)?;
    let mut ancestors: Vec<PathBuf> = std::fs::canonicalize(dir).into_iter().collect();
    walk(dir, entries, &mut listing, &mut ancestors);
    listing.documents.sort();
    listing.tests.sort();
    listing.unreadable.sort();
    Ok(listing)
}

fn skip(out: &mut Listing, path: &Path, message: String) {
    let mut r = Report::new(Arc::from(path.display().to_string()));
    r.error(Loc::default(), "", message);
    out.unreadable.extend(r.diags);
}

/// Lists one folder. `ancestors` holds the canonical paths of the folders being read, so a
/// symlink back to one of them is reported instead of followed forever.
fn walk(dir: &Path, entries: std::fs::ReadDir, out: &mut Listing, ancestors: &mut Vec<PathBuf>) {
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => return skip(out, dir, format!("cannot list folder: {e}")),
        };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                skip(out, &path, format!("cannot read (a dangling symlink or a symlink loop?): {e}"));
                continue;
            }
        };
        if meta.is_dir() {
            subfolder(&path, out, ancestors);
            continue;
        }
        let Some(stem) = name.strip_suffix(".yaml").or_else(|| name.strip_suffix(".yml")) else {
            continue;
        };
        if stem.ends_with("_test") {
            out.tests.push(path);
            continue;
        }
        let in_templates = dir.file_name().is_some_and(|d| d == "templates");
        out.documents.push(PolicyFile { path, template: in_templates.then(|| stem.to_owned()) });
    }
}

fn subfolder(path: &Path, out: &mut Listing, ancestors: &mut Vec<PathBuf>) {
    if ancestors.len() > MAX_DEPTH {
        return skip(out, path, format!("folders nested deeper than {MAX_DEPTH} levels"));
    }
    let canonical = match std::fs::canonicalize(path) {
        Ok(c) => c,
        Err(e) => return skip(out, path, format!("cannot read folder: {e}")),
    };
    if ancestors.contains(&canonical) {
        return skip(out, path, format!("symlink loop: `{}` is a folder being read already", canonical.display()));
    }
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) => return skip(out, path, format!("cannot list folder: {e}")),
    };
    ancestors.push(canonical);
    walk(path, entries, out, ancestors);
    ancestors.pop();
}

/// A file read and parsed, with its findings.
#[derive(Clone, Debug)]
pub struct Parsed {
    /// The file.
    pub file: PolicyFile,
    /// The document, when usable.
    pub doc: Option<Document>,
    /// Parse errors.
    pub diags: Vec<Diagnostic>,
}

/// Reads and parses one file. A read failure is a finding, not a panic.
pub fn parse_file(file: &PolicyFile) -> Parsed {
    let label: Arc<str> = Arc::from(file.path.display().to_string());
    let mut report = Report::new(label);
    let text = match std::fs::metadata(&file.path) {
        Ok(m) if m.len() > MAX_FILE_BYTES => {
            report.error(Loc::default(), "", format!("file is larger than {MAX_FILE_BYTES} bytes"));
            None
        }
        Ok(_) => match std::fs::read(&file.path) {
            Ok(bytes) => utf8(&mut report, bytes),
            Err(e) => {
                report.error(Loc::default(), "", format!("cannot read file: {e}"));
                None
            }
        },
        Err(e) => {
            report.error(Loc::default(), "", format!("cannot read file: {e}"));
            None
        }
    };
    let doc = text.and_then(|t| parse::document(&mut report, &t, file.template.as_deref()));
    Parsed { file: file.clone(), doc, diags: report.diags }
}

/// The text of a file, or an error at the first byte that is not UTF-8.
fn utf8(report: &mut Report, bytes: Vec<u8>) -> Option<String> {
    match String::from_utf8(bytes) {
        Ok(t) => Some(t),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let head = e.as_bytes().get(..valid).unwrap_or_default();
            let line = head.iter().filter(|b| **b == b'\n').count() + 1;
            let line_start = head.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let col = String::from_utf8_lossy(head.get(line_start..).unwrap_or_default()).chars().count() + 1;
            let at = Loc { line: u32::try_from(line).unwrap_or(u32::MAX), col: u32::try_from(col).unwrap_or(u32::MAX) };
            report.error(at, "", format!("the file is not UTF-8 text (invalid byte at offset {valid})"));
            None
        }
    }
}

/// The outcome for one tenant.
#[derive(Debug)]
pub struct TenantOutcome {
    /// Tenant id.
    pub name: String,
    /// Its document.
    pub file: PathBuf,
    /// The template it names, if any.
    pub template: Option<String>,
    /// The compiled tenant, or `None` when it has errors.
    pub tenant: Option<Tenant>,
    /// Errors and warnings of the tenant's document and template.
    pub diags: Vec<Diagnostic>,
    /// The caller chose not to recompile it: its inputs did not change.
    pub unchanged: bool,
}

/// Everything a directory load found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// One entry per tenant id found.
    pub tenants: Vec<TenantOutcome>,
    /// Findings not tied to one tenant: unparseable files, broken or unused templates.
    pub other: Vec<Diagnostic>,
}

impl Loaded {
    /// Every finding, sorted by file and position.
    pub fn diagnostics(&self) -> Vec<&Diagnostic> {
        let mut all: Vec<&Diagnostic> = self.tenants.iter().flat_map(|t| &t.diags).chain(&self.other).collect();
        all.sort();
        all.dedup();
        all
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.diagnostics().iter().filter(|d| d.is_error()).count()
    }
}

/// Reads, parses and compiles every tenant under `dir`; unreadable entries are errors in
/// [`Loaded::other`].
pub fn load_dir(dir: &Path, now: Timestamp, revision: impl FnMut(&str) -> u64) -> io::Result<Loaded> {
    let listing = scan(dir)?;
    let parsed: Vec<Parsed> = listing.documents.iter().map(parse_file).collect();
    let mut revision = revision;
    let mut loaded = assemble(&parsed, now, |name, _, _| Some(revision(name)));
    loaded.other.extend(listing.unreadable);
    Ok(loaded)
}

/// Decides whether a tenant is compiled: `Some(revision)` to compile it at that revision, `None`
/// to leave it unchanged. It sees the tenant's document and its template.
pub trait CompileIf: FnMut(&str, &Parsed, Option<&Parsed>) -> Option<u64> {}
impl<F: FnMut(&str, &Parsed, Option<&Parsed>) -> Option<u64>> CompileIf for F {}

/// Groups parsed files into tenants with their templates and compiles each.
pub fn assemble(parsed: &[Parsed], now: Timestamp, mut compile_if: impl CompileIf) -> Loaded {
    let mut out = Loaded::default();
    let mut templates: BTreeMap<&str, &Parsed> = BTreeMap::new();
    let mut tenants: BTreeMap<&str, Vec<&Parsed>> = BTreeMap::new();
    for p in parsed {
        match (&p.file.template, &p.doc) {
            (Some(stem), _) => {
                if let Some(prev) = templates.insert(stem, p) {
                    let mut r = Report::new(Arc::from(p.file.path.display().to_string()));
                    let msg = format!("template `{stem}` is also defined in {}", prev.file.path.display());
                    r.error(Loc { line: 1, col: 1 }, "", msg);
                    out.other.extend(r.diags);
                }
            }
            (None, Some(doc)) => tenants.entry(&doc.name.value).or_default().push(p),
            (None, None) => out.other.extend(p.diags.iter().cloned()),
        }
    }
    let mut used_templates = Vec::new();
    for (name, files) in tenants {
        out.tenants.push(tenant(name, &files, &templates, now, &mut compile_if));
        used_templates.extend(out.tenants.last().and_then(|t| t.template.clone()));
    }
    for (stem, p) in &templates {
        if !used_templates.iter().any(|u| u == stem) {
            out.other.extend(p.diags.iter().cloned());
        }
    }
    out
}

fn tenant(
    name: &str,
    files: &[&Parsed],
    templates: &BTreeMap<&str, &Parsed>,
    now: Timestamp,
    compile_if: &mut impl CompileIf,
) -> TenantOutcome {
    let main = files[0];
    let mut outcome = TenantOutcome {
        name: name.to_owned(),
        file: main.file.path.clone(),
        template: None,
        tenant: None,
        diags: files.iter().flat_map(|p| p.diags.iter().cloned()).collect(),
        unchanged: false,
    };
    let Some(doc) = &main.doc else { return outcome };
    if files.len() > 1 {
        for p in files {
            let mut r = Report::new(Arc::from(p.file.path.display().to_string()));
            let others: Vec<_> =
                files.iter().filter(|o| o.file != p.file).map(|o| o.file.path.display().to_string()).collect();
            r.error(doc.name.at, "tenant", format!("tenant `{name}` is also defined in {}", others.join(", ")));
            outcome.diags.extend(r.diags);
        }
        return outcome;
    }
    let template = match &doc.template {
        None => None,
        Some(t) => match templates.get(t.value.as_str()) {
            Some(p) => {
                outcome.template = Some(t.value.clone());
                outcome.diags.extend(p.diags.iter().cloned());
                match &p.doc {
                    Some(_) => Some(*p),
                    None => return outcome,
                }
            }
            None => {
                let mut r = Report::new(Arc::from(main.file.path.display().to_string()));
                let hint = rolegate_engine::suggest::hint(&t.value, templates.keys().copied());
                r.error(t.at, "template", format!("unknown template `{}`{hint}", t.value));
                outcome.diags.extend(r.diags);
                return outcome;
            }
        },
    };
    let Some(revision) = compile_if(name, main, template) else {
        outcome.unchanged = true;
        return outcome;
    };
    let template = template.and_then(|p| p.doc.as_ref());
    match compile(doc, template, revision) {
        Ok(tenant) => {
            outcome.diags.extend(lint::lint(doc, template, &tenant, now));
            if !outcome.diags.iter().any(Diagnostic::is_error) {
                outcome.tenant = Some(tenant);
            }
        }
        Err(diags) => outcome.diags.extend(diags),
    }
    outcome
}
