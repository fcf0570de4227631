//! Watches a policy directory and reloads it: filesystem events (editor saves, atomic renames,
//! the symlink swap of a Kubernetes ConfigMap update) are debounced, and a periodic rescan backs
//! up missed events. Reloads run on their own thread, so they never slow `Check`.
//!
//! Bounds: a reload follows the first event of a burst after at most [`max_wait`], however
//! often files keep changing, and the periodic rescan runs every `poll` whatever the events.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};

use super::ReloadReport;
use super::dir::DirSource;
use crate::store::Store;

/// How the watcher behaves.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// The policy directory.
    pub root: PathBuf,
    /// Quiet time after the last event before reloading; also how long a file's size and
    /// modification time must hold before it is loaded.
    pub debounce: Duration,
    /// Rescan at least this often.
    pub poll: Duration,
}

impl crate::Source for WatchConfig {
    fn describe(&self) -> String {
        format!("policy directory {}", self.root.display())
    }

    fn health(&self) -> Option<Arc<dyn crate::SourceHealth>> {
        None
    }

    fn spawn(self: Box<Self>, store: Arc<Store>, on_reload: crate::OnReload) -> std::io::Result<JoinHandle<()>> {
        spawn(*self, store, on_reload)
    }
}

/// The longest a change waits for quiet, and the longest a file still being written is
/// deferred: ten debounce intervals, at least one second.
pub fn max_wait(debounce: Duration) -> Duration {
    (debounce.saturating_mul(10)).max(Duration::from_secs(1))
}

/// What the filesystem told the watcher.
#[derive(Debug)]
enum Note {
    /// Files changed; `writing` when a writer opened or wrote them and may not be done.
    Changed { paths: Vec<PathBuf>, writing: bool },
    /// A writer closed these files.
    Closed(Vec<PathBuf>),
}

fn note(ev: notify::Event) -> Option<Note> {
    let writing = matches!(ev.kind, EventKind::Create(CreateKind::File) | EventKind::Modify(ModifyKind::Data(_)));
    match ev.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Note::Closed(ev.paths)),
        // Reading the files raises access events; only changes matter.
        EventKind::Modify(ModifyKind::Metadata(_)) | EventKind::Access(_) | EventKind::Other => None,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any => {
            Some(Note::Changed { paths: ev.paths, writing })
        }
    }
}

/// Loads the directory once, then keeps reloading it in a background thread until the process
/// exits. `on_reload` sees every report (logging, metrics). The thread never ends on its own:
/// its handle is for a supervisor to notice a panic.
pub fn spawn(
    cfg: WatchConfig,
    store: Arc<Store>,
    on_reload: impl Fn(&ReloadReport) + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    let (tx, rx) = mpsc::channel::<Note>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Some(n) = res.ok().and_then(note) {
            let _ = tx.send(n);
        }
    })
    .map_err(std::io::Error::other)?;
    let watching = watcher.watch(&cfg.root, RecursiveMode::Recursive);
    std::thread::Builder::new().name("rolegate-reload".into()).spawn(move || {
        let _watcher = watcher;
        if let Err(e) = watching {
            tracing::warn!(rolegate.source = %cfg.root.display(), error = %e, "cannot watch the policy directory; relying on periodic rescans");
        }
        let max_wait = max_wait(cfg.debounce);
        let mut source = DirSource::new(&cfg.root, cfg.debounce, max_wait);
        let mut waiter = Waiter { rx, writing: HashMap::new(), debounce: cfg.debounce, max_wait, early: false };
        loop {
            source.set_writing(waiter.writing());
            // Once it finds a change, calls that come meanwhile get the core at once (see `sched`).
            let report = source.reload(&store);
            on_reload(&report);
            // Files still changing are looked at again after a debounce interval.
            let next = if source.deferred() > 0 { cfg.debounce.min(cfg.poll) } else { cfg.poll };
            let rescan_at = Instant::now() + next;
            // The heap trim a reload left owed runs when due, unless a change comes first (then
            // it runs after that change's reload, or once changes stop).
            if let Some(due) = source.trim_due().filter(|due| *due < rescan_at)
                && waiter.quiet_until(due)
            {
                source.trim();
            }
            waiter.wait(rescan_at);
        }
    })
}

/// Waits for the next reload and tracks which files writers hold open.
struct Waiter {
    rx: mpsc::Receiver<Note>,
    /// Files modified and not closed since, with when that was first seen.
    writing: HashMap<PathBuf, Instant>,
    debounce: Duration,
    max_wait: Duration,
    /// An event came while waiting for a trim: the next wait starts as if it just came.
    early: bool,
}

impl Waiter {
    /// Files held open for writing, for at most `max_wait`: a close event may be lost.
    fn writing(&mut self) -> HashSet<PathBuf> {
        let max_wait = self.max_wait;
        self.writing.retain(|_, since| since.elapsed() < max_wait);
        self.writing.keys().cloned().collect()
    }

    fn track(&mut self, note: Note) {
        match note {
            Note::Changed { paths, writing: true } => {
                for p in paths {
                    self.writing.entry(p).or_insert_with(Instant::now);
                }
            }
            Note::Changed { paths, writing: false } => {
                for p in paths {
                    self.writing.remove(&p);
                }
            }
            Note::Closed(paths) => {
                for p in paths {
                    self.writing.remove(&p);
                }
            }
        }
    }

    /// Waits until `deadline` for an event; true when none came. An event that came is kept
    /// for [`Waiter::wait`].
    fn quiet_until(&mut self, deadline: Instant) -> bool {
        match self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(n) => {
                self.track(n);
                self.early = true;
                false
            }
            Err(_) => true,
        }
    }

    /// Returns at `rescan_at`, or once events have been quiet for the debounce interval, or
    /// `max_wait` after the first event, whichever comes first.
    fn wait(&mut self, rescan_at: Instant) {
        let left = rescan_at.saturating_duration_since(Instant::now());
        if !std::mem::take(&mut self.early) {
            match self.rx.recv_timeout(left) {
                Ok(n) => self.track(n),
                Err(mpsc::RecvTimeoutError::Timeout) => return,
                Err(mpsc::RecvTimeoutError::Disconnected) => return std::thread::sleep(left),
            }
        }
        let first = Instant::now();
        let deadline = (first + self.max_wait).min(rescan_at);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.rx.recv_timeout(self.debounce.min(left)) {
                Ok(n) => self.track(n),
                Err(_) => return,
            }
        }
    }
}
