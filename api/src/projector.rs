//! Applies `ImagesCompressed` events to products.
//!
//! Effects happen exactly once although delivery is at-least-once: the event id is recorded
//! in `applied_events` in the same transaction as the update, so a redelivered event changes
//! nothing. An event for an older image revision than the product's is ignored: its images
//! were replaced meanwhile. The offset is stored only after the transaction committed; a
//! database outage is retried with backoff, holding the partition, rather than skipping
//! events. An event that cannot be read is logged and skipped: there is nothing to apply.
//! After commit the product's cache entry is invalidated.
//!
//! The group is watched ([`platform::kafka::watchdog`]): when `images-compressed` has records
//! waiting and the group's committed offsets do not move for the stall limit (say, a killed
//! api's member still holds every partition), the consumer leaves the group and a new one
//! joins, and readiness fails until the group moves again.

use std::{sync::Arc, time::Duration};

use deadpool_postgres::Pool;
use events::{Envelope, EventType, ImagesCompressed};
use platform::backoff::Backoff;
use platform::kafka::{
    Membership,
    watchdog::{self, ConsumerHealth, MemberProgress, SharedWatch, WatchSpec},
};
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use rdkafka::{
    Message,
    consumer::{Consumer, StreamConsumer},
    message::{BorrowedMessage, Headers},
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use crate::products::{Applied, Reached};
use crate::{
    cache::ProductCache,
    metrics::{OutcomeLabels, TraceLabels},
    products::results,
};

/// The projector of one api process.
#[derive(Clone)]
pub struct Projector {
    pub pool: Pool,
    /// Where the topics are created (in the background: the api starts without Kafka).
    pub kafka: platform::kafka::KafkaSettings,
    /// The projector's consumer group.
    pub group: String,
    /// Records waiting and the group's offsets still for this long: the consumer is
    /// recreated.
    pub stall_after: Duration,
    /// Where readiness learns that the group is stuck.
    pub health: ConsumerHealth,
    /// The topics the api needs, created before consuming.
    pub create_topics: Vec<String>,
    /// The topic consumed: `images-compressed`.
    pub topic: String,
    /// Invalidated after each applied event.
    pub cache: ProductCache,
    /// Events by outcome.
    pub metrics: std::sync::Arc<crate::metrics::ApiMetrics>,
}

/// How a consumer's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Shutdown,
    /// Its group made no progress with records waiting: the consumer is to be recreated.
    Stuck,
}

impl Projector {
    /// Creates the topics once the broker answers, then consumes until `shutdown`; the
    /// message in hand is finished first. A consumer whose group is stuck is replaced.
    pub async fn run(self, shutdown: CancellationToken) {
        if !self
            .kafka
            .ensure_topics_until_done(&self.create_topics, &shutdown)
            .await
        {
            return;
        }
        // Static when the replica has a stable identity (see `Membership::Static`).
        let progress = watchdog::shared_watch(self.stall_after);
        loop {
            let consumer = match self.kafka.consumer_with(
                &self.group,
                Membership::Static,
                rdkafka::consumer::DefaultConsumerContext,
            ) {
                Ok(consumer) => Arc::new(consumer),
                // Only a bad setting fails here: a bug, reported by the supervisor.
                Err(error) => panic!("Failed to create the projector's consumer: {error:#}"),
            };
            if let Err(error) = consumer.subscribe(&[&self.topic]) {
                panic!(
                    "Failed to subscribe the projector to {}: {error}",
                    self.topic
                );
            }
            let ended = self.consume(&consumer, &progress, &shutdown).await;
            // Closing leaves the group, which can block while the broker does not answer:
            // never on the runtime's threads.
            tokio::task::spawn_blocking(move || drop(consumer));
            if ended == Ended::Shutdown {
                tracing::info!("Projector stopped.");
                return;
            }
        }
    }

    /// What the projector's watchdog watches and reports to.
    fn watch_spec(&self) -> WatchSpec {
        WatchSpec {
            consumer: "projector".to_owned(),
            topic: self.topic.clone(),
            limit: self.stall_after,
            interval: Duration::from_secs(5)
                .min(self.stall_after / 3)
                .max(Duration::from_millis(200)),
            lag: self.metrics.projector_lag.clone(),
            stalls: self.metrics.projector_stalls.clone(),
            health: self.health.clone(),
        }
    }

