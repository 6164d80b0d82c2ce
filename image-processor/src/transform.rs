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

use std::io::Cursor;

use fast_image_resize::{MulDiv, ResizeAlg, ResizeOptions, Resizer};
use image::{
    ColorType, DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, metadata::Orientation,
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
    /// libaom's mode (`IMAGE_AVIF_MODE`): `good`, or `all-intra` for about twice the images
    /// per core at about 7% more bytes.
    pub avif_mode: avif::Mode,
}

impl Default for TransformSettings {
    fn default() -> Self {
        Self {
            max_pixels: 40_000_000,
            widths: vec![320, 640, 960, 1280, 1600],
            formats: vec![OutputFormat::Avif, OutputFormat::Webp],
            webp_quality: 80.0,
            // At 1280 w: SSIM above the WebP's on every sample photo, at 0.60x its bytes
            // (median); as small as libvips's AVIF at equal SSIM (docs/benchmarks.md,
            // `make bench-images`).
            avif_quality: 62,
            avif_speed: 6,
            avif_mode: avif::Mode::Good,
        }
    }
}

impl TransformSettings {
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
    fn widest(&self) -> u32 {
        self.widths.last().copied().unwrap_or(1600)
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
        let [r, g, b] = self.dominant_color;
        format!("#{r:02x}{g:02x}{b:02x}")
    }
}

/// The formats accepted as sources.
const ACCEPTED: [ImageFormat; 4] = [
    ImageFormat::Jpeg,
    ImageFormat::Png,
    ImageFormat::WebP,
    ImageFormat::Gif,
];

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
    let mut variants = Vec::with_capacity(ladder.len() * settings.formats.len());
    for &(width, height) in ladder.iter().rev() {
        let scaled;
        let image = if (width, height) == (largest.width(), largest.height()) {
            &largest
        } else {
            scaled =
                tracing::info_span!("resize", width).in_scope(|| scale(&largest, width, height))?;
            &scaled
        };
        for &format in &settings.formats {
            let bytes = tracing::info_span!("encode", format = format.extension(), width)
                .in_scope(|| encode(image, format, settings))?;
            variants.push(Variant {
                format,
                width,
                height,
                bytes,
            });
        }
    }
    let position = |format| settings.formats.iter().position(|f| *f == format);
    variants.sort_by_key(|v| (position(v.format), v.width));
    let (thumbhash, dominant_color) = placeholders(&largest)?;
    Ok(Compressed {
        source_width,
        source_height,
        variants,
        thumbhash,
        dominant_color,
    })
}

/// The sizes of the variants of an upright `width` x `height` source, ascending: each
/// configured width below the source's, and the source's own width in place of every one at
/// or above it. Heights keep the aspect ratio.
pub fn ladder(width: u32, height: u32, widths: &[u32]) -> Vec<(u32, u32)> {
    let mut chosen: Vec<u32> = widths.iter().map(|w| (*w).min(width)).collect();
    chosen.sort_unstable();
    chosen.dedup();
    chosen
        .into_iter()
        .map(|w| {
            let h = (f64::from(height) * f64::from(w) / f64::from(width)).round() as u32;
            (w, h.max(1))
        })
        .collect()
}

/// What a source's header says, read before any pixel is decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub format: ImageFormat,
    /// As stored, before orientation.
    pub width: u32,
    pub height: u32,
    /// The decoder's output pixels.
    pub color: ColorType,
    orientation: Option<Orientation>,
    /// Bytes per pixel the decoder holds besides its output: a GIF frame is decoded into a
    /// buffer of its own and composed onto the output; WebP keeps its YUV planes.
    working_bytes_per_pixel: u64,
    /// A JPEG's frame, which the JPEG path decodes with shrink-on-load.
    jpeg: Option<JpegFrame>,
}

/// What a JPEG's markers before its first scan say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct JpegFrame {
    /// Progressive: every coefficient of every component (2 bytes each, at full size) is
    /// kept until the last scan.
    progressive: bool,
    /// 1 (grey), 3 (YCbCr or RGB) or 4 (CMYK or YCCK).
    components: u8,
    /// 8 bits per sample, baseline, extended or progressive Huffman: what the shrinking
    /// decoder takes. Others (12-bit, lossless, arithmetic) go to the general decoder.
    shrinkable: bool,
    /// An Adobe APP14 marker: Photoshop's CMYK is stored inverted.
    adobe: bool,
}

/// Bytes per pixel of the largest variant that the variants take while they are made: the
/// scaled image and its 8-bit RGBA copy, the smaller widths scaled from it, and the
/// encoders' working buffers (libaom's frames, about 30 bytes a pixel in its good-quality
/// mode, and libwebp's), one encode at a time. Measured by `scripts/measure-decode-memory.sh`
/// (RSS, which sees the C libraries' allocations) and, for the Rust side,
/// `image-processor/tests/decode_memory.rs`; rounded up.
const OUTPUT_BYTES_PER_PIXEL: u64 = 40;

/// What the encoders hold whatever the size (libaom's context and tables: a 800 x 500
/// picture's ladder peaked 2 MB above its per-pixel share), measured the same way.
const ENCODER_BYTES: u64 = 8 << 20;

