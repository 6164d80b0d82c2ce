//! The JSON shapes of the product endpoints, and their conversion into domain types.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object, types::MaybeUndefined};
use rust_decimal::{Decimal, prelude::ToPrimitive};

use super::repo::ProductRow;
use crate::{
    domain::{FieldError, ImageUrls, Price, ProductDescription, ProductName, UserId, Validator},
    error::ApiError,
    routes::{
        nullable::Nullable,
        number_or_string::{NumberOrString, PriceFlavour, UserIdFlavour},
    },
};

/// A new product.
#[derive(Object)]
pub struct CreateProduct {
    /// The owner; must exist (POST /users). A number or a string of digits.
    pub user_id: NumberOrString<UserIdFlavour>,
    /// 1 to 255 characters after trimming.
    pub product_name: String,
    /// Up to 5,000 characters; empty when omitted.
    #[oai(default)]
    pub product_description: String,
    /// 1 to 10 distinct absolute http(s) URLs; they are fetched and compressed asynchronously.
    pub product_images: Vec<String>,
    /// Non-negative, at most 2 decimal places.
    pub product_price: NumberOrString<PriceFlavour>,
}

/// A validated new product.
pub struct NewProduct {
    pub user_id: UserId,
    pub name: ProductName,
    pub description: ProductDescription,
    pub images: ImageUrls,
    pub price: Price,
}

impl CreateProduct {
    pub fn validate(&self, max_images: usize) -> Result<NewProduct, ApiError> {
        let mut v = Validator::default();
        let user_id = v.check("user_id", UserId::parse(self.user_id.as_str()));
        let name = v.check("product_name", ProductName::parse(&self.product_name));
        let description = v.check(
            "product_description",
            ProductDescription::parse(&self.product_description),
        );
        let images = ImageUrls::parse("product_images", &self.product_images, max_images)
            .map_err(|errors| v.extend(errors))
            .ok();
        let price = v.check("product_price", Price::parse(self.product_price.as_str()));
        v.finish().map_err(ApiError::validation)?;
        match (user_id, name, description, images, price) {
            (Some(user_id), Some(name), Some(description), Some(images), Some(price)) => {
                Ok(NewProduct {
                    user_id,
                    name,
                    description,
                    images,
                    price,
                })
            }
            _ => unreachable!("a field that failed validation was recorded as an error"),
        }
    }
}

/// Changes to a product; omitted fields stay as they are, `null` is not accepted.
#[derive(Object)]
pub struct UpdateProduct {
    /// 1 to 255 characters after trimming.
    pub product_name: MaybeUndefined<String>,
    /// Up to 5,000 characters.
    pub product_description: MaybeUndefined<String>,
    /// Replaces the image list; the new images are processed again.
    pub product_images: MaybeUndefined<Vec<String>>,
    /// Non-negative, at most 2 decimal places.
    pub product_price: MaybeUndefined<NumberOrString<PriceFlavour>>,
}

/// A validated change; `None` leaves the column as it is.
#[derive(Default)]
pub struct ProductChanges {
    pub name: Option<ProductName>,
    pub description: Option<ProductDescription>,
    pub images: Option<ImageUrls>,
    pub price: Option<Price>,
}

/// Rejects an explicit `null`, runs `parse` on a value, and leaves an omitted field alone.
fn optional<T, U>(
    v: &mut Validator,
    field: &str,
    value: &MaybeUndefined<T>,
    parse: impl FnOnce(&T) -> Result<U, String>,
) -> Option<U> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => v.check(
            field,
            Err("must not be null; omit the field to keep it".into()),
        ),
        MaybeUndefined::Value(value) => v.check(field, parse(value)),
    }
}

