//! The api's settings, from the environment (and `.env` for local runs). `.env.example` lists
//! every key with its default.

use std::{net::SocketAddr, time::Duration};

use platform::{env, kafka::KafkaSettings};

use crate::{
    cache::CacheSettings, db::DatabaseSettings, outbox::prune::PruneSettings, server::HttpSettings,
};

/// Everything the api is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the HTTP server listens (`API_ADDR`).
    pub addr: SocketAddr,
    /// Where `/metrics` is served, apart from the API (`METRICS_ADDR`, default
    /// 127.0.0.1:9464): what Prometheus scrapes is not on the address clients reach.
    pub metrics_addr: SocketAddr,
    /// PostgreSQL (`POSTGRES_URL`, `POSTGRES_POOL_SIZE`).
    pub database: DatabaseSettings,
    /// The most image URLs one product may have (`MAX_IMAGES_PER_PRODUCT`).
    pub max_images_per_product: usize,
    /// The largest request body accepted, in bytes (`MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// The HTTP server's timeouts and connection cap.
    pub http: HttpSettings,
    /// How long in-flight requests may finish after SIGTERM (`SHUTDOWN_GRACE_SECS`).
    pub shutdown_grace: Duration,
    /// Kafka, for the outbox relay and the projector; `None` runs the HTTP API alone (tests).
    pub kafka: Option<KafkaSettings>,
    /// The projector's consumer group (`PROJECTOR_GROUP`).
    pub projector_group: String,
    /// The projector's group with records waiting and no progress for this long is stuck:
    /// its consumer is recreated and readiness fails meanwhile (`CONSUMER_STALL_SECS`,
    /// default 45, as the processor's).
    pub consumer_stall_after: Duration,
    /// How often the outbox relay looks for rows other replicas wrote (`OUTBOX_POLL_MS`).
    pub outbox_poll: Duration,
    /// How long published outbox rows and applied-event records are kept.
    pub prune: PruneSettings,
    /// The Redis cache of `GET /products/{id}`; `None` when `CACHE_ENABLED=false`.
    pub cache: Option<CacheSettings>,
    /// A local store whose `images/` (the variants, not the references beside them) is
    /// served under `/images/` (from `IMAGE_STORAGE_URL` when it is `file://…`).
    pub serve_images_from: Option<std::path::PathBuf>,
    /// The issuer whose access tokens the api trusts (`AUTH_*`); serving requires it.
    pub auth: Option<crate::auth::AuthSettings>,
}

fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        let defaults = HttpSettings::default();
        let http = HttpSettings {
            request_timeout: Duration::from_secs(env::parse(
                "REQUEST_TIMEOUT_SECS",
                defaults.request_timeout.as_secs(),
            )?),
            header_read_timeout: Duration::from_secs(env::parse(
                "HTTP_HEADER_READ_TIMEOUT_SECS",
                defaults.header_read_timeout.as_secs(),
            )?),
            idle_timeout: Duration::from_secs(env::parse(
                "HTTP_IDLE_TIMEOUT_SECS",
                defaults.idle_timeout.as_secs(),
            )?),
            max_connections: env::parse("HTTP_MAX_CONNECTIONS", defaults.max_connections)?,
        };
        let settings = Self {
            addr: env::parse("API_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            metrics_addr: env::parse("METRICS_ADDR", SocketAddr::from(([127, 0, 0, 1], 9464)))?,
            database: DatabaseSettings {
                url: env::string("POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/catalog"),
                pool_size: env::parse("POSTGRES_POOL_SIZE", 16)?,
                acquire_timeout: Duration::from_secs(env::parse(
                    "POSTGRES_ACQUIRE_TIMEOUT_SECS",
                    5,
                )?),
                tls_ca_file: env::optional("POSTGRES_TLS_CA_FILE").map(std::path::PathBuf::from),
            },
            max_images_per_product: env::parse("MAX_IMAGES_PER_PRODUCT", 10)?,
            max_body_bytes: env::parse("MAX_BODY_BYTES", 64 * 1024)?,
            shutdown_grace: Duration::from_secs(env::parse("SHUTDOWN_GRACE_SECS", 20)?),
            http: http.clone(),
            kafka: Some(KafkaSettings::from_env()?),
            projector_group: env::string("PROJECTOR_GROUP", "catalog-api-projector"),
            consumer_stall_after: platform::kafka::watchdog::stall_limit_from_env(45)?,
            outbox_poll: Duration::from_millis(env::parse("OUTBOX_POLL_MS", 1000)?),
            prune: PruneSettings {
                outbox_retention: hours(env::parse("OUTBOX_RETENTION_HOURS", 168)?),
                applied_events_retention: hours(env::parse("APPLIED_EVENTS_RETENTION_HOURS", 168)?),
                interval: Duration::from_secs(600),
                batch_size: 1000,
            },
            cache: env::parse("CACHE_ENABLED", true)?
                .then(|| -> anyhow::Result<CacheSettings> {
                    Ok(CacheSettings {
                        url: env::string("REDIS_URL", "redis://127.0.0.1:6379"),
                        key_prefix: env::string("REDIS_KEY_PREFIX", "catalog:"),
                        ttl: Duration::from_secs(env::parse("CACHE_TTL_SECS", 300)?),
                        timeout: Duration::from_millis(env::parse("REDIS_TIMEOUT_MS", 200)?),
                        pool_size: env::parse("REDIS_POOL_SIZE", 4)?,
                        tls_ca_file: env::optional("REDIS_TLS_CA_FILE")
                            .map(std::path::PathBuf::from),
                        local_max_bytes: env::parse("CACHE_LOCAL_MAX_MB", 64_u64)?
                            .saturating_mul(1024 * 1024),
                        load_timeout: http.request_timeout,
                    })
                })
                .transpose()?,
            serve_images_from: env::string("IMAGE_STORAGE_URL", "file://.local/storage")
                .strip_prefix("file://")
                .map(std::path::PathBuf::from),
            auth: crate::auth::AuthSettings::from_env()?,
        };
        anyhow::ensure!(
            (1..=100).contains(&settings.max_images_per_product),
            "MAX_IMAGES_PER_PRODUCT must be between 1 and 100"
        );
        anyhow::ensure!(
            settings.prune.applied_events_retention >= hours(1),
            "APPLIED_EVENTS_RETENTION_HOURS must be at least 1: the ids detect redelivered events"
        );
        anyhow::ensure!(
            settings.max_body_bytes >= 1024,
            "MAX_BODY_BYTES must be at least 1024"
        );
        anyhow::ensure!(
            settings.http.request_timeout >= Duration::from_secs(1)
                && settings.http.header_read_timeout >= Duration::from_secs(1),
            "REQUEST_TIMEOUT_SECS and HTTP_HEADER_READ_TIMEOUT_SECS must be at least 1"
        );
        anyhow::ensure!(
            settings.http.idle_timeout > settings.http.request_timeout,
            "HTTP_IDLE_TIMEOUT_SECS must exceed REQUEST_TIMEOUT_SECS: a request in progress \
             may leave its connection quiet for that long"
        );
        anyhow::ensure!(
            settings.http.max_connections >= 1,
            "HTTP_MAX_CONNECTIONS must be at least 1"
        );
        anyhow::ensure!(
            settings.database.pool_size >= 1,
            "POSTGRES_POOL_SIZE must be at least 1"
        );
        Ok(settings)
    }

    /// Logs the settings once, secrets redacted.
    pub fn log(&self) {
        tracing::info!(
            addr = %self.addr,
            postgres = %env::redact(&self.database.url),
            pool_size = self.database.pool_size,
            max_images_per_product = self.max_images_per_product,
            max_body_bytes = self.max_body_bytes,
            request_timeout_secs = self.http.request_timeout.as_secs(),
            header_read_timeout_secs = self.http.header_read_timeout.as_secs(),
            idle_timeout_secs = self.http.idle_timeout.as_secs(),
            max_connections = self.http.max_connections,
            kafka = self.kafka.as_ref().map(|k| k.brokers.as_str()),
            topic_prefix = self.kafka.as_ref().map(|k| k.topic_prefix.as_str()),
            kafka_security = self.kafka.as_ref().map(|k| k.security.describe()),
            serve_images_from = ?self.serve_images_from,
            auth_issuer = self.auth.as_ref().map(|a| a.issuer.as_str()),
            auth_audience = self.auth.as_ref().map(|a| a.audience.as_str()),
            redis = self.cache.as_ref().map(|c| env::redact(&c.url)),
            redis_tls = self.cache.as_ref().map(|c| c.url.starts_with("rediss://")),
            cache_ttl_secs = self.cache.as_ref().map(|c| c.ttl.as_secs()),
            cache_local_max_mb = self.cache.as_ref().map(|c| c.local_max_bytes >> 20),
            "Settings loaded."
        );
    }
}
