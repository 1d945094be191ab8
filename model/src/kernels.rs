//! Golden integer kernels: the exact arithmetic the accelerator performs, written plainly. The
//! FuncDevice and the RTL are checked against these, bit for bit. Activations are i32 codes in CHW;
//! weights are effective integer codes `[out, K]` (a nested layer's active plane groups already
//! summed, in full-bit units). Rules: `docs/numerics.md`.
//!
//! Accumulation per output: for each local quantization region g (a run of `group_size` elements
//! along K) `acc_g = Σ w·a` (fits 32 bits by the config's `max_k` bound), then
//! `acc = Σ_g m[o][g]·acc_g + bias[o]` (48 bits), then requantization (`requant.rs`). Without groups
//! `acc = Σ_k w·a + bias[o]`.

use crate::error::{ModelError, Result};
use crate::graph::{Op, Padding, conv_out};
use crate::requant::{AddRequant, MeanAsLayer, OutRange, Requant};
use ndarray::{Array2, Array3, ArrayView1, ArrayView2, ArrayView3, s};

/// Per-(output, group) integer scale multipliers of local quantization regions.
#[derive(Clone, Copy, Debug)]
pub struct GroupMult<'a> {
    pub mult: ArrayView2<'a, u16>,
    pub group_size: usize,
}

/// Everything a weight layer needs to produce output codes from input codes.
#[derive(Clone, Copy, Debug)]
pub struct IntLayer<'a> {
    pub codes: ArrayView2<'a, i32>,
    pub groups: Option<GroupMult<'a>>,
    pub bias: &'a [i32],
    pub requant: &'a [Requant],
    pub out: OutRange,
}

impl IntLayer<'_> {
    fn check(&self, k: usize, context: &str) -> Result<()> {
        let (o, wk) = self.codes.dim();
        let shape = |expected: String, found: String| ModelError::Shape {
            context: context.to_string(),
            expected,
            found,
        };
        if wk != k {
            return Err(shape(format!("K = {wk}"), format!("input K = {k}")));
        }
        if self.bias.len() != o || self.requant.len() != o {
            return Err(shape(
                format!("{o} bias and requant entries"),
                format!("{} / {}", self.bias.len(), self.requant.len()),
            ));
        }
        if let Some(g) = self.groups {
            let ng = k.div_ceil(g.group_size.max(1));
            if g.group_size == 0 || g.mult.dim() != (o, ng) {
                return Err(shape(
                    format!("group multipliers [{o}, {ng}]"),
                    format!("{:?} with group size {}", g.mult.dim(), g.group_size),
                ));
            }
        }
        Ok(())
    }

    /// The 48-bit accumulator of output `o` for input column `a` (bias included).
    pub fn accumulate(&self, o: usize, a: ArrayView1<i32>) -> i64 {
        let w = self.codes.row(o);
        let bias = self.bias[o] as i64;
        match self.groups {
            None => dot(w, a) + bias,
            Some(g) => {
                let k = w.len();
                let mut acc = bias;
                for (gi, start) in (0..k).step_by(g.group_size).enumerate() {
                    let end = (start + g.group_size).min(k);
                    let acc_g = dot(w.slice(s![start..end]), a.slice(s![start..end]));
                    acc += g.mult[[o, gi]] as i64 * acc_g;
                }
                acc
            }
        }
    }

    fn output(&self, o: usize, a: ArrayView1<i32>) -> i32 {
        self.out
            .finish(self.requant[o].apply(self.accumulate(o, a)))
    }
}

fn dot(w: ArrayView1<i32>, a: ArrayView1<i32>) -> i64 {
    w.iter().zip(a).map(|(&w, &a)| w as i64 * a as i64).sum()
}