impl UpdateProduct {
    pub fn validate(&self, max_images: usize) -> Result<ProductChanges, ApiError> {
        let mut v = Validator::default();
        let name = optional(&mut v, "product_name", &self.product_name, |s| {
            ProductName::parse(s)
        });
        let description = optional(
            &mut v,
            "product_description",
            &self.product_description,
            |s| ProductDescription::parse(s),
        );
        let price = optional(&mut v, "product_price", &self.product_price, |p| {
            Price::parse(p.as_str())
        });
        let images = match &self.product_images {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => v.check(
                "product_images",
                Err("must not be null; omit the field to keep the images".into()),
            ),
            MaybeUndefined::Value(urls) => ImageUrls::parse("product_images", urls, max_images)
                .map_err(|errors| v.extend(errors))
                .ok(),
        };
        let given = [
            self.product_name.is_undefined(),
            self.product_description.is_undefined(),
            self.product_images.is_undefined(),
            self.product_price.is_undefined(),
        ];
        if given.iter().all(|undefined| *undefined) {
            v.extend(vec![FieldError {
                field: "body".into(),
                message: "name at least one of product_name, product_description, product_images, product_price".into(),
            }]);
        }
        v.finish().map_err(ApiError::validation)?;
        Ok(ProductChanges {
            name,
            description,
            images,
            price,
        })
    }
}

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

/// Where processing of the product's current images stands, as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum ProcessingStatus {
    /// Some images are still being processed.
    Pending,
    /// Every image is compressed.
    Done,
    /// Every image is finished; some failed.
    PartlyFailed,
    /// Every image failed.
    Failed,
}

/// The state of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, serde::Serialize, serde::Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ImageStatus {
    /// Not processed yet (or waiting for a retry).
    Pending,
    /// Compressed and stored.
    Compressed,
    /// Given up on; `failure_reason` says why.
    Failed,
}

/// One image of a product and how its processing went.
// Also its stored form, an entry of `products.image_status` (JSONB), read and written only
// through `StoredImages` (serde); the source URL is not stored (it is `product_images[i]`).
#[derive(Debug, Clone, PartialEq, Object, serde::Serialize, serde::Deserialize)]
pub struct ImageState {
    /// The URL as given.
    #[serde(default, skip_serializing)]
    pub source_url: String,
    pub status: ImageStatus,
    /// Where the compressed image is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub compressed_url: Option<String>,
    /// Why the image failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub failure_reason: Option<String>,
    /// Size of the original, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub bytes_before: Option<u64>,
    /// Size of the compressed image, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub bytes_after: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub height: Option<u32>,
    /// Media type of the compressed image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub format: Option<String>,
    /// The source's width in pixels, after EXIF orientation (once compressed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub source_width: Option<u32>,
    /// The source's height in pixels, after EXIF orientation (once compressed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub source_height: Option<u32>,
    /// Every compressed rendition, ordered by format, then width (once compressed). The
    /// largest `image/webp` one is `compressed_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub variants: Option<Vec<ImageVariant>>,
    /// Per media type, the `srcset` of its variants (`<url> 320w, <url> 640w, …`), ready
    /// for `<picture><source type="image/avif" srcset="…">` (once compressed). Derived from
    /// `variants` when shown, never stored.
    #[serde(default, skip)]
    #[oai(skip_serializing_if_is_none)]
    pub srcset: Option<BTreeMap<String, String>>,
    /// The image's ThumbHash, base64 (standard alphabet): a blurred placeholder that also
    /// gives the aspect ratio (once compressed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub thumbhash: Option<String>,
    /// The image's most common colour, `#rrggbb` (once compressed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[oai(skip_serializing_if_is_none)]
    pub dominant_color: Option<String>,
}

/// One compressed rendition of an image: a width of the ladder in one format.
#[derive(Debug, Clone, PartialEq, Eq, Object, serde::Serialize, serde::Deserialize)]
pub struct ImageVariant {
    /// Where it is served; the object never changes (cache it for good).
    pub url: String,
    /// Its media type: `image/avif` or `image/webp`.
    pub format: String,
    /// In pixels.
    pub width: u32,
    /// In pixels.
    pub height: u32,
    /// Its size in bytes.
    pub bytes: u64,
}

impl From<&events::ImageVariant> for ImageVariant {
    fn from(v: &events::ImageVariant) -> Self {
        Self {
            url: v.url.clone(),
            format: v.format.clone(),
            width: v.width,
            height: v.height,
            bytes: v.bytes,
        }
    }
}

