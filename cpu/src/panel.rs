//! The activation operand of a weight layer: blocks of `L` columns of the batch's im2col matrix,
//! each block laid out `[k][lane]` as i16 codes, so that a kernel reads one K entry of `L`
//! columns as one contiguous `[i16; L]`. Owns the implicit im2col (K ordered (c, ky, kx), as in
//! `caq_model::kernels::im2col`); knows nothing of weights.
//!
//! Columns are numbered image-major: column `j` is output pixel `j % P` of image `j / P`, with
//! `P = oh·ow`. A dense layer is the same thing with a 1×1 kernel on a `[K, 1, 1]` input, so its
//! columns are the images of the batch.

/// Where a weight layer reads its input: a convolution, or a dense layer as a 1×1 convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geom {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geom {
    /// The reduction length `C·kh·kw`.
    pub fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }
    /// Output pixels per image.
    pub fn pixels(&self) -> usize {
        self.oh * self.ow
    }
    /// Input codes per image.
    pub fn input_len(&self) -> usize {
        self.c * self.h * self.w
    }
}

/// Writes columns `j0 .. j0 + L` (those below `cols`) of the im2col matrix of the batch `x` into
/// `block` (`[k_pad][L]`); padding rows, padded pixels and columns past the end read code 0.
///
/// The caller has checked that every code of `x` fits i16 (`CpuModel::new` bounds each layer's
/// input range), so the `as i16` casts are exact.
pub(crate) fn fill_block<const L: usize>(
    g: &Geom,
    x: &[i32],
    cols: usize,
    j0: usize,
    block: &mut [[i16; L]],
) {
    block.fill([0; L]);
    let p = g.pixels();
    let in_len = g.input_len();
    for (lane, j) in (j0..cols.min(j0 + L)).enumerate() {
        let (img, pix) = (j / p, j % p);
        let (oy, ox) = (pix / g.ow, pix % g.ow);
        let image = &x[img * in_len..(img + 1) * in_len];
        for ci in 0..g.c {
            let plane = &image[ci * g.h * g.w..(ci + 1) * g.h * g.w];
            for ky in 0..g.kh {
                let Some(iy) = (oy * g.stride + ky).checked_sub(g.pad).filter(|&y| y < g.h) else {
                    continue;
                };
                let row = &plane[iy * g.w..(iy + 1) * g.w];
                let k_row = (ci * g.kh + ky) * g.kw;
                for kx in 0..g.kw {
                    if let Some(ix) = (ox * g.stride + kx).checked_sub(g.pad).filter(|&x| x < g.w) {
                        block[k_row + kx][lane] = row[ix] as i16;
                    }
                }
            }
        }
    }
}
