//! The consumers: the main topic, the later topic and one per retry level, all handled by
//! one [`Worker`].
//!
//! For every job the worker processes the images it names, then makes the outcome durable
//! before the offset is stored:
//! - each image's first step (its WebP ladder) goes out as an `ImagesCompressed` of its own
//!   as soon as it is stored, with the formats still to come in `pending_formats`
//!   ([`process`]);
//! - finished images (compressed or permanently failed) go out as one `ImagesCompressed`;
//! - images that failed transiently go to the next retry topic, with a growing, jittered
//!   delay, unless the retries are used up: then the original record goes to the dead-letter
//!   topic and those images are reported failed with the reason;
//! - a record that cannot be read goes to the dead-letter topic as it is;
//! - a deleted product's stored images are deleted ([`cleanup`]), and so are a product's
//!   images of earlier revisions once a newer revision's results are out.
//!
//! - images whose second step is deferred (first steps wait: [`crate::settings::LaterStep`])
//!   go to the later topic once their first step is shown.
//!
//! Retry topics are consumed by their own consumers, so a delayed retry never holds up the
//! main topic. Each retry topic holds records of one delay, in order, so waiting for the
//! head record's due time is waiting for the earliest due record. The later topic has a
//! consumer of its own too, whose work waits for the cores behind every first step.

mod budget;
mod cleanup;
mod consume;
mod cores;
mod in_flight;
mod make;
mod outgoing;
mod process;
mod step;

pub use budget::DecodeBudget;
pub use cores::Cores;

pub use consume::run;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, SecondsFormat, Utc};
use events::{SourceImage, Topics, headers};
use rdkafka::{Message, producer::FutureProducer};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use self::step::{Step, next_step};
use crate::{
    content::ContentStore,
    failure::Failure,
    fetch::Fetcher,
    job::{self, Decoded, Job, RawRecord},
    metrics::{LevelLabels, OutcomeLabels, ProcessorMetrics},
    settings::LaterStep,
    storage::Storage,
    transform::TransformSettings,
};

/// Source of the events the processor emits (`ce_source`).
pub const SOURCE: &str = "/catalog/image-processor";

/// Which topic a consumer takes its jobs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Product events: every image's first step, and its second unless deferred.
    Main,
    /// Deferred second steps (`x-step: later`), made behind every first step.
    Later,
    /// The `n`-th retry topic (1-based).
    Retry(usize),
}

impl Lane {
    /// The consumer's name in logs, metrics and readiness.
    pub fn name(self) -> String {
        match self {
            Self::Main => "main".to_owned(),
            Self::Later => "later".to_owned(),
            Self::Retry(level) => format!("retry-{level}"),
        }
    }
}

/// Everything needed to process jobs; shared by the consumers.
pub struct Worker {
    pub fetcher: Fetcher,
    pub storage: Storage,
    /// The content-addressed variants, in `storage`.
    pub content: ContentStore,
    /// How often content no product refers to is looked for and deleted.
    pub gc_interval: Duration,
    pub transform: TransformSettings,
    pub producer: FutureProducer,
    pub topics: Topics,
    /// One entry per retry level.
    pub retry_delays: Vec<Duration>,
    /// Bounds decoding/encoding running at once (CPU), first steps first.
    pub cores: Cores,
    /// The permits of `cores`: the most widths of one image encoded at once.
    pub cpu_workers: usize,
    /// Bounds the memory of the images being decoded and compressed: one permit per MiB of
    /// each source's estimated peak.
    pub decode_memory: DecodeBudget,
    /// Downloads of one job in flight at once.
    pub image_concurrency: usize,
    /// Records (products) of one consumer processed at once.
    pub jobs_in_flight: usize,
    /// When an image's second step is deferred to the later topic.
    pub later_step: LaterStep,
    /// Records the later topic's consumer processes at once.
    pub later_jobs_in_flight: usize,
    /// The main consumer has as many records in flight as it may: more may wait on the
    /// topic, for their first steps.
    pub main_full: AtomicBool,
    /// Notified each time an image's first step is shown: the progress the consumers of
    /// later and retry work, which yield the cores to first steps, are waiting behind.
    pub first_step_shown: Notify,
    /// Images downloaded or compressed at once by the whole process (all consumers):
    /// `jobs_in_flight × image_concurrency`, which bounds the memory downloads hold.
    pub images_at_once: Arc<Semaphore>,
    pub metrics: Arc<ProcessorMetrics>,
    /// A consumer whose group has records waiting and no progress for this long is
    /// recreated (see [`platform::kafka::watchdog`]).
    pub stall_after: Duration,
    /// Consumers whose group is stuck or cannot be seen (readiness fails meanwhile).
    pub health: platform::kafka::watchdog::ConsumerHealth,
}

