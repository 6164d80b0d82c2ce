//! Golden fixtures: one photo stored every way sources arrive (EXIF orientations 1–8, colour
//! profiles, CMYK, 16 bits, alpha, animation, progressive, cut short), each compressed by
//! the processor's transform and held to the sRGB truth it should show.
//!
//! The fixtures are made here, in code, from `tests/fixtures/images/coffee.png` (600x400),
//! so each states exactly how it was stored; so is the CMYK printing profile, since no
//! freely licensed one is at hand ([`cmyk_profile`]). The largest variant of each format, WebP and
//! AVIF, is decoded (AVIF by the `avif` crate, through libaom) and checked for:
//! - orientation and size: the photo's upright size;
//! - colour: the mean CIEDE2000 between the variant and the truth, both scaled to 48 px
//!   wide (so compression noise averages out), is at most 2 (1 is about the smallest
//!   difference an observer notices side by side). An image shown with wrong colours,
//!   turned, or mirrored scores far above it (the last test shows by how much).

use image::{
    DynamicImage, ImageBuffer, ImageEncoder, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage,
    codecs::{jpeg::JpegEncoder, png::PngEncoder},
    imageops::FilterType,
    metadata::Orientation,
};
use image_processor::transform::{self, OutputFormat, TransformSettings};
use palette::{IntoColor, Lab, Srgb, color_difference::Ciede2000};

const COFFEE: &[u8] = include_bytes!("../../tests/fixtures/images/coffee.png");

/// The sRGB truth: the photo as it should be shown.
fn truth() -> RgbImage {
    image::load_from_memory(COFFEE).unwrap().into_rgb8()
}

fn settings() -> TransformSettings {
    TransformSettings {
        widths: vec![320, 640],
        formats: vec![OutputFormat::Avif, OutputFormat::Webp],
        ..Default::default()
    }
}

/// The largest variant of each format the transform makes of `bytes`, decoded.
fn compressed(bytes: &[u8]) -> [(OutputFormat, DynamicImage); 2] {
    let out = transform::compress(bytes, &settings()).unwrap_or_else(|f| panic!("{f}"));
    [OutputFormat::Webp, OutputFormat::Avif].map(|format| {
        let variant = out.largest(format).unwrap();
        let image = match format {
            OutputFormat::Webp => {
                image::load_from_memory_with_format(&variant.bytes, ImageFormat::WebP).unwrap()
            }
            OutputFormat::Avif => {
                let decoded = avif::decode(&variant.bytes).unwrap();
                let rgba = RgbaImage::from_raw(decoded.width, decoded.height, decoded.rgba);
                DynamicImage::ImageRgba8(rgba.unwrap())
            }
        };
        (format, image)
    })
}

/// Mean CIEDE2000 between two images of one aspect ratio, both scaled to 48 px wide, each
/// composed onto white first.
fn mean_delta_e(a: &DynamicImage, b: &DynamicImage) -> f32 {
    let small = |image: &DynamicImage| {
        let height = (48.0 * image.height() as f32 / image.width() as f32).round() as u32;
        let rgba = image
            .resize_exact(48, height, FilterType::Triangle)
            .into_rgba8();
        let on_white = |p: &Rgba<u8>| {
            let alpha = f32::from(p[3]) / 255.0;
            [0, 1, 2].map(|c| (f32::from(p[c]) * alpha + 255.0 * (1.0 - alpha)) / 255.0)
        };
        rgba.pixels()
            .map(|p| {
                let [r, g, b] = on_white(p);
                let lab: Lab = Srgb::new(r, g, b).into_linear::<f32>().into_color();
                lab
            })
            .collect::<Vec<_>>()
    };
    let (a, b) = (small(a), small(b));
    assert_eq!(a.len(), b.len(), "the images' aspect ratios differ");
    a.iter().zip(&b).map(|(x, y)| x.difference(*y)).sum::<f32>() / a.len() as f32
}

