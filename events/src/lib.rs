//! The catalog's wire contracts, for the services here and for any downstream subscriber.
//!
//! Events travel on Kafka in the CloudEvents Kafka protocol binding, binary content mode: the
//! record value is the JSON payload, the record key is the product id (so every event of one
//! product lands on one partition, in order), and the CloudEvents attributes travel as
//! `ce_*` headers ([`headers`]). Payload types carry their JSON Schema (`schemas/`), generated
//! from these types and checked by a test.
//!
//! This crate has no HTTP, database or Kafka client code, so a subscriber can depend on it
//! alone. Its `openapi` feature (off by default) adds poem-openapi's derives to the types
//! the api also serves over HTTP, so that one type has one shape on both.

pub mod asyncapi;
pub mod compat;
pub mod envelope;
pub mod headers;
pub mod payloads;
pub mod schema;
pub mod topics;

pub use envelope::{Envelope, EventType};
pub use payloads::{
    ImageDetails, ImageOutcome, ImageResult, ImageState, ImageStatus, ImageVariant,
    ImagesCompressed, ProcessingStatus, ProductCreated, ProductDeleted, ProductImagesChanged,
    ProductState, SourceImage, srcset,
};
pub use topics::Topics;
