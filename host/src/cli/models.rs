//! `caq train`, `caq quantize` and `caq eval`.

use super::{DataArgs, RoundingArg, parse_calibration, parse_levels, table, write_json};
use anyhow::{Context, Result};
use caq_model::bundle::{self, Bundle};
use caq_model::graph::FloatModel;
use caq_model::qmodel::{self, QuantizeConfig};
use caq_model::report::{self, SuiteOptions, SuiteReport};
use clap::Args;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Network: `mlp` (default for digits) or `lenet` (default for MNIST).
    #[arg(long)]
    arch: Option<String>,
    #[arg(long, value_parser = super::count)]
    epochs: Option<usize>,
    /// Seed of weight initialisation and shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Leave out this many training images: the validation set of `caq finetune --val-images`
    /// (the same images for the same number and --split-seed), which a model fine-tuned later
    /// must not have been trained on.
    #[arg(long, value_parser = super::count)]
    val_images: Option<usize>,
    /// Where the float model is written.
    #[arg(long, default_value = "out/model.caqf")]
    out: PathBuf,
    /// Also write the figures as JSON to this file (written atomically).
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Architecture: mlp, lenet, resnet8, ds_cnn, mobilenet_v1 or autoencoder.
    #[arg(long)]
    arch: String,
    /// Input shape C,H,W [default: the MLPerf Tiny benchmark's for the four Tiny networks].
    #[arg(long, value_parser = parse_shape)]
    input_shape: Option<[usize; 3]>,
    /// Output classes [default: the MLPerf Tiny benchmark's].
    #[arg(long, value_parser = super::count)]
    classes: Option<usize>,
    /// Seed of the weights (ChaCha8, Kaiming-uniform).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where the float model is written.
    #[arg(long, default_value = "out/model.caqf")]
    out: PathBuf,
}