impl Header {
    /// The size after EXIF orientation (a quarter turn swaps the sides).
    pub fn upright_size(&self) -> (u32, u32) {
        if self.turns_sideways() {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }

    /// An upright size as the source stores it, before orientation.
    fn stored_size_of(&self, (width, height): (u32, u32)) -> (u32, u32) {
        if self.turns_sideways() {
            (height, width)
        } else {
            (width, height)
        }
    }

    fn turns_sideways(&self) -> bool {
        matches!(
            self.orientation,
            Some(
                Orientation::Rotate90
                    | Orientation::Rotate270
                    | Orientation::Rotate90FlipH
                    | Orientation::Rotate270FlipH
            )
        )
    }

    /// The most memory compressing this source holds at once: the decoder's output and
    /// working buffers, the scaler's intermediate rows, then the largest variant and what
    /// making the ladder from it takes (an upper bound: `scripts/measure-decode-memory.sh`
    /// prints it beside the measured peak for the worst accepted inputs). The processor
    /// admits sources to decoding against a budget of this (`IMAGE_DECODE_MEMORY_MB`).
    pub fn peak_bytes(&self, settings: &TransformSettings) -> u64 {
        let pixels = u64::from(self.width) * u64::from(self.height);
        let (width, height) = self.largest_stored(settings);
        let (decoded, decoded_size, bytes_per_pixel) = match self.jpeg {
            Some(frame) if frame.shrinkable => {
                let shrink = self.jpeg_shrink(settings);
                let (w, h) = (self.width.div_ceil(shrink), self.height.div_ceil(shrink));
                let components = u64::from(frame.components);
                // The components' planes and the interleaved output at the shrunk size (a
                // CMYK one also converted to RGB), and a progressive frame's coefficients.
                let planes = u64::from(w) * u64::from(h) * (2 * components + 3);
                let coefficients = if frame.progressive {
                    pixels * 2 * components
                } else {
                    0
                };
                (planes + coefficients, (w, h), 3)
            }
            _ => {
                let bytes_per_pixel = u64::from(self.color.bytes_per_pixel());
                (
                    pixels * (bytes_per_pixel + self.working_bytes_per_pixel),
                    (self.width, self.height),
                    bytes_per_pixel,
                )
            }
        };
        // Scaling convolves rows, then columns: between the passes it holds the decoded
        // height at the new width, in the decoded pixel format.
        let between_passes = if decoded_size == (width, height) {
            0
        } else {
            u64::from(width) * u64::from(decoded_size.1) * bytes_per_pixel
        };
        decoded
            + between_passes
            + u64::from(width) * u64::from(height) * OUTPUT_BYTES_PER_PIXEL
            + ENCODER_BYTES
    }

    /// The largest variant's size as the source stores it (before orientation).
    fn largest_stored(&self, settings: &TransformSettings) -> (u32, u32) {
        let (upright_width, upright_height) = self.upright_size();
        self.stored_size_of(ladder(upright_width, upright_height, &[settings.widest()])[0])
    }

    /// Shrink-on-load: the largest of 1, 2, 4 and 8 that a JPEG can be decoded smaller by
    /// (its DCT scaled) and still be at least the largest variant's size on both sides, as
    /// libvips's thumbnail does. The resizer takes it the rest of the way.
    fn jpeg_shrink(&self, settings: &TransformSettings) -> u32 {
        let (width, height) = self.largest_stored(settings);
        [8, 4, 2]
            .into_iter()
            .find(|f| self.width.div_ceil(*f) >= width && self.height.div_ceil(*f) >= height)
            .unwrap_or(1)
    }
}

/// Sniffs the format, reads the header and checks the declared size against the limits.
pub fn inspect(bytes: &[u8], settings: &TransformSettings) -> Result<Header, Failure> {
    let format = image::guess_format(bytes)
        .ok()
        .filter(|f| ACCEPTED.contains(f))
        .ok_or_else(|| {
            Failure::permanent("not an image in a supported format (JPEG, PNG, WebP, GIF)")
        })?;
    let mut decoder = decoder(bytes, format, settings)?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > settings.max_pixels {
        return Err(Failure::permanent(format!(
            "the image has {width}x{height} = {pixels} pixels, more than the limit of {}",
            settings.max_pixels
        )));
    }
    let jpeg = (format == ImageFormat::Jpeg)
        .then(|| jpeg_frame(bytes))
        .flatten();
    let working_bytes_per_pixel = match (format, jpeg) {
        // A JPEG the general decoder takes (12-bit, lossless, arithmetic): a progressive
        // one's coefficients.
        (ImageFormat::Jpeg, Some(frame)) if frame.progressive => 2 * u64::from(frame.components),
        (ImageFormat::Gif, _) => 4,
        (ImageFormat::WebP, _) => 2,
        _ => 0,
    };
    Ok(Header {
        format,
        width,
        height,
        color: decoder.color_type(),
        orientation: decoder.orientation().ok(),
        working_bytes_per_pixel,
        jpeg,
    })
}

fn decoder<'a>(
    bytes: &'a [u8],
    format: ImageFormat,
    settings: &TransformSettings,
) -> Result<impl ImageDecoder + 'a, Failure> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(65_535);
    limits.max_image_height = Some(65_535);
    // The largest accepted image in RGBA16 and the decoder's working buffers.
    limits.max_alloc = Some(
        settings
            .max_pixels
            .saturating_mul(8)
            .saturating_add(64 << 20),
    );
    reader.limits(limits);
    reader
        .into_decoder()
        .map_err(|e| Failure::permanent(format!("cannot decode the {format:?} image: {e}")))
}

/// Decodes in the source's own pixel format, with its embedded ICC profile if any; the
/// header was checked by [`inspect`].
fn decode(
    bytes: &[u8],
    header: &Header,
    settings: &TransformSettings,
) -> Result<(DynamicImage, Option<Vec<u8>>), Failure> {
    let format = header.format;
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(Failure::permanent(
            "the JPEG data ends early (truncated or corrupt download)",
        ));
    }
    if let Some(frame) = header.jpeg.filter(|frame| frame.shrinkable) {
        return decode_jpeg(bytes, header, frame, settings);
    }
    let mut decoder = decoder(bytes, format, settings)?;
    let profile = decoder.icc_profile().ok().flatten();
    let image = DynamicImage::from_decoder(decoder)
        .map_err(|e| Failure::permanent(format!("cannot decode the {format:?} image: {e}")))?;
    Ok((image, profile))
}

