//! Located errors and warnings about policy documents.

use std::fmt;
use std::sync::Arc;

/// A position in a document, 1-based. The default (line 0) means the whole file: an
/// unreadable file or one too large to read has no better position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Loc {
    /// Line.
    pub line: u32,
    /// Column.
    pub col: u32,
}

/// A value with the position it was written at.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub at: Loc,
}

/// Error or warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The document is rejected.
    Error,
    /// The document loads but probably does not say what its author meant.
    Warning,
}

/// One finding about a document: file, line, key and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    /// The file (or database row) the finding is about.
    pub file: Arc<str>,
    /// Where in it.
    pub at: Loc,
    /// Error or warning.
    pub severity: Severity,
    /// The key path, e.g. `members[2].bindings[0].role`.
    pub key: String,
    /// What is wrong, lowercase, user input in backticks.
    pub message: String,
}

impl Diagnostic {
    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.at == Loc::default() {
            write!(f, "{}: {sev}: ", self.file)?;
        } else {
            write!(f, "{}:{}:{}: {sev}: ", self.file, self.at.line, self.at.col)?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Collects the findings about one file.
#[derive(Debug)]
pub struct Report {
    /// The file being read.
    pub file: Arc<str>,
    /// Findings so far.
    pub diags: Vec<Diagnostic>,
}

impl Report {
    /// A report on `file`.
    pub fn new(file: Arc<str>) -> Self {
        Report { file, diags: Vec::new() }
    }

    /// Records an error.
    pub fn error(&mut self, at: Loc, key: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Error, at, key.into(), message.into());
    }

    /// Records a warning.
    pub fn warn(&mut self, at: Loc, key: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Warning, at, key.into(), message.into());
    }

    fn push(&mut self, severity: Severity, at: Loc, key: String, message: String) {
        self.diags.push(Diagnostic { file: self.file.clone(), at, severity, key, message });
    }

    /// True when an error was recorded.
    pub fn has_errors(&self) -> bool {
        self.diags.iter().any(Diagnostic::is_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(at: Loc) -> Diagnostic {
        let message = "cannot read file".into();
        Diagnostic { file: Arc::from("t.yaml"), at, severity: Severity::Error, key: String::new(), message }
    }

    #[test]
    fn a_file_level_error_names_the_file_without_a_fake_position() {
        assert_eq!(diag(Loc::default()).to_string(), "t.yaml: error: cannot read file");
        assert_eq!(diag(Loc { line: 3, col: 1 }).to_string(), "t.yaml:3:1: error: cannot read file");
    }
}
