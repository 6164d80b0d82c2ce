//! The in-process near cache in front of Redis: hot products answered from this replica's
//! memory, with no Redis round trip, kept coherent by Redis itself.
//!
//! A dedicated RESP3 connection asks Redis to track the product keys of our prefix
//! (`CLIENT TRACKING ON BCAST PREFIX <prefix>product:`). Redis then pushes the name of every
//! such key that changes, whoever changed it (a write or projection in any replica, a store
//! after a miss, TTL expiry, eviction, a flush), and each push drops the entry here. This is
//! Redis's own server-assisted client-side caching, not a second cache with a TTL of its own
//! to hope by.
//!
//! What keeps it correct:
//! - Entries are served and kept only while tracking is known to be on. When the tracking
//!   connection reports an error, reconnects, misses a heartbeat or falls behind on its
//!   pushes, every entry is dropped and nothing is served until tracking is on again: a push
//!   may have been lost.
//! - An entry is taken only from a Redis read, and only if no push for its stripe (or loss of
//!   tracking) came while the read was out. It is inserted first and checked after, so a push
//!   racing with the insert still removes it: a reader that read the old value just before a
//!   write cannot keep it after the write's push.
//! - A write in this replica drops its own entry as soon as the write is invalidated in
//!   Redis, so the replica that wrote reads its write. Other replicas see it when the push
//!   arrives, one network hop later. The worst case is a connection that breaks silently:
//!   the heartbeat notices it within about two seconds.

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use fred::{
    prelude::*,
    types::{Key, client::Invalidation},
};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::{CacheStats, Cached};

/// Stripes of the invalidation counters: a push for product 7 does not spoil a read of
/// product 8 that is out at the same time (unless they share a stripe).
const STRIPES: usize = 64;

/// How often the tracking connection is checked while idle.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Entries of this replica, valid while Redis tracks them for us.
pub struct NearCache {
    entries: moka::sync::Cache<i64, Cached>,
    /// Bumped by every push for a product of the stripe and every loss of tracking.
    epochs: Box<[AtomicU64]>,
    /// Tracking is on: pushes will arrive for every change from now on.
    live: AtomicBool,
    /// The key prefix of products, e.g. `catalog:product:`.
    key_prefix: String,
    stats: Arc<CacheStats>,
}

/// What a reader notes before its Redis read, to offer the result afterwards.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    id: i64,
    epoch: u64,
}

impl NearCache {
    pub fn new(max_bytes: u64, ttl: Duration, key_prefix: String, stats: Arc<CacheStats>) -> Self {
        let entries = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_, entry: &Cached| u32::try_from(entry.body.len() + 64).unwrap_or(u32::MAX))
            // A safety net only: pushes remove entries long before.
            .time_to_live(ttl)
            .build();
        Self {
            entries,
            epochs: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            live: AtomicBool::new(false),
            key_prefix,
            stats,
        }
    }

    fn epoch(&self, id: i64) -> &AtomicU64 {
        &self.epochs[id.rem_euclid(STRIPES as i64) as usize]
    }

    /// The entry of product `id`, while tracking is on.
    pub fn get(&self, id: i64) -> Option<Cached> {
        if !self.live.load(Ordering::SeqCst) {
            return None;
        }
        let entry = self.entries.get(&id)?;
        self.stats.local_hits.inc();
        Some(entry)
    }

    /// Taken before reading product `id` from Redis.
    pub fn ticket(&self, id: i64) -> Ticket {
        Ticket {
            id,
            epoch: self.epoch(id).load(Ordering::SeqCst),
        }
    }

    /// Keeps `entry`, read from Redis under `ticket`, unless a push or a loss of tracking
    /// came since the ticket was taken.
    pub fn offer(&self, ticket: Ticket, entry: &Cached) {
        let fresh = |near: &Self| {
            near.live.load(Ordering::SeqCst)
                && near.epoch(ticket.id).load(Ordering::SeqCst) == ticket.epoch
        };
        if !fresh(self) {
            return;
        }
        self.entries.insert(ticket.id, entry.clone());
        // A push that came during the insert bumped the epoch first: undo.
        if !fresh(self) {
            self.entries.invalidate(&ticket.id);
        }
    }

    /// Product `id` changed: drop its entry, and spoil reads of it that are out.
    pub fn forget(&self, id: i64) {
        self.epoch(id).fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate(&id);
    }

    /// Drops everything and spoils every read that is out.
    fn forget_all(&self) {
        for epoch in &self.epochs {
            epoch.fetch_add(1, Ordering::SeqCst);
        }
        self.entries.invalidate_all();
        self.stats.local_flushes.inc();
    }

    /// Tracking is lost (or in doubt): nothing is served until it is on again.
    fn go_dark(&self) {
        // Nothing is taken in while dark, so only the way in needs emptying.
        if self.live.swap(false, Ordering::SeqCst) {
            self.stats.local_tracking.set(0);
            self.forget_all();
        }
    }

    /// Tracking is on: from here every change is pushed. Reads that started before this
    /// moment may have missed a change, so they are spoiled first.
    fn go_live(&self) {
        for epoch in &self.epochs {
            epoch.fetch_add(1, Ordering::SeqCst);
        }
        self.live.store(true, Ordering::SeqCst);
        self.stats.local_tracking.set(1);
    }

    fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    /// Applies one push: the keys that changed, or none for "everything" (a flush).
    fn invalidated(&self, keys: &[Key]) {
        if keys.is_empty() {
            self.forget_all();
            return;
        }
        for key in keys {
            let id = key
                .as_bytes()
                .strip_prefix(self.key_prefix.as_bytes())
                .and_then(|rest| std::str::from_utf8(rest).ok())
                .and_then(|rest| rest.parse::<i64>().ok());
            if let Some(id) = id {
                self.forget(id);
            }
        }
    }

    pub fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}

