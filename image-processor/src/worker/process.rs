//! Processing one job's images: download, reuse of identical content or compression in two
//! steps, storage, and the results that report them.
//!
//! An image is made in two steps, so a product shows its pictures as soon as the cheap part
//! is done:
//! 1. decode, scale, the WebP ladder and the placeholders; stored (with `first-step.json`),
//!    referred to, and published at once as a result with `pending_formats`;
//! 2. the AVIF ladder from the same pixels, encoded while the first step is stored and
//!    published; stored with the complete manifest, and returned to the job, which publishes
//!    it as the image's final result. While other first steps wait, the second step is
//!    deferred instead ([`crate::settings::LaterStep`]): the job keeps the downloaded source
//!    in the store and sends the image to the later topic, whose consumer reads and decodes
//!    the source again, finds the first step stored and makes only the AVIF.
//!
//! A second step that fails keeps the first step shown: a transient failure retries the
//! image, and the retry finds the first step stored and makes only the AVIF; a permanent one
//! (or retries used up) reports the image compressed with the AVIF's reason in
//! `failed_formats`.

use events::{ImageDetails, ImageOutcome, ImageResult, ImageVariant, SourceImage};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{Worker, make::FirstStep};
use crate::{
    content::{ContentStore, Found, Manifest},
    failure::Failure,
    job::Job,
    transform::OutputFormat,
};

/// What one attempt did with an image it did not fail.
enum Done {
    Finished(Box<Processed>),
    /// Its first step is shown, and its second is left to the later topic, with its source
    /// kept under this content.
    Deferred(String),
}

/// What one attempt did with a job's images.
pub(super) struct Outcomes {
    /// The finished images' results, by index.
    pub finished: Vec<ImageResult>,
    /// Images shown whose second step is deferred, with the content their source was kept
    /// under.
    pub deferred: Vec<(SourceImage, String)>,
    /// Images the attempt did not finish, whose next step [`super::step::next_step`] decides.
    pub unfinished: Vec<Unfinished>,
}

/// A finished image.
struct Processed {
    result: ImageResult,
    /// Its content was already stored: made from the same bytes under the same settings,
    /// for this product or another.
    reused: bool,
}

/// An image this attempt did not finish.
pub(super) struct Unfinished {
    pub image: SourceImage,
    pub failure: Failure,
    /// What is already published for it when the second step failed: its first step, which
    /// a final failure must not hide.
    pub shown: Option<ImageResult>,
}

impl Unfinished {
    /// The image's final result once it is given up on: its first step with the formats it
    /// lacks marked failed, or a failed image.
    pub fn given_up(self, reason: String) -> ImageResult {
        match self.shown {
            Some(mut shown) => {
                for format in std::mem::take(&mut shown.details.pending_formats) {
                    shown.details.failed_formats.insert(format, reason.clone());
                }
                shown
            }
            None => ImageResult::failed(self.image.index, self.image.url, reason),
        }
    }
}

impl Worker {
    /// Processes the job's images. First steps are published as they are made.
    pub(super) async fn process(&self, job: &Job, shutdown: &CancellationToken) -> Outcomes {
        // A deferred second step takes its images one at a time: each holds its source's
        // memory while it waits for the cores behind first steps, memory those first steps
        // need, and one image's widths already keep the cores busy.
        let at_once = if job.later {
            1
        } else {
            self.image_concurrency.max(1)
        };
        let outcomes: Vec<(SourceImage, Result<Done, Unfinished>)> =
            futures_util::stream::iter(job.images.clone())
                .map(|image| async {
                    let outcome = self.process_image(job, image.clone(), shutdown).await;
                    (image, outcome)
                })
                .buffer_unordered(at_once)
                .collect()
                .await;
        let mut done = Outcomes {
            finished: Vec::new(),
            deferred: Vec::new(),
            unfinished: Vec::new(),
        };
        for (image, outcome) in outcomes {
            match outcome {
                Ok(Done::Finished(processed)) => {
                    let Processed { result, reused } = *processed;
                    self.metrics
                        .image(if reused { "reused" } else { "compressed" });
                    done.finished.push(result);
                }
                Ok(Done::Deferred(content)) => {
                    self.metrics.image("deferred");
                    done.deferred.push((image, content));
                }
                Err(image) => done.unfinished.push(image),
            }
        }
        done.finished.sort_by_key(|r| r.index);
        done.deferred.sort_by_key(|(i, _)| i.index);
        done
    }

