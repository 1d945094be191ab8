//! Gate networks, trained on training images: a small network over [`features`] of the first
//! weight layer's output picks, per input, one setting of a codebook (settings that share the
//! first layer's level); the network is then made integer ([`caq_model::adaptive::GateNet`]).
//!
//! Training. For every training image and codebook entry k the outcome is known exactly (the
//! entry's top-1 agrees with the float model's or not, from the bit-exact CPU backend) and so is
//! its cost (the passes' predicted energy). The loss of an image is `C_k = miss_k + λ · e_k / e_full`
//! at the entry the gate picks; the pick is a hard Gumbel-max sample in the forward pass and its
//! gradient the Gumbel-softmax one (straight-through), with the temperature annealed from 1 to
//! 0.3. λ is found by bisection: the smallest λ whose integer gate, deciding without noise, keeps
//! the average energy on the training images within the limit.

use super::Scored;
use crate::gates::Limits;
use caq_driver::{HostError, Result};
use caq_model::adaptive::{self, GateNet, Pass, Sampling, features};
use caq_model::data::Dataset;
use caq_model::graph::Shape3;
use caq_model::qmodel::QModel;
use caq_spec::PerfCounters;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// The gate network's hidden units for `d` features: as many as keep its first layer within
/// [`GATE_MACS`] multiply-adds, between 4 and 16 (the LeNet's 64 features: 16; the digits MLP's
/// 128 codes: 8). The first layer is most of a decision's arithmetic, which must stay a small
/// part of an inference (docs/gates.md, "Switching and decision cost per inference").
pub fn hidden_units(d: usize) -> usize {
    (GATE_MACS / d.max(1)).clamp(4, 16)
}

/// Multiply-adds of a gate network's first layer at most, when 4 hidden units allow it.
pub const GATE_MACS: usize = 1024;
/// Codebook entries at most.
pub const CODEBOOK: usize = 6;
const EPOCHS: usize = 40;
const BATCH: usize = 64;
const LEARNING_RATE: f64 = 0.01;
const BISECTION_STEPS: usize = 14;

/// A trained gate and what it did on the training images.
#[derive(Clone, Debug, Serialize)]
pub struct NetworkChoice {
    pub network: GateNet,
    pub lambda: f64,
    pub seed: u64,
    pub agreement_pct: f64,
    /// Mean predicted dynamic energy per inference, J (both passes).
    pub energy_j: f64,
    pub cycles: f64,
    /// How many training images picked each codebook entry.
    pub histogram: Vec<usize>,
    /// Training images on which the integer network picks what the float one does, %.
    pub integer_match_pct: f64,
    /// Integer operations of one choice.
    pub ops: u64,
}

/// The codes a gate network's features sum for a first-layer output of `shape`: 2×2 cells per
/// channel of a feature map (the codes themselves for a dense layer), and in each cell every
/// `row_step`-th row; without `row_step`, the step that reads about [`ROWS_PER_CELL`] rows of
/// each cell.
pub fn sampling(shape: Shape3, row_step: Option<usize>) -> Result<Sampling> {
    let grid = if shape[1] >= 2 && shape[2] >= 2 { 2 } else { 1 };
    let s = Sampling {
        grid,
        row_step: row_step.unwrap_or((shape[1] / grid / ROWS_PER_CELL).max(1)),
    };
    s.check(shape).map_err(|why| HostError::Arg {
        what: "--gate-row-step",
        why,
    })?;
    Ok(s)
}

/// Rows of each cell the default [`sampling`] reads.
pub const ROWS_PER_CELL: usize = 4;

/// The features of every image of `images` at the first layer's level `prefix` (the rest of the
/// setting does not change them), sampled by `s` (see [`sampling`]).
pub fn image_features(
    q: &QModel,
    prefix: u8,
    images: &Dataset,
    s: Sampling,
) -> Result<Vec<Vec<i64>>> {
    let layout = adaptive::Layout::of(q)?;
    let shape: Shape3 = layout.gate_shape;
    let mut bits: Vec<u8> = layout.levels.iter().map(|l| l[0]).collect();
    bits[0] = prefix;
    let ex = q.executor(&bits)?;
    let node = layout.gate_node;
    let rows = caq_model::qmodel::par_map(images.len(), |i| -> Result<Vec<i64>> {
        let out = ex.run_through(images.image(i), node)?;
        let codes: Vec<i32> = out[node].iter().copied().collect();
        Ok(features(&codes, shape, s)?)
    });
    rows.into_iter().collect()
}

/// The float network being trained.
#[derive(Clone)]
struct FloatNet {
    d: usize,
    h: usize,
    k: usize,
    w1: Vec<f64>,
    b1: Vec<f64>,
    w2: Vec<f64>,
    b2: Vec<f64>,
}

