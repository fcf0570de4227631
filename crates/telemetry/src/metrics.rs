//! Prometheus metrics, rendered in text format on the admin port. Label sets are small and
//! bounded: method, result, reason, code, source — never a tenant or member id.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rolegate_engine::Reason;
use rolegate_source::store::Store;
use rolegate_source::{ReloadReport, SourceHealth};

/// The methods a caller can call: gRPC RPCs and AuthZEN endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `Check`.
    Check = 0,
    /// `CheckBatch`.
    CheckBatch = 1,
    /// `Plan`.
    Plan = 2,
    /// AuthZEN Access Evaluation.
    AuthzenEvaluation = 3,
    /// AuthZEN Access Evaluations.
    AuthzenEvaluations = 4,
    /// AuthZEN Subject Search.
    AuthzenSubjectSearch = 5,
    /// AuthZEN Action Search.
    AuthzenActionSearch = 6,
    /// `Inspector.Explain`.
    Explain = 7,
    /// `Inspector.Permissions`.
    Permissions = 8,
    /// `Inspector.Who`.
    Who = 9,
}

impl Method {
    /// The gRPC method a request path calls, if it is one of rolegate's.
    pub fn from_path(path: &str) -> Option<Method> {
        if let Some(name) = path.strip_prefix("/rolegate.v1.Inspector/") {
            return match name {
                "Explain" => Some(Method::Explain),
                "Permissions" => Some(Method::Permissions),
                "Who" => Some(Method::Who),
                _ => None,
            };
        }
        match path.strip_prefix("/rolegate.v1.Authorizer/")? {
            "Check" => Some(Method::Check),
            "CheckBatch" => Some(Method::CheckBatch),
            "Plan" => Some(Method::Plan),
            _ => None,
        }
    }
}

/// Label of each method, indexed by `Method as usize`; every per-method array is this long.
const METHODS: [&str; 10] = [
    "Check",
    "CheckBatch",
    "Plan",
    "AuthzenEvaluation",
    "AuthzenEvaluations",
    "AuthzenSubjectSearch",
    "AuthzenActionSearch",
    "Explain",
    "Permissions",
    "Who",
];
/// Error codes counted separately; anything else is `other`. `internal` is an undecodable
/// message, `out_of_range` one over the size limit.
const CODES: [&str; 6] = ["invalid_argument", "unavailable", "resource_exhausted", "internal", "out_of_range", "other"];
/// Latency bucket bounds, in seconds.
const BUCKETS: [f64; 14] = [1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0];
/// The same bounds in nanoseconds, which a call's latency is compared with.
const BUCKET_NANOS: [u64; 14] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    50_000_000,
    100_000_000,
    500_000_000,
    1_000_000_000,
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        if let Some(i) = BUCKET_NANOS.iter().position(|b| nanos <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }
}

/// Every counter rolegate exposes.
#[derive(Debug, Default)]
pub struct Metrics {
    decisions: [[AtomicU64; Reason::ALL.len()]; METHODS.len()],
    errors: [[AtomicU64; CODES.len()]; METHODS.len()],
    latency: [Histogram; METHODS.len()],
    /// Decision cache hits.
    pub cache_hits: AtomicU64,
    /// Decision cache misses.
    pub cache_misses: AtomicU64,
    /// Decision cache evictions (capacity or expiry).
    pub cache_evictions: AtomicU64,
    /// Calls rejected by load shedding.
    pub shed: AtomicU64,
    /// Spans dropped because the export queue was full.
    pub spans_dropped: AtomicU64,
    /// Decision-log lines dropped because the log queue was full.
    pub log_lines_dropped: AtomicU64,
    /// Decision-log writes that failed (lines lost).
    pub log_write_errors: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    tenants_failed: AtomicU64,
    /// Tenants served now with rejected input (the last reload's `stale` set).
    tenants_stale: AtomicU64,
    /// Set when the policy source reports its own health (a database); unset, policies come
    /// from the directory and are as current as the store's last publish.
    source: OnceLock<Arc<dyn SourceHealth>>,
    /// TLS handshakes, credential reloads and callers-file denials.
    pub access: crate::access::AccessMetrics,
    /// Shadow evaluation against a candidate policy.
    pub shadow: crate::shadow::ShadowMetrics,
}

impl Metrics {
    /// Counts one decision.
    pub fn decision(&self, method: Method, reason: Reason) {
        let i = Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.decisions[method as usize][i].fetch_add(1, Relaxed);
    }

    /// Counts a failed call by its gRPC code.
    pub fn error(&self, method: Method, code: tonic::Code) {
        let i = match code {
            tonic::Code::InvalidArgument => 0,
            tonic::Code::Unavailable => 1,
            tonic::Code::ResourceExhausted => 2,
            tonic::Code::Internal => 3,
            tonic::Code::OutOfRange => 4,
            _ => 5,
        };
        self.errors[method as usize][i].fetch_add(1, Relaxed);
    }

    /// Records a call's latency.
    pub fn latency(&self, method: Method, d: Duration) {
        self.latency[method as usize].observe(d);
    }

