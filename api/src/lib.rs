//! The catalog's HTTP API: users and products on PostgreSQL, with RFC 7807 errors and a
//! generated OpenAPI document.
//!
//! `main.rs` only loads settings, starts telemetry and runs [`startup::Application`]; tests
//! build the same application on port 0 against a database of their own.

pub mod auth;
pub mod cache;
pub mod db;
pub mod docs;
pub mod domain;
pub mod error;
pub mod feed;
pub mod metrics;
mod middleware;
pub mod outbox;
pub mod products;
pub mod projector;
pub mod routes;
pub mod server;
pub mod settings;
pub mod startup;
pub mod users;