impl Worker {
    /// Builds the worker from settings.
    pub fn build(settings: &crate::settings::Settings) -> anyhow::Result<Arc<Self>> {
        let storage = Storage::from_url(&settings.storage_url, &settings.public_base_url)?;
        Ok(Arc::new(Self {
            fetcher: Fetcher::new(settings.fetch.clone())?,
            storage: storage.clone(),
            content: ContentStore::new(storage, settings.gc_epoch, &settings.transform),
            gc_interval: settings.gc_interval,
            transform: settings.transform.clone(),
            producer: settings.kafka.producer(platform::kafka::DELIVERY_TIMEOUT)?,
            topics: settings.kafka.topics(),
            retry_delays: settings.retry_delays.clone(),
            cores: Cores::new(settings.cpu_workers.max(1)),
            cpu_workers: settings.cpu_workers.max(1),
            decode_memory: DecodeBudget::new(settings.decode_memory),
            image_concurrency: settings.image_concurrency,
            jobs_in_flight: settings.jobs_in_flight,
            later_step: settings.later_step,
            later_jobs_in_flight: settings.later_jobs_in_flight,
            main_full: AtomicBool::new(false),
            first_step_shown: Notify::new(),
            images_at_once: Arc::new(Semaphore::new(
                (settings.jobs_in_flight * settings.image_concurrency).max(1),
            )),
            metrics: ProcessorMetrics::for_levels(settings.retry_delays.len()),
            stall_after: settings.stall_after,
            health: Default::default(),
        }))
    }

    /// Whether first steps wait now: for a core, for memory, for a download slot, or on
    /// the main topic behind a full consumer. An image whose first step is made while they
    /// do defers its second step (`IMAGE_LATER_STEP=auto`).
    fn first_steps_waiting(&self) -> bool {
        self.cores.first_step_waiting()
            || self.decode_memory.source_waiting()
            || self.images_at_once.available_permits() == 0
            || self.main_full.load(Ordering::Relaxed)
    }

    /// Handles one record; true when its outcome is durable and the offset may be stored.
    pub async fn handle(
        &self,
        message: &impl Message,
        lane: Lane,
        shutdown: &CancellationToken,
    ) -> bool {
        let job = match job::decode(message) {
            Ok(Decoded::Job(job)) => job,
            Ok(Decoded::Deleted(deletion)) => {
                let span = platform::telemetry::consumer_span(
                    message.topic(),
                    message.offset(),
                    deletion.envelope.traceparent.as_deref(),
                    &deletion.product_id,
                );
                return tracing::Instrument::instrument(
                    self.delete_product_images(&deletion, shutdown),
                    span,
                )
                .await;
            }
            Ok(Decoded::Nothing(event_type)) => {
                tracing::debug!(
                    event_type = event_type.as_str(),
                    "Nothing to do for this event."
                );
                return true;
            }
            Err(reason) => {
                tracing::error!(
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    reason,
                    "Dead-lettering an unreadable record."
                );
                let raw = RawRecord::of(message);
                let origin = job::Origin {
                    topic: message.topic().to_owned(),
                    partition: message.partition(),
                    offset: message.offset(),
                };
                self.metrics
                    .dead_letters
                    .get_or_create(&OutcomeLabels {
                        outcome: "permanent",
                    })
                    .inc();
                let record = self.dead_letter(
                    &raw,
                    &origin,
                    &format!("unreadable: {reason}"),
                    "permanent",
                    1,
                    None,
                );
                return self.send_durably(record, shutdown).await;
            }
        };
        let span = platform::telemetry::consumer_span(
            message.topic(),
            message.offset(),
            job.envelope.traceparent.as_deref(),
            &job.product_id,
        );
        span.record("attempt", job.attempt);
        tracing::Instrument::instrument(self.handle_job(&job, lane, shutdown), span).await
    }

