//! Taking records in: the main and retry consumers, each with several records in flight
//! (never two of one product; see [`super::in_flight`]), storing offsets only past finished
//! records, and draining at shutdown.

use std::{sync::Arc, time::Duration};

use futures_util::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use rdkafka::{
    Message,
    consumer::{CommitMode, Consumer, StreamConsumer},
    message::OwnedMessage,
};
use tokio_util::sync::CancellationToken;

use super::{Worker, in_flight::InFlight};

impl Worker {
    /// Consumes `consumer` (the main topic at `level` 0, retry level `n` otherwise) until
    /// `shutdown`, with up to `jobs_in_flight` records at once (never two of one product;
    /// see [`in_flight`]). At shutdown the records in hand are finished first, and the stored
    /// offsets are committed.
    pub async fn consume(
        self: Arc<Self>,
        consumer: Arc<StreamConsumer>,
        level: usize,
        shutdown: CancellationToken,
    ) {
        let lag = tokio::spawn(platform::metrics::report_consumer_lag(
            &consumer,
            self.metrics.consumer_lag.clone(),
            shutdown.clone(),
        ));
        let limit = self.jobs_in_flight.max(1);
        let mut in_flight = InFlight::default();
        let mut running = FuturesUnordered::new();
        // A record received while an earlier record of its product still runs.
        let mut held: Option<OwnedMessage> = None;
        let mut stopping = false;
        loop {
            // Once stopping, a held record is left for redelivery: no offset reaches it, as
            // it came after every record started on its partition.
            if let Some(message) = held.take_if(|m| !stopping && !in_flight.key_busy(m.key())) {
                running.push(
                    self.clone()
                        .start(message, level, &mut in_flight, &shutdown),
                );
            }
            if stopping && running.is_empty() {
                break;
            }
            let receive = !stopping && held.is_none() && in_flight.running() < limit;
            tokio::select! {
                _ = shutdown.cancelled(), if !stopping => stopping = true,
                Some((message, durable)) = running.next() => {
                    let (topic, partition, key) = (message.topic(), message.partition(), message.key());
                    if !durable {
                        // Interrupted by shutdown: this offset and every later one of its
                        // partition stay unstored, so the records are redelivered.
                        in_flight.abandon(key);
                    } else if let Some(offset) = in_flight.finish(topic, partition, message.offset(), key) {
                        if let Err(error) = consumer.store_offset(topic, partition, offset) {
                            tracing::warn!(%error, topic, partition, "Failed to store an offset.");
                        }
                    }
                }
                message = consumer.recv(), if receive => match message {
                    Ok(message) => {
                        let message = message.detach();
                        if in_flight.key_busy(message.key()) {
                            held = Some(message);
                        } else {
                            running.push(self.clone().start(message, level, &mut in_flight, &shutdown));
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, retry_level = level, "Failed to receive; retrying.");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                },
            }
        }
        if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(%error, retry_level = level, "No offsets to commit at shutdown.");
        }
        lag.abort();
        tracing::info!(retry_level = level, "Consumer stopped.");
    }

    /// Notes the record as started and returns its handling, which yields the record and
    /// whether its outcome is durable.
    fn start(
        self: Arc<Self>,
        message: OwnedMessage,
        level: usize,
        in_flight: &mut InFlight,
        shutdown: &CancellationToken,
    ) -> BoxFuture<'static, (OwnedMessage, bool)> {
        in_flight.start(
            message.topic(),
            message.partition(),
            message.offset(),
            message.key(),
        );
        let shutdown = shutdown.clone();
        Box::pin(async move {
            let durable = self.handle(&message, level, &shutdown).await;
            (message, durable)
        })
    }
}

/// Subscribes the main and retry consumers and runs them until `shutdown`.
pub async fn run(
    worker: Arc<Worker>,
    kafka: &platform::kafka::KafkaSettings,
    group: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let topics = kafka.topics();
    kafka
        .ensure_topics(&topics.all(worker.retry_delays.len()))
        .await?;
    // Dropping `run` (an aborted task) drops the set, which aborts every consumer with it.
    let mut tasks = tokio::task::JoinSet::new();
    for level in 0..=worker.retry_delays.len() {
        let (topic, group) = if level == 0 {
            (topics.product_events(), group.to_owned())
        } else {
            (topics.image_retry(level), format!("{group}.retry-{level}"))
        };
        let consumer = kafka.consumer(&group)?;
        consumer.subscribe(&[&topic])?;
        tracing::info!(topic, group, "Consuming.");
        tasks.spawn(
            worker
                .clone()
                .consume(Arc::new(consumer), level, shutdown.clone()),
        );
    }
    while let Some(finished) = tasks.join_next().await {
        if let Err(error) = finished {
            tracing::error!(%error, "A consumer task panicked.");
        }
    }
    Ok(())
}
