//! Gates: for each context class, a bit-width per weight layer chosen from the model's nesting
//! levels under that class's budget (energy per inference, latency, resident weight bytes).
//!
//! How a gate is found (docs/gates.md):
//! 1. **Costs** ([`CostTable`]): the model is compiled for the accelerator config and the device's
//!    timing model predicts each layer's counters (cycles, plane steps, DMA bytes) at each level;
//!    a setting's counters are the per-layer sum plus the fixed cost of each START. Energy comes
//!    from an energy model over those counters; resident bytes from the plane groups a level
//!    streams. These are exactly the counters the functional device reports for the run.
//! 2. **Sensitivity** ([`Sensitivity`]): each layer alone is dropped to each lower level, the rest
//!    at full precision, and the integer model's logits are compared with the float model's on
//!    images from the training split (label-free, so nothing is tuned on the held-out set). The
//!    increase in mean squared logit error is the layer's cost of that level; the sum over layers
//!    is the proxy of a setting's error (quantization noise adds up when it is independent).
//! 3. **Allocation** ([`allocate`]): the settings within the budget that minimise the proxy, found
//!    exactly (every setting, when there are at most [`EXHAUSTIVE_LIMIT`]; otherwise a
//!    Pareto-front dynamic programme over layers, exact too, with the front thinned if it grows
//!    past [`FRONT_LIMIT`]); the best few and the best uniform setting within the budget are then
//!    scored on the images and the one that agrees most with the float model wins. So a gate is
//!    never worse than uniform precision of the same budget on the images it was chosen on.

use caq_driver::compile;
use caq_driver::context::{Budget, ContextPolicy};
use caq_driver::{HostError, Result};
use caq_model::data::Dataset;
use caq_model::qmodel::{Gate, QModel};
use caq_model::report::{self, Scores};
use caq_spec::{AccelConfig, DeviceAddr, PerfCounters};
use serde::Serialize;

/// Settings searched one by one below this count; above it, the Pareto-front programme.
pub const EXHAUSTIVE_LIMIT: usize = 1 << 16;
/// The most partial settings the Pareto-front programme keeps per layer.
pub const FRONT_LIMIT: usize = 4096;
/// Candidates (best proxies within the budget) scored on the images.
pub const CANDIDATES: usize = 12;

/// One weight layer's predicted counters and resident bytes at each of its levels.
#[derive(Clone, Debug, Serialize)]
pub struct LayerCost {
    pub name: String,
    /// Descending, as in the model.
    pub levels: Vec<u8>,
    /// Counters of the layer's descriptor at `levels[j]` (descriptor fetch included, START not).
    pub perf: Vec<PerfCounters>,
    /// Plane-group bytes the layer needs in device memory at `levels[j]`.
    pub resident: Vec<u64>,
}

/// What a per-layer setting costs, predicted.
#[derive(Clone, Debug, Serialize)]
pub struct SettingCost {
    pub perf: PerfCounters,
    pub energy_j: f64,
    /// `perf.cycles` at the config's clock.
    pub latency_s: f64,
    pub resident_bytes: u64,
}

/// The cost of every layer at every level on one accelerator config.
#[derive(Clone, Debug, Serialize)]
pub struct CostTable {
    pub config: String,
    pub clock_mhz: f64,
    /// Costs that do not depend on the precision: one START per device segment.
    pub fixed: PerfCounters,
    pub layers: Vec<LayerCost>,
    /// The program's descriptor lists, for the exact cost of a whole setting ([`CostTable::cost`]).
    #[serde(skip)]
    pub lists: Option<Lists>,
}

/// What the timing model needs to price a whole setting: the engine overlaps the descriptors of a
/// list (the next one's loads with the current one's compute), so a list's cycles are less than
/// the sum of its layers' alone.
#[derive(Clone, Debug)]
pub struct Lists {
    pub shape: caq_spec::CoreShape,
    /// Each device segment's layers, in list order.
    pub segments: Vec<std::ops::Range<usize>>,
    /// Layer i's descriptors (its list's, [`caq_driver::compile::DeviceLayer::list`]) at
    /// `levels[j]`.
    pub descs: Vec<Vec<Vec<caq_spec::LayerDescriptor>>>,
}