/// Decodes an 8-bit JPEG with shrink-on-load ([`Header::jpeg_shrink`]): its DCT scaled to
/// 1/2, 1/4 or 1/8 where the largest variant allows, which saves most of the decoding's time
/// and memory for a large photo. CMYK and YCCK come out as CMYK and are converted to sRGB
/// here, with their profile when they carry one (it is used up: the caller gets none back).
fn decode_jpeg(
    bytes: &[u8],
    header: &Header,
    frame: JpegFrame,
    settings: &TransformSettings,
) -> Result<(DynamicImage, Option<Vec<u8>>), Failure> {
    let failed =
        |e: jpeg_decoder::Error| Failure::permanent(format!("cannot decode the JPEG image: {e}"));
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.set_max_decoding_buffer_size(
        usize::try_from(
            settings
                .max_pixels
                .saturating_mul(8)
                .saturating_add(64 << 20),
        )
        .unwrap_or(usize::MAX),
    );
    let shrink = header.jpeg_shrink(settings);
    let requested = |side: u32| u16::try_from(side.div_ceil(shrink)).unwrap_or(u16::MAX);
    let (width, height) = decoder
        .scale(requested(header.width), requested(header.height))
        .map_err(failed)?;
    let pixels = decoder.decode().map_err(failed)?;
    let profile = decoder.icc_profile();
    let format = decoder.info().map(|info| info.pixel_format);
    let (width, height) = (u32::from(width), u32::from(height));
    let wrong_size = || Failure::permanent("the JPEG decoder returned fewer pixels than its size");
    let image = match format {
        Some(jpeg_decoder::PixelFormat::L8) => image::GrayImage::from_raw(width, height, pixels)
            .map(DynamicImage::ImageLuma8)
            .ok_or_else(wrong_size)?,
        Some(jpeg_decoder::PixelFormat::RGB24) => image::RgbImage::from_raw(width, height, pixels)
            .map(DynamicImage::ImageRgb8)
            .ok_or_else(wrong_size)?,
        Some(jpeg_decoder::PixelFormat::CMYK32) => {
            let rgb = cmyk_to_srgb(pixels, frame.adobe, profile.as_deref());
            let image = image::RgbImage::from_raw(width, height, rgb).ok_or_else(wrong_size)?;
            return Ok((DynamicImage::ImageRgb8(image), None));
        }
        other => {
            return Err(Failure::permanent(format!(
                "the JPEG's pixel format {other:?} is not supported"
            )));
        }
    };
    Ok((image, profile))
}

/// CMYK pixels as the JPEG decoder gives them, to 8-bit sRGB.
///
/// The decoder inverts what the file stores. Photoshop, which writes nearly every CMYK
/// JPEG and marks it with an Adobe APP14 marker, stores ink inverted, so with that marker
/// the decoder's values are ink amounts (0 none, 255 full); without it they are inverted
/// once more. With an embedded CMYK profile the ink is converted through it (colour
/// managed); without one, by the naive formula (each ink and black subtract light), which
/// is what browsers show for such files.
fn cmyk_to_srgb(mut cmyk: Vec<u8>, adobe: bool, profile: Option<&[u8]>) -> Vec<u8> {
    if !adobe {
        cmyk.iter_mut().for_each(|v| *v = 255 - *v);
    }
    if let Some(profile) = profile {
        match moxcms::ColorProfile::new_from_slice(profile) {
            Ok(source) if source.color_space == moxcms::DataColorSpace::Cmyk => {
                let converted = source
                    .create_transform_8bit(
                        moxcms::Layout::Rgba,
                        &moxcms::ColorProfile::new_srgb(),
                        moxcms::Layout::Rgb,
                        moxcms::TransformOptions::default(),
                    )
                    .and_then(|t| {
                        let mut out = vec![0u8; cmyk.len() / 4 * 3];
                        t.transform(&cmyk, &mut out).map(|()| out)
                    });
                match converted {
                    Ok(rgb) => return rgb,
                    Err(error) => {
                        tracing::warn!(%error, "CMYK converted without its profile: it cannot be applied.")
                    }
                }
            }
            Ok(source) => {
                tracing::info!(color_space = ?source.color_space, "CMYK converted without its profile: not a CMYK profile.")
            }
            Err(error) => {
                tracing::warn!(%error, "CMYK converted without its profile: it cannot be read.")
            }
        }
    }
    cmyk.chunks_exact(4)
        .flat_map(|ink| {
            let light = |v: u8| 255 - u32::from(v);
            let k = light(ink[3]);
            [0, 1, 2].map(|c| ((light(ink[c]) * k + 127) / 255) as u8)
        })
        .collect()
}

