//! Y'CbCr planes: sRGB pixels to BT.601 full-range 4:2:0 and back.

/// Y', Cb and Cr planes; chroma at half width and height, rounded up.
pub(crate) struct Planes {
    pub(crate) y: Vec<u8>,
    pub(crate) cb: Vec<u8>,
    pub(crate) cr: Vec<u8>,
    pub(crate) width: usize,
    pub(crate) chroma_width: usize,
    /// Alpha: the chroma planes are neutral filler.
    pub(crate) monochrome: bool,
}

/// BT.601's luma weights of red and blue.
pub(crate) const BT601: (f32, f32) = (0.299, 0.114);
/// BT.709's.
pub(crate) const BT709: (f32, f32) = (0.2126, 0.0722);

impl Planes {
    /// Full-range BT.601 Y'CbCr; each chroma sample is the mean of its 2 x 2 pixels.
    pub(crate) fn from_rgb(pixels: &[u8], channels: usize, width: usize, height: usize) -> Self {
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
    pub(crate) fn monochrome(y: Vec<u8>, width: usize, height: usize) -> Self {
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

pub(crate) fn to_u8(value: f32) -> u8 {
    value.round().clamp(0.0, 255.0) as u8
}
