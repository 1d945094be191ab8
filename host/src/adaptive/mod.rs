//! Input-adaptive gating, host side: what each pass of an adaptive inference costs on the
//! accelerator ([`PassPricer`]), the calibration of confidence cascades ([`cascade`]) and the
//! training of gate networks ([`network`]) on training images, inside a context class's budget
//! on average. The rules that pick a setting per input live in `caq_model::adaptive`; the driver
//! applies them (`Accelerator::infer_adaptive`). docs/gates.md, "Input-adaptive gating".

pub mod cascade;
pub mod network;

use caq_driver::compile::{self, PassStart, PassStep, Program};
use caq_driver::{HostError, Result};
use caq_model::adaptive::{Adaptive, Pass};
use caq_model::data::Dataset;
use caq_model::qmodel::QModel;
use caq_spec::{AccelConfig, CoreShape, DeviceAddr, PerfCounters};
use std::collections::HashMap;

/// One-sided z of the confidence with which a policy's average-energy limit must hold beyond its
/// calibration images (95 %, normal approximation). The calibration images are a sample: a
/// policy whose mean sits exactly at the limit on them exceeds it on about half of all other
/// image sets, since which inputs escalate (or which setting a gate picks) varies from set to set.
pub const BUDGET_Z: f64 = 1.645;

/// Whether per-image energies with sum `sum` and sum of squares `sumsq` over `n` images keep
/// their mean within `limit` with [`BUDGET_Z`]'s confidence: `mean + z · sd / √n ≤ limit`
/// (a hair of float noise allowed). A policy that runs one setting for every input has no spread,
/// so its limit is the plain one.
pub fn mean_within(sum: f64, sumsq: f64, n: usize, limit: f64) -> bool {
    if n == 0 {
        return true;
    }
    let nf = n as f64;
    let mean = sum / nf;
    let var = (sumsq / nf - mean * mean).max(0.0);
    mean + BUDGET_Z * (var / nf).sqrt() <= limit * (1.0 + 1e-12) + 1e-30
}

/// The standard error, in percentage points, of the accuracy difference between two policies
/// scored on the same images (`a[i]`, `b[i]`: whether each got image i right): the standard
/// deviation of the per-image differences over √n. Only the images where the two disagree
/// contribute, so it says how many images a difference in points rests on: +0.5 points on 2000
/// images is 10 images, and a difference within about two of these is what another sample of
/// images could undo.
pub fn paired_points_se(a: &[bool], b: &[bool]) -> f64 {
    let n = a.len().min(b.len());
    if n < 2 {
        return 0.0;
    }
    let d: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(u8::from(x)) - f64::from(u8::from(y)))
        .collect();
    let mean = d.iter().sum::<f64>() / n as f64;
    let var = d.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1) as f64;
    100.0 * (var / n as f64).sqrt()
}

/// The device counters of passes over a compiled model, from the timing model the functional
/// device charges (so they are what it reports, START for START).
pub struct PassPricer {
    program: Program,
    timing: caq_sim::TimingModel,
    shape: CoreShape,
    memo: HashMap<(Vec<u8>, PassStart, Option<usize>), PerfCounters>,
}

impl PassPricer {
    /// Compiles `q` for `cfg` at `base` (the device address the model is loaded at: the DMA's
    /// 4 KiB boundaries depend on it).
    pub fn new(q: &QModel, cfg: &AccelConfig, base: DeviceAddr) -> Result<PassPricer> {
        let bits = q.uniform_bits(q.levels()[0]);
        Ok(PassPricer {
            program: compile::compile(q, cfg, &bits, base)?,
            timing: caq_sim::TimingModel::default(),
            shape: CoreShape::of(cfg),
            memo: HashMap::new(),
        })
    }

    pub fn layers(&self) -> usize {
        self.program.layers.len()
    }

    /// The counters of one pass at `bits` (see `Program::pass`): one START per piece of a
    /// segment it runs.
    pub fn pass(
        &mut self,
        bits: &[u8],
        start: PassStart,
        stop: Option<usize>,
    ) -> Result<PerfCounters> {
        let key = (bits.to_vec(), start, stop);
        if let Some(p) = self.memo.get(&key) {
            return Ok(*p);
        }
        self.program.set_bits(bits)?;
        let mut perf = PerfCounters::default();
        for step in self.program.pass(start, stop)? {
            if let PassStep::Device { layers, .. } = step {
                let descs: Vec<_> = self.program.layers[layers]
                    .iter()
                    .flat_map(|l| l.list().copied())
                    .collect();
                perf.add(&self.timing.estimate(&self.shape, &descs));
            }
        }
        self.memo.insert(key, perf);
        Ok(perf)
    }

