//! The table look-up kernel (T-MAC / LQR style) for weight layers of few bits. Owns the packing of
//! a layer's codes into bit-plane indices and the per-block tables; knows nothing of graphs,
//! requantization or where the columns come from.
//!
//! A signed b-bit code `h` is `Σ_p bit_p(h)·w_p` with `w_p = 2^p` and, for the top plane,
//! `w_(b−1) = −2^(b−1)` (two's complement). So `Σ_k h[k]·a[k] = Σ_p w_p · Σ_k bit_p(h[k])·a[k]`,
//! and the inner sum over a group of four consecutive K entries takes one of only 16 values: the
//! sums of the subsets of those four activations. For a block of `L` columns the kernel builds,
//! per group of four, the 16 subset sums of every column (`table[group·16 + index][lane]`), packs
//! each plane of each output row as one 4-bit index per group, and replaces the b·K
//! multiply-adds of a row by b·K/4 lane-wide table reads and adds.
//!
//! Exactness: the activation codes of a layer lie in a range checked when the plan is built, so a
//! table entry (at most four codes) fits i16 (`fits_i16_table`); a plane's sum over a region is
//! accumulated in i16 lanes for as many groups as cannot overflow them (32 for 8-bit codes), then
//! in i32 lanes, bounded by the region length times the largest code
//! (`CpuModel::new` checks it); planes and regions are combined in i64, exactly as the golden
//! `IntLayer::accumulate` forms its 48-bit accumulator.

use crate::layer::Regions;

/// K entries per table index.
pub(crate) const GROUP: usize = 4;
/// Table entries per group: every subset of four activations.
const ENTRIES: usize = 1 << GROUP;

/// Whether the 16 subset sums of four codes in `[min, max]` fit an i16 table entry.
pub(crate) fn fits_i16_table(min: i64, max: i64) -> bool {
    let reach = min.abs().max(max.abs());
    GROUP as i64 * reach <= i16::MAX as i64
}

/// A weight layer packed for the table kernel: per output row and plane, one 4-bit index per
/// group of four K entries (stored one per byte: the look-up is the cost, not the index load).
#[derive(Clone, Debug)]
pub(crate) struct LutWeights {
    rows: usize,
    bits: u8,
    /// Groups of four per row: `ceil(K / 4)`; the missing entries of the last group are zero
    /// weights.
    groups: usize,
    /// `[row][plane][group]` indices; bit j of an index is plane p of `h[4·group + j]`.
    index: Vec<u8>,
    /// Groups whose table entries can be summed in an i16 lane without overflow.
    chunk: usize,
}

impl LutWeights {
    /// Packs `codes` (`rows × k`, row-major, each a signed `bits`-bit code) for input codes of
    /// magnitude at most `max_abs` (which must pass `fits_i16_table`).
    pub fn pack(codes: &[i32], rows: usize, k: usize, bits: u8, max_abs: i64) -> LutWeights {
        let groups = k.div_ceil(GROUP);
        let planes = usize::from(bits);
        let mut index = vec![0u8; rows * planes * groups];
        for o in 0..rows {
            let row = &codes[o * k..(o + 1) * k];
            for p in 0..planes {
                let dst = &mut index[(o * planes + p) * groups..][..groups];
                for (kk, &h) in row.iter().enumerate() {
                    // Two's complement: bit p of the code's low `bits` bits.
                    let bit = ((h >> p) & 1) as u8;
                    dst[kk / GROUP] |= bit << (kk % GROUP);
                }
            }
        }
        // An entry is at most 4·max|a|; `chunk` of them fit i16 (32 for 8-bit codes).
        let entry_max = GROUP as i64 * max_abs.max(1);
        let chunk = (i64::from(i16::MAX) / entry_max).max(1) as usize;
        LutWeights {
            rows,
            bits,
            groups,
            index,
            chunk,
        }
    }

    fn plane_weight(&self, p: usize) -> i64 {
        if p + 1 == usize::from(self.bits) {
            -(1i64 << p)
        } else {
            1i64 << p
        }
    }

