//! One weight layer (dense or conv) prepared for the CPU: its codes `h_b` at the chosen level,
//! packed for the table or the GEMM kernel, its local quantization regions, bias, requantization
//! and output range. Owns the choice of kernel per layer and the integer range checks that make
//! the kernels exact; knows nothing of the rest of the graph.

use crate::error::{CpuError, Result};
use crate::gemm::GemmWeights;
use crate::lut::{self, LutWeights};
use crate::panel::{self, Geom};
use caq_model::qmodel::QLayer;
use caq_model::requant::{OutRange, Requant};

/// Which kernel a weight layer runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Bit-plane table look-up (`lut.rs`).
    Lut,
    /// Integer multiply-accumulate (`gemm.rs`).
    Gemm,
}

/// Which kernels a plan may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Engine {
    /// Table look-up for layers at 4 bits or fewer, GEMM above.
    #[default]
    Auto,
    /// Table look-up wherever it applies, at any bit-width (for tests and benchmarks).
    Lut,
    /// GEMM for every layer: the plain integer baseline.
    Gemm,
}

/// How a layer of a plan runs: for reports and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    pub name: String,
    pub bits: u8,
    pub kernel: Kernel,
    /// Why the layer runs on GEMM although the engine asked for the table kernel.
    pub fallback: Option<String>,
}

/// Local quantization regions of a layer as K ranges, with their integer multipliers
/// (`[row][region]`). A layer without regions has one region with multiplier 1.
#[derive(Clone, Debug)]
pub(crate) struct Regions {
    pub bounds: Vec<(usize, usize)>,
    pub mult: Vec<i64>,
}

impl Regions {
    pub fn row(&self, o: usize) -> &[i64] {
        let n = self.bounds.len();
        &self.mult[o * n..(o + 1) * n]
    }
}

#[derive(Clone, Debug)]
enum Packed {
    Lut(LutWeights),
    Gemm(GemmWeights),
}

/// A weight layer ready to run on a batch.
#[derive(Clone, Debug)]
pub(crate) struct WeightLayer {
    pub info: LayerInfo,
    geom: Geom,
    rows: usize,
    packed: Packed,
    regions: Regions,
    /// `n − b`: the level's codes are `h_b << shift` in full-bit units.
    shift: u8,
    bias: Vec<i32>,
    requant: Vec<Requant>,
    out: OutRange,
}

/// The inclusive range of a layer's input codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CodeRange {
    pub min: i64,
    pub max: i64,
}

impl CodeRange {
    pub fn max_abs(&self) -> i64 {
        self.min.abs().max(self.max.abs())
    }
}

impl WeightLayer {
    /// Prepares `l` at `bits` for input geometry `geom` whose codes lie in `input`.
    pub fn new(
        l: &QLayer,
        bits: u8,
        geom: Geom,
        input: CodeRange,
        out: OutRange,
        engine: Engine,
    ) -> Result<WeightLayer> {
        let (rows, k) = (l.out_features(), geom.k());
        let shape_err =
            |field: &'static str, expected: String, found: String| CpuError::LayerShape {
                layer: l.name.clone(),
                field,
                expected,
                found,
            };
        let eff = l.weights.effective_codes(bits)?;
        if eff.dim() != (rows, k) {
            return Err(shape_err(
                "weights",
                format!("[{rows}, {k}]"),
                format!("{:?}", eff.dim()),
            ));
        }
        if l.requant.len() != rows {
            return Err(shape_err(
                "requant",
                format!("{rows} entries"),
                l.requant.len().to_string(),
            ));
        }
        for r in &l.requant {
            r.check()?;
        }
        let full = l.weights.full_bits();
        let codes_err = |what: String| CpuError::Codes {
            layer: l.name.clone(),
            bits,
            full,
            shift: full.saturating_sub(bits),
            what,
        };
        if !(2..=8).contains(&bits) || bits > full {
            return Err(codes_err(format!(
                "{bits} bits must be in 2..=8 and at most the full {full} bits"
            )));
        }
        let shift = full - bits;
        let (hmin, hmax) = (-(1i32 << (bits - 1)), (1i32 << (bits - 1)) - 1);
        let mut codes = Vec::with_capacity(rows * k);
        for ((o, kk), &e) in eff.indexed_iter() {
            let h = e >> shift;
            if h << shift != e || !(hmin..=hmax).contains(&h) {
                return Err(codes_err(format!(
                    "effective code {e} at [{o}, {kk}] is not a {bits}-bit code times 2^{shift}"
                )));
            }
            codes.push(h);
        }

        let regions = match &l.groups {
            Some(g) => {
                g.check(rows, k)?;
                let gs = g.group_size;
                Regions {
                    bounds: (0..k).step_by(gs).map(|s| (s, (s + gs).min(k))).collect(),
                    mult: g.mult.iter().map(|&m| i64::from(m)).collect(),
                }
            }
            None => Regions {
                bounds: vec![(0, k)],
                mult: vec![1; rows],
            },
        };
        let longest = regions.bounds.iter().map(|(a, b)| b - a).max().unwrap_or(0);

