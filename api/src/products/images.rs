//! `products.image_status`: the state of each image of a product, in `product_images` order.
//! The one owner of that column's JSON: the create and update write it pending, the projector
//! records results, reads show it.
//!
//! An entry is an image's status and its [`ImageDetails`], the shape a result from the
//! image-processor carries too. The source URL is not stored (it is `product_images[i]`),
//! nor the `srcset` (derived from the variants when shown).

use events::{ImageDetails, ImageOutcome, ImageResult, ImageState, ImageStatus};
use serde::{Deserialize, Serialize};
use tokio_postgres::{Row, types::Json};

/// One entry of the column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredImage {
    status: ImageStatus,
    #[serde(flatten)]
    details: ImageDetails,
}

impl StoredImage {
    fn pending() -> Self {
        Self {
            status: ImageStatus::Pending,
            details: ImageDetails::default(),
        }
    }
}

/// The state of every image of one product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StoredImages(Vec<StoredImage>);

impl StoredImages {
    /// `count` images, none processed yet.
    pub fn pending(count: usize) -> Self {
        Self(vec![StoredImage::pending(); count])
    }

    /// Column `column` of `row`, for a product with `count` images. Entries missing (a
    /// product stored before its images had states) count as pending; a value that is not
    /// such a list is an error, never read as pending.
    pub fn read(row: &Row, column: &str, count: usize) -> Result<Self, tokio_postgres::Error> {
        let Json(mut states) = row.try_get::<_, Json<Vec<StoredImage>>>(column)?;
        states.resize(count, StoredImage::pending());
        Ok(Self(states))
    }

    /// The column's value.
    pub fn to_column(&self) -> Json<&[StoredImage]> {
        Json(&self.0)
    }

    /// Whether any image still waits for its result.
    pub fn any_pending(&self) -> bool {
        self.0.iter().any(|s| s.status == ImageStatus::Pending)
    }

    /// Whether any image still waits for its result or for some of its formats.
    pub fn ladder_pending(&self) -> bool {
        self.0
            .iter()
            .any(|s| s.status == ImageStatus::Pending || s.details.ladder_pending())
    }

    /// `compressed_product_images`: each image's compressed URL, `None` until compressed.
    pub fn compressed_urls(&self) -> Vec<Option<String>> {
        self.0
            .iter()
            .map(|s| s.details.compressed_url.clone())
            .collect()
    }

    /// Records a result from the image-processor; false when it changes nothing:
    /// - an index out of range;
    /// - a failure for an image already compressed (a redriven or late job that failed again
    ///   says nothing about the image already compressed), except that formats it still
    ///   waited for are then failed with the reason;
    /// - a first step (formats still pending) for an image whose whole ladder is stored: a
    ///   late or repeated first step never takes the AVIF away;
    /// - the result already stored.
    pub fn record(&mut self, result: &ImageResult) -> bool {
        let Some(state) = self.0.get_mut(result.index as usize) else {
            return false;
        };
        if state.status == ImageStatus::Compressed && result.outcome == ImageOutcome::Failed {
            // A failure for an image shown by its first step: a later attempt at the formats
            // still to come failed before it could show anything (its download, say). The
            // image stays shown; the formats it waited for are failed with the reason.
            let Some(reason) = result
                .details
                .failure_reason
                .as_ref()
                .filter(|_| state.details.ladder_pending())
            else {
                return false;
            };
            for format in std::mem::take(&mut state.details.pending_formats) {
                state.details.failed_formats.insert(format, reason.clone());
            }
            return true;
        }
        if state.status == ImageStatus::Compressed
            && result.details.ladder_pending()
            && !state.details.ladder_pending()
        {
            return false;
        }
        let recorded = StoredImage {
            status: match result.outcome {
                ImageOutcome::Compressed => ImageStatus::Compressed,
                ImageOutcome::Failed => ImageStatus::Failed,
            },
            details: ImageDetails {
                srcset: Default::default(),
                ..result.details.clone()
            },
        };
        if *state == recorded {
            return false;
        }
        *state = recorded;
        true
    }

