//! Sniff, decode (with limits), resize, convert to sRGB, orient, encode.
//!
//! The output is lossy WebP at quality 80 (configurable): every current browser shows it, it
//! is typically 25–35% smaller than JPEG at the same visual quality, and unlike JPEG it keeps
//! transparency, so logos and photos share one format. AVIF would be smaller still, but costs
//! about a second per megapixel here, which would make compression the pipeline's bottleneck.
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

/// What the transform may accept and what it produces.
#[derive(Debug, Clone)]
pub struct TransformSettings {
    /// The most pixels a source may declare (`IMAGE_MAX_PIXELS`).
    pub max_pixels: u64,
    /// The longest side of the output (`IMAGE_MAX_SIDE`); smaller images are not enlarged.
    pub max_side: u32,
    /// WebP quality 0–100 (`IMAGE_WEBP_QUALITY`).
    pub quality: f32,
}

impl Default for TransformSettings {
    fn default() -> Self {
        Self {
            max_pixels: 40_000_000,
            max_side: 1600,
            quality: 80.0,
        }
    }
}

/// A compressed image ready to store.
#[derive(Debug)]
pub struct Compressed {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// The media type, `image/webp`.
    pub content_type: &'static str,
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
    let (image, profile) =
        tracing::info_span!("decode").in_scope(|| decode(bytes, header, settings))?;
    let image = tracing::info_span!("resize").in_scope(|| resize(image, settings.max_side))?;
    let image = match profile {
        Some(profile) => to_srgb(image, &profile),
        None => image,
    };
    let mut image = if image.color().has_alpha() {
        DynamicImage::ImageRgba8(image.into_rgba8())
    } else {
        DynamicImage::ImageRgb8(image.into_rgb8())
    };
    if let Some(orientation) = header.orientation {
        image.apply_orientation(orientation);
    }
    tracing::info_span!("encode").in_scope(|| encode(&image, settings.quality))
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
    /// Bytes per pixel the decoder holds besides its output: a progressive JPEG keeps every
    /// coefficient of every component (2 bytes each) until its last scan; a GIF frame is
    /// decoded into a buffer of its own and composed onto the output.
    working_bytes_per_pixel: u64,
}

/// Bytes per output pixel the scaled image, its 8-bit RGBA copy and the WebP encoder's
/// working buffers take together (measured with libwebp at method 4 by
/// `scripts/measure-decode-memory.sh`, rounded up).
const OUTPUT_BYTES_PER_PIXEL: u64 = 16;

