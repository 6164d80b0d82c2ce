//! How far behind the image pipeline is, as readers see it: how many products have images
//! still pending, and since when the oldest has waited (`images_pending_since`).
//!
//! Read from PostgreSQL rather than from the consumers, so it keeps growing when nothing
//! reports at all (a processor that is down, a broker that is wedged): the signal the
//! freshness alerts need (docs/operations.md, "SLOs and alerts").

use std::{sync::Arc, time::Duration};

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use crate::metrics::ApiMetrics;

/// How often the gauges are refreshed.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// A product that has waited this long is stuck, not late.
pub const STUCK_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Refreshes `images_pending_products`, `images_stuck_products` and
/// `images_oldest_pending_seconds`.
#[derive(Clone)]
pub struct PendingImages {
    pub pool: Pool,
    pub metrics: Arc<ApiMetrics>,
}

impl PendingImages {
    /// Refreshes the gauges every [`INTERVAL`] until `shutdown`; a failed read leaves them as
    /// they were (`dependency_up{dependency="postgres"}` says why).
    pub async fn run(self, shutdown: CancellationToken) {
        platform::supervise::every(INTERVAL, &shutdown, || async {
            if let Err(error) = self.refresh().await {
                tracing::debug!(
                    error = format!("{error:#}"),
                    "Could not count pending images."
                );
            }
        })
        .await;
    }

    /// One refresh: the partial index holds only products with images pending. A product
    /// that has waited longer than [`STUCK_AFTER`] is counted apart, as stuck: the oldest
    /// wait is the pipeline's freshness, and one product stuck for good (an event lost
    /// before the outbox existed, a result that can never be applied) must not hide whether
    /// the pipeline moves.
    pub async fn refresh(&self) -> anyhow::Result<()> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT count(*) AS waiting, \
                        count(*) FILTER (WHERE images_pending_since <= now() - make_interval(secs => $1)) AS stuck, \
                        COALESCE(EXTRACT(EPOCH FROM now() - min(images_pending_since) \
                          FILTER (WHERE images_pending_since > now() - make_interval(secs => $1))), 0)::float8 AS oldest \
                 FROM products WHERE images_pending_since IS NOT NULL",
                &[&STUCK_AFTER.as_secs_f64()],
            )
            .await?;
        self.metrics
            .images_pending
            .set(row.try_get::<_, i64>("waiting")?);
        self.metrics
            .images_stuck
            .set(row.try_get::<_, i64>("stuck")?);
        self.metrics
            .images_oldest_pending
            .set(row.try_get::<_, f64>("oldest")?.max(0.0));
        Ok(())
    }
}
