//! Taking records in: the main, later and retry consumers, each with several records in flight
//! (never two of one product; see [`super::in_flight`]), storing offsets only past finished
//! records, abandoning the records of revoked partitions, noticing a consumer that stopped
//! making progress (and recreating it), and draining at shutdown.

use std::{sync::Arc, time::Duration};

use futures_util::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use platform::backoff::Backoff;
use platform::kafka::{
    Membership, PartitionGuard, RebalanceContext,
    watchdog::{self, MemberProgress, SharedWatch, WatchSpec},
};
use rdkafka::{
    Message,
    consumer::{CommitMode, Consumer, StreamConsumer},
    message::OwnedMessage,
};
use tokio_util::sync::CancellationToken;

use super::{Lane, Worker, in_flight::InFlight};

/// How often a consumer's watchdog reads its group's offsets.
const WATCH_INTERVAL: Duration = Duration::from_secs(5);

/// A consumer of the processor's, with the tokens of its partitions' work.
type GuardedConsumer = StreamConsumer<RebalanceContext>;

/// How a consumer loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Shutdown: the records in hand were finished and the offsets committed.
    Shutdown,
    /// Its group made no progress with records waiting: the consumer is to be recreated.
    Stalled,
}

/// One record's handling: the record, whether its outcome is durable, and its partition's
/// token (cancelled if the partition was revoked meanwhile).
type Running = BoxFuture<'static, (OwnedMessage, bool, CancellationToken)>;