    /// The counters of the model's pass `pass` at `bits`, as `caq_model::adaptive::infer` asks
    /// for it.
    pub fn model_pass(&mut self, bits: &[u8], pass: Pass) -> Result<PerfCounters> {
        match pass {
            Pass::Full => self.pass(bits, PassStart::Input, None),
            Pass::From(i) => self.pass(bits, PassStart::Layer(i), None),
            Pass::FirstLayer => self.pass(bits, PassStart::Input, Some(0)),
            Pass::AfterFirst if self.layers() > 1 => self.pass(bits, PassStart::After(0), None),
            Pass::AfterFirst => Ok(PerfCounters::default()),
        }
    }

    /// The counters of an adaptive inference that took `passes` (`Outcome::passes`) under
    /// `policy`.
    pub fn outcome(
        &mut self,
        policy: Adaptive<'_>,
        passes: &[(usize, usize)],
    ) -> Result<PerfCounters> {
        let settings = policy.settings();
        let mut perf = PerfCounters::default();
        for (n, &(k, from)) in passes.iter().enumerate() {
            let pass = match (policy, n) {
                (Adaptive::Cascade(_), 0) => Pass::Full,
                (Adaptive::Cascade(_), _) => Pass::From(from),
                (Adaptive::Network(_), 0) => Pass::FirstLayer,
                (Adaptive::Network(_), _) => Pass::AfterFirst,
            };
            perf.add(&self.model_pass(&settings[k], pass)?);
        }
        Ok(perf)
    }
}

/// Candidate settings run on calibration images: per setting and image, whether its top-1
/// agrees with the float model's and its output [`caq_model::adaptive::margin`].
#[derive(Clone, Debug)]
pub struct Scored {
    pub settings: Vec<Vec<u8>>,
    /// `[setting][image]`.
    pub agree: Vec<Vec<bool>>,
    pub margin: Vec<Vec<i32>>,
}

/// Images per batch of the CPU backend while scoring.
const SCORE_BATCH: usize = 64;

impl Scored {
    /// Runs every setting on every image of `images` with the CPU backend (bit-exact with the
    /// golden model and the device) and compares its top-1 with `reference` (the float model's
    /// top-1 per image).
    pub fn new(
        q: &QModel,
        settings: Vec<Vec<u8>>,
        images: &Dataset,
        reference: &[usize],
    ) -> Result<Scored> {
        if reference.len() != images.len() {
            return Err(HostError::Arg {
                what: "reference",
                why: format!("{} labels for {} images", reference.len(), images.len()),
            });
        }
        let rows =
            caq_model::qmodel::par_map(settings.len(), |k| -> Result<(Vec<bool>, Vec<i32>)> {
                let plan = caq_cpu::CpuModel::new(q, &settings[k], caq_cpu::Engine::Auto).map_err(
                    |e| HostError::Arg {
                        what: "setting",
                        why: format!("{:?}: {e}", settings[k]),
                    },
                )?;
                let len = plan.input_len();
                let (mut agree, mut margin) = (Vec::new(), Vec::new());
                for first in (0..images.len()).step_by(SCORE_BATCH) {
                    let count = SCORE_BATCH.min(images.len() - first);
                    let outs = plan
                        .infer_batch(&images.pixels[first * len..(first + count) * len], count)
                        .map_err(|e| HostError::Arg {
                            what: "setting",
                            why: format!("{:?}: {e}", settings[k]),
                        })?;
                    for (j, o) in outs.iter().enumerate() {
                        agree.push(caq_model::qmodel::argmax(o) == reference[first + j]);
                        margin.push(caq_model::adaptive::margin(o));
                    }
                }
                Ok((agree, margin))
            });
        let mut agree = Vec::with_capacity(settings.len());
        let mut margin = Vec::with_capacity(settings.len());
        for r in rows {
            let (a, m) = r?;
            agree.push(a);
            margin.push(m);
        }
        Ok(Scored {
            settings,
            agree,
            margin,
        })
    }

    pub fn images(&self) -> usize {
        self.agree.first().map_or(0, Vec::len)
    }

    /// The index of `bits` among the settings.
    pub fn index(&self, bits: &[u8]) -> Option<usize> {
        self.settings.iter().position(|s| s == bits)
    }

