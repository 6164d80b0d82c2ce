//! libaom's codec context, owned: created, configured and destroyed safely.

use std::{ffi::CStr, mem::MaybeUninit};

use aom_sys as aom;

use crate::*;

/// An initialised libaom encoder or decoder, destroyed on drop whatever the way out.
pub(crate) struct Codec {
    pub(crate) context: aom::aom_codec_ctx_t,
    pub(crate) stage: &'static str,
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
    pub(crate) fn init(
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
    pub(crate) fn check(&mut self, result: aom::aom_codec_err_t::Type) -> Result<(), Error> {
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
    pub(crate) fn control(
        &mut self,
        id: aom::aome_enc_control_id::Type,
        value: i32,
    ) -> Result<(), Error> {
        // SAFETY: the context is an initialised encoder, and every control passed here takes
        // a single int argument, as the variadic call supplies.
        let result = unsafe { aom::aom_codec_control(&mut self.context, id as i32, value) };
        self.check(result)
    }
}

pub(crate) fn error_string(result: aom::aom_codec_err_t::Type) -> String {
    // SAFETY: libaom returns a static NUL-terminated string for every error code.
    unsafe { CStr::from_ptr(aom::aom_codec_err_to_string(result)) }
        .to_string_lossy()
        .into_owned()
}
