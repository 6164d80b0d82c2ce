//! What the cache is configured with, and what it counts.

use std::time::Duration;

use prometheus_client::metrics::{counter::Counter, gauge::Gauge};

/// Cache configuration.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// `REDIS_URL`.
    pub url: String,
    /// Prefix of every key (`REDIS_KEY_PREFIX`), so environments and tests can share a server.
    pub key_prefix: String,
    /// How long an entry (and an invalidation marker) lives (`CACHE_TTL_SECS`).
    pub ttl: Duration,
    /// The longest any Redis command may take before the database answers instead
    /// (`REDIS_TIMEOUT_MS`).
    pub timeout: Duration,
    /// Connections to Redis, used round-robin (`REDIS_POOL_SIZE`).
    pub pool_size: usize,
    /// For a `rediss://` URL: a PEM file of the CAs the server's certificate must chain to,
    /// instead of the system's (`REDIS_TLS_CA_FILE`).
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Memory for the in-process near cache in front of Redis, in bytes; 0 turns it off
    /// (`CACHE_LOCAL_MAX_MB`).
    pub local_max_bytes: u64,
    /// The longest a load from the database may run, whoever still waits for it
    /// (`REQUEST_TIMEOUT_SECS`).
    pub load_timeout: Duration,
}

/// Counters of the cache, exported as metrics and read by tests.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: Counter,
    pub misses: Counter,
    /// Redis commands that failed or timed out.
    pub errors: Counter,
    /// Products read from PostgreSQL by the cache's loader.
    pub db_loads: Counter,
    /// Hits answered from this replica's memory (also counted in `hits`).
    pub local_hits: Counter,
    /// Times the near cache was emptied at once: tracking lost, or Redis flushed.
    pub local_flushes: Counter,
    /// 1 while Redis tracks this replica's keys, so the near cache serves; 0 otherwise.
    pub local_tracking: Gauge,
}
