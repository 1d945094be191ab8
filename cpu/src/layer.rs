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
            Kernel::Lut => Packed::Lut(LutWeights::pack(&codes, rows, k, bits, input.max_abs())),
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
            // Column j is pixel j % p of image j / p; its output for row o lands at dst + o·p.
            let dst: [usize; L] = std::array::from_fn(|l| {
                let j = j0 + l;
                (j / p) * self.rows * p + j % p
            });
            for (o, sum) in sums.iter().enumerate() {
                let (bias, rq) = (i64::from(self.bias[o]), self.requant[o]);
                for (&s, &d) in sum.iter().zip(&dst).take(live) {
                    // The level's codes are h·2^shift: scale the sum back into full-bit units.
                    let acc = (s << self.shift) + bias;
                    y[d + o * p] = requantize(acc, rq, self.out);
                }
            }
        }
        y
    }
}

/// `OutRange::finish(Requant::apply(acc))`, in i64 when that is exact: for |acc| < 2^31 the
/// product with a multiplier below 2^31 and the rounding half 2^(shift−1) ≤ 2^62 stay below 2^63.
/// Larger accumulators take the golden i128 path.
fn requantize(acc: i64, rq: Requant, out: OutRange) -> i32 {
    if acc.unsigned_abs() >= 1 << 31 {
        return out.finish(rq.apply(acc));
    }
    let p = acc * i64::from(rq.mult);
    let v = if rq.shift == 0 {
        p
    } else {
        (p + (1i64 << (rq.shift - 1))) >> rq.shift
    };
    let v = if out.relu { v.max(0) } else { v };
    v.clamp(i64::from(out.qmin), i64::from(out.qmax)) as i32
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

#[cfg(test)]
mod tests {
    use super::*;
    use caq_model::data::Dataset;
    use caq_model::graph::{FloatModel, FloatParams, Graph, Node, Op, Src};
    use caq_model::kernels::{self, IntLayer};
    use caq_model::qmodel::{QuantizeConfig, quantize};
    use ndarray::{Array1, Array2};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// One quantized dense layer `k → 5` (levels 8 ⊃ 4 ⊃ 2).
    fn dense_layer(k: usize, rng: &mut ChaCha8Rng) -> QLayer {
        let graph = Graph {
            input_shape: [k, 1, 1],
            nodes: vec![Node {
                name: "fc".into(),
                op: Op::Dense {
                    in_features: k,
                    out_features: 5,
                    relu: false,
                },
                inputs: vec![Src::Input],
            }],
        };
        let params = vec![Some(FloatParams {
            weight: Array2::from_shape_fn((5, k), |_| rng.random_range(-1.0..1.0f32)),
            bias: Array1::from_shape_fn(5, |_| rng.random_range(-0.1..0.1f32)),
        })];
        let calib = Dataset {
            name: "random".into(),
            shape: [k, 1, 1],
            pixels: (0..4 * k).map(|_| rng.random_range(0..=255u8)).collect(),
            labels: vec![0; 4],
            max_value: 255,
            classes: 2,
        };
        let cfg = QuantizeConfig {
            calib_images: 4,
            ..QuantizeConfig::nested(&[8, 4, 2])
        };
        let q = quantize(&FloatModel { graph, params }, &calib, &cfg).unwrap();
        q.layers[0].clone().unwrap()
    }

    fn dense_geom(k: usize) -> Geom {
        Geom::dense(k)
    }

    const OUT: OutRange = OutRange {
        qmin: -128,
        qmax: 127,
        relu: false,
    };

    #[test]
    fn the_i64_requantization_equals_the_golden_one() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let edges = [
            0,
            1,
            -1,
            (1 << 31) - 1,
            -(1 << 31) + 1,
            1 << 31,
            -(1 << 31),
            1 << 40,
        ];
        for _ in 0..20_000 {
            let rq = Requant {
                mult: rng.random_range(0..=i32::MAX),
                shift: rng.random_range(0..=63),
            };
            let out = OutRange {
                qmin: rng.random_range(-128..=0),
                qmax: rng.random_range(1..=255),
                relu: rng.random_bool(0.5),
            };
            let acc = if rng.random_bool(0.1) {
                edges[rng.random_range(0..edges.len())]
            } else {
                rng.random_range(-(1i64 << 33)..1 << 33) >> rng.random_range(0..33)
            };
            assert_eq!(
                requantize(acc, rq, out),
                out.finish(rq.apply(acc)),
                "{acc} {rq:?} {out:?}"
            );
        }
    }

    #[test]
    fn inputs_too_wide_for_i16_tables_run_on_gemm_and_stay_exact() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let k = 37;
        let l = dense_layer(k, &mut rng);
        let wide = CodeRange {
            min: -10_000,
            max: 10_000,
        };
        let layer = WeightLayer::new(&l, 2, dense_geom(k), wide, OUT, Engine::Lut).unwrap();
        assert_eq!(layer.info.kernel, Kernel::Gemm);
        assert!(
            layer
                .info
                .fallback
                .as_deref()
                .unwrap()
                .contains("i16 table")
        );
        let narrow = CodeRange { min: 0, max: 255 };
        let lut = WeightLayer::new(&l, 2, dense_geom(k), narrow, OUT, Engine::Lut).unwrap();
        assert_eq!((lut.info.kernel, lut.info.fallback), (Kernel::Lut, None));

        let n = 20;
        let x: Vec<i32> = (0..n * k)
            .map(|_| rng.random_range(-10_000..=10_000))
            .collect();
        let y = layer.run(&x, n);
        let eff = l.weights.effective_codes(2).unwrap();
        let golden = IntLayer {
            codes: eff.view(),
            groups: None,
            bias: &l.bias,
            requant: &l.requant,
            out: OUT,
        };
        for (img, col) in x.chunks_exact(k).enumerate() {
            assert_eq!(&y[img * 5..][..5], kernels::dense(&golden, col).unwrap());
        }
    }

    #[test]
    fn codes_beyond_i16_or_sums_beyond_i32_are_errors_naming_the_layer() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let l = dense_layer(600, &mut rng);
        let huge = CodeRange {
            min: 0,
            max: 40_000,
        };
        let e = WeightLayer::new(&l, 8, dense_geom(600), huge, OUT, Engine::Gemm).unwrap_err();
        assert!(matches!(e, CpuError::ActivationRange { .. }), "{e}");
        assert!(e.to_string().contains("'fc'"), "{e}");
        // 600 products of 8-bit weights (up to 128) and codes up to 30,000 exceed 2^31.
        let wide = CodeRange {
            min: 0,
            max: 30_000,
        };
        let e = WeightLayer::new(&l, 8, dense_geom(600), wide, OUT, Engine::Gemm).unwrap_err();
        assert!(
            matches!(e, CpuError::AccumulatorRange { len: 600, .. }),
            "{e}"
        );
    }
}
