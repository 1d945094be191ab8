//! The activation operand of a weight layer: blocks of `L` columns of the batch's im2col matrix,
//! each block laid out `[k][lane]` as i16 codes, so that a kernel reads one K entry of `L`
//! columns as one contiguous `[i16; L]`. Owns the implicit im2col (K ordered (c, ky, kx), as in
//! `caq_model::kernels::im2col`); knows nothing of weights.
//!
//! Columns are numbered image-major: column `j` is output pixel `j % P` of image `j / P`, with
//! `P = oh·ow`. A dense layer is the same thing with a 1×1 kernel on a `[K, 1, 1]` input, so its
//! columns are the images of the batch.

/// Where a weight layer reads its input: a convolution, or a dense layer as a 1×1 convolution.
/// A grouped convolution is one such layer per group, each reading the `c` channels from `c0` of
/// an input of `in_c` channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geom {
    pub c: usize,
    pub c0: usize,
    pub in_c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    /// Zero padding before the first row and column (the padding after only bounds `oh`, `ow`).
    pub pad_top: usize,
    pub pad_left: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geom {
    /// A dense layer of reduction length `k`: a 1×1 convolution of a `[k, 1, 1]` input.
    pub fn dense(k: usize) -> Geom {
        Geom {
            c: k,
            c0: 0,
            in_c: k,
            h: 1,
            w: 1,
            kh: 1,
            kw: 1,
            stride: 1,
            pad_top: 0,
            pad_left: 0,
            oh: 1,
            ow: 1,
        }
    }

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
        self.in_c * self.h * self.w
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
    // Per lane: where its image starts and the top-left corner of its window (may be negative:
    // padding).
    let live = cols.min(j0 + L).saturating_sub(j0);
    let mut base = [0usize; L];
    let mut top = [0isize; L];
    let mut left = [0isize; L];
    for (lane, j) in (j0..j0 + live).enumerate() {
        let (img, pix) = (j / p, j % p);
        base[lane] = img * in_len + g.c0 * g.h * g.w;
        top[lane] = ((pix / g.ow) * g.stride) as isize - g.pad_top as isize;
        left[lane] = ((pix % g.ow) * g.stride) as isize - g.pad_left as isize;
    }
    let (h, w) = (g.h as isize, g.w as isize);
    let inside = (0..live).all(|l| {
        top[l] >= 0 && left[l] >= 0 && top[l] + g.kh as isize <= h && left[l] + g.kw as isize <= w
    });
    if inside {
        // No lane's window touches the padding (always so for unpadded convs and dense layers):
        // one gather per entry, without bounds tests.
        let start: [usize; L] = std::array::from_fn(|l| {
            base[l] + (top[l].max(0) as usize) * g.w + left[l].max(0) as usize
        });
        for ci in 0..g.c {
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let off = (ci * g.h + ky) * g.w + kx;
                    let row = &mut block[(ci * g.kh + ky) * g.kw + kx];
                    for (r, &s) in row.iter_mut().zip(&start).take(live) {
                        *r = x[s + off] as i16;
                    }
                }
            }
        }
        return;
    }
    for ci in 0..g.c {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = &mut block[(ci * g.kh + ky) * g.kw + kx];
                for lane in 0..live {
                    let (iy, ix) = (top[lane] + ky as isize, left[lane] + kx as isize);
                    if (0..h).contains(&iy) && (0..w).contains(&ix) {
                        let at = base[lane] + (ci * g.h + iy as usize) * g.w + ix as usize;
                        row[lane] = x[at] as i16;
                    }
                }
            }
        }
    }
}