    /// The states as the API shows them: with the source URLs and the srcsets.
    pub fn shown(self, images: &[String]) -> Vec<ImageState> {
        self.0
            .into_iter()
            .zip(images)
            .map(
                |(
                    StoredImage {
                        status,
                        mut details,
                    },
                    url,
                )| {
                    details.srcset = events::srcset(
                        details
                            .variants
                            .iter()
                            .map(|v| (v.format.as_str(), v.url.as_str(), v.width)),
                    );
                    ImageState {
                        source_url: url.clone(),
                        status,
                        details,
                    }
                },
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use events::ImageVariant;
    use serde_json::json;

    use super::*;

    fn compressed(index: u32) -> ImageResult {
        let variant = |url: &str, width, height, bytes| ImageVariant {
            url: url.into(),
            format: "image/webp".into(),
            width,
            height,
            bytes,
        };
        ImageResult {
            index,
            source_url: "https://img.example/a.jpg".into(),
            outcome: ImageOutcome::Compressed,
            details: ImageDetails {
                compressed_url: Some("https://cdn.example/a.webp".into()),
                bytes_before: Some(1000),
                bytes_after: Some(300),
                width: Some(640),
                height: Some(480),
                format: Some("image/webp".into()),
                source_width: Some(1280),
                source_height: Some(960),
                variants: vec![
                    variant("https://cdn.example/320.webp", 320, 240, 40),
                    variant("https://cdn.example/a.webp", 640, 480, 300),
                ],
                srcset: events::srcset([("image/webp", "https://cdn.example/a.webp", 640)]),
                thumbhash: Some("1QcSHQRnh493V4dIh4eXh1h4kJUI".into()),
                dominant_color: Some("#336699".into()),
                failure_reason: None,
                ..ImageDetails::default()
            },
        }
    }

    fn column(images: &StoredImages) -> serde_json::Value {
        serde_json::to_value(images.to_column().0).unwrap()
    }

    #[test]
    fn new_images_are_stored_pending_with_no_urls() {
        let images = StoredImages::pending(2);
        assert_eq!(
            column(&images),
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
            column(&images),
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
            shown[0].details.srcset["image/webp"],
            "https://cdn.example/320.webp 320w, https://cdn.example/a.webp 640w"
        );
        assert!(shown[1].details.srcset.is_empty());
    }

    #[test]
    fn a_failure_after_a_first_step_fails_only_the_formats_still_to_come() {
        let mut first = compressed(0);
        first.details.pending_formats = vec!["image/avif".into()];
        let mut images = StoredImages::pending(1);
        assert!(images.record(&first));
        assert!(images.ladder_pending());
        // A retry of the AVIF whose download then failed for good.
        assert!(images.record(&ImageResult::failed(0, "u", "HTTP 404")));
        assert!(!images.ladder_pending());
        let shown = images.clone().shown(&["a".into()]);
        assert_eq!(shown[0].status, ImageStatus::Compressed);
        assert_eq!(
            shown[0].details.compressed_url.as_deref(),
            Some("https://cdn.example/a.webp")
        );
        assert_eq!(shown[0].details.failed_formats["image/avif"], "HTTP 404");
        // Once nothing is pending, a failure changes nothing.
        assert!(!images.record(&ImageResult::failed(0, "u", "timeout")));
    }

    #[test]
    fn stored_states_read_back_whatever_version_wrote_them() {
        // As the projector wrote them before this type owned the column: every key, nulls.
        let written_before = json!([
            {"status": "failed", "compressed_url": null, "failure_reason": "timeout",
             "bytes_before": null, "bytes_after": null, "width": null, "height": null,
             "format": null},
        ]);
        let mut expected = StoredImages::pending(1);
        expected.record(&ImageResult::failed(0, "u", "timeout"));
        let read: StoredImages = serde_json::from_value(written_before).unwrap();
        assert_eq!(read, expected);
        // A value it cannot read is an error, never every image pending.
        assert!(serde_json::from_value::<StoredImages>(json!("garbage")).is_err());
        assert!(serde_json::from_value::<StoredImages>(json!([{"state": "done"}])).is_err());
        let shown = StoredImages::pending(2).shown(&["a".into(), "b".into()]);
        assert_eq!(shown[1].source_url, "b");
        assert_eq!(shown[1].status, ImageStatus::Pending);
    }
}