    /// Processes one image.
    async fn process_image(
        &self,
        job: &Job,
        image: SourceImage,
        shutdown: &CancellationToken,
    ) -> Result<Done, Unfinished> {
        let mut shown = None;
        match self.make_image(job, &image, &mut shown, shutdown).await {
            Ok(processed) => Ok(processed),
            Err(failure) => Err(Unfinished {
                image,
                failure,
                shown,
            }),
        }
    }

    /// Downloads, reuses or makes, and stores one image; `shown` is set once its first step
    /// is published.
    async fn make_image(
        &self,
        job: &Job,
        image: &SourceImage,
        shown: &mut Option<ImageResult>,
        shutdown: &CancellationToken,
    ) -> Result<Done, Failure> {
        // Bounds the downloaded bytes held by the whole process, whichever consumers are busy.
        let _slot = self
            .images_at_once
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let ticket = self.cores.ticket();
        let kept = match job.sources.get(&image.index) {
            Some(content) => self.content.source(content).await?,
            None => None,
        };
        let bytes = match kept {
            Some(bytes) => {
                tracing::info!(product_id = %job.product_id, index = image.index, bytes = bytes.len(), "Read the source kept for the second step.");
                bytes
            }
            None => self.download(job, image).await?,
        };
        let bytes_before = bytes.len() as u64;
        let digest = self.content.digest(&bytes);
        if let Some((content, manifest, found)) = self.content.find(&digest).await? {
            tracing::info!(
                product_id = %job.product_id,
                index = image.index,
                content = %content,
                copied = found == Found::Copied,
                "Reused the stored images of identical bytes."
            );
            // The reference before the result: once a product shows content, cleanup keeps it.
            self.content
                .refer(&job.product_id, job.revision, image.index, &content)
                .await?;
            return Ok(Done::Finished(Box::new(Processed {
                result: self.image_result(image, bytes_before, &content, &manifest, &[]),
                reused: true,
            })));
        }
        let later: Vec<OutputFormat> = self
            .transform
            .formats
            .iter()
            .copied()
            .filter(|f| *f != OutputFormat::Webp)
            .collect();
        let found = match later.is_empty() {
            true => None,
            false => self.content.find_first_step(&digest).await?,
        };
        // A deferred second step finds its first step shown by the job that deferred it.
        let already_shown = job.later && found.is_some();
        let (content, first, made) = match found {
            Some((content, first)) => {
                tracing::info!(product_id = %job.product_id, index = image.index, content = %content, "Found the first step stored; making the rest.");
                (content, FirstStep::Stored(first), None)
            }
            None => {
                let content = ContentStore::content_id(&digest, self.content.epoch_now());
                let (made, first) = self.make_first_step(job, image, ticket, &bytes).await?;
                (content, first, Some(made))
            }
        };
        if later.is_empty() {
            let manifest = self.store_first_step(&content, first, true).await?;
            self.content
                .refer(&job.product_id, job.revision, image.index, &content)
                .await?;
            return Ok(Done::Finished(Box::new(Processed {
                result: self.image_result(image, bytes_before, &content, &manifest, &[]),
                reused: false,
            })));
        }
        // The second step's encoding starts at once, on the pixels the first step decoded;
        // storing and publishing the first step overlap it. A first step that cannot be
        // shown ends the attempt (the encoding is dropped); a second step that fails is
        // reported once the first is shown.
        let show_first = async {
            let first = self.store_first_step(&content, first, false).await?;
            self.content
                .refer(&job.product_id, job.revision, image.index, &content)
                .await?;
            let result = self.image_result(image, bytes_before, &content, &first, &later);
            if already_shown {
                return Ok((first, result));
            }
            let published = self
                .send_durably(self.images_compressed(job, vec![result.clone()]), shutdown)
                .await;
            if !published {
                return Err(Failure::transient("shutting down"));
            }
            tracing::info!(product_id = %job.product_id, index = image.index, "Published the first step.");
            self.first_step_shown.notify_waiters();
            Ok((first, result))
        };
        // Made just now while other first steps wait: the second step goes to the later
        // topic, with the source kept for it, and the decoded source's memory is given back
        // at once.
        if made.is_some() && !job.later && self.later_step.defers(self.first_steps_waiting()) {
            drop(made);
            tokio::try_join!(show_first, self.content.put_source(&content, &bytes))?;
            tracing::info!(product_id = %job.product_id, index = image.index, "Deferred the second step to the later topic.");
            return Ok(Done::Deferred(content));
        }
        let make_rest = async {
            Ok::<_, Failure>(
                self.make_second_step(job, image, ticket, &bytes, made, &later)
                    .await,
            )
        };
        let ((first, first_result), rest) = tokio::try_join!(show_first, make_rest)?;
        *shown = Some(first_result);
        let manifest = self.store_second_step(&content, first, rest?).await?;
        Ok(Done::Finished(Box::new(Processed {
            result: self.image_result(image, bytes_before, &content, &manifest, &[]),
            reused: false,
        })))
    }

