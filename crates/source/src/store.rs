//! The live snapshot behind arc-swap, shared by the server and the sources. Readers never block:
//! a `Check` loads one pointer. Writers publish a new snapshot and wake `min_revision` waiters.
//! The store also decides readiness, in one place, for health, `/readyz` and `rolegate_ready`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::watch;

use rolegate_engine::{Snapshot, Tenant};

use crate::ondemand::{LoadError, OnDemand, Requests};

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
    /// With tenants on demand, the tenant could not be read (database unreachable, a document
    /// that does not compile): never decided without it.
    #[error(transparent)]
    Unloadable(#[from] LoadError),
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
    /// Set with tenants on demand: the resident set's bookkeeping.
    on_demand: Option<OnDemand>,
    /// The loads and evictions the source serves, until the source takes them.
    requests: std::sync::Mutex<Option<Requests>>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            current: ArcSwapOption::empty(),
            published: watch::channel(0).0,
            published_at: AtomicU64::new(0),
            generations: AtomicU64::new(0),
            source_down: AtomicBool::new(false),
            on_demand: None,
            requests: std::sync::Mutex::new(None),
        }
    }
}

impl Store {
    /// A store that serves tenants on demand: a call naming a tenant the snapshot lacks asks
    /// the source to load it through `on_demand`.
    pub fn on_demand(bound: u64) -> Store {
        let (on_demand, requests) = OnDemand::new(bound);
        Store { on_demand: Some(on_demand), requests: std::sync::Mutex::new(Some(requests)), ..Store::default() }
    }

    /// The loads and evictions to serve, for the source that serves them (once).
    pub fn take_requests(&self) -> Option<Requests> {
        self.requests.lock().ok().and_then(|mut r| r.take())
    }

    /// The resident set's bookkeeping, with tenants on demand.
    pub fn resident_set(&self) -> Option<&OnDemand> {
        self.on_demand.as_ref()
    }

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
    /// With tenants on demand, a first (perhaps empty) publish is enough: tenants come later.
    pub fn is_ready(&self) -> bool {
        let on_demand = self.on_demand.is_some();
        !self.source_down.load(Ordering::Relaxed)
            && self.current.load().as_ref().is_some_and(|s| on_demand || !s.is_empty())
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
    /// `wait` for a newer one. With tenants on demand, a tenant not resident is loaded first.
    pub async fn at_least(&self, tenant: &str, min_revision: u64, wait: Duration) -> Result<Arc<Snapshot>, NotReady> {
        if let Some(on_demand) = &self.on_demand {
            // Boxed so that the resident-set path adds nothing to this future's size.
            return Box::pin(self.on_demand_at_least(on_demand, tenant, min_revision, wait)).await;
        }
        match self.ready_now(tenant, min_revision) {
            Some(ready) => ready,
            // Boxed: few calls wait, and the waiting future would be most of every call's
            // future, moved on each poll of the call.
            None => Box::pin(self.served_at_least(tenant, min_revision, wait)).await,
        }
    }

    /// The answer of [`Store::at_least`] when it is known without waiting or loading — the
    /// tenant is at `min_revision` or none is asked, and tenants are not loaded on demand —
    /// else `None`, and the caller goes through `at_least`. Lets a call that needs no wait be
    /// answered without a future.
    pub fn ready(&self, tenant: &str, min_revision: u64) -> Option<Result<Arc<Snapshot>, NotReady>> {
        if self.on_demand.is_some() {
            return None;
        }
        self.ready_now(tenant, min_revision)
    }

    /// The answer of [`Store::at_least`] when it needs no wait: the snapshot when `tenant` is at
    /// `min_revision` (or none is asked), no snapshot at all when none is asked; else `None`.
    fn ready_now(&self, tenant: &str, min_revision: u64) -> Option<Result<Arc<Snapshot>, NotReady>> {
        match self.load() {
            Some(s) if min_revision == 0 || s.tenant(tenant).is_some_and(|t| t.revision >= min_revision) => Some(Ok(s)),
            None if min_revision == 0 => Some(Err(NotReady::NoSnapshot)),
            _ => None,
        }
    }

    /// [`Store::at_least`] with tenants on demand: a resident tenant is noted as used, any other
    /// is loaded (one load for every call waiting on it) before the usual wait.
    async fn on_demand_at_least(
        &self,
        on_demand: &OnDemand,
        tenant: &str,
        min_revision: u64,
        wait: Duration,
    ) -> Result<Arc<Snapshot>, NotReady> {
        let Some(snapshot) = self.load() else { return Err(NotReady::NoSnapshot) };
        if snapshot.tenant(tenant).is_some() {
            on_demand.touch(tenant).await;
            return self.served_at_least(tenant, min_revision, wait).await;
        }
        let served = || self.load().is_some_and(|s| s.tenant(tenant).is_some());
        let Some(loaded) = on_demand.load(tenant, served).await? else {
            // Not in the database: the answer for an unknown tenant, as with every tenant resident.
            return self.served_at_least(tenant, min_revision, wait).await;
        };
        if loaded.revision < min_revision {
            return self.served_at_least(tenant, min_revision, wait).await;
        }
        // The served snapshot when it holds the tenant (perhaps newer than the load). Otherwise
        // it was loaded, then evicted at once (the bound is full of tenants called more often;
        // the eviction may land between any two looks at the snapshot, so there is no waiting
        // for it there): the calls that waited are decided on the loaded tenant all the same.
        if let Some(s) = self.load().filter(|s| s.tenant(tenant).is_some_and(|t| t.revision >= min_revision)) {
            return Ok(s);
        }
        let mut alone = Snapshot::default();
        alone.insert(loaded);
        Ok(Arc::new(alone))
    }

    /// [`Store::at_least`] on the tenants the snapshot serves.
    async fn served_at_least(
        &self,
        tenant: &str,
        min_revision: u64,
        wait: Duration,
    ) -> Result<Arc<Snapshot>, NotReady> {
        let revision = |s: &Snapshot| s.tenant(tenant).map_or(0, |t: &Arc<Tenant>| t.revision);
        if let Some(ready) = self.ready_now(tenant, min_revision) {
            return ready;
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