/// Converts the colours of an image from its embedded ICC profile (Adobe RGB, Display P3,
/// ProPhoto…; a grey profile's tone curve) to sRGB, which is what every output is shown as:
/// outputs carry no profile, and an untagged image is sRGB to every browser. Runs on the
/// scaled image, so it costs little, and in its depth (a 16-bit source is converted in 16
/// bits). CMYK JPEGs are converted when decoded ([`cmyk_to_srgb`]).
///
/// Left as they are, with a log line: a profile that cannot be read, and profiles of other
/// colour spaces (Lab, a CMYK profile on RGB pixels).
fn to_srgb(mut image: DynamicImage, profile: &[u8]) -> DynamicImage {
    let source = match moxcms::ColorProfile::new_from_slice(profile) {
        Ok(source) if source.color_space == moxcms::DataColorSpace::Rgb => source,
        Ok(source)
            if source.color_space == moxcms::DataColorSpace::Gray && source.gray_trc.is_some() =>
        {
            // A grey profile is a tone curve. As an RGB profile with that curve on each
            // channel (and any primaries: greys stay neutral), it converts an RGB copy.
            let mut grey = moxcms::ColorProfile::new_srgb();
            // Its CICP tag would name sRGB's curve, which a transform prefers to the TRCs.
            grey.cicp = None;
            grey.red_trc = source.gray_trc.clone();
            grey.green_trc = source.gray_trc.clone();
            grey.blue_trc = source.gray_trc.clone();
            image = match image {
                DynamicImage::ImageLuma8(_) => DynamicImage::ImageRgb8(image.into_rgb8()),
                DynamicImage::ImageLumaA8(_) => DynamicImage::ImageRgba8(image.into_rgba8()),
                DynamicImage::ImageLuma16(_) => DynamicImage::ImageRgb16(image.into_rgb16()),
                DynamicImage::ImageLumaA16(_) => DynamicImage::ImageRgba16(image.into_rgba16()),
                other => other,
            };
            grey
        }
        Ok(source) => {
            tracing::info!(color_space = ?source.color_space, "Colours left as decoded: not an RGB profile.");
            return image;
        }
        Err(error) => {
            tracing::warn!(%error, "Colours left as decoded: the ICC profile cannot be read.");
            return image;
        }
    };
    let srgb = moxcms::ColorProfile::new_srgb();
    let options = moxcms::TransformOptions::default();
    let (width, height) = (image.width(), image.height());
    let converted = match &image {
        DynamicImage::ImageRgb8(rgb) => source
            .create_transform_8bit(moxcms::Layout::Rgb, &srgb, moxcms::Layout::Rgb, options)
            .and_then(|t| transformed(&*t, rgb.as_raw()))
            .map(|out| image::RgbImage::from_raw(width, height, out).map(Into::into)),
        DynamicImage::ImageRgba8(rgba) => source
            .create_transform_8bit(moxcms::Layout::Rgba, &srgb, moxcms::Layout::Rgba, options)
            .and_then(|t| transformed(&*t, rgba.as_raw()))
            .map(|out| image::RgbaImage::from_raw(width, height, out).map(Into::into)),
        DynamicImage::ImageRgb16(rgb) => source
            .create_transform_16bit(moxcms::Layout::Rgb, &srgb, moxcms::Layout::Rgb, options)
            .and_then(|t| transformed(&*t, rgb.as_raw()))
            .map(|out| {
                image::ImageBuffer::<image::Rgb<u16>, _>::from_raw(width, height, out)
                    .map(Into::into)
            }),
        DynamicImage::ImageRgba16(rgba) => source
            .create_transform_16bit(moxcms::Layout::Rgba, &srgb, moxcms::Layout::Rgba, options)
            .and_then(|t| transformed(&*t, rgba.as_raw()))
            .map(|out| {
                image::ImageBuffer::<image::Rgba<u16>, _>::from_raw(width, height, out)
                    .map(Into::into)
            }),
        other => {
            tracing::info!(color = ?other.color(), "Colours left as decoded: an RGB profile on non-RGB pixels.");
            return image;
        }
    };
    match converted {
        Ok(Some(converted)) => converted,
        Ok(None) => image,
        Err(error) => {
            tracing::warn!(%error, "Colours left as decoded: the ICC profile cannot be applied.");
            image
        }
    }
}

fn transformed<T: Copy + Default>(
    transform: &(dyn moxcms::TransformExecutor<T> + Send + Sync),
    pixels: &[T],
) -> Result<Vec<T>, moxcms::CmsError> {
    let mut out = vec![T::default(); pixels.len()];
    transform.transform(pixels, &mut out)?;
    Ok(out)
}

/// Reads a JPEG's markers up to its frame header (or `None` for a header this walk cannot
/// follow, which the decoder will refuse anyway).
fn jpeg_frame(bytes: &[u8]) -> Option<JpegFrame> {
    const APP14: u8 = 0xEE;
    const SOS: u8 = 0xDA;
    let mut adobe = false;
    let mut at = 2; // past SOI
    while let [0xFF, marker, high, low, ..] = *bytes.get(at..)? {
        if marker == 0xFF {
            at += 1; // fill byte
            continue;
        }
        let length = usize::from(u16::from_be_bytes([high, low]));
        match marker {
            SOS => return None,
            APP14 => adobe |= bytes.get(at + 4..at + 9) == Some(b"Adobe"),
            // Start of frame: every SOFn but DHT (C4), JPG (C8) and DAC (CC).
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let precision = *bytes.get(at + 4)?;
                return Some(JpegFrame {
                    progressive: matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE),
                    components: *bytes.get(at + 9)?,
                    shrinkable: precision == 8 && matches!(marker, 0xC0..=0xC2),
                    adobe,
                });
            }
            _ => {}
        }
        at += 2 + length;
    }
    None
}

/// Whether a JPEG's last scan is followed by its end-of-image marker. The decoder fills the
/// rows of a file cut short with grey and reports success; a cut file lacks that marker.
/// Entropy-coded data cannot hold `FF D9` or `FF DA` (a data byte `FF` is followed by `00`,
/// or by a restart marker), so the last `FF DA` starts the last scan of the main image (an
/// EXIF thumbnail's scan comes before it), and an `FF D9` after it ends the image.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    const SOS: [u8; 2] = [0xFF, 0xDA];
    const EOI: [u8; 2] = [0xFF, 0xD9];
    bytes
        .windows(2)
        .rposition(|pair| pair == SOS)
        .is_some_and(|scan| bytes[scan..].windows(2).any(|pair| pair == EOI))
}

