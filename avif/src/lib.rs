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

use std::{ffi::CStr, mem::MaybeUninit, ptr};

use aom_sys as aom;

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

impl Settings {
    /// From a quality of 0 to 100, mapped to the quantizer as libheif maps it, so a quality
    /// here means what libvips's `Q` means; the speed is capped at the mode's fastest.
    pub fn from_quality(quality: u8, speed: u8, mode: Mode) -> Self {
        let quality = u32::from(quality.min(100));
        Self {
            cq_level: (((100 - quality) * 63 + 50) / 100) as u8,
            speed: speed.min(mode.fastest()),
            mode,
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

/// Y', Cb and Cr planes; chroma at half width and height, rounded up.
struct Planes {
    y: Vec<u8>,
    cb: Vec<u8>,
    cr: Vec<u8>,
    width: usize,
    chroma_width: usize,
    /// Alpha: the chroma planes are neutral filler.
    monochrome: bool,
}

/// BT.601's luma weights of red and blue.
const BT601: (f32, f32) = (0.299, 0.114);
/// BT.709's.
const BT709: (f32, f32) = (0.2126, 0.0722);

impl Planes {
    /// Full-range BT.601 Y'CbCr; each chroma sample is the mean of its 2 x 2 pixels.
    fn from_rgb(pixels: &[u8], channels: usize, width: usize, height: usize) -> Self {
        let (kr, kb) = BT601;
        let kg = 1.0 - kr - kb;
        let (chroma_width, chroma_height) = (width.div_ceil(2), height.div_ceil(2));
        let mut y = vec![0; width * height];
        let mut cb = vec![0f32; chroma_width * chroma_height];
        let mut cr = vec![0f32; chroma_width * chroma_height];
        for (row, line) in pixels.chunks_exact(width * channels).enumerate() {
            for (column, pixel) in line.chunks_exact(channels).enumerate() {
                let (r, g, b) = (
                    f32::from(pixel[0]),
                    f32::from(pixel[1]),
                    f32::from(pixel[2]),
                );
                let luma = kr * r + kg * g + kb * b;
                y[row * width + column] = to_u8(luma);
                let c = (row / 2) * chroma_width + column / 2;
                cb[c] += (b - luma) / (2.0 * (1.0 - kb));
                cr[c] += (r - luma) / (2.0 * (1.0 - kr));
            }
        }
        // A sample covers 2 x 2 pixels, fewer in the last column or row of an odd side.
        let covered = |c: usize| {
            let pixels = |start: usize, side: usize| (side - start).min(2) as f32;
            pixels(c % chroma_width * 2, width) * pixels(c / chroma_width * 2, height)
        };
        let mean = |sums: Vec<f32>| {
            sums.iter()
                .enumerate()
                .map(|(c, s)| to_u8(s / covered(c) + 128.0))
                .collect()
        };
        Self {
            cb: mean(cb),
            cr: mean(cr),
            y,
            width,
            chroma_width,
            monochrome: false,
        }
    }

    /// One plane. libaom still reads the chroma planes of a monochrome frame, so they are
    /// there, neutral.
    fn monochrome(y: Vec<u8>, width: usize, height: usize) -> Self {
        let chroma_width = width.div_ceil(2);
        let neutral = vec![128; chroma_width * height.div_ceil(2)];
        Self {
            y,
            cb: neutral.clone(),
            cr: neutral,
            width,
            chroma_width,
            monochrome: true,
        }
    }
}

fn to_u8(value: f32) -> u8 {
    value.round().clamp(0.0, 255.0) as u8
}

/// An initialised libaom encoder or decoder, destroyed on drop whatever the way out.
struct Codec {
    context: aom::aom_codec_ctx_t,
    stage: &'static str,
}

impl Drop for Codec {
    fn drop(&mut self) {
        // SAFETY: the context was initialised (Codec is only built after a successful init)
        // and is destroyed exactly once, here.
        unsafe { aom::aom_codec_destroy(&mut self.context) };
    }
}

impl Codec {
    /// Runs libaom's initialisation of an encoder or decoder (`what`) on a fresh context;
    /// later errors are reported as happening while `stage`.
    fn init(
        what: &str,
        stage: &'static str,
        init: impl FnOnce(*mut aom::aom_codec_ctx_t) -> aom::aom_codec_err_t::Type,
    ) -> Result<Self, Error> {
        let mut context = MaybeUninit::<aom::aom_codec_ctx_t>::zeroed();
        let result = init(context.as_mut_ptr());
        if result != aom::aom_codec_err_t::AOM_CODEC_OK {
            return Err(Error::Codec {
                stage: "initialisation",
                message: format!("{what}: {}", error_string(result)),
            });
        }
        // SAFETY: the initialisation succeeded, so libaom filled the context in.
        let context = unsafe { context.assume_init() };
        Ok(Self { context, stage })
    }

    /// Turns libaom's result into an error with its message and detail.
    fn check(&mut self, result: aom::aom_codec_err_t::Type) -> Result<(), Error> {
        if result == aom::aom_codec_err_t::AOM_CODEC_OK {
            return Ok(());
        }
        let mut message = error_string(result);
        // SAFETY: the context is initialised; the detail is null or a NUL-terminated string
        // owned by the context, copied out before the context is used again.
        unsafe {
            let detail = aom::aom_codec_error_detail(&mut self.context);
            if !detail.is_null() {
                message = format!("{message}: {}", CStr::from_ptr(detail).to_string_lossy());
            }
        }
        Err(Error::Codec {
            stage: self.stage,
            message,
        })
    }

    /// Sets an encoder control that takes one int.
    fn control(&mut self, id: aom::aome_enc_control_id::Type, value: i32) -> Result<(), Error> {
        // SAFETY: the context is an initialised encoder, and every control passed here takes
        // a single int argument, as the variadic call supplies.
        let result = unsafe { aom::aom_codec_control(&mut self.context, id as i32, value) };
        self.check(result)
    }
}

fn error_string(result: aom::aom_codec_err_t::Type) -> String {
    // SAFETY: libaom returns a static NUL-terminated string for every error code.
    unsafe { CStr::from_ptr(aom::aom_codec_err_to_string(result)) }
        .to_string_lossy()
        .into_owned()
}

/// Encodes one 4:2:0 or monochrome frame as AV1 data.
fn encode_frame(
    planes: &Planes,
    width: u32,
    height: u32,
    settings: Settings,
) -> Result<Vec<u8>, Error> {
    let monochrome = planes.monochrome;
    // SAFETY: aom_codec_av1_cx returns a static interface.
    let iface = unsafe { aom::aom_codec_av1_cx() };
    let mut cfg = MaybeUninit::<aom::aom_codec_enc_cfg_t>::zeroed();
    // SAFETY: cfg points to writable memory of the right type, filled by libaom.
    let result = unsafe {
        aom::aom_codec_enc_config_default(iface, cfg.as_mut_ptr(), settings.mode.usage())
    };
    if result != aom::aom_codec_err_t::AOM_CODEC_OK {
        return Err(Error::Codec {
            stage: "encoder configuration",
            message: error_string(result),
        });
    }
    // SAFETY: aom_codec_enc_config_default succeeded, so every field is set.
    let mut cfg = unsafe { cfg.assume_init() };
    cfg.g_w = width;
    cfg.g_h = height;
    cfg.g_threads = 1;
    // One frame, a still picture: no look-ahead, no key-frame placement.
    cfg.g_limit = 1;
    cfg.g_lag_in_frames = 0;
    cfg.kf_mode = aom::aom_kf_mode::AOM_KF_DISABLED;
    cfg.g_input_bit_depth = 8;
    cfg.g_bit_depth = aom::aom_bit_depth::AOM_BITS_8;
    cfg.rc_end_usage = aom::aom_rc_mode::AOM_Q;
    cfg.rc_min_quantizer = 0;
    cfg.rc_max_quantizer = 63;
    cfg.monochrome = u32::from(monochrome);

    let mut encoder = Codec::init("encoder", "encoding", |context| {
        // SAFETY: context is writable; iface and cfg are valid; the ABI version is the one
        // the bindings were generated from.
        unsafe {
            aom::aom_codec_enc_init_ver(
                context,
                iface,
                &cfg,
                0,
                aom::AOM_ENCODER_ABI_VERSION as i32,
            )
        }
    })?;
    use aom::aome_enc_control_id as control;
    encoder.control(
        control::AOME_SET_CPUUSED,
        i32::from(settings.speed.min(settings.mode.fastest())),
    )?;
    encoder.control(
        control::AOME_SET_CQ_LEVEL,
        i32::from(settings.cq_level.min(63)),
    )?;
    encoder.control(
        control::AOME_SET_TUNING,
        aom::aom_tune_metric::AOM_TUNE_SSIM as i32,
    )?;
    // No intra block copy: on pictures libaom takes for screen content (flat synthetic
    // areas, graphics) it builds hash tables that took 160 MB more and 4x the time for a
    // 1600 x 1065 picture, for the same bytes there.
    encoder.control(control::AV1E_SET_ENABLE_INTRABC, 0)?;
    // The colour description in the sequence header, as the container's says: sRGB
    // (BT.709 primaries, sRGB transfer), BT.601 matrix (monochrome: unspecified), full range.
    encoder.control(
        control::AV1E_SET_COLOR_RANGE,
        aom::aom_color_range::AOM_CR_FULL_RANGE as i32,
    )?;
    encoder.control(
        control::AV1E_SET_COLOR_PRIMARIES,
        aom::aom_color_primaries::AOM_CICP_CP_BT_709 as i32,
    )?;
    encoder.control(
        control::AV1E_SET_TRANSFER_CHARACTERISTICS,
        aom::aom_transfer_characteristics::AOM_CICP_TC_SRGB as i32,
    )?;
    let matrix = if monochrome {
        aom::aom_matrix_coefficients::AOM_CICP_MC_UNSPECIFIED
    } else {
        aom::aom_matrix_coefficients::AOM_CICP_MC_BT_601
    };
    encoder.control(control::AV1E_SET_MATRIX_COEFFICIENTS, matrix as i32)?;

    let mut image = MaybeUninit::<aom::aom_image_t>::zeroed();
    // SAFETY: image is writable; the data pointer is only recorded (the planes are set just
    // below), and libaom reads through it only during aom_codec_encode, while `planes` lives.
    let wrapped = unsafe {
        aom::aom_img_wrap(
            image.as_mut_ptr(),
            aom::aom_img_fmt::AOM_IMG_FMT_I420,
            width,
            height,
            1,
            planes.y.as_ptr().cast_mut(),
        )
    };
    if wrapped.is_null() {
        return Err(Error::Codec {
            stage: "encoding",
            message: "could not describe the picture".into(),
        });
    }
    // SAFETY: aom_img_wrap succeeded, so the image is initialised.
    let mut image = unsafe { image.assume_init() };
    image.planes =
        [planes.y.as_ptr(), planes.cb.as_ptr(), planes.cr.as_ptr()].map(<*const u8>::cast_mut);
    image.stride = [planes.width, planes.chroma_width, planes.chroma_width].map(|s| s as i32);
    image.range = aom::aom_color_range::AOM_CR_FULL_RANGE;
    image.monochrome = i32::from(monochrome);

    let mut av1 = Vec::new();
    // SAFETY: the encoder is initialised, and the image points into `planes`, alive and
    // unchanged for the call. A null image flushes.
    let result = unsafe { aom::aom_codec_encode(&mut encoder.context, &image, 0, 1, 0) };
    encoder.check(result)?;
    take_frames(&mut encoder, &mut av1);
    // SAFETY: as above; a null image asks for the rest of the stream.
    let result = unsafe { aom::aom_codec_encode(&mut encoder.context, ptr::null(), 0, 0, 0) };
    encoder.check(result)?;
    take_frames(&mut encoder, &mut av1);
    if av1.is_empty() {
        return Err(Error::Codec {
            stage: "encoding",
            message: "no frame came out".into(),
        });
    }
    Ok(av1)
}

/// Appends the encoded frame data that is ready.
fn take_frames(encoder: &mut Codec, out: &mut Vec<u8>) {
    let mut iter: aom::aom_codec_iter_t = ptr::null();
    loop {
        // SAFETY: the encoder is initialised; each packet stays valid until the next call,
        // and its frame data is copied out before that.
        unsafe {
            let packet = aom::aom_codec_get_cx_data(&mut encoder.context, &mut iter);
            if packet.is_null() {
                break;
            }
            if (*packet).kind == aom::aom_codec_cx_pkt_kind::AOM_CODEC_CX_FRAME_PKT {
                let frame = (*packet).data.frame;
                out.extend_from_slice(std::slice::from_raw_parts(frame.buf.cast::<u8>(), frame.sz));
            }
        }
    }
}

/// One decoded AV1 frame, copied out of libaom's buffers.
struct Frame {
    width: usize,
    height: usize,
    y: Vec<u8>,
    /// Empty for monochrome.
    cb: Vec<u8>,
    cr: Vec<u8>,
    chroma_shift: (u32, u32),
    chroma_width: usize,
    full_range: bool,
    matrix: aom::aom_matrix_coefficients::Type,
}

impl Frame {
    /// Maps a luma (or alpha) sample to 0–255 by the frame's range.
    fn range_scale(&self) -> impl Fn(u8) -> u8 + use<> {
        let full = self.full_range;
        move |v| {
            if full {
                v
            } else {
                to_u8((f32::from(v) - 16.0) * 255.0 / 219.0)
            }
        }
    }

    fn to_rgba(&self) -> Result<Vec<u8>, Error> {
        use aom::aom_matrix_coefficients as mc;
        let (kr, kb) = match self.matrix {
            mc::AOM_CICP_MC_BT_709 => BT709,
            mc::AOM_CICP_MC_BT_601 | mc::AOM_CICP_MC_BT_470_B_G | mc::AOM_CICP_MC_UNSPECIFIED => {
                BT601
            }
            other => return Err(Error::Unsupported(format!("matrix coefficients {other}"))),
        };
        let kg = 1.0 - kr - kb;
        let (luma_scale, chroma_scale, offset) = if self.full_range {
            (1.0, 1.0, 0.0)
        } else {
            (255.0 / 219.0, 255.0 / 224.0, 16.0)
        };
        let mut rgba = Vec::with_capacity(self.width * self.height * 4);
        for row in 0..self.height {
            for column in 0..self.width {
                let y = (f32::from(self.y[row * self.width + column]) - offset) * luma_scale;
                let (cb, cr) = if self.cb.is_empty() {
                    (0.0, 0.0)
                } else {
                    let c = (row >> self.chroma_shift.1) * self.chroma_width
                        + (column >> self.chroma_shift.0);
                    (
                        (f32::from(self.cb[c]) - 128.0) * chroma_scale,
                        (f32::from(self.cr[c]) - 128.0) * chroma_scale,
                    )
                };
                let r = y + 2.0 * (1.0 - kr) * cr;
                let b = y + 2.0 * (1.0 - kb) * cb;
                let g = (y - kr * r - kb * b) / kg;
                rgba.extend_from_slice(&[to_u8(r), to_u8(g), to_u8(b), u8::MAX]);
            }
        }
        Ok(rgba)
    }
}

fn decode_frame(av1: &[u8]) -> Result<Frame, Error> {
    // SAFETY: aom_codec_av1_dx returns a static interface.
    let iface = unsafe { aom::aom_codec_av1_dx() };
    let cfg = aom::aom_codec_dec_cfg_t {
        threads: 1,
        w: 0,
        h: 0,
        allow_lowbitdepth: 1,
    };
    let mut decoder = Codec::init("decoder", "decoding", |context| {
        // SAFETY: context is writable; iface and cfg are valid; the ABI version is the one
        // the bindings were generated from.
        unsafe {
            aom::aom_codec_dec_init_ver(
                context,
                iface,
                &cfg,
                0,
                aom::AOM_DECODER_ABI_VERSION as i32,
            )
        }
    })?;
    // SAFETY: the decoder is initialised and `av1` is alive for the call.
    let result = unsafe {
        aom::aom_codec_decode(
            &mut decoder.context,
            av1.as_ptr(),
            av1.len(),
            ptr::null_mut(),
        )
    };
    decoder.check(result)?;
    let mut iter: aom::aom_codec_iter_t = ptr::null();
    // SAFETY: the decoder is initialised; the image it returns (or null) stays valid until
    // the decoder is used again or destroyed, and is copied out before that.
    let image = unsafe { aom::aom_codec_get_frame(&mut decoder.context, &mut iter) };
    if image.is_null() {
        return Err(Error::Codec {
            stage: "decoding",
            message: "no frame in the data".into(),
        });
    }
    // SAFETY: non-null, and valid as said above.
    let image = unsafe { &*image };
    if image.bit_depth != 8
        || image.fmt & aom::AOM_IMG_FMT_HIGHBITDEPTH as aom::aom_img_fmt::Type != 0
    {
        return Err(Error::Unsupported(format!(
            "{}-bit samples",
            image.bit_depth
        )));
    }
    let (width, height) = (image.d_w as usize, image.d_h as usize);
    let shift = (image.x_chroma_shift, image.y_chroma_shift);
    let plane = |index: usize, plane_width: usize, plane_height: usize| -> Vec<u8> {
        let stride = image.stride[index] as usize;
        let mut out = Vec::with_capacity(plane_width * plane_height);
        for row in 0..plane_height {
            // SAFETY: libaom's plane holds plane_height rows of `stride` bytes, each at least
            // plane_width long.
            let line = unsafe {
                std::slice::from_raw_parts(image.planes[index].add(row * stride), plane_width)
            };
            out.extend_from_slice(line);
        }
        out
    };
    let chroma = (
        (width + (1 << shift.0) - 1) >> shift.0,
        (height + (1 << shift.1) - 1) >> shift.1,
    );
    let monochrome = image.monochrome != 0;
    Ok(Frame {
        width,
        height,
        y: plane(0, width, height),
        cb: if monochrome {
            Vec::new()
        } else {
            plane(1, chroma.0, chroma.1)
        },
        cr: if monochrome {
            Vec::new()
        } else {
            plane(2, chroma.0, chroma.1)
        },
        chroma_shift: shift,
        chroma_width: chroma.0,
        full_range: image.range == aom::aom_color_range::AOM_CR_FULL_RANGE,
        matrix: image.mc,
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
            Settings::from_quality(quality, 6, Mode::Good),
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
        let at = |quality, speed, mode| Settings::from_quality(quality, speed, mode);
        assert_eq!(at(100, 6, Mode::Good).cq_level, 0);
        assert_eq!(at(0, 6, Mode::Good).cq_level, 63);
        assert_eq!(at(50, 6, Mode::Good).cq_level, 32);
        assert_eq!(at(62, 9, Mode::Good).speed, 6);
        assert_eq!(at(62, 9, Mode::AllIntra).speed, 9);
        assert_eq!("all-intra".parse(), Ok(Mode::AllIntra));
        assert_eq!(Mode::AllIntra.to_string().parse(), Ok(Mode::AllIntra));
        assert!("fast".parse::<Mode>().is_err());
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
        for speed in [6, 9] {
            let settings = Settings::from_quality(80, speed, Mode::AllIntra);
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
