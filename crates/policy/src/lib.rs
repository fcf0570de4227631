//! Policy documents (DESIGN §4–5): parsing with locations, directory layout and templates, and
//! the compiler into engine snapshots. Pure and synchronous.

pub mod compile;
pub mod diag;
pub mod dir;
pub mod document;
pub mod lint;
pub mod parse;
pub mod suite;
pub mod when;
pub mod yaml;

pub use compile::{MemberChange, compile, compile_members};
pub use diag::{Diagnostic, Loc, Report, Severity, Spanned};
pub use dir::{Listing, Loaded, Parsed, PolicyFile, TenantOutcome, assemble, load_dir, parse_file, scan};
pub use document::Document;
pub use when::MAX_WHEN_DEPTH;
pub use yaml::MAX_YAML_DEPTH;

/// Parses one document from text. `template` is `Some(name)` for a template.
pub fn parse_str(file: &str, text: &str, template: Option<&str>) -> (Option<Document>, Vec<Diagnostic>) {
    let mut report = Report::new(std::sync::Arc::from(file));
    let doc = parse::document(&mut report, text, template);
    (doc, report.diags)
}