/// Checks the size and colour of what the transform makes of `bytes` against `want`.
fn assert_shows(what: &str, bytes: &[u8], want: &DynamicImage) {
    for (format, got) in compressed(bytes) {
        let what = format!("{what}, {}", format.media_type());
        assert_eq!(
            (got.width(), got.height()),
            (want.width(), want.height()),
            "{what}: size"
        );
        let delta_e = mean_delta_e(&got, want);
        assert!(
            delta_e <= 2.0,
            "{what}: mean CIEDE2000 {delta_e:.2} against the truth"
        );
        eprintln!("{what}: mean CIEDE2000 {delta_e:.2}");
    }
}

fn jpeg(image: &RgbImage, exif: Option<Vec<u8>>, profile: Option<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut out, 95);
    if let Some(exif) = exif {
        encoder.set_exif_metadata(exif).unwrap();
    }
    if let Some(profile) = profile {
        encoder.set_icc_profile(profile).unwrap();
    }
    encoder
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

fn png(image: &DynamicImage, profile: Option<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = PngEncoder::new(&mut out);
    if let Some(profile) = profile {
        encoder.set_icc_profile(profile).unwrap();
    }
    let bytes: Vec<u8> = match image {
        DynamicImage::ImageRgb16(i) => i.as_raw().iter().flat_map(|s| s.to_ne_bytes()).collect(),
        DynamicImage::ImageRgba16(i) => i.as_raw().iter().flat_map(|s| s.to_ne_bytes()).collect(),
        other => other.as_bytes().to_vec(),
    };
    encoder
        .write_image(&bytes, image.width(), image.height(), image.color().into())
        .unwrap();
    out
}

/// An EXIF block holding only an orientation tag.
fn exif_orientation(value: u16) -> Vec<u8> {
    let mut exif = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
    exif.extend_from_slice(&value.to_be_bytes());
    exif.extend_from_slice(&[0; 6]);
    exif
}

#[test]
fn every_exif_orientation_comes_out_upright() {
    let truth = truth();
    for value in 1..=8u16 {
        let orientation = Orientation::from_exif(value as u8).unwrap();
        // Stored the way a camera held that way stores it: what turns upright when the
        // orientation is applied.
        let inverse = match orientation {
            Orientation::Rotate90 => Orientation::Rotate270,
            Orientation::Rotate270 => Orientation::Rotate90,
            other => other,
        };
        let mut stored = DynamicImage::ImageRgb8(truth.clone());
        stored.apply_orientation(inverse);
        let bytes = jpeg(&stored.into_rgb8(), Some(exif_orientation(value)), None);
        assert_shows(
            &format!("EXIF orientation {value}"),
            &bytes,
            &DynamicImage::ImageRgb8(truth.clone()),
        );
    }
}

/// The truth's pixels in another RGB colour space, 16 bits per channel.
fn in_profile(profile: &moxcms::ColorProfile) -> ImageBuffer<Rgb<u16>, Vec<u16>> {
    let truth = truth();
    let wide: Vec<u16> = truth.as_raw().iter().map(|v| u16::from(*v) * 257).collect();
    let mut out = vec![0u16; wide.len()];
    moxcms::ColorProfile::new_srgb()
        .create_transform_16bit(
            moxcms::Layout::Rgb,
            profile,
            moxcms::Layout::Rgb,
            moxcms::TransformOptions::default(),
        )
        .unwrap()
        .transform(&wide, &mut out)
        .unwrap();
    ImageBuffer::from_raw(truth.width(), truth.height(), out).unwrap()
}

fn to_8_bits(image: &ImageBuffer<Rgb<u16>, Vec<u16>>) -> RgbImage {
    DynamicImage::ImageRgb16(image.clone()).into_rgb8()
}

