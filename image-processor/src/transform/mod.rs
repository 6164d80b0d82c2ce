//! Sniff, decode (with limits), resize, convert to sRGB, orient, then encode a ladder of
//! widths in each output format, with the placeholders a page shows before any of them
//! arrives (a ThumbHash and a dominant colour).
//!
//! One decode serves every variant: the source is scaled once, in its own pixel format, to
//! the largest variant; that is converted to 8-bit sRGB and turned upright, and each smaller
//! width is scaled from it. Formats:
//! - WebP (lossy, quality 80 by default): every current browser shows it, and it keeps
//!   transparency, so logos and photos share one format. The largest WebP is the variant
//!   the seed's `compressed_product_images` points at.
//! - AVIF (libaom, through the workspace's `avif` crate): smaller at the same quality, for
//!   the browsers that accept it (`<source type="image/avif">`). Its quality and speed are
//!   tuned in docs/benchmarks.md against the WebP it sits beside and against libvips.
//!
//! Outputs carry no metadata at all: no EXIF (GPS, camera serials), no ICC profile. Pixels
//! are converted to sRGB first, and an untagged image is sRGB to every browser.
//!
//! Decoding is the dangerous step: a few kilobytes of PNG can declare a billion pixels. The
//! declared dimensions are checked against the pixel limit before any pixel is decoded, and
//! the decoder's own allocation limit backs that up.

mod colour;
#[cfg(test)]
mod colour_tests;
mod decode;
mod encode;
mod inspect;
mod ladder;
mod placeholders;
mod settings;
#[cfg(test)]
mod tests;

use image::DynamicImage;

use self::{
    colour::to_srgb,
    decode::decode,
    encode::encode,
    ladder::{scale, shrink},
    placeholders::placeholders,
};
pub use self::{
    inspect::{Header, inspect},
    ladder::ladder,
    settings::TransformSettings,
};
use crate::failure::Failure;

/// A format the variants are encoded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    Avif,
    Webp,
}

impl OutputFormat {
    /// The media type, as `<source type=…>` and `Content-Type` take it.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Avif => "image/avif",
            Self::Webp => "image/webp",
        }
    }

    /// The object key's extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Avif => "avif",
            Self::Webp => "webp",
        }
    }
}

impl std::str::FromStr for OutputFormat {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name.trim().to_ascii_lowercase().as_str() {
            "avif" => Ok(Self::Avif),
            "webp" => Ok(Self::Webp),
            other => Err(format!("{other:?} is not an output format (avif, webp)")),
        }
    }
}

/// One encoded variant, ready to store.
#[derive(Debug)]
pub struct Variant {
    pub format: OutputFormat,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

/// Everything made from one source.
#[derive(Debug)]
pub struct Compressed {
    /// The source's size after EXIF orientation.
    pub source_width: u32,
    pub source_height: u32,
    /// Ordered by format (as configured), then width.
    pub variants: Vec<Variant>,
    /// The ThumbHash of the image (at most 100 x 100 pixels' worth).
    pub thumbhash: Vec<u8>,
    /// The most common colour, 8-bit sRGB.
    pub dominant_color: [u8; 3],
}

impl Compressed {
    /// The largest variant of `format`, if that format was made.
    pub fn largest(&self, format: OutputFormat) -> Option<&Variant> {
        self.variants
            .iter()
            .filter(|v| v.format == format)
            .max_by_key(|v| v.width)
    }

    /// `#rrggbb`.
    pub fn dominant_color_hex(&self) -> String {
        hex(self.dominant_color)
    }
}

fn hex([r, g, b]: [u8; 3]) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// A source decoded once, in sRGB and upright, at every width of its ladder, with its
/// placeholders: what each format's variants are encoded from. The processor encodes the
/// WebP ladder from it, publishes that, then encodes the AVIF ladder from the same pixels.
#[derive(Debug)]
pub struct Prepared {
    /// The source's size after EXIF orientation.
    pub source_width: u32,
    pub source_height: u32,
    /// One image per width of the ladder, ascending.
    sizes: Vec<DynamicImage>,
    /// The ThumbHash of the image (at most 100 x 100 pixels' worth).
    pub thumbhash: Vec<u8>,
    /// The most common colour, 8-bit sRGB.
    pub dominant_color: [u8; 3],
}

impl Prepared {
    /// The ladder in `format`, ascending by width.
    pub fn encode(
        &self,
        format: OutputFormat,
        settings: &TransformSettings,
    ) -> Result<Vec<Variant>, Failure> {
        (0..self.sizes())
            .map(|size| self.encode_size(size, format, settings))
            .collect()
    }

