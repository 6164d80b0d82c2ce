//! What a page shows before any variant arrives: a ThumbHash and a dominant colour.

use image::DynamicImage;

use super::ladder::scale;
use crate::failure::Failure;

/// The ThumbHash and the dominant colour, from the image scaled to fit 100 x 100 (the most
/// ThumbHash takes).
pub(super) fn placeholders(image: &DynamicImage) -> Result<(Vec<u8>, [u8; 3]), Failure> {
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
pub(super) fn dominant_color(image: &image::RgbaImage) -> [u8; 3] {
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
