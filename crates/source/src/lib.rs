//! Where policies come from. A source only reads raw documents and calls the pure compiler; it
//! publishes the result or keeps the last good snapshot.

pub mod dir;
pub mod postgres;
pub mod store;
pub mod watch;

use rolegate_policy::Diagnostic;

/// What one reload did.
#[derive(Debug, Default)]
pub struct ReloadReport {
    /// Tenants compiled and published, with their new revisions.
    pub applied: Vec<(String, u64)>,
    /// Tenants removed because their document is gone.
    pub removed: Vec<String>,
    /// Tenants whose new document failed; their last good snapshot keeps serving.
    pub failed: Vec<String>,
    /// Every error found, with file, line and key.
    pub errors: Vec<Diagnostic>,
    /// The source could not be read at all.
    pub unreadable: Option<String>,
    /// Every tenant served now with input that was rejected (a document kept at its last good
    /// version, a row left out), and why: the whole current set, not what changed this round,
    /// so a gauge of it falls back to 0 only once everything is fixed.
    pub stale: Vec<Stale>,
}

/// A tenant served with rejected input, until the input is fixed or deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stale {
    /// Tenant id.
    pub tenant: String,
    /// What was rejected: file or row, line and key.
    pub why: String,
}