/// `[O, K] x [K, N] -> [O, N]` with requantization: the operation the array performs.
pub fn gemm(layer: &IntLayer, x: ArrayView2<i32>) -> Result<Array2<i32>> {
    let (k, n) = x.dim();
    layer.check(k, "gemm")?;
    let o = layer.codes.nrows();
    let mut y = Array2::<i32>::zeros((o, n));
    for j in 0..n {
        let col = x.column(j);
        for oi in 0..o {
            y[[oi, j]] = layer.output(oi, col);
        }
    }
    Ok(y)
}

/// Fully connected layer on one input vector.
pub fn dense(layer: &IntLayer, x: &[i32]) -> Result<Vec<i32>> {
    let a = ArrayView1::from(x);
    layer.check(x.len(), "dense")?;
    Ok((0..layer.codes.nrows())
        .map(|o| layer.output(o, a))
        .collect())
}

/// Convolution geometry: kernel `[kh, kw]`, one stride for both axes, zero padding per side, and
/// channel groups (output channel o reads the `C / groups` input channels of group
/// `o / (O / groups)`; `groups == C == O` is depthwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub kernel: [usize; 2],
    pub stride: usize,
    pub pad: Padding,
    pub groups: usize,
}

impl ConvGeom {
    /// A plain (ungrouped) convolution with the same padding on every side.
    pub fn plain(kernel: [usize; 2], stride: usize, pad: usize) -> ConvGeom {
        ConvGeom {
            kernel,
            stride,
            pad: Padding::uniform(pad),
            groups: 1,
        }
    }

    /// The geometry of a graph's Conv2d node (`None` for any other operator).
    pub fn of(op: &Op) -> Option<ConvGeom> {
        match *op {
            Op::Conv2d {
                kernel,
                stride,
                padding,
                groups,
                ..
            } => Some(ConvGeom {
                kernel,
                stride,
                pad: padding,
                groups,
            }),
            _ => None,
        }
    }

    pub fn out_size(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        let [kh, kw] = self.kernel;
        match (
            conv_out(h, kh, self.stride, self.pad.axis(0)),
            conv_out(w, kw, self.stride, self.pad.axis(1)),
        ) {
            (Some(oh), Some(ow)) if self.groups > 0 => Ok((oh, ow)),
            _ => Err(ModelError::arg(
                "conv geometry",
                format!("{self:?} does not fit a {h}x{w} input"),
            )),
        }
    }
}

/// Implicit-im2col matrix `[C*kh*kw, oh*ow]`, K ordered (c, ky, kx); padding reads code 0, which
/// is real 0 because every activation has zero point 0. (`g.groups` is not used: a grouped conv
/// takes one group's channels at a time, `conv2d`.)
pub fn im2col(x: ArrayView3<i32>, g: ConvGeom) -> Result<Array2<i32>> {
    let (c, h, w) = x.dim();
    let (oh, ow) = g.out_size(h, w)?;
    let [kh, kw] = g.kernel;
    let (top, left) = (g.pad.top as isize, g.pad.left as isize);
    let mut m = Array2::<i32>::zeros((c * kh * kw, oh * ow));
    for ci in 0..c {
        for ky in 0..kh {
            for kx in 0..kw {
                let row = (ci * kh + ky) * kw + kx;
                for oy in 0..oh {
                    let iy = (oy * g.stride + ky) as isize - top;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    for ox in 0..ow {
                        let ix = (ox * g.stride + kx) as isize - left;
                        if ix >= 0 && ix < w as isize {
                            m[[row, oy * ow + ox]] = x[[ci, iy as usize, ix as usize]];
                        }
                    }
                }
            }
        }
    }
    Ok(m)
}

