//! AVIF with libaom, behind a safe API: [`encode`] 8-bit sRGB pixels into an AVIF file, and
//! [`decode`] one back into pixels.
//!
//! libaom is the AV1 encoder libvips uses through libheif, and libavif's default. Its
//! good-quality mode at `cpu-used` 6, tuned for SSIM, makes stills as small as libvips's at
//! equal SSIM in less time (its all-intra mode, [`Mode::AllIntra`], takes half that time
//! for about 7% more bytes); rav1e (through ravif), used before, needed about 1.25x the
//! bytes (docs/benchmarks.md). The system's library is linked (Debian's libaom-dev, version
//! 3.6 on bookworm): building libaom from source would add minutes to every clean build.
//!
//! Encoding: the picture is converted to Y'CbCr with the BT.601 matrix at full range (what
//! libavif writes by default), chroma at half width and height (4:2:0, as libvips does for
//! lossy AVIF), and encoded as one AV1 key frame at a constant quantizer, on the calling
//! thread. `avif-serialize` wraps it in the container, tagged as sRGB (BT.709 primaries,
//! sRGB transfer) with those matrix coefficients. Transparency becomes a second, monochrome
//! AV1 image: the container's alpha item.
//!
//! Decoding exists so that tests can check the pixels of what was encoded: it takes 8-bit
//! AV1 in 4:2:0, 4:2:2, 4:4:4 or monochrome, with the BT.601 or BT.709 matrix at either
//! range, and an alpha item if there is one. It is not meant for files from strangers: the
//! container reader (avif-parse) asserts on some truncated files in debug builds.

use aom_sys as aom;

mod codec;
mod decoder;
mod encoder;
mod planes;

use self::{codec::*, decoder::*, encoder::*, planes::*};

/// What went wrong, in words fit for a failure reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("AV1 {stage}: {message}")]
    Codec {
        stage: &'static str,
        message: String,
    },
    #[error("AVIF container: {0}")]
    Container(String),
    #[error("AVIF not supported here: {0}")]
    Unsupported(String),
}

/// How finely and how hard libaom encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// The constant quantizer, 0 (best) to 63: libaom's `cq-level`.
    pub cq_level: u8,
    /// libaom's `cpu-used`, 0 (slowest, smallest) to the mode's fastest.
    pub speed: u8,
    pub mode: Mode,
    pub search: Search,
}

/// How widely libaom searches each block's shape and transform, beyond what `cpu-used` leaves
/// on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Search {
    /// Square partitions only, in 64 x 64 superblocks, each block's transform at its own
    /// size: on camera photos, 0.47x the CPU of [`Search::Full`] in the good-quality mode at
    /// `cpu-used` 6, for 1.02x its bytes at equal SSIM (docs/benchmarks.md).
    #[default]
    Square,
    /// Everything the mode and `cpu-used` leave on: rectangular partitions, 128 x 128
    /// superblocks where libaom picks them, a search over transform sizes.
    Full,
}

/// libaom's usage: which of its encoders' searches run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Good quality (`cpu-used` 0–6): as small as libvips's AVIF at equal SSIM.
    #[default]
    Good,
    /// All intra, libaom's mode for stills (`cpu-used` 0–9): at the same `cpu-used`, about
    /// half the time for about 7% more bytes at equal SSIM (docs/benchmarks.md).
    AllIntra,
}

impl Mode {
    /// The highest `cpu-used` libaom takes in this mode.
    pub fn fastest(self) -> u8 {
        match self {
            Self::Good => 6,
            Self::AllIntra => 9,
        }
    }

    fn usage(self) -> u32 {
        match self {
            Self::Good => aom::AOM_USAGE_GOOD_QUALITY,
            Self::AllIntra => aom::AOM_USAGE_ALL_INTRA,
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "good" => Ok(Self::Good),
            "all-intra" => Ok(Self::AllIntra),
            other => Err(format!("{other:?} is not an AVIF mode (good, all-intra)")),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Good => "good",
            Self::AllIntra => "all-intra",
        })
    }
}

impl std::str::FromStr for Search {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "square" => Ok(Self::Square),
            "full" => Ok(Self::Full),
            other => Err(format!("{other:?} is not an AVIF search (square, full)")),
        }
    }
}

impl std::fmt::Display for Search {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Square => "square",
            Self::Full => "full",
        })
    }
}

