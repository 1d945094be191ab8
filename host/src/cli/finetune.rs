//! `caq finetune`: nested-aware quantization-aware training of a float model, written as a nested
//! bundle, and (with `--compare`) the table of post-training against quantization-aware accuracy
//! at every nesting level, beside a model fine-tuned for each level alone.

use super::{DataArgs, parse_calibration, parse_levels, table, write_json};
use anyhow::{Context, Result, bail};
use caq_model::bundle::{self, Bundle};
use caq_model::data::Dataset;
use caq_model::qat::{self, QatConfig};
use caq_model::qmodel::{self, QModel, QuantizeConfig};
use clap::Args;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct FinetuneArgs {
    /// The float model to start from (from `caq train` or `caq import`).
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Nesting levels, descending; every level is fake-quantized in every step.
    #[arg(long, default_value = "8,6,4,3,2")]
    levels: String,
    /// Loss weight per level, e.g. `1,1,1,1,2` (default: all alike).
    #[arg(long, conflicts_with = "gate_weights")]
    level_weights: Option<String>,
    /// Weight the levels by how often the gates of this bundle use them: a level's weight is 1
    /// plus (number of levels) × its share of the (gate, layer) slots.
    #[arg(long)]
    gate_weights: Option<PathBuf>,
    #[arg(long, default_value_t = 3, value_parser = super::count)]
    epochs: usize,
    #[arg(long, default_value_t = 1e-3, value_parser = super::positive)]
    lr: f64,
    #[arg(long, default_value_t = 32, value_parser = super::count)]
    batch_size: usize,
    /// Self-distillation weight: each level also learns the starting model's softmax
    /// (0 = labels only).
    #[arg(long, default_value_t = 0.5)]
    distill: f32,
    /// Seed of the batch order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Validation images carved (stratified, seeded with --split-seed) from the training split;
    /// every choice the command makes is made on them, never on the held-out set (default: one
    /// eighth of the training images). The starting model must not have seen them: train it
    /// with `caq train --val-images` and the same number.
    #[arg(long, value_parser = super::count)]
    val_images: Option<usize>,
    /// Local quantization regions: one weight scale per this many elements along K.
    #[arg(long)]
    group_size: Option<usize>,
    /// Plain max|w| channel scales instead of scales chosen for the error over all levels.
    #[arg(long)]
    plain_scales: bool,
    /// `minmax` or `percentile:P` (activation calibration after training).
    #[arg(long, default_value = "percentile:99.99")]
    calibration: String,
    /// Calibration images taken from the training split.
    #[arg(long, default_value_t = 512, value_parser = super::count)]
    calib_images: usize,
    /// Where the nested bundle is written.
    #[arg(long, default_value = "out/model-qat.caqb")]
    out: PathBuf,
    /// Also write the fine-tuned float model here.
    #[arg(long)]
    float_out: Option<PathBuf>,
    /// Also report post-training quantization of the starting model at every level.
    #[arg(long)]
    compare: bool,
    /// Also fine-tune one model per part-bit level alone (the dedicated reference); implies
    /// --compare.
    #[arg(long)]
    dedicated: bool,
    /// Write the comparison as a Markdown report (atomically), with the command that made it.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write the figures as JSON (atomically).
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

/// Top-1 % of one way of quantizing, at every level of the nested chain.
#[derive(Serialize, Clone, Debug)]
struct Row {
    method: String,
    /// Per level of `levels`, on the held-out set: accuracy %, or None where the method has no
    /// such level.
    accuracy_pct: Vec<Option<f64>>,
    /// The same on the validation images (carved from the training split).
    val_accuracy_pct: Vec<Option<f64>>,
}

#[derive(Serialize)]
struct Report {
    dataset: String,
    train_images: usize,
    val_images: usize,
    test_images: usize,
    levels: Vec<u8>,
    /// The joint training's level weights kept (the best of `weight_trials` on validation).
    level_weights: Vec<f32>,
    weight_trials: Vec<qat::WeightTrial>,
    distill: f32,
    float_accuracy_pct: f64,
    qat_float_accuracy_pct: f64,
    rows: Vec<Row>,
    qat: qat::QatReport,
    top_qat: qat::QatReport,
    /// Per level of the bundle shipped (the PTQ bundle's levels chosen top-down), the
    /// validation accuracy and loss of each candidate for its codes and the one kept.
    choices: Vec<qat::LevelChoice>,
    /// The same for the joint bundle's levels chosen bottom-up (reported, not shipped).
    joint_choices: Vec<qat::LevelChoice>,
    seconds: f64,
    command: String,
}

fn parse_weights(s: &str, n: usize) -> Result<Vec<f32>> {
    let w = s
        .split(',')
        .map(|t| {
            t.trim()
                .parse::<f32>()
                .with_context(|| format!("--level-weights: '{t}' is not a number"))
        })
        .collect::<Result<Vec<f32>>>()?;
    if w.len() != n {
        bail!("--level-weights: {} weights for {n} levels", w.len());
    }
    Ok(w)
}

/// 1 + n × share of the (gate, layer) slots at each level, from a bundle's gates.
fn weights_from_gates(path: &Path, levels: &[u8]) -> Result<Vec<f32>> {
    let q = Bundle::open(path)
        .and_then(|b| b.load())
        .with_context(|| format!("reading --gate-weights {}", path.display()))?;
    if q.gates.is_empty() {
        bail!(
            "--gate-weights {}: the bundle has no gates (build them with `caq gate`)",
            path.display()
        );
    }
    let mut count = vec![0usize; levels.len()];
    let mut total = 0usize;
    for g in &q.gates {
        for b in &g.bits {
            let Some(i) = levels.iter().position(|l| l == b) else {
                bail!(
                    "--gate-weights {}: gate '{}' uses {b} bits, which is not one of --levels {levels:?}",
                    path.display(),
                    g.name
                );
            };
            count[i] += 1;
            total += 1;
        }
    }
    let n = levels.len() as f32;
    Ok(count
        .iter()
        .map(|&c| 1.0 + n * c as f32 / total as f32)
        .collect())
}

fn accuracy_at(q: &QModel, bits: u8, test: &Dataset) -> Result<f64> {
    Ok(qmodel::int_accuracy(q, &q.uniform_bits(bits), test)?)
}

fn row(method: &str, q: &QModel, levels: &[u8], sets: &Sets) -> Result<Row> {
    let per = |set: &Dataset| -> Result<Vec<Option<f64>>> {
        levels
            .iter()
            .map(|&b| {
                Ok(if q.levels().contains(&b) {
                    Some(accuracy_at(q, b, set)?)
                } else {
                    None
                })
            })
            .collect()
    };
    Ok(Row {
        method: method.into(),
        accuracy_pct: per(sets.test)?,
        val_accuracy_pct: per(sets.val)?,
    })
}

/// The three disjoint parts of the data: training, validation (carved from the training
/// split) and held-out.
struct Sets<'a> {
    fit: &'a Dataset,
    val: &'a Dataset,
    test: &'a Dataset,
}

