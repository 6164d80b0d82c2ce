//! The product as `GET /products/{id}` shows it, and as the `products` topic carries it
//! (`events::ProductState` is its subscriber-facing twin, checked field by field).

use chrono::{DateTime, Utc};
use events::{ImageState, ImageStatus, ProcessingStatus};
use poem_openapi::Object;
use rust_decimal::{Decimal, prelude::ToPrimitive};

use super::{nullable::Nullable, row::ProductRow};

/// A product as the API shows it.
#[derive(Object)]
pub struct Product {
    /// The product's id (a string of digits).
    pub product_id: String,
    /// The owner's id (a string of digits).
    pub user_id: String,
    pub product_name: String,
    pub product_description: String,
    /// The image URLs as given, in order.
    pub product_images: Vec<String>,
    /// The compressed images: same length and order as `product_images`, with `null` where
    /// an image is not compressed (still pending, or failed: see `images`).
    pub compressed_product_images: Vec<Nullable<String>>,
    /// The price as a JSON number with at most 2 decimal places.
    pub product_price: f64,
    pub processing_status: ProcessingStatus,
    /// Grows each time `product_images` changes.
    pub image_revision: i32,
    /// One entry per `product_images` entry, same order: how its processing went.
    pub images: Vec<ImageState>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ProductRow> for Product {
    fn from(row: ProductRow) -> Self {
        let images = row.image_status.shown(&row.images);
        Self {
            processing_status: overall(&images),
            image_revision: row.image_revision,
            images,
            product_id: row.id.to_string(),
            user_id: row.user_id.to_string(),
            product_name: row.name,
            product_description: row.description,
            product_images: row.images,
            compressed_product_images: row.compressed_images.into_iter().map(Nullable).collect(),
            product_price: price_number(row.price),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

fn overall(images: &[ImageState]) -> ProcessingStatus {
    let count = |s| images.iter().filter(|i| i.status == s).count();
    let (pending, failed) = (count(ImageStatus::Pending), count(ImageStatus::Failed));
    match () {
        _ if pending > 0 => ProcessingStatus::Pending,
        _ if failed == 0 => ProcessingStatus::Done,
        _ if failed == images.len() => ProcessingStatus::Failed,
        _ => ProcessingStatus::PartlyFailed,
    }
}

/// A price as a JSON number: the shortest f64 that reads back as the same decimal, which is
/// exact for every valid price (at most 12 significant digits).
fn price_number(price: Decimal) -> f64 {
    price
        .to_string()
        .parse()
        .unwrap_or_else(|_| price.to_f64().unwrap_or_default())
}
