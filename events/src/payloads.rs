//! Event payloads: the JSON value of each Kafka record.
//!
//! Every payload names the product (`product_id`, a string of digits as in the HTTP API) and,
//! where images are concerned, the product's `image_revision`: it grows each time the image
//! list changes, so a consumer can ignore results that belong to an older list.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A product was created. Type `com.catalog.product.created.v1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductCreated {
    /// The new product's id.
    pub product_id: String,
    /// The owner's id.
    pub user_id: String,
    /// The image revision the images belong to (1 for a new product).
    pub image_revision: i32,
    /// The image URLs to process, in the product's order.
    pub product_images: Vec<String>,
}

/// A product's image list was replaced. Type `com.catalog.product.images-changed.v1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductImagesChanged {
    pub product_id: String,
    /// The new revision; results for older revisions are stale.
    pub image_revision: i32,
    /// The new image URLs, in the product's order.
    pub product_images: Vec<String>,
}

/// A product was deleted. Type `com.catalog.product.deleted.v1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductDeleted {
    pub product_id: String,
}

/// One image of a product, by its position in `product_images`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SourceImage {
    /// Zero-based position in the product's `product_images`.
    pub index: u32,
    /// The URL as the client gave it.
    pub url: String,
}

/// Images of a product reached an outcome. Type `com.catalog.images.compressed.v1`.
///
/// One event may carry only some of the product's images: those finished in one attempt.
/// Images that need a retry come in a later event. An image is compressed in two steps: a
/// first result with its WebP ladder and `pending_formats: ["image/avif"]`, then a result with
/// the whole ladder (or the AVIF's reason in `failed_formats`). Apply a result with pending
/// formats only where the image's stored state still has some (or is not compressed): the
/// whole ladder is never replaced by a first step that arrives late.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImagesCompressed {
    pub product_id: String,
    /// The revision these results belong to.
    pub image_revision: i32,
    /// One result per finished image.
    pub images: Vec<ImageResult>,
}

/// Whether an image was compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImageOutcome {
    /// Stored; `compressed_url` and the size fields are set.
    Compressed,
    /// Given up on; `failure_reason` says why.
    Failed,
}

/// The outcome for one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImageResult {
    /// Zero-based position in the product's `product_images`.
    pub index: u32,
    /// The URL the image was fetched from.
    pub source_url: String,
    pub outcome: ImageOutcome,
    #[serde(flatten)]
    pub details: ImageDetails,
}

impl ImageResult {
    /// A failed result.
    pub fn failed(index: u32, source_url: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            index,
            source_url: source_url.into(),
            outcome: ImageOutcome::Failed,
            details: ImageDetails {
                failure_reason: Some(reason.into()),
                ..ImageDetails::default()
            },
        }
    }
}

/// What processing found for one image: where its renditions are and what they are like
/// (when compressed), or why it failed. The one shape of these fields: a result carries it,
/// and so do the image states the API and the change feed show.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(
    feature = "openapi",
    derive(poem_openapi::Object),
    oai(skip_serializing_if_is_none, skip_serializing_if_is_empty)
)]
pub struct ImageDetails {
    /// Where the compressed image is served (when compressed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed_url: Option<String>,
    /// Why the image failed (when failed), e.g. `HTTP 404 from the image server`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Size of the downloaded original, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_before: Option<u64>,
    /// Size of the compressed image, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_after: Option<u64>,
    /// Width of the compressed image, in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Height of the compressed image, in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Media type of the compressed image, e.g. `image/webp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The source's width in pixels, after EXIF orientation (when compressed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_width: Option<u32>,
    /// The source's height in pixels, after EXIF orientation (when compressed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_height: Option<u32>,
    /// Every compressed rendition, ordered by format, then width (when compressed). The
    /// largest `image/webp` one is `compressed_url`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", oai(default))]
    pub variants: Vec<ImageVariant>,
    /// Per media type, the `srcset` of its variants (`<url> 320w, <url> 640w, …`), ready for
    /// `<picture><source type="image/avif" srcset="…">` (when compressed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "openapi", oai(default))]
    pub srcset: BTreeMap<String, String>,
    /// The image's ThumbHash, base64 with the standard alphabet: a blurred placeholder of
    /// about 25 bytes that also gives the aspect ratio (when compressed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbhash: Option<String>,
    /// The image's most common colour, `#rrggbb` (when compressed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dominant_color: Option<String>,
    /// The media types still being made, e.g. `["image/avif"]`: the image is compressed and
    /// shown with the variants it has, and a later result adds these formats' variants.
    /// Absent (empty) once the ladder is complete. WebP comes first, AVIF a moment later.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", oai(default))]
    pub pending_formats: Vec<String>,
    /// The media types that could not be made, each with why, e.g.
    /// `{"image/avif": "AVIF encoding failed: …"}`: the image is shown without them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "openapi", oai(default))]
    pub failed_formats: BTreeMap<String, String>,
}

