//! Every query on `products` but the projector's ([`super::results`]). Each function takes a pool (or the transaction it is part
//! of) and answers in domain terms; each write commits, in the same transaction, the events
//! it causes into the outbox and the product's new state for the change feed, after the
//! row is locked, so the outbox order of one product's records is its commit order.

use deadpool_postgres::Pool;
use events::{EventType, ProductCreated, ProductDeleted, ProductImagesChanged};
use poem_openapi::types::ToJSON;
use tokio_postgres::{Transaction, types::ToSql};

use super::{
    Actor, Cursor, NewProduct, Product, ProductChanges, StoredImages, Written,
    row::{COLUMNS, ProductRow},
};
use crate::{
    db::DbError,
    domain::{PriceRange, UserId},
    outbox,
};

/// The status of `count` images that are still to be processed, and their (empty)
/// compressed URLs.
fn pending_images(count: usize) -> (StoredImages, Vec<Option<String>>) {
    let images = StoredImages::pending(count);
    let compressed = images.compressed_urls();
    (images, compressed)
}

/// Inserts the product and its `ProductCreated` event in one transaction; returns the id.
#[tracing::instrument(name = "postgres insert product", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation.name = "insert product"))]
pub async fn insert(pool: &Pool, owner: UserId, product: &NewProduct) -> Result<i64, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let (status, compressed) = pending_images(product.images.as_slice().len());
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO products (user_id, product_name, product_description, product_images, \
                   product_price, image_status, compressed_product_images, images_pending_since) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, \
                   CASE WHEN cardinality($4::text[]) > 0 THEN now() END) RETURNING {COLUMNS}"
            ),
            &[
                &owner.get(),
                &product.name.as_str(),
                &product.description.as_str(),
                &product.images.as_slice(),
                &product.price.value(),
                &status.to_column(),
                &compressed,
            ],
        )
        .await?;
    let row = ProductRow::try_from(&row)?;
    let id = row.id;
    let event = ProductCreated {
        product_id: id.to_string(),
        user_id: owner.to_string(),
        image_revision: 1,
        product_images: product.images.as_slice().to_vec(),
    };
    outbox::enqueue(&tx, id, EventType::ProductCreated, &event).await?;
    record_state(&tx, &row).await?;
    tx.commit().await?;
    Ok(id)
}

#[tracing::instrument(name = "postgres select product", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation.name = "select product"))]
pub async fn find(pool: &Pool, id: i64) -> Result<Option<ProductRow>, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM products WHERE id = $1"),
            &[&id],
        )
        .await?;
    row.as_ref().map(ProductRow::try_from).transpose()
}

/// What the list endpoint filters on.
pub struct ListQuery {
    pub user_id: UserId,
    pub price: Option<PriceRange>,
    /// A case-insensitive substring; `%`, `_` and `\` in it are literal.
    pub name_contains: Option<String>,
    pub after: Option<Cursor>,
    pub limit: i64,
}

/// One page in (price, id) order, and whether another page follows.
#[tracing::instrument(name = "postgres list products", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation.name = "list products"))]
pub async fn list(pool: &Pool, query: &ListQuery) -> Result<(Vec<ProductRow>, bool), DbError> {
    // Only the filters present enter the SQL, so each combination gets a plan that uses the
    // (user_id, product_price, id) index or the trigram index rather than a generic plan.
    let user_id = query.user_id.get();
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(user_id)];
    let mut sql = format!("SELECT {COLUMNS} FROM products WHERE user_id = $1");
    let mut push = |condition: &str, value: Box<dyn ToSql + Sync + Send>| {
        params.push(value);
        sql.push_str(&condition.replace("$?", &format!("${}", params.len())));
    };
    if let Some(min) = query.price.and_then(|r| r.min) {
        push(" AND product_price >= $?", Box::new(min));
    }
    if let Some(max) = query.price.and_then(|r| r.max) {
        push(" AND product_price <= $?", Box::new(max));
    }
    if let Some(name) = &query.name_contains {
        push(
            " AND product_name ILIKE $?",
            Box::new(format!("%{}%", escape_like(name))),
        );
    }
    if let Some(after) = query.after {
        push(" AND (product_price, id) > ($?", Box::new(after.price));
        push(", $?)", Box::new(after.id));
    }
    push(
        " ORDER BY product_price, id LIMIT $?",
        Box::new(query.limit + 1),
    );

    let client = pool.get().await?;
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as _).collect();
    let rows = client.query(&sql, &refs).await?;
    let more = rows.len() as i64 > query.limit;
    let page = rows
        .iter()
        .take(query.limit as usize)
        .map(ProductRow::try_from)
        .collect::<Result<_, _>>()?;
    Ok((page, more))
}