fn with_calibration(mut q: QuantizeConfig, a: &FinetuneArgs) -> Result<QuantizeConfig> {
    q.calibration = parse_calibration(&a.calibration)?;
    q.calib_images = a.calib_images;
    Ok(q)
}

pub fn run(a: FinetuneArgs) -> Result<()> {
    let start = Instant::now();
    let levels = parse_levels(&a.levels)?;
    let weight_candidates = match (&a.level_weights, &a.gate_weights) {
        (Some(s), _) => vec![parse_weights(s, levels.len())?],
        (None, Some(p)) => vec![weights_from_gates(p, &levels)?],
        (None, None) => qat::default_weight_candidates(&levels),
    };
    let model = super::models::load_float(&a.model)?;
    let split = a.data.load()?;
    let val_images = a.val_images.unwrap_or(split.train.len() / 8);
    let (fit, val) = super::carve_val(&split.train, val_images, a.data.split_seed)?;
    let sets = Sets {
        fit: &fit,
        val: &val,
        test: &split.test,
    };
    let cfg = QatConfig {
        group_size: a.group_size,
        nest_clip: !a.plain_scales,
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        seed: a.seed,
        distill: a.distill,
        ..QatConfig::new(&levels)
    };
    let qcfg = with_calibration(cfg.quantize_config(), &a)?;
    let compare = a.compare || a.dedicated;

    let mut rows = Vec::new();
    eprintln!("post-training quantization of the starting model");
    let ptq_cfg = with_calibration(QuantizeConfig::nested(&levels), &a)?;
    let ptq = qmodel::quantize(&model, sets.fit, &ptq_cfg).context("quantizing (PTQ)")?;
    if compare {
        rows.push(row(PTQ_DEFAULTS, &ptq, &levels, &sets)?);
        let q = qmodel::quantize(&model, sets.fit, &qcfg).context("quantizing (PTQ)")?;
        rows.push(row(
            "PTQ nested (the QAT quantizer: nearest, nesting-aware scales)",
            &q,
            &levels,
            &sets,
        )?);
    }

    let (done, weight_trials) = qat::finetune_nested(
        &model,
        &ptq,
        sets.fit,
        sets.val,
        Some(sets.test),
        &cfg,
        &weight_candidates,
        &qcfg,
        !a.quiet,
    )
    .with_context(|| format!("fine-tuning {}", a.model.display()))?;
    let level_weights = done.level_weights.clone();
    let q = &done.shipped().bundle;
    bundle::write(&a.out, q).with_context(|| format!("writing --out {}", a.out.display()))?;
    if let Some(p) = &a.float_out {
        done.tuned
            .save(p)
            .with_context(|| format!("writing --float-out {}", p.display()))?;
    }
    if compare {
        rows.push(row(JOINT_ROW, &done.joint, &levels, &sets)?);
        rows.push(row(
            FROM_JOINT_ROW,
            &done.joint_levels.bundle,
            &levels,
            &sets,
        )?);
    }
    rows.push(row(NESTED_ROW, q, &levels, &sets)?);

    if a.dedicated {
        let mut acc = vec![None; levels.len()];
        let mut val_acc = vec![None; levels.len()];
        for (i, &b) in levels.iter().enumerate() {
            let one = QatConfig {
                levels: vec![b],
                level_weights: vec![1.0],
                ..cfg.clone()
            };
            // The full-bit fine-tune of the nested recipe is this very model.
            let m = if i == 0 {
                done.top.clone()
            } else {
                eprintln!("fine-tuning a dedicated {b}-bit model");
                qat::finetune(&model, sets.fit, &one, !a.quiet)
                    .with_context(|| format!("fine-tuning the dedicated {b}-bit model"))?
                    .0
            };
            let qd = qmodel::quantize(&m, sets.fit, &with_calibration(one.quantize_config(), &a)?)
                .with_context(|| format!("quantizing the dedicated {b}-bit model"))?;
            acc[i] = Some(accuracy_at(&qd, b, sets.test)?);
            val_acc[i] = Some(accuracy_at(&qd, b, sets.val)?);
        }
        rows.push(Row {
            method: DEDICATED_ROW.into(),
            accuracy_pct: acc,
            val_accuracy_pct: val_acc,
        });
    }

    let float_acc = qmodel::float_accuracy(&model, &split.test)?;
    let tuned_acc = qmodel::float_accuracy(&done.tuned, &split.test)?;
    println!(
        "\nfine-tuned {:?} in {:.0} s; bundle written to {}",
        levels,
        done.report.seconds + done.top_report.seconds,
        a.out.display()
    );
    for t in &weight_trials {
        println!(
            "joint level weights {:?}: mean validation top-1 of the composed bundle {:.2} %",
            t.level_weights, t.val_mean_pct
        );
    }
    for (name, c) in [
        ("the joint bundle, bottom-up", &done.joint_levels),
        ("the PTQ bundle, top-down", &done.ptq_levels),
    ] {
        println!(
            "codes chosen per level from {name} on {} validation images (mean {:.2} %):",
            val.len(),
            c.val_mean_pct
        );
        for l in &c.choices {
            println!("  {}", choice_line(l));
        }
    }
    println!(
        "top-1 % on {} held-out images of {} (f32 {float_acc:.2}, after QAT f32 {tuned_acc:.2}), \
         [on {} validation images]:",
        split.test.len(),
        split.test.name,
        val.len()
    );
    let mut header = vec!["method".to_string()];
    header.extend(levels.iter().map(|b| format!("{b}-bit")));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut c = vec![r.method.clone()];
            c.extend(
                r.accuracy_pct
                    .iter()
                    .zip(&r.val_accuracy_pct)
                    .map(|(a, v)| cell(*a, *v)),
            );
            c
        })
        .collect();
    table::print(&header, &cells);

    // argv[0] as `caq`, whatever path ran it; the thread count is part of the recipe (candle's
    // reductions sum in another order with more threads), so it is shown when set.
    let threads = std::env::var("RAYON_NUM_THREADS")
        .map(|t| format!("RAYON_NUM_THREADS={t} "))
        .unwrap_or_default();
    let command = std::iter::once(format!("{threads}caq"))
        .chain(std::env::args().skip(1))
        .map(|s| {
            if s.contains(' ') && !s.starts_with("RAYON") {
                format!("'{s}'")
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let choices = done.shipped().choices.clone();
    let out = Report {
        dataset: split.test.name.clone(),
        train_images: fit.len(),
        val_images: val.len(),
        test_images: split.test.len(),
        levels,
        level_weights,
        weight_trials,
        distill: a.distill,
        float_accuracy_pct: float_acc,
        qat_float_accuracy_pct: tuned_acc,
        rows,
        qat: done.report,
        top_qat: done.top_report,
        choices,
        joint_choices: done.joint_levels.choices,
        seconds: start.elapsed().as_secs_f64(),
        command,
    };
    if let Some(p) = &a.report {
        caq_model::store::write_bytes_atomic(p, markdown(&out).as_bytes())
            .with_context(|| format!("writing --report {}", p.display()))?;
    }
    if let Some(j) = &a.json {
        write_json(j, &out)?;
    }
    Ok(())
}

const PTQ_DEFAULTS: &str = "PTQ nested (caq quantize defaults: adaptive rounding, max-abs scales)";
const JOINT_ROW: &str = "QAT nested, joint training alone (one bundle)";
const FROM_JOINT_ROW: &str = "QAT nested from the joint bundle (levels chosen bottom-up)";
const NESTED_ROW: &str =
    "QAT nested from PTQ (full bits kept, lower levels chosen top-down; the bundle written)";
const DEDICATED_ROW: &str = "QAT dedicated (one model per level, same recipe)";

/// A table cell: held-out accuracy, then the validation accuracy in brackets.
fn cell(test: Option<f64>, val: Option<f64>) -> String {
    match (test, val) {
        (Some(t), Some(v)) => format!("{t:.2} [{v:.2}]"),
        (Some(t), None) => format!("{t:.2}"),
        _ => "-".into(),
    }
}

fn choice_line(c: &qat::LevelChoice) -> String {
    let tried = c
        .candidates
        .iter()
        .zip(c.val_accuracy_pct.iter().zip(&c.val_loss))
        .enumerate()
        .map(
            |(k, (n, (a, l)))| match c.val_loss_se.get(k).filter(|_| k > 0) {
                Some(se) => format!("{n} {a:.2} % loss {l:.4} ± {se:.4}"),
                None => format!("{n} {a:.2} % loss {l:.4}"),
            },
        )
        .collect::<Vec<_>>()
        .join(", ");
    let kept = c.candidates.get(c.chosen).map_or("?", String::as_str);
    let held = c
        .held_out_accuracy_pct
        .iter()
        .map(|a| format!("{a:.2}"))
        .collect::<Vec<_>>()
        .join(", ");
    // A level with one candidate (top-down, the full bits) had nothing to hold back.
    let margin = if c.margin && c.candidates.len() > 1 {
        ", margin"
    } else {
        ""
    };
    format!(
        "{}-bit{margin}: {kept} (validation: {tried}; held-out, not used to choose: {held})",
        c.bits
    )
}

/// How the rows were made; part of every report.
const METHOD: &str = "
## How the rows were made

- **PTQ nested (defaults)**: `caq quantize` of the starting float model: per-channel max|w| \
scales, SQuant-style adaptive rounding of the full codes and of each nesting shift.
- **PTQ nested (the QAT quantizer)**: the same float model through the quantizer the fine-tuning \
simulates: round-to-nearest, each channel's scale chosen for the squared error summed over all \
levels (`nest_clip`).
- **QAT nested, joint training alone**: `caq_model::qat::finetune` from the starting model. \
Each step runs the batch once per level; the weights of every layer are replaced by \
`w + (q_level(w) − w)` with the difference held constant (straight-through estimator), where \
`q_level` is `nested::fake_quantize`, the very function `quantize` uses, so the integer model is \
what the last step saw. Each level's loss is `1 − distill` times the cross-entropy with the \
labels plus `distill` times the cross-entropy with the starting float model's softmax \
(self-distillation); the step's loss is the level-weighted mean over the levels; AdamW with a \
cosine schedule. Afterwards the activations (8-bit) are calibrated and the model is quantized \
with the QAT quantizer into one nested bundle. Without `--level-weights`, two trainings are \
made, all levels alike and the levels of 4 bits and fewer alone, and the one whose composed \
bundle (next row) has the higher mean validation accuracy over the levels is kept; this row is \
the kept training's bundle before the levels are chosen.
- **QAT nested from the joint bundle (levels chosen bottom-up)** \
(`caq_model::qat::finetune_nested`): the joint bundle's scales, biases and activations, with each \
level's codes chosen from the lowest level up among four candidates: the joint bundle's own \
codes, the weights of a full-bit fine-tune (the same recipe with the top level alone) rounded on \
the bundle's grid, the starting model's weights rounded the same way, and the level's own \
fine-tune (`qat::finetune_level`, \"level QAT\"): the same recipe with that level alone, from the \
joint training's float weights, each step seeing the level's codes on the bundle's own scales, \
kept within one step of the codes already chosen for the level below (the nesting rule), with \
the biases held (they are the bundle's). Each candidate is moved to the nearest codes that nest \
on the level already chosen below it (`nested::nearest_nested`: the signed residual reaches one \
lower-level step either way), and the one with the lowest mean cross-entropy at that level on \
the validation images is kept (ties: the more accurate).
- **QAT nested from PTQ (full bits kept, lower levels chosen top-down; the bundle written)** \
(`caq_model::qat::finetune_nested`, `NestedQat::shipped`): the PTQ bundle of the \
first row, its scales, biases, activations and full-bit codes kept exactly, and each lower level \
chosen from the top down among the PTQ bundle's own codes, the full-bit fine-tune's and the \
starting model's weights rounded on its grid, and the level's own fine-tune from the starting \
model on that grid. Top-down, a level's codes must be one of the two on which the level above \
nests (`nested::nearest_under`: ⌊above / 2^l⌋ or one more, AdaRound's down or up), so each \
candidate is moved into that band and the level fine-tune trains inside it; the lowest mean \
cross-entropy on the validation images is kept (ties: the more accurate), except that while \
every level above still holds the PTQ codes, a candidate replaces this level's PTQ codes only \
if its loss is lower by more than two standard errors of the per-image difference \
(`qat::KEEP_MARGIN_SE`, below). The full-bit level is \
the PTQ model's by construction: it cannot lose accuracy to the lower levels. Nesting ties a \
level to its neighbours only within one step of the lower one, so every level can be tuned for \
itself once its neighbour is fixed; the format and the integer arithmetic are unchanged. This \
composition is the bundle written, always: the one from the joint bundle is reported beside it \
(below, \"Also tried and not kept\").
- **QAT dedicated**: the same recipe with a single level, one model per column, quantized as a \
plain model of that bit-width: the reference a nested model is measured against. Its top-level \
model is the full-bit fine-tune above.

## Why the levels are chosen after training

Training every level jointly moves the float weights towards what the 2-bit level needs, and the top levels pay for it: on the MNIST LeNet of issue 21 the joint bundle was 0.6 points below a dedicated 8-bit model and 0.35 below plain PTQ at 8 bits. Weighting the levels or distilling only shifts that trade. The nesting itself offers a way out: a level's codes must lie within one step of the level below (the signed residual spans `[−2^l, 2^l − 1]`), and a step of the 4-bit level is 16 steps of the 8-bit one, far more than fine-tuning moves a weight. So each level can take codes tuned for itself (the joint training's, a full-bit fine-tune's, or its own fine-tune's in the band its neighbour leaves it), and each level's choice is made on data the training did not see.

Why each level gets its own fine-tune: with the joint training's codes alone, the levels of 3 \
and 2 bits stayed 0.35–0.5 points below their dedicated models on three LeNets (docs/qat-seeds.md \
before the level fine-tunes), because one set of float weights serves every level. A dedicated \
model trains one level on its own scales; the level fine-tune trains one level on the bundle's \
scales and inside the one-step band its neighbour leaves it, which is what the format can store.

Why the PTQ bundle is a base too, chosen from the top down: on the joint bundle's scales (chosen \
for the error over all levels) the full-bit level landed 0.05–0.15 points below PTQ on four of \
five LeNets, whichever codes it kept, because the PTQ model's max|w| scales and adaptive rounding \
are its own. Kept as a whole, with its full-bit codes fixed, the PTQ bundle cannot be worse than \
PTQ at the top level, which is the level the battery-high and deadline gates run; the lower \
levels are then chosen under it, each one step of freedom per weight (round down or up), which \
is all a level fine-tune needs to lift the 2-bit level by about three points. A validation set \
of 1000 images resolves 0.1 points, about the size of the differences it is asked to choose \
between at the upper levels (179 images on the digits MLP: 0.56 points).

Tried and not kept (commit fdd5018, measured with `scripts/qat-seeds.sh` on four LeNets and the \
digits MLP; the reports are not shipped): the starting model as the base of each level's choice, \
kept unless a fine-tuned candidate beat it on validation by more than one standard error of the \
paired difference (w − l > √(w + l) over the images on which exactly one of the two is right). It \
kept the starting model at 8 bits on all four LeNets, and that was still 0.05–0.10 points below \
PTQ there: on the joint bundle's scales the starting model is not the PTQ model, whose scales \
and rounding are its own. On the MLP's 179 validation images no fine-tune cleared the bar at any \
level, so its 2-bit level fell from 98.05 to 95.82 %. The most accurate candidate is kept again.

Also tried and not kept (this recipe with top-1 instead of cross-entropy as the criterion, \
`scripts/qat-seeds.sh` on four LeNets and the digits MLP): the most accurate candidate on \
validation, ties broken by the loss. On the MLP's 179 validation images it kept the full-bit \
fine-tune's codes at 2 bits, two images ahead of the level fine-tune (96.65 % against 95.53 %) \
with a mean cross-entropy of 0.174 against 0.121, and they scored 95.54 % against 98.05 % on the \
held-out images. On the LeNets the top-1 differences at 6 and 4 bits were one or two images of \
1000. The loss moves with every image, so it is what the choice is made on now.

Why the PTQ codes need a clear margin to be replaced, and only while the levels above kept \
theirs: with the lowest loss alone, two LeNets of `scripts/qat-seeds.sh` (seed 1 and this \
report's model, docs/qat-seeds.md at commit 708764f) kept a 6-bit candidate whose validation \
loss was 3–6 % below the PTQ codes' and lost 0.10 points to PTQ on the held-out images. At the \
upper levels the PTQ codes are within a few images of the full-bit model, so such a difference \
is mostly a few hard validation images; a paired test on the per-image losses asks how sure \
the split is, and two standard errors was fixed before the runs it is reported on. Unlike the \
starting-model rule above (a test on the images where exactly one candidate is right), it sees \
every image's loss: at 2 bits, where the PTQ codes' loss is four to a hundred times the \
fine-tune's, the level fine-tune lay 3.8 to 26 standard errors below them on every model \
measured. At 3 bits it cleared it on the \
LeNets that still held the PTQ codes above (seed 3, this report's model), not on the \
8 ⊃ 4 ⊃ 3 ⊃ 2 bundle of docs/results-qat.md (1.9 standard errors), which keeps the PTQ \
model's 3-bit codes (98.15 % held-out; the level fine-tune scored 98.65 %): the price of the \
bar, paid at a level that is never below PTQ. Once a level has left the PTQ codes, the codes \
below are nested under new ones and are no longer the PTQ model's level, so there is nothing \
left to protect and the lowest loss decides: with the margin at every level, the digits MLP \
kept its re-nested 3-bit PTQ codes under a fine-tuned 4-bit level and scored 97.49 % against \
PTQ's 97.77 % (`scripts/qat-seeds.sh` at commit 095cc12; reports not shipped).

Also tried and not kept (same run): shipping the composition from the joint bundle when its \
validation loss is lower than the PTQ composition's at every level below the top. On LeNet seed \
1 it was, and the bundle it shipped scored 98.25 % at 8 bits against PTQ's 98.35 %; its lower \
levels were not better on the held-out images beyond what the split resolves. The PTQ \
composition is written always: its full-bit level is the PTQ model's, code for code.

Every figure is top-1 on the held-out images, with the validation images' figure in brackets. \
The validation images are carved (stratified, `--val-images`, seeded with `--split-seed`) from \
the training split; the fine-tuning runs never see them, and neither has the starting model if \
it was trained with `caq train --val-images` and the same number. Nothing the command chooses \
looks at the held-out set. \
Activations are not fake-quantized during training (they are 8-bit at every level), and caq \
graphs carry no batch-norm to re-estimate per level (`caq import` folds it into the weights).
";

fn markdown(r: &Report) -> String {
    let mut s = String::new();
    s.push_str(
        "# Nested-aware QAT against post-training quantization\n\n\
         Generated by `caq finetune`; do not edit by hand. Command:\n\n```\n",
    );
    s.push_str(&r.command);
    s.push_str("\n```\n\n");
    s.push_str(&format!(
        "Top-1 accuracy (%) of the golden integer model at each nesting level, uniform over the \
         layers, on {} held-out images of {} [in brackets: on {} validation images carved from \
         the training split]; fine-tuned on the other {} training images. The float model: \
         {:.2} %; the all-level fine-tune's float weights: {:.2} %. Joint level weights tried \
         (mean validation top-1 over the levels of the bundle composed from each): {}; kept \
         {:?}. Distillation {}; fine-tuning took {:.0} s, the whole command {:.0} s.\n\n",
        r.test_images,
        r.dataset,
        r.val_images,
        r.train_images,
        r.float_accuracy_pct,
        r.qat_float_accuracy_pct,
        r.weight_trials
            .iter()
            .map(|t| format!("{:?} {:.2} %", t.level_weights, t.val_mean_pct))
            .collect::<Vec<_>>()
            .join(", "),
        r.level_weights,
        r.distill,
        r.qat.seconds + r.top_qat.seconds,
        r.seconds
    ));
    s.push_str("| method |");
    for b in &r.levels {
        s.push_str(&format!(" {}-bit |", b));
    }
    s.push_str("\n| --- |");
    for _ in &r.levels {
        s.push_str(" ---: |");
    }
    s.push('\n');
    for row in &r.rows {
        s.push_str(&format!("| {} |", row.method));
        for (a, v) in row.accuracy_pct.iter().zip(&row.val_accuracy_pct) {
            s.push_str(&format!(" {} |", cell(*a, *v)));
        }
        s.push('\n');
    }
    let find = |m: &str| r.rows.iter().find(|row| row.method == m);
    let nested = find(NESTED_ROW);
    for (label, other) in [
        ("nested − dedicated", find(DEDICATED_ROW)),
        ("nested − PTQ defaults", find(PTQ_DEFAULTS)),
    ] {
        let (Some(n), Some(d)) = (nested, other) else {
            continue;
        };
        s.push_str(&format!("| {label} (points) |"));
        for (i, (a, b)) in n.accuracy_pct.iter().zip(&d.accuracy_pct).enumerate() {
            let v = match (n.val_accuracy_pct[i], d.val_accuracy_pct[i]) {
                (Some(x), Some(y)) => format!(" [{:+.2}]", x - y),
                _ => String::new(),
            };
            match (a, b) {
                (Some(a), Some(b)) => s.push_str(&format!(" {:+.2}{v} |", a - b)),
                _ => s.push_str(" - |"),
            }
        }
        s.push('\n');
    }
    s.push_str(
        "\nThe codes kept at each level, with every candidate's validation top-1 and mean \
         cross-entropy, ± the standard error of its per-image loss difference from the first \
         candidate (what the split can resolve). The lowest loss is kept; at a level marked \
         \"margin\", only the first and the candidates more than two standard errors below it \
         competed:\n",
    );
    for (name, choices) in [
        (
            "From the PTQ bundle, top-down (the bundle written)",
            &r.choices,
        ),
        (
            "From the joint bundle, bottom-up (not shipped)",
            &r.joint_choices,
        ),
    ] {
        s.push_str(&format!("\n{name}:\n\n"));
        for c in choices {
            s.push_str(&format!("- {}\n", choice_line(c)));
        }
    }
    s.push_str(METHOD);
    s.push_str(&format!(
        "\nLast epoch's mean cross-entropy per level of the joint training (fake-quantized): {}.\n",
        r.levels
            .iter()
            .zip(&r.qat.level_losses)
            .map(|(b, l)| format!("{b}-bit {l:.4}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_weights_parse_and_must_match_the_levels() {
        assert_eq!(parse_weights("1, 2,0.5", 3).unwrap(), vec![1.0, 2.0, 0.5]);
        assert!(
            parse_weights("1,2", 3)
                .unwrap_err()
                .to_string()
                .contains("2 weights for 3")
        );
        assert!(
            parse_weights("1,x", 2)
                .unwrap_err()
                .to_string()
                .contains("'x'")
        );
    }
}