    /// Downloads the image's source.
    async fn download(&self, job: &Job, image: &SourceImage) -> Result<bytes::Bytes, Failure> {
        let started = std::time::Instant::now();
        let host = url::Url::parse(&image.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        let fetch_span = tracing::info_span!("fetch", index = image.index, host = %host);
        let fetched = match tracing::Instrument::instrument(
            self.fetcher.fetch(&image.url),
            fetch_span,
        )
        .await
        {
            Ok(fetched) => fetched,
            Err(failure) => {
                tracing::info!(product_id = %job.product_id, index = image.index, host, reason = %failure, transient = failure.is_transient(), "Download failed.");
                return Err(failure);
            }
        };
        self.metrics
            .stage("download", started.elapsed().as_secs_f64());
        tracing::info!(
            product_id = %job.product_id,
            index = image.index,
            host,
            bytes = fetched.bytes.len(),
            ms = started.elapsed().as_millis() as u64,
            "Download succeeded."
        );
        Ok(fetched.bytes)
    }

    /// The result of an image shown by `content`.
    /// `pending` names the formats a later result adds.
    fn image_result(
        &self,
        image: &SourceImage,
        bytes_before: u64,
        content: &str,
        manifest: &Manifest,
        pending: &[OutputFormat],
    ) -> ImageResult {
        let variants: Vec<ImageVariant> = manifest
            .variants
            .iter()
            .map(|v| ImageVariant {
                url: self.content.url(content, &v.file),
                format: v.format.clone(),
                width: v.width,
                height: v.height,
                bytes: v.bytes,
            })
            .collect();
        let webp = OutputFormat::Webp.media_type();
        let largest_webp = variants
            .iter()
            .filter(|v| v.format == webp)
            .max_by_key(|v| v.width)
            .cloned();
        ImageResult {
            index: image.index,
            source_url: image.url.clone(),
            outcome: ImageOutcome::Compressed,
            details: ImageDetails {
                compressed_url: largest_webp.as_ref().map(|v| v.url.clone()),
                failure_reason: None,
                bytes_before: Some(bytes_before),
                bytes_after: largest_webp.as_ref().map(|v| v.bytes),
                width: largest_webp.as_ref().map(|v| v.width),
                height: largest_webp.as_ref().map(|v| v.height),
                format: Some(webp.to_owned()),
                source_width: Some(manifest.source_width),
                source_height: Some(manifest.source_height),
                srcset: events::srcset(
                    variants
                        .iter()
                        .map(|v| (v.format.as_str(), v.url.as_str(), v.width)),
                ),
                variants,
                thumbhash: Some(manifest.thumbhash.clone()),
                dominant_color: Some(manifest.dominant_color.clone()),
                pending_formats: pending.iter().map(|f| f.media_type().to_owned()).collect(),
                failed_formats: Default::default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unfinished(shown: Option<ImageResult>) -> Unfinished {
        Unfinished {
            image: SourceImage {
                index: 2,
                url: "https://img.example/a.jpg".into(),
            },
            failure: Failure::transient("storing the image failed: disk full"),
            shown,
        }
    }

    #[test]
    fn an_image_given_up_after_its_first_step_stays_compressed_with_the_reason() {
        let mut first = ImageResult {
            index: 2,
            source_url: "https://img.example/a.jpg".into(),
            outcome: ImageOutcome::Compressed,
            details: ImageDetails {
                compressed_url: Some("https://cdn.example/640.webp".into()),
                pending_formats: vec!["image/avif".into()],
                ..Default::default()
            },
        };
        let given_up = unfinished(Some(first.clone())).given_up("disk full".into());
        first.details.pending_formats.clear();
        first
            .details
            .failed_formats
            .insert("image/avif".into(), "disk full".into());
        assert_eq!(given_up, first);

        let never_shown = unfinished(None).given_up("disk full".into());
        assert_eq!(
            never_shown,
            ImageResult::failed(2, "https://img.example/a.jpg", "disk full")
        );
    }
}