impl Worker {
    /// Consumes `consumer` (of `lane`'s topic) until `shutdown`, with up to `jobs_in_flight`
    /// records at once (`later_jobs_in_flight` on the later topic; never two of one product;
    /// see [`in_flight`]). At shutdown the records in hand are finished first, and the stored
    /// offsets are committed. Returns early, abandoning the records in hand, when the
    /// consumer made no progress for the stall limit while records waited.
    pub async fn consume(
        self: Arc<Self>,
        consumer: Arc<GuardedConsumer>,
        partitions: Arc<PartitionGuard>,
        topic: &str,
        lane: Lane,
        progress: SharedWatch,
        shutdown: CancellationToken,
    ) -> Ended {
        let name = lane.name();
        // The group's watchdog: cancels `stuck` when a lagging partition stops moving.
        let member = MemberProgress::default();
        let stuck = CancellationToken::new();
        let watchdog = tokio::spawn(watchdog::watch(
            &consumer,
            self.watch_spec(&name, topic, lane),
            progress,
            member.clone(),
            stuck.clone(),
            shutdown.clone(),
        ));
        let limit = match lane {
            Lane::Later => self.later_jobs_in_flight,
            _ => self.jobs_in_flight,
        }
        .max(1);
        let mut in_flight = InFlight::default();
        let mut running: FuturesUnordered<Running> = FuturesUnordered::new();
        let mut stopping = false;
        let mut receive_errors = platform::kafka::ReceiveErrors::new(name.clone());
        let ended = loop {
            if stopping && running.is_empty() {
                break Ended::Shutdown;
            }
            for (topic, partition) in partitions.take_revoked() {
                in_flight.forget_partition(&topic, partition);
            }
            // As many records wait behind a busy product as may run at once; past that the
            // consumer takes nothing in until one of them can start.
            let receive = !stopping && in_flight.running() < limit && in_flight.waiting() < limit;
            if lane == Lane::Main {
                self.main_full.store(
                    in_flight.running() >= limit || in_flight.waiting() > 0,
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            tokio::select! {
                _ = shutdown.cancelled(), if !stopping => {
                    stopping = true;
                    // Waiting records are left for redelivery: no offset reaches them.
                    in_flight.drop_waiting();
                }
                Some((message, durable, token)) = running.next() => {
                    member.mark();
                    if !durable || (token.is_cancelled() && !shutdown.is_cancelled()) {
                        // Interrupted by shutdown, or its partition was revoked: this offset
                        // and every later one of its partition stay unstored, so the records
                        // are redelivered (to the partition's new owner).
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
                        running.push(self.clone().start(next, lane, &partitions, &shutdown));
                    }
                }
                message = consumer.recv(), if receive => match message {
                    Ok(message) => {
                        member.mark();
                        if let Some(message) = in_flight.admit(message.detach()) {
                            running.push(self.clone().start(message, lane, &partitions, &shutdown));
                        }
                    }
                    Err(error) => {
                        receive_errors.record(&error);
                    }
                },
                // Work of the later and retry topics waits for the cores behind first steps,
                // for as long as first steps come: that is progress, not a stall.
                () = self.first_step_shown.notified(), if lane != Lane::Main && !running.is_empty() => {
                    member.mark();
                }
                () = stuck.cancelled(), if !stopping => break Ended::Stalled,
            }
        };
        watchdog.abort();
        if ended == Ended::Shutdown {
            if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(%error, consumer = name, "No offsets to commit at shutdown.");
            }
            tracing::info!(consumer = name, "Consumer stopped.");
        }
        ended
    }

    /// What the watchdog of consumer `name` of `topic` in `lane` watches and reports to.
    fn watch_spec(&self, name: &str, topic: &str, lane: Lane) -> WatchSpec {
        // A retry record may rightly wait its whole delay before it is due.
        let delay = match lane {
            Lane::Retry(level) => self
                .retry_delays
                .get(level.wrapping_sub(1))
                .copied()
                .unwrap_or_default(),
            Lane::Main | Lane::Later => Duration::ZERO,
        };
        WatchSpec {
            consumer: name.to_owned(),
            topic: topic.to_owned(),
            limit: self.stall_after + delay,
            interval: WATCH_INTERVAL
                .min(self.stall_after / 3)
                .max(Duration::from_millis(200)),
            lag: self.metrics.consumer_lag.clone(),
            stalls: self.metrics.consumer_stalls.clone(),
            health: self.health.clone(),
        }
    }

    /// The handling of a started record, which yields the record, whether its outcome is
    /// durable, and the token of its partition's work.
    fn start(
        self: Arc<Self>,
        message: OwnedMessage,
        lane: Lane,
        partitions: &PartitionGuard,
        shutdown: &CancellationToken,
    ) -> Running {
        let token = partitions.token(message.topic(), message.partition(), shutdown);
        Box::pin(async move {
            let durable = self.handle(&message, lane, &token).await;
            (message, durable, token)
        })
    }
}

/// Creates the topics (waiting for the broker if it is away), then runs the main, later and
/// retry consumers until `shutdown`. Each consumer is supervised: recreated when it stalls, and
/// restarted after a panic.
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
    let lanes = [Lane::Main, Lane::Later]
        .into_iter()
        .chain((1..=worker.retry_delays.len()).map(Lane::Retry));
    for lane in lanes {
        let (topic, group) = match lane {
            Lane::Main => (topics.product_events(), group.to_owned()),
            Lane::Later => (topics.image_later(), format!("{group}.later")),
            Lane::Retry(level) => (topics.image_retry(level), format!("{group}.retry-{level}")),
        };
        let mut kafka = kafka.clone();
        if lane != Lane::Main {
            // A retry waits seconds for its due time anyway, and a deferred AVIF waits for
            // the first steps that made it deferred: their consumers need not ask the broker
            // as often as the main one (tansu holds every fetch for the whole wait, and each
            // costs it CPU; docs/operations.md, "Consumer groups").
            kafka.fetch_wait_max_ms = kafka.fetch_wait_max_ms.max(SIDE_FETCH_WAIT_MS);
        }
        let consumer = ConsumerSpec {
            worker: worker.clone(),
            kafka,
            topic,
            group,
            lane,
        };
        let (panics, stop) = (worker.metrics.task_panics.clone(), shutdown.clone());
        let task = format!("consumer-{}", lane.name());
        // The consumer's counters start at 0, exported before their first step.
        let _ = panics.get_or_create(&platform::supervise::TaskLabels { task: task.clone() });
        let _ = worker.metrics.consumer_stalls.get_or_create(
            &platform::kafka::watchdog::ConsumerLabels {
                consumer: lane.name(),
            },
        );
        tasks.spawn(platform::supervise::supervise(
            task,
            shutdown.clone(),
            panics,
            move || consumer.clone().run(stop.clone()),
        ));
    }
    tasks.spawn(worker.clone().collect_garbage_every(shutdown.clone()));
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// The least a later or retry topic's consumer waits for data per fetch: librdkafka's
/// default.
const SIDE_FETCH_WAIT_MS: u32 = 500;

/// What it takes to (re)create one consumer.
#[derive(Clone)]
struct ConsumerSpec {
    worker: Arc<Worker>,
    kafka: platform::kafka::KafkaSettings,
    topic: String,
    group: String,
    lane: Lane,
}

impl ConsumerSpec {
    fn create(&self) -> anyhow::Result<(Arc<GuardedConsumer>, Arc<PartitionGuard>)> {
        let partitions = Arc::new(PartitionGuard::default());
        let consumer = self.kafka.consumer_with(
            &self.group,
            Membership::Static,
            RebalanceContext {
                consumer: self.lane.name(),
                partitions: partitions.clone(),
            },
        )?;
        consumer.subscribe(&[&self.topic])?;
        Ok((Arc::new(consumer), partitions))
    }

    /// Consumes until shutdown, with a new consumer each time the last one stalled.
    async fn run(self, shutdown: CancellationToken) {
        let mut pause = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        // Static when the replica has a stable identity (see `Membership::Static`).
        let progress = watchdog::shared_watch(
            self.worker
                .watch_spec(&self.lane.name(), &self.topic, self.lane)
                .limit,
        );
        loop {
            let (consumer, partitions) = match self.create() {
                Ok(created) => created,
                Err(error) => {
                    tracing::error!(
                        error = format!("{error:#}"),
                        group = self.group,
                        retry_in_ms = pause.upcoming().as_millis() as u64,
                        "Failed to create a consumer; retrying."
                    );
                    if !pause.pause(&shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            tracing::info!(topic = self.topic, group = self.group, "Consuming.");
            let ended = self
                .worker
                .clone()
                .consume(
                    consumer.clone(),
                    partitions,
                    &self.topic,
                    self.lane,
                    progress.clone(),
                    shutdown.clone(),
                )
                .await;
            // Closing leaves the group, which can block while the broker does not answer:
            // never on the runtime's threads.
            tokio::task::spawn_blocking(move || drop(consumer));
            if ended == Ended::Shutdown {
                return;
            }
        }
    }
}
