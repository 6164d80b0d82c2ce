//! The read-through Redis cache of `GET /products/{id}`.
//!
//! A hit returns the stored response bytes without touching PostgreSQL. A miss loads the
//! product once however many requests miss together (single flight, per process; the load
//! looks in Redis once more first, for requests that missed just before an earlier load
//! stored it), stores the bytes with the product's `version`, and returns them.
//!
//! Invalidation happens after commit on every write path and does not simply delete: it
//! leaves a marker holding the new version. Storing is a Lua script that refuses an entry
//! older than the marker or the entry present, so a reader that loaded the old row before a
//! write cannot put it back after the write's invalidation (the classic delete-then-stale-set
//! race). A deleted product's marker holds the highest version, so nothing older returns.
//!
//! In front of Redis, each replica keeps the hottest entries in memory ([`near`]), kept
//! coherent by Redis's own invalidation pushes (client tracking): a hit there costs no
//! round trip at all.
//!
//! Redis trouble is not an outage: every command has a short timeout (`REDIS_TIMEOUT_MS`);
//! a failure serves from the database, is counted, and is logged at most every few seconds.
//! The client reconnects by itself, and caching resumes with it. An invalidation Redis did
//! not confirm (it was away, or the connection carrying it was lost) is sent again every
//! 100 ms until it is, and this replica's reads of that product skip the cache meanwhile;
//! other replicas can read the old entry from Redis until the invalidation lands, that is
//! until shortly after Redis is reachable again (or, should the writing replica die first,
//! for at most the TTL).

mod near;
mod scripts;
mod single_flight;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use fred::{prelude::*, types::RespVersion};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};

pub use self::single_flight::FlightError;
use self::{near::NearCache, single_flight::SingleFlight};
use crate::db::DbError;

/// What a shared load of one product gives every request that waits for it.
type Loaded = Result<Option<Cached>, Arc<DbError>>;

/// The version a deleted product's marker holds: above any real version, and exact in the
/// doubles Lua computes with.
pub const DELETED: i64 = (1 << 53) - 1;

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

/// A cached response: the product's version and its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    pub version: i64,
    pub body: Bytes,
}

/// Whether a response came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Hit,
    Miss,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
        }
    }
}

/// The product cache; cheap to clone. Without Redis (`disabled`) every read is a miss.
#[derive(Clone)]
pub struct ProductCache {
    inner: Arc<Inner>,
}

