//! Shadow evaluation (docs/operations.md, "Roll out with shadow evaluation"): calls are also
//! decided on a candidate policy, off the response path, and the answers compared. The caller
//! only ever gets the live answer; a call reaches the candidate through a bounded queue that
//! drops (and counts) rather than wait, and one thread decides and compares.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use jiff::Timestamp;
use rolegate_engine::{Context, Decision, Query, Resource, decide};
use rolegate_source::Source;
use rolegate_source::postgres::PostgresSource;
use rolegate_source::store::Store;
use rolegate_source::watch::WatchConfig;
use rolegate_telemetry::Telemetry;
use rolegate_telemetry::decision_log::ShadowEntry;
use rolegate_telemetry::shadow::Dropped;

/// Where the candidate policy comes from.
#[derive(Clone, Debug)]
pub enum ShadowSource {
    /// A policy directory, watched like the live one.
    Dir(PathBuf),
    /// A PostgreSQL database or schema holding the candidate, followed like the live one.
    Postgres(Box<rolegate_source::postgres::Config>),
}

/// `--shadow-*` settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The candidate policy.
    pub source: ShadowSource,
    /// Calls queued for the shadow thread before new ones are dropped.
    pub queue: usize,
    /// Share of calls compared, in [0, 1].
    pub sample: f64,
    /// Mismatches written to the decision log per second, at most.
    pub log_per_second: u32,
}

/// One call to decide again on the candidate: owned, so queuing it borrows nothing.
#[derive(Debug)]
pub struct Job {
    /// Tenant id.
    pub tenant: String,
    /// Member id.
    pub principal: String,
    /// `kind.verb`.
    pub action: String,
    /// The resource.
    pub resource: Resource,
    /// The context.
    pub context: Context,
    /// The instant the live answer was decided at.
    pub now: Timestamp,
    /// The live answer.
    pub live: Decision,
    /// The live tenant revision.
    pub live_revision: u64,
}

/// The handle the service holds: decides whether a call is sampled and queues it.
#[derive(Clone, Debug)]
pub struct Shadow {
    tx: SyncSender<Job>,
    /// Sampled when the mixed sequence number, as a fraction of 2^64, is below this.
    threshold: u64,
    seq: Arc<AtomicU64>,
    telemetry: Arc<Telemetry>,
    /// The candidate's snapshot store, for tests and readiness logs.
    store: Arc<Store>,
}

impl Shadow {
    /// Starts the candidate's source and the thread that compares.
    pub fn start(
        cfg: &Config,
        debounce: Duration,
        poll: Duration,
        telemetry: Arc<Telemetry>,
    ) -> anyhow::Result<Shadow> {
        let store = Arc::new(Store::default());
        let source: Box<dyn Source> = match &cfg.source {
            ShadowSource::Dir(root) => Box::new(WatchConfig { root: root.clone(), debounce, poll }),
            ShadowSource::Postgres(pg) => Box::new(PostgresSource { cfg: (**pg).clone(), health: Arc::default() }),
        };
        let described = source.describe();
        tracing::info!("shadow evaluation against {described}");
        let source_thread = source
            .spawn(store.clone(), Box::new(log_reload))
            .with_context(|| format!("cannot start the shadow {described}"))?;
        std::thread::Builder::new().name("rolegate-shadow-watch".into()).spawn(move || {
            // The shadow never decides a caller's answer: its source stopping is logged, not fatal.
            let _ = source_thread.join();
            tracing::error!("the shadow policy source stopped; shadow answers no longer follow {described}");
        })?;
        let (tx, rx) = mpsc::sync_channel(cfg.queue.max(1));
        let worker = Worker {
            rx,
            store: store.clone(),
            telemetry: telemetry.clone(),
            limit: RateLimit::new(cfg.log_per_second),
        };
        std::thread::Builder::new().name("rolegate-shadow".into()).spawn(move || worker.run())?;
        Ok(Shadow { tx, threshold: threshold(cfg.sample), seq: Arc::default(), telemetry, store })
    }

    /// True when this call should be compared (`--shadow-sample`).
    #[inline]
    pub fn sampled(&self) -> bool {
        match self.threshold {
            u64::MAX => true,
            0 => false,
            t => mix(self.seq.fetch_add(1, Ordering::Relaxed)) < t,
        }
    }

    /// Queues a call for comparison; a full queue drops it (counted), never waits.
    pub fn submit(&self, job: Job) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(job) {
            self.telemetry.metrics.shadow.dropped(Dropped::QueueFull);
        }
    }

    /// The candidate's snapshot store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