impl FloatNet {
    fn new(d: usize, h: usize, k: usize, rng: &mut impl Rng) -> FloatNet {
        let r1 = (2.0 / d as f64).sqrt();
        let r2 = (1.0 / h as f64).sqrt();
        FloatNet {
            d,
            h,
            k,
            w1: (0..h * d).map(|_| rng.random_range(-r1..r1)).collect(),
            b1: vec![0.0; h],
            w2: (0..k * h).map(|_| rng.random_range(-r2..r2)).collect(),
            b2: vec![0.0; k],
        }
    }

    fn forward(&self, x: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let a: Vec<f64> = (0..self.h)
            .map(|j| {
                self.b1[j]
                    + self.w1[j * self.d..(j + 1) * self.d]
                        .iter()
                        .zip(x)
                        .map(|(w, v)| w * v)
                        .sum::<f64>()
            })
            .collect();
        let hid: Vec<f64> = a.iter().map(|&v| v.max(0.0)).collect();
        let z: Vec<f64> = (0..self.k)
            .map(|c| {
                self.b2[c]
                    + self.w2[c * self.h..(c + 1) * self.h]
                        .iter()
                        .zip(&hid)
                        .map(|(w, v)| w * v)
                        .sum::<f64>()
            })
            .collect();
        (a, hid, z)
    }

    fn params(&mut self) -> [&mut Vec<f64>; 4] {
        [&mut self.w1, &mut self.b1, &mut self.w2, &mut self.b2]
    }
}

/// Adam's moments for each parameter vector.
struct Adam {
    m: Vec<Vec<f64>>,
    v: Vec<Vec<f64>>,
    t: i32,
}

