//! The ladder of widths, and the resizing that makes it (Lanczos3, SIMD).

use fast_image_resize::{MulDiv, ResizeAlg, ResizeOptions, Resizer};
use image::DynamicImage;

use crate::failure::Failure;

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

pub(super) fn lanczos3() -> ResizeOptions {
    ResizeOptions::new().resize_alg(ResizeAlg::Convolution(
        fast_image_resize::FilterType::Lanczos3,
    ))
}

pub(super) fn resize_failed(e: &dyn std::fmt::Display) -> Failure {
    Failure::permanent(format!("resize failed: {e}"))
}

/// Scales the decoded source down to `width` x `height`, with Lanczos3 (SIMD), in its own
/// pixel format; a source already that size is returned as it is.
///
/// Colour is averaged weighted by alpha (premultiplied), or transparent pixels would bleed
/// their hidden colour into the edges. The resizer would premultiply into a full-size copy
/// of its own; the decoded image is ours to change, so it is premultiplied in place and
/// only the small result is divided back.
pub(super) fn shrink(
    mut image: DynamicImage,
    width: u32,
    height: u32,
) -> Result<DynamicImage, Failure> {
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
pub(super) fn scale(
    image: &DynamicImage,
    width: u32,
    height: u32,
) -> Result<DynamicImage, Failure> {
    let mut target = DynamicImage::new(width, height, image.color());
    Resizer::new()
        .resize(image, &mut target, &lanczos3())
        .map_err(|e| resize_failed(&e))?;
    Ok(target)
}
