//! Watches a policy directory and reloads it: filesystem events (editor saves, atomic renames,
//! the symlink swap of a Kubernetes ConfigMap update) are debounced, and a periodic rescan backs
//! up missed events. Reloads run on their own thread, so they never slow `Check`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use jiff::Timestamp;
use notify::{EventKind, RecursiveMode, Watcher};

use super::ReloadReport;
use super::dir::DirSource;
use crate::store::Store;

/// How the watcher behaves.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// The policy directory.
    pub root: PathBuf,
    /// Quiet time after the last event before reloading.
    pub debounce: Duration,
    /// Rescan at least this often.
    pub poll: Duration,
}

/// Loads the directory once, then keeps reloading it in a background thread until the process
/// exits. `on_reload` sees every report (logging, metrics).
pub fn spawn(
    cfg: WatchConfig,
    store: Arc<Store>,
    on_reload: impl Fn(&ReloadReport) + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let (tx, rx) = mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Reading the files raises access events; only changes matter.
        if let Ok(ev) = res
            && matches!(ev.kind, EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any)
            && !matches!(ev.kind, EventKind::Modify(notify::event::ModifyKind::Metadata(_)))
        {
            let _ = tx.send(());
        }
    })
    .map_err(std::io::Error::other)?;
    let watching = watcher.watch(&cfg.root, RecursiveMode::Recursive);
    std::thread::Builder::new().name("rolegate-reload".into()).spawn(move || {
        let _watcher = watcher;
        if let Err(e) = watching {
            tracing::warn!(rolegate.source = %cfg.root.display(), error = %e, "cannot watch the policy directory; relying on periodic rescans");
        }
        let mut source = DirSource::new(&cfg.root);
        loop {
            let report = source.reload(&store, Timestamp::now());
            on_reload(&report);
            // Wait for an event or the poll interval, then for a quiet period.
            if rx.recv_timeout(cfg.poll) == Err(mpsc::RecvTimeoutError::Disconnected) {
                std::thread::sleep(cfg.poll);
            }
            while rx.recv_timeout(cfg.debounce).is_ok() {}
        }
    })
}
