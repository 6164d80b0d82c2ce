//! Deleting stored images nobody refers to any more: the references of a deleted product
//! (`ProductDeleted`), a product's references of earlier revisions once a newer revision's
//! results are out, and every so often the content no reference names
//! ([`crate::content`]). A late job (a retry or a redrive) of a product deleted or given new
//! images since is skipped before it stores anything (`superseded`).
//!
//! A deletion is retried in place a few times (storage hiccups are short); when the store
//! keeps failing, the event goes to the dead-letter topic, from where `dlq redrive` runs it
//! again. Removing an older revision is housekeeping: a failure is logged and left to the
//! product's next revision or deletion, which sweep every older revision again.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio_util::sync::CancellationToken;

use super::Worker;
use crate::{
    job::{Deletion, Job},
    metrics::OutcomeLabels,
};

/// In-place attempts at deleting a product's images before dead-lettering the event.
const ATTEMPTS: u32 = 3;

impl Worker {
    /// Deletes the images of a deleted product; true when the outcome is durable (deleted,
    /// or dead-lettered).
    pub(super) async fn delete_product_images(
        &self,
        deletion: &Deletion,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut backoff = Duration::from_millis(500);
        for attempt in 1..=ATTEMPTS {
            let deleted = match self.storage.delete_images(&deletion.product_id, None).await {
                // The marker after the images: a late job that sees it stores nothing.
                Ok(deleted) => self
                    .storage
                    .mark_deleted(&deletion.product_id)
                    .await
                    .map(|()| deleted),
                Err(failure) => Err(failure),
            };
            let failure = match deleted {
                Ok(deleted) => {
                    self.count_deleted("product_deleted", deleted);
                    tracing::info!(
                        product_id = %deletion.product_id,
                        deleted,
                        "Deleted the images of a deleted product."
                    );
                    return true;
                }
                Err(failure) => failure,
            };
            if attempt == ATTEMPTS {
                tracing::error!(
                    product_id = %deletion.product_id,
                    attempts = attempt,
                    reason = %failure,
                    "Deleting a product's images failed; dead-lettering."
                );
                self.metrics
                    .dead_letters
                    .get_or_create(&OutcomeLabels {
                        outcome: "transient",
                    })
                    .inc();
                let record = self.dead_letter(
                    &deletion.raw,
                    &deletion.origin,
                    &format!("deleting stored images: {failure}"),
                    "transient",
                    attempt,
                    None,
                );
                return self.send_durably(record, shutdown).await;
            }
            tracing::warn!(
                product_id = %deletion.product_id,
                attempt,
                retry_in_ms = backoff.as_millis() as u64,
                reason = %failure,
                "Deleting a product's images failed; retrying."
            );
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff *= 4;
        }
        unreachable!("the last attempt returns")
    }

    /// After a revision's results went out: deletes the product's images of earlier
    /// revisions.
    pub(super) async fn delete_older_revisions(&self, job: &Job) {
        if job.revision <= 1 {
            return;
        }
        match self
            .storage
            .delete_images(&job.product_id, Some(job.revision))
            .await
        {
            Ok(0) => {}
            Ok(deleted) => {
                self.count_deleted("older_revision", deleted);
                tracing::info!(
                    product_id = %job.product_id,
                    revision = job.revision,
                    deleted,
                    "Deleted the images of earlier revisions."
                );
            }
            Err(failure) => tracing::warn!(
                product_id = %job.product_id,
                revision = job.revision,
                reason = %failure,
                "Deleting the images of earlier revisions failed; the next revision or the deletion tries again."
            ),
        }
    }

    /// Whether `job` came late (a retry, a redrive or a deferred second step) for a product that was deleted or got
    /// newer images since: then it is dropped, counted and logged. Asked before the job
    /// starts, so it stores nothing, and again once it `stored` its images, for a change
    /// that came while it ran: then the objects it stored are deleted. A first attempt from
    /// the main topic cannot be late: a product's events are handled in order. If the store
    /// cannot say, the job goes ahead.
    pub(super) async fn superseded(&self, job: &Job, stored: bool) -> bool {
        if job.attempt <= 1 && !job.redriven && !job.later {
            return false;
        }
        let (reason, keep_from) = match self.storage.stored_state(&job.product_id).await {
            Ok(state) if state.deleted => ("product_deleted", None),
            Ok(state) if state.newest_revision > Some(job.revision) => {
                ("newer_revision", state.newest_revision)
            }
            Ok(_) => return false,
            Err(failure) => {
                tracing::warn!(
                    product_id = %job.product_id,
                    reason = %failure,
                    "Could not tell whether a late job is superseded; processing it."
                );
                return false;
            }
        };
        if stored {
            // Everything of a deleted product; every revision before the newest otherwise,
            // this job's among them.
            match self.storage.delete_images(&job.product_id, keep_from).await {
                Ok(deleted) => self.count_deleted(
                    if keep_from.is_some() {
                        "older_revision"
                    } else {
                        "product_deleted"
                    },
                    deleted,
                ),
                Err(failure) => tracing::warn!(
                    product_id = %job.product_id,
                    reason = %failure,
                    "Deleting a dropped job's images failed; the product's next revision or deletion sweeps them."
                ),
            }
        }
        self.metrics
            .jobs_superseded
            .get_or_create(&OutcomeLabels { outcome: reason })
            .inc();
        tracing::info!(
            product_id = %job.product_id,
            revision = job.revision,
            attempt = job.attempt,
            redriven = job.redriven,
            reason,
            after_storing = stored,
            "Dropped a late job: its product changed since."
        );
        true
    }

    /// Deletes the content no product refers to, every `gc_interval` until `shutdown`, in the
    /// rounds this processor claims (one processor a round).
    pub(super) async fn collect_garbage_every(self: Arc<Self>, shutdown: CancellationToken) {
        let interval = self.gc_interval.max(Duration::from_millis(100));
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let round = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis()
                / interval.as_millis();
            match self.content.claim_cleanup(round as u64).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(round, "Another processor cleans up this round.");
                    continue;
                }
                // A claim the store refuses must not stop cleanup for good: cleaning up
                // without one is safe, only slower.
                Err(failure) => {
                    tracing::warn!(reason = %failure, "Claiming the cleanup round failed; cleaning up anyway.");
                }
            }
            match self.content.collect_garbage(self.content.epoch_now()).await {
                Ok(0) => tracing::debug!("No unreferenced stored images."),
                Ok(deleted) => {
                    self.count_deleted("unreferenced", deleted);
                    tracing::info!(deleted, "Deleted stored images no product refers to.");
                }
                Err(failure) => {
                    tracing::warn!(reason = %failure, "Looking for unreferenced stored images failed; trying again next time.");
                }
            }
        }
    }

    fn count_deleted(&self, outcome: &'static str, deleted: usize) {
        self.metrics
            .images_deleted
            .get_or_create(&OutcomeLabels { outcome })
            .inc_by(deleted as u64);
    }
}
