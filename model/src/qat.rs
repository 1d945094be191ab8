//! Nested-aware quantization-aware training (behind the `train` feature). Fine-tunes a float
//! model so that one nested bundle is good at every nesting level: each step runs the batch once
//! per level with that level's fake-quantized weights and sums the weighted cross-entropies
//! (Any-Precision / AdaBits style joint training; Wang et al. 2023 fine-tune under the deployed
//! constraint). Gradients pass the quantizer straight through (STE): the forward pass sees
//! `w + (q(w) − w)` with the difference a constant.
//!
//! The fake quantizer is `nested::fake_quantize`, the very code `qmodel::quantize` runs, with
//! round-to-nearest, so at the end of training the integer model is the model the last step saw
//! (up to the activations, which stay float here: caq's activations are 8-bit, and their
//! calibration happens after training as for any float model).
//!
//! The bundle shipped is then composed level by level (`finetune_nested`, `compose_levels`),
//! each level's codes chosen on validation images, in one of two ways: from the joint training's
//! bundle, from the lowest level up, among the joint training's codes, a full-bit fine-tune's,
//! the starting model's and a fine-tune of that level alone on the bundle's scales and within the
//! nesting band the level below leaves it (`finetune_level`); or from the post-training bundle,
//! its full-bit codes kept exactly and each lower level chosen from the top down within the band
//! the level above leaves it (`Order::TopDown`). The second is shipped (`NestedQat::shipped`
//! says why); the first is reported beside it.

