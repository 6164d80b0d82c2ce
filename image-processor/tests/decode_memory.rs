//! The processor admits each decode by the peak memory its header implies
//! ([`transform::Header::peak_bytes`]). If that figure fell short of what compressing really
//! allocates, the budget (`IMAGE_DECODE_MEMORY_MB`) would not bound anything. A counting
//! allocator measures the real peak of compressing each kind of source and checks it against
//! the figure. It sees Rust's allocations only: what the C encoders (libaom, libwebp)
//! allocate is measured as RSS by `scripts/measure-decode-memory.sh` (docs/deploy.md). This is a test binary of its own, with one test, so no other test's
//! allocations are counted.

use std::io::Cursor;

use image::{
    Delay, DynamicImage, Frame, ImageBuffer, ImageEncoder, ImageFormat, Luma, Rgb, Rgba,
    codecs::{gif::GifEncoder, jpeg::JpegEncoder},
};
use image_processor::transform::{self, TransformSettings};
use peak_alloc::PeakAlloc;

/// Counts the bytes allocated now and the most allocated at once.
#[global_allocator]
static COUNTING: PeakAlloc = PeakAlloc;

/// The most bytes `work` had allocated at once, beyond what was allocated before it.
fn peak_of(work: impl FnOnce()) -> usize {
    let before = COUNTING.current_usage();
    COUNTING.reset_peak_usage();
    work();
    COUNTING.peak_usage() - before
}

const WIDTH: u32 = 3000;
const HEIGHT: u32 = 2000;

fn encoded(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    image.write_to(&mut Cursor::new(&mut out), format).unwrap();
    out
}

fn gradient(x: u32, y: u32) -> [u16; 3] {
    [
        (x * 65_535 / WIDTH) as u16,
        (y * 65_535 / HEIGHT) as u16,
        ((x + y) * 65_535 / (WIDTH + HEIGHT)) as u16,
    ]
}

/// A JPEG turned a quarter (EXIF orientation 6), as phones store portrait photos.
fn rotated_jpeg() -> Vec<u8> {
    let image = ImageBuffer::from_fn(WIDTH, HEIGHT, |x, y| {
        Rgb(gradient(x, y).map(|c| (c >> 8) as u8))
    });
    let mut exif = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06".to_vec();
    exif.extend_from_slice(&[0; 6]);
    let mut out = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut out, 90);
    encoder.set_exif_metadata(exif).unwrap();
    encoder
        .write_image(
            image.as_raw(),
            WIDTH,
            HEIGHT,
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

/// A 16-bit PNG with alpha and an ICC profile: scaled in 16 bits with premultiplied alpha,
/// then converted to sRGB.
fn tagged_rgba16_png() -> Vec<u8> {
    let image: ImageBuffer<Rgba<u16>, Vec<u16>> = ImageBuffer::from_fn(WIDTH, HEIGHT, |x, y| {
        let [r, g, b] = gradient(x, y);
        Rgba([r, g, b, 65_535 - r / 2])
    });
    let samples: Vec<u8> = image
        .as_raw()
        .iter()
        .flat_map(|s| s.to_ne_bytes())
        .collect();
    let mut out = Vec::new();
    let mut encoder = image::codecs::png::PngEncoder::new(&mut out);
    encoder
        .set_icc_profile(moxcms::ColorProfile::new_display_p3().encode().unwrap())
        .unwrap();
    encoder
        .write_image(&samples, WIDTH, HEIGHT, image::ExtendedColorType::Rgba16)
        .unwrap();
    out
}

fn animated_gif() -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut out);
        for shift in 0..2 {
            let frame = ImageBuffer::from_fn(WIDTH / 2, HEIGHT / 2, |x, y| {
                let [r, g, b] = gradient(x + shift, y).map(|c| (c >> 8) as u8);
                Rgba([r, g, b, 255])
            });
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
    out
}

#[test]
fn compressing_never_allocates_more_than_the_peak_the_header_implies() {
    let settings = TransformSettings::default();
    let sources = [
        (
            "16-bit RGB PNG",
            encoded(
                &DynamicImage::ImageRgb16(ImageBuffer::from_fn(WIDTH, HEIGHT, |x, y| {
                    Rgb(gradient(x, y))
                })),
                ImageFormat::Png,
            ),
        ),
        (
            "8-bit grey PNG",
            encoded(
                &DynamicImage::ImageLuma8(ImageBuffer::from_fn(WIDTH, HEIGHT, |x, y| {
                    Luma([(gradient(x, y)[0] >> 8) as u8])
                })),
                ImageFormat::Png,
            ),
        ),
        (
            "8-bit RGBA PNG",
            encoded(
                &DynamicImage::ImageRgba8(ImageBuffer::from_fn(WIDTH, HEIGHT, |x, y| {
                    let [r, g, b] = gradient(x, y).map(|c| (c >> 8) as u8);
                    Rgba([r, g, b, (x % 256) as u8])
                })),
                ImageFormat::Png,
            ),
        ),
        ("JPEG with EXIF orientation 6", rotated_jpeg()),
        ("16-bit RGBA PNG tagged Display P3", tagged_rgba16_png()),
        ("animated GIF", animated_gif()),
    ];
    for (what, bytes) in &sources {
        let header = transform::inspect(bytes, &settings).unwrap();
        let decoded = u64::from(header.width)
            * u64::from(header.height)
            * u64::from(header.color.bytes_per_pixel());
        let budgeted = header.peak_bytes(&settings);
        let mut result = None;
        let peak = peak_of(|| result = Some(transform::compress(bytes, &settings)));
        let compressed = result.unwrap().unwrap_or_else(|f| panic!("{what}: {f}"));
        let widest = compressed.variants.iter().map(|v| v.width).max().unwrap();
        assert!(
            widest <= *settings.widths.last().unwrap(),
            "{what}: {widest} wide"
        );
        let peak = peak as u64;
        // The counting sees at least the decoded pixels (or it counts nothing), and never
        // more than the processor budgets.
        assert!(
            peak >= decoded,
            "{what}: counted {peak} bytes, less than the {decoded} decoded"
        );
        assert!(
            peak <= budgeted,
            "{what}: compressing allocated {} MB at its peak, more than the {} MB budgeted",
            peak >> 20,
            budgeted >> 20
        );
        eprintln!(
            "{what}: peak {} MB of {} MB budgeted",
            peak >> 20,
            budgeted >> 20
        );
    }
}
