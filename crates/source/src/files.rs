//! Reading a policy directory (docs/policy-language.md, "Directory layout"): files under a
//! `templates` folder are templates named after their stem; every other `*.yaml`/`*.yml` not
//! ending in `_test.yaml` is a tenant document. Hidden entries are skipped, so the `..data`
//! folders of a Kubernetes ConfigMap mount are not read twice; symlinks are followed, and an
//! entry that cannot be read is skipped and reported, never fatal.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use rolegate_policy::{Diagnostic, Loaded, Loc, Parsed, PolicyFile, Report, assemble, parse_bytes, unreadable};

/// Size limit of one policy file.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

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

/// Reads and parses one file. A read failure is a finding, not a panic.
pub fn parse_file(file: &PolicyFile) -> Parsed {
    match std::fs::metadata(&file.path) {
        Ok(m) if m.len() > MAX_FILE_BYTES => unreadable(file, format!("file is larger than {MAX_FILE_BYTES} bytes")),
        Ok(_) => match std::fs::read(&file.path) {
            Ok(bytes) => parse_bytes(file, bytes),
            Err(e) => unreadable(file, format!("cannot read file: {e}")),
        },
        Err(e) => unreadable(file, format!("cannot read file: {e}")),
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