/// 2-D convolution as im2col followed by the array's GEMM, one channel group at a time (a
/// group's weight rows `[O/groups, (C/groups)·kh·kw]` against its channels' im2col).
pub fn conv2d(layer: &IntLayer, x: ArrayView3<i32>, g: ConvGeom) -> Result<Array3<i32>> {
    let (c, h, w) = x.dim();
    let (oh, ow) = g.out_size(h, w)?;
    let o = layer.codes.nrows();
    if !c.is_multiple_of(g.groups) || !o.is_multiple_of(g.groups) {
        return Err(ModelError::arg(
            "conv geometry",
            format!(
                "groups = {} must divide {c} input and {o} output channels",
                g.groups
            ),
        ));
    }
    let (cg, og) = (c / g.groups, o / g.groups);
    let mut y = Array2::<i32>::zeros((o, oh * ow));
    for gi in 0..g.groups {
        let rows = gi * og..(gi + 1) * og;
        let part = IntLayer {
            codes: layer.codes.slice_move(s![rows.clone(), ..]),
            groups: layer.groups.map(|m| GroupMult {
                mult: m.mult.slice_move(s![rows.clone(), ..]),
                group_size: m.group_size,
            }),
            bias: &layer.bias[rows.clone()],
            requant: &layer.requant[rows.clone()],
            out: layer.out,
        };
        let cols = im2col(x.slice(s![gi * cg..(gi + 1) * cg, .., ..]), g)?;
        y.slice_mut(s![rows, ..]).assign(&gemm(&part, cols.view())?);
    }
    Ok(y.into_shape_with_order((o, oh, ow))
        .expect("gemm returns [O, oh*ow]"))
}

fn pool(
    x: ArrayView3<i32>,
    k: usize,
    stride: usize,
    reduce: impl Fn(ArrayView2<i32>) -> i32,
) -> Result<Array3<i32>> {
    let (c, h, w) = x.dim();
    let (oh, ow) = ConvGeom::plain([k, k], stride, 0).out_size(h, w)?;
    let mut y = Array3::<i32>::zeros((c, oh, ow));
    for ci in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let win = x.slice(s![
                    ci,
                    oy * stride..oy * stride + k,
                    ox * stride..ox * stride + k
                ]);
                y[[ci, oy, ox]] = reduce(win);
            }
        }
    }
    Ok(y)
}

/// Max pooling: exact on codes because quantization is monotonic.
pub fn max_pool(x: ArrayView3<i32>, k: usize, stride: usize) -> Result<Array3<i32>> {
    pool(x, k, stride, |w| {
        w.iter().copied().max().expect("kernel >= 1")
    })
}

/// Average pooling: the window sum divided by k*k, rounded half towards +infinity; the output
/// keeps the input's scale and range.
pub fn avg_pool(x: ArrayView3<i32>, k: usize, stride: usize) -> Result<Array3<i32>> {
    let n = (k * k) as i64;
    pool(x, k, stride, |w| {
        window_mean(w.iter().map(|&v| v as i64).sum(), n)
    })
}

/// Global average pooling: each channel's whole map averaged with [`window_mean`] (area h·w),
/// `[c, h, w] -> [c, 1, 1]`; keeps the input's scale and range.
pub fn global_avg_pool(x: ArrayView3<i32>) -> Result<Array3<i32>> {
    let (_, h, w) = x.dim();
    if h == 0 || w == 0 {
        return Err(ModelError::arg("global pool", format!("empty {h}x{w} map")));
    }
    let area = (h * w) as i64;
    Ok(per_channel_sum(x, |sum| window_mean(sum, area)))
}

/// `[c, 1, 1]`: `f` of the sum of each channel's codes.
fn per_channel_sum(x: ArrayView3<i32>, f: impl Fn(i64) -> i32) -> Array3<i32> {
    Array3::from_shape_fn((x.dim().0, 1, 1), |(ci, _, _)| {
        f(x.slice(s![ci, .., ..]).iter().map(|&v| i64::from(v)).sum())
    })
}

/// Global average pooling as the device computes it on a conv's result path (descriptor field
/// `global_pool`): each channel's codes summed, `(4·Σ + 1)` requantized by `mean` and finished
/// (ReLU, saturation) by `out`. With `mean` = [`crate::requant::MeanAsLayer::of`]`(h·w)` it
/// equals [`global_avg_pool`] for codes in `out`'s range; the device applies whatever multiplier
/// and shift the descriptor holds.
pub fn global_pool_requantized(x: ArrayView3<i32>, mean: Requant, out: OutRange) -> Array3<i32> {
    let layer = MeanAsLayer { requant: mean };
    per_channel_sum(x, |sum| out.finish(layer.apply(sum)))
}

