//! Kafka header names. The `ce_` ones are the CloudEvents Kafka binding's; the `x-` ones are
//! the image-processor's retry and dead-letter bookkeeping.

/// CloudEvents spec version (`1.0`).
pub const CE_SPECVERSION: &str = "ce_specversion";
/// The event's unique id (a UUID); consumers deduplicate on it.
pub const CE_ID: &str = "ce_id";
/// The versioned event type, e.g. `com.catalog.product.created.v1`.
pub const CE_TYPE: &str = "ce_type";
/// Who emitted the event, e.g. `/catalog/api`.
pub const CE_SOURCE: &str = "ce_source";
/// When the event happened (RFC 3339).
pub const CE_TIME: &str = "ce_time";
/// The product id the event is about.
pub const CE_SUBJECT: &str = "ce_subject";
/// The payload's media type, `application/json`.
pub const CONTENT_TYPE: &str = "content-type";
/// On results (`ImagesCompressed`): when the change that asked for them was committed, the
/// `ce_time` of the event they answer (a CloudEvents extension attribute). Subtracted from
/// the time a result is applied, it is the pipeline's freshness.
pub const CE_CAUSETIME: &str = "ce_causetime";
/// W3C trace context of the request that caused the event.
pub const TRACEPARENT: &str = "traceparent";

/// How many times the job has been attempted (1 for the first try).
pub const ATTEMPT: &str = "x-attempt";
/// The earliest time (RFC 3339) a retry record may be processed.
pub const NOT_BEFORE: &str = "x-not-before";
/// Why the last attempt failed (dead letters and retries).
pub const ERROR: &str = "x-error";
/// `transient` or `permanent` (dead letters).
pub const ERROR_KIND: &str = "x-error-kind";
/// Where the job first came from: topic, partition and offset.
pub const ORIGIN_TOPIC: &str = "x-origin-topic";
pub const ORIGIN_PARTITION: &str = "x-origin-partition";
pub const ORIGIN_OFFSET: &str = "x-origin-offset";
/// Which images (comma-separated positions) a retry record is for; absent means all.
pub const IMAGES: &str = "x-images";
/// `later` on a deferred second step: the image's first step is shown, and only the
/// formats that follow it are still to make.
pub const STEP: &str = "x-step";
/// On a deferred second step: the content each image's downloaded source was kept under,
/// `<index>:<content>` comma-separated, read instead of downloading it again.
pub const SOURCES: &str = "x-sources";
/// When the job first failed (RFC 3339).
pub const FIRST_FAILURE_AT: &str = "x-first-failure-at";
/// On a product event republished from the dead-letter topic (`dlq redrive`): when
/// (RFC 3339). Such a record may be older than its product's latest state.
pub const REDRIVEN_AT: &str = "x-redriven-at";