#[test]
fn wide_gamut_sources_come_out_in_srgb() {
    let truth = DynamicImage::ImageRgb8(truth());
    for (name, profile) in [
        ("Adobe RGB", moxcms::ColorProfile::new_adobe_rgb()),
        ("Display P3", moxcms::ColorProfile::new_display_p3()),
        ("ProPhoto", moxcms::ColorProfile::new_pro_photo_rgb()),
    ] {
        let pixels = in_profile(&profile);
        let tag = profile.encode().unwrap();
        assert_shows(
            &format!("{name} JPEG"),
            &jpeg(&to_8_bits(&pixels), None, Some(tag.clone())),
            &truth,
        );
        assert_shows(
            &format!("{name} 16-bit PNG"),
            &png(&DynamicImage::ImageRgb16(pixels), Some(tag)),
            &truth,
        );
    }
}

#[test]
fn a_wide_gamut_source_shown_untagged_is_what_the_check_catches() {
    // The same pixels without their profile: what ignoring profiles shows.
    for (name, profile) in [
        ("Display P3", moxcms::ColorProfile::new_display_p3()),
        ("ProPhoto", moxcms::ColorProfile::new_pro_photo_rgb()),
    ] {
        let pixels = to_8_bits(&in_profile(&profile));
        for (format, got) in compressed(&jpeg(&pixels, None, None)) {
            let delta_e = mean_delta_e(&got, &DynamicImage::ImageRgb8(truth()));
            let format = format.media_type();
            assert!(
                delta_e > 2.0,
                "{name}, {format}: mean CIEDE2000 {delta_e:.2} should exceed the bound"
            );
            eprintln!("{name} shown untagged, {format}: mean CIEDE2000 {delta_e:.2}");
        }
    }
}

#[test]
fn sixteen_bit_grey_and_alpha_pngs_keep_their_colours() {
    let truth = truth();
    let sixteen = DynamicImage::ImageRgb8(truth.clone()).into_rgb16();
    assert_shows(
        "16-bit PNG",
        &png(&DynamicImage::ImageRgb16(sixteen), None),
        &DynamicImage::ImageRgb8(truth.clone()),
    );
    let grey = DynamicImage::ImageRgb8(truth.clone()).into_luma8();
    assert_shows(
        "grey PNG",
        &png(&DynamicImage::ImageLuma8(grey.clone()), None),
        &DynamicImage::ImageLuma8(grey),
    );
    // Alpha falling from opaque on the left to clear on the right.
    let width = truth.width();
    let rgba: RgbaImage = ImageBuffer::from_fn(width, truth.height(), |x, y| {
        let [r, g, b] = truth.get_pixel(x, y).0;
        Rgba([r, g, b, (255 - x * 255 / width) as u8])
    });
    let rgba = DynamicImage::ImageRgba8(rgba);
    assert_shows("PNG with alpha", &png(&rgba, None), &rgba);
}

#[test]
fn a_grey_source_with_a_grey_profile_comes_out_with_its_tone_curve() {
    // Linear light (gamma 1.0) in 16 bits, tagged so: shown untagged it would be far too dark.
    let grey = DynamicImage::ImageRgb8(truth()).into_luma8();
    let linear: ImageBuffer<image::Luma<u16>, Vec<u16>> =
        ImageBuffer::from_fn(grey.width(), grey.height(), |x, y| {
            let v = f64::from(grey.get_pixel(x, y)[0]) / 255.0;
            let light = if v <= 0.04045 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            };
            image::Luma([(light * 65_535.0).round() as u16])
        });
    let mut bytes = Vec::new();
    let mut encoder = PngEncoder::new(&mut bytes);
    encoder
        .set_icc_profile(
            moxcms::ColorProfile::new_gray_with_gamma(1.0)
                .encode()
                .unwrap(),
        )
        .unwrap();
    let samples: Vec<u8> = linear
        .as_raw()
        .iter()
        .flat_map(|s| s.to_ne_bytes())
        .collect();
    encoder
        .write_image(
            &samples,
            grey.width(),
            grey.height(),
            image::ExtendedColorType::L16,
        )
        .unwrap();
    assert_shows(
        "16-bit grey PNG in linear light",
        &bytes,
        &DynamicImage::ImageLuma8(grey),
    );
}

