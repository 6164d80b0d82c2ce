//! Structured logging and tracing for every binary: JSON lines on stdout (level from
//! `RUST_LOG`), and OpenTelemetry spans exported over OTLP/HTTP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! Trace context crosses process boundaries as a W3C `traceparent`: read from HTTP requests,
//! stored with outbox rows, carried in Kafka headers, so one product's request, relay,
//! processing and projection form one trace. Spans exist (and `traceparent` values are
//! produced) even when nothing is exported. `LOG_FORMAT=pretty` switches to human-readable
//! lines for local debugging.

use std::collections::HashMap;

use opentelemetry::{global, propagation::TextMapPropagator, trace::TracerProvider as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Flushes and stops span export when dropped; keep it alive in `main`.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Installs the global subscriber and tracer provider. Call once, first thing in `main`.
pub fn init(service: &'static str) -> Telemetry {
    let mut builder = SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name(service).build());
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty());
    let mut export_error = None;
    if endpoint.is_some() {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            Err(error) => export_error = Some(error.to_string()),
        }
    }
    let telemetry = install(service, builder.build());
    tracing::info!(
        service,
        version = env!("CARGO_PKG_VERSION"),
        otlp = endpoint,
        "Telemetry initialised."
    );
    if let Some(error) = export_error {
        tracing::warn!(
            error,
            "OTLP export is off: the exporter could not be built."
        );
    }
    telemetry
}

/// Installs logging and `provider` as the global tracer (tests pass an in-memory exporter).
pub fn install(service: &'static str, provider: SdkTracerProvider) -> Telemetry {
    global::set_text_map_propagator(TraceContextPropagator::new());
    global::set_tracer_provider(provider.clone());
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer(service));
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tokio_postgres=warn,refinery_core=warn"));
    let pretty = std::env::var("LOG_FORMAT").is_ok_and(|v| v == "pretty");
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let installed = if pretty {
        registry.with(fmt::layer()).try_init()
    } else {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false),
            )
            .try_init()
    };
    if installed.is_err() {
        eprintln!("telemetry: a global subscriber was already installed");
    }
    Telemetry { provider }
}

/// The W3C `traceparent` of `span`, if it belongs to a trace.
pub fn traceparent_of(span: &Span) -> Option<String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove("traceparent")
}

/// The `traceparent` of the current span.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&Span::current())
}

/// The span of processing one Kafka record of `topic` about `product_id` (messaging
/// semantic conventions), a child of the producer's `traceparent`. `attempt` is left for
/// the caller to record.
pub fn consumer_span(
    topic: &str,
    offset: i64,
    traceparent: Option<&str>,
    product_id: &str,
) -> Span {
    let span = tracing::info_span!(
        "process",
        otel.name = format!("{topic} process"),
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.operation.type = "process",
        messaging.destination.name = topic,
        messaging.kafka.offset = offset,
        product_id,
        attempt = tracing::field::Empty,
    );
    set_parent(&span, traceparent);
    span
}

/// Makes `span` a child of the remote span named by `traceparent` (when there is one).
pub fn set_parent(span: &Span, traceparent: Option<&str>) {
    if let Some(traceparent) = traceparent {
        let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
        let context = TraceContextPropagator::new().extract(&carrier);
        let _ = span.set_parent(context);
    }
}
