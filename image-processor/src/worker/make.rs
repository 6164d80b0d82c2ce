//! Making one image's variants: its two steps (the WebP ladder with the placeholders, then
//! the formats that follow), decoding on a CPU permit against the memory budget, each width
//! encoded on a permit of its own, and storing what was made.

use std::sync::Arc;

use base64::Engine;
use futures_util::StreamExt;
use tokio::sync::OwnedSemaphorePermit;

use super::{
    Worker,
    cores::{Permit, Step, Ticket},
};
use crate::{
    content::{ContentStore, Manifest, StoredVariant},
    failure::Failure,
    job::Job,
    transform::{self, OutputFormat, Prepared, TransformSettings, Variant},
};
use events::SourceImage;

/// An image's first step: stored by an earlier attempt, or made by this one and not yet
/// stored (its manifest without variants, and the variants).
pub(super) enum FirstStep {
    Stored(Manifest),
    Made(Manifest, Vec<Variant>),
}

/// A source being made: its decoded pixels, and the memory they are budgeted against.
///
/// Every blocking task that works on the source holds the memory too: a task cannot be
/// cancelled, so when the future that started it is dropped (its image's first step could
/// not be shown, say) the memory is given back only once the task is done with it.
pub(super) struct Made {
    pub(super) prepared: Arc<Prepared>,
    memory: Arc<OwnedSemaphorePermit>,
}

impl Worker {
    /// Encodes the ladder in `format`, preparing the source first (on a CPU permit) unless
    /// `made` holds it; the variants come back from the smallest width.
    ///
    /// Each width is encoded on a CPU permit of its own, so the widths of one image use the
    /// cores that are free; under load they queue behind the first steps waiting and the
    /// images with earlier tickets ([`super::cores`]). The largest width asks first: it takes
    /// about half the ladder's time, and started last it would run alone while the other
    /// cores idle.
    pub(super) async fn encode(
        &self,
        job: &Job,
        image: &SourceImage,
        ticket: Ticket,
        bytes: &bytes::Bytes,
        made: Option<Made>,
        format: OutputFormat,
    ) -> Result<(Made, Vec<Variant>), Failure> {
        let (step, stage) = match format {
            OutputFormat::Webp => (Step::First, "compress"),
            _ => (Step::Later, "compress_avif"),
        };
        let settings = Arc::new(self.transform.clone());
        let span =
            tracing::info_span!("compress", index = image.index, format = format.extension());
        let started = std::time::Instant::now();
        let encoded = async {
            let made = match made {
                Some(made) => made,
                None => self.prepare(bytes, &settings, &span, step, ticket).await?,
            };
            let largest_first = (0..made.prepared.sizes()).rev();
            let encoded = futures_util::future::join_all(largest_first.map(|size| {
                let (prepared, memory, settings, span) = (
                    made.prepared.clone(),
                    made.memory.clone(),
                    settings.clone(),
                    span.clone(),
                );
                async move {
                    let permit = self.core(step, ticket).await?;
                    tokio::task::spawn_blocking(move || {
                        let _held = (permit, memory);
                        let _span = span.enter();
                        prepared.encode_size(size, format, &settings)
                    })
                    .await
                    .map_err(|e| Failure::transient(format!("the compression task failed: {e}")))?
                }
            }))
            .await;
            let variants = encoded.into_iter().rev().collect::<Result<Vec<_>, _>>()?;
            Ok((made, variants))
        }
        .await;
        match encoded {
            Ok(encoded) => {
                self.metrics.stage(stage, started.elapsed().as_secs_f64());
                Ok(encoded)
            }
            Err(failure) => {
                tracing::info!(product_id = %job.product_id, index = image.index, format = format.extension(), reason = %failure, "Compression failed.");
                Err(failure)
            }
        }
    }

    /// Decodes and scales the source, and makes its WebP ladder and placeholders.
    pub(super) async fn make_first_step(
        &self,
        job: &Job,
        image: &SourceImage,
        ticket: Ticket,
        bytes: &bytes::Bytes,
    ) -> Result<(Made, FirstStep), Failure> {
        let (made, variants) = self
            .encode(job, image, ticket, bytes, None, OutputFormat::Webp)
            .await?;
        let webp = variants.last().expect("a ladder has a width");
        tracing::info!(
            product_id = %job.product_id,
            index = image.index,
            variants = variants.len(),
            bytes_before = bytes.len(),
            bytes_after = webp.bytes.len(),
            width = webp.width,
            height = webp.height,
            "Compression succeeded."
        );
        let manifest = Manifest {
            source_width: made.prepared.source_width,
            source_height: made.prepared.source_height,
            thumbhash: base64::engine::general_purpose::STANDARD.encode(&made.prepared.thumbhash),
            dominant_color: made.prepared.dominant_color_hex(),
            variants: Vec::new(),
        };
        Ok((made, FirstStep::Made(manifest, variants)))
    }

