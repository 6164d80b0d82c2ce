//! Invalidation after a write: a marker holding the new version, sent again until Redis
//! confirms it, with this replica's reads of the product skipping the cache meanwhile.

use std::{sync::Weak, time::Duration};

use fred::prelude::*;
use tokio_util::sync::CancellationToken;

use super::{Inner, ProductCache, scripts};

impl ProductCache {
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

    pub(super) fn pending(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<i64, i64>> {
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
}

/// Every 100 ms while the cache exists, until `shutdown`, sends the unconfirmed
/// invalidations again.
pub(super) async fn resend_every_100_ms(inner: Weak<Inner>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let cache = ProductCache { inner };
        if !cache.pending().is_empty() {
            cache.resend_pending().await;
        }
    }
}
