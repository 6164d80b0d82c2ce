//! One AV1 key frame from Y'CbCr planes, at a constant quantizer.

use std::{mem::MaybeUninit, ptr};

use aom_sys as aom;

use crate::*;

/// Encodes one 4:2:0 or monochrome frame as AV1 data.
pub(crate) fn encode_frame(
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
    if settings.search == Search::Square {
        encoder.control(control::AV1E_SET_ENABLE_RECT_PARTITIONS, 0)?;
        encoder.control(
            control::AV1E_SET_SUPERBLOCK_SIZE,
            aom::aom_superblock_size::AOM_SUPERBLOCK_SIZE_64X64 as i32,
        )?;
        encoder.control(control::AV1E_SET_ENABLE_TX_SIZE_SEARCH, 0)?;
    }
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
pub(crate) fn take_frames(encoder: &mut Codec, out: &mut Vec<u8>) {
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
