//! Taking records in: the main and retry consumers, each with several records in flight
//! (never two of one product; see [`super::in_flight`]), storing offsets only past finished
//! records, and draining at shutdown.

use std::sync::Arc;

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
        let mut running: FuturesUnordered<BoxFuture<'static, (OwnedMessage, bool)>> =
            FuturesUnordered::new();
        let mut stopping = false;
        let mut receive_errors = platform::kafka::ReceiveErrors::new(if level == 0 {
            "main".to_owned()
        } else {
            format!("retry-{level}")
        });
        loop {
            if stopping && running.is_empty() {
                break;
            }
            // As many records wait behind a busy product as may run at once; past that the
            // consumer takes nothing in until one of them can start.
            let receive = !stopping && in_flight.running() < limit && in_flight.waiting() < limit;
            tokio::select! {
                _ = shutdown.cancelled(), if !stopping => {
                    stopping = true;
                    // Waiting records are left for redelivery: no offset reaches them.
                    in_flight.drop_waiting();
                }
                Some((message, durable)) = running.next() => {
                    if !durable {
                        // Interrupted by shutdown: this offset and every later one of its
                        // partition stay unstored, so the records are redelivered.
                        in_flight.abandon(&message);
                        continue;
                    }
                    let (stored, next) = in_flight.finish(&message);
                    if let Some(offset) = stored {
                        let (topic, partition) = (message.topic(), message.partition());
                        if let Err(error) = consumer.store_offset(topic, partition, offset) {
                            tracing::warn!(%error, topic, partition, "Failed to store an offset.");
                        }
                    }
                    if let Some(next) = next {
                        running.push(self.clone().start(next, level, &shutdown));
                    }
                }
                message = consumer.recv(), if receive => match message {
                    Ok(message) => {
                        if let Some(message) = in_flight.admit(message.detach()) {
                            running.push(self.clone().start(message, level, &shutdown));
                        }
                    }
                    Err(error) => {
                        receive_errors.record(&error);
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

    /// The handling of a started record, which yields the record and whether its outcome
    /// is durable.
    fn start(
        self: Arc<Self>,
        message: OwnedMessage,
        level: usize,
        shutdown: &CancellationToken,
    ) -> BoxFuture<'static, (OwnedMessage, bool)> {
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
    // The broker may be away at start: wait for it (the health server already answers).
    if !kafka
        .ensure_topics_until_done(&topics.all(worker.retry_delays.len()), &shutdown)
        .await
    {
        return Ok(());
    }
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