struct Inner {
    client: Option<Pool>,
    near: Option<Arc<NearCache>>,
    settings: Option<CacheSettings>,
    stats: Arc<CacheStats>,
    flights: SingleFlight<Loaded>,
    last_warning_ms: AtomicU64,
    /// Invalidations Redis has not confirmed (product id → version), sent again until it
    /// does; reads of these products skip the cache meanwhile.
    pending: std::sync::Mutex<std::collections::HashMap<i64, i64>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ProductCache {
    /// Connects in the background: the api starts and serves even while Redis is down.
    pub fn connect(settings: CacheSettings) -> anyhow::Result<Self> {
        let pool = builder(&settings, RespVersion::RESP2)?.build_pool(settings.pool_size.max(1))?;
        for client in pool.clients() {
            connect_until_up(client.clone());
        }
        let stats = Arc::new(CacheStats::default());
        // In a Redis Cluster, broadcast tracking covers the keys of one node only: pushes for
        // the others would never come, so the near cache stays off there.
        let clustered = Config::from_url(&settings.url)?.server.is_clustered();
        if clustered && settings.local_max_bytes > 0 {
            tracing::warn!(
                "Near cache off: Redis Cluster is not supported by it (CACHE_LOCAL_MAX_MB)."
            );
        }
        let near = if settings.local_max_bytes > 0 && !clustered {
            let near = Arc::new(NearCache::new(
                settings.local_max_bytes,
                settings.ttl,
                format!("{}product:", settings.key_prefix),
                stats.clone(),
            ));
            // Tracking pushes need RESP3 and a connection of their own, with room for a
            // burst of pushes (falling behind empties the near cache).
            let mut tracking = builder(&settings, RespVersion::RESP3)?;
            tracking.with_performance_config(|p| p.broadcast_channel_capacity = 4096);
            let tracking = tracking.build()?;
            connect_until_up(tracking.clone());
            tokio::spawn(near::keep_tracking(
                Arc::downgrade(&near),
                tracking,
                settings.timeout,
            ));
            Some(near)
        } else {
            None
        };
        let cache = Self::with(Some(pool), near, Some(settings), stats);
        tokio::spawn(resend_invalidations(Arc::downgrade(&cache.inner)));
        Ok(cache)
    }

    /// No Redis: every read goes to the database (`X-Cache: miss`).
    pub fn disabled() -> Self {
        Self::with(None, None, None, Arc::default())
    }

    fn with(
        client: Option<Pool>,
        near: Option<Arc<NearCache>>,
        settings: Option<CacheSettings>,
        stats: Arc<CacheStats>,
    ) -> Self {
        let load_timeout = settings
            .as_ref()
            .map_or(Duration::from_secs(30), |s| s.load_timeout);
        Self {
            inner: Arc::new(Inner {
                client,
                near,
                settings,
                stats,
                flights: SingleFlight::new(load_timeout),
                last_warning_ms: AtomicU64::new(0),
                pending: Default::default(),
            }),
        }
    }

    /// Whether this replica keeps a near cache in memory (it may still be waiting for
    /// tracking to come on).
    pub fn has_near_cache(&self) -> bool {
        self.inner.near.is_some()
    }

    /// Products held in this replica's memory.
    pub fn local_entries(&self) -> u64 {
        self.inner
            .near
            .as_ref()
            .map_or(0, |near| near.entry_count())
    }

    pub fn stats(&self) -> Arc<CacheStats> {
        self.inner.stats.clone()
    }

    /// Connections to Redis that are up, and how many there are.
    pub fn connections(&self) -> (usize, usize) {
        self.inner.client.as_ref().map_or((0, 0), |pool| {
            let clients = pool.clients();
            (
                clients.iter().filter(|c| c.is_connected()).count(),
                clients.len(),
            )
        })
    }

    /// The key of product `id`, a connected client if there is one, and the settings.
    fn key(&self, id: i64) -> Option<(String, &Client, &CacheSettings)> {
        let (pool, settings) = (self.inner.client.as_ref()?, self.inner.settings.as_ref()?);
        Some((
            format!("{}product:{id}", settings.key_prefix),
            pool.next_connected(),
            settings,
        ))
    }

    /// Runs a Redis command on `client` within the timeout; `None` (counted, logged) on any
    /// failure. While the client is disconnected the command is not even sent: a command
    /// would wait in fred's queue for the reconnect until the timeout, and every request
    /// would pay it while Redis is away.
    async fn guarded<T>(
        &self,
        what: &'static str,
        client: &Client,
        command: impl Future<Output = Result<T, Error>>,
    ) -> Option<T> {
        let timeout = self.inner.settings.as_ref()?.timeout;
        if !client.is_connected() {
            self.failed(what, "not connected".to_owned());
            return None;
        }
        let span = tracing::info_span!(
            "redis",
            otel.name = format!("redis {what}"),
            otel.kind = "client",
            db.system = "redis",
            db.operation.name = what,
        );
        let command = tracing::Instrument::instrument(command, span);
        let error = match tokio::time::timeout(timeout, command).await {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {} ms", timeout.as_millis()),
        };
        self.failed(what, error);
        None
    }

    /// Counts a failed Redis command and logs it, at most every five seconds.
    fn failed(&self, what: &'static str, error: String) {
        self.inner.stats.errors.inc();
        let now = now_ms();
        let last = self.inner.last_warning_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 5_000
            && self
                .inner
                .last_warning_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let errors = self.inner.stats.errors.get();
            tracing::warn!(
                operation = what,
                error,
                errors_so_far = errors,
                "Redis unavailable; serving from the database."
            );
        }
    }