impl Adam {
    fn step(&mut self, net: &mut FloatNet, grads: &[Vec<f64>]) {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
        self.t += 1;
        let c1 = 1.0 - b1.powi(self.t);
        let c2 = 1.0 - b2.powi(self.t);
        for (p, ((m, v), g)) in net
            .params()
            .into_iter()
            .zip(self.m.iter_mut().zip(self.v.iter_mut()).zip(grads))
        {
            for i in 0..p.len() {
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                p[i] -= LEARNING_RATE * (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
            }
        }
    }
}

/// Trains one float network for `lambda`: per image, `cost[i][k]` is the loss of entry k.
fn train(x: &[Vec<f64>], miss: &[Vec<f64>], energy: &[f64], lambda: f64, seed: u64) -> FloatNet {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (n, d, k) = (x.len(), x[0].len(), energy.len());
    let mut net = FloatNet::new(d, hidden_units(d), k, &mut rng);
    let mut adam = Adam {
        m: net.params().iter().map(|p| vec![0.0; p.len()]).collect(),
        v: net.params().iter().map(|p| vec![0.0; p.len()]).collect(),
        t: 0,
    };
    let mut order: Vec<usize> = (0..n).collect();
    for epoch in 0..EPOCHS {
        let tau = 1.0 - 0.7 * epoch as f64 / (EPOCHS - 1).max(1) as f64;
        for i in (1..n).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        for chunk in order.chunks(BATCH) {
            let mut g = [
                vec![0.0; net.w1.len()],
                vec![0.0; net.b1.len()],
                vec![0.0; net.w2.len()],
                vec![0.0; net.b2.len()],
            ];
            for &i in chunk {
                let (a, hid, z) = net.forward(&x[i]);
                // Gumbel-softmax over the noisy logits; the straight-through gradient of the
                // hard pick's cost C is the softmax one.
                let noisy: Vec<f64> = z
                    .iter()
                    .map(|&v| {
                        let u: f64 = rng.random_range(1e-12..1.0);
                        (v - (-u.ln()).ln()) / tau
                    })
                    .collect();
                let mx = noisy.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = noisy.iter().map(|&v| (v - mx).exp()).collect();
                let sum: f64 = e.iter().sum();
                let s: Vec<f64> = e.iter().map(|v| v / sum).collect();
                let c: Vec<f64> = (0..k).map(|j| miss[i][j] + lambda * energy[j]).collect();
                let mean_c: f64 = s.iter().zip(&c).map(|(a, b)| a * b).sum();
                let dz: Vec<f64> = (0..k)
                    .map(|j| s[j] * (c[j] - mean_c) / tau / chunk.len() as f64)
                    .collect();
                let h = net.h;
                let mut dh = vec![0.0; h];
                for j in 0..k {
                    g[3][j] += dz[j];
                    for u in 0..h {
                        g[2][j * h + u] += dz[j] * hid[u];
                        dh[u] += dz[j] * net.w2[j * h + u];
                    }
                }
                for u in 0..h {
                    if a[u] <= 0.0 {
                        continue;
                    }
                    g[1][u] += dh[u];
                    for (gw, &xv) in g[0][u * d..(u + 1) * d].iter_mut().zip(&x[i]) {
                        *gw += dh[u] * xv;
                    }
                }
            }
            adam.step(&mut net, &g);
        }
    }
    net
}

/// The integer gate of a float network over normalized features `(f − mean) / std`.
fn quantize(
    net: &FloatNet,
    mean: &[f64],
    std: &[f64],
    sampling: Sampling,
    codebook: &[Vec<u8>],
) -> Result<GateNet> {
    let d = net.d;
    let w1f: Vec<f64> = (0..net.h * d).map(|i| net.w1[i] / std[i % d]).collect();
    let b1f: Vec<f64> = (0..net.h)
        .map(|j| net.b1[j] - (0..d).map(|i| w1f[j * d + i] * mean[i]).sum::<f64>())
        .collect();
    // Scales: the largest weight of each layer at 2^30; the hidden units shifted back to 20
    // fractional bits (their range stays far inside i64, see GateNet).
    let scale_of = |w: &[f64]| -> i32 {
        let m = w.iter().fold(0f64, |a, &v| a.max(v.abs()));
        if m == 0.0 {
            30
        } else {
            (30.0 - m.log2().ceil()).clamp(-30.0, 60.0) as i32
        }
    };
    let s1 = scale_of(&w1f);
    let shift = (s1 - 20).max(0);
    let s2 = scale_of(&net.w2);
    let to_i32 = |v: f64, s: i32| (v * 2f64.powi(s)).round() as i32;
    let to_i64 = |v: f64, s: i32| -> Result<i64> {
        let x = (v * 2f64.powi(s)).round();
        if x.abs() < 2f64.powi(62) {
            Ok(x as i64)
        } else {
            Err(HostError::Arg {
                what: "gate network",
                why: format!("a bias of {v} does not fit 62 bits at scale 2^{s}"),
            })
        }
    };
    Ok(GateNet {
        grid: sampling.grid,
        row_step: sampling.row_step,
        hidden: net.h,
        w1: w1f.iter().map(|&w| to_i32(w, s1)).collect(),
        b1: b1f.iter().map(|&b| to_i64(b, s1)).collect::<Result<_>>()?,
        shift: shift as u8,
        w2: net.w2.iter().map(|&w| to_i32(w, s2)).collect(),
        b2: net
            .b2
            .iter()
            .map(|&b| to_i64(b, s2 + s1 - shift))
            .collect::<Result<_>>()?,
        codebook: codebook.to_vec(),
    })
}

/// Everything the training of one class's gate needs.
pub struct Problem<'a> {
    pub q: &'a QModel,
    pub scored: &'a Scored,
    /// Features of each calibration image at the codebook's first-layer level, and the codes
    /// they sum.
    pub features: &'a [Vec<i64>],
    pub sampling: Sampling,
    /// Candidate indices (into `scored.settings`) the codebook is chosen from; all share the
    /// first layer's level.
    pub candidates: Vec<usize>,
    /// Must be in the codebook (the class's static gate).
    pub keep: Option<usize>,
    pub seed: u64,
}

