//! Reading a source's header before any pixel is decoded: its format, size, orientation
//! and the memory decoding it will take, with a walk of a JPEG's markers.

use image::{ColorType, ImageDecoder, ImageFormat, metadata::Orientation};

use super::{TransformSettings, decode::decoder, ladder::ladder};
use crate::failure::Failure;

/// The formats accepted as sources.
pub(super) const ACCEPTED: [ImageFormat; 4] = [
    ImageFormat::Jpeg,
    ImageFormat::Png,
    ImageFormat::WebP,
    ImageFormat::Gif,
];

/// What a source's header says, read before any pixel is decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub format: ImageFormat,
    /// As stored, before orientation.
    pub width: u32,
    pub height: u32,
    /// The decoder's output pixels.
    pub color: ColorType,
    pub(super) orientation: Option<Orientation>,
    /// Bytes per pixel the decoder holds besides its output: a GIF frame is decoded into a
    /// buffer of its own and composed onto the output; WebP keeps its YUV planes.
    pub(super) working_bytes_per_pixel: u64,
    /// A JPEG's frame, which the JPEG path decodes with shrink-on-load.
    pub(super) jpeg: Option<JpegFrame>,
}

/// What a JPEG's markers before its first scan say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct JpegFrame {
    /// Progressive: every coefficient of every component (2 bytes each, at full size) is
    /// kept until the last scan.
    pub(super) progressive: bool,
    /// 1 (grey), 3 (YCbCr or RGB) or 4 (CMYK or YCCK).
    pub(super) components: u8,
    /// 8 bits per sample, baseline, extended or progressive Huffman: what the shrinking
    /// decoder takes. Others (12-bit, lossless, arithmetic) go to the general decoder.
    pub(super) shrinkable: bool,
    /// An Adobe APP14 marker: Photoshop's CMYK is stored inverted.
    pub(super) adobe: bool,
}

/// Bytes per pixel of the largest variant that the variants take while they are made: the
/// scaled image and its 8-bit RGBA copy, the smaller widths scaled from it, and the
/// encoders' working buffers (libaom's frames, about 30 bytes a pixel in its good-quality
/// mode, and libwebp's), one encode at a time. Measured by `scripts/measure-decode-memory.sh`
/// (RSS, which sees the C libraries' allocations) and, for the Rust side,
/// `image-processor/tests/decode_memory.rs`; rounded up.
pub(super) const OUTPUT_BYTES_PER_PIXEL: u64 = 40;

/// Bytes per pixel an encoder's working buffers take (libaom's frames; libwebp's are fewer):
/// the share of [`OUTPUT_BYTES_PER_PIXEL`] that each further encoder at once adds.
pub(super) const ENCODER_BYTES_PER_PIXEL: u64 = 30;

/// What the encoders hold whatever the size (libaom's context and tables: a 800 x 500
/// picture's ladder peaked 2 MB above its per-pixel share), measured the same way.
pub(super) const ENCODER_BYTES: u64 = 8 << 20;

