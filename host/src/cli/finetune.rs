//! `caq finetune`: nested-aware quantization-aware training of a float model, written as a nested
//! bundle, and (with `--compare`) the table of post-training against quantization-aware accuracy
//! at every nesting level, beside a model fine-tuned for each level alone.

use super::{DataArgs, parse_calibration, parse_levels, table, write_json};
use anyhow::{Context, Result, bail};
use caq_model::bundle::{self, Bundle};
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

/// Held-out top-1 % of one way of quantizing, at every level of the nested chain.
#[derive(Serialize, Clone, Debug)]
struct Row {
    method: String,
    /// Per level of `levels`: accuracy %, or None where the method has no such level.
    accuracy_pct: Vec<Option<f64>>,
}

#[derive(Serialize)]
struct Report {
    dataset: String,
    train_images: usize,
    test_images: usize,
    levels: Vec<u8>,
    level_weights: Vec<f32>,
    distill: f32,
    float_accuracy_pct: f64,
    qat_float_accuracy_pct: f64,
    rows: Vec<Row>,
    qat: qat::QatReport,
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

fn accuracy_at(q: &QModel, bits: u8, test: &caq_model::data::Dataset) -> Result<f64> {
    Ok(qmodel::int_accuracy(q, &q.uniform_bits(bits), test)?)
}

fn row(method: &str, q: &QModel, levels: &[u8], test: &caq_model::data::Dataset) -> Result<Row> {
    let mut acc = Vec::with_capacity(levels.len());
    for &b in levels {
        acc.push(if q.levels().contains(&b) {
            Some(accuracy_at(q, b, test)?)
        } else {
            None
        });
    }
    Ok(Row {
        method: method.into(),
        accuracy_pct: acc,
    })
}

fn with_calibration(mut q: QuantizeConfig, a: &FinetuneArgs) -> Result<QuantizeConfig> {
    q.calibration = parse_calibration(&a.calibration)?;
    q.calib_images = a.calib_images;
    Ok(q)
}

pub fn run(a: FinetuneArgs) -> Result<()> {
    let start = Instant::now();
    let levels = parse_levels(&a.levels)?;
    let level_weights = match (&a.level_weights, &a.gate_weights) {
        (Some(s), _) => parse_weights(s, levels.len())?,
        (None, Some(p)) => weights_from_gates(p, &levels)?,
        (None, None) => vec![1.0; levels.len()],
    };
    let model = super::models::load_float(&a.model)?;
    let split = a.data.load()?;
    let cfg = QatConfig {
        level_weights: level_weights.clone(),
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
    if compare {
        eprintln!("post-training quantization of the starting model");
        let ptq = with_calibration(QuantizeConfig::nested(&levels), &a)?;
        let q = qmodel::quantize(&model, &split.train, &ptq).context("quantizing (PTQ)")?;
        rows.push(row(
            "PTQ nested (caq quantize defaults: adaptive rounding, max-abs scales)",
            &q,
            &levels,
            &split.test,
        )?);
        let q = qmodel::quantize(&model, &split.train, &qcfg).context("quantizing (PTQ)")?;
        rows.push(row(
            "PTQ nested (the QAT quantizer: nearest, nesting-aware scales)",
            &q,
            &levels,
            &split.test,
        )?);
    }

    let (tuned, report) = qat::finetune(&model, &split.train, &cfg, !a.quiet)
        .with_context(|| format!("fine-tuning {}", a.model.display()))?;
    let q = qmodel::quantize(&tuned, &split.train, &qcfg).context("quantizing the QAT model")?;
    bundle::write(&a.out, &q).with_context(|| format!("writing --out {}", a.out.display()))?;
    if let Some(p) = &a.float_out {
        tuned
            .save(p)
            .with_context(|| format!("writing --float-out {}", p.display()))?;
    }
    rows.push(row("QAT nested (one bundle)", &q, &levels, &split.test)?);

    if a.dedicated {
        let mut acc = vec![None; levels.len()];
        for (i, &b) in levels.iter().enumerate() {
            let one = QatConfig {
                levels: vec![b],
                level_weights: vec![1.0],
                ..cfg.clone()
            };
            eprintln!("fine-tuning a dedicated {b}-bit model");
            let (m, _) = qat::finetune(&model, &split.train, &one, !a.quiet)
                .with_context(|| format!("fine-tuning the dedicated {b}-bit model"))?;
            let qd = qmodel::quantize(
                &m,
                &split.train,
                &with_calibration(one.quantize_config(), &a)?,
            )
            .with_context(|| format!("quantizing the dedicated {b}-bit model"))?;
            acc[i] = Some(accuracy_at(&qd, b, &split.test)?);
        }
        rows.push(Row {
            method: "QAT dedicated (one model per level, same recipe)".into(),
            accuracy_pct: acc,
        });
    }

    let float_acc = qmodel::float_accuracy(&model, &split.test)?;
    let tuned_acc = qmodel::float_accuracy(&tuned, &split.test)?;
    println!(
        "\nfine-tuned {:?} in {:.0} s; bundle written to {}",
        levels,
        report.seconds,
        a.out.display()
    );
    println!(
        "top-1 % on {} held-out images of {} (f32 {float_acc:.2}, after QAT f32 {tuned_acc:.2}):",
        split.test.len(),
        split.test.name
    );
    let mut header = vec!["method".to_string()];
    header.extend(levels.iter().map(|b| format!("{b}-bit")));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut c = vec![r.method.clone()];
            c.extend(r.accuracy_pct.iter().map(|a| match a {
                Some(a) => format!("{a:.2}"),
                None => "-".into(),
            }));
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
    let out = Report {
        dataset: split.test.name.clone(),
        train_images: split.train.len(),
        test_images: split.test.len(),
        levels,
        level_weights,
        distill: a.distill,
        float_accuracy_pct: float_acc,
        qat_float_accuracy_pct: tuned_acc,
        rows,
        qat: report,
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

/// How the rows were made; part of every report.
const METHOD: &str = "
## How the rows were made

- **PTQ nested (defaults)**: `caq quantize` of the starting float model: per-channel max|w| \
scales, SQuant-style adaptive rounding of the full codes and of each nesting shift.
- **PTQ nested (the QAT quantizer)**: the same float model through the quantizer the fine-tuning \
simulates: round-to-nearest, each channel's scale chosen for the squared error summed over all \
levels (`nest_clip`).
- **QAT nested (one bundle)**: `caq_model::qat::finetune` from the starting model. Each step runs the batch \
once per level; the weights of every layer are replaced by `w + (q_level(w) − w)` with the \
difference held constant (straight-through estimator), where `q_level` is \
`nested::fake_quantize`, the very function `quantize` uses, so the integer model is what the last \
step saw. Each level's loss is half the cross-entropy with the labels and half the \
cross-entropy with the starting float model's softmax (self-distillation, `--distill 0.5`); the \
step's loss is the level-weighted mean over the levels; AdamW with a cosine schedule. Afterwards the activations (8-bit) are calibrated and the model is quantized \
with the QAT quantizer into one nested bundle; every column of this row is that one bundle.
- **QAT dedicated**: the same recipe with a single level, one model per column, quantized as a \
plain model of that bit-width: the reference a nested model is measured against.

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
         layers, on {} held-out images of {} (trained on the other {}). The float model: \
         {:.2} %; after fine-tuning, its float weights: {:.2} %. Level weights {:?}, \
         distillation {}; fine-tuning took {:.0} s, the whole command {:.0} s.\n\n",
        r.test_images,
        r.dataset,
        r.train_images,
        r.float_accuracy_pct,
        r.qat_float_accuracy_pct,
        r.level_weights,
        r.distill,
        r.qat.seconds,
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
        for a in &row.accuracy_pct {
            match a {
                Some(a) => s.push_str(&format!(" {a:.2} |")),
                None => s.push_str(" - |"),
            }
        }
        s.push('\n');
    }
    let find = |prefix: &str| r.rows.iter().find(|row| row.method.starts_with(prefix));
    if let (Some(n), Some(d)) = (find("QAT nested"), find("QAT dedicated")) {
        s.push_str("| QAT nested − dedicated (points) |");
        for (a, b) in n.accuracy_pct.iter().zip(&d.accuracy_pct) {
            match (a, b) {
                (Some(a), Some(b)) => s.push_str(&format!(" {:+.2} |", a - b)),
                _ => s.push_str(" - |"),
            }
        }
        s.push('\n');
    }
    s.push_str(METHOD);
    s.push_str(&format!(
        "\nLast epoch's mean cross-entropy per level (fake-quantized): {}.\n",
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
