//! The policy language (docs/policy-language.md): documents parsed with locations, templates,
//! the compiler into engine snapshots, lints, and the policy-test format. Pure and synchronous:
//! bytes in, compiled tenants and located findings out; reading files is a source's job.

pub mod compile;
pub mod diag;
pub mod diff;
pub mod document;
pub mod layout;
pub mod lint;
pub mod parse;
pub mod set;
pub mod suite;
pub mod when;
pub mod yaml;

pub use compile::{MemberChange, Prints, compile, compile_members, recompile, recompile_spliced};
pub use diag::{Diagnostic, Loc, Report, Severity, Spanned};
pub use document::Document;
pub use set::{
    Build, Loaded, Parsed, PolicyFile, TenantOutcome, UnknownTemplate, assemble, assemble_with, find_template,
    parse_bytes, unreadable,
};
pub use when::MAX_WHEN_DEPTH;
pub use yaml::MAX_YAML_DEPTH;

/// Parses one document from text. `template` is `Some(name)` for a template.
pub fn parse_str(file: &str, text: &str, template: Option<&str>) -> (Option<Document>, Vec<Diagnostic>) {
    let mut report = Report::new(std::sync::Arc::from(file));
    let doc = parse::document(&mut report, text, template);
    (doc, report.diags)
}
