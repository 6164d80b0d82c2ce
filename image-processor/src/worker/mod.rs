//! The consumers: the main topic and one per retry level, all handled by one [`Worker`].
//!
//! For every job the worker processes the images it names, then makes the outcome durable
//! before the offset is stored:
//! - finished images (compressed or permanently failed) go out as one `ImagesCompressed`;
//! - images that failed transiently go to the next retry topic, with a growing, jittered
//!   delay, unless the retries are used up: then the original record goes to the dead-letter
//!   topic and those images are reported failed with the reason;
//! - a record that cannot be read goes to the dead-letter topic as it is;
//! - a deleted product's stored images are deleted ([`cleanup`]), and so are a product's
//!   images of earlier revisions once a newer revision's results are out.
//!
//! Retry topics are consumed by their own consumers, so a delayed retry never holds up the
//! main topic. Each retry topic holds records of one delay, in order, so waiting for the
//! head record's due time is waiting for the earliest due record.

mod cleanup;
mod consume;
mod in_flight;
mod outgoing;

pub use consume::run;

use std::{sync::Arc, time::Duration};

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use events::{ImageOutcome, ImageResult, ImageVariant, SourceImage, Topics, headers};
use futures_util::StreamExt;
use rdkafka::{Message, producer::FutureProducer};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::{
    content::{ContentStore, Found, Manifest, StoredVariant},
    failure::Failure,
    fetch::Fetcher,
    job::{self, Decoded, Job, RawRecord},
    metrics::{LevelLabels, OutcomeLabels, ProcessorMetrics},
    storage::Storage,
    transform::{self, OutputFormat, TransformSettings},
};

/// Source of the events the processor emits (`ce_source`).
pub const SOURCE: &str = "/catalog/image-processor";

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
    /// Bounds decoding/encoding running at once (CPU).
    pub cpu: Arc<Semaphore>,
    /// Bounds the memory of the images being decoded and compressed: one permit per MiB of
    /// each source's estimated peak.
    pub decode_memory: DecodeBudget,
    /// Downloads of one job in flight at once.
    pub image_concurrency: usize,
    /// Records (products) of one consumer processed at once.
    pub jobs_in_flight: usize,
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

/// The memory budget of decoding and compressing, shared by all consumers: a source is
/// admitted with its estimated peak memory, in MiB permits, so a few large sources or many
/// small ones decode at once, never more than the budget (`IMAGE_DECODE_MEMORY_MB`). A source
/// larger than the whole budget waits for all of it and then runs alone.
#[derive(Debug, Clone)]
pub struct DecodeBudget {
    permits: Arc<Semaphore>,
    mebibytes: u32,
}

/// Whole MiB (rounded up, at least one), as permits count them.
fn permits_for(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1 << 20))
        .unwrap_or(u32::MAX)
        .max(1)
}

impl DecodeBudget {
    pub fn new(bytes: u64) -> Self {
        let mebibytes = permits_for(bytes);
        Self {
            permits: Arc::new(Semaphore::new(mebibytes as usize)),
            mebibytes,
        }
    }

    /// Waits until `bytes` (at most the whole budget) are free and holds them until the
    /// permit is dropped.
    pub async fn admit(&self, bytes: u64) -> tokio::sync::OwnedSemaphorePermit {
        let wanted = permits_for(bytes).min(self.mebibytes);
        self.permits
            .clone()
            .acquire_many_owned(wanted)
            .await
            .expect("the semaphore is never closed")
    }

