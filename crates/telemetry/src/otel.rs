//! OpenTelemetry trace export over OTLP/gRPC, configured by the standard `OTEL_*` variables and
//! off unless an endpoint is set. Spans go through a bounded queue to one export task: a full
//! queue drops the span and counts it, so exporting never blocks a call.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor};
use tokio::sync::{mpsc, oneshot};
use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;

use super::Metrics;

/// Spans waiting for export before new ones are dropped.
const QUEUE: usize = 4096;
/// Spans per export call.
const BATCH: usize = 512;

enum Msg {
    Span(Box<SpanData>),
    Flush(oneshot::Sender<()>),
}

/// Keeps the exporter alive; [`Guard::shutdown`] flushes what is queued.
#[derive(Debug, Default)]
pub struct Guard {
    inner: Option<(SdkTracerProvider, mpsc::Sender<Msg>)>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl Guard {
    /// True when spans are exported.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Exports every queued span (waiting at most two seconds).
    pub async fn shutdown(self) {
        if let Some((provider, tx)) = self.inner {
            let (ack, done) = oneshot::channel();
            if tx.send(Msg::Flush(ack)).await.is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(2), done).await;
            }
            let _ = provider.shutdown();
        }
    }
}

#[derive(Debug)]
struct BoundedProcessor {
    tx: mpsc::Sender<Msg>,
    metrics: Arc<Metrics>,
}

impl SpanProcessor for BoundedProcessor {
    fn on_start(&self, _: &mut Span, _: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if self.tx.try_send(Msg::Span(Box::new(span))).is_err() {
            self.metrics.spans_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
        Ok(())
    }
}

fn endpoint_configured() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The tracing layer that exports RPC spans, when an endpoint is configured.
pub fn layer<S>(
    metrics: Arc<Metrics>,
) -> (Option<tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>>, Guard)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if !endpoint_configured() {
        return (None, Guard::default());
    }
    let mut exporter = match opentelemetry_otlp::SpanExporter::builder().with_tonic().build() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("warning: OpenTelemetry export is off: {e}");
            return (None, Guard::default());
        }
    };
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name("rolegate");
    }
    let resource = resource.build();
    exporter.set_resource(&resource);
    let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
    let export_metrics = metrics.clone();
    tokio::spawn(async move {
        let mut batch: Vec<SpanData> = Vec::with_capacity(BATCH);
        while let Some(first) = rx.recv().await {
            let mut flush = None;
            match first {
                Msg::Span(s) => batch.push(*s),
                Msg::Flush(ack) => flush = Some(ack),
            }
            let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
            while flush.is_none() && batch.len() < BATCH {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(Msg::Span(s))) => batch.push(*s),
                    Ok(Some(Msg::Flush(ack))) => flush = Some(ack),
                    _ => break,
                }
            }
            if !batch.is_empty() {
                let n = batch.len() as u64;
                if exporter.export(std::mem::take(&mut batch)).await.is_err() {
                    export_metrics.spans_dropped.fetch_add(n, Ordering::Relaxed);
                }
            }
            if let Some(ack) = flush {
                let _ = ack.send(());
            }
        }
    });
    let _ = HEAD.set(HeadSampler::from_env());
    // Sampling happens before a span exists (see `sample`); spans that reach the SDK are kept.
    let provider = SdkTracerProvider::builder()
        .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
        .with_resource(resource)
        .with_span_processor(BoundedProcessor { tx: tx.clone(), metrics })
        .build();
    let tracer = provider.tracer("rolegate");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    (Some(layer), Guard { inner: Some((provider, tx)) })
}

struct Metadata<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// The caller's W3C trace context (`traceparent`, `tracestate`) from gRPC metadata.
pub fn parent(metadata: &tonic::metadata::MetadataMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&Metadata(metadata))
}

/// Head sampling by the standard `OTEL_TRACES_SAMPLER`/`_ARG`, decided before a call's span is
/// created, so an unsampled call costs no span at all. (The SDK samples when a span ends, after
/// the tracing layer has already built it.)
#[derive(Clone, Copy, Debug)]
struct HeadSampler {
    /// Follow a caller's sampled flag when there is a parent.
    parent_based: bool,
    /// Share of root calls sampled.
    ratio: f64,
}

static HEAD: std::sync::OnceLock<HeadSampler> = std::sync::OnceLock::new();

impl HeadSampler {
    fn from_env() -> Self {
        let arg = std::env::var("OTEL_TRACES_SAMPLER_ARG").ok().and_then(|a| a.trim().parse::<f64>().ok());
        let ratio = arg.filter(|r| (0.0..=1.0).contains(r)).unwrap_or(1.0);
        match std::env::var("OTEL_TRACES_SAMPLER").unwrap_or_default().trim() {
            "always_on" => HeadSampler { parent_based: false, ratio: 1.0 },
            "always_off" => HeadSampler { parent_based: false, ratio: 0.0 },
            "traceidratio" => HeadSampler { parent_based: false, ratio },
            "parentbased_always_off" => HeadSampler { parent_based: true, ratio: 0.0 },
            "parentbased_traceidratio" => HeadSampler { parent_based: true, ratio },
            _ => HeadSampler { parent_based: true, ratio: 1.0 },
        }
    }
}

/// The parent context to trace this call under, or `None` when it is not traced (export off,
/// or not sampled).
pub fn sample(metadata: &tonic::metadata::MetadataMap) -> Option<opentelemetry::Context> {
    use opentelemetry::trace::TraceContextExt as _;
    let head = HEAD.get()?;
    let parent = parent(metadata);
    let span = parent.span();
    let remote = span.span_context();
    if head.parent_based && remote.is_valid() {
        return remote.is_sampled().then_some(parent);
    }
    (head.ratio >= 1.0 || (head.ratio > 0.0 && super::random_unit() < head.ratio)).then_some(parent)
}

/// The trace id of a `traceparent` header, for the decision log (works with tracing off).
pub fn trace_id(metadata: &tonic::metadata::MetadataMap) -> Option<String> {
    // A prebuilt name: looking a header up by `&str` parses and lower-cases the name per call.
    const TRACEPARENT: tonic::codegen::http::HeaderName = tonic::codegen::http::HeaderName::from_static("traceparent");
    let tp = metadata.as_ref().get(&TRACEPARENT)?.to_str().ok()?;
    let id = tp.split('-').nth(1)?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id.bytes().any(|b| b != b'0'))
        .then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_traceparent(tp: &str) -> tonic::metadata::MetadataMap {
        let mut m = tonic::metadata::MetadataMap::new();
        m.insert("traceparent", tp.parse().unwrap());
        m
    }

    #[test]
    fn a_trace_id_comes_only_from_a_well_formed_traceparent() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(trace_id(&with_traceparent(&format!("00-{id}-00f067aa0ba902b7-01"))).as_deref(), Some(id));
        // The W3C invalid all-zero id, a short id, a non-hex id, no header.
        assert_eq!(trace_id(&with_traceparent(&format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)))), None);
        assert_eq!(trace_id(&with_traceparent("00-4bf92f35-00f067aa0ba902b7-01")), None);
        assert_eq!(trace_id(&with_traceparent(&format!("00-{}-00f067aa0ba902b7-01", "g".repeat(32)))), None);
        assert_eq!(trace_id(&tonic::metadata::MetadataMap::new()), None);
    }
}
