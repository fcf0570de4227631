//! Where policies come from. A source only reads raw documents and calls the pure compiler; it
//! publishes the result or keeps the last good snapshot.

pub mod dir;
pub mod files;
pub mod nats;
pub mod ondemand;
pub mod pem;
pub mod postgres;
pub mod sched;
pub mod store;
pub mod trim;
pub mod watch;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rolegate_policy::Diagnostic;

/// Called with what every round of a source did: logging and metrics.
pub type OnReload = Box<dyn Fn(&ReloadReport) + Send + 'static>;

/// A place policies come from (a watched directory, PostgreSQL), as the server sees it: started
/// once, it loads, publishes into the store and keeps following on a thread of its own. It never
/// returns while the process runs; [`supervise`] notices if it does.
pub trait Source: Send {
    /// Names the source in logs, without secrets: `policy directory examples`, `postgres db:5432/crm`.
    fn describe(&self) -> String;

    /// The source's own health for `/metrics`, when it keeps one; without it, a source is as
    /// current as the store's last publish.
    fn health(&self) -> Option<Arc<dyn SourceHealth>>;

    /// Starts the source's thread.
    fn spawn(self: Box<Self>, store: Arc<store::Store>, on_reload: OnReload) -> std::io::Result<JoinHandle<()>>;
}

/// What `/metrics` needs from a source that reports its own health, without knowing which
/// source it is. A source without one (the directory) is as current as the store's last publish.
pub trait SourceHealth: Send + Sync + std::fmt::Debug {
    /// The `source` label on every source and snapshot metric.
    fn label(&self) -> &'static str;

    /// Time since the source last knew it held every committed change, published or not;
    /// `None` before the first load.
    fn age(&self) -> Option<Duration>;

    /// The source's own gauges and counters, each labelled with [`SourceHealth::label`].
    fn metrics(&self) -> Vec<SourceMetric>;
}

/// One value a source reports about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceMetric {
    /// Prometheus metric name.
    pub name: &'static str,
    /// One-line help text.
    pub help: &'static str,
    /// Gauge or counter.
    pub kind: MetricKind,
    /// The current value.
    pub value: u64,
}

/// The Prometheus type of a [`SourceMetric`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// A value that goes up and down.
    Gauge,
    /// A count that only goes up.
    Counter,
}

impl MetricKind {
    /// The name in a `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Counter => "counter",
        }
    }
}

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

/// Watches a source's thread: the directory watcher and the PostgreSQL follower never end on
/// their own, so when one ends or panics nothing would ever update the snapshot again. The
/// supervisor logs an error, turns readiness off for good and resolves the returned receiver
/// with why, so the server can exit non-zero and be restarted.
pub fn supervise(
    name: &'static str,
    thread: JoinHandle<()>,
    store: Arc<store::Store>,
) -> std::io::Result<tokio::sync::oneshot::Receiver<String>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("rolegate-supervisor".into()).spawn(move || {
        let why = match thread.join() {
            Ok(()) => format!("the {name} thread ended"),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                format!("the {name} thread panicked: {msg}")
            }
        };
        tracing::error!(rolegate.source = name, "{why}; policies can no longer change, not ready");
        store.source_stopped();
        let _ = tx.send(why);
    })?;
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::Store;

    #[tokio::test]
    async fn a_panicking_source_thread_turns_readiness_off_and_is_reported() {
        let store = Arc::new(Store::default());
        let tenant = rolegate_policy::parse_str("t.yaml", "tenant: t\nschema: {a: [b]}\n", None).0.unwrap();
        store.apply(&[], vec![Arc::new(rolegate_policy::compile(&tenant, None, 1).unwrap())]);
        assert!(store.is_ready());
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let _ = wait.recv();
            panic!("reload failed");
        });
        let died = supervise("reload", thread, store.clone()).unwrap();
        let mut published = store.subscribe();
        go.send(()).unwrap();
        let why = died.await.unwrap();
        assert_eq!(why, "the reload thread panicked: reload failed");
        published.changed().await.unwrap();
        assert!(!store.is_ready());
    }
}