fn sub(a: &PerfCounters, b: &PerfCounters) -> PerfCounters {
    PerfCounters {
        cycles: a.cycles - b.cycles,
        busy_cycles: a.busy_cycles - b.busy_cycles,
        stall_cycles: a.stall_cycles - b.stall_cycles,
        plane_ops: a.plane_ops - b.plane_ops,
        bytes_rd: a.bytes_rd - b.bytes_rd,
        bytes_wr: a.bytes_wr - b.bytes_wr,
    }
}

impl CostTable {
    /// Compiles `q` for `cfg` and predicts every layer at every level with the device's timing
    /// model (the one the functional device charges, so the figures are what it reports).
    pub fn new(q: &QModel, cfg: &AccelConfig) -> Result<CostTable> {
        let timing = caq_sim::TimingModel::default();
        let shape = caq_spec::CoreShape::of(cfg);
        let levels = q.levels().to_vec();
        let mut program = compile::compile(q, cfg, &q.uniform_bits(levels[0]), DeviceAddr(0))?;
        let start = timing.estimate(&shape, &[]);
        let mut fixed = PerfCounters::default();
        let mut segments = Vec::new();
        for step in &program.steps {
            if let compile::Step::Device(seg) = step {
                fixed.add(&start);
                segments.push(seg.layers.clone());
            }
        }
        let mut descs: Vec<Vec<Vec<caq_spec::LayerDescriptor>>> =
            vec![Vec::new(); program.layers.len()];
        let mut layers: Vec<LayerCost> = program
            .layers
            .iter()
            .map(|l| LayerCost {
                name: l.name.clone(),
                levels: l.levels.clone(),
                perf: Vec::new(),
                resident: Vec::new(),
            })
            .collect();
        for &b in &levels {
            program.set_bits(&q.uniform_bits(b))?;
            for ((lc, d), l) in layers.iter_mut().zip(&mut descs).zip(&program.layers) {
                let j = l
                    .levels
                    .iter()
                    .position(|&x| x == b)
                    .ok_or_else(|| HostError::Arg {
                        what: "levels",
                        why: format!("layer '{}' has no level {b} ({:?})", l.name, l.levels),
                    })?;
                let groups = l.levels.len() - j;
                let list: Vec<_> = l.list().copied().collect();
                lc.perf.push(sub(&timing.estimate(&shape, &list), &start));
                lc.resident.push(l.group_bytes[..groups].iter().sum());
                d.push(list);
            }
        }
        Ok(CostTable {
            config: cfg.name.clone(),
            clock_mhz: cfg.clock_mhz,
            fixed,
            layers,
            lists: Some(Lists {
                shape,
                segments,
                descs,
            }),
        })
    }

    fn index(&self, layer: usize, bits: u8) -> Result<usize> {
        let l = &self.layers[layer];
        l.levels
            .iter()
            .position(|&x| x == bits)
            .ok_or_else(|| HostError::Arg {
                what: "bits",
                why: format!(
                    "layer '{}': {bits} bits is not one of its levels {:?}",
                    l.name, l.levels
                ),
            })
    }

    /// The counters and resident bytes of a setting; `energy` turns counters into joules. With
    /// the program's lists ([`CostTable::new`]) the counters are the timing model's for each whole
    /// list, what the device reports; without, the sum of the layers' own (an upper bound on the
    /// cycles, which the Pareto search uses to prune).
    pub fn cost(&self, bits: &[u8], energy: &dyn Fn(&PerfCounters) -> f64) -> Result<SettingCost> {
        compile::check_bits_len(bits, self.layers.len())?;
        let mut perf = self.fixed;
        let mut resident = 0;
        let mut level = Vec::with_capacity(bits.len());
        for (i, &b) in bits.iter().enumerate() {
            let j = self.index(i, b)?;
            perf.add(&self.layers[i].perf[j]);
            resident += self.layers[i].resident[j];
            level.push(j);
        }
        if let Some(lists) = &self.lists {
            let timing = caq_sim::TimingModel::default();
            perf = PerfCounters::default();
            for seg in &lists.segments {
                let descs: Vec<_> = seg
                    .clone()
                    .flat_map(|i| lists.descs[i][level[i]].iter().copied())
                    .collect();
                perf.add(&timing.estimate(&lists.shape, &descs));
            }
        }
        Ok(SettingCost {
            perf,
            energy_j: energy(&perf),
            latency_s: perf.cycles as f64 / (self.clock_mhz * 1e6),
            resident_bytes: resident,
        })
    }