#[test]
fn an_animated_gif_shows_its_first_frame() {
    use image::{Delay, Frame, codecs::gif::GifEncoder};
    let truth = truth();
    let first = DynamicImage::ImageRgb8(truth.clone()).into_rgba8();
    let second = DynamicImage::ImageRgb8(truth.clone()).fliph().into_rgba8();
    let mut gif = Vec::new();
    {
        let mut encoder = GifEncoder::new_with_speed(&mut gif, 30);
        for frame in [first, second] {
            encoder
                .encode_frame(Frame::from_parts(
                    frame,
                    0,
                    0,
                    Delay::from_numer_denom_ms(100, 1),
                ))
                .unwrap();
        }
    }
    // The first frame as the GIF holds it (256 colours): the truth of this fixture.
    let first_frame = image::load_from_memory_with_format(&gif, ImageFormat::Gif).unwrap();
    assert_shows("animated GIF", &gif, &first_frame);
}

/// The ink (see [`ink`]) as a CMYK or YCCK JPEG, which jpeg-encoder writes the Adobe way;
/// with `profile` embedded when given.
fn cmyk_jpeg(
    color: jpeg_encoder::ColorType,
    progressive: bool,
    ink: &[u8],
    profile: Option<&[u8]>,
) -> Vec<u8> {
    let truth = truth();
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 95);
    encoder.set_progressive(progressive);
    if let Some(profile) = profile {
        encoder.add_icc_profile(profile).unwrap();
    }
    encoder
        .encode(ink, truth.width() as u16, truth.height() as u16, color)
        .unwrap();
    out
}

/// The truth as CMYK ink (0 none, 255 full) by the naive separation: black takes what the
/// three inks share; what is left of each is its ink.
fn ink() -> Vec<u8> {
    truth()
        .pixels()
        .flat_map(|p| {
            let k = 255 - p.0.into_iter().max().unwrap();
            let rest = 255 - u32::from(k);
            p.0.map(|v| ((rest - u32::from(v)) * 255).checked_div(rest).unwrap_or(0) as u8)
                .into_iter()
                .chain([k])
        })
        .collect()
}

#[test]
fn cmyk_and_ycck_jpegs_without_a_profile_come_out_in_srgb() {
    let truth = DynamicImage::ImageRgb8(truth());
    let ink = ink();
    // Photoshop's way: inverted ink under an Adobe marker, as CMYK and as YCCK.
    assert_shows(
        "Adobe CMYK JPEG",
        &cmyk_jpeg(jpeg_encoder::ColorType::Cmyk, false, &ink, None),
        &truth,
    );
    assert_shows(
        "Adobe YCCK JPEG",
        &cmyk_jpeg(jpeg_encoder::ColorType::CmykAsYcck, false, &ink, None),
        &truth,
    );
}