    /// The cached entry of product `id`, if there is one.
    pub async fn get(&self, id: i64) -> Option<Cached> {
        let (key, client, _) = self.key(id)?;
        let (version, body): (Option<i64>, Option<Bytes>) = self
            .guarded("get", client, client.hmget(key, vec!["v", "b"]))
            .await?;
        Some(Cached {
            version: version?,
            body: body?,
        })
    }

    /// Stores `entry` unless the cache already holds this or a newer version (or a newer
    /// invalidation); true when stored.
    pub async fn store(&self, id: i64, entry: &Cached) -> bool {
        let Some((key, client, settings)) = self.key(id) else {
            return false;
        };
        let args: Vec<Value> = vec![
            entry.version.into(),
            Value::Bytes(entry.body.clone()),
            (settings.ttl.as_millis() as i64).into(),
        ];
        let stored: Option<i64> = self
            .guarded("store", client, client.eval(scripts::STORE, key, args))
            .await;
        stored == Some(1)
    }

    /// Marks product `id` as changed to `version` (after the change committed): readers miss
    /// until an entry of at least that version is stored. When Redis does not confirm it (it
    /// is away, or the connection carrying the command was lost), the invalidation is kept
    /// and sent again until it does, and this replica's reads of the product skip the cache
    /// meanwhile, so none of them can be served the old product.
    pub async fn invalidate(&self, id: i64, version: i64) {
        if self.inner.client.is_none() {
            return;
        }
        let confirmed = self.send_invalidation(id, version).await;
        // This replica reads its own write at once; the others on Redis's push.
        if let Some(near) = &self.inner.near {
            near.forget(id);
        }
        if !confirmed {
            let mut pending = self.pending();
            let entry = pending.entry(id).or_insert(version);
            *entry = (*entry).max(version);
            tracing::warn!(
                product_id = id,
                version,
                "Cache invalidation failed; sending it again until Redis takes it, reads of the product skip the cache meanwhile."
            );
        }
    }