    /// Image indices by setting `k`'s margin, least confident first (ties by index).
    pub fn order_by_margin(&self, k: usize) -> Vec<usize> {
        let m = &self.margin[k];
        let mut order: Vec<usize> = (0..m.len()).collect();
        order.sort_by_key(|&i| (m[i], i));
        order
    }

    /// Agreement of setting `k` alone, %.
    pub fn agreement_pct(&self, k: usize) -> f64 {
        100.0 * self.agree[k].iter().filter(|&&a| a).count() as f64 / self.images().max(1) as f64
    }
}

/// The candidate settings of a search: the settings no other beats in both predicted energy
/// and the sensitivity proxy (every setting is enumerated when there are at most
/// [`crate::gates::EXHAUSTIVE_LIMIT`]), thinned to `max` spread evenly over the energy range,
/// plus `extra` (the static gates, uniform precisions), without repeats.
pub fn candidates(
    pricer: &mut PassPricer,
    sens: &crate::gates::Sensitivity,
    levels: &[Vec<u8>],
    energy: &dyn Fn(&PerfCounters) -> f64,
    max: usize,
    extra: &[Vec<u8>],
) -> Result<Vec<Vec<u8>>> {
    let total = levels
        .iter()
        .map(Vec::len)
        .try_fold(1usize, |a, k| a.checked_mul(k))
        .unwrap_or(usize::MAX);
    let mut front: Vec<(f64, f64, Vec<u8>)> = Vec::new();
    if total <= crate::gates::EXHAUSTIVE_LIMIT {
        let mut all = Vec::with_capacity(total);
        let mut idx = vec![0usize; levels.len()];
        for _ in 0..total {
            let bits: Vec<u8> = idx.iter().zip(levels).map(|(&j, l)| l[j]).collect();
            let e = energy(&pricer.pass(&bits, PassStart::Input, None)?);
            let proxy: f64 = idx
                .iter()
                .enumerate()
                .map(|(i, &j)| sens.penalty(i, j))
                .sum();
            all.push((e, proxy, bits));
            for (j, l) in idx.iter_mut().zip(levels) {
                *j += 1;
                if *j < l.len() {
                    break;
                }
                *j = 0;
            }
        }
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let mut best = f64::INFINITY;
        for c in all {
            if c.1 < best {
                best = c.1;
                front.push(c);
            }
        }
    }
    let mut out: Vec<Vec<u8>> = Vec::new();
    if front.len() <= max {
        out.extend(front.into_iter().map(|c| c.2));
    } else if max > 0 {
        for j in 0..max {
            let i = j * (front.len() - 1) / (max - 1).max(1);
            out.push(front[i].2.clone());
        }
    }
    for e in extra {
        out.push(e.clone());
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|s| seen.insert(s.clone()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_se_counts_only_disagreements() {
        // Identical outcomes: no spread, whatever the accuracy.
        let a = [true, false, true, true];
        assert_eq!(paired_points_se(&a, &a), 0.0);
        // 100 images, the policy right on 2 the static gate missed and wrong on none it got:
        // d has two 1s and 98 0s; mean 0.02, sample variance (2·0.98² + 98·0.02²)/99.
        let mut p = vec![true; 100];
        let mut s = vec![true; 100];
        s[3] = false;
        s[70] = false;
        p[50] = false;
        s[50] = false;
        let var: f64 = (2.0 * 0.98f64.powi(2) + 98.0 * 0.02f64.powi(2)) / 99.0;
        let want = 100.0 * (var / 100.0).sqrt();
        assert!((paired_points_se(&p, &s) - want).abs() < 1e-12);
        // A swap (one gained, one lost) is zero points but not zero error.
        let mut q = vec![true; 100];
        q[3] = false;
        let mut r = vec![true; 100];
        r[4] = false;
        assert!(paired_points_se(&q, &r) > 0.1);
    }

    #[test]
    fn mean_within_adds_the_standard_error() {
        // Per-image energies 1 and 3 (half each): mean 2, sd 1; with 100 images the s.e. is
        // 0.1, so the mean holds within 2.2 but not within 2.1.
        let (sum, sumsq) = (50.0 * 1.0 + 50.0 * 3.0, 50.0 * 1.0 + 50.0 * 9.0);
        assert!(mean_within(sum, sumsq, 100, 2.0 + BUDGET_Z * 0.1 + 1e-9));
        assert!(!mean_within(sum, sumsq, 100, 2.1));
        // No spread: the plain limit.
        assert!(mean_within(200.0, 400.0, 100, 2.0));
    }
}