fn log_reload(report: &rolegate_source::ReloadReport) {
    for (tenant, revision) in &report.applied {
        tracing::info!(rolegate.tenant = %tenant, rolegate.revision = revision, "shadow tenant loaded");
    }
    for tenant in &report.failed {
        tracing::warn!(rolegate.tenant = %tenant, "shadow tenant failed to load; keeping its last good version");
    }
    for e in &report.errors {
        tracing::warn!("shadow policy: {e}");
    }
}

#[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a rate in [0, 1] scaled to u64")]
fn threshold(sample: f64) -> u64 {
    if sample >= 1.0 {
        u64::MAX
    } else if sample <= 0.0 {
        0
    } else {
        (sample * u64::MAX as f64) as u64
    }
}

/// splitmix64's finaliser: consecutive sequence numbers spread over the whole range, so every
/// `n`-th call is not what gets sampled.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// At most `per_second` events in any one-second window.
struct RateLimit {
    per_second: u32,
    window: Mutex<(Instant, u32)>,
}

impl RateLimit {
    fn new(per_second: u32) -> Self {
        RateLimit { per_second, window: Mutex::new((Instant::now(), 0)) }
    }

    fn allow(&self) -> bool {
        let Ok(mut w) = self.window.lock() else { return false };
        let now = Instant::now();
        if now.duration_since(w.0) >= Duration::from_secs(1) {
            *w = (now, 0);
        }
        if w.1 >= self.per_second {
            return false;
        }
        w.1 += 1;
        true
    }
}

struct Worker {
    rx: Receiver<Job>,
    store: Arc<Store>,
    telemetry: Arc<Telemetry>,
    limit: RateLimit,
}

impl Worker {
    fn run(self) {
        // Poll rather than block: a blocked receiver would make every sender pay a wake-up.
        loop {
            match self.rx.try_recv() {
                Ok(job) => self.compare(&job),
                Err(TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(1)),
                Err(TryRecvError::Disconnected) => return,
            }
        }
    }

    fn compare(&self, job: &Job) {
        let m = &self.telemetry.metrics.shadow;
        let Some(snapshot) = self.store.load() else {
            m.dropped(Dropped::NotLoaded);
            return;
        };
        let q = Query {
            tenant: &job.tenant,
            principal: &job.principal,
            action: &job.action,
            resource: &job.resource,
            context: &job.context,
        };
        let shadow = decide(&snapshot, &q, job.now);
        m.compared.fetch_add(1, Ordering::Relaxed);
        if shadow.as_ref().is_ok_and(|s| same_answer(&job.live, s)) {
            return;
        }
        m.mismatch(Some(job.live.reason), shadow.as_ref().ok().map(|s| s.reason));
        if !self.limit.allow() {
            m.unlogged.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let shadow_revision = snapshot.tenant(&job.tenant).map_or(0, |t| t.revision);
        let entry = ShadowEntry {
            query: &q,
            live: &job.live,
            live_revision: job.live_revision,
            shadow: shadow.as_ref().map_err(ToString::to_string),
            shadow_revision,
        };
        match &self.telemetry.decision_log {
            Some(log) => log.record_shadow(&entry),
            None => tracing::warn!(
                rolegate.tenant = %job.tenant,
                rolegate.principal = %job.principal,
                rolegate.action = %job.action,
                live = ?job.live.reason,
                shadow = ?shadow.as_ref().map(|s| s.reason),
                "shadow policy answers differently"
            ),
        }
    }
}

/// The answer a caller acts on: everything but the reuse bounds (`valid_until`, `cache_until`).
pub fn same_answer(a: &Decision, b: &Decision) -> bool {
    a.allowed == b.allowed
        && a.reason == b.reason
        && a.rule == b.rule
        && a.mask == b.mask
        && a.review == b.review
        && a.requestable == b.requestable
        && a.alert == b.alert
        && a.message == b.message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_takes_about_the_share_asked_for() {
        let t = threshold(0.25);
        let taken = (0..100_000u64).filter(|n| mix(*n) < t).count();
        assert!((23_000..27_000).contains(&taken), "{taken}");
        assert_eq!(threshold(1.0), u64::MAX);
        assert_eq!(threshold(0.0), 0);
    }

    #[test]
    fn the_rate_limit_admits_at_most_its_budget_per_second() {
        let limit = RateLimit::new(3);
        let admitted = (0..10).filter(|_| limit.allow()).count();
        assert_eq!(admitted, 3);
        assert!(!RateLimit::new(0).allow());
    }
}
