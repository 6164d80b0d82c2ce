//! Publishes outbox rows to Kafka after commit.
//!
//! Woken by [`OutboxSignal`] right after a commit, and by a poll for rows written by other
//! replicas. Rows are claimed with `FOR UPDATE SKIP LOCKED`, so replicas relay in parallel
//! without sending a row twice at once; a row is only taken when no earlier row of the same
//! product is still unpublished, which keeps each product's events in order. A row is marked
//! published only after the broker acknowledged it (idempotent producer, `acks=all`); when
//! the broker is down the rows wait and the API keeps accepting writes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use events::{Envelope, EventType};
use platform::backoff::Backoff;
use rdkafka::{
    producer::{FutureProducer, FutureRecord},
    util::Timeout,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{OutboxSignal, SOURCE};
use crate::metrics::StreamLabels;

/// How long a batch in flight at shutdown may take to be acknowledged.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often a batch the broker has not acknowledged reports the backlog and its age.
const WAITING_REPORT: Duration = Duration::from_secs(5);

/// The relay of one api process.
#[derive(Clone)]
pub struct Relay {
    /// Where the outbox lives.
    pub pool: Pool,
    /// The idempotent producer.
    pub producer: FutureProducer,
    /// Where each event type goes: state records to the products topic, the rest to
    /// product-events.
    pub topics: events::Topics,
    /// Rate of the fallback poll.
    pub poll_interval: Duration,
    /// Rows per transaction.
    pub batch_size: i64,
    /// Woken after local commits.
    pub signal: OutboxSignal,
    /// Backlog and publish latency.
    pub metrics: std::sync::Arc<crate::metrics::ApiMetrics>,
}

struct OutboxRow {
    id: i64,
    product_id: i64,
    event_id: Uuid,
    event_type: String,
    payload: serde_json::Value,
    traceparent: Option<String>,
    created_at: DateTime<Utc>,
}

impl Relay {
    /// Publishes until `shutdown`; a batch in flight finishes first.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        'relay: loop {
            let batch = self.publish_batch();
            tokio::pin!(batch);
            let started = tokio::time::Instant::now();
            // A broker that does not answer holds a batch for the delivery timeout (two
            // minutes): meanwhile the backlog's age is reported every few seconds.
            let mut waiting = tokio::time::interval_at(started + WAITING_REPORT, WAITING_REPORT);
            let published = loop {
                tokio::select! {
                    published = &mut batch => break published,
                    _ = waiting.tick() => self.report_waiting(started.elapsed()).await,
                    () = shutdown.cancelled() => {
                        // A batch waiting on a broker that does not answer would hold
                        // shutdown for the delivery timeout: give it a moment, then leave its
                        // rows unpublished (rolled back) for the next relay to send again.
                        match tokio::time::timeout(SHUTDOWN_GRACE, &mut batch).await {
                            Ok(published) => break published,
                            Err(_) => {
                                tracing::warn!(
                                    grace_ms = SHUTDOWN_GRACE.as_millis() as u64,
                                    "Outbox relay stopping with a batch unacknowledged; it will be sent again."
                                );
                                break 'relay;
                            }
                        }
                    }
                }
            };
            let wait = match published {
                // Something was published: look again at once. A batch takes one row per
                // product, so a product's next change, committed while this batch was in
                // flight, is only now eligible; its commit's wake-up was spent on this batch.
                Ok(sent) if sent > 0 => {
                    backoff.reset();
                    Duration::ZERO
                }
                Ok(_) => {
                    backoff.reset();
                    self.poll_interval
                }
                Err(error) => {
                    // The api keeps taking writes while the broker is away; how far behind
                    // the events are is what an operator needs to know.
                    let oldest = self.record_backlog().await;
                    tracing::warn!(
                        error = format!("{error:#}"),
                        retry_in_ms = backoff.upcoming().as_millis() as u64,
                        oldest_unpublished_secs = oldest.map(|age| age.as_secs()),
                        backlog = self.metrics.outbox_backlog.get(),
                        "Outbox relay failed; retrying."
                    );
                    backoff.advance()
                }
            };
            if wait.is_zero() {
                if shutdown.is_cancelled() {
                    break;
                }
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.signal.wait() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!("Outbox relay stopped.");
    }

    /// Reports a batch the broker has not acknowledged for `waited`: the backlog and its
    /// age, in the log and the gauges.
    async fn report_waiting(&self, waited: Duration) {
        let oldest = self.record_backlog().await;
        tracing::warn!(
            waited_secs = waited.as_secs(),
            oldest_unpublished_secs = oldest.map(|age| age.as_secs()),
            backlog = self.metrics.outbox_backlog.get(),
            "Outbox relay is waiting for the broker to acknowledge a batch; writes go on into the outbox."
        );
    }

    /// Claims, publishes and marks one batch; returns how many rows were published.
    #[tracing::instrument(name = "postgres claim outbox batch", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation.name = "claim outbox batch"))]
    pub async fn publish_batch(&self) -> anyhow::Result<usize> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                "SELECT o.id, o.product_id, o.event_id, o.event_type, o.payload, o.traceparent, o.created_at \
                 FROM outbox o \
                 WHERE o.published_at IS NULL \
                   AND NOT EXISTS (SELECT 1 FROM outbox e \
                                   WHERE e.product_id = o.product_id AND e.published_at IS NULL AND e.id < o.id) \
                 ORDER BY o.id \
                 LIMIT $1 \
                 FOR UPDATE SKIP LOCKED",
                &[&self.batch_size],
            )
            .await?;
        if rows.is_empty() {
            tx.commit().await?;
            self.record_backlog().await;
            return Ok(0);
        }
        let rows: Vec<OutboxRow> = rows
            .iter()
            .map(|r| OutboxRow {
                id: r.get("id"),
                product_id: r.get("product_id"),
                event_id: r.get("event_id"),
                event_type: r.get("event_type"),
                payload: r.get("payload"),
                traceparent: r.get("traceparent"),
                created_at: r.get("created_at"),
            })
            .collect();
        let sends = rows.iter().map(|row| self.send(row));
        let mut streams = Vec::with_capacity(rows.len());
        for result in futures_util::future::join_all(sends).await {
            streams.push(result?);
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        tx.execute(
            "UPDATE outbox SET published_at = now() WHERE id = ANY($1)",
            &[&ids],
        )
        .await?;
        tx.commit().await?;
        // Observed once the rows are marked published: a batch that fails part-way is sent
        // again, and its acknowledged rows must not count twice.
        let now = Utc::now();
        for (row, stream) in rows.iter().zip(streams) {
            let latency = (now - row.created_at).to_std().unwrap_or_default();
            self.metrics
                .outbox_publish_latency
                .get_or_create(&StreamLabels { stream })
                .observe(latency.as_secs_f64());
        }
        let oldest = rows
            .iter()
            .map(|r| r.created_at)
            .min()
            .unwrap_or_else(Utc::now);
        tracing::info!(
            events = rows.len(),
            lag_ms = (Utc::now() - oldest).num_milliseconds(),
            "Outbox relay published."
        );
        Ok(rows.len())
    }

    /// Updates the backlog gauges (cheap: a partial index holds only unpublished rows);
    /// returns the age of the oldest waiting row.
    async fn record_backlog(&self) -> Option<Duration> {
        let client = self.pool.get().await.ok()?;
        let row = client
            .query_one(
                "SELECT count(*) AS waiting, \
                        COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS oldest \
                 FROM outbox WHERE published_at IS NULL",
                &[],
            )
            .await
            .ok()?;
        let oldest: f64 = row.get("oldest");
        self.metrics
            .outbox_backlog
            .set(row.get::<_, i64>("waiting"));
        self.metrics.outbox_oldest_age.set(oldest.max(0.0));
        Some(Duration::from_secs_f64(oldest.max(0.0)))
    }

    /// Publishes `row`; returns the stream it went to (`events` or `products`).
    async fn send(&self, row: &OutboxRow) -> anyhow::Result<&'static str> {
        let event_type = EventType::parse(&row.event_type).ok_or_else(|| {
            anyhow::anyhow!("outbox row {} has unknown type {}", row.id, row.event_type)
        })?;
        let (topic, stream) = match event_type {
            EventType::ProductState => (self.topics.products(), "products"),
            _ => (self.topics.product_events(), "events"),
        };
        let span = tracing::info_span!(
            "publish",
            otel.name = format!("{topic} publish"),
            otel.kind = "producer",
            messaging.system = "kafka",
            messaging.operation.type = "send",
            messaging.destination.name = %topic,
            messaging.message.id = %row.event_id,
            product_id = row.product_id,
        );
        platform::telemetry::set_parent(&span, row.traceparent.as_deref());
        let envelope = Envelope {
            id: row.event_id,
            event_type,
            source: SOURCE.to_owned(),
            time: row.created_at,
            subject: row.product_id.to_string(),
            traceparent: platform::telemetry::traceparent_of(&span)
                .or_else(|| row.traceparent.clone()),
            causetime: None,
        };
        let mut headers = envelope.headers();
        // A state record without a value is a tombstone: the product is gone. It says nothing
        // about a content type.
        let tombstone = row.payload.is_null();
        if tombstone {
            headers.retain(|(name, _)| *name != events::headers::CONTENT_TYPE);
        }
        let key = row.product_id.to_string();
        let payload = serde_json::to_vec(&row.payload)?;
        let mut record = FutureRecord::to(&topic)
            .key(&key)
            .headers(platform::kafka::owned_headers(headers));
        if !tombstone {
            record = record.payload(&payload);
        }
        tracing::Instrument::instrument(self.producer.send(record, Timeout::Never), span)
            .await
            .map_err(|(error, _)| {
                anyhow::anyhow!("Failed to publish outbox row {}: {error}", row.id)
            })?;
        Ok(stream)
    }
}