    /// Runs the invalidation script; true when Redis confirmed it.
    async fn send_invalidation(&self, id: i64, version: i64) -> bool {
        let Some((key, client, settings)) = self.key(id) else {
            return false;
        };
        let args: Vec<Value> = vec![version.into(), (settings.ttl.as_millis() as i64).into()];
        let done: Option<i64> = self
            .guarded(
                "invalidate",
                client,
                client.eval(scripts::INVALIDATE, key, args),
            )
            .await;
        done.is_some()
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<i64, i64>> {
        self.inner.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends the unconfirmed invalidations again; each one Redis confirms is done.
    async fn resend_pending(&self) {
        let pending: Vec<(i64, i64)> = self.pending().iter().map(|(k, v)| (*k, *v)).collect();
        for (id, version) in pending {
            if self.send_invalidation(id, version).await {
                let mut pending = self.pending();
                // A newer invalidation of the same product may have failed meanwhile.
                if pending.get(&id) == Some(&version) {
                    pending.remove(&id);
                }
                tracing::info!(
                    product_id = id,
                    version,
                    "Cache invalidation sent again and confirmed."
                );
            }
        }
    }

    /// The product's response, from the cache or loaded by `load` (once for all concurrent
    /// misses of one product, on a task of its own that outlives any request giving up, within
    /// `load_timeout`) and then stored. `load` answers `None` for no such product.
    pub async fn read_through<F, Fut>(
        &self,
        id: i64,
        load: F,
    ) -> Result<(Option<Cached>, Source), Arc<DbError>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<Cached>, DbError>> + Send + 'static,
    {
        // No cache: every request reads the database, as it would without this layer. And
        // while an invalidation of the product is unconfirmed, Redis may still hold it as it
        // was before a write: not a source until then.
        if self.inner.client.is_none() || self.pending().contains_key(&id) {
            self.inner.stats.misses.inc();
            self.inner.stats.db_loads.inc();
            return load()
                .await
                .map(|loaded| (loaded, Source::Miss))
                .map_err(Arc::new);
        }
        let near = self.inner.near.as_deref();
        if let Some(hit) = near.and_then(|near| near.get(id)) {
            self.inner.stats.hits.inc();
            return Ok((Some(hit), Source::Hit));
        }
        let ticket = near.map(|near| near.ticket(id));
        if let Some(hit) = self.get(id).await {
            self.inner.stats.hits.inc();
            if let (Some(near), Some(ticket)) = (near, ticket) {
                near.offer(ticket, &hit);
            }
            return Ok((Some(hit), Source::Hit));
        }
        self.inner.stats.misses.inc();
        let cache = self.clone();
        let loaded = self
            .inner
            .flights
            .run(id, async move {
                // A request that missed just before an earlier load stored the product, and
                // came here after that load was over, finds it now.
                if let Some(stored) = cache.get(id).await {
                    return Ok(Some(stored));
                }
                cache.inner.stats.db_loads.inc();
                let loaded = load().await.map_err(Arc::new)?;
                if let Some(entry) = &loaded {
                    cache.store(id, entry).await;
                }
                Ok(loaded)
            })
            .await
            .map_err(|error| Arc::new(DbError::from(error)))??;
        Ok((loaded, Source::Miss))
    }
}

/// Every 100 ms while the cache exists, sends the unconfirmed invalidations again.
async fn resend_invalidations(inner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let cache = ProductCache { inner };
        if !cache.pending().is_empty() {
            cache.resend_pending().await;
        }
    }
}

/// Connects `client`, and keeps trying every half second until the first connection
/// succeeds: an api started while Redis is down (or not up yet) caches once Redis is there.
/// After that, fred's reconnect policy keeps it connected. Until a client is connected,
/// reads skip Redis (see `guarded`).
fn connect_until_up(client: Client) {
    client.connect();
    tokio::spawn(async move {
        loop {
            let attempt = tokio::time::timeout(Duration::from_secs(2), client.wait_for_connect());
            if matches!(attempt.await, Ok(Ok(()))) || client.is_connected() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            // Refused while an attempt is still running; that attempt then decides.
            client.connect();
        }
    });
}

/// A client builder for `settings`, speaking `version` of the protocol.
fn builder(settings: &CacheSettings, version: RespVersion) -> anyhow::Result<Builder> {
    let mut config = Config::from_url(&settings.url)?;
    config.version = version;
    if config.tls.is_some() {
        // rediss://: verify the server against REDIS_TLS_CA_FILE or the system's CAs.
        let tls =
            platform::tls::client_config(settings.tls_ca_file.as_deref(), "REDIS_TLS_CA_FILE")?;
        config.tls = Some(fred::types::config::TlsConnector::from(tls).into());
    }
    // A failed first connection attempt returns at once instead of waiting out the
    // reconnect delay (see `connect_until_up` for the retries).
    config.fail_fast = true;
    let mut builder = Builder::from_config(config);
    builder
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(1);
            c.max_command_attempts = 1;
        })
        .with_performance_config(|p| {
            p.default_command_timeout = settings.timeout;
        })
        // Keep trying for ever: at once (10 ms), then backing off to every half second. The
        // client counts as connected until its first attempt, so that attempt comes soon:
        // reads skip Redis from then on instead of waiting for it (see `guarded`).
        .set_policy(ReconnectPolicy::new_exponential(0, 10, 500, 2));
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str, local_max_bytes: u64) -> CacheSettings {
        CacheSettings {
            url: url.to_owned(),
            key_prefix: "test:".to_owned(),
            ttl: Duration::from_secs(60),
            timeout: Duration::from_millis(200),
            pool_size: 1,
            tls_ca_file: None,
            local_max_bytes,
            load_timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn the_near_cache_is_kept_off_where_tracking_cannot_cover_every_key() {
        // Nothing listens on port 1: the clients only try to connect in the background.
        let plain = ProductCache::connect(settings("redis://127.0.0.1:1", 1 << 20)).unwrap();
        assert!(plain.has_near_cache());
        let off = ProductCache::connect(settings("redis://127.0.0.1:1", 0)).unwrap();
        assert!(!off.has_near_cache());
        let cluster =
            ProductCache::connect(settings("redis-cluster://127.0.0.1:1", 1 << 20)).unwrap();
        assert!(
            !cluster.has_near_cache(),
            "one node's pushes do not cover the others'"
        );
    }
}
