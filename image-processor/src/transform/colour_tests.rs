//! Colour management end to end: sources tagged with an ICC profile come out in sRGB.

use image::ImageFormat;

use super::{
    tests::{webp_pixels, webp_to},
    *,
};

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
            image::ImageBuffer::from_pixel(64, 64, image::Rgb([180 * 257, 120 * 257, 80 * 257]));
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