/// Encodes an 8-bit RGB or RGBA image.
fn encode(
    image: &DynamicImage,
    format: OutputFormat,
    settings: &TransformSettings,
) -> Result<Vec<u8>, Failure> {
    match format {
        OutputFormat::Webp => encode_webp(image, settings.webp_quality),
        OutputFormat::Avif => encode_avif(image, settings),
    }
}

/// Lossy WebP.
fn encode_webp(image: &DynamicImage, quality: f32) -> Result<Vec<u8>, Failure> {
    let (width, height) = (image.width(), image.height());
    let encoder = match image {
        DynamicImage::ImageRgba8(rgba) => webp::Encoder::from_rgba(rgba.as_raw(), width, height),
        DynamicImage::ImageRgb8(rgb) => webp::Encoder::from_rgb(rgb.as_raw(), width, height),
        _ => unreachable!("converted to 8-bit RGB(A) before encoding"),
    };
    let encoded = encoder
        .encode_simple(false, quality)
        .map_err(|e| Failure::permanent(format!("WebP encoding failed: {e:?}")))?;
    Ok(encoded.to_vec())
}

/// AVIF through libaom (crate `avif`), 8 bits per channel, on the calling thread (the
/// processor gives each image one CPU permit).
fn encode_avif(image: &DynamicImage, settings: &TransformSettings) -> Result<Vec<u8>, Failure> {
    let pixels = match image {
        DynamicImage::ImageRgba8(rgba) => avif::Pixels::Rgba(rgba.as_raw()),
        DynamicImage::ImageRgb8(rgb) => avif::Pixels::Rgb(rgb.as_raw()),
        _ => unreachable!("converted to 8-bit RGB(A) before encoding"),
    };
    let encoder = avif::Settings::from_quality(
        settings.avif_quality,
        settings.avif_speed,
        settings.avif_mode,
    );
    avif::encode(pixels, image.width(), image.height(), encoder)
        .map_err(|e| Failure::permanent(format!("AVIF encoding failed: {e}")))
}

/// The ThumbHash and the dominant colour, from the image scaled to fit 100 x 100 (the most
/// ThumbHash takes).
fn placeholders(image: &DynamicImage) -> Result<(Vec<u8>, [u8; 3]), Failure> {
    let (width, height) = (image.width(), image.height());
    let factor = (100.0 / f64::from(width.max(height))).min(1.0);
    let size = |side: u32| ((f64::from(side) * factor).round() as u32).max(1);
    let small = scale(image, size(width), size(height))?.into_rgba8();
    let hash = thumbhash::rgba_to_thumb_hash(
        small.width() as usize,
        small.height() as usize,
        small.as_raw(),
    );
    Ok((hash, dominant_color(&small)))
}

/// The most common colour of mostly opaque pixels: colours are counted in buckets of 16
/// levels per channel, and the pixels of the fullest bucket are averaged (a plain average of
/// a red shoe on white would be pink). An image with no opaque pixel averages them all.
fn dominant_color(image: &image::RgbaImage) -> [u8; 3] {
    let bucket = |p: &image::Rgba<u8>| {
        (usize::from(p[0] >> 4) << 8) | (usize::from(p[1] >> 4) << 4) | usize::from(p[2] >> 4)
    };
    let opaque = |p: &&image::Rgba<u8>| p[3] >= 128;
    let mut counts = vec![0u32; 4096];
    for pixel in image.pixels().filter(opaque) {
        counts[bucket(pixel)] += 1;
    }
    let fullest = (0..counts.len()).max_by_key(|&b| counts[b]).unwrap_or(0);
    let chosen: Vec<&image::Rgba<u8>> = if counts[fullest] == 0 {
        image.pixels().collect()
    } else {
        image
            .pixels()
            .filter(opaque)
            .filter(|p| bucket(p) == fullest)
            .collect()
    };
    let n = chosen.len().max(1) as u64;
    let mean = |c: usize| (chosen.iter().map(|p| u64::from(p[c])).sum::<u64>() / n) as u8;
    [mean(0), mean(1), mean(2)]
}

fn lanczos3() -> ResizeOptions {
    ResizeOptions::new().resize_alg(ResizeAlg::Convolution(
        fast_image_resize::FilterType::Lanczos3,
    ))
}

fn resize_failed(e: &dyn std::fmt::Display) -> Failure {
    Failure::permanent(format!("resize failed: {e}"))
}

/// Scales the decoded source down to `width` x `height`, with Lanczos3 (SIMD), in its own
/// pixel format; a source already that size is returned as it is.
///
/// Colour is averaged weighted by alpha (premultiplied), or transparent pixels would bleed
/// their hidden colour into the edges. The resizer would premultiply into a full-size copy
/// of its own; the decoded image is ours to change, so it is premultiplied in place and
/// only the small result is divided back.
fn shrink(mut image: DynamicImage, width: u32, height: u32) -> Result<DynamicImage, Failure> {
    if (width, height) == (image.width(), image.height()) {
        return Ok(image);
    }
    let alpha = image.color().has_alpha();
    let mul_div = MulDiv::default();
    if alpha {
        mul_div
            .multiply_alpha_inplace(&mut image)
            .map_err(|e| resize_failed(&e))?;
    }
    let mut target = DynamicImage::new(width, height, image.color());
    Resizer::new()
        .resize(&image, &mut target, &lanczos3().use_alpha(false))
        .map_err(|e| resize_failed(&e))?;
    drop(image);
    if alpha {
        mul_div
            .divide_alpha_inplace(&mut target)
            .map_err(|e| resize_failed(&e))?;
    }
    Ok(target)
}