    /// How many widths the ladder has.
    pub fn sizes(&self) -> usize {
        self.sizes.len()
    }

    /// The variant of the `size`th width (from the smallest) in `format`.
    pub fn encode_size(
        &self,
        size: usize,
        format: OutputFormat,
        settings: &TransformSettings,
    ) -> Result<Variant, Failure> {
        let image = &self.sizes[size];
        let (width, height) = (image.width(), image.height());
        let bytes = tracing::info_span!("encode", format = format.extension(), width)
            .in_scope(|| encode(image, format, settings))?;
        Ok(Variant {
            format,
            width,
            height,
            bytes,
        })
    }

    /// `#rrggbb`.
    pub fn dominant_color_hex(&self) -> String {
        hex(self.dominant_color)
    }
}

/// Compresses `bytes` under `settings`. Every failure is permanent: the same bytes would fail
/// the same way again.
///
/// The only full-size buffer is the decoder's output: the image is scaled down in the
/// source's own pixel format (8 or 16 bits, grey or colour), and only the scaled image is
/// converted to 8-bit RGB(A) and oriented, so [`Header::peak_bytes`] bounds what it holds.
pub fn compress(bytes: &[u8], settings: &TransformSettings) -> Result<Compressed, Failure> {
    compress_inspected(bytes, &inspect(bytes, settings)?, settings)
}

/// [`compress`] for a source whose header [`inspect`] has already read (the processor reads
/// it first, to admit the source against its memory budget).
pub fn compress_inspected(
    bytes: &[u8],
    header: &Header,
    settings: &TransformSettings,
) -> Result<Compressed, Failure> {
    let prepared = prepare(bytes, header, settings)?;
    let mut variants = Vec::with_capacity(prepared.sizes.len() * settings.formats.len());
    for &format in &settings.formats {
        variants.extend(prepared.encode(format, settings)?);
    }
    Ok(Compressed {
        source_width: prepared.source_width,
        source_height: prepared.source_height,
        variants,
        thumbhash: prepared.thumbhash,
        dominant_color: prepared.dominant_color,
    })
}

/// Decodes a source whose header [`inspect`] has read, scales it to each width of its
/// ladder, converts it to sRGB, turns it upright and makes its placeholders: everything but
/// the encoding. Every failure is permanent.
pub fn prepare(
    bytes: &[u8],
    header: &Header,
    settings: &TransformSettings,
) -> Result<Prepared, Failure> {
    let (source_width, source_height) = header.upright_size();
    let ladder = ladder(source_width, source_height, &settings.widths);
    let (image, profile) =
        tracing::info_span!("decode").in_scope(|| decode(bytes, header, settings))?;
    let image = tracing::info_span!("resize").in_scope(|| {
        let (width, height) = header.stored_size_of(ladder[ladder.len() - 1]);
        shrink(image, width, height)
    })?;
    let image = match profile {
        Some(profile) => to_srgb(image, &profile),
        None => image,
    };
    let mut largest = if image.color().has_alpha() {
        DynamicImage::ImageRgba8(image.into_rgba8())
    } else {
        DynamicImage::ImageRgb8(image.into_rgb8())
    };
    if let Some(orientation) = header.orientation {
        largest.apply_orientation(orientation);
    }
    let (thumbhash, dominant_color) = placeholders(&largest)?;
    let mut sizes = Vec::with_capacity(ladder.len());
    for &(width, height) in &ladder {
        if (width, height) != (largest.width(), largest.height()) {
            sizes.push(
                tracing::info_span!("resize", width).in_scope(|| scale(&largest, width, height))?,
            );
        }
    }
    if ladder.last() == Some(&(largest.width(), largest.height())) {
        sizes.push(largest);
    }
    Ok(Prepared {
        source_width,
        source_height,
        sizes,
        thumbhash,
        dominant_color,
    })
}
