//! What both services' Prometheus metrics share: the outcome and partition labels and the
//! text rendering. (Consumer lag is reported by [`crate::kafka::watchdog`].)

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
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

/// A latency histogram from 0.5 ms doubling up to about 16 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The registry in the Prometheus text exposition format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    encode(&mut out, registry).expect("writing to a String cannot fail");
    out
}
