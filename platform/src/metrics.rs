//! What both services' Prometheus metrics share: the outcome and partition labels and the
//! text rendering. (Consumer lag is reported by [`crate::kafka::watchdog`].)

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// A label set holding one outcome (`hit`, `compressed`, `updated`…).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

/// A label set naming one partition of one topic (never anything finer).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: i32,
}

/// Records behind the high watermark, per partition of a consumer group's topic.
pub type ConsumerLag = Family<PartitionLabels, Gauge>;

/// Request latency buckets, in seconds: every SLO threshold (50 ms for reads, 250 ms for
/// writes) is a bucket boundary, so its burn rate is read exactly, not interpolated.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A request latency histogram over [`LATENCY_BUCKETS`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The content type of [`render`]'s output: OpenMetrics, which carries exemplars (the trace
/// of one observation in a bucket); Prometheus asks for it and stores them with
/// `--enable-feature=exemplar-storage`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry in the Prometheus text exposition format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    encode(&mut out, registry).expect("writing to a String cannot fail");
    out
}
