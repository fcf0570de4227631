//! Tenants on demand (`serve --tenants on-demand`, docs/operations.md "Tenants on demand"): the
//! sidecar holds only the tenants its callers name, within a memory bound.
//!
//! The served tenants stay in the store's snapshot, so a call for a resident tenant is decided
//! exactly as with every tenant resident. Beside it a moka cache holds each resident tenant's
//! estimated size ([`rolegate_engine::Tenant::approx_bytes`]): it weighs them against the bound,
//! chooses which to evict (frequency-aware, TinyLFU), and makes the first calls naming a tenant
//! wait for one load together.
//!
//! Loads and evictions are carried out by the source's own thread, in order with the changes it
//! follows: a load reads the tenant from the database after its notifications are already
//! listened to, and an evicted tenant leaves the snapshot and the source's follow set in the same
//! step, so no tenant is ever served without its changes being followed. An evicted tenant is read
//! afresh on its next call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use rolegate_engine::Tenant;
use tokio::sync::{mpsc, oneshot};

/// How long a call waits for its tenant to load before it is answered `UNAVAILABLE`.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The bound when `--tenant-memory` is not given: 512 MiB.
pub const DEFAULT_TENANT_MEMORY: u64 = 512 << 20;
/// Load latency bucket bounds, in seconds.
pub const LOAD_BUCKETS: [f64; 10] = [1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0, 5.0];

/// What the source's thread is asked to do.
#[derive(Debug)]
pub enum Request {
    /// Read a tenant from the database, publish it and follow it; answer with what was found.
    Load {
        /// Tenant id.
        tenant: String,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<Loaded, String>>,
    },
    /// Stop serving and following a tenant: the bound needed its room.
    Evict(String),
}

/// What a load found.
#[derive(Clone, Debug)]
pub enum Loaded {
    /// The tenant as published, and its estimated size in bytes.
    Resident(Resident),
    /// The database has no such tenant: calls get the answer for an unknown tenant.
    Unknown,
}

/// Why a tenant could not be loaded: the call is answered `UNAVAILABLE`, never decided.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("tenant `{tenant}` cannot be loaded: {why}")]
pub struct LoadError {
    /// Tenant id.
    pub tenant: String,
    /// What failed.
    pub why: String,
}

/// A resident tenant as loaded or last changed, with its estimated size.
#[derive(Clone, Debug)]
pub struct Resident {
    /// Estimated bytes: [`Tenant::approx_bytes`].
    pub bytes: u64,
    /// The tenant.
    pub tenant: Arc<Tenant>,
}

impl Resident {
    /// The tenant and its estimated size.
    pub fn new(tenant: Arc<Tenant>) -> Resident {
        Resident { bytes: tenant.approx_bytes() as u64, tenant }
    }
}

/// The requests a source receives; handed to the source when it starts.
#[derive(Debug)]
pub struct Requests(pub mpsc::UnboundedReceiver<Request>);

/// Counters of loads and evictions, rendered on `/metrics`.
#[derive(Debug, Default)]
pub struct LoadMetrics {
    /// Loads that made a tenant resident.
    pub loaded: AtomicU64,
    /// Loads of a tenant the database does not have.
    pub unknown: AtomicU64,
    /// Loads that failed (database unreachable, tenant that does not compile, timeout).
    pub failed: AtomicU64,
    /// Tenants evicted to stay within the bound.
    pub evictions: AtomicU64,
    /// Load latency: a count per bucket of [`LOAD_BUCKETS`] (beyond the last: only in `count`).
    pub buckets: [AtomicU64; LOAD_BUCKETS.len()],
    /// Loads timed.
    pub count: AtomicU64,
    /// Their total time, in nanoseconds.
    pub sum_nanos: AtomicU64,
}

impl LoadMetrics {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LOAD_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }
}

/// The resident set's bookkeeping: sizes, eviction and single-flight loads.
#[derive(Debug)]
pub struct OnDemand {
    /// Resident tenants by id, weighed by their estimated size.
    sizes: moka::future::Cache<Arc<str>, Resident>,
    requests: mpsc::UnboundedSender<Request>,
    bound: u64,
    /// Loads and evictions.
    pub metrics: Arc<LoadMetrics>,
}

