//! A consumer group's watchdog: is the group making progress on every partition of its topic,
//! and is this member doing its part?
//!
//! A member's own view is not enough. After a kill -9, a broker that keeps the dead member
//! in the group (tansu never expires one; Kafka does after `session.timeout.ms`) can finish a
//! rebalance with the dead member holding every partition and the live one holding nothing:
//! the live member then sees no lag at all, because it owns nothing to lag on. So the watch
//! compares the *group's* committed offsets with the high watermarks of *all* partitions:
//!
//! - a partition with records behind its committed offset whose committed offset has not
//!   moved for the limit is stuck, when this member does not hold it (someone else, maybe a
//!   dead member, or nobody does) or when this member itself has made no progress for the
//!   limit (it holds it and is wedged). A partition this member holds while it progresses
//!   elsewhere is busy, not stuck: one partition's backlog can keep the others waiting;
//! - when the offsets cannot be read at all (metadata, committed offsets or watermarks fail
//!   or time out) for the limit, the member is blind: "cannot find out" is not "fine".
//!
//! [`GroupWatch`] is the decision, pure and tested; [`watch`] probes the broker on a
//! blocking thread, feeds the decision, reports lag, logs and marks the consumer's health,
//! and cancels a token the consumer loop selects on to leave the group and join again.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use anyhow::Context;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use rdkafka::{
    TopicPartitionList,
    consumer::{Consumer, ConsumerContext, StreamConsumer},
};
use tokio_util::sync::CancellationToken;

use crate::metrics::{ConsumerLag, PartitionLabels};

mod verdict;

pub use verdict::{GroupWatch, PartitionOffsets, StuckPartition, Verdict};

/// The time since a consumer last took in or finished a record, shared between the
/// consumer loop (which marks it) and its watchdog (which reads it).
#[derive(Debug, Clone)]
pub struct MemberProgress(Arc<Mutex<Instant>>);

impl Default for MemberProgress {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Instant::now())))
    }
}

impl MemberProgress {
    /// A record was taken in or finished.
    pub fn mark(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Time since the last mark.
    pub fn idle(&self) -> Duration {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).elapsed()
    }
}

/// What is wrong with a consumer, for readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// Its group has lagging partitions that do not move: it is being recreated.
    Stuck,
    /// Its group's offsets cannot be read: the broker does not answer.
    Blind,
}

/// The consumers of a process that are in trouble now, by name. Readiness reads it.
#[derive(Debug, Clone, Default)]
pub struct ConsumerHealth(Arc<Mutex<BTreeMap<String, Trouble>>>);

impl ConsumerHealth {
    fn set(&self, consumer: &str, trouble: Trouble) {
        self.lock().insert(consumer.to_owned(), trouble);
    }

    fn clear(&self, consumer: &str) {
        if self.lock().remove(consumer).is_some() {
            tracing::info!(consumer, "Consumer group is making progress again.");
        }
    }

    fn of(&self, consumer: &str) -> Option<Trouble> {
        self.lock().get(consumer).copied()
    }

