//! The plain integer GEMM kernel: signed i8 weight codes times i16 activation codes, accumulated
//! in i32 lanes, regions combined in i64. Used for layers above 4 bits (where a table per four
//! entries no longer saves work over a multiply-add per plane), for local quantization regions
//! whose size is not a multiple of four, and as the "plain i8 GEMM" baseline (`Engine::Gemm`).
//! Knows nothing of graphs or requantization.
//!
//! Cache use: weights are packed once per plan as `[row block][k][ROWS]`, so the micro-kernel
//! streams one contiguous run of weights per block of `ROWS` output rows while a `[k][L]` column
//! block (reused by every row block) stays in cache; the `ROWS × L` accumulators are fixed-size
//! arrays the compiler keeps in vector registers.

use crate::layer::Regions;

/// Output rows per micro-kernel step.
const ROWS: usize = 4;

/// A weight layer packed for the GEMM kernel.
#[derive(Clone, Debug)]
pub(crate) struct GemmWeights {
    rows: usize,
    k: usize,
    /// `[row block][k][ROWS]`; rows past the end are zero weights.
    packed: Vec<i8>,
}

impl GemmWeights {
    /// Packs `codes` (`rows × k`, row-major, each fitting i8; the plan checks the bits).
    pub fn pack(codes: &[i32], rows: usize, k: usize) -> GemmWeights {
        let blocks = rows.div_ceil(ROWS);
        let mut packed = vec![0i8; blocks * k * ROWS];
        for o in 0..rows {
            let (b, r) = (o / ROWS, o % ROWS);
            for (kk, &c) in codes[o * k..(o + 1) * k].iter().enumerate() {
                packed[(b * k + kk) * ROWS + r] = c as i8;
            }
        }
        GemmWeights { rows, k, packed }
    }

    /// `sums[o][lane] = Σ_r mult[o][r] · Σ_{k in region r} h[o][k]·x[k][lane]` for one block of
    /// `L` columns (`block` is `[k or more][L]`).
    pub fn block<const L: usize>(
        &self,
        block: &[[i16; L]],
        regions: &Regions,
        sums: &mut [[i64; L]],
    ) {
        for (b, w) in self.packed.chunks_exact(self.k * ROWS).enumerate() {
            let mut total = [[0i64; L]; ROWS];
            for (r, &(k0, k1)) in regions.bounds.iter().enumerate() {
                let mut acc = [[0i32; L]; ROWS];
                for (x, w) in block[k0..k1]
                    .iter()
                    .zip(w[k0 * ROWS..k1 * ROWS].chunks_exact(ROWS))
                {
                    for (acc, &w) in acc.iter_mut().zip(w) {
                        let w = i32::from(w);
                        for (a, &x) in acc.iter_mut().zip(x) {
                            *a += w * i32::from(x);
                        }
                    }
                }
                for (ri, (t, a)) in total.iter_mut().zip(&acc).enumerate() {
                    let o = b * ROWS + ri;
                    if o < self.rows {
                        let m = regions.row(o)[r];
                        for (t, &a) in t.iter_mut().zip(a) {
                            *t += m * i64::from(a);
                        }
                    }
                }
            }
            let end = (b * ROWS + ROWS).min(self.rows);
            sums[b * ROWS..end].copy_from_slice(&total[..end - b * ROWS]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_not_a_multiple_of_the_row_block_match_the_plain_dot_product() {
        let (rows, k) = (7, 13);
        let codes: Vec<i32> = (0..rows * k).map(|i| (i as i32 * 29 % 256) - 128).collect();
        let w = GemmWeights::pack(&codes, rows, k);
        let block: Vec<[i16; 16]> = (0..k)
            .map(|kk| std::array::from_fn(|l| ((kk * 7 + l * 13) % 256) as i16))
            .collect();
        let regions = Regions {
            bounds: vec![(0, 5), (5, 10), (10, 13)],
            mult: (0..rows * 3).map(|i| i as i64 % 256 + 1).collect(),
        };
        let mut sums = vec![[0i64; 16]; rows];
        w.block(&block, &regions, &mut sums);
        for o in 0..rows {
            for lane in 0..16 {
                let want: i64 = (0..k)
                    .map(|kk| {
                        regions.row(o)[kk / 5]
                            * i64::from(codes[o * k + kk])
                            * i64::from(block[kk][lane])
                    })
                    .sum();
                assert_eq!(sums[o][lane], want, "row {o} lane {lane}");
            }
        }
    }
}
