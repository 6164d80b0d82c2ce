//! Processing one job's images: download, reuse of identical content or compression, storage,
//! and the result that reports it.

use base64::Engine;
use events::{ImageDetails, ImageOutcome, ImageResult, ImageVariant, SourceImage};
use futures_util::StreamExt;

use super::Worker;
use crate::{
    content::{ContentStore, Found, Manifest, StoredVariant},
    failure::Failure,
    job::Job,
    transform::{self, OutputFormat},
};

/// A finished image.
struct Processed {
    result: ImageResult,
    /// Its content was already stored: made from the same bytes under the same settings,
    /// for this product or another.
    reused: bool,
}

impl Worker {
    /// Processes the job's images; returns the compressed ones' results (by index) and the
    /// failures, whose next step [`super::step::next_step`] decides.
    pub(super) async fn process(
        &self,
        job: &Job,
    ) -> (Vec<ImageResult>, Vec<(SourceImage, Failure)>) {
        let outcomes: Vec<(SourceImage, Result<Processed, Failure>)> =
            futures_util::stream::iter(job.images.clone())
                .map(|image| async move {
                    let outcome = self.process_image(job, &image).await;
                    (image, outcome)
                })
                .buffer_unordered(self.image_concurrency.max(1))
                .collect()
                .await;
        let mut finished = Vec::new();
        let mut failures = Vec::new();
        for (image, outcome) in outcomes {
            match outcome {
                Ok(Processed { result, reused }) => {
                    self.metrics
                        .image(if reused { "reused" } else { "compressed" });
                    finished.push(result);
                }
                Err(failure) => failures.push((image, failure)),
            }
        }
        finished.sort_by_key(|r| r.index);
        (finished, failures)
    }

    /// Processes one image.
    async fn process_image(&self, job: &Job, image: &SourceImage) -> Result<Processed, Failure> {
        // Bounds the downloaded bytes held by the whole process, whichever consumers are busy.
        let _slot = self
            .images_at_once
            .acquire()
            .await
            .expect("the semaphore is never closed");
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
        let bytes_before = fetched.bytes.len() as u64;
        tracing::info!(
            product_id = %job.product_id,
            index = image.index,
            host,
            bytes = bytes_before,
            ms = started.elapsed().as_millis() as u64,
            "Download succeeded."
        );
        let digest = self.content.digest(&fetched.bytes);
        let (content, manifest, reused) = match self.content.find(&digest).await? {
            Some((content, manifest, found)) => {
                tracing::info!(
                    product_id = %job.product_id,
                    index = image.index,
                    content = %content,
                    copied = found == Found::Copied,
                    "Reused the stored images of identical bytes."
                );
                (content, manifest, true)
            }
            None => {
                let content = ContentStore::content_id(&digest, self.content.epoch_now());
                let manifest = self
                    .compress_and_store(job, image, fetched, &content)
                    .await?;
                (content, manifest, false)
            }
        };
        // The reference before the result: once a product shows content, cleanup keeps it.
        self.content
            .refer(&job.product_id, job.revision, image.index, &content)
            .await?;
        Ok(Processed {
            result: self.image_result(image, bytes_before, &content, manifest),
            reused,
        })
    }

    /// Decodes, makes the ladder and stores it as `content` (the manifest last).
    async fn compress_and_store(
        &self,
        job: &Job,
        image: &SourceImage,
        fetched: crate::fetch::Fetched,
        content: &str,
    ) -> Result<Manifest, Failure> {
        let bytes_before = fetched.bytes.len() as u64;
        let settings = self.transform.clone();
        let header = match transform::inspect(&fetched.bytes, &settings) {
            Ok(header) => header,
            Err(failure) => {
                tracing::info!(product_id = %job.product_id, index = image.index, reason = %failure, "Compression failed.");
                return Err(failure);
            }
        };
        // Memory first, then a core: a source waiting for memory holds no core.
        let admission = std::time::Instant::now();
        let memory = self.decode_memory.admit(header.peak_bytes(&settings)).await;
        self.metrics
            .stage("decode_admission", admission.elapsed().as_secs_f64());
        let permit = self
            .cpu
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Failure::transient("shutting down"))?;
        let encode_started = std::time::Instant::now();
        let compress_span = tracing::info_span!("compress", index = image.index);
        let compressed = tokio::task::spawn_blocking(move || {
            let _permits = (memory, permit);
            let _span = compress_span.enter();
            transform::compress_inspected(&fetched.bytes, &header, &settings)
        })
        .await
        .map_err(|e| Failure::transient(format!("the compression task failed: {e}")))?;
        let compressed = match compressed {
            Ok(compressed) => compressed,
            Err(failure) => {
                tracing::info!(product_id = %job.product_id, index = image.index, reason = %failure, "Compression failed.");
                return Err(failure);
            }
        };
        self.metrics
            .stage("compress", encode_started.elapsed().as_secs_f64());
        let webp = compressed
            .largest(OutputFormat::Webp)
            .expect("WebP is always among the formats");
        tracing::info!(
            product_id = %job.product_id,
            index = image.index,
            variants = compressed.variants.len(),
            bytes_before,
            bytes_after = webp.bytes.len(),
            width = webp.width,
            height = webp.height,
            ms = encode_started.elapsed().as_millis() as u64,
            "Compression succeeded."
        );
        let store_started = std::time::Instant::now();
        let manifest = Manifest {
            source_width: compressed.source_width,
            source_height: compressed.source_height,
            thumbhash: base64::engine::general_purpose::STANDARD.encode(&compressed.thumbhash),
            dominant_color: compressed.dominant_color_hex(),
            variants: compressed
                .variants
                .iter()
                .map(|v| StoredVariant {
                    format: v.format.media_type().to_owned(),
                    width: v.width,
                    height: v.height,
                    bytes: v.bytes.len() as u64,
                    file: ContentStore::file_name(v.format, v.width),
                })
                .collect(),
        };
        futures_util::stream::iter(compressed.variants.into_iter().map(|variant| {
            let file = ContentStore::file_name(variant.format, variant.width);
            let span = tracing::info_span!("store", content = %content, file = %file);
            tracing::Instrument::instrument(
                async move {
                    self.content
                        .put_variant(content, &file, variant.bytes, variant.format.media_type())
                        .await
                },
                span,
            )
        }))
        .buffer_unordered(4)
        .collect::<Vec<Result<(), Failure>>>()
        .await
        .into_iter()
        .collect::<Result<(), _>>()?;
        self.content.put_manifest(content, &manifest).await?;
        self.metrics
            .stage("store", store_started.elapsed().as_secs_f64());
        Ok(manifest)
    }

    /// The result of an image shown by `content`.
    fn image_result(
        &self,
        image: &SourceImage,
        bytes_before: u64,
        content: &str,
        manifest: Manifest,
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
                thumbhash: Some(manifest.thumbhash),
                dominant_color: Some(manifest.dominant_color),
            },
        }
    }
}