    /// Each consumer in trouble, with what is wrong.
    pub fn troubles(&self) -> Vec<(String, Trouble)> {
        self.lock().iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Trouble>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The label of the watchdog's counters: which consumer (`main`, `retry-1`, `projector`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    pub consumer: String,
}

/// What one consumer's watchdog watches and where it reports.
#[derive(Clone)]
pub struct WatchSpec {
    /// The consumer's name in logs, metrics and readiness.
    pub consumer: String,
    /// The one topic the consumer subscribes to.
    pub topic: String,
    /// No progress for this long is a stall.
    pub limit: Duration,
    /// How often to look.
    pub interval: Duration,
    /// The group's lag per partition (`…_consumer_lag`).
    pub lag: ConsumerLag,
    /// Stalls found, by consumer (`…_consumer_stalls_total`).
    pub stalls: Family<ConsumerLabels, Counter>,
    /// Where readiness looks.
    pub health: ConsumerHealth,
}

/// `CONSUMER_STALL_SECS`, the stall limit, with the service's default: at least a second.
pub fn stall_limit_from_env(default_secs: u64) -> anyhow::Result<Duration> {
    let secs: u64 = crate::env::parse("CONSUMER_STALL_SECS", default_secs)?;
    anyhow::ensure!(
        secs >= 1,
        "CONSUMER_STALL_SECS must be at least 1 (seconds); it is {secs}"
    );
    Ok(Duration::from_secs(secs))
}

/// How long one probe's broker requests may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The watch of one consumer group, kept by the loop that recreates its consumer so that the
/// partitions' clocks outlive each consumer.
pub type SharedWatch = Arc<Mutex<GroupWatch>>;

/// A [`SharedWatch`] that calls a partition stuck after `limit` without progress.
pub fn shared_watch(limit: Duration) -> SharedWatch {
    Arc::new(Mutex::new(GroupWatch::new(limit, Instant::now())))
}

/// Watches `consumer`'s group until `shutdown` or until the consumer is gone, cancelling
/// `stuck` (once) when the group is stuck. Between looks only a weak reference is kept: the
/// watchdog must not keep a consumer, and with it a group membership, alive after its owner
/// is gone. A look holds the consumer while it runs (at most a few broker timeouts), and
/// looks never overlap.
pub fn watch<C>(
    consumer: &Arc<StreamConsumer<C>>,
    spec: WatchSpec,
    group: SharedWatch,
    member: MemberProgress,
    stuck: CancellationToken,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static
where
    C: ConsumerContext + 'static,
{
    let consumer: Weak<StreamConsumer<C>> = Arc::downgrade(consumer);
    async move {
        let mut probing: Option<tokio::task::JoinHandle<anyhow::Result<Probed>>> = None;
        let mut tick = tokio::time::interval(spec.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = stuck.cancelled() => return,
                _ = tick.tick() => {}
            }
            // A probe that outlived its look (a broker that does not answer) is not joined by
            // another: they would pile up on the blocking pool, each holding the consumer.
            if let Some(late) = probing.take_if(|late| !late.is_finished()) {
                probing = Some(late);
                tracing::warn!(
                    consumer = spec.consumer,
                    "The last look at the consumer group's offsets has not finished."
                );
                let verdict = group.lock().unwrap_or_else(|e| e.into_inner()).observe(
                    Instant::now(),
                    None,
                    &[],
                    member.idle(),
                );
                if let Verdict::Blind(blind) = verdict {
                    report_blind(&spec, blind);
                }
                continue;
            }
            let Some(strong) = consumer.upgrade() else {
                return;
            };
            let topic = spec.topic.clone();
            let mut handle = tokio::task::spawn_blocking(move || probe(&strong, &topic));
            let probed = tokio::time::timeout(PROBE_TIMEOUT * 4, &mut handle).await;
            let (offsets, held) = match probed {
                Ok(Ok(Ok(probed))) => (Some(probed.offsets), probed.held),
                Ok(Ok(Err(error))) => {
                    tracing::warn!(
                        consumer = spec.consumer,
                        error = format!("{error:#}"),
                        "Could not read the consumer group's offsets."
                    );
                    (None, Vec::new())
                }
                Ok(Err(_panicked)) => (None, Vec::new()),
                Err(_) => {
                    tracing::warn!(
                        consumer = spec.consumer,
                        "Reading the consumer group's offsets timed out."
                    );
                    probing = Some(handle);
                    (None, Vec::new())
                }
            };
            if let Some(offsets) = &offsets {
                for partition in offsets {
                    let labels = PartitionLabels {
                        topic: spec.topic.clone(),
                        partition: partition.partition,
                    };
                    spec.lag.get_or_create(&labels).set(partition.lag());
                }
            }
            let verdict = group.lock().unwrap_or_else(|e| e.into_inner()).observe(
                Instant::now(),
                offsets.as_deref(),
                &held,
                member.idle(),
            );
            match verdict {
                Verdict::Fine => spec.health.clear(&spec.consumer),
                // Readiness keeps saying stuck until the group moves.
                Verdict::Rejoining | Verdict::Unsure => {}
                Verdict::Blind(blind) => report_blind(&spec, blind),
                Verdict::Stuck(partitions) => {
                    let detail: Vec<String> = partitions
                        .iter()
                        .map(|p| {
                            format!(
                                "{}: lag {} for {} s{}",
                                p.partition,
                                p.lag,
                                p.idle.as_secs(),
                                if p.held_here { " (held here)" } else { "" }
                            )
                        })
                        .collect();
                    tracing::error!(
                        consumer = spec.consumer,
                        topic = spec.topic,
                        partitions = ?detail,
                        held_here = ?held,
                        "Consumer group made no progress with records waiting; leaving it and joining again."
                    );
                    spec.stalls
                        .get_or_create(&ConsumerLabels {
                            consumer: spec.consumer.clone(),
                        })
                        .inc();
                    spec.health.set(&spec.consumer, Trouble::Stuck);
                    group
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .rejoined(Instant::now());
                    stuck.cancel();
                    return;
                }
            }
        }
    }
}

/// Marks the consumer blind, saying so once when it starts (a warning follows each look).
fn report_blind(spec: &WatchSpec, blind: Duration) {
    if spec.health.of(&spec.consumer) == Some(Trouble::Blind) {
        return;
    }
    tracing::error!(
        consumer = spec.consumer,
        topic = spec.topic,
        blind_secs = blind.as_secs(),
        "The broker has not told where the consumer group stands for too long; counting it \
         as no progress."
    );
    spec.health.set(&spec.consumer, Trouble::Blind);
}

/// What one probe read.
struct Probed {
    offsets: Vec<PartitionOffsets>,
    /// The partitions of the topic this member holds.
    held: Vec<i32>,
}

/// Reads every partition's committed offset and watermarks (blocking: librdkafka's calls).
fn probe<C: ConsumerContext>(consumer: &StreamConsumer<C>, topic: &str) -> anyhow::Result<Probed> {
    let metadata = consumer
        .fetch_metadata(Some(topic), PROBE_TIMEOUT)
        .context("Failed to fetch the topic's metadata")?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    anyhow::ensure!(
        !partitions.is_empty(),
        "the topic {topic} has no partitions"
    );
    let mut wanted = TopicPartitionList::new();
    for partition in &partitions {
        wanted.add_partition(topic, *partition);
    }
    let committed = consumer
        .committed_offsets(wanted, PROBE_TIMEOUT)
        .context("Failed to fetch the group's committed offsets")?;
    let mut offsets = Vec::with_capacity(partitions.len());
    for element in committed.elements() {
        let (low, high) = consumer
            .fetch_watermarks(topic, element.partition(), PROBE_TIMEOUT)
            .with_context(|| {
                format!(
                    "Failed to fetch partition {}'s watermarks",
                    element.partition()
                )
            })?;
        element.error().with_context(|| {
            format!(
                "Failed to fetch partition {}'s committed offset",
                element.partition()
            )
        })?;
        // Never committed: the group starts at the log's start. Committed before records
        // that retention has since deleted: those records are not waiting for anyone.
        let committed = element
            .offset()
            .to_raw()
            .filter(|o| *o >= 0)
            .unwrap_or(low)
            .max(low);
        offsets.push(PartitionOffsets {
            partition: element.partition(),
            committed,
            high,
        });
    }
    let held = consumer
        .assignment()
        .map(|list| {
            list.elements()
                .iter()
                .filter(|e| e.topic() == topic)
                .map(|e| e.partition())
                .collect()
        })
        .unwrap_or_default();
    Ok(Probed { offsets, held })
}