    /// Consumes with `consumer` until shutdown, or until its group is found stuck.
    async fn consume(
        &self,
        consumer: &Arc<StreamConsumer>,
        progress: &SharedWatch,
        shutdown: &CancellationToken,
    ) -> Ended {
        let member = MemberProgress::default();
        let stuck = CancellationToken::new();
        let watchdog = tokio::spawn(watchdog::watch(
            consumer,
            self.watch_spec(),
            progress.clone(),
            member.clone(),
            stuck.clone(),
            shutdown.clone(),
        ));
        let mut receive_errors = platform::kafka::ReceiveErrors::new("projector");
        let ended = loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => break Ended::Shutdown,
                () = stuck.cancelled() => break Ended::Stuck,
                message = consumer.recv() => message,
            };
            match message {
                Ok(message) => {
                    member.mark();
                    if self.handle(&message, shutdown).await {
                        member.mark();
                        if let Err(error) = consumer.store_offset_from_message(&message) {
                            tracing::warn!(%error, "Failed to store the projector's offset.");
                        }
                    }
                }
                Err(error) => {
                    receive_errors.record(&error);
                }
            }
        };
        watchdog.abort();
        if ended == Ended::Shutdown {
            if let Err(error) = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
            {
                tracing::debug!(%error, "No projector offsets to commit at shutdown.");
            }
        }
        ended
    }

    /// Applies one message; false when shutdown interrupted it (the offset is not stored).
    async fn handle(&self, message: &BorrowedMessage<'_>, shutdown: &CancellationToken) -> bool {
        let decoded = decode(message);
        let (envelope, event) = match decoded {
            Ok(decoded) => decoded,
            Err(reason) => {
                self.metrics
                    .projector_events
                    .get_or_create(&OutcomeLabels {
                        outcome: "unreadable",
                    })
                    .inc();
                tracing::error!(
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    reason,
                    "Projector skipped an unreadable event."
                );
                return true;
            }
        };
        let span = platform::telemetry::consumer_span(
            message.topic(),
            message.offset(),
            envelope.traceparent.as_deref(),
            &event.product_id,
        );
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        loop {
            let applied = tracing::Instrument::instrument(
                apply(&self.pool, envelope.id, &event),
                span.clone(),
            );
            match applied.await {
                Ok(applied) => {
                    let product_id = event.product_id.parse::<i64>().unwrap_or_default();
                    if let Applied::Updated { version, reached } = applied {
                        self.cache.invalidate(product_id, version).await;
                        if reached.shown {
                            self.record_freshness(&self.metrics.pipeline_freshness, &envelope);
                        }
                        if reached.complete {
                            self.record_freshness(
                                &self.metrics.pipeline_ladder_freshness,
                                &envelope,
                            );
                        }
                    }
                    let outcome = match applied {
                        Applied::Updated { .. } => "updated",
                        Applied::Duplicate => "duplicate",
                        Applied::StaleRevision { .. } => "stale_revision",
                        Applied::NoSuchProduct => "no_such_product",
                        Applied::KeptBetter => "kept_better",
                        Applied::Unreadable => "unreadable_state",
                    };
                    self.metrics
                        .projector_events
                        .get_or_create(&OutcomeLabels { outcome })
                        .inc();
                    tracing::info!(
                        product_id,
                        event_id = %envelope.id,
                        image_revision = event.image_revision,
                        images = event.images.len(),
                        outcome = ?applied,
                        "Projector applied an event."
                    );
                    return true;
                }
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        retry_in_ms = backoff.upcoming().as_millis() as u64,
                        "Projector failed to apply; retrying."
                    );
                    if !backoff.pause(shutdown).await {
                        return false;
                    }
                }
            }
        }
    }
}

impl Projector {
    /// How long the change took to reach a moment (its images shown, or their ladders
    /// complete): from its commit (`ce_causetime`, set by processors of this version) to now,
    /// its result applied. The trace id rides along as the bucket's exemplar, so a slow
    /// bucket leads to its trace.
    fn record_freshness(
        &self,
        histogram: &HistogramWithExemplars<TraceLabels>,
        envelope: &Envelope,
    ) {
        let Some(caused) = envelope.causetime else {
            return;
        };
        let seconds = (chrono::Utc::now() - caused)
            .to_std()
            .unwrap_or_default()
            .as_secs_f64();
        let exemplar = envelope
            .traceparent
            .as_deref()
            .and_then(|t| t.split('-').nth(1))
            .map(|trace_id| TraceLabels {
                trace_id: trace_id.to_owned(),
            });
        histogram.observe(seconds, exemplar, None);
    }
}

fn decode(message: &BorrowedMessage<'_>) -> Result<(Envelope, ImagesCompressed), String> {
    let headers = message
        .headers()
        .map(|h| h.iter().map(|h| (h.key, h.value)).collect::<Vec<_>>());
    let envelope =
        Envelope::from_headers(headers.unwrap_or_default()).map_err(|e| e.to_string())?;
    if envelope.event_type != EventType::ImagesCompressed {
        return Err(format!(
            "unexpected event type {}",
            envelope.event_type.as_str()
        ));
    }
    let payload = message.payload().ok_or("empty payload")?;
    let event: ImagesCompressed = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    // Checked here, not in `apply`: a malformed id can never succeed, so retrying it would
    // hold the partition for good.
    if event.product_id.parse::<i64>().is_err() {
        return Err(format!("product id {:?} is not a number", event.product_id));
    }
    Ok((envelope, event))
}

/// Applies `event` unless it was applied before or belongs to an older image revision
/// (see [`results::apply_images`]).
pub async fn apply(
    pool: &Pool,
    event_id: Uuid,
    event: &ImagesCompressed,
) -> anyhow::Result<Applied> {
    let product_id: i64 = event
        .product_id
        .parse()
        .map_err(|_| anyhow::anyhow!("product id {:?} is not a number", event.product_id))?;
    Ok(results::apply_images(pool, product_id, event_id, event).await?)
}