        if input.max_abs() > i64::from(i16::MAX) {
            return Err(CpuError::ActivationRange {
                layer: l.name.clone(),
                min: input.min,
                max: input.max,
            });
        }
        let want_lut = match engine {
            Engine::Auto => bits <= 4,
            Engine::Lut => true,
            Engine::Gemm => false,
        };
        let fallback = if !want_lut {
            None
        } else if regions.bounds.iter().any(|&(s, _)| s % lut::GROUP != 0) {
            Some(format!(
                "region size {longest} is not a multiple of {}",
                lut::GROUP
            ))
        } else if !lut::fits_i16_table(input.min, input.max) {
            Some(format!(
                "input codes in [{}, {}] could overflow an i16 table entry",
                input.min, input.max
            ))
        } else {
            None
        };
        let kernel = if want_lut && fallback.is_none() {
            Kernel::Lut
        } else {
            Kernel::Gemm
        };
        // The i32 lanes hold one region's sum: per plane (table) at most len·max|a|, per row
        // (GEMM) at most len·2^(b−1)·max|a|.
        let per_entry = match kernel {
            Kernel::Lut => input.max_abs(),
            Kernel::Gemm => input.max_abs() << (bits - 1),
        };
        let limit = (i64::from(i32::MAX) / per_entry.max(1)) as usize;
        let padded = match kernel {
            Kernel::Lut => longest.next_multiple_of(lut::GROUP),
            Kernel::Gemm => longest,
        };
        if padded > limit {
            return Err(CpuError::AccumulatorRange {
                layer: l.name.clone(),
                len: padded,
                bits,
                max_abs: input.max_abs(),
                limit,
            });
        }
        let packed = match kernel {
            Kernel::Lut => Packed::Lut(LutWeights::pack(&codes, rows, k, bits)),
            Kernel::Gemm => Packed::Gemm(GemmWeights::pack(&codes, rows, k)),
        };
        Ok(WeightLayer {
            info: LayerInfo {
                name: l.name.clone(),
                bits,
                kernel,
                fallback,
            },
            geom,
            rows,
            packed,
            regions,
            shift,
            bias: check_len(l, "bias", &l.bias, rows)?,
            requant: l.requant.clone(),
            out,
        })
    }

    /// Codes per image of the output (`[rows, oh, ow]`).
    pub fn output_len(&self) -> usize {
        self.rows * self.geom.pixels()
    }

    /// Output codes of a batch of `n` images (`x`: `n` inputs of `C·H·W` codes, image-major).
    pub fn run(&self, x: &[i32], n: usize) -> Vec<i32> {
        // Eight lanes when a block would be mostly empty (a dense layer on one image).
        if n * self.geom.pixels() <= 8 {
            self.run_lanes::<8>(x, n)
        } else {
            self.run_lanes::<16>(x, n)
        }
    }

    fn run_lanes<const L: usize>(&self, x: &[i32], n: usize) -> Vec<i32> {
        let p = self.geom.pixels();
        let cols = n * p;
        let k_pad = self.geom.k().next_multiple_of(lut::GROUP);
        let mut y = vec![0i32; n * self.output_len()];
        let mut block = vec![[0i16; L]; k_pad];
        let mut table = Vec::new();
        let mut sums = vec![[0i64; L]; self.rows];
        for j0 in (0..cols).step_by(L) {
            panel::fill_block(&self.geom, x, cols, j0, &mut block);
            match &self.packed {
                Packed::Lut(w) => w.block(&block, &self.regions, &mut table, &mut sums),
                Packed::Gemm(w) => w.block(&block, &self.regions, &mut sums),
            }
            let live = L.min(cols - j0);
            for (o, sum) in sums.iter().enumerate() {
                let (bias, rq) = (i64::from(self.bias[o]), self.requant[o]);
                for (lane, &s) in sum.iter().enumerate().take(live) {
                    let j = j0 + lane;
                    let (img, pix) = (j / p, j % p);
                    // The level's codes are h·2^shift: scale the sum back into full-bit units.
                    let acc = (s << self.shift) + bias;
                    y[(img * self.rows + o) * p + pix] = self.out.finish(rq.apply(acc));
                }
            }
        }
        y
    }
}

fn check_len(l: &QLayer, field: &'static str, v: &[i32], rows: usize) -> Result<Vec<i32>> {
    if v.len() != rows {
        return Err(CpuError::LayerShape {
            layer: l.name.clone(),
            field,
            expected: format!("{rows} entries"),
            found: v.len().to_string(),
        });
    }
    Ok(v.to_vec())
}
