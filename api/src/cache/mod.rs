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

mod invalidation;
mod near;
mod redis;
mod scripts;
mod settings;
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

use self::{near::NearCache, single_flight::SingleFlight};
pub use self::{
    settings::{CacheSettings, CacheStats},
    single_flight::FlightError,
};
use crate::db::DbError;

impl From<FlightError> for DbError {
    /// A shared load that timed out (or panicked) answers like a database that is away.
    fn from(error: FlightError) -> Self {
        Self::Unavailable(anyhow::Error::new(error).context("Failed to load the product"))
    }
}

/// What a shared load of one product gives every request that waits for it.
type Loaded = Result<Option<Cached>, Arc<DbError>>;

/// The version a deleted product's marker holds: above any real version, and exact in the
/// doubles Lua computes with.
pub const DELETED: i64 = (1 << 53) - 1;

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
    /// The connection the near cache's tracking pushes come on.
    tracking: Option<Client>,
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
    /// What keeps the cache connected and coherent runs as [`ProductCache::tasks`], under
    /// the owner's shutdown token and supervisor.
    pub fn connect(settings: CacheSettings) -> anyhow::Result<Self> {
        let pool =
            redis::builder(&settings, RespVersion::RESP2)?.build_pool(settings.pool_size.max(1))?;
        for client in pool.clients() {
            client.connect();
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
            let mut tracking = redis::builder(&settings, RespVersion::RESP3)?;
            tracking.with_performance_config(|p| p.broadcast_channel_capacity = 4096);
            let tracking = tracking.build()?;
            tracking.connect();
            Some((near, tracking))
        } else {
            None
        };
        Ok(Self::with(Some(pool), near, Some(settings), stats))
    }

    /// No Redis: every read goes to the database (`X-Cache: miss`).
    pub fn disabled() -> Self {
        Self::with(None, None, None, Arc::default())
    }

    fn with(
        client: Option<Pool>,
        near: Option<(Arc<NearCache>, Client)>,
        settings: Option<CacheSettings>,
        stats: Arc<CacheStats>,
    ) -> Self {
        let load_timeout = settings
            .as_ref()
            .map_or(Duration::from_secs(30), |s| s.load_timeout);
        Self {
            inner: Arc::new(Inner {
                client,
                tracking: near.as_ref().map(|(_, tracking)| tracking.clone()),
                near: near.map(|(near, _)| near),
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

    /// Whether Redis answers a PING on a connected client (for `dependency_up`); an error
    /// when it does not or when the cache is disabled. Not counted in `cache_errors_total`:
    /// that counts the reads and writes that fell back to the database.
    pub async fn ping(&self) -> anyhow::Result<()> {
        let pool = self
            .inner
            .client
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the cache is disabled"))?;
        let client = pool.next_connected();
        anyhow::ensure!(client.is_connected(), "no connection to Redis is up");
        client.ping::<fred::types::Value>(None).await?;
        Ok(())
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