impl Settings {
    /// From a quality of 0 to 100, mapped to the quantizer as libheif maps it, so a quality
    /// here means what libvips's `Q` means; the speed is capped at the mode's fastest.
    pub fn from_quality(quality: u8, speed: u8, mode: Mode, search: Search) -> Self {
        let quality = u32::from(quality.min(100));
        Self {
            cq_level: (((100 - quality) * 63 + 50) / 100) as u8,
            speed: speed.min(mode.fastest()),
            mode,
            search,
        }
    }
}

/// 8-bit sRGB pixels, row after row without padding.
#[derive(Debug, Clone, Copy)]
pub enum Pixels<'a> {
    Rgb(&'a [u8]),
    /// Not premultiplied.
    Rgba(&'a [u8]),
}

/// Encodes `width` x `height` pixels as an AVIF file.
///
/// # Panics
/// If the buffer does not hold exactly `width * height` pixels.
pub fn encode(
    pixels: Pixels<'_>,
    width: u32,
    height: u32,
    settings: Settings,
) -> Result<Vec<u8>, Error> {
    let (bytes, channels) = match pixels {
        Pixels::Rgb(bytes) => (bytes, 3),
        Pixels::Rgba(bytes) => (bytes, 4),
    };
    let (w, h) = (width as usize, height as usize);
    assert_eq!(
        bytes.len(),
        w * h * channels,
        "{width} x {height} pixels of {channels} bytes"
    );
    if width == 0 || height == 0 {
        return Err(Error::Unsupported("an empty picture".into()));
    }
    let color = encode_frame(
        &Planes::from_rgb(bytes, channels, w, h),
        width,
        height,
        settings,
    )?;
    let alpha = match channels {
        4 if bytes.chunks_exact(4).any(|p| p[3] != u8::MAX) => {
            let plane = bytes.chunks_exact(4).map(|p| p[3]).collect();
            Some(encode_frame(
                &Planes::monochrome(plane, w, h),
                width,
                height,
                settings,
            )?)
        }
        _ => None,
    };
    Ok(avif_serialize::Aviffy::new()
        .matrix_coefficients(avif_serialize::constants::MatrixCoefficients::Bt601)
        .full_color_range(true)
        .set_chroma_subsampling((true, true))
        .to_vec(&color, alpha.as_deref(), width, height, 8))
}

/// A decoded AVIF: 8-bit RGBA, row after row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
}