impl Header {
    /// The size after EXIF orientation (a quarter turn swaps the sides).
    pub fn upright_size(&self) -> (u32, u32) {
        if self.turns_sideways() {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }

    /// An upright size as the source stores it, before orientation.
    pub(super) fn stored_size_of(&self, (width, height): (u32, u32)) -> (u32, u32) {
        if self.turns_sideways() {
            (height, width)
        } else {
            (width, height)
        }
    }

    fn turns_sideways(&self) -> bool {
        matches!(
            self.orientation,
            Some(
                Orientation::Rotate90
                    | Orientation::Rotate270
                    | Orientation::Rotate90FlipH
                    | Orientation::Rotate270FlipH
            )
        )
    }

    /// The most memory compressing this source holds at once: the decoder's output and
    /// working buffers, the scaler's intermediate rows, then the largest variant and what
    /// making the ladder from it takes (an upper bound: `scripts/measure-decode-memory.sh`
    /// prints it beside the measured peak for the worst accepted inputs). The processor
    /// admits sources to decoding against a budget of this (`IMAGE_DECODE_MEMORY_MB`).
    pub fn peak_bytes(&self, settings: &TransformSettings) -> u64 {
        let pixels = u64::from(self.width) * u64::from(self.height);
        let (width, height) = self.largest_stored(settings);
        let (decoded, decoded_size, bytes_per_pixel) = match self.jpeg {
            Some(frame) if frame.shrinkable => {
                let shrink = self.jpeg_shrink(settings);
                let (w, h) = (self.width.div_ceil(shrink), self.height.div_ceil(shrink));
                let components = u64::from(frame.components);
                // The components' planes and the interleaved output at the shrunk size (a
                // CMYK one also converted to RGB), and a progressive frame's coefficients.
                let planes = u64::from(w) * u64::from(h) * (2 * components + 3);
                let coefficients = if frame.progressive {
                    pixels * 2 * components
                } else {
                    0
                };
                (planes + coefficients, (w, h), 3)
            }
            _ => {
                let bytes_per_pixel = u64::from(self.color.bytes_per_pixel());
                (
                    pixels * (bytes_per_pixel + self.working_bytes_per_pixel),
                    (self.width, self.height),
                    bytes_per_pixel,
                )
            }
        };
        // Scaling convolves rows, then columns: between the passes it holds the decoded
        // height at the new width, in the decoded pixel format.
        let between_passes = if decoded_size == (width, height) {
            0
        } else {
            u64::from(width) * u64::from(decoded_size.1) * bytes_per_pixel
        };
        decoded
            + between_passes
            + u64::from(width) * u64::from(height) * OUTPUT_BYTES_PER_PIXEL
            + ENCODER_BYTES
    }

    /// [`Self::peak_bytes`] with `encoders` widths encoded at once (the processor encodes
    /// each width on a core of its own): each encoder beyond the first holds its working
    /// buffers, for at most the largest variant's pixels, at the same time.
    pub fn peak_bytes_encoding(&self, settings: &TransformSettings, encoders: usize) -> u64 {
        let (width, height) = self.largest_stored(settings);
        let extra = encoders.saturating_sub(1) as u64;
        self.peak_bytes(settings)
            + extra
                * (u64::from(width) * u64::from(height) * ENCODER_BYTES_PER_PIXEL + ENCODER_BYTES)
    }

    /// The largest variant's size as the source stores it (before orientation).
    fn largest_stored(&self, settings: &TransformSettings) -> (u32, u32) {
        let (upright_width, upright_height) = self.upright_size();
        self.stored_size_of(ladder(upright_width, upright_height, &[settings.widest()])[0])
    }

    /// Shrink-on-load: the largest of 1, 2, 4 and 8 that a JPEG can be decoded smaller by
    /// (its DCT scaled) and still be at least the largest variant's size on both sides, as
    /// libvips's thumbnail does. The resizer takes it the rest of the way.
    pub(super) fn jpeg_shrink(&self, settings: &TransformSettings) -> u32 {
        let (width, height) = self.largest_stored(settings);
        [8, 4, 2]
            .into_iter()
            .find(|f| self.width.div_ceil(*f) >= width && self.height.div_ceil(*f) >= height)
            .unwrap_or(1)
    }
}

/// Sniffs the format, reads the header and checks the declared size against the limits.
pub fn inspect(bytes: &[u8], settings: &TransformSettings) -> Result<Header, Failure> {
    let format = image::guess_format(bytes)
        .ok()
        .filter(|f| ACCEPTED.contains(f))
        .ok_or_else(|| {
            Failure::permanent("not an image in a supported format (JPEG, PNG, WebP, GIF)")
        })?;
    let mut decoder = decoder(bytes, format, settings)?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > settings.max_pixels {
        return Err(Failure::permanent(format!(
            "the image has {width}x{height} = {pixels} pixels, more than the limit of {}",
            settings.max_pixels
        )));
    }
    let jpeg = (format == ImageFormat::Jpeg)
        .then(|| jpeg_frame(bytes))
        .flatten();
    let working_bytes_per_pixel = match (format, jpeg) {
        // A JPEG the general decoder takes (12-bit, lossless, arithmetic): a progressive
        // one's coefficients.
        (ImageFormat::Jpeg, Some(frame)) if frame.progressive => 2 * u64::from(frame.components),
        (ImageFormat::Gif, _) => 4,
        (ImageFormat::WebP, _) => 2,
        _ => 0,
    };
    Ok(Header {
        format,
        width,
        height,
        color: decoder.color_type(),
        orientation: decoder.orientation().ok(),
        working_bytes_per_pixel,
        jpeg,
    })
}

/// Reads a JPEG's markers up to its frame header (or `None` for a header this walk cannot
/// follow, which the decoder will refuse anyway).
pub(super) fn jpeg_frame(bytes: &[u8]) -> Option<JpegFrame> {
    const APP14: u8 = 0xEE;
    const SOS: u8 = 0xDA;
    let mut adobe = false;
    let mut at = 2; // past SOI
    while let [0xFF, marker, high, low, ..] = *bytes.get(at..)? {
        if marker == 0xFF {
            at += 1; // fill byte
            continue;
        }
        let length = usize::from(u16::from_be_bytes([high, low]));
        match marker {
            SOS => return None,
            APP14 => adobe |= bytes.get(at + 4..at + 9) == Some(b"Adobe"),
            // Start of frame: every SOFn but DHT (C4), JPG (C8) and DAC (CC).
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let precision = *bytes.get(at + 4)?;
                return Some(JpegFrame {
                    progressive: matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE),
                    components: *bytes.get(at + 9)?,
                    shrinkable: precision == 8 && matches!(marker, 0xC0..=0xC2),
                    adobe,
                });
            }
            _ => {}
        }
        at += 2 + length;
    }
    None
}

/// Whether a JPEG's last scan is followed by its end-of-image marker. The decoder fills the
/// rows of a file cut short with grey and reports success; a cut file lacks that marker.
/// Entropy-coded data cannot hold `FF D9` or `FF DA` (a data byte `FF` is followed by `00`,
/// or by a restart marker), so the last `FF DA` starts the last scan of the main image (an
/// EXIF thumbnail's scan comes before it), and an `FF D9` after it ends the image.
pub(super) fn jpeg_is_complete(bytes: &[u8]) -> bool {
    const SOS: [u8; 2] = [0xFF, 0xDA];
    const EOI: [u8; 2] = [0xFF, 0xD9];
    bytes
        .windows(2)
        .rposition(|pair| pair == SOS)
        .is_some_and(|scan| bytes[scan..].windows(2).any(|pair| pair == EOI))
}