/// A smaller copy of an 8-bit image: a narrower variant, or the placeholders' thumbnail
/// (the resizer premultiplies alpha in a copy of its own: the image is already small).
fn scale(image: &DynamicImage, width: u32, height: u32) -> Result<DynamicImage, Failure> {
    let mut target = DynamicImage::new(width, height, image.color());
    Resizer::new()
        .resize(image, &mut target, &lanczos3())
        .map_err(|e| resize_failed(&e))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        let mut out = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    /// WebP only, to the given widths: the tests about decoding, colour and orientation
    /// need no AVIF, which is slower to make (tests/golden.rs checks AVIF colours).
    fn webp_to(widths: &[u32]) -> TransformSettings {
        TransformSettings {
            widths: widths.to_vec(),
            formats: vec![OutputFormat::Webp],
            ..Default::default()
        }
    }

    /// The size of an AVIF file's decoded picture.
    fn avif_size(bytes: &[u8]) -> (u32, u32) {
        let decoded = avif::decode(bytes).unwrap();
        (decoded.width, decoded.height)
    }

    #[test]
    fn the_ladder_has_each_width_below_the_source_and_the_source_width_for_the_rest() {
        assert_eq!(
            ladder(1000, 500, &[320, 640, 960, 1280, 1600]),
            [(320, 160), (640, 320), (960, 480), (1000, 500)]
        );
        assert_eq!(ladder(200, 100, &[320, 640]), [(200, 100)]);
        assert_eq!(ladder(2560, 1600, &[1600]), [(1600, 1000)]);
        assert_eq!(
            ladder(3, 1000, &[2]),
            [(2, 667)],
            "heights keep the aspect ratio"
        );
    }

    #[test]
    fn every_variant_is_made_in_each_format_ordered_by_format_then_width() {
        let settings = TransformSettings {
            widths: vec![100, 200, 800],
            ..Default::default()
        };
        let out = compress(&png(400, 200), &settings).unwrap();
        assert_eq!((out.source_width, out.source_height), (400, 200));
        let listed: Vec<_> = out
            .variants
            .iter()
            .map(|v| (v.format, v.width, v.height))
            .collect();
        use OutputFormat::{Avif, Webp};
        assert_eq!(
            listed,
            [
                (Avif, 100, 50),
                (Avif, 200, 100),
                (Avif, 400, 200),
                (Webp, 100, 50),
                (Webp, 200, 100),
                (Webp, 400, 200),
            ]
        );
        for variant in &out.variants {
            let size = (variant.width, variant.height);
            match variant.format {
                Avif => assert_eq!(avif_size(&variant.bytes), size),
                Webp => {
                    let decoded =
                        image::load_from_memory_with_format(&variant.bytes, ImageFormat::WebP)
                            .unwrap();
                    assert_eq!((decoded.width(), decoded.height()), size);
                }
            }
        }
        assert_eq!(out.largest(Webp).unwrap().width, 400);
    }

    #[test]
    fn a_small_image_keeps_its_size() {
        let out = compress(&png(40, 30), &webp_to(&[320, 640])).unwrap();
        assert_eq!(out.variants.len(), 1);
        assert_eq!((out.variants[0].width, out.variants[0].height), (40, 30));
    }

    #[test]
    fn the_placeholders_describe_the_picture() {
        // Mostly green with a red stripe: green dominates, and the hash keeps a 2:1 shape.
        let image = image::RgbImage::from_fn(400, 200, |x, _| {
            if x < 60 {
                image::Rgb([220, 20, 20])
            } else {
                image::Rgb([30, 160, 60])
            }
        });
        let mut bytes = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        let out = compress(&bytes, &webp_to(&[200])).unwrap();
        let [r, g, b] = out.dominant_color;
        assert!(r < 45 && (150..=170).contains(&g) && b < 75, "{r},{g},{b}");
        assert!(out.dominant_color_hex().starts_with('#') && out.dominant_color_hex().len() == 7);
        // ThumbHash keeps the ratio approximately (its component counts stand for it).
        let ratio = thumbhash::thumb_hash_to_approximate_aspect_ratio(&out.thumbhash).unwrap();
        assert!((ratio - 2.0).abs() <= 0.25, "{ratio}");
    }

    #[test]
    fn the_formats_and_widths_settings_read_as_lists() {
        assert_eq!(
            TransformSettings::parse_widths("640, 320,640,1600").unwrap(),
            [320, 640, 1600]
        );
        assert!(TransformSettings::parse_widths("").is_err());
        assert!(TransformSettings::parse_widths("320,wide").is_err());
        assert_eq!(
            TransformSettings::parse_formats("webp,AVIF").unwrap(),
            [OutputFormat::Webp, OutputFormat::Avif]
        );
        assert!(
            TransformSettings::parse_formats("avif").is_err(),
            "webp is required"
        );
        assert!(TransformSettings::parse_formats("webp,jpeg").is_err());
    }

    #[test]
    fn bytes_that_are_not_an_image_are_refused() {
        let failure =
            compress(b"<html>not an image</html>", &TransformSettings::default()).unwrap_err();
        assert!(!failure.is_transient());
        assert!(failure.reason.contains("not an image"));
    }

    #[test]
    fn an_image_over_the_pixel_limit_is_refused_before_decoding() {
        let settings = TransformSettings {
            max_pixels: 10_000,
            ..webp_to(&[1600])
        };
        let failure = compress(&png(200, 100), &settings).unwrap_err();
        assert!(failure.reason.contains("pixels"), "{failure}");
    }

    #[test]
    fn a_decompression_bomb_is_refused_without_decoding_it() {
        // A valid PNG header (IHDR with a correct CRC) declaring 60,000 x 60,000 pixels,
        // followed by a tiny body: decoding it would need 10 GiB.
        let mut bomb = png(1, 1);
        bomb[16..20].copy_from_slice(&60_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&60_000u32.to_be_bytes());
        let crc = crc32(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        let failure = compress(&bomb, &webp_to(&[1600])).unwrap_err();
        assert!(failure.reason.contains("3600000000 pixels"), "{failure}");
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for byte in data {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn a_truncated_image_is_a_permanent_failure() {
        let mut broken = png(64, 64);
        broken.truncate(broken.len() / 2);
        assert!(
            !compress(&broken, &TransformSettings::default())
                .unwrap_err()
                .is_transient()
        );
    }

    /// A JPEG of `width` x `height`, red on its left half and blue on its right, with an EXIF
    /// orientation tag.
    fn oriented_jpeg(width: u32, height: u32, orientation: u16) -> Vec<u8> {
        use image::ImageEncoder;
        let image = image::RgbImage::from_fn(width, height, |x, _| {
            if x < width / 2 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([0, 0, 255])
            }
        });
        // A big-endian TIFF header and one IFD entry: Orientation (0x0112), SHORT, 1 value.
        let mut exif = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
        exif.extend_from_slice(&orientation.to_be_bytes());
        exif.extend_from_slice(&[0; 6]); // padding of the value, no next IFD
        let mut out = Vec::new();
        let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95);
        encoder.set_exif_metadata(exif).unwrap();
        encoder
            .write_image(
                image.as_raw(),
                width,
                height,
                image::ExtendedColorType::Rgb8,
            )
            .unwrap();
        out
    }

    /// The pixels of the largest WebP.
    fn webp_pixels(compressed: &Compressed) -> image::RgbImage {
        let largest = compressed.largest(OutputFormat::Webp).unwrap();
        image::load_from_memory_with_format(&largest.bytes, ImageFormat::WebP)
            .unwrap()
            .into_rgb8()
    }

    /// The largest WebP's size.
    fn largest_size(compressed: &Compressed) -> (u32, u32) {
        let largest = compressed.largest(OutputFormat::Webp).unwrap();
        (largest.width, largest.height)
    }

    #[test]
    fn an_oriented_photo_is_scaled_then_turned_upright() {
        let settings = webp_to(&[50, 100]);
        // Orientation 6: the camera was turned a quarter clockwise, so the stored left half
        // is the picture's top.
        let out = compress(&oriented_jpeg(400, 200, 6), &settings).unwrap();
        assert_eq!((out.source_width, out.source_height), (200, 400));
        assert_eq!(largest_size(&out), (100, 200));
        let pixels = webp_pixels(&out);
        let [r, _, b] = pixels.get_pixel(50, 40).0;
        assert!(r > 200 && b < 60, "top should be red: {r},{b}");
        let [r, _, b] = pixels.get_pixel(50, 160).0;
        assert!(b > 200 && r < 60, "bottom should be blue: {r},{b}");
        // Orientation 3: upside down, so the stored right half is the picture's left.
        let out = compress(&oriented_jpeg(400, 200, 3), &settings).unwrap();
        assert_eq!(largest_size(&out), (100, 50));
        let [r, _, b] = webp_pixels(&out).get_pixel(20, 25).0;
        assert!(b > 200 && r < 60, "left should be blue: {r},{b}");
    }

    #[test]
    fn a_16_bit_png_is_scaled_in_its_own_depth_and_encoded_in_8() {
        let wide: image::ImageBuffer<image::Rgb<u16>, Vec<u16>> =
            image::ImageBuffer::from_pixel(400, 200, image::Rgb([0xFFFF, 0x8080, 0x0000]));
        let mut png = Vec::new();
        wide.write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let settings = webp_to(&[100]);
        let header = inspect(&png, &settings).unwrap();
        assert_eq!(header.color, ColorType::Rgb16);
        let out = compress(&png, &settings).unwrap();
        assert_eq!(largest_size(&out), (100, 50));
        let [r, g, b] = webp_pixels(&out).get_pixel(50, 25).0;
        assert!(r > 245 && (120..=136).contains(&g) && b < 10, "{r},{g},{b}");
    }

    #[test]
    fn the_peak_estimate_covers_the_decoded_pixels_and_the_progressive_coefficients() {
        let settings = TransformSettings::default();
        let header = inspect(PHOTO, &settings).unwrap();
        let pixels = 640 * 427;
        let frame = jpeg_frame(PHOTO).unwrap();
        assert!(!frame.progressive && frame.shrinkable && frame.components == 3);
        // Three planes and the RGB output (and room for a CMYK one's conversion), then the
        // variants; no scaling, as the largest variant is the source's size.
        assert_eq!(
            header.peak_bytes(&settings),
            pixels * (2 * 3 + 3) + pixels * OUTPUT_BYTES_PER_PIXEL + ENCODER_BYTES
        );
        // The same frame header marked progressive (SOF2): three components' coefficients.
        let sof0 = PHOTO.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        let mut progressive = PHOTO.to_vec();
        progressive[sof0 + 1] = 0xC2;
        assert!(jpeg_frame(&progressive).unwrap().progressive);
        assert_eq!(
            inspect(&progressive, &settings)
                .unwrap()
                .peak_bytes(&settings),
            pixels * (2 * 3 + 3) + pixels * 2 * 3 + pixels * OUTPUT_BYTES_PER_PIXEL + ENCODER_BYTES
        );
        // A ladder up to 320 w: the JPEG is decoded at half size, 320 x 214, which is the
        // largest variant's size, so the resizer holds nothing more.
        let small = webp_to(&[160, 320]);
        assert_eq!(header.jpeg_shrink(&small), 2);
        assert_eq!(
            header.peak_bytes(&small),
            320 * 214 * (2 * 3 + 3) + 320 * 214 * OUTPUT_BYTES_PER_PIXEL + ENCODER_BYTES
        );
        // Up to 300 w: still half size (a quarter would be narrower than 300), then scaled.
        let smaller = webp_to(&[300]);
        assert_eq!(header.jpeg_shrink(&smaller), 2);
        assert_eq!(
            header.peak_bytes(&smaller),
            320 * 214 * (2 * 3 + 3)
                + 300 * 214 * 3
                + 300 * 200 * OUTPUT_BYTES_PER_PIXEL
                + ENCODER_BYTES
        );
    }

    #[test]
    fn a_jpeg_shrunk_on_load_comes_out_at_each_variants_size() {
        for widths in [[80, 160], [100, 300], [320, 640]] {
            let out = compress(PHOTO, &webp_to(&widths)).unwrap();
            let sizes: Vec<_> = out.variants.iter().map(|v| (v.width, v.height)).collect();
            assert_eq!(sizes, ladder(640, 427, &widths), "{widths:?}");
            let decoded = webp_pixels(&out);
            assert_eq!(decoded.dimensions(), *sizes.last().unwrap());
        }
    }

    /// Display P3 (180, 120, 80) in sRGB: both spaces share the sRGB transfer curve, so
    /// linearise, apply the P3-to-sRGB matrix of their primaries (same D65 white), encode:
    /// (190.3, 116.6, 71.7).
    const P3_IN_SRGB: [u8; 3] = [190, 117, 72];

    fn assert_near(what: &str, got: [u8; 3], want: [u8; 3]) {
        let off = got
            .iter()
            .zip(want)
            .map(|(g, w)| g.abs_diff(w))
            .max()
            .unwrap();
        assert!(off <= 4, "{what}: {got:?}, expected about {want:?}");
    }

    fn tagged(format: ImageFormat, sixteen_bits: bool, profile: Option<Vec<u8>>) -> Vec<u8> {
        use image::ImageEncoder;
        let mut out = Vec::new();
        if sixteen_bits {
            let wide: image::ImageBuffer<image::Rgb<u16>, Vec<u16>> =
                image::ImageBuffer::from_pixel(
                    64,
                    64,
                    image::Rgb([180 * 257, 120 * 257, 80 * 257]),
                );
            let mut encoder = image::codecs::png::PngEncoder::new(&mut out);
            if let Some(profile) = profile {
                encoder.set_icc_profile(profile).unwrap();
            }
            encoder
                .write_image(
                    bytemuck_free_bytes(wide.as_raw()).as_slice(),
                    64,
                    64,
                    image::ExtendedColorType::Rgb16,
                )
                .unwrap();
            return out;
        }
        assert_eq!(format, ImageFormat::Jpeg);
        let flat = image::RgbImage::from_pixel(64, 64, image::Rgb([180, 120, 80]));
        let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 100);
        if let Some(profile) = profile {
            encoder.set_icc_profile(profile).unwrap();
        }
        encoder
            .write_image(flat.as_raw(), 64, 64, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    /// 16-bit samples as the encoder takes them: native-endian bytes.
    fn bytemuck_free_bytes(samples: &[u16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_ne_bytes()).collect()
    }

    #[test]
    fn colours_tagged_with_an_icc_profile_come_out_in_srgb() {
        let p3 = moxcms::ColorProfile::new_display_p3().encode().unwrap();
        let settings = webp_to(&[1600]);
        let centre = |bytes: &[u8]| {
            let out = compress(bytes, &settings).unwrap();
            webp_pixels(&out).get_pixel(32, 32).0
        };
        assert_near(
            "8-bit JPEG tagged Display P3",
            centre(&tagged(ImageFormat::Jpeg, false, Some(p3.clone()))),
            P3_IN_SRGB,
        );
        assert_near(
            "16-bit PNG tagged Display P3",
            centre(&tagged(ImageFormat::Png, true, Some(p3))),
            P3_IN_SRGB,
        );
        // Untagged (sRGB) colours pass through, and so does an sRGB profile.
        assert_near(
            "untagged JPEG",
            centre(&tagged(ImageFormat::Jpeg, false, None)),
            [180, 120, 80],
        );
        let srgb = moxcms::ColorProfile::new_srgb().encode().unwrap();
        assert_near(
            "JPEG tagged sRGB",
            centre(&tagged(ImageFormat::Jpeg, false, Some(srgb))),
            [180, 120, 80],
        );
        // A profile that cannot be read leaves the colours as decoded, and the image is made.
        assert_near(
            "JPEG with a broken profile",
            centre(&tagged(
                ImageFormat::Jpeg,
                false,
                Some(b"not a profile".to_vec()),
            )),
            [180, 120, 80],
        );
    }

    const PHOTO: &[u8] = include_bytes!("../../tests/fixtures/images/rocket.jpg");

    #[test]
    fn a_truncated_jpeg_is_a_permanent_failure_not_a_grey_picture() {
        assert!(compress(PHOTO, &TransformSettings::default()).is_ok());
        for cut in [PHOTO.len() / 3, PHOTO.len() - 2] {
            let failure = compress(&PHOTO[..cut], &TransformSettings::default()).unwrap_err();
            assert!(!failure.is_transient(), "{failure}");
            assert!(failure.reason.contains("ends early"), "{failure}");
        }
    }

    #[test]
    fn bytes_after_the_end_of_a_jpeg_are_no_truncation() {
        let mut padded = PHOTO.to_vec();
        padded.extend_from_slice(&[0; 64]);
        assert!(compress(&padded, &TransformSettings::default()).is_ok());
    }
}