/// `products.image_status`: the state of each image of a product, in `product_images`
/// order. The one owner of that column's JSON: the create and update write it pending, the
/// projector records results, reads show it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredImages(Vec<ImageState>);

impl ImageState {
    fn pending() -> Self {
        Self {
            source_url: String::new(),
            status: ImageStatus::Pending,
            compressed_url: None,
            failure_reason: None,
            bytes_before: None,
            bytes_after: None,
            width: None,
            height: None,
            format: None,
            source_width: None,
            source_height: None,
            variants: None,
            srcset: None,
            thumbhash: None,
            dominant_color: None,
        }
    }
}

impl StoredImages {
    /// `count` images, none processed yet.
    pub fn pending(count: usize) -> Self {
        Self(vec![ImageState::pending(); count])
    }

    /// The column's value for a product with `count` images. Entries missing (or a value
    /// this version cannot read) count as pending, so a read never fails on old data.
    pub fn from_column(value: serde_json::Value, count: usize) -> Self {
        let mut states: Vec<ImageState> = serde_json::from_value(value).unwrap_or_default();
        states.resize(count, ImageState::pending());
        Self(states)
    }

    /// The column's value.
    pub fn to_column(&self) -> serde_json::Value {
        serde_json::to_value(&self.0).expect("image states serialise")
    }

    /// `compressed_product_images`: each image's compressed URL, `None` until compressed.
    pub fn compressed_urls(&self) -> Vec<Option<String>> {
        self.0.iter().map(|s| s.compressed_url.clone()).collect()
    }

    /// Records a final outcome from the image-processor; false when it changes nothing: an
    /// index out of range, or a failure for an image already compressed (a redriven or late
    /// job that failed again says nothing about the image already compressed).
    pub fn record(&mut self, result: &events::ImageResult) -> bool {
        let Some(state) = self.0.get_mut(result.index as usize) else {
            return false;
        };
        if result.outcome == events::ImageOutcome::Failed && state.status == ImageStatus::Compressed
        {
            return false;
        }
        *state = ImageState {
            source_url: String::new(),
            status: match result.outcome {
                events::ImageOutcome::Compressed => ImageStatus::Compressed,
                events::ImageOutcome::Failed => ImageStatus::Failed,
            },
            compressed_url: result.compressed_url.clone(),
            failure_reason: result.failure_reason.clone(),
            bytes_before: result.bytes_before,
            bytes_after: result.bytes_after,
            width: result.width,
            height: result.height,
            format: result.format.clone(),
            source_width: result.source_width,
            source_height: result.source_height,
            variants: (!result.variants.is_empty())
                .then(|| result.variants.iter().map(Into::into).collect()),
            srcset: None,
            thumbhash: result.thumbhash.clone(),
            dominant_color: result.dominant_color.clone(),
        };
        true
    }

