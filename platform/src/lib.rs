//! What every binary of the catalog shares: reading settings from the environment,
//! structured telemetry, and the signal that starts a graceful shutdown.
//!
//! This crate has no knowledge of products, HTTP routes or topics; it only holds the
//! plumbing that the api and the image-processor would otherwise each write again.

pub mod backoff;
pub mod dependencies;
pub mod env;
pub mod kafka;
pub mod metrics;
pub mod shutdown;
pub mod supervise;
pub mod telemetry;
pub mod tls;
