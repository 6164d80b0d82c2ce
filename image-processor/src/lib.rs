//! The image-processor: a Kafka consumer group that turns each product's image URLs into
//! compressed images in object storage and reports them as `ImagesCompressed`.
//!
//! - [`fetch`] downloads an image, refusing non-public addresses (checked on the address
//!   actually connected to, and on every redirect) and enforcing size and time limits.
//! - [`transform`] sniffs, decodes with pixel limits, orients, resizes and encodes to WebP.
//! - [`content`] stores each source's variants once, under the digest of its bytes and the
//!   settings, and deletes what no product refers to; [`storage`] is the object store.
//! - [`failure`] decides, in one place, whether a failure is retried or final.
//! - [`worker`] runs the consumers of the main and retry topics, produces results, retries and
//!   dead letters, and stores an offset only once the outcome is durable.
//! - [`dlq`] lists and redrives dead letters.
//! - [`startup`] assembles them into the [`Application`] that `main.rs` and the tests run.

pub mod content;
pub mod dlq;
pub mod failure;
pub mod fetch;
pub mod http;
pub mod job;
pub mod metrics;
pub mod settings;
pub mod startup;
pub mod storage;
pub mod transform;
pub mod worker;

pub use startup::Application;
