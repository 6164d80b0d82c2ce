//! Writes the largest inputs the processor accepts by default, for measuring its memory:
//! `cargo run --example worst_inputs -p image-processor -- DIR` (scripts/measure-decode-memory.sh).
//! - `png16-40mp.png`: 40 MP, 16 bits per channel RGB (the decoder's widest pixels);
//! - `jpeg-40mp.jpg`: 40 MP baseline JPEG (the script adds a progressive copy with jpegtran:
//!   a progressive JPEG's decoder holds every coefficient until the last scan);
//! - `gif-animated.gif`: 2000 x 2000, 8 frames (only the first is used).

use std::path::PathBuf;

use image::{Delay, Frame, ImageBuffer, Rgb, RgbImage, Rgba, RgbaImage, codecs::gif::GifEncoder};

/// 7750 x 5160 = 39.99 MP, under the default IMAGE_MAX_PIXELS of 40 M.
const WIDTH: u32 = 7750;
const HEIGHT: u32 = 5160;

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    std::fs::create_dir_all(&dir)?;
    // Smooth gradients: memory follows the pixels, not the bytes, and the files stay under
    // the default download limit (IMAGE_MAX_BYTES, 20 MiB) as real worst cases must (each
    // channel changes along one axis only, so PNG's filters leave almost nothing to store).
    let pixel = |x: u32, y: u32| {
        [
            (u64::from(x) * 65_535 / u64::from(WIDTH)) as u16,
            (u64::from(y) * 65_535 / u64::from(HEIGHT)) as u16,
            (u64::from(WIDTH - x) * 65_535 / u64::from(WIDTH)) as u16,
        ]
    };
    let wide: ImageBuffer<Rgb<u16>, Vec<u16>> =
        ImageBuffer::from_fn(WIDTH, HEIGHT, |x, y| Rgb(pixel(x, y)));
    wide.save(dir.join("png16-40mp.png"))?;
    drop(wide);
    let narrow = RgbImage::from_fn(WIDTH, HEIGHT, |x, y| {
        let [r, g, b] = pixel(x, y);
        Rgb([(r >> 8) as u8, (g >> 8) as u8, (b >> 8) as u8])
    });
    narrow.save(dir.join("jpeg-40mp.jpg"))?;
    drop(narrow);
    let mut gif = GifEncoder::new(std::fs::File::create(dir.join("gif-animated.gif"))?);
    for frame in 0..8_u32 {
        let image = RgbaImage::from_fn(2000, 2000, |x, y| {
            let [r, g, b] = pixel(x + frame, y);
            Rgba([(r >> 8) as u8, (g >> 8) as u8, (b >> 8) as u8, 255])
        });
        gif.encode_frame(Frame::from_parts(
            image,
            0,
            0,
            Delay::from_numer_denom_ms(100, 1),
        ))?;
    }
    println!("wrote the worst-case inputs to {}", dir.display());
    Ok(())
}