/// The average-pool rule on one window: `sum / area` rounded half towards +infinity. The mean of
/// i32 codes always fits an i32. Every engine that pools (the CPU backend too) calls this.
pub fn window_mean(sum: i64, area: i64) -> i32 {
    (2 * sum + area).div_euclid(2 * area) as i32
}

/// Residual add of two code tensors of the same shape, each rescaled to the output scale with a
/// shared shift (one rounding), then ReLU and saturation.
pub fn add(
    a: ArrayView3<i32>,
    b: ArrayView3<i32>,
    rq: &AddRequant,
    out: OutRange,
) -> Result<Array3<i32>> {
    if a.dim() != b.dim() {
        return Err(ModelError::Shape {
            context: "add".into(),
            expected: format!("{:?}", a.dim()),
            found: format!("{:?}", b.dim()),
        });
    }
    let mut y = a.to_owned();
    ndarray::Zip::from(&mut y)
        .and(&b)
        .for_each(|ya, &vb| *ya = out.finish(rq.apply(*ya, vb)));
    Ok(y)
}

/// ReLU on codes (zero point 0, so code 0 is real 0).
pub fn relu(x: ArrayView3<i32>) -> Array3<i32> {
    x.mapv(|v| v.max(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn seed() -> u64 {
        let s = std::env::var("CAQ_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| rand::rng().random());
        eprintln!("CAQ_SEED={s}");
        s
    }

    struct Case {
        codes: Array2<i32>,
        mult: Option<(Array2<u16>, usize)>,
        bias: Vec<i32>,
        rq: Vec<Requant>,
        out: OutRange,
    }

    fn random_case(rng: &mut ChaCha8Rng, o: usize, k: usize) -> Case {
        let bits = rng.random_range(1..=8u32);
        let wmax = (1i32 << (bits - 1)) - 1;
        let wmin = -(1i32 << (bits - 1));
        let codes = Array2::from_shape_fn((o, k), |_| rng.random_range(wmin..=wmax));
        let mult = rng.random_bool(0.5).then(|| {
            let gs = rng.random_range(1..=k.max(1));
            (
                Array2::from_shape_fn((o, k.div_ceil(gs)), |_| rng.random_range(1..=256u16)),
                gs,
            )
        });
        let bias = (0..o).map(|_| rng.random_range(-5000..5000)).collect();
        let rq = (0..o)
            .map(|_| Requant::from_real(rng.random_range(1e-5..0.5)).unwrap())
            .collect();
        let relu = rng.random_bool(0.5);
        let act_bits = rng.random_range(2..=8u32);
        let out = if relu {
            OutRange {
                qmin: 0,
                qmax: (1 << act_bits) - 1,
                relu,
            }
        } else {
            OutRange {
                qmin: -(1 << (act_bits - 1)),
                qmax: (1 << (act_bits - 1)) - 1,
                relu,
            }
        };
        Case {
            codes,
            mult,
            bias,
            rq,
            out,
        }
    }

    impl Case {
        fn layer(&self) -> IntLayer<'_> {
            IntLayer {
                codes: self.codes.view(),
                groups: self.mult.as_ref().map(|(m, gs)| GroupMult {
                    mult: m.view(),
                    group_size: *gs,
                }),
                bias: &self.bias,
                requant: &self.rq,
                out: self.out,
            }
        }
        /// Straight from the formula in docs/numerics.md, element by element.
        fn naive_output(&self, o: usize, a: impl Fn(usize) -> i32) -> i32 {
            let k = self.codes.ncols();
            let mut acc = self.bias[o] as i128;
            for kk in 0..k {
                let m = match &self.mult {
                    Some((m, gs)) => m[[o, kk / gs]] as i128,
                    None => 1,
                };
                acc += m * self.codes[[o, kk]] as i128 * a(kk) as i128;
            }
            let r = self.rq[o];
            let mut v = (acc * r.mult as i128 + (1i128 << (r.shift - 1))) >> r.shift;
            if self.out.relu && v < 0 {
                v = 0;
            }
            v.clamp(self.out.qmin as i128, self.out.qmax as i128) as i32
        }
    }

    #[test]
    fn gemm_equals_naive_formula_on_random_shapes() {
        let mut rng = ChaCha8Rng::seed_from_u64(seed());
        for _ in 0..200 {
            let (o, k, n) = (
                rng.random_range(1..20),
                rng.random_range(1..150),
                rng.random_range(1..6),
            );
            let case = random_case(&mut rng, o, k);
            let x = Array2::from_shape_fn((k, n), |_| rng.random_range(-128..=255));
            let y = gemm(&case.layer(), x.view()).unwrap();
            for oi in 0..o {
                for j in 0..n {
                    assert_eq!(
                        y[[oi, j]],
                        case.naive_output(oi, |kk| x[[kk, j]]),
                        "o={o} k={k} n={n}"
                    );
                }
            }
        }
    }

    #[test]
    fn conv2d_equals_direct_convolution_on_random_shapes() {
        // Groups (depthwise included) and asymmetric padding, against the definition.
        let mut rng = ChaCha8Rng::seed_from_u64(seed());
        for _ in 0..80 {
            let groups = [1, 1, 2, 3][rng.random_range(0..4)];
            let depthwise = rng.random_bool(0.25);
            let cg = if depthwise { 1 } else { rng.random_range(1..4) };
            let c = cg * groups;
            let (h, w) = (rng.random_range(3..13), rng.random_range(3..13));
            let kh = rng.random_range(1..=h.min(10));
            let kw = rng.random_range(1..=w.min(7));
            let [top, left, bottom, right] = std::array::from_fn(|_| rng.random_range(0..=3));
            let g = ConvGeom {
                kernel: [kh, kw],
                stride: rng.random_range(1..=2),
                pad: Padding {
                    top,
                    left,
                    bottom,
                    right,
                },
                groups,
            };
            let o = groups * if depthwise { 1 } else { rng.random_range(1..4) };
            let og = o / groups;
            let case = random_case(&mut rng, o, cg * kh * kw);
            let x = Array3::from_shape_fn((c, h, w), |_| rng.random_range(-128..=127));
            let y = conv2d(&case.layer(), x.view(), g).unwrap();
            let (oh, ow) = g.out_size(h, w).unwrap();
            assert_eq!(y.dim(), (o, oh, ow));
            for oi in 0..o {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let a = |kk: usize| {
                            let (ci, ky, kx) = (kk / (kh * kw), (kk / kw) % kh, kk % kw);
                            let ci = (oi / og) * cg + ci;
                            let iy = (oy * g.stride + ky) as isize - g.pad.top as isize;
                            let ix = (ox * g.stride + kx) as isize - g.pad.left as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                0
                            } else {
                                x[[ci, iy as usize, ix as usize]]
                            }
                        };
                        assert_eq!(y[[oi, oy, ox]], case.naive_output(oi, a), "{g:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn largest_accumulator_saturates_instead_of_wrapping() {
        // K = 4096, w = -128, a = 255 everywhere, group multiplier 256: |acc| = 2^8 * 4096 * 32640.
        let k = 4096;
        let codes = Array2::from_elem((1, k), -128);
        let mult = Array2::from_elem((1, 1), 256u16);
        let layer = IntLayer {
            codes: codes.view(),
            groups: Some(GroupMult {
                mult: mult.view(),
                group_size: k,
            }),
            bias: &[0],
            requant: &[Requant {
                mult: 1 << 30,
                shift: 30,
            }],
            out: OutRange {
                qmin: -128,
                qmax: 127,
                relu: false,
            },
        };
        let a = vec![255; k];
        assert_eq!(
            layer.accumulate(0, ArrayView1::from(&a)),
            -256 * 4096 * 32640
        );
        assert_eq!(dense(&layer, &a).unwrap(), vec![-128]);
        let pos = codes.mapv(|_| 127);
        let layer = IntLayer {
            codes: pos.view(),
            ..layer
        };
        assert_eq!(dense(&layer, &a).unwrap(), vec![127]);
    }

    #[test]
    fn global_avg_pool_averages_whole_non_square_maps() {
        // Two channels of 25x5 (DS-CNN's last map): sums 125·3 + 62 and -(125·2) - 63 over 125.
        let mut x = Array3::<i32>::zeros((2, 25, 5));
        x.slice_mut(s![0, .., ..]).fill(3);
        x.slice_mut(s![1, .., ..]).fill(-2);
        for i in 0..62 {
            x[[0, i / 5, i % 5]] += 1; // mean 3.496 -> 3
        }
        for i in 0..63 {
            x[[1, i / 5, i % 5]] -= 1; // mean -2.504 -> -3
        }
        let y = global_avg_pool(x.view()).unwrap();
        assert_eq!(y.dim(), (2, 1, 1));
        assert_eq!((y[[0, 0, 0]], y[[1, 0, 0]]), (3, -3));
        // Exactly half rounds towards +infinity, like every average pool: -2.5 -> -2.
        let h = Array3::from_shape_vec((1, 1, 2), vec![-2, -3]).unwrap();
        assert_eq!(global_avg_pool(h.view()).unwrap()[[0, 0, 0]], -2);
        assert!(global_avg_pool(Array3::<i32>::zeros((1, 0, 3)).view()).is_err());
    }

    #[test]
    fn pools_and_add_follow_their_rounding_rules() {
        let x = Array3::from_shape_vec((1, 2, 2), vec![1, 2, 3, -7]).unwrap();
        assert_eq!(max_pool(x.view(), 2, 2).unwrap()[[0, 0, 0]], 3);
        // (1+2+3-7)/4 = -0.25 -> 0; half cases round up.
        assert_eq!(avg_pool(x.view(), 2, 2).unwrap()[[0, 0, 0]], 0);
        let y = Array3::from_shape_vec((1, 2, 2), vec![1, 1, 0, -3]).unwrap();
        assert_eq!(avg_pool(y.view(), 2, 2).unwrap()[[0, 0, 0]], 0); // -0.25
        let z = Array3::from_shape_vec((1, 2, 2), vec![1, 1, 0, 0]).unwrap();
        assert_eq!(avg_pool(z.view(), 2, 2).unwrap()[[0, 0, 0]], 1); // 0.5 -> 1
        let rq = AddRequant::from_real(1.0, 1.0).unwrap();
        let out = OutRange {
            qmin: -128,
            qmax: 127,
            relu: true,
        };
        let s = add(x.view(), y.view(), &rq, out).unwrap();
        assert_eq!(s.as_slice().unwrap(), &[2, 3, 3, 0]);
        assert_eq!(relu(x.view()).as_slice().unwrap(), &[1, 2, 3, 0]);
    }

    #[test]
    fn shape_errors_name_the_mismatch() {
        let codes = Array2::<i32>::zeros((2, 3));
        let layer = IntLayer {
            codes: codes.view(),
            groups: None,
            bias: &[0, 0],
            requant: &[Requant { mult: 1, shift: 1 }; 2],
            out: OutRange {
                qmin: 0,
                qmax: 1,
                relu: true,
            },
        };
        let e = dense(&layer, &[1, 2]).unwrap_err().to_string();
        assert!(e.contains("K = 3") && e.contains("K = 2"), "{e}");
        let bad_geom = ConvGeom::plain([5, 5], 1, 0);
        assert!(im2col(Array3::<i32>::zeros((1, 3, 3)).view(), bad_geom).is_err());
    }
}
