//! Watches a policy directory and reloads it: filesystem events (editor saves, atomic renames,
//! the symlink swap of a Kubernetes ConfigMap update) are debounced, and a periodic rescan backs
//! up missed events. Reloads run on their own thread, so they never slow `Check`.
//!
//! A writer raises an event for every `write` it makes (a 1 MB document written in 64 KiB
//! pieces is sixteen), and a sidecar's reload thread shares its core with the request threads.
//! So events wait in an [`Inbox`] and the reload thread is woken by the first of a burst only,
//! then looks again once per debounce interval; and from that first event until the burst's
//! reload is done, the request threads have their short slices ([`crate::sched`]), so a call
//! that comes meanwhile is not held behind the watcher's threads.
//!
//! Bounds: a reload follows the first event of a burst after at most [`max_wait`], however
//! often files keep changing, and the periodic rescan runs every `poll` whatever the events.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};

use super::ReloadReport;
use super::dir::DirSource;
use crate::sched::ShortSlices;
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
    let inbox = Arc::new(Inbox::default());
    let posted = inbox.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Some(n) = res.ok().and_then(note) {
            posted.post(n);
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
        let mut waiter = Waiter { inbox, writing: HashMap::new(), debounce: cfg.debounce, max_wait, early: false };
        // Given when a burst of events begins or the reload finds a change, taken back after it.
        let mut slices = ShortSlices::default();
        loop {
            source.set_writing(waiter.writing());
            let report = source.reload_with(&store, &mut slices);
            slices = ShortSlices::default();
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
            waiter.wait(rescan_at, &mut slices);
        }
    })
}

/// The notes the watcher's thread posts for the reload thread, which it wakes only when the
/// first one arrives.
#[derive(Default)]
struct Inbox {
    pending: Mutex<Pending>,
    arrived: Condvar,
}

#[derive(Default)]
struct Pending {
    notes: Vec<Note>,
    /// When the last note was posted.
    last: Option<Instant>,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn post(&self, note: Note) {
        let mut p = self.lock();
        let first = p.notes.is_empty();
        p.notes.push(note);
        p.last = Some(Instant::now());
        drop(p);
        if first {
            self.arrived.notify_one();
        }
    }

    /// Waits until a note is pending or `deadline` passes; true when one is.
    fn wait_until(&self, deadline: Instant) -> bool {
        let mut p = self.lock();
        while p.notes.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            p = self.arrived.wait_timeout(p, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        true
    }

    /// The pending notes, and when the last one was posted.
    fn take(&self) -> (Vec<Note>, Option<Instant>) {
        let mut p = self.lock();
        (std::mem::take(&mut p.notes), p.last)
    }
}

/// Waits for the next reload and tracks which files writers hold open.
struct Waiter {
    inbox: Arc<Inbox>,
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
        if self.inbox.wait_until(deadline) {
            self.early = true;
            return false;
        }
        true
    }

    /// Returns at `rescan_at`, or once events have been quiet for the debounce interval, or
    /// `max_wait` after the first event, whichever comes first. When events came, the request
    /// threads have their short slices from the first one on.
    fn wait(&mut self, rescan_at: Instant, slices: &mut ShortSlices) {
        if !std::mem::take(&mut self.early) && !self.inbox.wait_until(rescan_at) {
            return;
        }
        slices.begin();
        let first = Instant::now();
        let deadline = (first + self.max_wait).min(rescan_at);
        loop {
            // Events that come while this thread sleeps do not wake it: it looks once a
            // debounce interval has passed since the last one it knows of.
            let (notes, last) = self.inbox.take();
            for n in notes {
                self.track(n);
            }
            let quiet = (last.unwrap_or(first) + self.debounce).min(deadline);
            let left = quiet.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_waited_out_until_quiet_and_every_note_is_tracked() {
        let _alone = crate::sched::TESTS_GIVING_SLICES.lock().unwrap_or_else(PoisonError::into_inner);
        let inbox = Arc::new(Inbox::default());
        let debounce = Duration::from_millis(30);
        let mut waiter = Waiter {
            inbox: inbox.clone(),
            writing: HashMap::new(),
            debounce,
            max_wait: Duration::from_secs(5),
            early: false,
        };
        let file = PathBuf::from("desk.yaml");
        let posted = {
            let file = file.clone();
            std::thread::spawn(move || {
                // A writer's 20 writes, 5 ms apart, then its close.
                for _ in 0..20 {
                    inbox.post(Note::Changed { paths: vec![file.clone()], writing: true });
                    std::thread::sleep(Duration::from_millis(5));
                }
                let before = Instant::now();
                inbox.post(Note::Closed(vec![file]));
                before
            })
        };
        let start = Instant::now();
        let mut slices = ShortSlices::default();
        waiter.wait(start + Duration::from_secs(10), &mut slices);
        let returned = Instant::now();
        assert!(slices.given(), "the request threads have short slices from the first event");
        drop(slices);
        let last = posted.join().unwrap();
        assert!(
            returned >= last + debounce,
            "returned {:?} after the last note",
            returned.checked_duration_since(last)
        );
        assert!(returned - start < Duration::from_secs(4), "waited {:?}", returned - start);
        assert!(waiter.writing().is_empty(), "the close was tracked");
        assert!(waiter.inbox.take().0.is_empty(), "every note was taken");
    }

    #[test]
    fn with_no_event_the_wait_ends_at_the_rescan() {
        let mut waiter = Waiter {
            inbox: Arc::new(Inbox::default()),
            writing: HashMap::new(),
            debounce: Duration::from_millis(10),
            max_wait: Duration::from_secs(1),
            early: false,
        };
        let start = Instant::now();
        let mut slices = ShortSlices::default();
        waiter.wait(start + Duration::from_millis(50), &mut slices);
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert!(!slices.given(), "no event, no short slices");
    }
}
