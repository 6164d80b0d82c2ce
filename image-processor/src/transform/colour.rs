//! Colour management: CMYK and ICC-tagged sources to sRGB.

use image::DynamicImage;

/// CMYK pixels as the JPEG decoder gives them, to 8-bit sRGB.
///
/// The decoder inverts what the file stores. Photoshop, which writes nearly every CMYK
/// JPEG and marks it with an Adobe APP14 marker, stores ink inverted, so with that marker
/// the decoder's values are ink amounts (0 none, 255 full); without it they are inverted
/// once more. With an embedded CMYK profile the ink is converted through it (colour
/// managed); without one, by the naive formula (each ink and black subtract light), which
/// is what browsers show for such files.
pub(super) fn cmyk_to_srgb(mut cmyk: Vec<u8>, adobe: bool, profile: Option<&[u8]>) -> Vec<u8> {
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
pub(super) fn to_srgb(mut image: DynamicImage, profile: &[u8]) -> DynamicImage {
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

pub(super) fn transformed<T: Copy + Default>(
    transform: &(dyn moxcms::TransformExecutor<T> + Send + Sync),
    pixels: &[T],
) -> Result<Vec<T>, moxcms::CmsError> {
    let mut out = vec![T::default(); pixels.len()];
    transform.transform(pixels, &mut out)?;
    Ok(out)
}