    /// MiB not held by any source now.
    #[cfg(test)]
    fn available_mebibytes(&self) -> usize {
        self.permits.available_permits()
    }
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
            cpu: Arc::new(Semaphore::new(settings.cpu_workers.max(1))),
            decode_memory: DecodeBudget::new(settings.decode_memory),
            image_concurrency: settings.image_concurrency,
            jobs_in_flight: settings.jobs_in_flight,
            images_at_once: Arc::new(Semaphore::new(
                (settings.jobs_in_flight * settings.image_concurrency).max(1),
            )),
            metrics: ProcessorMetrics::new(),
            stall_after: settings.stall_after,
            health: Default::default(),
        }))
    }

    /// Handles one record; true when its outcome is durable and the offset may be stored.
    pub async fn handle(
        &self,
        message: &impl Message,
        level: usize,
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
        tracing::Instrument::instrument(self.handle_job(&job, level, shutdown), span).await
    }

    /// Processes a decoded job inside its span; true when the outcome is durable.
    async fn handle_job(&self, job: &Job, level: usize, shutdown: &CancellationToken) -> bool {
        if level > 0 && !self.wait_until_due(job, shutdown).await {
            return false;
        }
        if self.superseded(job, false).await {
            return true;
        }
        let (finished, transient) = self.process(job).await;
        if self.superseded(job, true).await {
            return true;
        }
        let mut outgoing = Vec::new();
        let mut results = finished;
        if !transient.is_empty() {
            let reason = transient
                .iter()
                .map(|(i, f)| format!("image {}: {f}", i.index))
                .collect::<Vec<_>>()
                .join("; ");
            let first_failure = job
                .first_failure_at
                .clone()
                .unwrap_or_else(|| Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true));
            let next_level = job.attempt as usize; // attempt 1 failed → retry level 1
            if next_level <= self.retry_delays.len() {
                let delay = jittered(self.retry_delays[next_level - 1]);
                tracing::warn!(
                    product_id = %job.product_id,
                    attempt = job.attempt,
                    retry_level = next_level,
                    delay_ms = delay.as_millis() as u64,
                    reason,
                    "Retry scheduled."
                );
                self.metrics
                    .retries
                    .get_or_create(&LevelLabels {
                        level: next_level as u32,
                    })
                    .inc();
                outgoing.push(self.retry(
                    job,
                    &transient,
                    next_level,
                    delay,
                    &reason,
                    &first_failure,
                ));
            } else {
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
                for _ in &transient {
                    self.metrics.image("gave_up");
                }
                outgoing.push(self.dead_letter(
                    &job.raw,
                    &job.origin,
                    &reason,
                    "transient",
                    job.attempt,
                    Some(&first_failure),
                ));
                results.extend(transient.iter().map(|(image, failure)| {
                    ImageResult::failed(
                        image.index,
                        image.url.clone(),
                        format!("gave up after {} attempts: {failure}", job.attempt),
                    )
                }));
            }
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

    /// Processes the job's images; returns final results and transient failures.
    async fn process(&self, job: &Job) -> (Vec<ImageResult>, Vec<(SourceImage, Failure)>) {
        let outcomes: Vec<(SourceImage, Result<Processed, Failure>)> =
            futures_util::stream::iter(job.images.clone())
                .map(|image| async move {
                    let outcome = self.process_image(job, &image).await;
                    (image, outcome)
                })
                .buffer_unordered(self.image_concurrency.max(1))
                .collect()
                .await;
        let mut finished = Vec::new();
        let mut transient = Vec::new();
        for (image, outcome) in outcomes {
            match outcome {
                Ok(Processed { result, reused }) => {
                    self.metrics
                        .image(if reused { "reused" } else { "compressed" });
                    finished.push(result);
                }
                Err(failure) if failure.is_transient() => transient.push((image, failure)),
                Err(failure) => {
                    self.metrics.image("failed");
                    tracing::warn!(product_id = %job.product_id, index = image.index, reason = %failure, "Image failed permanently.");
                    finished.push(ImageResult::failed(
                        image.index,
                        image.url.clone(),
                        failure.reason,
                    ));
                }
            }
        }
        finished.sort_by_key(|r| r.index);
        (finished, transient)
    }

    /// Processes one image.
    async fn process_image(&self, job: &Job, image: &SourceImage) -> Result<Processed, Failure> {
        // Bounds the downloaded bytes held by the whole process, whichever consumers are busy.
        let _slot = self
            .images_at_once
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let started = std::time::Instant::now();
        let host = url::Url::parse(&image.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        let fetch_span = tracing::info_span!("fetch", index = image.index, host = %host);
        let fetched = match tracing::Instrument::instrument(
            self.fetcher.fetch(&image.url),
            fetch_span,
        )
        .await
        {
            Ok(fetched) => fetched,
            Err(failure) => {
                tracing::info!(product_id = %job.product_id, index = image.index, host, reason = %failure, transient = failure.is_transient(), "Download failed.");
                return Err(failure);
            }
        };
        self.metrics
            .stage("download", started.elapsed().as_secs_f64());
        let bytes_before = fetched.bytes.len() as u64;
        tracing::info!(
            product_id = %job.product_id,
            index = image.index,
            host,
            bytes = bytes_before,
            ms = started.elapsed().as_millis() as u64,
            "Download succeeded."
        );
        let digest = self.content.digest(&fetched.bytes);
        let (content, manifest, reused) = match self.content.find(&digest).await? {
            Some((content, manifest, found)) => {
                tracing::info!(
                    product_id = %job.product_id,
                    index = image.index,
                    content = %content,
                    copied = found == Found::Copied,
                    "Reused the stored images of identical bytes."
                );
                (content, manifest, true)
            }
            None => {
                let content = ContentStore::content_id(&digest, self.content.epoch_now());
                let manifest = self
                    .compress_and_store(job, image, fetched, &content)
                    .await?;
                (content, manifest, false)
            }
        };
        // The reference before the result: once a product shows content, cleanup keeps it.
        self.content
            .refer(&job.product_id, job.revision, image.index, &content)
            .await?;
        Ok(Processed {
            result: self.image_result(image, bytes_before, &content, manifest),
            reused,
        })
    }

    /// Decodes, makes the ladder and stores it as `content` (the manifest last).
    async fn compress_and_store(
        &self,
        job: &Job,
        image: &SourceImage,
        fetched: crate::fetch::Fetched,
        content: &str,
    ) -> Result<Manifest, Failure> {
        let bytes_before = fetched.bytes.len() as u64;
        let settings = self.transform.clone();
        let header = match transform::inspect(&fetched.bytes, &settings) {
            Ok(header) => header,
            Err(failure) => {
                tracing::info!(product_id = %job.product_id, index = image.index, reason = %failure, "Compression failed.");
                return Err(failure);
            }
        };
        // Memory first, then a core: a source waiting for memory holds no core.
        let admission = std::time::Instant::now();
        let memory = self.decode_memory.admit(header.peak_bytes(&settings)).await;
        self.metrics
            .stage("decode_admission", admission.elapsed().as_secs_f64());
        let permit = self
            .cpu
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Failure::transient("shutting down"))?;
        let encode_started = std::time::Instant::now();
        let compress_span = tracing::info_span!("compress", index = image.index);
        let compressed = tokio::task::spawn_blocking(move || {
            let _permits = (memory, permit);
            let _span = compress_span.enter();
            transform::compress_inspected(&fetched.bytes, &header, &settings)
        })
        .await
        .map_err(|e| Failure::transient(format!("the compression task failed: {e}")))?;
        let compressed = match compressed {
            Ok(compressed) => compressed,
            Err(failure) => {
                tracing::info!(product_id = %job.product_id, index = image.index, reason = %failure, "Compression failed.");
                return Err(failure);
            }
        };
        self.metrics
            .stage("compress", encode_started.elapsed().as_secs_f64());
        let webp = compressed
            .largest(OutputFormat::Webp)
            .expect("WebP is always among the formats");
        tracing::info!(
            product_id = %job.product_id,
            index = image.index,
            variants = compressed.variants.len(),
            bytes_before,
            bytes_after = webp.bytes.len(),
            width = webp.width,
            height = webp.height,
            ms = encode_started.elapsed().as_millis() as u64,
            "Compression succeeded."
        );
        let store_started = std::time::Instant::now();
        let manifest = Manifest {
            source_width: compressed.source_width,
            source_height: compressed.source_height,
            thumbhash: base64::engine::general_purpose::STANDARD.encode(&compressed.thumbhash),
            dominant_color: compressed.dominant_color_hex(),
            variants: compressed
                .variants
                .iter()
                .map(|v| StoredVariant {
                    format: v.format.media_type().to_owned(),
                    width: v.width,
                    height: v.height,
                    bytes: v.bytes.len() as u64,
                    file: ContentStore::file_name(v.format, v.width),
                })
                .collect(),
        };
        futures_util::stream::iter(compressed.variants.into_iter().map(|variant| {
            let file = ContentStore::file_name(variant.format, variant.width);
            let span = tracing::info_span!("store", content = %content, file = %file);
            tracing::Instrument::instrument(
                async move {
                    self.content
                        .put_variant(content, &file, variant.bytes, variant.format.media_type())
                        .await
                },
                span,
            )
        }))
        .buffer_unordered(4)
        .collect::<Vec<Result<(), Failure>>>()
        .await
        .into_iter()
        .collect::<Result<(), _>>()?;
        self.content.put_manifest(content, &manifest).await?;
        self.metrics
            .stage("store", store_started.elapsed().as_secs_f64());
        Ok(manifest)
    }

    /// The result of an image shown by `content`.
    fn image_result(
        &self,
        image: &SourceImage,
        bytes_before: u64,
        content: &str,
        manifest: Manifest,
    ) -> ImageResult {
        let variants: Vec<ImageVariant> = manifest
            .variants
            .iter()
            .map(|v| ImageVariant {
                url: self.content.url(content, &v.file),
                format: v.format.clone(),
                width: v.width,
                height: v.height,
                bytes: v.bytes,
            })
            .collect();
        let webp = OutputFormat::Webp.media_type();
        let largest_webp = variants
            .iter()
            .filter(|v| v.format == webp)
            .max_by_key(|v| v.width)
            .cloned();
        ImageResult {
            index: image.index,
            source_url: image.url.clone(),
            outcome: ImageOutcome::Compressed,
            compressed_url: largest_webp.as_ref().map(|v| v.url.clone()),
            bytes_before: Some(bytes_before),
            bytes_after: largest_webp.as_ref().map(|v| v.bytes),
            width: largest_webp.as_ref().map(|v| v.width),
            height: largest_webp.as_ref().map(|v| v.height),
            format: Some(webp.to_owned()),
            source_width: Some(manifest.source_width),
            source_height: Some(manifest.source_height),
            srcset: events::srcset(
                variants
                    .iter()
                    .map(|v| (v.format.as_str(), v.url.as_str(), v.width)),
            ),
            variants,
            thumbhash: Some(manifest.thumbhash),
            dominant_color: Some(manifest.dominant_color),
            failure_reason: None,
        }
    }
}