use crate::data::Dataset;
use crate::error::{ModelError, Result};
use crate::graph::FloatModel;
use crate::nested;
use crate::qmodel::{self, QLayer, QModel, QuantizeConfig};
use crate::quant::{Rounding, WeightQuantConfig, code_range, scale_at};
use crate::train::{Net, Schedule, as_f32, candle_accuracy, candle_err, check_inputs, run_epochs};
use candle_core::{Device, Tensor};
use ndarray::{Array2, ArrayView2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Settings of one nested-aware fine-tuning run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QatConfig {
    /// Nesting levels, strictly descending (`[8, 4, 2]`); `[b]` trains a dedicated b-bit model.
    pub levels: Vec<u8>,
    /// Weight of each level's loss, one per level (e.g. how often the gates use it).
    pub level_weights: Vec<f32>,
    /// Local quantization regions, as in `QuantizeConfig::group_size`.
    pub group_size: Option<usize>,
    /// Choose each channel's full-bit scale for the error over all levels (as `quantize` does
    /// with `nest_clip`); recomputed every step from the current weights.
    pub nest_clip: bool,
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak AdamW learning rate, cosine-annealed to zero over the run.
    pub lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
    /// Self-distillation: each level's loss is `(1 − distill)·CE(labels) + distill·CE(teacher)`,
    /// the teacher being the starting float model's softmax (frozen). 0 turns it off.
    pub distill: f32,
}

impl QatConfig {
    /// Measured defaults (MNIST LeNet 8⊃6⊃4⊃3⊃2, docs/qat.md): 3 epochs from the trained float
    /// model, peak learning rate 1e-3, all levels weighted alike, nesting-aware scales, half of
    /// each level's loss from the starting model's softmax. Without distillation the 2-bit level
    /// landed 0.7 points below a dedicated 2-bit model (lr 5e-4, 8-bit weighted 3×); with it,
    /// every level is within 0.5 points.
    pub fn new(levels: &[u8]) -> Self {
        QatConfig {
            levels: levels.to_vec(),
            level_weights: vec![1.0; levels.len()],
            group_size: None,
            nest_clip: true,
            epochs: 3,
            batch_size: 32,
            lr: 1e-3,
            weight_decay: 0.0,
            seed: 0,
            distill: 0.5,
        }
    }

    /// The quantization that turns the fine-tuned float model into the integer model training
    /// simulated: the same levels, regions and scale choice, round-to-nearest.
    pub fn quantize_config(&self) -> QuantizeConfig {
        QuantizeConfig {
            rounding: Rounding::Nearest,
            group_size: self.group_size,
            nest_clip: self.nest_clip,
            clip_search: false,
            ..QuantizeConfig::nested(&self.levels)
        }
    }

    fn check(&self) -> Result<()> {
        let levels = &self.levels;
        if levels.is_empty() || levels.iter().any(|b| !(2..=8).contains(b)) {
            return Err(ModelError::arg(
                "levels",
                format!("every level must be a bit-width in 2..=8, found {levels:?}"),
            ));
        }
        if levels.windows(2).any(|p| p[0] <= p[1]) {
            return Err(ModelError::arg(
                "levels",
                format!("must be strictly descending, found {levels:?}"),
            ));
        }
        if self.level_weights.len() != levels.len() {
            return Err(ModelError::arg(
                "level_weights",
                format!(
                    "{} weights for {} levels {levels:?}",
                    self.level_weights.len(),
                    levels.len()
                ),
            ));
        }
        if self
            .level_weights
            .iter()
            .any(|w| !(w.is_finite() && *w >= 0.0))
            || self.level_weights.iter().sum::<f32>() <= 0.0
        {
            return Err(ModelError::arg(
                "level_weights",
                format!(
                    "must be finite, >= 0 and not all 0, found {:?}",
                    self.level_weights
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.distill) {
            return Err(ModelError::arg(
                "distill",
                format!("{} must be in 0..=1", self.distill),
            ));
        }
        Ok(())
    }
}

/// What a fine-tuning run did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QatReport {
    pub epochs: usize,
    /// Mean weighted loss over the last epoch (normalised by the sum of the level weights).
    pub final_loss: f32,
    /// Mean cross-entropy of each level over the last epoch, in `levels` order (NaN for a level
    /// weighted 0, which is not run).
    pub level_losses: Vec<f32>,
    /// Accuracy on the training set of the float weights (not fake-quantized).
    pub train_accuracy: f32,
    pub seconds: f64,
}

/// Fine-tunes `model` on `train_set` with every nesting level of `cfg` fake-quantized in each
/// step. Reproducible for a given seed. The result is a float model; quantize it with
/// `cfg.quantize_config()` (calibrating activations on the training data) to get the bundle.
pub fn finetune(
    model: &FloatModel,
    train_set: &Dataset,
    cfg: &QatConfig,
    progress: bool,
) -> Result<(FloatModel, QatReport)> {
    cfg.check()?;
    let layers = weight_layers(model);
    let wcfg = WeightQuantConfig {
        bits: cfg.levels[0],
        rounding: Rounding::Nearest,
        group_size: cfg.group_size,
        clip_search: false,
    };
    train_levels(model, model, train_set, cfg, false, progress, |net| {
        fake_weights(net, &layers, &wcfg, cfg)
    })
}

/// Fine-tunes `start` for one level of the nested bundle `q` alone, on `q`'s grid: level `j`
/// (`q.levels()[j]`, b bits) with `cfg`'s recipe, every step's forward pass seeing each weight
/// layer's b-bit codes on `q`'s scales (nearest, in the signed b-bit range), kept in the band
/// that `fixed[layer]` leaves it (the codes already chosen for the level it nests with in
/// `order`, when there is one: `Order::project`), the difference passed straight through.
/// Biases are held, because the bundle keeps its own; the teacher of the distillation is
/// `teacher`.
#[allow(clippy::too_many_arguments)]
pub fn finetune_level(
    start: &FloatModel,
    teacher: &FloatModel,
    q: &QModel,
    j: usize,
    order: Order,
    fixed: &[Option<Array2<i32>>],
    train_set: &Dataset,
    cfg: &QatConfig,
    progress: bool,
) -> Result<(FloatModel, QatReport)> {
    let levels = q.levels();
    let Some(&b) = levels.get(j) else {
        return Err(ModelError::arg(
            "level",
            format!("no level {j} in the bundle's {levels:?}"),
        ));
    };
    let nests = order.neighbour(j, levels.len()).is_some();
    let one = QatConfig {
        levels: vec![b],
        level_weights: vec![1.0],
        ..cfg.clone()
    };
    one.check()?;
    if start.params.len() != q.layers.len() || fixed.len() != q.layers.len() {
        return Err(ModelError::arg(
            "start",
            format!(
                "the model has {} nodes, the bundle {}, the fixed codes {}",
                start.params.len(),
                q.layers.len(),
                fixed.len()
            ),
        ));
    }
    let layers = weight_layers(start);
    train_levels(start, teacher, train_set, &one, true, progress, |net| {
        let mut out = vec![None; net.graph.nodes.len()];
        for &(i, _) in &layers {
            let (Some((w, _)), Some(layer)) = (&net.params[i], &q.layers[i]) else {
                continue;
            };
            let w = w.as_tensor();
            let wa = tensor_matrix(w)?;
            let band = fixed[i].as_ref().filter(|_| nests);
            let fq = level_fake_quantize(wa.view(), layer, levels, j, order, band)?;
            let delta: Vec<f32> = fq.iter().zip(wa.iter()).map(|(q, w)| q - w).collect();
            let delta = Tensor::from_vec(delta, wa.dim(), &Device::Cpu).map_err(candle_err)?;
            out[i] = Some((w + delta).map_err(candle_err)?);
        }
        Ok(vec![out])
    })
}

/// What [`finetune_level`]'s forward pass sees of weights `w`: their codes at level `j` of
/// `levels` on `layer`'s scales ([`grid_codes`]), kept in the band the neighbour's codes `band`
/// leave them in `order` (`Order::project`), times the scale of a step of that level.
fn level_fake_quantize(
    w: ArrayView2<f32>,
    layer: &QLayer,
    levels: &[u8],
    j: usize,
    order: Order,
    band: Option<&Array2<i32>>,
) -> Result<Array2<f32>> {
    let (n, b) = (levels[0], levels[j]);
    let mut codes = grid_codes(w, layer, n, b)?;
    if let Some(fixed) = band {
        codes = order.project(levels, j, codes.view(), fixed.view());
    }
    let unit = f32::from(1u16 << (n - b));
    Ok(Array2::from_shape_fn(codes.dim(), |(r, k)| {
        codes[(r, k)] as f32 * scale_at(&layer.channel_scale, layer.groups.as_ref(), r, k) * unit
    }))
}

/// The weight nodes of `model`'s graph and their kernel lengths.
fn weight_layers(model: &FloatModel) -> Vec<(usize, usize)> {
    model
        .graph
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.op.weight_matrix_dims().map(|(_, _, kl)| (i, kl)))
        .collect()
}

/// A weight tensor `[rows, k]` as a matrix.
fn tensor_matrix(w: &Tensor) -> Result<Array2<f32>> {
    let (rows, k) = w.dims2().map_err(candle_err)?;
    let flat = w
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(candle_err)?;
    Array2::from_shape_vec((rows, k), flat).map_err(|e| ModelError::Train(e.to_string()))
}

/// The training loop of [`finetune`] and [`finetune_level`]: from `model`, each step runs the
/// batch once per level of `cfg` with that level's weights from `fake` and minimises the
/// level-weighted mean of the (distilled, from `teacher`) cross-entropies; biases are held when
/// `hold_biases`.
fn train_levels(
    model: &FloatModel,
    teacher: &FloatModel,
    train_set: &Dataset,
    cfg: &QatConfig,
    hold_biases: bool,
    progress: bool,
    mut fake: impl FnMut(&Net) -> Result<Vec<Vec<Option<Tensor>>>>,
) -> Result<(FloatModel, QatReport)> {
    check_inputs(train_set, cfg.batch_size, cfg.lr, cfg.weight_decay)?;
    if train_set.shape != model.graph.input_shape {
        return Err(ModelError::arg(
            "train_set",
            format!(
                "images are {:?} but the model takes {:?}",
                train_set.shape, model.graph.input_shape
            ),
        ));
    }
    let start = Instant::now();
    let net = Net::from_model(model)?;
    // The teacher: a frozen copy of the starting model (its variables are not optimised).
    let alpha = f64::from(cfg.distill);
    let teacher = if alpha > 0.0 {
        Some(Net::from_model(teacher)?)
    } else {
        None
    };
    let weight_sum: f32 = cfg.level_weights.iter().sum();
    let schedule = Schedule {
        epochs: cfg.epochs,
        batch_size: cfg.batch_size,
        lr: cfg.lr,
        weight_decay: cfg.weight_decay,
        prefix: format!("QAT {:?}", cfg.levels),
    };
    let (xs, ys) = as_f32(train_set);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let vars = if hold_biases {
        net.weight_vars()
    } else {
        net.vars()
    };
    // A quantizer error (e.g. a region size that does not divide K) surfaces as a candle error
    // inside the loop; keep the original to report it as it was.
    let mut quant_error: Option<ModelError> = None;
    let result = run_epochs(
        vars,
        train_set,
        &xs,
        &ys,
        &schedule,
        &mut rng,
        progress,
        |x, y| {
            let per_level = match fake(&net) {
                Ok(w) => w,
                Err(e) => {
                    let msg = e.to_string();
                    quant_error = Some(e);
                    candle_core::bail!("{msg}")
                }
            };
            let soft = match &teacher {
                Some(t) => Some(candle_nn::ops::softmax(&t.forward(x)?.detach(), 1)?),
                None => None,
            };
            let mut total: Option<Tensor> = None;
            let mut parts = Vec::with_capacity(per_level.len());
            for (weights, &lw) in per_level.iter().zip(&cfg.level_weights) {
                // A level weighted 0 adds nothing to the loss: skip its forward pass.
                if lw == 0.0 {
                    parts.push(f32::NAN);
                    continue;
                }
                let logits = net.forward_with(x, weights)?;
                let ce = candle_nn::loss::cross_entropy(&logits, y)?;
                parts.push(ce.to_scalar::<f32>()?);
                let loss = match &soft {
                    None => ce,
                    Some(p) => {
                        let log_q = candle_nn::ops::log_softmax(&logits, 1)?;
                        let kd = (p * log_q)?.sum(1)?.mean(0)?.neg()?;
                        ((ce * (1.0 - alpha))? + (kd * alpha)?)?
                    }
                };
                let term = (loss * f64::from(lw / weight_sum))?;
                total = Some(match total {
                    None => term,
                    Some(t) => (t + term)?,
                });
            }
            let Some(total) = total else {
                candle_core::bail!("no levels")
            };
            Ok((total, parts))
        },
    );
    let (final_loss, level_losses) = match (result, quant_error) {
        (Err(_), Some(e)) => return Err(e),
        (r, _) => r?,
    };
    let train_accuracy = candle_accuracy(&net, &xs, &ys, train_set.shape)?;
    let report = QatReport {
        epochs: cfg.epochs,
        final_loss,
        level_losses,
        train_accuracy,
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok((net.to_model()?, report))
}

/// The order in which [`compose_levels`] chooses the levels of a nested bundle, and so which
/// neighbour each level's codes must nest with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Order {
    /// From the lowest level up: each level within one step of the level below it
    /// (`nested::nearest_nested`), the levels above re-nested on it. Every level can change.
    BottomUp,
    /// From the top down: the full-bit codes are kept as they are, and each lower level is one
    /// of the two codes the level above can nest on (`nested::nearest_under`, AdaRound's up or
    /// down), the levels below re-nested under it. The full-bit level cannot change.
    TopDown,
}

impl Order {
    /// The level that level `j` (of `len`) nests with and that is chosen before it, if any.
    fn neighbour(self, j: usize, len: usize) -> Option<usize> {
        match self {
            Order::BottomUp => (j + 1 < len).then_some(j + 1),
            Order::TopDown => j.checked_sub(1),
        }
    }

    /// Level `j`'s codes nearest to `want` that nest with `fixed`, the codes of its
    /// [`neighbour`](Self::neighbour).
    fn project(
        self,
        levels: &[u8],
        j: usize,
        want: ArrayView2<i32>,
        fixed: ArrayView2<i32>,
    ) -> Array2<i32> {
        match self {
            Order::BottomUp => {
                nested::nearest_nested(want, fixed, levels[j] - levels[j + 1], levels[j])
            }
            Order::TopDown => {
                nested::nearest_under(want, fixed, levels[j - 1] - levels[j], levels[j])
            }
        }
    }

    /// Nests level `j` on its neighbour, then the levels chosen after it on level `j`: those
    /// above it bottom-up, those below it top-down.
    fn renest(self, levels: &[u8], codes: &mut [Array2<i32>], j: usize) {
        let len = levels.len();
        if len < 2 {
            return;
        }
        let at = |k: usize, nb: usize, codes: &mut [Array2<i32>]| {
            codes[k] = self.project(levels, k, codes[k].view(), codes[nb].view());
        };
        match self {
            Order::BottomUp => {
                for k in (0..=j.min(len - 2)).rev() {
                    at(k, k + 1, codes);
                }
            }
            Order::TopDown => {
                for k in j.max(1)..len {
                    at(k, k - 1, codes);
                }
            }
        }
    }
}

/// Per weight layer (None for other nodes), per level in `levels` order, that level's codes in
/// its own units.
type LevelCodes = Vec<Option<Vec<Array2<i32>>>>;

/// One level's choice in [`compose_levels`]: the validation accuracy of each candidate for
/// that level's codes, and the one kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LevelChoice {
    pub bits: u8,
    /// Candidate names in the order tried: the bundle's own codes first, then the anchors.
    pub candidates: Vec<String>,
    pub val_accuracy_pct: Vec<f64>,
    /// Mean cross-entropy of the integer logits (times the output scale) on the validation set:
    /// what the choice is made on. Unlike top-1, it moves with every image, not only with the
    /// few a candidate flips, so it separates candidates that a small or easy validation set
    /// scores alike (on 1000 MNIST images at 99 %, top-1 counts ten errors).
    pub val_loss: Vec<f64>,
    /// Per candidate, the standard error of its mean loss minus the first candidate's (the
    /// bundle's own codes), image by image on the validation set (0 for the first): how far
    /// apart the split can tell two candidates.
    pub val_loss_se: Vec<f64>,
    /// Whether a candidate had to lie more than [`KEEP_MARGIN_SE`] standard errors below the
    /// first to be kept (top-down, while every level above held the bundle's own codes; also
    /// set on the full-bit level, whose only candidate is the first).
    pub margin: bool,
    /// Index into `candidates`: the lowest loss, the most accurate among those (with `margin`,
    /// among the first and the candidates clearly below it).
    pub chosen: usize,
    /// Each candidate's top-1 % on a held-out set the caller reports on (the levels below as
    /// chosen): what a perfect choice would have kept. Never used to choose; empty when no
    /// such set was given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_out_accuracy_pct: Vec<f64>,
}

/// How many standard errors of the per-image loss difference a candidate must lie below `q`'s
/// own codes to replace them in [`compose_levels`] top-down, while every level above still holds
/// `q`'s own codes (so this level's own codes are exactly `q`'s level: for a PTQ bundle, the
/// level the nested bundle must never fall below).
///
/// Why: at the upper levels a PTQ bundle is within a few images of its full-bit model, and a
/// lower mean loss there is often a few hard validation images. With the lowest loss alone,
/// two LeNets of docs/qat-seeds.md kept a 6-bit candidate 3–6 % below the PTQ codes' loss and
/// lost 0.10 points to PTQ on the held-out images. Two standard errors is the usual bar for
/// "lower", fixed before it was measured. Once a level has left `q`'s codes, the levels below
/// are nested under new codes, their own codes are no longer `q`'s level, and the lowest loss
/// decides (keeping them there cost the digits MLP 0.28 points against PTQ at 3 bits).
pub const KEEP_MARGIN_SE: f64 = 2.0;

/// How `q` scores at `bits` on every layer of a set.
struct Scored {
    /// Top-1 %.
    acc: f64,
    /// Each image's cross-entropy of the integer logits times the output scale.
    losses: Vec<f64>,
}

impl Scored {
    fn loss(&self) -> f64 {
        self.losses.iter().sum::<f64>() / self.losses.len().max(1) as f64
    }

    /// The standard error of the mean of `self − base`, image by image.
    fn paired_se(&self, base: &Scored) -> f64 {
        let d: Vec<f64> = self
            .losses
            .iter()
            .zip(&base.losses)
            .map(|(a, b)| a - b)
            .collect();
        let n = d.len();
        if n < 2 {
            return 0.0;
        }
        let mean = d.iter().sum::<f64>() / n as f64;
        let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        (var / n as f64).sqrt()
    }
}

/// Top-1 % and per-image cross-entropy of `q` run at `bits` on every layer.
fn score(q: &QModel, bits: u8, set: &Dataset) -> Result<Scored> {
    let ex = q.executor(&q.uniform_bits(bits))?;
    let scale = q.acts.last().map_or(1.0, |a| f64::from(a.scale));
    let per = qmodel::par_map(set.len(), |i| {
        ex.logits(set.image(i)).map(|z| {
            let y = set.labels[i] as usize;
            let top = z.iter().copied().max().unwrap_or(0);
            let lse = z
                .iter()
                .map(|&v| (f64::from(v - top) * scale).exp())
                .sum::<f64>()
                .ln();
            let ce = lse - f64::from(z.get(y).copied().unwrap_or(top) - top) * scale;
            (qmodel::argmax(&z) == y, ce)
        })
    });
    let mut hits = 0usize;
    let mut losses = Vec::with_capacity(set.len());
    for r in per {
        let (hit, ce) = r?;
        hits += usize::from(hit);
        losses.push(ce);
    }
    Ok(Scored {
        acc: 100.0 * hits as f64 / set.len().max(1) as f64,
        losses,
    })
}

/// Makes a level's own candidate in [`compose_levels`]: given the level's index and, per layer,
/// the codes chosen for the level it nests with (`Order::neighbour`; None where there is none
/// and for nodes without weights), a float model whose weights on the bundle's grid are that
/// level's candidate codes.
pub type LevelTuner<'a> = dyn Fn(usize, &[Option<Array2<i32>>]) -> Result<FloatModel> + 'a;

/// Chooses each level's codes of the nested bundle `q` on the validation set `val`, one level
/// after the other in `order`. The candidates for level b are `q`'s own b-bit codes (named
/// `own`), per anchor float model its weights rounded to nearest on b-bit grid of `q`'s scales,
/// and, with a `tune`r, the model it makes for that level from the codes chosen for its
/// neighbour (named [`LEVEL`]); each is projected onto the band the neighbour leaves it
/// (`Order::project`: at most one step away), and the one with the lowest mean cross-entropy
/// at b on `val` is kept (on a tie, the more accurate; then the earlier). Top-down, the full-bit
/// level has one candidate, `q`'s own codes, and is kept exactly, and while every level above
/// holds `q`'s own codes a candidate replaces this level's only if its loss is lower by more
/// than [`KEEP_MARGIN_SE`] standard errors of the per-image difference. The scales, biases,
/// activations and requantization of `q` are kept, so the result is a bundle of the same
/// format; only which codes it stores changes.
///
/// Why this works: nesting ties a level to its neighbours only within one step of the lower
/// one (the residual's range), so bottom-up the full-bit codes can follow a model tuned for full
/// bits while the low levels keep what the all-level training found, and top-down a PTQ bundle's
/// full-bit codes stay while each lower level learns which way to round.
pub fn compose_levels(
    q: &QModel,
    own: &str,
    anchors: &[(&str, &FloatModel)],
    tune: Option<&LevelTuner>,
    val: &Dataset,
    held_out: Option<&Dataset>,
    order: Order,
) -> Result<(QModel, Vec<LevelChoice>)> {
    let levels = q.levels().to_vec();
    let Some(&n) = levels.first() else {
        return Err(ModelError::arg("levels", "the bundle has no levels"));
    };
    for (name, m) in anchors {
        if m.params.len() != q.layers.len() {
            return Err(ModelError::arg(
                "anchors",
                format!(
                    "model '{name}' has {} nodes, the bundle {}",
                    m.params.len(),
                    q.layers.len()
                ),
            ));
        }
    }
    // Per weight layer, per level (in `levels` order), the chosen codes in that level's units;
    // start from the bundle's own.
    let mut chosen: LevelCodes = Vec::with_capacity(q.layers.len());
    for l in &q.layers {
        chosen.push(match l {
            None => None,
            Some(l) => Some(
                levels
                    .iter()
                    .map(|&b| {
                        l.weights
                            .effective_codes(b)
                            .map(|c| c.mapv(|v| v >> (n - b)))
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
        });
    }
    let mut model = q.clone();
    let mut choices = Vec::with_capacity(levels.len());
    // Top-down, whether every level chosen so far kept `q`'s own codes.
    let mut own_above = order == Order::TopDown;
    let sequence: Vec<usize> = match order {
        Order::BottomUp => (0..levels.len()).rev().collect(),
        Order::TopDown => (0..levels.len()).collect(),
    };
    for &j in &sequence {
        let b = levels[j];
        let mut names = vec![own.to_string()];
        let mut models: Vec<&FloatModel> = Vec::with_capacity(anchors.len() + 1);
        // Top-down, the full-bit level is kept: its only candidate is its own codes.
        let free = !(order == Order::TopDown && j == 0);
        for (name, m) in anchors.iter().filter(|_| free) {
            names.push(name.to_string());
            models.push(m);
        }
        let tuned;
        if let Some(tune) = tune.filter(|_| free) {
            let nb = order.neighbour(j, levels.len());
            let fixed: Vec<Option<Array2<i32>>> = chosen
                .iter()
                .map(|c| c.as_ref().zip(nb).and_then(|(c, k)| c.get(k).cloned()))
                .collect();
            tuned = tune(j, &fixed)?;
            names.push(LEVEL.to_string());
            models.push(&tuned);
        }
        let mut accs = Vec::with_capacity(names.len());
        let mut losses = Vec::with_capacity(names.len());
        let mut ses = Vec::with_capacity(names.len());
        let mut held = Vec::new();
        let mut own_scored: Option<Scored> = None;
        let mut trials = Vec::with_capacity(names.len());
        for c in 0..names.len() {
            let mut trial = chosen.clone();
            for (i, codes) in trial.iter_mut().enumerate() {
                let (Some(codes), Some(layer)) = (codes, &q.layers[i]) else {
                    continue;
                };
                if c > 0 {
                    codes[j] = anchor_codes(models[c - 1], i, layer, n, b)?;
                }
                order.renest(&levels, codes, j);
            }
            install(&mut model, &levels, &trial)?;
            let s = score(&model, b, val)?;
            if let Some(h) = held_out {
                held.push(score(&model, b, h)?.acc);
            }
            accs.push(s.acc);
            losses.push(s.loss());
            ses.push(own_scored.as_ref().map_or(0.0, |o| s.paired_se(o)));
            if c == 0 {
                own_scored = Some(s);
            }
            trials.push(trial);
        }
        let margin = own_above.then_some(ses.as_slice());
        let kept = pick(&accs, &losses, margin);
        own_above &= kept == 0;
        chosen = trials.swap_remove(kept);
        choices.push(LevelChoice {
            bits: b,
            chosen: kept,
            candidates: names,
            val_accuracy_pct: accs,
            val_loss: losses,
            margin: margin.is_some(),
            val_loss_se: ses,
            held_out_accuracy_pct: held,
        });
    }
    install(&mut model, &levels, &chosen)?;
    if order == Order::BottomUp {
        choices.reverse();
    }
    Ok((model, choices))
}

/// [`compose_levels`]' choice among one level's candidates, from their validation top-1 and
/// mean loss: the lowest loss; on a tie, the more accurate, then the earlier. With a `margin`
/// (each candidate's standard error of its loss minus the first's), only the first and the
/// candidates more than [`KEEP_MARGIN_SE`] of those below it compete.
fn pick(accs: &[f64], losses: &[f64], margin: Option<&[f64]>) -> usize {
    let mut best = 0;
    for c in 1..losses.len() {
        let clear = margin.is_none_or(|se| losses[0] - losses[c] > KEEP_MARGIN_SE * se[c]);
        if clear
            && (losses[c] < losses[best] || (losses[c] == losses[best] && accs[c] > accs[best]))
        {
            best = c;
        }
    }
    best
}

/// The anchor's weights of layer `i` as `b`-bit codes on the layer's full-bit scales
/// ([`grid_codes`]).
fn anchor_codes(m: &FloatModel, i: usize, layer: &QLayer, n: u8, b: u8) -> Result<Array2<i32>> {
    let Some(p) = &m.params[i] else {
        return Err(ModelError::Layer {
            layer: layer.name.clone(),
            what: "the anchor model has no weights here".into(),
        });
    };
    grid_codes(p.weight.view(), layer, n, b)
}

/// Weights `w` of `layer` as `b`-bit codes on the layer's full-bit (`n`-bit) scales: nearest to
/// `w / (scale · 2^(n−b))`, in the signed b-bit range.
fn grid_codes(w: ArrayView2<f32>, layer: &QLayer, n: u8, b: u8) -> Result<Array2<i32>> {
    let dim = layer.weights.groups[0].codes.dim();
    if w.dim() != dim {
        return Err(ModelError::Shape {
            context: format!("weights of layer {}", layer.name),
            expected: format!("{dim:?}"),
            found: format!("{:?}", w.dim()),
        });
    }
    let (lo, hi) = code_range(b);
    let unit = f32::from(1u16 << (n - b));
    Ok(Array2::from_shape_fn(dim, |(r, k)| {
        let s = scale_at(&layer.channel_scale, layer.groups.as_ref(), r, k) * unit;
        ((w[(r, k)] / s).round() as i32).clamp(lo, hi)
    }))
}

fn install(model: &mut QModel, levels: &[u8], codes: &[Option<Vec<Array2<i32>>>]) -> Result<()> {
    for (layer, codes) in model.layers.iter_mut().zip(codes) {
        if let (Some(layer), Some(codes)) = (layer, codes) {
            layer.weights = nested::from_level_codes(levels, codes)?;
        }
    }
    Ok(())
}

/// A nested bundle whose levels [`compose_levels`] chose, with its choices.
#[derive(Clone, Debug)]
pub struct Composed {
    pub bundle: QModel,
    pub choices: Vec<LevelChoice>,
    /// Mean over the levels of the validation top-1 % of the codes kept.
    pub val_mean_pct: f64,
}

impl Composed {
    fn new((bundle, choices): (QModel, Vec<LevelChoice>)) -> Self {
        let val_mean_pct = choices
            .iter()
            .map(|c| c.val_accuracy_pct[c.chosen])
            .sum::<f64>()
            / choices.len().max(1) as f64;
        Composed {
            bundle,
            choices,
            val_mean_pct,
        }
    }
}

/// What [`finetune_nested`] made.
pub struct NestedQat {
    /// The joint bundle's levels chosen bottom-up against the anchors on validation: reported
    /// beside the bundle shipped, not shipped ([`NestedQat::shipped`] says why).
    pub joint_levels: Composed,
    /// The PTQ bundle's full-bit level kept, the lower levels chosen top-down on validation:
    /// the bundle shipped.
    pub ptq_levels: Composed,
    /// The bundle of the all-level training alone (the joint STE recipe).
    pub joint: QModel,
    /// The all-level fine-tuned float model (its biases and activation ranges are the bundle's).
    pub tuned: FloatModel,
    /// The full-bit fine-tune: `cfg` with the top level alone (the dedicated full-bit model).
    pub top: FloatModel,
    pub report: QatReport,
    pub top_report: QatReport,
    /// The joint training's level weights (the candidate kept).
    pub level_weights: Vec<f32>,
}

impl NestedQat {
    /// The composition to ship: the PTQ bundle's, whose full-bit level is the PTQ model's code
    /// for code, so fine-tuning cannot cost the level the battery-high and deadline gates run.
    /// The joint composition is not shipped even where its validation loss is lower at every
    /// level: on one LeNet of docs/qat-seeds.md it was, and it scored 0.10 points below PTQ at
    /// 8 bits on the held-out images; its lower levels were not better than the PTQ
    /// composition's beyond what the validation split resolves.
    pub fn shipped(&self) -> &Composed {
        &self.ptq_levels
    }
}

/// Candidate names of [`finetune_nested`]'s level choice, in the order tried.
pub const JOINT: &str = "joint QAT";
pub const TOP: &str = "full-bit QAT";
pub const START: &str = "starting model";
/// The level's own fine-tune on the bundle's grid, in the band its neighbour leaves it
/// ([`finetune_level`]).
pub const LEVEL: &str = "level QAT";
/// The PTQ bundle's own codes, the base of the top-down composition.
pub const PTQ: &str = "PTQ";

/// The level weights [`finetune_nested`] tries when none are given: all levels alike, and the
/// levels of 4 bits and fewer alone (the higher levels are then left to the full-bit candidates,
/// so the joint training can spend itself on the levels only it serves).
pub fn default_weight_candidates(levels: &[u8]) -> Vec<Vec<f32>> {
    let low: Vec<f32> = levels
        .iter()
        .map(|&b| if b <= 4 { 1.0 } else { 0.0 })
        .collect();
    let mut out = vec![vec![1.0; levels.len()]];
    if low.iter().any(|&w| w > 0.0) && low.contains(&0.0) {
        out.push(low);
    }
    out
}

/// One joint training of [`finetune_nested`]: its level weights and the mean validation
/// accuracy over the levels of the bundle composed from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightTrial {
    pub level_weights: Vec<f32>,
    pub val_mean_pct: f64,
}

/// The nested recipe: fine-tune the top level alone; for each of `weight_candidates` (level
/// weights; `cfg.level_weights` replaced), fine-tune `cfg.levels` jointly ([`finetune`]),
/// quantize with `qcfg` and choose every level's codes on `val` from the joint bundle, the
/// full-bit fine-tune, the starting model and each level's own fine-tune on the bundle's grid
/// ([`compose_levels`] bottom-up, [`finetune_level`]); keep the composed bundle with the highest
/// mean validation accuracy over the levels (the first on a tie). Then compose `ptq` (the
/// starting model's post-training bundle, of `cfg.levels`) top-down from the same anchors and
/// its own level fine-tunes, which keeps its full-bit level exactly: the bundle shipped
/// ([`NestedQat::shipped`]).
/// `val` must not overlap `train_set`. `held_out`, if given, is only scored for the report
/// ([`LevelChoice::held_out_accuracy_pct`]): no choice looks at it.
#[allow(clippy::too_many_arguments)]
pub fn finetune_nested(
    model: &FloatModel,
    ptq: &QModel,
    train_set: &Dataset,
    val: &Dataset,
    held_out: Option<&Dataset>,
    cfg: &QatConfig,
    weight_candidates: &[Vec<f32>],
    qcfg: &QuantizeConfig,
    progress: bool,
) -> Result<(NestedQat, Vec<WeightTrial>)> {
    if val.is_empty() {
        return Err(ModelError::arg("val", "the validation set is empty"));
    }
    if ptq.levels() != cfg.levels.as_slice() {
        return Err(ModelError::arg(
            "ptq",
            format!(
                "the PTQ bundle's levels {:?} are not the fine-tuning's {:?}",
                ptq.levels(),
                cfg.levels
            ),
        ));
    }
    if weight_candidates.is_empty() {
        return Err(ModelError::arg("level_weights", "no level weights to try"));
    }
    let one = QatConfig {
        levels: vec![cfg.levels[0]],
        level_weights: vec![1.0],
        ..cfg.clone()
    };
    let (top, top_report) = finetune(model, train_set, &one, progress)?;
    let mut best: Option<(Composed, QModel, FloatModel, QatReport, Vec<f32>)> = None;
    let mut trials = Vec::with_capacity(weight_candidates.len());
    for w in weight_candidates {
        let c = QatConfig {
            level_weights: w.clone(),
            ..cfg.clone()
        };
        let (tuned, report) = finetune(model, train_set, &c, progress)?;
        let joint = qmodel::quantize(&tuned, train_set, qcfg)?;
        let composed = compose_tuned(
            (&joint, JOINT),
            (&tuned, model),
            &[(TOP, &top), (START, model)],
            Order::BottomUp,
            (train_set, val, held_out),
            cfg,
            progress,
        )?;
        let mean = composed.val_mean_pct;
        let better = trials.iter().all(|t: &WeightTrial| mean > t.val_mean_pct);
        trials.push(WeightTrial {
            level_weights: w.clone(),
            val_mean_pct: mean,
        });
        if better {
            best = Some((composed, joint, tuned, report, w.clone()));
        }
    }
    let (joint_levels, joint, tuned, report, level_weights) =
        best.ok_or_else(|| ModelError::arg("level_weights", "no level weights to try"))?;
    let ptq_levels = compose_tuned(
        (ptq, PTQ),
        (model, model),
        &[(TOP, &top), (START, model)],
        Order::TopDown,
        (train_set, val, held_out),
        cfg,
        progress,
    )?;
    let done = NestedQat {
        joint_levels,
        ptq_levels,
        joint,
        tuned,
        top,
        report,
        top_report,
        level_weights,
    };
    Ok((done, trials))
}

/// [`compose_levels`] of `base` (the bundle and the name of its own codes) in `order`, with each
/// level's own fine-tune ([`finetune_level`] from `start`, distilled from `teacher`) as a
/// candidate beside the `anchors`; `sets` are the training, validation and held-out images.
fn compose_tuned(
    (base, own): (&QModel, &str),
    (start, teacher): (&FloatModel, &FloatModel),
    anchors: &[(&str, &FloatModel)],
    order: Order,
    (train_set, val, held_out): (&Dataset, &Dataset, Option<&Dataset>),
    cfg: &QatConfig,
    progress: bool,
) -> Result<Composed> {
    let tune = |j: usize, fixed: &[Option<Array2<i32>>]| {
        finetune_level(
            start, teacher, base, j, order, fixed, train_set, cfg, progress,
        )
        .map(|r| r.0)
    };
    Ok(Composed::new(compose_levels(
        base,
        own,
        anchors,
        Some(&tune),
        val,
        held_out,
        order,
    )?))
}

/// Per level, the weight tensor of every node: the straight-through `w + (q_level(w) − w)`.
fn fake_weights(
    net: &Net,
    layers: &[(usize, usize)],
    wcfg: &WeightQuantConfig,
    cfg: &QatConfig,
) -> Result<Vec<Vec<Option<Tensor>>>> {
    let nodes = net.graph.nodes.len();
    let mut out = vec![vec![None; nodes]; cfg.levels.len()];
    for &(i, kernel_len) in layers {
        let Some((w, _)) = &net.params[i] else {
            continue;
        };
        let w = w.as_tensor();
        let wa = tensor_matrix(w)?;
        let fq = nested::fake_quantize(wa.view(), kernel_len, wcfg, &cfg.levels, cfg.nest_clip)
            .map_err(|e| ModelError::Layer {
                layer: net.graph.nodes[i].name.clone(),
                what: e.to_string(),
            })?;
        for (level, q) in fq.into_iter().enumerate() {
            let delta: Vec<f32> = q.iter().zip(wa.iter()).map(|(q, w)| q - w).collect();
            let delta = Tensor::from_vec(delta, wa.dim(), &Device::Cpu).map_err(candle_err)?;
            out[level][i] = Some((w + delta).map_err(candle_err)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data;
    use crate::qmodel::{self, quantize};
    use crate::quant::dequantize_codes;
    use crate::train::{Arch, TrainConfig, train};

    fn digits_split() -> (Dataset, Dataset) {
        data::digits().unwrap().stratified_split(360, 0).unwrap()
    }

    #[test]
    fn the_fake_quantizer_is_what_the_integer_model_stores() {
        let (train_set, _) = digits_split();
        let cfg = TrainConfig {
            epochs: 2,
            ..TrainConfig::default_for(Arch::Mlp)
        };
        let (model, _) = train(&train_set, &cfg, false).unwrap();
        for nest_clip in [false, true] {
            let qat = QatConfig {
                nest_clip,
                ..QatConfig::new(&[8, 4, 2])
            };
            let q = quantize(&model, &train_set, &qat.quantize_config()).unwrap();
            let wcfg = WeightQuantConfig {
                bits: 8,
                rounding: Rounding::Nearest,
                group_size: None,
                clip_search: false,
            };
            for (i, p) in model.params.iter().enumerate() {
                let (Some(p), Some(layer)) = (p, &q.layers[i]) else {
                    continue;
                };
                let fq = nested::fake_quantize(p.weight.view(), 1, &wcfg, &qat.levels, nest_clip)
                    .unwrap();
                for (level, f) in qat.levels.iter().zip(&fq) {
                    let codes = layer.weights.effective_codes(*level).unwrap();
                    let stored =
                        dequantize_codes(codes.view(), &layer.channel_scale, layer.groups.as_ref())
                            .unwrap();
                    assert_eq!(&stored, f, "layer {i} level {level} nest_clip {nest_clip}");
                }
            }
        }
    }

    #[test]
    fn qat_lifts_the_deepest_level_of_a_nested_digits_mlp() {
        let (train_set, test) = digits_split();
        let (model, _) = train(&train_set, &TrainConfig::default_for(Arch::Mlp), false).unwrap();
        let cfg = QatConfig {
            epochs: 4,
            distill: 0.0,
            ..QatConfig::new(&[8, 4, 3, 2])
        };
        let qcfg = cfg.quantize_config();
        let at2 =
            |q: &crate::qmodel::QModel| qmodel::int_accuracy(q, &q.uniform_bits(2), &test).unwrap();
        // Post-training: the default quantizer, and the QAT quantizer on the untrained weights.
        let plain =
            at2(&quantize(&model, &train_set, &QuantizeConfig::nested(&cfg.levels)).unwrap());
        let ptq2 = at2(&quantize(&model, &train_set, &qcfg).unwrap());
        let (tuned, report) = finetune(&model, &train_set, &cfg, false).unwrap();
        assert_eq!(report.level_losses.len(), 4);
        assert!(report.level_losses.iter().all(|l| l.is_finite()));
        let q = quantize(&tuned, &train_set, &qcfg).unwrap();
        let qat2 = qmodel::int_accuracy(&q, &q.uniform_bits(2), &test).unwrap();
        let qat8 = qmodel::int_accuracy(&q, &q.uniform_bits(8), &test).unwrap();
        eprintln!(
            "digits MLP 8⊃4⊃3⊃2, 2-bit: PTQ {plain:.2} % (defaults), {ptq2:.2} % (QAT quantizer); \
             QAT {qat2:.2} %; QAT 8-bit {qat8:.2} %"
        );
        assert!(
            qat2 > plain + 1.0,
            "QAT 2-bit {qat2} vs default PTQ {plain}"
        );
        assert!(
            qat2 > ptq2,
            "QAT 2-bit {qat2} vs PTQ with the same quantizer {ptq2}"
        );
        assert!(qat8 > 95.0, "QAT 8-bit {qat8}");
    }

    #[test]
    fn a_level_fine_tune_lifts_its_level_on_the_bundles_grid_and_holds_the_biases() {
        let (train_set, test) = digits_split();
        let (model, _) = train(&train_set, &TrainConfig::default_for(Arch::Mlp), false).unwrap();
        let cfg = QatConfig {
            epochs: 3,
            ..QatConfig::new(&[8, 4, 2])
        };
        let q = quantize(&model, &train_set, &cfg.quantize_config()).unwrap();
        let at = |q: &QModel, b: u8| qmodel::int_accuracy(q, &q.uniform_bits(b), &test).unwrap();
        // The lowest level alone (nothing below it), then the 4-bit level on its codes.
        let none = vec![None; q.layers.len()];
        let level = |q: &QModel, j: usize, below: &[Option<Array2<i32>>]| {
            finetune_level(
                &model,
                &model,
                q,
                j,
                Order::BottomUp,
                below,
                &train_set,
                &cfg,
                false,
            )
        };
        let (low, report) = level(&q, 2, &none).unwrap();
        assert_eq!(report.level_losses.len(), 1);
        for (a, b) in low.params.iter().zip(&model.params) {
            if let (Some(a), Some(b)) = (a, b) {
                assert_eq!(a.bias, b.bias, "biases are the bundle's");
                assert_ne!(a.weight, b.weight);
            }
        }
        let (composed, choices) = compose_levels(
            &q,
            "ptq",
            &[("level", &low)],
            None,
            &train_set,
            None,
            Order::BottomUp,
        )
        .unwrap();
        // Scoring a held-out set changes no choice; without one, nothing is scored on it.
        let (reported, scored) = compose_levels(
            &q,
            "ptq",
            &[("level", &low)],
            None,
            &train_set,
            Some(&test),
            Order::BottomUp,
        )
        .unwrap();
        assert_eq!(reported.layers, composed.layers);
        for (a, b) in scored.iter().zip(&choices) {
            assert_eq!((a.chosen, a.held_out_accuracy_pct.len()), (b.chosen, 2));
            assert!(b.held_out_accuracy_pct.is_empty());
        }
        let (before, after) = (at(&q, 2), at(&composed, 2));
        eprintln!("digits MLP 2-bit on the PTQ grid: {before:.2} % -> {after:.2} % ({choices:?})");
        assert!(after > before + 1.0, "2-bit {before} -> {after}");
        // The 4-bit level tuned on the chosen 2-bit codes: every code it rounds to during
        // training nests on them, so its rounded weights lie within one 2-bit step but for the
        // drift of the last steps.
        let below: Vec<Option<Array2<i32>>> = composed
            .layers
            .iter()
            .map(|l| {
                l.as_ref()
                    .map(|l| l.weights.effective_codes(2).unwrap().mapv(|c| c >> 6))
            })
            .collect();
        let (mid, _) = level(&composed, 1, &below).unwrap();
        let (mut inside, mut all) = (0usize, 0usize);
        for (i, l) in composed.layers.iter().enumerate() {
            let (Some(l), Some(under)) = (l, &below[i]) else {
                continue;
            };
            let codes = anchor_codes(&mid, i, l, 8, 4).unwrap();
            let nested = nested::nearest_nested(codes.view(), under.view(), 2, 4);
            inside += codes.iter().zip(&nested).filter(|(a, b)| a == b).count();
            all += codes.len();
        }
        assert!(
            inside as f64 > 0.99 * all as f64,
            "{inside} of {all} codes nest"
        );
        // What the forward pass sees: on the grid, and nested on the codes below even where
        // the weights would round outside the band (here every 2-bit code is taken as zero).
        for (i, l) in composed.layers.iter().enumerate() {
            let (Some(l), Some(p)) = (l, &model.params[i]) else {
                continue;
            };
            let zeros = Array2::<i32>::zeros(p.weight.dim());
            let seen = level_fake_quantize(
                p.weight.view(),
                l,
                &[8, 4, 2],
                1,
                Order::BottomUp,
                Some(&zeros),
            )
            .unwrap();
            let free =
                level_fake_quantize(p.weight.view(), l, &[8, 4, 2], 1, Order::BottomUp, None)
                    .unwrap();
            let mut clamped = 0usize;
            for ((r, k), &v) in seen.indexed_iter() {
                let step = scale_at(&l.channel_scale, l.groups.as_ref(), r, k) * 16.0;
                let code = v / step;
                assert!(
                    (code - code.round()).abs() < 1e-4,
                    "layer {i} ({r},{k}) off the grid: {code}"
                );
                assert!(
                    (-4.0..=3.0).contains(&code.round()),
                    "layer {i} ({r},{k}): {code}"
                );
                clamped += usize::from(v != free[(r, k)]);
            }
            assert!(clamped > 0, "layer {i}: the band clamped nothing");
        }
        let err = level(&q, 3, &none);
        assert!(err.unwrap_err().to_string().contains("no level 3"));
    }

    #[test]
    fn chosen_levels_nest_and_the_ptq_composition_keeps_its_full_bit_level() {
        let all = data::digits().unwrap();
        let (train_all, test) = all.stratified_split(360, 0).unwrap();
        let (fit, val) = train_all.stratified_split(180, 0).unwrap();
        let (model, _) = train(
            &fit,
            &TrainConfig {
                epochs: 3,
                ..TrainConfig::default_for(Arch::Mlp)
            },
            false,
        )
        .unwrap();
        let cfg = QatConfig {
            epochs: 2,
            ..QatConfig::new(&[8, 4, 2])
        };
        let qcfg = cfg.quantize_config();
        let tries = default_weight_candidates(&cfg.levels);
        assert_eq!(tries, [vec![1.0, 1.0, 1.0], vec![0.0, 1.0, 1.0]]);
        let ptq = quantize(&model, &fit, &QuantizeConfig::nested(&cfg.levels)).unwrap();
        let (done, trials) = finetune_nested(
            &model,
            &ptq,
            &fit,
            &val,
            Some(&test),
            &cfg,
            &tries,
            &qcfg,
            false,
        )
        .unwrap();
        assert_eq!(trials.len(), 2);
        let best = trials
            .iter()
            .map(|t| t.val_mean_pct)
            .fold(f64::MIN, f64::max);
        assert!(
            (done.joint_levels.val_mean_pct - best).abs() < 1e-9,
            "{trials:?} kept {}",
            done.joint_levels.val_mean_pct
        );
        let acc = |q: &QModel, b: u8, set: &Dataset| {
            qmodel::int_accuracy(q, &q.uniform_bits(b), set).unwrap()
        };
        for (name, c) in [("joint", &done.joint_levels), ("ptq", &done.ptq_levels)] {
            // The margin holds top-down only, while every level above kept the PTQ codes.
            let mut own_above = name == "ptq";
            for l in &c.choices {
                assert_eq!(l.margin, own_above, "{name} {l:?}");
                own_above &= l.chosen == 0;
            }
            // Every level kept the candidate with the lowest validation loss, and the bundle is
            // well-formed: each level is a prefix of the one above.
            assert_eq!(
                c.choices.iter().map(|c| c.bits).collect::<Vec<_>>(),
                [8, 4, 2],
                "{name}"
            );
            for l in &c.choices {
                assert_eq!(
                    (l.val_loss_se.len(), l.val_loss_se[0]),
                    (l.candidates.len(), 0.0)
                );
                assert!(l.val_loss_se.iter().all(|se| se.is_finite() && *se >= 0.0));
                // With the margin (top-down, while the levels above kept the PTQ codes), the
                // PTQ codes compete only with the candidates clearly below them.
                let lowest = (0..l.candidates.len())
                    .filter(|&k| {
                        !l.margin
                            || k == 0
                            || l.val_loss[0] - l.val_loss[k] > KEEP_MARGIN_SE * l.val_loss_se[k]
                    })
                    .map(|k| l.val_loss[k])
                    .fold(f64::MAX, f64::min);
                assert_eq!(l.val_loss[l.chosen], lowest, "{name} {l:?}");
                assert!(
                    (acc(&c.bundle, l.bits, &val) - l.val_accuracy_pct[l.chosen]).abs() < 1e-9,
                    "{name} {l:?}"
                );
                // Every candidate was scored on the held-out images too, and the kept one's
                // figure is the bundle's.
                assert_eq!(l.held_out_accuracy_pct.len(), l.candidates.len(), "{l:?}");
                assert!(
                    (acc(&c.bundle, l.bits, &test) - l.held_out_accuracy_pct[l.chosen]).abs()
                        < 1e-9,
                    "{name} {l:?}"
                );
            }
            for l in c.bundle.layers.iter().flatten() {
                let codes: Vec<_> = [8u8, 4, 2]
                    .iter()
                    .map(|&b| l.weights.effective_codes(b).unwrap().mapv(|c| c >> (8 - b)))
                    .collect();
                assert_eq!(
                    nested::from_level_codes(&[8, 4, 2], &codes).unwrap(),
                    l.weights
                );
            }
        }
        // Bottom-up, every level had its own fine-tune as a candidate; the lowest level is the
        // joint training's or its own (the anchors are not tuned for it).
        for c in &done.joint_levels.choices {
            assert_eq!(c.candidates, [JOINT, TOP, START, LEVEL], "{c:?}");
        }
        let low = &done.joint_levels.choices[2];
        assert!(
            [JOINT, LEVEL].contains(&low.candidates[low.chosen].as_str()),
            "{low:?}"
        );
        // Top-down, the full-bit level is the PTQ bundle's, code for code, and only the lower
        // levels were chosen.
        let ptq_levels = &done.ptq_levels.choices;
        assert_eq!(ptq_levels[0].candidates, [PTQ]);
        for c in &ptq_levels[1..] {
            assert_eq!(c.candidates, [PTQ, TOP, START, LEVEL], "{c:?}");
        }
        for (a, b) in done.ptq_levels.bundle.layers.iter().zip(&ptq.layers) {
            if let (Some(a), Some(b)) = (a, b) {
                assert_eq!(
                    a.weights.effective_codes(8).unwrap(),
                    b.weights.effective_codes(8).unwrap()
                );
            }
        }
        // The bundle shipped is the PTQ composition.
        assert_eq!(done.shipped().bundle.layers, done.ptq_levels.bundle.layers);
        let (top, ptq8) = (acc(&done.shipped().bundle, 8, &test), acc(&ptq, 8, &test));
        let (low, ptq2) = (acc(&done.shipped().bundle, 2, &test), acc(&ptq, 2, &test));
        let ptq_top = acc(&done.ptq_levels.bundle, 8, &test);
        eprintln!(
            "digits MLP 8⊃4⊃2 held-out, shipped: 8-bit {top:.2} (PTQ {ptq8:.2}), 2-bit {low:.2} \
             (PTQ {ptq2:.2})"
        );
        assert_eq!(ptq_top, ptq8);
        assert!(low > ptq2, "2-bit {low} not above PTQ {ptq2}");
    }

    #[test]
    fn a_level_keeps_the_lowest_loss_past_the_margin_and_the_paired_error_is_the_differences_spread()
     {
        // The lowest loss wins whatever the top-1; ties go to the more accurate, then the earlier.
        let accs = [98.0, 99.0, 97.0, 98.0];
        let losses = [0.060, 0.055, 0.050, 0.050];
        assert_eq!(pick(&accs, &losses, None), 3);
        assert_eq!(pick(&accs, &[0.050, 0.055, 0.050, 0.050], None), 0);
        assert_eq!(pick(&accs, &[0.060, 0.050, 0.050, 0.070], None), 1);
        assert_eq!(pick(&[98.0], &[0.05], Some(&[0.0])), 0);
        // With the margin: candidate 1 is 0.005 below with SE 0.003 (under two), 2 and 3 are
        // 0.010 below with SE 0.004 (over two), tied: the more accurate, 3.
        assert_eq!(pick(&accs, &losses, Some(&[0.0, 0.003, 0.004, 0.004])), 3);
        // Candidate 1 alone is clear: it wins though 2 and 3 have the lower loss.
        assert_eq!(pick(&accs, &losses, Some(&[0.0, 0.002, 0.006, 0.006])), 1);
        // None is clear: the first stays, whatever the top-1. Exactly two is not enough.
        assert_eq!(pick(&accs, &losses, Some(&[0.0, 0.01, 0.01, 0.01])), 0);
        assert_eq!(pick(&accs, &[0.06, 0.04], Some(&[0.0, 0.01])), 0);
        // The paired standard error is the spread of the differences, not of the losses: a
        // candidate that moves every image's loss by the same amount has none.
        let a = Scored {
            acc: 0.0,
            losses: vec![0.1, 2.0, 0.3, 0.0],
        };
        let shifted = Scored {
            acc: 0.0,
            losses: a.losses.iter().map(|l| l - 0.01).collect(),
        };
        assert!(shifted.paired_se(&a) < 1e-12);
        let b = Scored {
            acc: 0.0,
            losses: vec![0.1, 1.0, 0.3, 0.0],
        };
        // Differences 0, −1, 0, 0: mean −0.25, sample variance 0.25, SE √(0.25 / 4) = 0.25.
        assert!((b.paired_se(&a) - 0.25).abs() < 1e-12);
        assert!((b.loss() - 0.35).abs() < 1e-12);
    }

    #[test]
    fn bad_settings_are_errors_naming_the_field() {
        let (train_set, _) = digits_split();
        let (model, _) = train(
            &train_set,
            &TrainConfig {
                epochs: 1,
                ..TrainConfig::default_for(Arch::Mlp)
            },
            false,
        )
        .unwrap();
        let err = |c: QatConfig| {
            finetune(&model, &train_set, &c, false)
                .unwrap_err()
                .to_string()
        };
        assert!(err(QatConfig::new(&[8, 8])).contains("levels"));
        assert!(err(QatConfig::new(&[9, 4])).contains("levels"));
        assert!(
            err(QatConfig {
                level_weights: vec![1.0],
                ..QatConfig::new(&[8, 4])
            })
            .contains("level_weights")
        );
        assert!(
            err(QatConfig {
                level_weights: vec![0.0, 0.0],
                ..QatConfig::new(&[8, 4])
            })
            .contains("level_weights")
        );
        assert!(
            err(QatConfig {
                lr: -1.0,
                ..QatConfig::new(&[8, 4])
            })
            .contains("lr")
        );
        assert!(
            err(QatConfig {
                distill: 1.5,
                ..QatConfig::new(&[8, 4])
            })
            .contains("distill")
        );
        let mnist_shaped = Dataset {
            shape: [1, 28, 28],
            pixels: vec![0; 784],
            labels: vec![0],
            ..train_set.clone()
        };
        assert!(
            finetune(&model, &mnist_shaped, &QatConfig::new(&[8, 4]), false)
                .unwrap_err()
                .to_string()
                .contains("train_set")
        );
    }
}
