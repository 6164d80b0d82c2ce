//! The transform's tests: limits, colour, orientation, the ladder and the encoders.

use std::io::Cursor;

use image::{ColorType, ImageFormat};

use super::{inspect::*, ladder::*, *};

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
pub(super) fn webp_to(widths: &[u32]) -> TransformSettings {
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
                    image::load_from_memory_with_format(&variant.bytes, ImageFormat::WebP).unwrap();
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
pub(super) fn webp_pixels(compressed: &Compressed) -> image::RgbImage {
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
    // Two widths encoded at once: a second encoder's buffers for the largest variant.
    assert_eq!(
        header.peak_bytes_encoding(&settings, 1),
        header.peak_bytes(&settings)
    );
    assert_eq!(
        header.peak_bytes_encoding(&settings, 2),
        header.peak_bytes(&settings) + pixels * ENCODER_BYTES_PER_PIXEL + ENCODER_BYTES
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

const PHOTO: &[u8] = include_bytes!("../../../tests/fixtures/images/rocket.jpg");
