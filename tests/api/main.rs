//! The HTTP API against a real PostgreSQL: one api and one database per test.

mod auth;
mod cache;
mod errors;
mod feed;
mod health;
mod list;
mod near_cache;
mod products;
mod prune;
mod resilience;
mod tls;
mod users;