/// Trains the class's gate within `limits` (energy on average, cycles and resident bytes for
/// every codebook entry), or `None` when no entry fits.
pub fn train_gate(
    p: &Problem<'_>,
    prices: &mut super::cascade::Prices<'_>,
    limits: &Limits,
) -> Result<Option<NetworkChoice>> {
    let n = p.scored.images();
    if n == 0 || p.features.len() != n {
        return Err(HostError::Arg {
            what: "gate training",
            why: format!("{} feature rows for {n} images", p.features.len()),
        });
    }
    // Each entry's passes: the first layer, then the rest after it.
    let mut entries: Vec<(usize, PerfCounters, f64)> = Vec::new();
    for &c in &p.candidates {
        let bits = &p.scored.settings[c];
        let mut perf = prices.pricer.model_pass(bits, Pass::FirstLayer)?;
        perf.add(&prices.pricer.model_pass(bits, Pass::AfterFirst)?);
        if limits.cycles.is_some_and(|l| perf.cycles > l) {
            continue;
        }
        if limits
            .resident_bytes
            .is_some_and(|r| (prices.resident)(bits).is_ok_and(|b| b > r))
        {
            continue;
        }
        entries.push((c, perf, (prices.energy)(&perf)));
    }
    let budget = limits.energy_j.unwrap_or(f64::INFINITY);
    if entries.iter().all(|e| e.2 > budget) {
        return Ok(None);
    }
    entries.sort_by(|a, b| a.2.total_cmp(&b.2));
    // The codebook: up to CODEBOOK entries spread over the energy range, the kept one included.
    let mut book: Vec<usize> = if entries.len() <= CODEBOOK {
        (0..entries.len()).collect()
    } else {
        (0..CODEBOOK)
            .map(|j| j * (entries.len() - 1) / (CODEBOOK - 1))
            .collect()
    };
    if let Some(keep) = p.keep
        && let Some(pos) = entries.iter().position(|e| e.0 == keep)
        && !book.contains(&pos)
    {
        book.push(pos);
        book.sort();
    }
    book.dedup();
    let entries: Vec<(usize, PerfCounters, f64)> = book.iter().map(|&i| entries[i]).collect();
    // With a resident limit, drop the dearest entries until all of them fit at once.
    let mut entries = entries;
    if let Some(r) = limits.resident_bytes {
        while entries.len() > 1 {
            let bits: Vec<&[u8]> = entries
                .iter()
                .map(|e| p.scored.settings[e.0].as_slice())
                .collect();
            if (prices.resident)(&super::cascade::union(&bits))? <= r {
                break;
            }
            entries.pop();
        }
    }
    let codebook: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| p.scored.settings[e.0].clone())
        .collect();
    let e_full = entries.iter().map(|e| e.2).fold(0f64, f64::max).max(1e-30);
    let energy: Vec<f64> = entries.iter().map(|e| e.2 / e_full).collect();
    let miss: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            entries
                .iter()
                .map(|e| f64::from(u8::from(!p.scored.agree[e.0][i])))
                .collect()
        })
        .collect();
    let d = p.features[0].len();
    let mean: Vec<f64> = (0..d)
        .map(|j| p.features.iter().map(|f| f[j] as f64).sum::<f64>() / n as f64)
        .collect();
    let std: Vec<f64> = (0..d)
        .map(|j| {
            let v = p
                .features
                .iter()
                .map(|f| (f[j] as f64 - mean[j]).powi(2))
                .sum::<f64>()
                / n as f64;
            if v > 0.0 { v.sqrt() } else { 1.0 }
        })
        .collect();
    let x: Vec<Vec<f64>> = p
        .features
        .iter()
        .map(|f| (0..d).map(|j| (f[j] as f64 - mean[j]) / std[j]).collect())
        .collect();
    let shape = adaptive::Layout::of(p.q)?.gate_shape;
    // The average energy must hold beyond the training images (super::mean_within).
    let evaluate = |lambda: f64| -> Result<(NetworkChoice, bool)> {
        let net = train(&x, &miss, &energy, lambda, p.seed);
        let gate = quantize(&net, &mean, &std, p.sampling, &codebook)?;
        let (mut agree, mut e, mut e2, mut cycles, mut same) = (0usize, 0f64, 0f64, 0f64, 0usize);
        let mut histogram = vec![0; codebook.len()];
        for (i, (f, xi)) in p.features.iter().zip(&x).enumerate() {
            let k = gate.choose(f);
            let fz = net.forward(xi).2;
            same += usize::from(caq_model::qmodel::argmax(&fz) == k);
            histogram[k] += 1;
            agree += usize::from(p.scored.agree[entries[k].0][i]);
            e += entries[k].2;
            e2 += entries[k].2 * entries[k].2;
            cycles += entries[k].1.cycles as f64;
        }
        Ok((
            NetworkChoice {
                ops: gate.ops(shape),
                network: gate,
                lambda,
                seed: p.seed,
                agreement_pct: 100.0 * agree as f64 / n as f64,
                energy_j: e / n as f64,
                cycles: cycles / n as f64,
                histogram,
                integer_match_pct: 100.0 * same as f64 / n as f64,
            },
            super::mean_within(e, e2, n, budget),
        ))
    };
    // Bisection on log λ: the smallest λ within budget (more λ, cheaper picks).
    let (first, fits0) = evaluate(0.0)?;
    if fits0 {
        return Ok(Some(first));
    }
    let (mut lo, mut hi) = (-6.0f64, 6.0f64);
    let mut best: Option<NetworkChoice> = None;
    let (top, fits_top) = evaluate(10f64.powf(hi))?;
    if fits_top {
        best = Some(top);
    }
    for _ in 0..BISECTION_STEPS {
        let mid = 0.5 * (lo + hi);
        let (c, fits) = evaluate(10f64.powf(mid))?;
        if fits {
            hi = mid;
            if best
                .as_ref()
                .is_none_or(|b| c.agreement_pct >= b.agreement_pct)
            {
                best = Some(c);
            }
        } else {
            lo = mid;
        }
    }
    Ok(best)
}
