//! One AV1 frame back into planes, for the tests' pixel checks.

use std::ptr;

use aom_sys as aom;

use crate::*;

/// One decoded AV1 frame, copied out of libaom's buffers.
pub(crate) struct Frame {
    pub(crate) width: usize,
    pub(crate) height: usize,
    pub(crate) y: Vec<u8>,
    /// Empty for monochrome.
    pub(crate) cb: Vec<u8>,
    pub(crate) cr: Vec<u8>,
    pub(crate) chroma_shift: (u32, u32),
    pub(crate) chroma_width: usize,
    pub(crate) full_range: bool,
    pub(crate) matrix: aom::aom_matrix_coefficients::Type,
}

impl Frame {
    /// Maps a luma (or alpha) sample to 0–255 by the frame's range.
    pub(crate) fn range_scale(&self) -> impl Fn(u8) -> u8 + use<> {
        let full = self.full_range;
        move |v| {
            if full {
                v
            } else {
                to_u8((f32::from(v) - 16.0) * 255.0 / 219.0)
            }
        }
    }

    pub(crate) fn to_rgba(&self) -> Result<Vec<u8>, Error> {
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

pub(crate) fn decode_frame(av1: &[u8]) -> Result<Frame, Error> {
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