    /// Stores a first step this attempt made as `content`'s (or as the whole set when
    /// `only` format); returns its manifest.
    pub(super) async fn store_first_step(
        &self,
        content: &str,
        first: FirstStep,
        only: bool,
    ) -> Result<Manifest, Failure> {
        let (manifest, variants) = match first {
            FirstStep::Stored(manifest) => return Ok(manifest),
            FirstStep::Made(manifest, variants) => (manifest, variants),
        };
        let manifest = self.store(content, manifest, variants).await?;
        if only {
            self.content.put_manifest(content, &manifest).await?;
        } else {
            self.content.put_first_step(content, &manifest).await?;
        }
        Ok(manifest)
    }

    /// Makes the formats that follow WebP, from the first step's pixels when this attempt
    /// made them (decoding the source again when a retry found the first step stored).
    pub(super) async fn make_second_step(
        &self,
        job: &Job,
        image: &SourceImage,
        ticket: Ticket,
        bytes: &bytes::Bytes,
        mut made: Option<Made>,
        later: &[OutputFormat],
    ) -> Result<Vec<Variant>, Failure> {
        let mut made_later = Vec::new();
        for &format in later {
            let (kept, variants) = self
                .encode(job, image, ticket, bytes, made.take(), format)
                .await?;
            made = Some(kept);
            made_later.extend(variants);
        }
        Ok(made_later)
    }

    /// Stores the second step's variants with the complete manifest.
    pub(super) async fn store_second_step(
        &self,
        content: &str,
        first: Manifest,
        variants: Vec<Variant>,
    ) -> Result<Manifest, Failure> {
        let mut manifest = self.store(content, first, variants).await?;
        let position = |media_type: &str| {
            self.transform
                .formats
                .iter()
                .position(|f| f.media_type() == media_type)
        };
        manifest
            .variants
            .sort_by_key(|v| (position(&v.format), v.width));
        self.content.put_manifest(content, &manifest).await?;
        Ok(manifest)
    }

    /// Reads the source's header, admits it against the memory budget, and decodes and
    /// scales it on a CPU permit.
    async fn prepare(
        &self,
        bytes: &bytes::Bytes,
        settings: &Arc<TransformSettings>,
        span: &tracing::Span,
        step: Step,
        ticket: Ticket,
    ) -> Result<Made, Failure> {
        let header = transform::inspect(bytes, settings)?;
        // Memory first, then a core: a source waiting for memory holds no core.
        let admission = std::time::Instant::now();
        let widths = transform::ladder(
            header.upright_size().0,
            header.upright_size().1,
            &settings.widths,
        )
        .len();
        let encoders = self.cpu_workers.min(widths);
        let memory = Arc::new(
            self.decode_memory
                .admit(header.peak_bytes_encoding(settings, encoders))
                .await,
        );
        self.metrics
            .stage("decode_admission", admission.elapsed().as_secs_f64());
        let permit = self.core(step, ticket).await?;
        let (bytes, settings, span, held) = (
            bytes.clone(),
            settings.clone(),
            span.clone(),
            memory.clone(),
        );
        let prepared = tokio::task::spawn_blocking(move || {
            let _held = (permit, held);
            let _span = span.enter();
            transform::prepare(&bytes, &header, &settings)
        })
        .await
        .map_err(|e| Failure::transient(format!("the compression task failed: {e}")))??;
        Ok(Made {
            prepared: Arc::new(prepared),
            memory,
        })
    }

    /// A CPU permit: one core's worth of decoding or encoding, in `step`'s and `ticket`'s
    /// rank.
    /// The wait is timed as `core_wait_first` or `core_wait_later`.
    async fn core(&self, step: Step, ticket: Ticket) -> Result<Permit, Failure> {
        let asked = std::time::Instant::now();
        let permit = self
            .cores
            .acquire(step, ticket)
            .await
            .map_err(|_| Failure::transient("shutting down"))?;
        let stage = match step {
            Step::First => "core_wait_first",
            Step::Later => "core_wait_later",
        };
        self.metrics.stage(stage, asked.elapsed().as_secs_f64());
        Ok(permit)
    }

    /// Stores `variants` of `content` and adds them to `manifest`.
    pub(super) async fn store(
        &self,
        content: &str,
        mut manifest: Manifest,
        variants: Vec<Variant>,
    ) -> Result<Manifest, Failure> {
        let started = std::time::Instant::now();
        manifest
            .variants
            .extend(variants.iter().map(|v| StoredVariant {
                format: v.format.media_type().to_owned(),
                width: v.width,
                height: v.height,
                bytes: v.bytes.len() as u64,
                file: ContentStore::file_name(v.format, v.width),
            }));
        futures_util::stream::iter(variants.into_iter().map(|variant| {
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
        self.metrics.stage("store", started.elapsed().as_secs_f64());
        Ok(manifest)
    }
}
