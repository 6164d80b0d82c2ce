//! What the transform may accept and what it produces, with its one set of defaults.

use super::OutputFormat;

/// What the transform may accept and what it produces.
#[derive(Debug, Clone)]
pub struct TransformSettings {
    /// The most pixels a source may declare (`IMAGE_MAX_PIXELS`).
    pub max_pixels: u64,
    /// The widths of the ladder, ascending and distinct (`IMAGE_VARIANT_WIDTHS`). A width at
    /// or above the source's is replaced by one variant at the source's own width: nothing
    /// is enlarged.
    pub widths: Vec<u32>,
    /// The formats, in the order variants are listed (`IMAGE_VARIANT_FORMATS`); WebP is
    /// always among them.
    pub formats: Vec<OutputFormat>,
    /// WebP quality 0–100 (`IMAGE_WEBP_QUALITY`).
    pub webp_quality: f32,
    /// AVIF quality 0–100 (`IMAGE_AVIF_QUALITY`), on libvips's scale: libaom's quantizer is
    /// derived from it as libheif derives it.
    pub avif_quality: u8,
    /// libaom's `cpu-used`, 0 (slowest, smallest) to the mode's fastest (`IMAGE_AVIF_SPEED`).
    pub avif_speed: u8,
    /// libaom's mode (`IMAGE_AVIF_MODE`): `good`, or `all-intra` for a little less CPU at
    /// about 2% more bytes than `good` with the square search.
    pub avif_mode: avif::Mode,
    /// How widely libaom searches block shapes and transforms (`IMAGE_AVIF_SEARCH`):
    /// `square` (half the CPU of `full` for about 2% more bytes) or `full`.
    pub avif_search: avif::Search,
}

impl Default for TransformSettings {
    fn default() -> Self {
        Self {
            max_pixels: 40_000_000,
            widths: DEFAULT_WIDTHS.to_vec(),
            formats: vec![OutputFormat::Avif, OutputFormat::Webp],
            webp_quality: 80.0,
            // At 1280 w: SSIM above the WebP's on every sample photo, at 0.60x its bytes
            // (median); as small as libvips's AVIF at equal SSIM (docs/benchmarks.md,
            // `make bench-images`).
            avif_quality: 62,
            avif_speed: 6,
            avif_mode: avif::Mode::Good,
            avif_search: avif::Search::Square,
        }
    }
}

/// The ladder's widths unless `IMAGE_VARIANT_WIDTHS` says otherwise.
const DEFAULT_WIDTHS: [u32; 5] = [320, 640, 960, 1280, 1600];

impl TransformSettings {
    /// The defaults, each changed by its variable where that is set.
    pub fn from_env() -> anyhow::Result<Self> {
        use platform::env;
        let defaults = Self::default();
        Ok(Self {
            max_pixels: env::parse("IMAGE_MAX_PIXELS", defaults.max_pixels)?,
            widths: env::parse_with("IMAGE_VARIANT_WIDTHS", defaults.widths, Self::parse_widths)?,
            formats: env::parse_with(
                "IMAGE_VARIANT_FORMATS",
                defaults.formats,
                Self::parse_formats,
            )?,
            webp_quality: env::parse("IMAGE_WEBP_QUALITY", defaults.webp_quality)?,
            avif_quality: env::parse("IMAGE_AVIF_QUALITY", defaults.avif_quality)?,
            avif_speed: env::parse("IMAGE_AVIF_SPEED", defaults.avif_speed)?,
            avif_mode: env::parse("IMAGE_AVIF_MODE", defaults.avif_mode)?,
            avif_search: env::parse("IMAGE_AVIF_SEARCH", defaults.avif_search)?,
        })
    }

    /// Parses `320,640,960` into distinct ascending widths.
    pub fn parse_widths(text: &str) -> Result<Vec<u32>, String> {
        let mut widths = platform::env::list(text)
            .map(|w| match w.parse::<u32>() {
                Ok(width) if (1..=16_384).contains(&width) => Ok(width),
                _ => Err(format!("{w:?} is not a width in pixels (1 to 16384)")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        widths.sort_unstable();
        widths.dedup();
        if widths.is_empty() {
            return Err("name at least one width, e.g. 320,640,1280".into());
        }
        Ok(widths)
    }

    /// Parses `avif,webp`; WebP must be among them (the seed's single URL is the largest
    /// WebP).
    pub fn parse_formats(text: &str) -> Result<Vec<OutputFormat>, String> {
        let mut formats: Vec<OutputFormat> = Vec::new();
        for format in platform::env::list(text) {
            let format = format.parse()?;
            if !formats.contains(&format) {
                formats.push(format);
            }
        }
        if !formats.contains(&OutputFormat::Webp) {
            return Err(
                "webp must be one of the formats: compressed_product_images and the \
                        image's width, height and format name the largest WebP"
                    .into(),
            );
        }
        Ok(formats)
    }

    /// The widest variant's width.
    pub(super) fn widest(&self) -> u32 {
        self.widths
            .last()
            .or(DEFAULT_WIDTHS.last())
            .copied()
            .expect("the default ladder has widths")
    }
}