/// A printer's CMYK profile, made here because no freely licensed one is at hand: version
/// 2.1, Lab connection space, one lut16 A2B table, as FOGRA and SWOP profiles are made. Its
/// inks print darker than their amounts (dot gain): an amount `x` covers `x^DOT_GAIN` of
/// the paper. The input curves carry that; the 11-point grid holds the naive separation's
/// colours, in Lab (D50) with v2's 16-bit encoding.
fn cmyk_profile() -> Vec<u8> {
    const GRID: usize = 11;
    const CURVE: usize = 256;
    let coverage: Vec<u16> = (0..CURVE)
        .map(|i| ((i as f64 / (CURVE - 1) as f64).powf(DOT_GAIN) * 65_535.0).round() as u16)
        .collect();
    let mut clut = Vec::with_capacity(GRID.pow(4) * 3);
    for index in 0..GRID.pow(4) {
        // The first ink varies slowest, as ICC lays the grid out.
        let [c, m, y, k] = [3, 2, 1, 0].map(|d| (index / GRID.pow(d)) % GRID);
        let light = |ink: usize| 1.0 - ink as f64 / (GRID - 1) as f64;
        let rgb = [c, m, y].map(|ink| light(ink) * light(k));
        let [l, a, b] = srgb_to_lab_d50(rgb);
        clut.extend(
            [l * 652.8, (a + 128.0) * 256.0, (b + 128.0) * 256.0].map(|v| v.round() as u16),
        );
    }
    let lut = moxcms::LutWarehouse::Lut(moxcms::LutDataType {
        num_input_channels: 4,
        num_output_channels: 3,
        num_clut_grid_points: GRID as u8,
        matrix: moxcms::Matrix3d::IDENTITY,
        num_input_table_entries: CURVE as u16,
        num_output_table_entries: 2,
        input_table: moxcms::LutStore::Store16(coverage.repeat(4)),
        clut_table: moxcms::LutStore::Store16(clut),
        output_table: moxcms::LutStore::Store16([0, 65_535].repeat(3)),
        lut_type: moxcms::LutType::Lut16,
    });
    let d50 = moxcms::Xyzd::new(0.9642, 1.0, 0.8249);
    let mut profile = moxcms::ColorProfile::default();
    profile.color_space = moxcms::DataColorSpace::Cmyk;
    profile.pcs = moxcms::DataColorSpace::Lab;
    profile.profile_class = moxcms::ProfileClass::OutputDevice;
    profile.white_point = d50;
    profile.media_white_point = Some(d50);
    profile.lut_a_to_b_perceptual = Some(lut.clone());
    profile.lut_a_to_b_colorimetric = Some(lut);
    let mut bytes = profile.encode().unwrap();
    // moxcms writes version 4; the table is in v2's Lab encoding, so say 2.1.
    bytes[8..12].copy_from_slice(&[2, 0x10, 0, 0]);
    bytes
}

/// How much darker the profile's inks print than their amounts (see [`cmyk_profile`]).
const DOT_GAIN: f64 = 0.6;

/// sRGB (0–1) to CIE Lab under D50, the ICC connection space, through the D50-adapted sRGB
/// matrix of the ICC's sRGB profile.
fn srgb_to_lab_d50(rgb: [f64; 3]) -> [f64; 3] {
    let [r, g, b] = rgb.map(|v| {
        if v <= 0.04045 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        }
    });
    let xyz = [
        0.436_074_7 * r + 0.385_064_9 * g + 0.143_080_4 * b,
        0.222_504_5 * r + 0.716_878_6 * g + 0.060_616_9 * b,
        0.013_932_2 * r + 0.097_104_5 * g + 0.714_173_3 * b,
    ];
    let [fx, fy, fz] = [xyz[0] / 0.9642, xyz[1], xyz[2] / 0.8249].map(|t| {
        if t > (6.0f64 / 29.0).powi(3) {
            t.cbrt()
        } else {
            t / (3.0 * (6.0f64 / 29.0).powi(2)) + 4.0 / 29.0
        }
    });
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// The truth separated for the profile's press: the naive separation's coverage, turned
/// back into the (smaller) ink amounts that give it.
fn ink_for_the_profile() -> Vec<u8> {
    ink()
        .into_iter()
        .map(|coverage| ((f64::from(coverage) / 255.0).powf(1.0 / DOT_GAIN) * 255.0).round() as u8)
        .collect()
}