/// Whether a drained channel had something (an event, or a note that events were missed).
fn pending<T>(received: Result<T, TryRecvError>) -> bool {
    !matches!(received, Err(TryRecvError::Empty | TryRecvError::Closed))
}

/// Keeps tracking on over `client` (a RESP3 connection of its own) for as long as `near`
/// lives, applying every push to it.
pub async fn keep_tracking(near: Weak<NearCache>, client: Client, timeout: Duration) {
    let key_prefix = match near.upgrade() {
        Some(near) => near.key_prefix.clone(),
        None => return,
    };
    let mut pushes = client.invalidation_rx();
    let mut errors = client.error_rx();
    let mut reconnects = client.reconnect_rx();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    // Tracking starts on a connection: wait for the first (checking every second).
    while !matches!(
        tokio::time::timeout(HEARTBEAT, client.wait_for_connect()).await,
        Ok(Ok(()))
    ) {
        if near.strong_count() == 0 {
            return;
        }
    }
    loop {
        let Some(cache) = near.upgrade() else { break };
        if !cache.is_live() {
            // Events so far concern connections before the one tracking is started on now
            // (among them the first connect); one that comes later ends it again.
            while pending(reconnects.try_recv()) || pending(errors.try_recv()) {}
            // Off first: the connection may still track from before, and Redis refuses a
            // prefix it already tracks.
            let started = tokio::time::timeout(timeout, async {
                client.stop_tracking().await?;
                client
                    .start_tracking(key_prefix.as_str(), true, false, false, false)
                    .await
            })
            .await;
            match started {
                Ok(Ok(())) => {
                    cache.go_live();
                    tracing::info!(prefix = key_prefix, "Near cache on: Redis tracks our keys.");
                    warned = false;
                }
                Ok(Err(error)) if !warned => {
                    warned = true;
                    tracing::warn!(%error, "Near cache off: Redis does not track keys for us yet.");
                }
                _ => {}
            }
        }
        drop(cache);
        tokio::select! {
            push = pushes.recv() => match (push, near.upgrade()) {
                (Ok(Invalidation { keys, .. }), Some(cache)) => cache.invalidated(&keys),
                (Err(RecvError::Lagged(missed)), Some(cache)) => {
                    tracing::warn!(missed, "Near cache fell behind Redis's pushes; dropped it.");
                    cache.go_dark();
                }
                _ => break,
            },
            event = errors.recv() => {
                let Some(cache) = near.upgrade() else { break };
                match event {
                    Err(RecvError::Closed) => break,
                    Ok((error, _)) if cache.is_live() => {
                        tracing::warn!(%error, "Near cache dropped: the tracking connection failed.");
                    }
                    _ => {}
                }
                cache.go_dark();
            }
            event = reconnects.recv() => {
                // A new connection tracks nothing until asked again.
                let Some(cache) = near.upgrade() else { break };
                if matches!(event, Err(RecvError::Closed)) {
                    break;
                }
                cache.go_dark();
            }
            _ = heartbeat.tick() => {
                let Some(cache) = near.upgrade() else { break };
                if cache.is_live() {
                    let pong = tokio::time::timeout(timeout, client.ping::<Value>(None)).await;
                    if !matches!(pong, Ok(Ok(_))) {
                        tracing::warn!("Near cache dropped: the tracking connection missed a heartbeat.");
                        cache.go_dark();
                    }
                }
            }
        }
    }
    let _ = client.quit().await;
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn near() -> NearCache {
        NearCache::new(
            1 << 20,
            Duration::from_secs(60),
            "p:product:".to_owned(),
            Arc::default(),
        )
    }

    fn entry(version: i64) -> Cached {
        Cached {
            version,
            body: Bytes::from(format!("{{\"version\":{version}}}")),
        }
    }

    /// Reads `id` from memory, as a request would.
    fn read(near: &NearCache, id: i64) -> Option<i64> {
        near.get(id).map(|e| e.version)
    }

    #[test]
    fn nothing_is_kept_or_served_before_tracking_is_on() {
        let near = near();
        near.offer(near.ticket(1), &entry(1));
        assert_eq!(read(&near, 1), None);
        near.go_live();
        assert_eq!(read(&near, 1), None, "the early offer was not kept");
        near.offer(near.ticket(1), &entry(1));
        assert_eq!(read(&near, 1), Some(1));
        assert_eq!(near.stats.local_hits.get(), 1);
    }

    #[test]
    fn a_read_that_was_out_when_its_product_changed_is_not_kept() {
        let near = near();
        near.go_live();
        let ticket = near.ticket(7);
        // Redis pushes product 7's key while the read of the old value is out.
        near.invalidated(&[Key::from("p:product:7")]);
        near.offer(ticket, &entry(1));
        assert_eq!(read(&near, 7), None);
        // A read of another stripe is not spoiled by it.
        let other = near.ticket(8);
        near.invalidated(&[Key::from("p:product:7")]);
        near.offer(other, &entry(3));
        assert_eq!(read(&near, 8), Some(3));
    }

    #[test]
    fn a_read_that_started_before_tracking_came_on_is_not_kept() {
        let near = near();
        let ticket = near.ticket(1);
        near.go_live();
        near.offer(ticket, &entry(1));
        assert_eq!(
            read(&near, 1),
            None,
            "a change before tracking was not pushed"
        );
    }

    #[test]
    fn a_push_drops_only_its_own_product_and_a_flush_drops_everything() {
        let near = near();
        near.go_live();
        for id in [5, 50] {
            near.offer(near.ticket(id), &entry(1));
        }
        near.invalidated(&[Key::from("p:product:5"), Key::from("other:product:50")]);
        assert_eq!((read(&near, 5), read(&near, 50)), (None, Some(1)));
        near.invalidated(&[]);
        assert_eq!(read(&near, 50), None, "an empty push means a flush");
        assert_eq!(near.stats.local_flushes.get(), 1);
    }

    #[test]
    fn losing_tracking_empties_memory_and_serves_nothing_until_it_is_back() {
        let near = near();
        near.go_live();
        near.offer(near.ticket(1), &entry(1));
        let out = near.ticket(2);
        assert_eq!(near.stats.local_tracking.get(), 1);
        near.go_dark();
        assert_eq!(read(&near, 1), None);
        assert_eq!(near.stats.local_flushes.get(), 1);
        assert_eq!(near.stats.local_tracking.get(), 0);
        near.go_live();
        assert_eq!(read(&near, 1), None, "the entry went with the connection");
        near.offer(out, &entry(1));
        assert_eq!(
            read(&near, 2),
            None,
            "a read that was out meanwhile is not kept"
        );
        near.go_dark();
        near.go_dark();
        assert_eq!(
            near.stats.local_flushes.get(),
            2,
            "each loss of tracking empties it once"
        );
    }

    #[test]
    fn this_replicas_own_write_drops_its_entry_at_once() {
        let near = near();
        near.go_live();
        near.offer(near.ticket(1), &entry(1));
        near.forget(1);
        assert_eq!(read(&near, 1), None);
    }
}
