//! The live snapshot behind arc-swap, shared by the server and the sources. Readers never block:
//! a `Check` loads one pointer. Writers publish a new snapshot and wake `min_revision` waiters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::watch;

use rolegate_engine::{Snapshot, Tenant};

/// Why a snapshot cannot be used for a request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotReady {
    /// Nothing has been loaded yet: rolegate never allows without a snapshot.
    #[error("no policy snapshot is loaded yet")]
    NoSnapshot,
    /// The tenant did not reach the requested revision in time.
    #[error("tenant `{tenant}` is at revision {have}, request needs at least {want} (waited {waited_ms} ms)")]
    Behind {
        /// Tenant id.
        tenant: String,
        /// Revision served now (0 when the tenant is unknown).
        have: u64,
        /// `min_revision` of the request.
        want: u64,
        /// How long the request waited.
        waited_ms: u128,
    },
}

/// The current snapshot and a signal that fires on every publish.
#[derive(Debug)]
pub struct Store {
    current: ArcSwapOption<Snapshot>,
    published: watch::Sender<u64>,
    /// Milliseconds since the epoch of the last publish; 0 before the first.
    published_at: AtomicU64,
}

impl Default for Store {
    fn default() -> Self {
        Store { current: ArcSwapOption::empty(), published: watch::channel(0).0, published_at: AtomicU64::new(0) }
    }
}

impl Store {
    /// The current snapshot, if one was ever published.
    #[inline]
    pub fn load(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// Publishes a snapshot and wakes waiters.
    pub fn publish(&self, snapshot: Snapshot) {
        self.current.store(Some(Arc::new(snapshot)));
        let now = jiff::Timestamp::now().as_millisecond().max(1) as u64;
        self.published_at.store(now, Ordering::Relaxed);
        self.published.send_modify(|generation| *generation += 1);
    }

    /// Applies a change to a copy of the current snapshot (empty when there is none) and
    /// publishes it. The copy clones one `Arc` per tenant; the changed tenants were compiled
    /// beforehand, so the cost of a change is proportional to that tenant.
    pub fn update(&self, change: impl FnOnce(&mut Snapshot)) {
        let mut next = self.load().map(|s| (*s).clone()).unwrap_or_default();
        change(&mut next);
        self.publish(next);
    }

    /// Removes `removed` and inserts `fresh` (replacing tenants of the same name) in one publish:
    /// the single way sources change the served snapshot.
    pub fn apply(&self, removed: &[String], fresh: Vec<Arc<Tenant>>) {
        self.update(|snapshot| {
            for name in removed {
                snapshot.remove(name);
            }
            for tenant in fresh {
                snapshot.insert(tenant);
            }
        });
    }

    /// A receiver that changes on every publish.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// Time since the last publish, `None` before the first.
    pub fn age(&self) -> Option<Duration> {
        let at = self.published_at.load(Ordering::Relaxed);
        let now = jiff::Timestamp::now().as_millisecond().max(0) as u64;
        (at > 0).then(|| Duration::from_millis(now.saturating_sub(at)))
    }

    /// True once a snapshot has been published.
    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// Resolves a snapshot in which `tenant` is at least at `min_revision`, waiting up to
    /// `wait` for a newer one.
    pub async fn at_least(&self, tenant: &str, min_revision: u64, wait: Duration) -> Result<Arc<Snapshot>, NotReady> {
        let revision = |s: &Snapshot| s.tenant(tenant).map_or(0, |t: &Arc<Tenant>| t.revision);
        match self.load() {
            Some(s) if min_revision == 0 || revision(&s) >= min_revision => return Ok(s),
            None if min_revision == 0 => return Err(NotReady::NoSnapshot),
            _ => {}
        }
        let start = tokio::time::Instant::now();
        let mut rx = self.published.subscribe();
        let waited = tokio::time::timeout(wait, async {
            loop {
                if let Some(s) = self.load().filter(|s| revision(s) >= min_revision) {
                    return Some(s);
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        match waited {
            Ok(Some(s)) => Ok(s),
            _ => Err(NotReady::Behind {
                tenant: tenant.to_owned(),
                have: self.load().map_or(0, |s| revision(&s)),
                want: min_revision,
                waited_ms: start.elapsed().as_millis(),
            }),
        }
    }
}