#[test]
fn cmyk_and_ycck_jpegs_with_a_profile_are_converted_through_it() {
    let truth = DynamicImage::ImageRgb8(truth());
    let (profile, ink) = (cmyk_profile(), ink_for_the_profile());
    for (what, color) in [
        ("CMYK JPEG with a profile", jpeg_encoder::ColorType::Cmyk),
        (
            "YCCK JPEG with a profile",
            jpeg_encoder::ColorType::CmykAsYcck,
        ),
    ] {
        assert_shows(what, &cmyk_jpeg(color, false, &ink, Some(&profile)), &truth);
    }
    // The same ink without the profile is converted naively: too light, and caught.
    for (format, got) in compressed(&cmyk_jpeg(jpeg_encoder::ColorType::Cmyk, false, &ink, None)) {
        let delta_e = mean_delta_e(&got, &truth);
        let format = format.media_type();
        assert!(
            delta_e > 2.0,
            "{format}: mean CIEDE2000 {delta_e:.2} without the profile"
        );
        eprintln!("the profile's ink converted without it, {format}: mean CIEDE2000 {delta_e:.2}");
    }
}

/// The JPEG without its Adobe APP14 segment.
fn without_adobe_marker(jpeg: &[u8]) -> Vec<u8> {
    let mut at = 2; // after SOI
    while jpeg[at] == 0xFF && jpeg[at + 1] != 0xDA {
        let length = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        if jpeg[at + 1] == 0xEE {
            return [&jpeg[..at], &jpeg[at + 2 + length..]].concat();
        }
        at += 2 + length;
    }
    panic!("no Adobe marker before the scan");
}

#[test]
fn plain_cmyk_without_the_adobe_marker_is_read_as_ink() {
    // Without Adobe's marker, CMYK is stored as plain ink amounts. jpeg-encoder stores
    // inverted ink under the marker, so it is given inverted ink, and the marker removed.
    let inverted: Vec<u8> = ink().into_iter().map(|v| 255 - v).collect();
    let adobe = cmyk_jpeg(jpeg_encoder::ColorType::Cmyk, false, &inverted, None);
    let plain = without_adobe_marker(&adobe);
    assert!(adobe.windows(5).any(|w| w == b"Adobe"));
    assert!(
        !plain.windows(5).any(|w| w == b"Adobe"),
        "the marker is gone"
    );
    assert_shows("plain CMYK JPEG", &plain, &DynamicImage::ImageRgb8(truth()));
}

#[test]
fn a_progressive_jpeg_is_decoded_whole() {
    let truth = truth();
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 95);
    encoder.set_progressive(true);
    encoder
        .encode(
            truth.as_raw(),
            truth.width() as u16,
            truth.height() as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .unwrap();
    assert_shows("progressive JPEG", &out, &DynamicImage::ImageRgb8(truth));
}

#[test]
fn truncated_jpegs_and_pngs_fail_for_good_with_a_reason() {
    let truth = truth();
    let sources = [
        ("JPEG", jpeg(&truth, None, None)),
        (
            "progressive JPEG",
            cmyk_jpeg(jpeg_encoder::ColorType::Cmyk, true, &ink(), None),
        ),
        ("PNG", png(&DynamicImage::ImageRgb8(truth.clone()), None)),
    ];
    for (what, bytes) in sources {
        for cut in [bytes.len() / 3, bytes.len() * 9 / 10] {
            let failure = transform::compress(&bytes[..cut], &settings())
                .expect_err(&format!("{what} cut at {cut} of {} bytes", bytes.len()));
            assert!(!failure.is_transient(), "{what}: {failure}");
            assert!(!failure.reason.is_empty());
            eprintln!("{what} cut at {cut}: {failure}");
        }
    }
}

#[test]
fn a_turned_or_mirrored_picture_scores_far_above_the_bound() {
    let truth = DynamicImage::ImageRgb8(truth());
    for (what, wrong) in [
        ("mirrored", truth.fliph()),
        ("upside down", truth.rotate180()),
    ] {
        let delta_e = mean_delta_e(&wrong, &truth);
        assert!(delta_e > 2.0, "{what}: {delta_e:.2}");
        eprintln!("{what}: mean CIEDE2000 {delta_e:.2}");
    }
}
