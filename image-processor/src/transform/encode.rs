//! The encoders: WebP (libwebp) and AVIF (libaom, through the `avif` crate).

use image::DynamicImage;

use super::{OutputFormat, TransformSettings};
use crate::failure::Failure;

/// Encodes an 8-bit RGB or RGBA image.
pub(super) fn encode(
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
pub(super) fn encode_webp(image: &DynamicImage, quality: f32) -> Result<Vec<u8>, Failure> {
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
pub(super) fn encode_avif(
    image: &DynamicImage,
    settings: &TransformSettings,
) -> Result<Vec<u8>, Failure> {
    let pixels = match image {
        DynamicImage::ImageRgba8(rgba) => avif::Pixels::Rgba(rgba.as_raw()),
        DynamicImage::ImageRgb8(rgb) => avif::Pixels::Rgb(rgb.as_raw()),
        _ => unreachable!("converted to 8-bit RGB(A) before encoding"),
    };
    let encoder = avif::Settings::from_quality(
        settings.avif_quality,
        settings.avif_speed,
        settings.avif_mode,
        settings.avif_search,
    );
    avif::encode(pixels, image.width(), image.height(), encoder)
        .map_err(|e| Failure::permanent(format!("AVIF encoding failed: {e}")))
}