    /// Every layer at its full level.
    pub fn full_bits(&self) -> Vec<u8> {
        self.layers.iter().map(|l| l.levels[0]).collect()
    }
}

/// Per-layer sensitivity: the scores with one layer alone at each level, the rest full.
#[derive(Clone, Debug, Serialize)]
pub struct Sensitivity {
    /// Images scored (from the training split).
    pub images: usize,
    /// Every layer at its full level.
    pub full: ScoreRow,
    /// `layers[i][j]`: layer `i` at `levels[j]` (j = 0 is the full model again).
    pub layers: Vec<Vec<ScoreRow>>,
}

/// Scores of one setting against the float model.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct ScoreRow {
    /// Top-1 agreement with the float model, %.
    pub agreement_pct: f64,
    /// RMS error of the dequantized logits against the float logits.
    pub logit_rmse: f64,
}

impl From<Scores> for ScoreRow {
    fn from(s: Scores) -> ScoreRow {
        ScoreRow {
            agreement_pct: s.agreement_pct,
            logit_rmse: s.logit_rmse,
        }
    }
}

impl Sensitivity {
    /// Measures it on `images` against the float logits `reference` (one per image).
    pub fn measure(q: &QModel, images: &Dataset, reference: &[Vec<f32>]) -> Result<Sensitivity> {
        let full_bits = q.uniform_bits(q.levels()[0]);
        let full: ScoreRow = report::score(q, &full_bits, images, reference)?.into();
        let mut layers = Vec::new();
        for i in 0..full_bits.len() {
            let mut row = vec![full];
            for &b in &q.levels()[1..] {
                let mut bits = full_bits.clone();
                bits[i] = b;
                row.push(report::score(q, &bits, images, reference)?.into());
            }
            layers.push(row);
        }
        Ok(Sensitivity {
            images: images.len(),
            full,
            layers,
        })
    }

    /// The additive error proxy of layer `i` at level index `j`: its increase in mean squared
    /// logit error over the full model (never negative).
    pub fn penalty(&self, i: usize, j: usize) -> f64 {
        (self.layers[i][j].logit_rmse.powi(2) - self.full.logit_rmse.powi(2)).max(0.0)
    }
}

/// A budget in absolute units, from a class's fractions of the full-precision costs.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Limits {
    pub energy_j: Option<f64>,
    pub cycles: Option<u64>,
    pub resident_bytes: Option<u64>,
}

impl Limits {
    pub fn from_budget(b: &Budget, full: &SettingCost) -> Limits {
        Limits {
            energy_j: b.energy_fraction.map(|f| f * full.energy_j),
            cycles: b
                .latency_fraction
                .map(|f| (f * full.perf.cycles as f64).floor() as u64),
            resident_bytes: b
                .resident_fraction
                .map(|f| (f * full.resident_bytes as f64).floor() as u64),
        }
    }

    pub fn admits(&self, c: &SettingCost) -> bool {
        self.energy_j
            .is_none_or(|e| c.energy_j <= e * (1.0 + 1e-12))
            && self.cycles.is_none_or(|l| c.perf.cycles <= l)
            && self.resident_bytes.is_none_or(|r| c.resident_bytes <= r)
    }
}

/// A setting with its predicted cost and proxy error.
#[derive(Clone, Debug, Serialize)]
pub struct Candidate {
    pub bits: Vec<u8>,
    pub cost: SettingCost,
    pub proxy: f64,
}

/// How the search went.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub enum Search {
    /// Every setting was costed.
    Exhaustive { settings: usize },
    /// Pareto-front programme; `thinned` when a front was cut to [`FRONT_LIMIT`] (then the
    /// result is near-exact rather than exact).
    Pareto { largest_front: usize, thinned: bool },
}

