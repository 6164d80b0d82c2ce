//! Decoding within the pixel and allocation limits, with shrink-on-load for JPEG.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use super::{
    TransformSettings,
    colour::cmyk_to_srgb,
    inspect::{Header, JpegFrame, jpeg_is_complete},
};
use crate::failure::Failure;

pub(super) fn decoder<'a>(
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
pub(super) fn decode(
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
pub(super) fn decode_jpeg(
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
