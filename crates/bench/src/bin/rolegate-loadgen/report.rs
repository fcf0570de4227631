//! Results: one JSON line per run (machine-readable) and a one-line summary for people.

use serde_json::{Value, json};

use crate::load::{Plan, Stats};

/// Labels of a run, given on the command line.
pub struct Labels {
    /// The server: `rolegate`, `baseline`, `cerbos`.
    pub target: String,
    /// `check`, `batch10`, `batch100`.
    pub workload: String,
    /// `steady` or `reload`.
    pub phase: String,
    /// Repetition number.
    pub repeat: u32,
}

fn us(ns: u64) -> f64 {
    (ns as f64 / 10.0).round() / 100.0
}

/// The JSON line of a run.
pub fn line(labels: &Labels, plan: &Plan, stats: &Stats) -> Value {
    let secs = stats.window.as_secs_f64().max(1e-9);
    let h = &stats.latency;
    let errors: u64 = stats.errors.values().sum();
    json!({
        "kind": "run",
        "client": "rolegate-loadgen",
        "target": labels.target,
        "workload": labels.workload,
        "phase": labels.phase,
        "repeat": labels.repeat,
        "mode": if plan.rate.is_some() { "rate" } else { "max" },
        "rate": plan.rate,
        "connections": plan.connections,
        "concurrency": if plan.rate.is_some() { Value::Null } else { plan.concurrency.into() },
        "duration_s": secs,
        "warmup_s": plan.warmup.as_secs_f64(),
        "calls": stats.calls,
        "decisions": stats.calls * plan.items,
        "calls_per_s": (stats.calls as f64 / secs).round(),
        "decisions_per_s": ((stats.calls * plan.items) as f64 / secs).round(),
        "errors": errors,
        "error_kinds": stats.errors,
        "first_error": stats.first_error,
        "decisions_read": stats.read,
        "allowed_read": stats.allowed,
        "revision_min": stats.revisions.map(|r| r.0),
        "revision_max": stats.revisions.map(|r| r.1),
        "latency_us": {
            "p50": us(h.value_at_quantile(0.50)),
            "p90": us(h.value_at_quantile(0.90)),
            "p99": us(h.value_at_quantile(0.99)),
            "p999": us(h.value_at_quantile(0.999)),
            "max": us(h.max()),
            "mean": (h.mean() / 10.0).round() / 100.0,
        },
        "pacer_lag_p99_us": stats.pacer_lag.as_ref().map(|l| us(l.value_at_quantile(0.99))),
        // CPU over the window: the server's per decision (what one core of it serves is the
        // inverse) and busy share, and the load generator's busy share (near 1: it, not the
        // server, set the pace).
        "server_cpu_us_per_decision": stats.cpu.server.filter(|_| stats.calls > 0)
            .map(|c| (c.as_secs_f64() * 1e6 / (stats.calls * plan.items) as f64 * 1000.0).round() / 1000.0),
        "server_busy": stats.cpu.server.map(|c| (c.as_secs_f64() / secs * 1000.0).round() / 1000.0),
        "client_busy": stats.cpu.client.map(|c| (c.as_secs_f64() / secs * 1000.0).round() / 1000.0),
    })
}

/// A one-line summary of a JSON run line.
pub fn human(v: &Value) -> String {
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    let l = |k: &str| v["latency_us"][k].as_f64().unwrap_or(0.0);
    let mode = match v["rate"].as_f64() {
        Some(r) => format!("at {r:.0}/s"),
        None => format!("max ({}x{})", v["connections"], v["concurrency"]),
    };
    let allowed = match v["decisions_read"].as_f64() {
        Some(n) if n > 0.0 => format!(", {:.0}% allowed", 100.0 * f("allowed_read") / n),
        _ => String::new(),
    };
    let cpu = match (v["server_cpu_us_per_decision"].as_f64(), v["server_busy"].as_f64()) {
        (Some(per), Some(busy)) => format!(
            "; server {per} us CPU/decision, {:.0}% busy; load generator {:.0}% busy",
            busy * 100.0,
            f("client_busy") * 100.0
        ),
        _ => String::new(),
    };
    format!(
        "{} {} {} {mode}: {:.0} calls/s = {:.0} decisions/s; p50 {} p90 {} p99 {} p99.9 {} max {} us; {} errors{allowed}{cpu}",
        v["target"].as_str().unwrap_or("?"),
        v["workload"].as_str().unwrap_or("?"),
        v["phase"].as_str().unwrap_or("?"),
        f("calls_per_s"),
        f("decisions_per_s"),
        l("p50"),
        l("p90"),
        l("p99"),
        l("p999"),
        l("max"),
        v["errors"],
    )
}
