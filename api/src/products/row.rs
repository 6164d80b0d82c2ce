//! A row of `products`, read by column name.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tokio_postgres::{Row, types::FromSql};

use super::images::StoredImages;
use crate::{db::DbError, metrics::STORED_VALUES_UNREADABLE};

/// The columns every query that returns a whole product selects.
pub(super) const COLUMNS: &str = "id, user_id, product_name, product_description, product_images, \
     compressed_product_images, product_price, image_revision, image_status, version, created_at, updated_at";

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
    pub image_status: StoredImages,
    /// Grows with every change; the cache's guard against stale entries.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<&Row> for ProductRow {
    type Error = DbError;

    /// Fails, logged and counted, on a value this version cannot read: a product is never
    /// shown with a guess in place of what is stored.
    fn try_from(row: &Row) -> Result<Self, DbError> {
        let id: i64 = row
            .try_get("id")
            .map_err(|error| unreadable(0, "id", error))?;
        let column = |name| (row, id, name);
        let images: Vec<String> = read(column("product_images"))?;
        let image_status = StoredImages::read(row, "image_status", images.len())
            .map_err(|error| unreadable(id, "image_status", error))?;
        Ok(Self {
            id,
            user_id: read(column("user_id"))?,
            name: read(column("product_name"))?,
            description: read(column("product_description"))?,
            images,
            compressed_images: read(column("compressed_product_images"))?,
            price: read(column("product_price"))?,
            image_revision: read(column("image_revision"))?,
            image_status,
            version: read(column("version"))?,
            created_at: read(column("created_at"))?,
            updated_at: read(column("updated_at"))?,
        })
    }
}

/// Column `name` of `row` (of product `id`), or the error of a value that cannot be read.
fn read<'a, T: FromSql<'a>>((row, id, name): (&'a Row, i64, &str)) -> Result<T, DbError> {
    row.try_get(name)
        .map_err(|error| unreadable(id, name, error))
}

/// The error, log line and count for a stored value of product `id` that cannot be read.
pub(super) fn unreadable(id: i64, column: &str, error: tokio_postgres::Error) -> DbError {
    STORED_VALUES_UNREADABLE.inc();
    tracing::error!(
        product_id = id,
        column,
        error = format!("{error:#}"),
        "A stored value of a product cannot be read; the product is not shown."
    );
    DbError::Unreadable(
        anyhow::Error::new(error).context(format!("Failed to read {column} of product {id}")),
    )
}
