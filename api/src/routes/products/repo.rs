//! The SQL of products. Every function takes a pool and answers in domain terms.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use rust_decimal::Decimal;
use tokio_postgres::{Row, types::ToSql};

use super::{
    cursor::Cursor,
    model::{NewProduct, ProductChanges, StoredImages},
};
use crate::{
    db::DbError,
    domain::{PriceRange, UserId},
    feed, outbox,
};
use events::{EventType, ProductCreated, ProductDeleted, ProductImagesChanged};

/// A row of `products`.
#[derive(Clone)]
pub struct ProductRow {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub description: String,
    pub images: Vec<String>,
    pub compressed_images: Vec<Option<String>>,
    pub price: Decimal,
    pub image_revision: i32,
    pub image_status: serde_json::Value,
    /// Grows with every change; the cache's guard against stale entries.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(crate) const COLUMNS: &str = "id, user_id, product_name, product_description, product_images, \
     compressed_product_images, product_price, image_revision, image_status, version, created_at, updated_at";

impl ProductRow {
    pub(crate) fn from_row(row: &Row) -> Self {
        Self {
            id: row.get(0),
            user_id: row.get(1),
            name: row.get(2),
            description: row.get(3),
            images: row.get(4),
            compressed_images: row.get(5),
            price: row.get(6),
            image_revision: row.get(7),
            image_status: row.get(8),
            version: row.get(9),
            created_at: row.get(10),
            updated_at: row.get(11),
        }
    }
}

/// The status of `count` images that are still to be processed, and their (empty)
/// compressed URLs.
fn pending_images(count: usize) -> (serde_json::Value, Vec<Option<String>>) {
    let images = StoredImages::pending(count);
    (images.to_column(), images.compressed_urls())
}

/// Inserts the product and its `ProductCreated` event in one transaction; returns the id.
#[tracing::instrument(name = "postgres insert product", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation.name = "insert product"))]
pub async fn insert(pool: &Pool, product: &NewProduct) -> Result<i64, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let (status, compressed) = pending_images(product.images.as_slice().len());
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO products (user_id, product_name, product_description, product_images, \
                   product_price, image_status, compressed_product_images) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
            ),
            &[
                &product.user_id.get(),
                &product.name.as_str(),
                &product.description.as_str(),
                &product.images.as_slice(),
                &product.price.value(),
                &status,
                &compressed,
            ],
        )
        .await?;
    let row = ProductRow::from_row(&row);
    let id = row.id;
    let event = ProductCreated {
        product_id: id.to_string(),
        user_id: product.user_id.to_string(),
        image_revision: 1,
        product_images: product.images.as_slice().to_vec(),
    };
    outbox::enqueue(&tx, id, EventType::ProductCreated, &event).await?;
    feed::record_state(&tx, &row).await?;
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
    Ok(row.as_ref().map(ProductRow::from_row))
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
        .map(ProductRow::from_row)
        .collect();
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
    changes: &ProductChanges,
) -> Result<Option<ProductRow>, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let current = tx
        .query_opt(
            "SELECT product_images, image_revision FROM products WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?;
    let Some(current) = current else {
        return Ok(None);
    };
    let current_images: Vec<String> = current.get(0);
    let current_revision: i32 = current.get(1);
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
                &status,
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
    let row = ProductRow::from_row(&row);
    feed::record_state(&tx, &row).await?;
    tx.commit().await?;
    Ok(Some(row))
}

/// Deletes the product and writes `ProductDeleted`; false when there was none.
#[tracing::instrument(name = "postgres delete product", skip_all, fields(otel.kind = "client", db.system = "postgresql", db.operation.name = "delete product"))]
pub async fn delete(pool: &Pool, id: i64) -> Result<bool, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let deleted = tx
        .execute("DELETE FROM products WHERE id = $1", &[&id])
        .await?;
    if deleted == 0 {
        return Ok(false);
    }
    let event = ProductDeleted {
        product_id: id.to_string(),
    };
    outbox::enqueue(&tx, id, EventType::ProductDeleted, &event).await?;
    feed::record_deletion(&tx, id).await?;
    tx.commit().await?;
    Ok(true)
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
