//! What both services' Prometheus metrics share: the outcome and partition labels, the
//! consumer-lag reporter and the text rendering.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use tokio_util::sync::CancellationToken;

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

/// Records behind the high watermark, per partition assigned to this process's consumer.
pub type ConsumerLag = Family<PartitionLabels, Gauge>;

/// Every 10 s until `shutdown` (or until the consumer is gone), sets `lag` for each
/// partition assigned to `consumer`: the high watermark minus the consumer's position; and
/// `total` to their sum (for a watchdog).
/// librdkafka's calls block, so they run on a blocking thread. Only a weak reference is
/// kept: the reporter must not keep a consumer, and with it a group membership, alive
/// after its owner is gone.
pub fn report_consumer_lag<C>(
    consumer: &Arc<StreamConsumer<C>>,
    lag: ConsumerLag,
    total: Arc<AtomicI64>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static
where
    C: ConsumerContext + 'static,
{
    let consumer = Arc::downgrade(consumer);
    async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Some(consumer) = consumer.upgrade() else {
                return;
            };
            total.store(report_once(consumer, &lag).await, Ordering::Relaxed);
        }
    }
}

/// Sets `lag` for each partition assigned to `consumer`, once; returns their sum.
async fn report_once<C: ConsumerContext + 'static>(
    consumer: Arc<StreamConsumer<C>>,
    lag: &ConsumerLag,
) -> i64 {
    let lags = tokio::task::spawn_blocking(move || {
        let mut lags = Vec::new();
        let Ok(positions) = consumer.position() else {
            return lags;
        };
        for element in positions.elements() {
            let Ok((_, high)) = consumer.fetch_watermarks(
                element.topic(),
                element.partition(),
                Duration::from_secs(2),
            ) else {
                continue;
            };
            let position = element.offset().to_raw().filter(|p| *p >= 0).unwrap_or(0);
            let labels = PartitionLabels {
                topic: element.topic().to_owned(),
                partition: element.partition(),
            };
            lags.push((labels, (high - position).max(0)));
        }
        lags
    })
    .await
    .unwrap_or_default();
    let mut sum = 0;
    for (labels, behind) in lags {
        sum += behind;
        lag.get_or_create(&labels).set(behind);
    }
    sum
}

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
