//! The Redis side of the cache: how its clients are built, and the tasks that keep them
//! connected and the cache coherent, run by the cache's owner under its shutdown token.

use std::time::Duration;

use fred::{prelude::*, types::RespVersion};
use platform::supervise::Task;
use tokio_util::sync::CancellationToken;

use super::{CacheSettings, ProductCache, near};

impl ProductCache {
    /// What keeps the cache connected and coherent, for its owner to run supervised under
    /// its shutdown token: the first connection of each client, the near cache's tracking,
    /// and the resending of invalidations Redis has not confirmed. None without Redis.
    pub fn tasks(&self) -> Vec<Task> {
        let Some(pool) = &self.inner.client else {
            return Vec::new();
        };
        let mut clients = pool.clients().to_vec();
        clients.extend(self.inner.tracking.clone());
        let mut tasks = vec![Task::new("cache-connect", move |shutdown| {
            connect_until_up(clients.clone(), shutdown)
        })];
        if let (Some(near), Some(tracking), Some(settings)) =
            (&self.inner.near, &self.inner.tracking, &self.inner.settings)
        {
            let (near, tracking, timeout) = (
                std::sync::Arc::downgrade(near),
                tracking.clone(),
                settings.timeout,
            );
            tasks.push(Task::new("cache-tracking", move |shutdown| {
                let tracked = near::keep_tracking(near.clone(), tracking.clone(), timeout);
                async move {
                    tokio::select! {
                        () = tracked => {}
                        () = shutdown.cancelled() => {}
                    }
                }
            }));
        }
        let inner = std::sync::Arc::downgrade(&self.inner);
        tasks.push(Task::new("cache-invalidations", move |shutdown| {
            super::invalidation::resend_every_100_ms(inner.clone(), shutdown)
        }));
        tasks
    }
}

/// Keeps trying every half second until each of `clients` has connected once (or
/// `shutdown`): an api started while Redis is down (or not up yet) caches once Redis is
/// there. After that, fred's reconnect policy keeps them connected. Until a client is
/// connected, reads skip Redis (see `guarded`).
async fn connect_until_up(clients: Vec<Client>, shutdown: CancellationToken) {
    let each = clients.into_iter().map(|client| async move {
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
    tokio::select! {
        _ = futures_util::future::join_all(each) => {}
        () = shutdown.cancelled() => {}
    }
}

/// A client builder for `settings`, speaking `version` of the protocol.
pub(super) fn builder(settings: &CacheSettings, version: RespVersion) -> anyhow::Result<Builder> {
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