/// Escapes LIKE's wildcards so the user's text matches literally.
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Applies the changes; `None` when there is no such product. A new image list starts a
/// new image revision: its images are pending again and a `ProductImagesChanged` event is
/// written in the same transaction.
#[tracing::instrument(name = "postgres update product", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation.name = "update product"))]
pub async fn update(
    pool: &Pool,
    id: i64,
    actor: Actor,
    changes: &ProductChanges,
) -> Result<Written<ProductRow>, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let current = tx
        .query_opt(
            "SELECT product_images, image_revision, user_id FROM products WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?;
    let Some(current) = current else {
        return Ok(Written::NoSuchProduct);
    };
    if !actor.may_change(current.try_get("user_id")?) {
        return Ok(Written::NotOwner);
    }
    let current_images: Vec<String> = current.try_get("product_images")?;
    let current_revision: i32 = current.try_get("image_revision")?;
    let new_images = changes
        .images
        .as_ref()
        .map(|i| i.as_slice())
        .filter(|images| *images != current_images.as_slice());
    let revision = current_revision + i32::from(new_images.is_some());
    let (status, compressed) = new_images
        .map(|images| pending_images(images.len()))
        .unzip();
    let row = tx
        .query_one(
            &format!(
                "UPDATE products SET \
                   product_name = COALESCE($2, product_name), \
                   product_description = COALESCE($3, product_description), \
                   product_price = COALESCE($4, product_price), \
                   product_images = COALESCE($5, product_images), \
                   image_status = COALESCE($6, image_status), \
                   compressed_product_images = COALESCE($7, compressed_product_images), \
                   images_pending_since = CASE WHEN $5::text[] IS NULL THEN images_pending_since \
                     WHEN cardinality($5::text[]) > 0 THEN now() END, \
                   image_revision = $8, \
                   version = version + 1, \
                   updated_at = now() \
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &changes.name.as_ref().map(|n| n.as_str()),
                &changes.description.as_ref().map(|d| d.as_str()),
                &changes.price.map(|p| p.value()),
                &new_images,
                &status.as_ref().map(StoredImages::to_column),
                &compressed,
                &revision,
            ],
        )
        .await?;
    if let Some(images) = new_images {
        let event = ProductImagesChanged {
            product_id: id.to_string(),
            image_revision: revision,
            product_images: images.to_vec(),
        };
        outbox::enqueue(&tx, id, EventType::ProductImagesChanged, &event).await?;
    }
    let row = ProductRow::try_from(&row)?;
    record_state(&tx, &row).await?;
    tx.commit().await?;
    Ok(Written::Done(row))
}

/// Deletes the product (when `actor` may) and writes `ProductDeleted`.
#[tracing::instrument(name = "postgres delete product", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation.name = "delete product"))]
pub async fn delete(pool: &Pool, id: i64, actor: Actor) -> Result<Written<()>, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let owner = tx
        .query_opt(
            "SELECT user_id FROM products WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?;
    let Some(owner) = owner else {
        return Ok(Written::NoSuchProduct);
    };
    if !actor.may_change(owner.try_get("user_id")?) {
        return Ok(Written::NotOwner);
    }
    tx.execute("DELETE FROM products WHERE id = $1", &[&id])
        .await?;
    let event = ProductDeleted {
        product_id: id.to_string(),
    };
    outbox::enqueue(&tx, id, EventType::ProductDeleted, &event).await?;
    record_deletion(&tx, id).await?;
    tx.commit().await?;
    Ok(Written::Done(()))
}

/// Writes the current state of up to `limit` products after id `after` into the change
/// feed again, inside `tx`; returns the ids written. The rows are share-locked, so a change
/// committing meanwhile is recorded after them.
pub async fn republish_after(
    tx: &Transaction<'_>,
    after: i64,
    limit: i64,
) -> Result<Vec<i64>, DbError> {
    let rows = tx
        .query(
            &format!("SELECT {COLUMNS} FROM products WHERE id > $1 ORDER BY id LIMIT $2 FOR SHARE"),
            &[&after, &limit],
        )
        .await?;
    let mut ids = Vec::with_capacity(rows.len());
    for row in &rows {
        let row = ProductRow::try_from(row)?;
        record_state(tx, &row).await?;
        ids.push(row.id);
    }
    Ok(ids)
}

/// Writes the state `row` shows into the outbox as a `products` record, inside `tx`. Call
/// it with the row as the change left it, after the row was locked by that change.
pub(super) async fn record_state(tx: &Transaction<'_>, row: &ProductRow) -> Result<(), DbError> {
    let document = Product::from(row.clone())
        .to_json()
        .expect("a product serialises");
    outbox::enqueue(tx, row.id, EventType::ProductState, &document).await?;
    Ok(())
}

/// Writes the tombstone of a product deleted by `tx`.
async fn record_deletion(tx: &Transaction<'_>, product_id: i64) -> Result<(), DbError> {
    outbox::enqueue(
        tx,
        product_id,
        EventType::ProductState,
        &serde_json::Value::Null,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::escape_like;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like(r"50%_off\"), r"50\%\_off\\");
        assert_eq!(escape_like("plain"), "plain");
    }
}
