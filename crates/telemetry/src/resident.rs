//! Metrics of tenants on demand: how many tenants are resident, their estimated bytes against
//! the bound, loads by outcome and their latency, evictions. Rendered only with
//! `--tenants on-demand`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use rolegate_source::ondemand::{LOAD_BUCKETS, OnDemand};

/// Appends the on-demand metrics to `o`.
pub(crate) fn render(o: &mut String, on_demand: &OnDemand) -> std::fmt::Result {
    let m = &on_demand.metrics;
    writeln!(o, "# HELP rolegate_tenants_resident Tenants held by a sidecar serving tenants on demand.")?;
    writeln!(o, "# TYPE rolegate_tenants_resident gauge\nrolegate_tenants_resident {}", on_demand.resident())?;
    writeln!(o, "# HELP rolegate_tenants_resident_bytes Estimated bytes of the resident tenants.")?;
    writeln!(
        o,
        "# TYPE rolegate_tenants_resident_bytes gauge\nrolegate_tenants_resident_bytes {}",
        on_demand.resident_bytes()
    )?;
    writeln!(o, "# HELP rolegate_tenant_memory_bytes The bound on the resident tenants' estimated bytes.")?;
    writeln!(o, "# TYPE rolegate_tenant_memory_bytes gauge\nrolegate_tenant_memory_bytes {}", on_demand.bound())?;
    writeln!(o, "# HELP rolegate_tenant_loads_total Tenant loads on a call's demand, by outcome.")?;
    writeln!(o, "# TYPE rolegate_tenant_loads_total counter")?;
    for (outcome, n) in [("loaded", &m.loaded), ("unknown", &m.unknown), ("failed", &m.failed)] {
        writeln!(o, "rolegate_tenant_loads_total{{outcome=\"{outcome}\"}} {}", n.load(Relaxed))?;
    }
    writeln!(o, "# HELP rolegate_tenant_evictions_total Tenants evicted to stay within the memory bound.")?;
    writeln!(
        o,
        "# TYPE rolegate_tenant_evictions_total counter\nrolegate_tenant_evictions_total {}",
        m.evictions.load(Relaxed)
    )?;
    writeln!(o, "# HELP rolegate_tenant_load_duration_seconds Time from a call's demand to the tenant's load.")?;
    writeln!(o, "# TYPE rolegate_tenant_load_duration_seconds histogram")?;
    let mut cumulative = 0;
    for (bound, n) in LOAD_BUCKETS.iter().zip(&m.buckets) {
        cumulative += n.load(Relaxed);
        writeln!(o, "rolegate_tenant_load_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}")?;
    }
    let count = m.count.load(Relaxed);
    writeln!(o, "rolegate_tenant_load_duration_seconds_bucket{{le=\"+Inf\"}} {count}")?;
    writeln!(o, "rolegate_tenant_load_duration_seconds_sum {}", m.sum_nanos.load(Relaxed) as f64 / 1e9)?;
    writeln!(o, "rolegate_tenant_load_duration_seconds_count {count}")
}
