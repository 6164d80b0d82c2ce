//! Prometheus metrics of the image-processor, served at `/metrics` by [`crate::http`].
//! Labels stay low-cardinality: outcomes, stages, topics and partitions, never product ids.

use std::sync::Arc;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

pub use platform::{
    kafka::watchdog::ConsumerLabels,
    metrics::{ConsumerLag, OutcomeLabels, PartitionLabels},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LevelLabels {
    pub level: u32,
}

/// Every metric of the processor.
pub struct ProcessorMetrics {
    registry: Registry,
    /// Images by final outcome: `compressed`, `failed` (permanent), `gave_up` (retries used up).
    pub images: Family<OutcomeLabels, Counter>,
    /// Time per stage: `download`, `decode_admission` (waiting for `IMAGE_DECODE_MEMORY_MB`),
    /// `core_wait_first` and `core_wait_later` (each decode or width waiting for a CPU permit,
    /// by step),
    /// `compress`, `store`.
    pub stage_seconds: Family<StageLabels, Histogram, fn() -> Histogram>,
    /// Jobs sent to a retry topic, by retry level.
    pub retries: Family<LevelLabels, Counter>,
    /// Records sent to the dead-letter topic, by kind (`transient`, `permanent`).
    pub dead_letters: Family<OutcomeLabels, Counter>,
    /// Records behind the high watermark, per partition of each consumer's topic: the
    /// group's, from its committed offsets (every replica reports every partition).
    pub consumer_lag: ConsumerLag,
    /// Stored images deleted, by why: `product_deleted`, `older_revision`.
    pub images_deleted: Family<OutcomeLabels, Counter>,
    /// Late jobs (retries, redrives) dropped before storing anything, by why:
    /// `product_deleted`, `newer_revision`.
    pub jobs_superseded: Family<OutcomeLabels, Counter>,
    /// Consumers whose group was found stuck (records waiting, no progress) and recreated,
    /// by consumer (`main`, `retry-N`).
    pub consumer_stalls: Family<ConsumerLabels, Counter>,
    /// Panics of supervised tasks (the consumers), by task; each was restarted.
    pub task_panics: platform::supervise::TaskPanics,
    /// Whether the broker and the object store answered the last check.
    pub dependency_up: platform::dependencies::DependencyUp,
}

fn stage_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl ProcessorMetrics {
    /// Every metric, with each counter's known label values at 0 for `retry_levels` retry
    /// levels: a family with no series yet is not exported at all, and `increase()` cannot
    /// see a counter's first step from nothing (dashboards and alerts would read neither).
    /// Each consumer's own counters (stalls, panics) start where it is started.
    pub fn for_levels(retry_levels: usize) -> Arc<Self> {
        let metrics = Self::new();
        for outcome in ["compressed", "reused", "failed", "gave_up"] {
            let _ = metrics.images.get_or_create(&OutcomeLabels { outcome });
        }
        for outcome in ["transient", "permanent"] {
            let _ = metrics
                .dead_letters
                .get_or_create(&OutcomeLabels { outcome });
        }
        for outcome in ["product_deleted", "older_revision", "unreferenced"] {
            let _ = metrics
                .images_deleted
                .get_or_create(&OutcomeLabels { outcome });
        }
        for outcome in ["product_deleted", "newer_revision"] {
            let _ = metrics
                .jobs_superseded
                .get_or_create(&OutcomeLabels { outcome });
        }
        for level in 1..=retry_levels {
            let _ = metrics.retries.get_or_create(&LevelLabels {
                level: level as u32,
            });
        }
        metrics
    }

    pub fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let metrics = Self {
            registry: Registry::default(),
            images: Family::default(),
            stage_seconds: Family::new_with_constructor(stage_histogram),
            retries: Family::default(),
            dead_letters: Family::default(),
            consumer_lag: Family::default(),
            images_deleted: Family::default(),
            jobs_superseded: Family::default(),
            consumer_stalls: Family::default(),
            task_panics: Family::default(),
            dependency_up: Family::default(),
        };
        registry.register("images", "Images by final outcome", metrics.images.clone());
        registry.register(
            "image_stage_duration_seconds",
            "Time per processing stage",
            metrics.stage_seconds.clone(),
        );
        registry.register(
            "retries",
            "Jobs sent to a retry topic, by level",
            metrics.retries.clone(),
        );
        registry.register(
            "dead_letters",
            "Records sent to the dead-letter topic, by kind",
            metrics.dead_letters.clone(),
        );
        registry.register(
            "consumer_lag",
            "Records behind the high watermark per partition",
            metrics.consumer_lag.clone(),
        );
        registry.register(
            "stored_images_deleted",
            "Stored images deleted: of deleted products, or of replaced image revisions",
            metrics.images_deleted.clone(),
        );
        registry.register(
            "jobs_superseded",
            "Retried or redriven jobs dropped before storing anything: the product was deleted, or has newer images",
            metrics.jobs_superseded.clone(),
        );
        registry.register(
            "consumer_stalls",
            "Consumers that made no progress with records waiting for CONSUMER_STALL_SECS, and were recreated",
            metrics.consumer_stalls.clone(),
        );
        registry.register(
            "dependency_up",
            "1 when the dependency (kafka, object_store) answered its last check (every 10 s, 2 s timeout), else 0",
            metrics.dependency_up.clone(),
        );
        registry.register(
            "background_task_panics",
            "Panics of the consumers' tasks, by task; each was restarted",
            metrics.task_panics.clone(),
        );
        Arc::new(Self {
            registry,
            ..metrics
        })
    }

    pub fn render(&self) -> String {
        platform::metrics::render(&self.registry)
    }

    pub fn stage(&self, stage: &'static str, seconds: f64) {
        self.stage_seconds
            .get_or_create(&StageLabels { stage })
            .observe(seconds);
    }

    pub fn image(&self, outcome: &'static str) {
        self.images.get_or_create(&OutcomeLabels { outcome }).inc();
    }
}