    /// The states as the API shows them, with the source URLs filled in.
    fn shown(self, images: &[String]) -> Vec<ImageState> {
        self.0
            .into_iter()
            .zip(images)
            .map(|(mut state, url)| {
                state.source_url = url.clone();
                state.srcset = state.variants.as_ref().map(|variants| {
                    events::srcset(
                        variants
                            .iter()
                            .map(|v| (v.format.as_str(), v.url.as_str(), v.width)),
                    )
                });
                state
            })
            .collect()
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

impl From<ProductRow> for Product {
    fn from(row: ProductRow) -> Self {
        let images =
            StoredImages::from_column(row.image_status, row.images.len()).shown(&row.images);
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

/// The answer to a successful POST /products (the seed's body plus the new id).
#[derive(Object)]
pub struct ProductCreated {
    /// Always `success`.
    pub status: String,
    /// `Product created successfully`.
    pub message: String,
    /// The new product's id; `Location` holds its URL.
    pub product_id: String,
}

#[cfg(test)]
mod tests {
    use events::{ImageOutcome, ImageResult};
    use serde_json::json;

    use super::*;

    fn compressed(index: u32) -> ImageResult {
        ImageResult {
            index,
            source_url: "https://img.example/a.jpg".into(),
            outcome: ImageOutcome::Compressed,
            compressed_url: Some("https://cdn.example/a.webp".into()),
            bytes_before: Some(1000),
            bytes_after: Some(300),
            width: Some(640),
            height: Some(480),
            format: Some("image/webp".into()),
            source_width: Some(1280),
            source_height: Some(960),
            variants: vec![
                events::ImageVariant {
                    url: "https://cdn.example/320.webp".into(),
                    format: "image/webp".into(),
                    width: 320,
                    height: 240,
                    bytes: 40,
                },
                events::ImageVariant {
                    url: "https://cdn.example/a.webp".into(),
                    format: "image/webp".into(),
                    width: 640,
                    height: 480,
                    bytes: 300,
                },
            ],
            srcset: Default::default(),
            thumbhash: Some("1QcSHQRnh493V4dIh4eXh1h4kJUI".into()),
            dominant_color: Some("#336699".into()),
            failure_reason: None,
        }
    }

    #[test]
    fn new_images_are_stored_pending_with_no_urls() {
        let images = StoredImages::pending(2);
        assert_eq!(
            images.to_column(),
            json!([{"status": "pending"}, {"status": "pending"}])
        );
        assert_eq!(images.compressed_urls(), [None, None]);
    }

    #[test]
    fn a_result_is_recorded_and_a_later_failure_never_replaces_a_compressed_image() {
        let mut images = StoredImages::pending(2);
        assert!(images.record(&compressed(0)));
        assert!(!images.record(&ImageResult::failed(0, "u", "HTTP 404")));
        assert!(images.record(&ImageResult::failed(1, "u", "HTTP 404")));
        assert!(!images.record(&compressed(7)), "an index out of range");
        assert_eq!(
            images.to_column(),
            json!([
                {"status": "compressed", "compressed_url": "https://cdn.example/a.webp",
                 "bytes_before": 1000, "bytes_after": 300, "width": 640, "height": 480,
                 "format": "image/webp", "source_width": 1280, "source_height": 960,
                 "variants": [
                    {"url": "https://cdn.example/320.webp", "format": "image/webp",
                     "width": 320, "height": 240, "bytes": 40},
                    {"url": "https://cdn.example/a.webp", "format": "image/webp",
                     "width": 640, "height": 480, "bytes": 300},
                 ],
                 "thumbhash": "1QcSHQRnh493V4dIh4eXh1h4kJUI", "dominant_color": "#336699"},
                {"status": "failed", "failure_reason": "HTTP 404"},
            ])
        );
        assert_eq!(
            images.compressed_urls(),
            [Some("https://cdn.example/a.webp".to_owned()), None]
        );
        // The srcset is not stored: it is derived from the variants when shown.
        let shown = images.shown(&["a".into(), "b".into()]);
        assert_eq!(
            shown[0].srcset.as_ref().unwrap()["image/webp"],
            "https://cdn.example/320.webp 320w, https://cdn.example/a.webp 640w"
        );
        assert_eq!(shown[1].srcset, None);
    }

    #[test]
    fn stored_states_read_back_whatever_version_wrote_them() {
        // As the projector wrote them before this type owned the column: every key, nulls.
        let written_before = json!([
            {"status": "failed", "compressed_url": null, "failure_reason": "timeout",
             "bytes_before": null, "bytes_after": null, "width": null, "height": null,
             "format": null},
        ]);
        let mut expected = StoredImages::pending(2);
        expected.record(&ImageResult::failed(0, "u", "timeout"));
        assert_eq!(StoredImages::from_column(written_before, 2), expected);
        // A value it cannot read shows every image pending rather than failing the read.
        assert_eq!(
            StoredImages::from_column(json!("garbage"), 1),
            StoredImages::pending(1)
        );
        let shown = expected.shown(&["a".into(), "b".into()]);
        assert_eq!(shown[1].source_url, "b");
        assert_eq!(shown[1].status, ImageStatus::Pending);
    }
}