impl Header {
    /// The most memory compressing this source holds at once: the decoder's output and
    /// working buffers, the scaler's intermediate rows, then the scaled copy and the
    /// encoder's buffers (an upper bound: `scripts/measure-decode-memory.sh` prints it beside
    /// the measured peak for the worst accepted inputs). The processor admits
    /// sources to decoding against a budget of this (`IMAGE_DECODE_MEMORY_MB`).
    pub fn peak_bytes(&self, settings: &TransformSettings) -> u64 {
        let pixels = u64::from(self.width) * u64::from(self.height);
        let bytes_per_pixel = u64::from(self.color.bytes_per_pixel());
        let (width, height) = scaled_size(self.width, self.height, settings.max_side);
        let decoded = pixels * (bytes_per_pixel + self.working_bytes_per_pixel);
        // Scaling convolves rows, then columns: between the passes it holds the source's
        // height at the new width, in the source's pixel format.
        let between_passes = if (width, height) == (self.width, self.height) {
            0
        } else {
            u64::from(width) * u64::from(self.height) * bytes_per_pixel
        };
        decoded + between_passes + u64::from(width) * u64::from(height) * OUTPUT_BYTES_PER_PIXEL
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
    let working_bytes_per_pixel = match format {
        ImageFormat::Jpeg => jpeg_progressive_components(bytes).map_or(0, |n| 2 * u64::from(n)),
        ImageFormat::Gif => 4,
        ImageFormat::WebP => 2,
        _ => 0,
    };
    Ok(Header {
        format,
        width,
        height,
        color: decoder.color_type(),
        orientation: decoder.orientation().ok(),
        working_bytes_per_pixel,
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
    let mut decoder = decoder(bytes, format, settings)?;
    let profile = decoder.icc_profile().ok().flatten();
    let image = DynamicImage::from_decoder(decoder)
        .map_err(|e| Failure::permanent(format!("cannot decode the {format:?} image: {e}")))?;
    Ok((image, profile))
}

/// Converts the colours of an RGB image from its embedded ICC profile (Adobe RGB, Display
/// P3, ProPhoto…) to sRGB, which is what every output is shown as: outputs carry no profile,
/// and an untagged image is sRGB to every browser. Runs on the scaled image, so it costs
/// little, and in its depth (a 16-bit source is converted in 16 bits).
///
/// Left as they are, with a log line: a profile that cannot be read, and profiles of other
/// colour spaces (grey; CMYK, whose pixels the JPEG decoder has already turned into RGB
/// without it).
fn to_srgb(image: DynamicImage, profile: &[u8]) -> DynamicImage {
    let source = match moxcms::ColorProfile::new_from_slice(profile) {
        Ok(source) if source.color_space == moxcms::DataColorSpace::Rgb => source,
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

/// The number of components of a progressive JPEG's frame, or `None` for a sequential one
/// (or a header this walk cannot follow, which the decoder will refuse anyway).
fn jpeg_progressive_components(bytes: &[u8]) -> Option<u8> {
    const SOF2: u8 = 0xC2;
    const SOS: u8 = 0xDA;
    let mut at = 2; // past SOI
    while let [0xFF, marker, high, low, ..] = *bytes.get(at..)? {
        if marker == 0xFF {
            at += 1; // fill byte
            continue;
        }
        if marker == SOS {
            return None;
        }
        if marker == SOF2 {
            return bytes.get(at + 9).copied();
        }
        at += 2 + usize::from(u16::from_be_bytes([high, low]));
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

/// Lossy WebP of an 8-bit RGB or RGBA image.
fn encode(image: &DynamicImage, quality: f32) -> Result<Compressed, Failure> {
    let (width, height) = (image.width(), image.height());
    let encoder = match image {
        DynamicImage::ImageRgba8(rgba) => webp::Encoder::from_rgba(rgba.as_raw(), width, height),
        DynamicImage::ImageRgb8(rgb) => webp::Encoder::from_rgb(rgb.as_raw(), width, height),
        _ => unreachable!("converted to 8-bit RGB(A) before encoding"),
    };
    let encoded = encoder
        .encode_simple(false, quality)
        .map_err(|e| Failure::permanent(format!("WebP encoding failed: {e:?}")))?;
    Ok(Compressed {
        bytes: encoded.to_vec(),
        width,
        height,
        content_type: "image/webp",
    })
}

/// The size `width` x `height` scales down to so its longest side is at most `max_side`
/// (the longest side is the same before and after orientation).
fn scaled_size(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest <= max_side {
        return (width, height);
    }
    let scale = f64::from(max_side) / f64::from(longest);
    (
        ((f64::from(width) * scale).round() as u32).max(1),
        ((f64::from(height) * scale).round() as u32).max(1),
    )
}

/// Scales down so the longest side is at most `max_side`, with Lanczos3 (SIMD), in the
/// image's own pixel format.
///
/// Colour is averaged weighted by alpha (premultiplied), or transparent pixels would bleed
/// their hidden colour into the edges. The resizer would premultiply into a full-size copy
/// of its own; the decoded image is ours to change, so it is premultiplied in place and
/// only the small result is divided back.
fn resize(mut image: DynamicImage, max_side: u32) -> Result<DynamicImage, Failure> {
    let (width, height) = scaled_size(image.width(), image.height(), max_side);
    if (width, height) == (image.width(), image.height()) {
        return Ok(image);
    }
    let failed = |e: &dyn std::fmt::Display| Failure::permanent(format!("resize failed: {e}"));
    let alpha = image.color().has_alpha();
    let mul_div = MulDiv::default();
    if alpha {
        mul_div
            .multiply_alpha_inplace(&mut image)
            .map_err(|e| failed(&e))?;
    }
    let mut target = DynamicImage::new(width, height, image.color());
    Resizer::new()
        .resize(
            &image,
            &mut target,
            &ResizeOptions::new()
                .resize_alg(ResizeAlg::Convolution(
                    fast_image_resize::FilterType::Lanczos3,
                ))
                .use_alpha(false),
        )
        .map_err(|e| failed(&e))?;
    drop(image);
    if alpha {
        mul_div
            .divide_alpha_inplace(&mut target)
            .map_err(|e| failed(&e))?;
    }
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

    #[test]
    fn a_large_image_is_scaled_down_to_the_longest_side_as_webp() {
        let settings = TransformSettings {
            max_side: 100,
            ..Default::default()
        };
        let out = compress(&png(400, 200), &settings).unwrap();
        assert_eq!((out.width, out.height), (100, 50));
        assert_eq!(image::guess_format(&out.bytes).unwrap(), ImageFormat::WebP);
    }

    #[test]
    fn a_small_image_keeps_its_size() {
        let out = compress(&png(40, 30), &TransformSettings::default()).unwrap();
        assert_eq!((out.width, out.height), (40, 30));
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
            ..Default::default()
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
        let failure = compress(&bomb, &TransformSettings::default()).unwrap_err();
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

    fn webp_pixels(compressed: &Compressed) -> image::RgbImage {
        image::load_from_memory_with_format(&compressed.bytes, ImageFormat::WebP)
            .unwrap()
            .into_rgb8()
    }

    #[test]
    fn an_oriented_photo_is_scaled_then_turned_upright() {
        let settings = TransformSettings {
            max_side: 100,
            ..Default::default()
        };
        // Orientation 6: the camera was turned a quarter clockwise, so the stored left half
        // is the picture's top.
        let out = compress(&oriented_jpeg(400, 200, 6), &settings).unwrap();
        assert_eq!((out.width, out.height), (50, 100));
        let pixels = webp_pixels(&out);
        let [r, _, b] = pixels.get_pixel(25, 20).0;
        assert!(r > 200 && b < 60, "top should be red: {r},{b}");
        let [r, _, b] = pixels.get_pixel(25, 80).0;
        assert!(b > 200 && r < 60, "bottom should be blue: {r},{b}");
        // Orientation 3: upside down, so the stored right half is the picture's left.
        let out = compress(&oriented_jpeg(400, 200, 3), &settings).unwrap();
        assert_eq!((out.width, out.height), (100, 50));
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
        let settings = TransformSettings {
            max_side: 100,
            ..Default::default()
        };
        let header = inspect(&png, &settings).unwrap();
        assert_eq!(header.color, ColorType::Rgb16);
        let out = compress(&png, &settings).unwrap();
        assert_eq!((out.width, out.height), (100, 50));
        let [r, g, b] = webp_pixels(&out).get_pixel(50, 25).0;
        assert!(r > 245 && (120..=136).contains(&g) && b < 10, "{r},{g},{b}");
    }

    #[test]
    fn the_peak_estimate_covers_the_decoded_pixels_and_the_progressive_coefficients() {
        let settings = TransformSettings::default();
        let header = inspect(PHOTO, &settings).unwrap();
        let pixels = 640 * 427;
        assert_eq!(jpeg_progressive_components(PHOTO), None);
        assert_eq!(
            header.peak_bytes(&settings),
            pixels * 3 + pixels * OUTPUT_BYTES_PER_PIXEL
        );
        // The same frame header marked progressive (SOF2): three components' coefficients.
        let sof0 = PHOTO.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        let mut progressive = PHOTO.to_vec();
        progressive[sof0 + 1] = 0xC2;
        assert_eq!(jpeg_progressive_components(&progressive), Some(3));
        assert_eq!(
            inspect(&progressive, &settings)
                .unwrap()
                .peak_bytes(&settings),
            pixels * (3 + 6) + pixels * OUTPUT_BYTES_PER_PIXEL
        );
        // Scaled down to 320 x 214: the scaler's rows between its passes, then the output.
        let small = TransformSettings {
            max_side: 320,
            ..Default::default()
        };
        assert_eq!(
            header.peak_bytes(&small),
            pixels * 3 + 320 * 427 * 3 + 320 * 214 * OUTPUT_BYTES_PER_PIXEL
        );
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
        let settings = TransformSettings::default();
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
