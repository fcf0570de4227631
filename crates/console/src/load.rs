//! What the console shows: the policies read once at start, their findings, and the diff against
//! a base when one is given. Nothing here writes to a source: a directory is only read, and a
//! database is read in one read-only transaction (`rolegate_source::postgres::transfer::export`).

use std::path::{Path, PathBuf};

use anyhow::bail;
use jiff::Timestamp;
use rolegate_engine::Snapshot;
use rolegate_policy::Diagnostic;
use rolegate_policy::diff::{self, Diff};
use rolegate_source::dir::load_snapshot;

/// Where policies are read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A policy directory.
    Dir(PathBuf),
    /// A PostgreSQL database, by DSN.
    Postgres(String),
}

impl Origin {
    /// A `postgres://` or `postgresql://` DSN, else a directory.
    pub fn parse(s: &str) -> Origin {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Origin::Postgres(s.to_owned())
        } else {
            Origin::Dir(PathBuf::from(s))
        }
    }

    /// How the page names it. A DSN is reduced to its database name: it may carry a password.
    pub fn label(&self) -> String {
        match self {
            Origin::Dir(dir) => dir.display().to_string(),
            Origin::Postgres(dsn) => {
                let path = dsn.split_once("://").map_or("", |(_, rest)| rest);
                let db = path.split_once('/').map_or("", |(_, db)| db);
                let db = db.split(['?', '#']).next().unwrap_or_default();
                format!("PostgreSQL database `{db}`")
            }
        }
    }

    /// Reads the policies: the snapshot of every tenant that loads, and every finding.
    pub async fn read(&self) -> anyhow::Result<(Snapshot, Vec<Diagnostic>)> {
        match self {
            Origin::Dir(dir) => {
                let (snapshot, loaded) = load_snapshot(dir)?;
                Ok((snapshot, loaded.diagnostics().into_iter().cloned().collect()))
            }
            Origin::Postgres(dsn) => {
                let dir = scratch_dir();
                let read = async {
                    rolegate_source::postgres::transfer::export(dsn, &dir).await?;
                    load_snapshot(&dir)
                };
                let outcome = read.await;
                let _ = std::fs::remove_dir_all(&dir);
                let (snapshot, loaded) = outcome?;
                let diags = loaded.diagnostics().into_iter().map(|d| relabel(d, &dir)).collect();
                Ok((snapshot, diags))
            }
        }
    }
}

/// A fresh directory name under the system's temporary directory.
fn scratch_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("rolegate-console-{}-{nanos}", std::process::id()))
}

/// A finding about an exported file, named as the database's document (`postgres:acme.yaml`).
fn relabel(d: &Diagnostic, dir: &Path) -> Diagnostic {
    let mut d = d.clone();
    if let Ok(rel) = Path::new(&*d.file).strip_prefix(dir) {
        d.file = format!("postgres:{}", rel.display()).into();
    }
    d
}

/// The diff page's content.
#[derive(Debug)]
pub enum Compared {
    /// No `--base` was given.
    NoBase,
    /// The base or the shown policies have errors: a diff of a broken policy would mislead.
    Broken(String),
    /// What changing from the base to the shown policies does.
    Diff {
        /// The base, as the page names it.
        base: String,
        /// The diff.
        diff: Diff,
    },
}

/// Everything the console serves, read once.
#[derive(Debug)]
pub struct State {
    /// Where the shown policies come from, as the page names it.
    pub origin: String,
    /// The tenants that loaded.
    pub snapshot: Snapshot,
    /// Every error and warning, sorted by file and line.
    pub problems: Vec<Diagnostic>,
    /// The diff against `--base`.
    pub compared: Compared,
    /// When the policies were read.
    pub loaded_at: Timestamp,
}

impl State {
    /// Reads `origin` and, when given, `base`, and computes the diff between them.
    pub async fn load(origin: Origin, base: Option<Origin>) -> anyhow::Result<State> {
        let (snapshot, problems) = origin.read().await?;
        if snapshot.is_empty() && problems.is_empty() {
            bail!("no tenant found in {}", origin.label());
        }
        let compared = match base {
            None => Compared::NoBase,
            Some(base) => {
                let (old, old_problems) = base.read().await?;
                let errors = |p: &[Diagnostic]| p.iter().filter(|d| d.is_error()).count();
                match (errors(&old_problems), errors(&problems)) {
                    (0, 0) => Compared::Diff { base: base.label(), diff: diff::diff(&old, &snapshot, None) },
                    (0, n) => Compared::Broken(format!("the shown policies have {n} errors; fix them to compare")),
                    (n, _) => {
                        Compared::Broken(format!("the base {} has {n} errors; fix them to compare", base.label()))
                    }
                }
            }
        };
        Ok(State { origin: origin.label(), snapshot, problems, compared, loaded_at: Timestamp::now() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dsn_is_shown_without_its_credentials() {
        let o = Origin::parse("postgres://rolegate:s3cret@db.internal:5432/policies?sslmode=require");
        assert_eq!(o.label(), "PostgreSQL database `policies`");
        assert!(!o.label().contains("s3cret"));
    }

    #[test]
    fn a_path_is_a_directory() {
        assert_eq!(Origin::parse("examples"), Origin::Dir(PathBuf::from("examples")));
    }
}
