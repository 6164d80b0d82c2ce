//! The asynchronous half, end to end: real broker, PostgreSQL, object storage (a directory
//! the api serves) and images served over HTTP by the test.

mod alerts;
mod broker_outage;
mod broker_volume;
mod cleanup;
mod crashes;
mod drills;
mod failures;
mod feed;
mod happy;
mod operations;
mod projector;
mod s3;
mod steps;
mod tls;