/// Decodes an AVIF file's primary image, and its alpha if it has one.
pub fn decode(file: &[u8]) -> Result<Decoded, Error> {
    let avif = avif_parse::read_avif(&mut std::io::Cursor::new(file))
        .map_err(|e| Error::Container(e.to_string()))?;
    if avif.premultiplied_alpha {
        return Err(Error::Unsupported("premultiplied alpha".into()));
    }
    let color = decode_frame(&avif.primary_item)?;
    let mut rgba = color.to_rgba()?;
    if let Some(alpha) = &avif.alpha_item {
        let alpha = decode_frame(alpha)?;
        if (alpha.width, alpha.height) != (color.width, color.height) {
            return Err(Error::Container(
                "the alpha item's size differs from the image's".into(),
            ));
        }
        let scale = alpha.range_scale();
        for (pixel, &a) in rgba.chunks_exact_mut(4).zip(&alpha.y) {
            pixel[3] = scale(a);
        }
    }
    Ok(Decoded {
        width: color.width as u32,
        height: color.height as u32,
        rgba,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth picture with an edge: something an encoder has to work at.
    fn picture(width: u32, height: u32, channels: usize) -> Vec<u8> {
        let mut pixels = Vec::new();
        for y in 0..height {
            for x in 0..width {
                let edge = if x > width / 2 { 200 } else { 40 };
                let rgba = [
                    (x * 255 / width) as u8,
                    edge,
                    (y * 255 / height) as u8,
                    (128 + y * 127 / height) as u8,
                ];
                pixels.extend_from_slice(&rgba[..channels]);
            }
        }
        pixels
    }

    fn encoded(pixels: Pixels<'_>, width: u32, height: u32, quality: u8) -> Vec<u8> {
        encode(
            pixels,
            width,
            height,
            Settings::from_quality(quality, 6, Mode::Good, Search::Square),
        )
        .unwrap()
    }

    fn mean_error(a: &[u8], b: &[u8], channels: usize) -> [f64; 4] {
        let mut sums = [0.0; 4];
        for (pa, pb) in a.chunks_exact(channels).zip(b.chunks_exact(4)) {
            for c in 0..channels {
                sums[c] += (f64::from(pa[c]) - f64::from(pb[c])).abs();
            }
        }
        sums.map(|s| s / (a.len() / channels) as f64)
    }

    #[test]
    fn quality_maps_to_the_quantizer_as_libheif_does() {
        let at = |quality, speed, mode| Settings::from_quality(quality, speed, mode, Search::Full);
        assert_eq!(at(100, 6, Mode::Good).cq_level, 0);
        assert_eq!(at(0, 6, Mode::Good).cq_level, 63);
        assert_eq!(at(50, 6, Mode::Good).cq_level, 32);
        assert_eq!(at(62, 9, Mode::Good).speed, 6);
        assert_eq!(at(62, 9, Mode::AllIntra).speed, 9);
        assert_eq!("all-intra".parse(), Ok(Mode::AllIntra));
        assert_eq!(Mode::AllIntra.to_string().parse(), Ok(Mode::AllIntra));
        assert!("fast".parse::<Mode>().is_err());
        assert_eq!(Search::Full.to_string().parse(), Ok(Search::Full));
        assert_eq!("square".parse(), Ok(Search::Square));
        assert!("round".parse::<Search>().is_err());
    }

    #[test]
    fn rgb_survives_a_round_trip_within_a_few_levels() {
        // Odd sides: the chroma planes round up.
        let (width, height) = (161, 97);
        let rgb = picture(width, height, 3);
        let file = encoded(Pixels::Rgb(&rgb), width, height, 80);
        let decoded = decode(&file).unwrap();
        assert_eq!((decoded.width, decoded.height), (width, height));
        let error = mean_error(&rgb, &decoded.rgba, 3);
        assert!(
            error[..3].iter().all(|&e| e < 4.0),
            "mean error per channel {error:?}"
        );
        assert!(
            decoded.rgba.chunks_exact(4).all(|p| p[3] == 255),
            "opaque without an alpha item"
        );
        let parsed = avif_parse::read_avif(&mut std::io::Cursor::new(&file)).unwrap();
        assert!(parsed.alpha_item.is_none());
        assert!(parsed.primary_item_metadata().unwrap().still_picture);
    }

    #[test]
    fn all_intra_mode_makes_a_file_that_decodes_too() {
        let (width, height) = (150, 100);
        let rgba = picture(width, height, 4);
        for (speed, search) in [(6, Search::Square), (9, Search::Full)] {
            let settings = Settings::from_quality(80, speed, Mode::AllIntra, search);
            let file = encode(Pixels::Rgba(&rgba), width, height, settings).unwrap();
            let error = mean_error(&rgba, &decode(&file).unwrap().rgba, 4);
            assert!(error.iter().all(|&e| e < 4.0), "speed {speed}: {error:?}");
        }
    }

    #[test]
    fn alpha_is_an_item_of_its_own_and_survives() {
        let (width, height) = (120, 80);
        let rgba = picture(width, height, 4);
        let file = encoded(Pixels::Rgba(&rgba), width, height, 80);
        let parsed = avif_parse::read_avif(&mut std::io::Cursor::new(&file)).unwrap();
        assert!(parsed.alpha_item.is_some());
        let decoded = decode(&file).unwrap();
        let error = mean_error(&rgba, &decoded.rgba, 4);
        assert!(
            error.iter().all(|&e| e < 4.0),
            "mean error per channel {error:?}"
        );
    }

    #[test]
    fn opaque_rgba_gets_no_alpha_item() {
        let rgba: Vec<u8> = picture(64, 64, 3)
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect();
        let file = encoded(Pixels::Rgba(&rgba), 64, 64, 60);
        assert!(
            avif_parse::read_avif(&mut std::io::Cursor::new(&file))
                .unwrap()
                .alpha_item
                .is_none()
        );
    }

    #[test]
    fn a_lower_quality_makes_fewer_bytes_and_more_error() {
        let (width, height) = (200, 150);
        let rgb = picture(width, height, 3);
        let at = |quality| encoded(Pixels::Rgb(&rgb), width, height, quality);
        let (fine, coarse) = (at(90), at(20));
        assert!(
            coarse.len() < fine.len(),
            "{} >= {}",
            coarse.len(),
            fine.len()
        );
        let error = |file: &[u8]| {
            mean_error(&rgb, &decode(file).unwrap().rgba, 3)
                .iter()
                .sum::<f64>()
        };
        assert!(error(&coarse) > error(&fine));
    }

    #[test]
    fn what_is_not_avif_is_an_error() {
        assert!(matches!(
            decode(b"not an avif at all"),
            Err(Error::Container(_))
        ));
    }
}