impl OnDemand {
    /// Bookkeeping for a bound of `bound` bytes, and the requests its source must serve.
    pub fn new(bound: u64) -> (OnDemand, Requests) {
        let (tx, rx) = mpsc::unbounded_channel();
        let metrics = Arc::new(LoadMetrics::default());
        let evict = tx.clone();
        let counted = metrics.clone();
        let sizes = moka::future::Cache::builder()
            .max_capacity(bound)
            .weigher(|_: &Arc<str>, r: &Resident| u32::try_from(r.bytes).unwrap_or(u32::MAX))
            .eviction_listener(move |tenant: Arc<Arc<str>>, _, cause: moka::notification::RemovalCause| {
                // Replaced and explicit removals are the source's own doing; only the bound evicts.
                if cause.was_evicted() {
                    counted.evictions.fetch_add(1, Relaxed);
                    let _ = evict.send(Request::Evict(tenant.to_string()));
                }
            })
            .build();
        (OnDemand { sizes, requests: tx, bound, metrics }, Requests(rx))
    }

    /// The memory bound, in bytes.
    pub fn bound(&self) -> u64 {
        self.bound
    }

    /// Resident tenants.
    pub fn resident(&self) -> u64 {
        self.sizes.entry_count()
    }

    /// Their estimated bytes.
    pub fn resident_bytes(&self) -> u64 {
        self.sizes.weighted_size()
    }

    /// Notes a call for a resident tenant, so eviction knows what is in use.
    pub async fn touch(&self, tenant: &str) {
        let _ = self.sizes.get(tenant).await;
    }

    /// Makes `tenant` resident, once however many calls wait: the tenant as loaded, or `None`
    /// when the database has no such tenant. `served` tells whether the snapshot serves it now.
    ///
    /// The tenant returned may already be evicted again (when the bound is full of tenants
    /// called more often, it is not admitted): the calls that waited for it are still decided
    /// on it, as current as a load can be.
    pub async fn load(&self, tenant: &str, served: impl Fn() -> bool) -> Result<Option<Arc<Tenant>>, LoadError> {
        // A size without a served tenant is left from a removal that raced a load: drop it, so
        // the tenant is read again rather than taken as resident.
        if let Some(left) = self.sizes.get(tenant).await {
            if served() {
                return Ok(Some(left.tenant));
            }
            self.sizes.invalidate(tenant).await;
        }
        let key: Arc<str> = Arc::from(tenant);
        let loaded = self.sizes.try_get_with(key, self.read(tenant)).await;
        self.sizes.run_pending_tasks().await;
        match loaded {
            Ok(r) => Ok(Some(r.tenant)),
            Err(e) => match &*e {
                Failure::Unknown => Ok(None),
                Failure::Failed(why) => Err(LoadError { tenant: tenant.to_owned(), why: why.clone() }),
            },
        }
    }

    /// Asks the source's thread for the tenant and waits for it.
    async fn read(&self, tenant: &str) -> Result<Resident, Failure> {
        let start = Instant::now();
        let (reply, answer) = oneshot::channel();
        let asked = self.requests.send(Request::Load { tenant: tenant.to_owned(), reply });
        let outcome = match asked {
            Err(_) => Err("the policy source has stopped".to_owned()),
            Ok(()) => match tokio::time::timeout(LOAD_TIMEOUT, answer).await {
                Err(_) => Err(format!("no answer within {} s", LOAD_TIMEOUT.as_secs())),
                Ok(Err(_)) => Err("the policy source has stopped".to_owned()),
                Ok(Ok(outcome)) => outcome,
            },
        };
        self.metrics.observe(start.elapsed());
        let counter = match &outcome {
            Ok(Loaded::Resident(_)) => &self.metrics.loaded,
            Ok(Loaded::Unknown) => &self.metrics.unknown,
            Err(_) => &self.metrics.failed,
        };
        counter.fetch_add(1, Relaxed);
        match outcome {
            Ok(Loaded::Resident(r)) => Ok(r),
            Ok(Loaded::Unknown) => Err(Failure::Unknown),
            Err(why) => Err(Failure::Failed(why)),
        }
    }

    /// Records a resident tenant's new version and size after a change (the source calls it).
    pub async fn changed(&self, tenant: Arc<Tenant>) {
        if self.sizes.contains_key(tenant.name.as_ref()) {
            self.sizes.insert(Arc::from(tenant.name.as_ref()), Resident::new(tenant)).await;
            self.sizes.run_pending_tasks().await;
        }
    }

    /// Forgets a tenant the source no longer serves (gone from the database).
    pub async fn forget(&self, tenant: &str) {
        self.sizes.invalidate(tenant).await;
    }
}

/// Why a single-flight load ended without a resident tenant.
#[derive(Debug)]
enum Failure {
    Unknown,
    Failed(String),
}