/// The best settings within `limits` by the proxy, best first (at most `keep`), and how they were
/// found. Empty when nothing fits.
pub fn allocate(
    costs: &CostTable,
    sens: &Sensitivity,
    limits: &Limits,
    energy: &dyn Fn(&PerfCounters) -> f64,
    keep: usize,
) -> Result<(Vec<Candidate>, Search)> {
    let n = costs.layers.len();
    let total: usize = costs
        .layers
        .iter()
        .map(|l| l.levels.len())
        .try_fold(1usize, |a, k| a.checked_mul(k))
        .unwrap_or(usize::MAX);
    let mut found = Vec::new();
    let search;
    if total <= EXHAUSTIVE_LIMIT {
        let mut idx = vec![0usize; n];
        for _ in 0..total {
            let bits: Vec<u8> = idx
                .iter()
                .zip(&costs.layers)
                .map(|(&j, l)| l.levels[j])
                .collect();
            let cost = costs.cost(&bits, energy)?;
            if limits.admits(&cost) {
                let proxy = idx
                    .iter()
                    .enumerate()
                    .map(|(i, &j)| sens.penalty(i, j))
                    .sum();
                found.push(Candidate { bits, cost, proxy });
            }
            // The next setting: count up in mixed radix, layer 0 fastest.
            for (j, l) in idx.iter_mut().zip(&costs.layers) {
                *j += 1;
                if *j < l.levels.len() {
                    break;
                }
                *j = 0;
            }
        }
        search = Search::Exhaustive { settings: total };
    } else {
        let (cands, largest, thinned) = pareto(costs, sens, limits, energy)?;
        found = cands;
        search = Search::Pareto {
            largest_front: largest,
            thinned,
        };
    }
    found.sort_by(|a, b| {
        a.proxy
            .total_cmp(&b.proxy)
            .then(a.cost.energy_j.total_cmp(&b.cost.energy_j))
    });
    found.truncate(keep);
    Ok((found, search))
}

/// Partial settings over the first layers: (level indices, counters, resident, proxy).
type Partial = (Vec<usize>, PerfCounters, u64, f64);

/// The Pareto-front programme: layer by layer, keep the partial settings no other partial setting
/// beats on every budgeted resource and the proxy at once, and drop those that cannot fit even
/// with the cheapest levels of the remaining layers.
fn pareto(
    costs: &CostTable,
    sens: &Sensitivity,
    limits: &Limits,
    energy: &dyn Fn(&PerfCounters) -> f64,
) -> Result<(Vec<Candidate>, usize, bool)> {
    let n = costs.layers.len();
    // The cheapest completion of layers i.. in each resource (levels are ordered, the lowest is
    // the cheapest in every resource the timing model charges).
    let mut rest = vec![(PerfCounters::default(), 0u64); n + 1];
    for i in (0..n).rev() {
        let l = &costs.layers[i];
        let last = l.levels.len() - 1;
        let mut p = rest[i + 1].0;
        p.add(&l.perf[last]);
        rest[i] = (p, rest[i + 1].1 + l.resident[last]);
    }
    let key = |perf: &PerfCounters, res: u64| -> [f64; 3] {
        [energy(perf), perf.cycles as f64, res as f64]
    };
    let mut front: Vec<Partial> = vec![(Vec::new(), costs.fixed, 0, 0.0)];
    let (mut largest, mut thinned) = (1, false);
    for i in 0..n {
        let l = &costs.layers[i];
        let mut next: Vec<Partial> = Vec::new();
        for (idx, perf, res, proxy) in &front {
            for j in 0..l.levels.len() {
                let mut p = *perf;
                p.add(&l.perf[j]);
                let r = res + l.resident[j];
                let mut bound = p;
                bound.add(&rest[i + 1].0);
                let c = SettingCost {
                    perf: bound,
                    energy_j: energy(&bound),
                    latency_s: 0.0,
                    resident_bytes: r + rest[i + 1].1,
                };
                if !limits.admits(&c) {
                    continue;
                }
                let mut v = idx.clone();
                v.push(j);
                next.push((v, p, r, proxy + sens.penalty(i, j)));
            }
        }
        // Non-dominated filter: sort by proxy, keep an entry unless an earlier one is no worse in
        // every resource.
        next.sort_by(|a, b| a.3.total_cmp(&b.3));
        let mut kept: Vec<(Partial, [f64; 3])> = Vec::new();
        for e in next {
            let k = key(&e.1, e.2);
            if !kept
                .iter()
                .any(|(_, o)| o.iter().zip(&k).all(|(x, y)| x <= y))
            {
                kept.push((e, k));
            }
        }
        largest = largest.max(kept.len());
        if kept.len() > FRONT_LIMIT {
            thinned = true;
            kept.truncate(FRONT_LIMIT);
        }
        front = kept.into_iter().map(|(e, _)| e).collect();
    }
    let mut out = Vec::new();
    for (idx, _, _, proxy) in front {
        let bits: Vec<u8> = idx
            .iter()
            .enumerate()
            .map(|(i, &j)| costs.layers[i].levels[j])
            .collect();
        let cost = costs.cost(&bits, energy)?;
        if limits.admits(&cost) {
            out.push(Candidate { bits, cost, proxy });
        }
    }
    Ok((out, largest, thinned))
}

