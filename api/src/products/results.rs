//! Applying the image-processor's results (`ImagesCompressed`) to `products`: the
//! projector's one write, exactly once per event and never for an older image revision.

use deadpool_postgres::Pool;
use events::ImagesCompressed;
use uuid::Uuid;

use super::{
    StoredImages,
    row::{COLUMNS, ProductRow, unreadable},
    store::record_state,
};
use crate::db::DbError;

/// What applying an `ImagesCompressed` event did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// The product changed; it is now at `version`.
    Updated {
        version: i64,
        /// What the change completed, for the freshness metrics.
        reached: Reached,
    },
    Duplicate,
    StaleRevision {
        current: i32,
    },
    NoSuchProduct,
    /// Every result said less than what is stored: a failure for an image already
    /// compressed (a late retry or a redrive that failed where an earlier attempt had
    /// succeeded), a first step for an image with its whole ladder, or the stored result
    /// again. Kept as it was.
    KeptBetter,
    /// The product's stored image states cannot be read (logged and counted): nothing was
    /// changed, and retrying cannot help.
    Unreadable,
}

/// The moments of a product's images that one applied result can reach, each once per image
/// revision (the ladder's recorded in `ladder_complete_revision`: a redrive can take an image
/// given up on through its steps again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reached {
    /// Every image became visible or failed: none is pending any more.
    pub shown: bool,
    /// Every image's ladder became complete: no format is still to come either.
    pub complete: bool,
}

/// Applies `event` (id `event_id`) unless it was applied before or belongs to an older
/// image revision: the event id is recorded in `applied_events` in the same transaction as
/// the update, so a redelivered event changes nothing.
#[tracing::instrument(name = "postgres apply images", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation.name = "apply images"))]
pub async fn apply_images(
    pool: &Pool,
    product_id: i64,
    event_id: Uuid,
    event: &ImagesCompressed,
) -> Result<Applied, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let fresh = tx
        .execute(
            "INSERT INTO applied_events (event_id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&event_id],
        )
        .await?;
    if fresh == 0 {
        return Ok(Applied::Duplicate);
    }
    let row = tx
        .query_opt(
            "SELECT image_revision, image_status, cardinality(product_images) AS images, \
                    ladder_complete_revision \
             FROM products WHERE id = $1 FOR UPDATE",
            &[&product_id],
        )
        .await?;
    let Some(row) = row else {
        tx.commit().await?;
        return Ok(Applied::NoSuchProduct);
    };
    let current: i32 = row.try_get("image_revision")?;
    if current != event.image_revision {
        tx.commit().await?;
        return Ok(Applied::StaleRevision { current });
    }
    let count = row.try_get::<_, Option<i32>>("images")?.unwrap_or(0) as usize;
    let mut images = match StoredImages::read(&row, "image_status", count) {
        Ok(images) => images,
        Err(error) => {
            // Logged and counted; the event is recorded as applied, so it is not retried.
            let _ = unreadable(product_id, "image_status", error);
            tx.commit().await?;
            return Ok(Applied::Unreadable);
        }
    };
    let pending_before = images.any_pending();
    // Complete once already in this revision: a redrive that brought back an image given up
    // on is going through its steps again.
    let completed_before =
        row.try_get::<_, Option<i32>>("ladder_complete_revision")? == Some(current);
    let ladder_pending_before = images.ladder_pending();
    let mut changed = false;
    for image in &event.images {
        changed |= images.record(image);
    }
    if !changed {
        tx.commit().await?;
        return Ok(Applied::KeptBetter);
    }
    let row = tx
        .query_one(
            &format!(
                "UPDATE products SET image_status = $2, compressed_product_images = $3, \
                   images_pending_since = CASE WHEN $4 THEN images_pending_since END, \
                   ladder_complete_revision = CASE WHEN $5 THEN ladder_complete_revision \
                                                   ELSE image_revision END, \
                   version = version + 1 \
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[
                &product_id,
                &images.to_column(),
                &images.compressed_urls(),
                &images.any_pending(),
                &images.ladder_pending(),
            ],
        )
        .await?;
    let row = ProductRow::try_from(&row)?;
    record_state(&tx, &row).await?;
    tx.commit().await?;
    Ok(Applied::Updated {
        version: row.version,
        reached: Reached {
            shown: pending_before && !images.any_pending(),
            complete: ladder_pending_before && !images.ladder_pending() && !completed_before,
        },
    })
}