    /// Reports the policy source's own label, freshness and metrics instead of the directory's.
    pub fn follow_source(&self, health: Arc<dyn SourceHealth>) {
        let _ = self.source.set(health);
    }

    /// The `source` label: where the served policies come from.
    fn source(&self) -> &'static str {
        self.source.get().map_or("dir", |h| h.label())
    }

    /// Records one reload and logs its findings with file, line and key.
    pub fn record_reload(&self, report: &ReloadReport) {
        let source = self.source();
        for d in &report.errors {
            tracing::error!(rolegate.source = source, "{d}");
        }
        if let Some(e) = &report.unreadable {
            tracing::error!(rolegate.source = source, "{e}");
        }
        for (tenant, revision) in &report.applied {
            tracing::info!(rolegate.tenant = %tenant, rolegate.revision = revision, "tenant loaded");
        }
        for tenant in &report.failed {
            tracing::warn!(rolegate.tenant = %tenant, "tenant failed to load; keeping its last good snapshot");
        }
        for tenant in &report.removed {
            tracing::info!(rolegate.tenant = %tenant, "tenant removed");
        }
        let failed = report.unreadable.is_some() || !report.failed.is_empty() || !report.errors.is_empty();
        let counter = if failed { &self.reloads_failed } else { &self.reloads_ok };
        counter.fetch_add(1, Relaxed);
        self.tenants_failed.fetch_add(report.failed.len() as u64, Relaxed);
        for stale in &report.stale {
            tracing::warn!(rolegate.source = source, rolegate.tenant = %stale.tenant, "tenant is stale: {}", stale.why);
        }
        self.tenants_stale.store(report.stale.len() as u64, Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, store: &Store) -> String {
        let mut o = String::with_capacity(8192);
        let _ = self.render_into(&mut o, store);
        o
    }

    fn render_into(&self, o: &mut String, store: &Store) -> std::fmt::Result {
        self.render_decisions(o)?;
        self.render_errors(o)?;
        self.render_latency(o)?;
        self.render_counters(o)?;
        self.render_reloads(o)?;
        self.render_snapshot(o, store)?;
        self.render_source(o)?;
        if let Some(on_demand) = store.resident_set() {
            crate::resident::render(o, on_demand)?;
        }
        self.access.render(o)?;
        self.shadow.render(o)?;
        writeln!(o, "# HELP rolegate_ready 1 while at least one tenant is served by a running policy source.")?;
        writeln!(o, "# TYPE rolegate_ready gauge\nrolegate_ready {}", u8::from(store.is_ready()))
    }

    fn render_decisions(&self, o: &mut String) -> std::fmt::Result {
        writeln!(o, "# HELP rolegate_decisions_total Decisions made, by method, result and reason.")?;
        writeln!(o, "# TYPE rolegate_decisions_total counter")?;
        for (m, method) in METHODS.iter().enumerate() {
            for (i, reason) in Reason::ALL.iter().enumerate() {
                let result = if *reason == Reason::Granted { "allow" } else { "deny" };
                let v = self.decisions[m][i].load(Relaxed);
                writeln!(
                    o,
                    "rolegate_decisions_total{{method=\"{method}\",result=\"{result}\",reason=\"{reason}\"}} {v}"
                )?;
            }
        }
        Ok(())
    }

    fn render_errors(&self, o: &mut String) -> std::fmt::Result {
        writeln!(o, "# HELP rolegate_rpc_errors_total Calls that failed, by method and gRPC code.")?;
        writeln!(o, "# TYPE rolegate_rpc_errors_total counter")?;
        for (m, method) in METHODS.iter().enumerate() {
            for (i, code) in CODES.iter().enumerate() {
                writeln!(
                    o,
                    "rolegate_rpc_errors_total{{method=\"{method}\",code=\"{code}\"}} {}",
                    self.errors[m][i].load(Relaxed)
                )?;
            }
        }
        Ok(())
    }

    fn render_latency(&self, o: &mut String) -> std::fmt::Result {
        writeln!(o, "# HELP rolegate_rpc_duration_seconds Server-side latency of a call.")?;
        writeln!(o, "# TYPE rolegate_rpc_duration_seconds histogram")?;
        for (m, method) in METHODS.iter().enumerate() {
            let h = &self.latency[m];
            let mut cumulative = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cumulative += h.buckets[i].load(Relaxed);
                writeln!(o, "rolegate_rpc_duration_seconds_bucket{{method=\"{method}\",le=\"{b}\"}} {cumulative}")?;
            }
            let count = h.count.load(Relaxed);
            writeln!(o, "rolegate_rpc_duration_seconds_bucket{{method=\"{method}\",le=\"+Inf\"}} {count}")?;
            writeln!(
                o,
                "rolegate_rpc_duration_seconds_sum{{method=\"{method}\"}} {}",
                h.sum_nanos.load(Relaxed) as f64 / 1e9
            )?;
            writeln!(o, "rolegate_rpc_duration_seconds_count{{method=\"{method}\"}} {count}")?;
        }
        Ok(())
    }

    /// The unlabelled counters.
    fn render_counters(&self, o: &mut String) -> std::fmt::Result {
        let counters: [(&str, &str, &AtomicU64); 7] = [
            ("rolegate_cache_hits_total", "Decision cache hits.", &self.cache_hits),
            ("rolegate_cache_misses_total", "Decision cache misses.", &self.cache_misses),
            ("rolegate_cache_evictions_total", "Decision cache evictions.", &self.cache_evictions),
            ("rolegate_shed_total", "Calls rejected by load shedding (RESOURCE_EXHAUSTED).", &self.shed),
            ("rolegate_spans_dropped_total", "Spans dropped because the export queue was full.", &self.spans_dropped),
            (
                "rolegate_decision_log_dropped_total",
                "Decision-log lines dropped because the queue was full.",
                &self.log_lines_dropped,
            ),
            (
                "rolegate_decision_log_write_errors_total",
                "Decision-log writes that failed; their lines are lost.",
                &self.log_write_errors,
            ),
        ];
        for (name, help, v) in counters {
            writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", v.load(Relaxed))?;
        }
        Ok(())
    }

    /// Reload outcomes and the tenants they left failed or stale.
    fn render_reloads(&self, o: &mut String) -> std::fmt::Result {
        let source = self.source();
        writeln!(o, "# HELP rolegate_reloads_total Policy reloads, by source and result.")?;
        writeln!(o, "# TYPE rolegate_reloads_total counter")?;
        writeln!(o, "rolegate_reloads_total{{source=\"{source}\",result=\"ok\"}} {}", self.reloads_ok.load(Relaxed))?;
        writeln!(
            o,
            "rolegate_reloads_total{{source=\"{source}\",result=\"failed\"}} {}",
            self.reloads_failed.load(Relaxed)
        )?;
        writeln!(
            o,
            "# HELP rolegate_tenant_load_failures_total Tenant documents rejected (the last good snapshot kept serving)."
        )?;
        writeln!(o, "# TYPE rolegate_tenant_load_failures_total counter")?;
        writeln!(
            o,
            "rolegate_tenant_load_failures_total{{source=\"{source}\"}} {}",
            self.tenants_failed.load(Relaxed)
        )?;
        writeln!(
            o,
            "# HELP rolegate_stale_tenants Tenants served with rejected input (a document kept at its last good \
             version, a row left out) until it is fixed."
        )?;
        writeln!(
            o,
            "# TYPE rolegate_stale_tenants gauge\nrolegate_stale_tenants{{source=\"{source}\"}} {}",
            self.tenants_stale.load(Relaxed)
        )
    }

    /// The served snapshot: its highest revision, age and size.
    fn render_snapshot(&self, o: &mut String, store: &Store) -> std::fmt::Result {
        let source = self.source();
        let snapshot = store.load();
        let revision = snapshot.as_ref().and_then(|s| s.tenants().map(|t| t.revision).max()).unwrap_or(0);
        // A source that reports its own health (a database) is current while it hears from its
        // store, published or not.
        let age = match self.source.get() {
            Some(health) => health.age(),
            None => store.age(),
        };
        let age = age.map_or(-1.0, |a| a.as_secs_f64());
        writeln!(o, "# HELP rolegate_snapshot_revision Highest tenant revision in the served snapshot.")?;
        writeln!(
            o,
            "# TYPE rolegate_snapshot_revision gauge\nrolegate_snapshot_revision{{source=\"{source}\"}} {revision}"
        )?;
        writeln!(
            o,
            "# HELP rolegate_snapshot_age_seconds Seconds since the snapshot was last published or, from a database, \
             last known current (-1: never)."
        )?;
        writeln!(
            o,
            "# TYPE rolegate_snapshot_age_seconds gauge\nrolegate_snapshot_age_seconds{{source=\"{source}\"}} {age}"
        )?;
        writeln!(o, "# HELP rolegate_tenants Tenants in the served snapshot.")?;
        writeln!(o, "# TYPE rolegate_tenants gauge\nrolegate_tenants {}", snapshot.map_or(0, |s| s.len()))
    }

    /// The followed source's own metrics, if it reports any.
    fn render_source(&self, o: &mut String) -> std::fmt::Result {
        let Some(health) = self.source.get() else { return Ok(()) };
        let source = health.label();
        for m in health.metrics() {
            let (name, kind) = (m.name, m.kind.as_str());
            writeln!(o, "# HELP {name} {}\n# TYPE {name} {kind}\n{name}{{source=\"{source}\"}} {}", m.help, m.value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_in_nanoseconds_are_the_rendered_ones() {
        for (secs, nanos) in BUCKETS.iter().zip(BUCKET_NANOS) {
            assert_eq!((secs * 1e9).round() as u64, nanos, "bound {secs}");
        }
        // A latency on a bound lands in that bucket; a nanosecond more, in the next.
        let h = Histogram::default();
        h.observe(Duration::from_micros(25));
        h.observe(Duration::from_nanos(25_001));
        assert_eq!(h.buckets[1].load(Relaxed), 1);
        assert_eq!(h.buckets[2].load(Relaxed), 1);
        assert_eq!(h.sum_nanos.load(Relaxed), 50_001);
    }
}