/// One gate as built, with the uniform precision it is compared with.
#[derive(Clone, Debug, Serialize)]
pub struct GateChoice {
    /// The context class (and gate) name.
    pub name: String,
    pub budget: Budget,
    pub limits: Limits,
    pub bits: Vec<u8>,
    pub cost: SettingCost,
    /// Scores on the selection images.
    pub score: ScoreRow,
    pub proxy: f64,
    /// The highest uniform precision within the same budget, if any fits.
    pub uniform: Option<UniformChoice>,
    pub search: Search,
    /// Candidates scored on the images.
    pub scored: usize,
    /// False when no setting fits the budget and the gate is the cheapest setting instead.
    pub within_budget: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct UniformChoice {
    pub bits: u8,
    pub cost: SettingCost,
    pub score: ScoreRow,
}

/// Everything `build` found.
#[derive(Clone, Debug, Serialize)]
pub struct GateBuild {
    pub costs: CostTable,
    pub full: SettingCost,
    pub sensitivity: Sensitivity,
    pub gates: Vec<GateChoice>,
}

impl GateBuild {
    /// The gates to store in the bundle.
    pub fn gates(&self) -> Vec<Gate> {
        self.gates
            .iter()
            .map(|g| Gate {
                name: g.name.clone(),
                bits: g.bits.clone(),
            })
            .collect()
    }
}

/// Builds one gate per class of `policy` (see the module documentation). `images` are the
/// selection images (from the training split) and `reference` the float model's logits on them.
/// A class whose budget nothing fits gets the cheapest setting, `within_budget` false, and a
/// warning through `progress`.
pub fn build(
    q: &QModel,
    costs: CostTable,
    policy: &ContextPolicy,
    images: &Dataset,
    reference: &[Vec<f32>],
    energy: &dyn Fn(&PerfCounters) -> f64,
    mut progress: impl FnMut(&str),
) -> Result<GateBuild> {
    let full_bits = costs.full_bits();
    let full = costs.cost(&full_bits, energy)?;
    progress("per-layer sensitivity");
    let sens = Sensitivity::measure(q, images, reference)?;
    // Classes share candidates: score each setting once.
    let memo = std::cell::RefCell::new(std::collections::HashMap::<Vec<u8>, ScoreRow>::new());
    let score = |bits: &[u8]| -> Result<ScoreRow> {
        if let Some(s) = memo.borrow().get(bits) {
            return Ok(*s);
        }
        let s: ScoreRow = report::score(q, bits, images, reference)?.into();
        memo.borrow_mut().insert(bits.to_vec(), s);
        Ok(s)
    };
    let mut gates = Vec::new();
    for class in &policy.classes {
        progress(&format!("gate '{}'", class.name));
        let limits = Limits::from_budget(&class.budget, &full);
        let (mut cands, search) = allocate(&costs, &sens, &limits, energy, CANDIDATES)?;
        // The best uniform precision within the budget is always a candidate.
        let mut uniform = None;
        for &b in q.levels() {
            let bits = q.uniform_bits(b);
            let cost = costs.cost(&bits, energy)?;
            if limits.admits(&cost) {
                uniform = Some(UniformChoice {
                    bits: b,
                    cost: cost.clone(),
                    score: score(&bits)?,
                });
                if !cands.iter().any(|c| c.bits == bits) {
                    let proxy = (0..bits.len())
                        .map(|i| {
                            sens.penalty(i, q.levels().iter().position(|&x| x == b).unwrap_or(0))
                        })
                        .sum();
                    cands.push(Candidate { bits, cost, proxy });
                }
                break;
            }
        }
        // Nothing fits: the cheapest setting (every layer at its lowest level, the cheapest in
        // every resource) is the best the device can do; the gate says it misses its budget.
        let within_budget = !cands.is_empty();
        if !within_budget {
            let bits = lowest_bits(&costs);
            let cost = costs.cost(&bits, energy)?;
            progress(&format!(
                "warning: class '{}': no setting fits its budget ({}); its gate takes the lowest \
                 precision everywhere ({:.4} µJ, {} cycles, {} resident bytes; the full model \
                 {:.4} µJ, {} cycles, {} bytes)",
                class.name,
                class.budget,
                cost.energy_j * 1e6,
                cost.perf.cycles,
                cost.resident_bytes,
                full.energy_j * 1e6,
                full.perf.cycles,
                full.resident_bytes
            ));
            let proxy = (0..bits.len())
                .map(|i| sens.penalty(i, costs.layers[i].levels.len() - 1))
                .sum();
            cands.push(Candidate { bits, cost, proxy });
        }
        let mut best: Option<(Candidate, ScoreRow)> = None;
        let scored = cands.len();
        for c in cands {
            let s = score(&c.bits)?;
            let better = match &best {
                None => true,
                Some((bc, bs)) => {
                    s.agreement_pct > bs.agreement_pct
                        || (s.agreement_pct == bs.agreement_pct
                            && (s.logit_rmse, c.cost.energy_j) < (bs.logit_rmse, bc.cost.energy_j))
                }
            };
            if better {
                best = Some((c, s));
            }
        }
        let (c, s) = best.expect("non-empty candidates");
        gates.push(GateChoice {
            name: class.name.clone(),
            budget: class.budget.clone(),
            limits,
            bits: c.bits,
            cost: c.cost,
            score: s,
            proxy: c.proxy,
            uniform,
            search,
            scored,
            within_budget,
        });
    }
    Ok(GateBuild {
        costs,
        full,
        sensitivity: sens,
        gates,
    })
}

fn lowest_bits(costs: &CostTable) -> Vec<u8> {
    costs
        .layers
        .iter()
        .map(|l| *l.levels.last().expect("levels"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A made-up table: `n` layers with levels [8, 4, 3, 2], costs proportional to the bits
    /// times a random per-layer size, penalties growing as the bits fall.
    fn synthetic(n: usize, seed: u64) -> (CostTable, Sensitivity) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let levels = vec![8u8, 4, 3, 2];
        let mut layers = Vec::new();
        let mut sens = Vec::new();
        for i in 0..n {
            let size = rng.random_range(1..50u64);
            let weight: f64 = rng.random_range(0.1..3.0);
            layers.push(LayerCost {
                name: format!("l{i}"),
                levels: levels.clone(),
                perf: levels
                    .iter()
                    .map(|&b| PerfCounters {
                        cycles: size * u64::from(b) + 7,
                        busy_cycles: size * u64::from(b),
                        plane_ops: size * u64::from(b),
                        bytes_rd: size * u64::from(b) * 8,
                        ..PerfCounters::default()
                    })
                    .collect(),
                resident: levels.iter().map(|&b| size * u64::from(b) * 4).collect(),
            });
            sens.push(
                levels
                    .iter()
                    .map(|&b| ScoreRow {
                        agreement_pct: 100.0,
                        // Level 0 is the full model itself, as `Sensitivity::measure` gives it.
                        logit_rmse: if b == 8 {
                            0.1f64.sqrt()
                        } else {
                            (0.1f64 + weight * 2f64.powi(-(i32::from(b)))).sqrt()
                        },
                    })
                    .collect(),
            );
        }
        let full = ScoreRow {
            agreement_pct: 100.0,
            logit_rmse: 0.1f64.sqrt(),
        };
        (
            CostTable {
                config: "test".into(),
                clock_mhz: 100.0,
                fixed: PerfCounters {
                    cycles: 20,
                    ..PerfCounters::default()
                },
                layers,
                lists: None,
            },
            Sensitivity {
                images: 0,
                full,
                layers: sens,
            },
        )
    }

    fn energy(p: &PerfCounters) -> f64 {
        p.plane_ops as f64 * 1e-9 + p.bytes_rd as f64 * 2e-11 + p.cycles as f64 * 1e-10
    }

    #[test]
    fn pareto_programme_finds_the_exhaustive_optimum() {
        let seed: u64 = rand::rng().random();
        eprintln!("CAQ_SEED={seed}");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for case in 0..40 {
            let n = rng.random_range(1..7);
            let (costs, sens) = synthetic(n, rng.random());
            let full = costs.cost(&costs.full_bits(), &energy).unwrap();
            let limits = Limits {
                energy_j: (case % 3 != 1).then(|| full.energy_j * rng.random_range(0.2..1.0)),
                cycles: (case % 3 == 1)
                    .then(|| (full.perf.cycles as f64 * rng.random_range(0.2..1.0)) as u64),
                resident_bytes: (case % 2 == 0)
                    .then(|| (full.resident_bytes as f64 * rng.random_range(0.2..1.0)) as u64),
            };
            let (ex, s) = allocate(&costs, &sens, &limits, &energy, 1).unwrap();
            assert!(matches!(s, Search::Exhaustive { .. }));
            let (pa, _, thinned) = pareto(&costs, &sens, &limits, &energy).unwrap();
            assert!(!thinned);
            let best_pa = pa.iter().map(|c| c.proxy).fold(f64::INFINITY, f64::min);
            match ex.first() {
                None => assert!(pa.is_empty(), "case {case}: pareto found a setting"),
                Some(e) => {
                    assert!(limits.admits(&e.cost));
                    assert!(
                        (e.proxy - best_pa).abs() <= 1e-12 * e.proxy.max(1.0),
                        "case {case}: exhaustive {} vs pareto {best_pa}",
                        e.proxy
                    );
                    // Nothing cheaper in proxy fits: the optimum is the optimum.
                    for c in &pa {
                        assert!(limits.admits(&c.cost));
                    }
                }
            }
        }
    }

    #[test]
    fn an_unlimited_budget_keeps_full_precision_and_a_tight_one_the_lowest() {
        let (costs, sens) = synthetic(5, 3);
        let (c, _) = allocate(&costs, &sens, &Limits::default(), &energy, 3).unwrap();
        assert_eq!(c[0].bits, vec![8; 5]);
        assert_eq!(c[0].proxy, 0.0);
        let low = costs.cost(&[2; 5], &energy).unwrap();
        let limits = Limits {
            energy_j: Some(low.energy_j),
            ..Limits::default()
        };
        let (c, _) = allocate(&costs, &sens, &limits, &energy, 3).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].bits, vec![2; 5]);
        let limits = Limits {
            energy_j: Some(low.energy_j * 0.99),
            ..Limits::default()
        };
        assert!(
            allocate(&costs, &sens, &limits, &energy, 3)
                .unwrap()
                .0
                .is_empty()
        );
    }

    #[test]
    fn costs_add_up_per_layer_and_bad_settings_are_refused() {
        let (costs, _) = synthetic(3, 9);
        let c = costs.cost(&[8, 4, 2], &energy).unwrap();
        let l = &costs.layers;
        assert_eq!(
            c.perf.cycles,
            20 + l[0].perf[0].cycles + l[1].perf[1].cycles + l[2].perf[3].cycles
        );
        assert_eq!(
            c.resident_bytes,
            l[0].resident[0] + l[1].resident[1] + l[2].resident[3]
        );
        assert_eq!(c.latency_s, c.perf.cycles as f64 / 100e6);
        let e = costs.cost(&[8, 5, 2], &energy).unwrap_err().to_string();
        assert!(e.contains("'l1'") && e.contains("5 bits"), "{e}");
        assert!(costs.cost(&[8, 4], &energy).is_err());
    }
}
