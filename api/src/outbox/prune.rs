//! Keeps the event bookkeeping from growing for ever: deletes published outbox rows and the
//! projector's applied-event records once they are older than their retention.
//!
//! Unpublished rows are never touched, whatever their age: they are events still owed to
//! Kafka. A published row is kept a while for whoever investigates what was sent; an
//! applied-event record only has to outlive any redelivery of its event (the topic's
//! retention; Kafka's default is 7 days), and an older duplicate would still be refused by
//! the projector's revision check. Deletes go in small batches with `SKIP LOCKED`, so every
//! replica can run a pruner without blocking writers or each other.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use crate::metrics::{ApiMetrics, PrunedLabels};

/// How long each kind of record is kept, and how often to look.
#[derive(Debug, Clone)]
pub struct PruneSettings {
    /// Published outbox rows older than this go (`OUTBOX_RETENTION_HOURS`, default 168).
    pub outbox_retention: Duration,
    /// Applied-event records older than this go (`APPLIED_EVENTS_RETENTION_HOURS`, default
    /// 168).
    pub applied_events_retention: Duration,
    /// Time between two rounds.
    pub interval: Duration,
    /// Rows per delete statement: short transactions, short locks.
    pub batch_size: i64,
}

/// What one round deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub outbox: u64,
    pub applied_events: u64,
}

/// The pruner of one api process.
#[derive(Clone)]
pub struct Pruner {
    pub pool: Pool,
    pub settings: PruneSettings,
    pub metrics: std::sync::Arc<ApiMetrics>,
}

const PRUNE_OUTBOX: &str = "DELETE FROM outbox WHERE id IN ( \
     SELECT id FROM outbox \
     WHERE published_at < now() - make_interval(secs => $1) \
     LIMIT $2 FOR UPDATE SKIP LOCKED)";

const PRUNE_APPLIED_EVENTS: &str = "DELETE FROM applied_events WHERE event_id IN ( \
     SELECT event_id FROM applied_events \
     WHERE applied_at < now() - make_interval(secs => $1) \
     LIMIT $2 FOR UPDATE SKIP LOCKED)";

impl Pruner {
    /// Prunes every `interval` until `shutdown`; a failed round is logged and retried at the
    /// next one.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.prune_once(&shutdown).await {
                Ok(pruned) if pruned != Pruned::default() => tracing::info!(
                    outbox = pruned.outbox,
                    applied_events = pruned.applied_events,
                    "Pruned old event records."
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(
                    error = format!("{error:#}"),
                    "Pruning old event records failed; trying again later."
                ),
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.settings.interval) => {}
            }
        }
        tracing::info!("Pruner stopped.");
    }

    /// One round: batches until nothing is older than its retention (or `shutdown`).
    pub async fn prune_once(&self, shutdown: &CancellationToken) -> anyhow::Result<Pruned> {
        Ok(Pruned {
            outbox: self
                .prune(
                    "outbox",
                    PRUNE_OUTBOX,
                    self.settings.outbox_retention,
                    shutdown,
                )
                .await?,
            applied_events: self
                .prune(
                    "applied_events",
                    PRUNE_APPLIED_EVENTS,
                    self.settings.applied_events_retention,
                    shutdown,
                )
                .await?,
        })
    }

    async fn prune(
        &self,
        table: &'static str,
        statement: &str,
        retention: Duration,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<u64> {
        let client = self.pool.get().await?;
        let statement = client.prepare_cached(statement).await?;
        let seconds = retention.as_secs_f64();
        let mut total = 0;
        loop {
            let deleted = client
                .execute(&statement, &[&seconds, &self.settings.batch_size])
                .await?;
            total += deleted;
            self.metrics
                .pruned
                .get_or_create(&PrunedLabels { table })
                .inc_by(deleted);
            if deleted < self.settings.batch_size as u64 || shutdown.is_cancelled() {
                return Ok(total);
            }
        }
    }
}