fn parse_shape(s: &str) -> std::result::Result<[usize; 3], String> {
    let v: Vec<usize> = s
        .split(',')
        .map(|d| d.trim().parse::<usize>().ok().filter(|&d| d > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("'{s}': expected C,H,W of positive integers"))?;
    <[usize; 3]>::try_from(v).map_err(|_| format!("'{s}': expected three numbers C,H,W"))
}

pub fn init(a: InitArgs) -> Result<()> {
    use caq_model::arch::{self, Arch};
    super::check_outputs(&[], &[("--out", a.out.as_path())])?;
    let names: Vec<&str> = Arch::ALL.iter().map(|(n, _)| *n).collect();
    let arch = Arch::from_name(&a.arch).with_context(|| {
        format!(
            "--arch: expected one of {}, found '{}'",
            names.join(", "),
            a.arch
        )
    })?;
    let tiny = arch.mlperf_tiny();
    let (shape, classes) = match (a.input_shape, a.classes, tiny) {
        (Some(s), Some(c), _) => (s, c),
        (s, c, Some((ts, tc))) => (s.unwrap_or(ts), c.unwrap_or(tc)),
        (_, _, None) => anyhow::bail!(
            "--arch {}: give --input-shape and --classes (its shape comes from its data)",
            a.arch
        ),
    };
    let model = arch::seeded(arch, shape, classes, a.seed)
        .with_context(|| format!("--arch {} at --input-shape {shape:?}", a.arch))?;
    model
        .save(&a.out)
        .with_context(|| format!("writing --out {}", a.out.display()))?;
    let params = model.param_count();
    println!(
        "{} ({} weight layers, {params} parameters, input {shape:?}, seed {}) written to {}",
        arch.name(),
        model.graph.weight_layers().len(),
        a.seed,
        a.out.display()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// The float model (from `caq train`).
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    q: QuantFlags,
    /// Where the bundle is written.
    #[arg(long, default_value = "out/model.caqb")]
    out: PathBuf,
    /// Also write the figures as JSON to this file (written atomically).
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Flags every quantization shares: regions, nesting-aware clipping, activations, calibration.
#[derive(Args, Debug, Clone)]
pub struct CommonQuantFlags {
    /// Local quantization regions: one weight scale per this many elements along K.
    #[arg(long)]
    group_size: Option<usize>,
    /// Nested models choose their full-bit scale for the error over all nesting levels.
    #[arg(long)]
    nest_clip: bool,
    /// Activation bits of the hidden layers (2..=8) [default: 8].
    #[arg(long, value_parser = clap::value_parser!(u8).range(2..=8))]
    act_bits: Option<u8>,
    /// `minmax` or `percentile:P` [default: percentile:99.99].
    #[arg(long)]
    calibration: Option<String>,
    /// Calibration images taken from the training split [default: 512].
    #[arg(long, value_parser = super::count)]
    calib_images: Option<usize>,
}

/// An error naming the flags in `given` that do not apply (`why` says where), if any.
fn refuse_given(given: &[&str], why: &str) -> Result<()> {
    match given {
        [] => Ok(()),
        [one] => anyhow::bail!("{one} does not apply {why}"),
        _ => anyhow::bail!("{} do not apply {why}", given.join(", ")),
    }
}

// The quantization flags have no clap defaults (they are applied here), so a command can tell
// a flag the user gave from one left out, and refuse one that does not apply.
const DEFAULT_LEVELS: &str = "8,6,4";
const DEFAULT_ACT_BITS: u8 = 8;
const DEFAULT_CALIBRATION: &str = "percentile:99.99";
const DEFAULT_CALIB_IMAGES: usize = 512;

#[derive(Args, Debug, Clone)]
pub struct QuantFlags {
    /// Nesting levels, descending: `8,4` is INT8 ⊃ INT4; `6` is a plain 6-bit model [default:
    /// 8,6,4].
    #[arg(long)]
    levels: Option<String>,
    /// [default: adaptive]
    #[arg(long, value_enum)]
    rounding: Option<RoundingArg>,
    /// Per-channel MSE search of the clipping range.
    #[arg(long)]
    clip_search: bool,
    #[command(flatten)]
    common: CommonQuantFlags,
}

impl CommonQuantFlags {
    pub(super) fn act_bits(&self) -> u8 {
        self.act_bits.unwrap_or(DEFAULT_ACT_BITS)
    }

    pub(super) fn calibration(&self) -> Result<caq_model::quant::Calibration> {
        parse_calibration(self.calibration.as_deref().unwrap_or(DEFAULT_CALIBRATION))
    }

    pub(super) fn calib_images(&self) -> usize {
        self.calib_images.unwrap_or(DEFAULT_CALIB_IMAGES)
    }

    /// The flags the user gave, by name.
    fn given(&self) -> Vec<&'static str> {
        [
            ("--group-size", self.group_size.is_some()),
            ("--nest-clip", self.nest_clip),
            ("--act-bits", self.act_bits.is_some()),
            ("--calibration", self.calibration.is_some()),
            ("--calib-images", self.calib_images.is_some()),
        ]
        .into_iter()
        .filter_map(|(f, on)| on.then_some(f))
        .collect()
    }

    /// The quantization these flags ask for, with the given levels, rounding and clip search.
    pub(super) fn config(
        &self,
        levels: Vec<u8>,
        rounding: RoundingArg,
        clip_search: bool,
    ) -> Result<QuantizeConfig> {
        Ok(QuantizeConfig {
            levels,
            rounding: rounding.into(),
            group_size: self.group_size,
            clip_search,
            nest_clip: self.nest_clip,
            act_bits: self.act_bits(),
            calibration: self.calibration()?,
            calib_images: self.calib_images(),
        })
        .and_then(|c| {
            caq_model::validate::quantize_config(&c)?;
            Ok(c)
        })
    }
}

impl QuantFlags {
    pub(super) fn config(&self) -> Result<QuantizeConfig> {
        self.common.config(
            parse_levels(self.levels.as_deref().unwrap_or(DEFAULT_LEVELS))?,
            self.rounding.unwrap_or(RoundingArg::Adaptive),
            self.clip_search,
        )
    }

    /// Refuses quantization flags where the model is already quantized (`--bundle`): they would
    /// be silently ignored.
    pub(super) fn refuse_with(&self, why: &str) -> Result<()> {
        let mut given = self.common.given();
        for (flag, on) in [
            ("--levels", self.levels.is_some()),
            ("--rounding", self.rounding.is_some()),
            ("--clip-search", self.clip_search),
        ] {
            if on {
                given.insert(0, flag);
            }
        }
        refuse_given(&given, why)
    }
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The float model (from `caq train`).
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Evaluate this bundle at each of its levels instead of running the full suite.
    #[arg(long)]
    bundle: Option<PathBuf>,
    #[command(flatten)]
    suite: SuiteFlags,
    /// Also write the figures as JSON to this file (written atomically).
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct SuiteFlags {
    /// Part-bit widths b of the nested pairs 8⊃b and of the uniform baselines [default: 6,4,3,2].
    #[arg(long)]
    part_bits: Option<String>,
    /// Multi-level chain evaluated at every level [default: 8,6,4].
    #[arg(long)]
    chain: Option<String>,
    /// Use max|w| scales instead of the per-channel MSE clip search.
    #[arg(long)]
    no_clip_search: bool,
    #[command(flatten)]
    common: CommonQuantFlags,
}

impl SuiteFlags {
    fn options(&self) -> Result<SuiteOptions> {
        let part_bits = self
            .part_bits
            .as_deref()
            .unwrap_or("6,4,3,2")
            .split(',')
            .map(|t| {
                t.trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|b| (2..8).contains(b))
                    .with_context(|| format!("--part-bits: '{t}' is not a bit-width in 2..=7"))
            })
            .collect::<Result<Vec<u8>>>()?;
        Ok(SuiteOptions {
            part_bits,
            chain: parse_levels(self.chain.as_deref().unwrap_or("8,6,4"))?,
            group_size: self.common.group_size,
            clip_search: !self.no_clip_search,
            nest_clip: self.common.nest_clip,
            act_bits: self.common.act_bits(),
            calibration: self.common.calibration()?,
            calib_images: self.common.calib_images(),
            ..SuiteOptions::default()
        })
    }

    /// Refuses the suite's flags where no suite runs (`eval --bundle`): they would be ignored.
    fn refuse_with(&self, why: &str) -> Result<()> {
        let mut given = self.common.given();
        for (flag, on) in [
            ("--part-bits", self.part_bits.is_some()),
            ("--chain", self.chain.is_some()),
            ("--no-clip-search", self.no_clip_search),
        ] {
            if on {
                given.insert(0, flag);
            }
        }
        refuse_given(&given, why)
    }
}

#[cfg(feature = "train")]
pub(super) fn train_model(
    split: &super::Split,
    arch: Option<&str>,
    epochs: Option<usize>,
    seed: u64,
    quiet: bool,
) -> Result<(FloatModel, caq_model::train::TrainReport)> {
    use caq_model::train::{self, Arch, TrainConfig};
    let arch = match arch {
        Some(name) => Arch::from_name(name).with_context(|| {
            let names: Vec<&str> = Arch::ALL.iter().map(|(n, _)| *n).collect();
            format!(
                "--arch: expected one of {}, found '{name}'",
                names.join(", ")
            )
        })?,
        None if split.train.shape[1] > 8 => Arch::LeNet,
        None => Arch::Mlp,
    };
    let mut cfg = TrainConfig::default_for(arch);
    cfg.seed = seed;
    if let Some(e) = epochs {
        cfg.epochs = e;
    }
    Ok(train::train(&split.train, &cfg, !quiet)?)
}

#[cfg(not(feature = "train"))]
pub(super) fn train_model(
    _split: &super::Split,
    _arch: Option<&str>,
    _epochs: Option<usize>,
    _seed: u64,
    _quiet: bool,
) -> Result<(FloatModel, std::convert::Infallible)> {
    anyhow::bail!("this caq was built without training support (cargo feature `train`)")
}

#[derive(Serialize)]
struct TrainSummary {
    model: PathBuf,
    dataset: String,
    train_images: usize,
    test_images: usize,
    seconds: f64,
    test_accuracy_pct: f64,
}

pub fn train(a: TrainArgs) -> Result<()> {
    let json: Vec<(&str, &Path)> = a.json.iter().map(|j| ("--json", j.as_path())).collect();
    super::check_outputs(&[], &[&[("--out", a.out.as_path())][..], &json].concat())?;
    let mut split = a.data.load()?;
    if let Some(n) = a.val_images {
        split.train = super::carve_val(&split.train, n, a.data.split_seed)?.0;
    }
    let t = Instant::now();
    let (model, _report) = train_model(&split, a.arch.as_deref(), a.epochs, a.seed, a.quiet)?;
    let seconds = t.elapsed().as_secs_f64();
    model
        .save(&a.out)
        .with_context(|| format!("writing --out {}", a.out.display()))?;
    let acc = qmodel::float_accuracy(&model, &split.test)?;
    println!(
        "trained on {} images of {} in {seconds:.1} s; held-out accuracy {acc:.2}% on {} images; model written to {}",
        split.train.len(),
        split.train.name,
        split.test.len(),
        a.out.display()
    );
    if let Some(j) = &a.json {
        write_json(
            j,
            &TrainSummary {
                model: a.out.clone(),
                dataset: split.train.name.clone(),
                train_images: split.train.len(),
                test_images: split.test.len(),
                seconds,
                test_accuracy_pct: acc,
            },
        )?;
    }
    Ok(())
}

pub(super) fn load_float(path: &Path) -> Result<FloatModel> {
    FloatModel::load(path).with_context(|| format!("reading --model {}", path.display()))
}

#[derive(Serialize)]
struct LevelAccuracy {
    bits: u8,
    accuracy_pct: f64,
}

#[derive(Serialize)]
pub(super) struct BundleEval {
    bundle: PathBuf,
    dataset: String,
    test_images: usize,
    f32_accuracy_pct: f64,
    levels: Vec<LevelAccuracy>,
}

pub fn quantize(a: QuantizeArgs) -> Result<()> {
    let json: Vec<(&str, &Path)> = a.json.iter().map(|j| ("--json", j.as_path())).collect();
    super::check_outputs(
        &[("--model", a.model.as_path())],
        &[&[("--out", a.out.as_path())][..], &json].concat(),
    )?;
    let cfg = a.q.config()?;
    let model = load_float(&a.model)?;
    let split = load_for(&a.data, &model)?;
    let q = qmodel::quantize(&model, &split.train, &cfg).context("quantizing")?;
    bundle::write(&a.out, &q).with_context(|| format!("writing --out {}", a.out.display()))?;
    println!("bundle written to {}", a.out.display());
    let report = eval_bundle(&model, &a.out, &split)?;
    if let Some(j) = &a.json {
        write_json(j, &report)?;
    }
    Ok(())
}

/// The split for `model`: `--data`, or synthetic images of the model's input shape.
pub(super) fn load_for(data: &DataArgs, model: &FloatModel) -> Result<super::Split> {
    let classes = model.graph.output_shape()?.iter().product();
    data.load_shaped(model.graph.input_shape, classes)
}

pub(super) fn eval_bundle(
    model: &FloatModel,
    path: &Path,
    split: &super::Split,
) -> Result<BundleEval> {
    let b = Bundle::open(path).with_context(|| format!("reading bundle {}", path.display()))?;
    let q = b.load()?;
    let f32_acc = qmodel::float_accuracy(model, &split.test)?;
    let mut levels = Vec::new();
    for &bits in q.levels() {
        levels.push(LevelAccuracy {
            bits,
            accuracy_pct: qmodel::int_accuracy(&q, &q.uniform_bits(bits), &split.test)?,
        });
    }
    let name = &split.test.name;
    let mut rows = vec![vec!["f32".to_string(), super::top1_text(name, f32_acc)]];
    for l in &levels {
        rows.push(vec![
            format!("{}-bit", l.bits),
            super::top1_text(name, l.accuracy_pct),
        ]);
    }
    println!(
        "\n{} on {} held-out images of {}:",
        path.display(),
        split.test.len(),
        split.test.name
    );
    table::print(&["precision", "top-1 %"], &rows);
    Ok(BundleEval {
        bundle: path.to_path_buf(),
        dataset: split.test.name.clone(),
        test_images: split.test.len(),
        f32_accuracy_pct: f32_acc,
        levels,
    })
}

fn print_suite(r: &SuiteReport) {
    println!(
        "\nTop-1 accuracy on {} held-out images of {}:",
        r.test_images, r.dataset
    );
    let rows: Vec<Vec<String>> = r
        .accuracy
        .iter()
        .map(|row| {
            vec![
                row.label(),
                row.rounding
                    .map(|x| format!("{x:?}").to_lowercase())
                    .unwrap_or_else(|| "-".into()),
                format!("{:.2}", row.accuracy_pct),
                format!("{:.2}", row.agreement_pct),
                format!("{:.4}", row.logit_rmse),
            ]
        })
        .collect();
    table::print(
        &[
            "model",
            "rounding",
            "top-1 %",
            "agrees with f32 %",
            "logit RMSE",
        ],
        &rows,
    );
    println!("\nWeight storage:");
    let rows: Vec<Vec<String>> = r
        .storage
        .iter()
        .map(|s| vec![s.what.clone(), s.bytes.to_string()])
        .collect();
    table::print(&["what", "bytes"], &rows);
}

fn run_suite(model: &FloatModel, split: &super::Split, opts: &SuiteOptions) -> Result<SuiteReport> {
    let r = report::run_suite(model, &split.train, &split.test, opts, |what| {
        eprintln!("  quantizing and evaluating: {what}")
    })?;
    print_suite(&r);
    Ok(r)
}

pub fn eval(a: EvalArgs) -> Result<()> {
    if let Some(j) = &a.json {
        let mut inputs = vec![("--model", a.model.as_path())];
        inputs.extend(a.bundle.iter().map(|b| ("--bundle", b.as_path())));
        super::check_outputs(&inputs, &[("--json", j.as_path())])?;
    }
    if a.bundle.is_some() {
        a.suite
            .refuse_with("with --bundle: the bundle is evaluated as it was quantized")?;
    }
    let opts = a.suite.options()?;
    let model = load_float(&a.model)?;
    let split = load_for(&a.data, &model)?;
    match &a.bundle {
        Some(b) => {
            let r = eval_bundle(&model, b, &split)?;
            if let Some(j) = &a.json {
                write_json(j, &r)?;
            }
        }
        None => {
            let r = run_suite(&model, &split, &opts)?;
            if let Some(j) = &a.json {
                write_json(j, &r)?;
            }
        }
    }
    Ok(())
}