    /// Processes a decoded job inside its span; true when the outcome is durable.
    async fn handle_job(&self, job: &Job, lane: Lane, shutdown: &CancellationToken) -> bool {
        if matches!(lane, Lane::Retry(_)) && !self.wait_until_due(job, shutdown).await {
            return false;
        }
        if self.superseded(job, false).await {
            return true;
        }
        let process::Outcomes {
            finished: mut results,
            deferred,
            unfinished,
        } = self.process(job, shutdown).await;
        if self.superseded(job, true).await {
            return true;
        }
        // One decision per failed image; the transient ones of one job share their step.
        let mut retry = None;
        let mut given_up = Vec::new();
        let mut retried = Vec::new();
        for image in unfinished {
            if shutdown.is_cancelled() {
                // Interrupted, not failed: the record is processed again after the restart.
                return false;
            }
            match next_step(job.attempt, &image.failure, &self.retry_delays) {
                Step::Fail { reason } => {
                    self.metrics.image("failed");
                    tracing::warn!(product_id = %job.product_id, index = image.image.index, reason, shown = image.shown.is_some(), "Image failed permanently.");
                    results.push(image.given_up(reason));
                }
                Step::Retry { level, delay } => {
                    retry = Some((level, delay));
                    retried.push(image);
                }
                Step::DeadLetter { reason } => {
                    self.metrics.image("gave_up");
                    given_up.push((image.image.clone(), image.failure.clone()));
                    results.push(image.given_up(reason));
                }
            }
        }
        results.sort_by_key(|r| r.index);
        let mut outgoing = Vec::new();
        if !deferred.is_empty() {
            outgoing.push(self.later_step_record(job, &deferred));
        }
        let first_failure = || {
            job.first_failure_at
                .clone()
                .unwrap_or_else(|| Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true))
        };
        if let Some((level, delay)) = retry {
            let retried: Vec<_> = retried
                .into_iter()
                .map(|image| (image.image, image.failure))
                .collect();
            let (reason, delay) = (reasons(&retried), jittered(delay));
            tracing::warn!(
                product_id = %job.product_id,
                attempt = job.attempt,
                retry_level = level,
                delay_ms = delay.as_millis() as u64,
                reason,
                "Retry scheduled."
            );
            self.metrics
                .retries
                .get_or_create(&LevelLabels {
                    level: level as u32,
                })
                .inc();
            outgoing.push(self.retry(job, &retried, level, delay, &reason, &first_failure()));
        }
        if !given_up.is_empty() {
            let reason = reasons(&given_up);
            tracing::error!(
                product_id = %job.product_id,
                attempts = job.attempt,
                reason,
                "Retries exhausted; dead-lettering."
            );
            self.metrics
                .dead_letters
                .get_or_create(&OutcomeLabels {
                    outcome: "transient",
                })
                .inc();
            outgoing.push(self.dead_letter(
                &job.raw,
                &job.origin,
                &reason,
                "transient",
                job.attempt,
                Some(&first_failure()),
            ));
        }
        let reported = !results.is_empty();
        if reported {
            outgoing.push(self.images_compressed(job, results));
        }
        for record in outgoing {
            if !self.send_durably(record, shutdown).await {
                return false;
            }
        }
        if reported {
            self.delete_older_revisions(job).await;
        }
        true
    }

    /// Sleeps until the retry record's `x-not-before`; false if shutdown came first.
    async fn wait_until_due(&self, job: &Job, shutdown: &CancellationToken) -> bool {
        let due = job
            .raw
            .header(headers::NOT_BEFORE)
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc));
        if let Some(wait) = due.and_then(|due| (due - Utc::now()).to_std().ok()) {
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        true
    }
}

/// The failures of a job, for logs and headers: `image 0: <reason>; image 2: <reason>`.
fn reasons(failures: &[(SourceImage, Failure)]) -> String {
    failures
        .iter()
        .map(|(image, failure)| format!("image {}: {failure}", image.index))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Equal jitter: between half the delay and the whole, so delays still grow level by level
/// while retries of many jobs spread out.
pub fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(rand::random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_between_half_and_the_whole_delay() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_secs(10));
            assert!(
                d >= Duration::from_secs(5) && d <= Duration::from_secs(10),
                "{d:?}"
            );
        }
    }
}