impl ImageDetails {
    /// Whether formats of this image are still being made.
    pub fn ladder_pending(&self) -> bool {
        !self.pending_formats.is_empty()
    }
}

/// One compressed rendition of an image: a width of the ladder in one format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct ImageVariant {
    /// Where it is served; the object never changes (cache it for good).
    pub url: String,
    /// Its media type: `image/avif` or `image/webp`.
    pub format: String,
    /// In pixels.
    pub width: u32,
    /// In pixels; the source's aspect ratio, rounded.
    pub height: u32,
    /// Its size in bytes.
    pub bytes: u64,
}

/// The `srcset` attribute of each media type among `variants` (given as format, URL and
/// width), listing that type's variants by width: `{"image/webp": "<url> 320w, <url> 640w"}`.
pub fn srcset<'a>(
    variants: impl IntoIterator<Item = (&'a str, &'a str, u32)>,
) -> BTreeMap<String, String> {
    let mut by_format: BTreeMap<String, Vec<(u32, &str)>> = BTreeMap::new();
    for (format, url, width) in variants {
        by_format
            .entry(format.to_owned())
            .or_default()
            .push((width, url));
    }
    by_format
        .into_iter()
        .map(|(format, mut entries)| {
            entries.sort_by_key(|(width, _)| *width);
            let list: Vec<String> = entries
                .iter()
                .map(|(width, url)| format!("{url} {width}w"))
                .collect();
            (format, list.join(", "))
        })
        .collect()
}

/// A product as `GET /products/{id}` shows it: the value of a record on the compacted
/// products topic, one record per committed change. Type `com.catalog.product.state.v1`.
/// A deleted product's last record is a tombstone: its key with no value.
///
/// Subscribers keep the last value per key; fields may be added to this version, so ignore
/// the ones you do not know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProductState {
    /// The product's id (a string of digits); also the record key.
    pub product_id: String,
    /// The owner's id (a string of digits).
    pub user_id: String,
    pub product_name: String,
    pub product_description: String,
    /// The image URLs as given, in order.
    pub product_images: Vec<String>,
    /// The compressed images: same length and order as `product_images`, with `null` where
    /// an image is not compressed (still pending, or failed: see `images`).
    pub compressed_product_images: Vec<Option<String>>,
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

/// Where processing of a product's current images stands, as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(
    feature = "openapi",
    derive(poem_openapi::Enum),
    oai(rename_all = "snake_case")
)]
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

/// Where one image's processing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(
    feature = "openapi",
    derive(poem_openapi::Enum),
    oai(rename_all = "snake_case")
)]
pub enum ImageStatus {
    /// Not processed yet (or waiting for a retry).
    Pending,
    /// Compressed and stored.
    Compressed,
    /// Given up on; `failure_reason` says why.
    Failed,
}

/// One image of a product and how its processing went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct ImageState {
    /// The URL as given.
    pub source_url: String,
    pub status: ImageStatus,
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", oai(flatten))]
    pub details: ImageDetails,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_srcset_lists_each_format_by_width() {
        let sets = srcset([
            ("image/webp", "https://cdn/b.webp", 640),
            ("image/avif", "https://cdn/a.avif", 320),
            ("image/webp", "https://cdn/a.webp", 320),
        ]);
        assert_eq!(sets["image/avif"], "https://cdn/a.avif 320w");
        assert_eq!(
            sets["image/webp"],
            "https://cdn/a.webp 320w, https://cdn/b.webp 640w"
        );
        assert!(srcset([]).is_empty());
    }
}