    /// `sums[o][lane] = Σ_r mult[o][r] · Σ_{k in region r} h[o][k]·x[k][lane]` for one block of
    /// `L` columns (`block` is `[k_pad][L]`). Region bounds must be multiples of four (the plan
    /// uses the GEMM kernel otherwise).
    pub fn block<const L: usize>(
        &self,
        block: &[[i16; L]],
        regions: &Regions,
        table: &mut Vec<[i16; L]>,
        sums: &mut [[i64; L]],
    ) {
        self.build_table(block, table);
        let planes = usize::from(self.bits);
        for (o, sum) in sums.iter_mut().enumerate().take(self.rows) {
            *sum = [0; L];
            let mults = regions.row(o);
            for (&(k0, k1), &m) in regions.bounds.iter().zip(mults) {
                let (g0, g1) = (k0 / GROUP, k1.div_ceil(GROUP));
                let mut region = [0i64; L];
                for p in 0..planes {
                    let idx = &self.index[(o * planes + p) * self.groups..][g0..g1];
                    let tables = &table[g0 * ENTRIES..g1 * ENTRIES];
                    let mut acc = [0i32; L];
                    // i16 lanes for `chunk` groups at a time (they cannot overflow, see `pack`),
                    // then one widening add: the inner loop is one 16-bit vector add per look-up.
                    for (idx, tables) in idx
                        .chunks(self.chunk)
                        .zip(tables.chunks(self.chunk * ENTRIES))
                    {
                        let mut part = [0i16; L];
                        for (&i, t) in idx.iter().zip(tables.chunks_exact(ENTRIES)) {
                            for (a, &e) in part.iter_mut().zip(&t[usize::from(i)]) {
                                *a += e;
                            }
                        }
                        for (a, &p) in acc.iter_mut().zip(&part) {
                            *a += i32::from(p);
                        }
                    }
                    let w = self.plane_weight(p);
                    for (r, &a) in region.iter_mut().zip(&acc) {
                        *r += w * i64::from(a);
                    }
                }
                for (s, &r) in sum.iter_mut().zip(&region) {
                    *s += m * r;
                }
            }
        }
    }

    /// `table[g·16 + i][lane]` = the sum of the activations `x[4g + j][lane]` over the set bits j
    /// of i. Each entry is one earlier entry plus one activation (drop i's lowest set bit).
    fn build_table<const L: usize>(&self, block: &[[i16; L]], table: &mut Vec<[i16; L]>) {
        table.clear();
        table.resize(self.groups * ENTRIES, [0; L]);
        for (t, a) in table
            .chunks_exact_mut(ENTRIES)
            .zip(block.chunks_exact(GROUP))
        {
            for i in 1..ENTRIES {
                let prev = t[i & (i - 1)];
                let add = &a[i.trailing_zeros() as usize];
                let mut e = [0i16; L];
                for ((e, &p), &x) in e.iter_mut().zip(&prev).zip(add) {
                    *e = p + x;
                }
                t[i] = e;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i16_tables_hold_four_eight_bit_codes_but_not_four_large_ones() {
        assert!(fits_i16_table(0, 255));
        assert!(fits_i16_table(-128, 127));
        assert!(fits_i16_table(-8191, 8191));
        assert!(!fits_i16_table(0, 8192));
        assert!(!fits_i16_table(-8192, 0));
    }

    #[test]
    fn one_row_of_every_code_matches_the_plain_dot_product() {
        // All 4-bit codes, K = 18 (not a multiple of four), two regions of 8 and 10 entries.
        let k = 18;
        let codes: Vec<i32> = (0..k as i32).map(|i| (i % 16) - 8).collect();
        let w = LutWeights::pack(&codes, 1, k, 4, 128);
        let mut block = vec![[0i16; 8]; k.next_multiple_of(GROUP)];
        for (kk, row) in block.iter_mut().enumerate().take(k) {
            for (lane, v) in row.iter_mut().enumerate() {
                *v = ((kk * 37 + lane * 11) % 256) as i16 - 128;
            }
        }
        let regions = Regions {
            bounds: vec![(0, 8), (8, 18)],
            mult: vec![3, 256],
        };
        let mut sums = vec![[0i64; 8]; 1];
        w.block(&block, &regions, &mut Vec::new(), &mut sums);
        for lane in 0..8 {
            let dot = |r: std::ops::Range<usize>| -> i64 {
                r.map(|kk| i64::from(codes[kk]) * i64::from(block[kk][lane]))
                    .sum()
            };
            assert_eq!(
                sums[0][lane],
                3 * dot(0..8) + 256 * dot(8..18),
                "lane {lane}"
            );
        }
    }

    #[test]
    fn i16_lanes_at_their_overflow_edge_match_the_plain_dot_product() {
        // Every activation at the largest magnitude the plan allows and every weight bit set
        // (code −1): each table entry is 4·max|a|, and a region of more than `chunk` groups sums
        // exactly `chunk` of them in an i16 lane before widening. One group more per chunk
        // would overflow the lane (33 · 1020 > 32,767 for 8-bit codes).
        for (max_abs, a) in [(255i64, 255i16), (128, -128), (8191, 8191), (1000, -1000)] {
            let w0 = LutWeights::pack(&[0; 4], 1, 4, 8, max_abs);
            let k = GROUP * (2 * w0.chunk + 3);
            for bits in [2u8, 8] {
                let codes = vec![-1i32; k];
                let w = LutWeights::pack(&codes, 1, k, bits, max_abs);
                assert!(
                    (w.chunk as i64 + 1) * GROUP as i64 * max_abs > i64::from(i16::MAX),
                    "the chunk is the largest that fits"
                );
                let block = vec![[a; 8]; k];
                let regions = Regions {
                    bounds: vec![(0, k)],
                    mult: vec![1],
                };
                let mut sums = vec![[0i64; 8]; 1];
                w.block(&block, &regions, &mut Vec::new(), &mut sums);
                let dot = -(k as i64) * i64::from(a);
                assert_eq!(sums[0], [dot; 8], "max |a| {max_abs}, {bits} bits, K {k}");
            }
        }
    }
}
