//! A set of policy documents, as a directory holds them (docs/policy-language.md, "Directory
//! layout"): templates named after their file, tenant documents, each tenant resolved against its
//! template and compiled. Pure: the caller reads the bytes (`rolegate_source::files` reads a
//! directory), this module only parses and compiles them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use jiff::Timestamp;

use super::diag::{Diagnostic, Loc, Report};
use super::document::Document;
use super::{compile, lint, parse};
use rolegate_engine::Tenant;

/// A policy file found in a directory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PolicyFile {
    /// Path on disk.
    pub path: PathBuf,
    /// `Some(stem)` for a template.
    pub template: Option<String>,
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

/// Parses one file's bytes. Text that is not UTF-8 is a finding at its first bad byte.
pub fn parse_bytes(file: &PolicyFile, bytes: Vec<u8>) -> Parsed {
    let label: Arc<str> = Arc::from(file.path.display().to_string());
    let mut report = Report::new(label);
    let doc = utf8(&mut report, bytes).and_then(|t| parse::document(&mut report, &t, file.template.as_deref()));
    Parsed { file: file.clone(), doc, diags: report.diags }
}

/// A file that could not be read, as a parse with one finding naming it.
pub fn unreadable(file: &PolicyFile, why: impl Into<String>) -> Parsed {
    let mut report = Report::new(Arc::from(file.path.display().to_string()));
    report.error(Loc::default(), "", why.into());
    Parsed { file: file.clone(), doc: None, diags: report.diags }
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

/// A document names a template that does not exist; the error is already in the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownTemplate;

/// The template `doc` names, looked up with `get` among the templates called `names`: `Ok(None)`
/// when it names none, and an error at its `template` key (with a "did you mean" hint) when the
/// name is unknown. The one template lookup of every source.
pub fn find_template<'a, T>(
    r: &mut Report,
    doc: &Document,
    get: impl Fn(&str) -> Option<T>,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<Option<T>, UnknownTemplate> {
    let Some(name) = &doc.template else { return Ok(None) };
    match get(&name.value) {
        Some(t) => Ok(Some(t)),
        None => {
            let hint = rolegate_engine::suggest::hint(&name.value, names);
            r.error(name.at, "template", format!("unknown template `{}`{hint}", name.value));
            Err(UnknownTemplate)
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

/// Decides whether a tenant is compiled: `Some(revision)` to compile it at that revision, `None`
/// to leave it unchanged. It sees the tenant's document and its template.
pub trait CompileIf: FnMut(&str, &Parsed, Option<&Parsed>) -> Option<u64> {}
impl<F: FnMut(&str, &Parsed, Option<&Parsed>) -> Option<u64>> CompileIf for F {}

/// Compiles one tenant's document with its template at a revision: the tenant and its warnings,
/// or its errors.
pub trait Build:
    FnMut(&str, &Document, Option<&Document>, u64) -> Result<(Tenant, Vec<Diagnostic>), Vec<Diagnostic>>
{
}
impl<F> Build for F where
    F: FnMut(&str, &Document, Option<&Document>, u64) -> Result<(Tenant, Vec<Diagnostic>), Vec<Diagnostic>>
{
}

/// Groups parsed files into tenants with their templates and compiles each, with the lints
/// (`now` decides which bindings have expired).
pub fn assemble(parsed: &[Parsed], now: Timestamp, compile_if: impl CompileIf) -> Loaded {
    assemble_with(parsed, compile_if, |_, doc, template, revision| {
        let tenant = compile(doc, template, revision)?;
        let warnings = lint::lint(doc, template, &tenant, now);
        Ok((tenant, warnings))
    })
}

/// Like [`assemble`], with `build` compiling each tenant (a source compiles member by member,
/// and skips the lints, which only `validate` shows).
pub fn assemble_with(parsed: &[Parsed], mut compile_if: impl CompileIf, mut build: impl Build) -> Loaded {
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
        out.tenants.push(tenant(name, &files, &templates, &mut compile_if, &mut build));
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
    compile_if: &mut impl CompileIf,
    build: &mut impl Build,
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
    let mut r = Report::new(Arc::from(main.file.path.display().to_string()));
    let found = find_template(&mut r, doc, |n| templates.get(n).copied(), templates.keys().copied());
    outcome.diags.extend(r.diags);
    let template = match found {
        Err(UnknownTemplate) => return outcome,
        Ok(None) => None,
        Ok(Some(p)) => {
            outcome.template = doc.template.as_ref().map(|t| t.value.clone());
            outcome.diags.extend(p.diags.iter().cloned());
            match &p.doc {
                Some(_) => Some(p),
                None => return outcome,
            }
        }
    };
    let Some(revision) = compile_if(name, main, template) else {
        outcome.unchanged = true;
        return outcome;
    };
    let template = template.and_then(|p| p.doc.as_ref());
    match build(name, doc, template, revision) {
        Ok((tenant, warnings)) => {
            outcome.diags.extend(warnings);
            if !outcome.diags.iter().any(Diagnostic::is_error) {
                outcome.tenant = Some(tenant);
            }
        }
        Err(diags) => outcome.diags.extend(diags),
    }
    outcome
}
