//! The live snapshot behind arc-swap, shared by the server and the sources. Readers never block:
//! a `Check` loads one pointer. Writers publish a new snapshot and wake `min_revision` waiters.
//! The store also decides readiness, in one place, for health, `/readyz` and `rolegate_ready`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// The last generation given to a published tenant.
    generations: AtomicU64,
    /// Set once the source feeding the store has stopped: nothing will ever change it again.
    source_down: AtomicBool,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            current: ArcSwapOption::empty(),
            published: watch::channel(0).0,
            published_at: AtomicU64::new(0),
            generations: AtomicU64::new(0),
            source_down: AtomicBool::new(false),
        }
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
    /// the single way sources change the served snapshot. Each inserted tenant gets a new
    /// generation (copied first only if the source still shares it).
    pub fn apply(&self, removed: &[String], fresh: Vec<Arc<Tenant>>) {
        self.update(|snapshot| {
            for name in removed {
                snapshot.remove(name);
            }
            for mut tenant in fresh {
                Arc::make_mut(&mut tenant).generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
                snapshot.insert(tenant);
            }
        });
    }

    /// Ready to take traffic: a snapshot with at least one tenant is published and the source
    /// feeding it is still running. The one definition behind gRPC health, `/readyz` and
    /// `rolegate_ready`.
    pub fn is_ready(&self) -> bool {
        !self.source_down.load(Ordering::Relaxed) && self.current.load().as_ref().is_some_and(|s| !s.is_empty())
    }

    /// Records that the source stopped for good: the store is never ready again. Wakes
    /// subscribers so readiness is re-evaluated at once.
    pub fn source_stopped(&self) {
        self.source_down.store(true, Ordering::Relaxed);
        self.published.send_modify(|_| {});
    }

    /// A receiver that changes on every publish and when the source stops.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// Time since the last publish, `None` before the first.
    pub fn age(&self) -> Option<Duration> {
        let at = self.published_at.load(Ordering::Relaxed);
        let now = jiff::Timestamp::now().as_millisecond().max(0) as u64;
        (at > 0).then(|| Duration::from_millis(now.saturating_sub(at)))
    }

    /// True once a snapshot has been published (perhaps empty: see [`Store::is_ready`]).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(revision: u64) -> Arc<Tenant> {
        let doc = rolegate_policy::parse_str("t.yaml", "tenant: t\nschema: {a: [b]}\n", None).0.unwrap();
        Arc::new(rolegate_policy::compile(&doc, None, revision).unwrap())
    }

    #[test]
    fn a_tenant_published_again_at_the_same_or_a_lower_revision_gets_a_new_generation() {
        let store = Store::default();
        let generation = || store.load().and_then(|s| s.tenant("t").map(|t| (t.revision, t.generation)));
        store.apply(&[], vec![tenant(7)]);
        let first = generation().unwrap();
        store.apply(&["t".to_owned()], vec![]);
        store.apply(&[], vec![tenant(7)]);
        let again = generation().unwrap();
        store.apply(&[], vec![tenant(3)]);
        let lower = generation().unwrap();
        assert_eq!((first.0, again.0, lower.0), (7, 7, 3), "the source's revision is reported as is");
        assert!(first.1 < again.1 && again.1 < lower.1, "{first:?} {again:?} {lower:?}");
    }

    #[test]
    fn ready_means_a_tenant_is_served_by_a_running_source() {
        let store = Store::default();
        assert!(!store.is_ready());
        store.apply(&[], vec![]);
        assert!(store.is_loaded() && !store.is_ready(), "an empty snapshot is not ready");
        store.apply(&[], vec![tenant(1)]);
        assert!(store.is_ready());
        store.source_stopped();
        assert!(!store.is_ready());
    }
}