/// A finished image.
struct Processed {
    result: ImageResult,
    /// Its content was already stored: made from the same bytes under the same settings,
    /// for this product or another.
    reused: bool,
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

    const MIB: u64 = 1 << 20;

    #[tokio::test]
    async fn sources_are_admitted_while_their_memory_fits_the_budget() {
        let budget = DecodeBudget::new(512 * MIB);
        let first = budget.admit(300 * MIB).await;
        let second = budget.admit(200 * MIB).await;
        assert_eq!(budget.available_mebibytes(), 12);
        // A third that does not fit waits until enough is released.
        let third = tokio::spawn({
            let budget = budget.clone();
            async move { budget.admit(100 * MIB).await }
        });
        tokio::task::yield_now().await;
        assert!(!third.is_finished());
        drop(second);
        let third = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("admitted once the second released its memory")
            .unwrap();
        drop((first, third));
        assert_eq!(budget.available_mebibytes(), 512);
    }

    #[tokio::test]
    async fn a_source_larger_than_the_budget_runs_alone() {
        let budget = DecodeBudget::new(512 * MIB);
        let huge = budget.admit(2048 * MIB).await;
        assert_eq!(budget.available_mebibytes(), 0);
        drop(huge);
        assert_eq!(budget.available_mebibytes(), 512);
    }
}
