//! Telemetry for SREs: OpenTelemetry traces (`otel`), Prometheus metrics (`metrics`) and the
//! decision log (`decision_log`). All of it is bounded and non-blocking: telemetry drops and
//! counts rather than slow a `Check`.

pub mod access;
pub mod decision_log;
pub mod metrics;
pub mod otel;
mod resident;
pub mod shadow;

use std::sync::Arc;

pub use decision_log::{DecisionLog, LogTarget};
pub use metrics::Metrics;

/// Span target of RPC spans: only the OpenTelemetry layer listens to it, so with tracing off the
/// spans are disabled at their call site and cost nothing.
pub const RPC_TARGET: &str = "rolegate::rpc";

/// What the server records about each call.
#[derive(Debug, Default)]
pub struct Telemetry {
    /// Counters and histograms for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Where decisions are logged, if anywhere.
    pub decision_log: Option<DecisionLog>,
}

/// Sets up logging to stderr (level from `ROLEGATE_LOG`) and, when the standard `OTEL_*`
/// variables name an endpoint, trace export. Call inside the tokio runtime. The returned guard
/// flushes spans when dropped.
pub fn init(metrics: Arc<Metrics>) -> otel::Guard {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let level = std::env::var("ROLEGATE_LOG").ok().and_then(|l| l.parse().ok()).unwrap_or(tracing::Level::INFO);
    // `Targets` filters give tracing a level hint per call site, so the debug events of h2,
    // hyper and tonic, and the RPC spans when nothing exports them, are disabled once at their
    // call site instead of being evaluated on every call.
    let logs = Targets::new().with_default(level).with_target(RPC_TARGET, LevelFilter::OFF);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(false).with_filter(logs);
    let (otel_layer, guard) = otel::layer(metrics);
    let rpc_only = Targets::new().with_target(RPC_TARGET, tracing::Level::INFO);
    let _ = tracing_subscriber::registry().with(fmt).with(otel_layer.map(|l| l.with_filter(rpc_only))).try_init();
    guard
}

/// A uniform number in [0, 1) from a per-thread xorshift64: cheap, and good enough to sample
/// traces and log lines (not for anything that needs unpredictability).
pub(crate) fn random_unit() -> f64 {
    thread_local! {
        static STATE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    STATE.with(|s| {
        let mut x = s.get();
        if x == 0 {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos());
            x = nanos as u64 | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}
