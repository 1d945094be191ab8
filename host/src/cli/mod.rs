//! Argument parsing and dispatch of the `caq` subcommands.

#[cfg(feature = "sim")]
mod adapt;
#[cfg(feature = "sim")]
mod adaptive;
mod adaptive_run;
#[cfg(feature = "sim")]
mod bench;
#[cfg(all(feature = "sim", feature = "hdl"))]
mod demo;
#[cfg(feature = "train")]
mod finetune;
#[cfg(feature = "sim")]
mod gate;
#[cfg(feature = "hdl")]
mod hdl;
mod import;
mod inspect;
mod models;
#[cfg(feature = "sim")]
mod plots;
mod run;
#[cfg(feature = "sim")]
mod switch;
mod table;
#[cfg(feature = "sim")]
mod tiny;

use anyhow::{Context, Result, bail};
use caq_model::data::{self, Dataset};
use caq_model::quant::{Calibration, Rounding};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::Path;

#[derive(Parser, Debug)]
#[command(
    name = "caq",
    version,
    about = "Context-aware adaptive quantization: models, RTL and driver for FPGA accelerators"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest arguments (`caq run`'s, when the board
// build leaves out the other large ones) costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Train a float model (MLP for digits, LeNet-style CNN for MNIST).
    Train(models::TrainArgs),
    /// A float model of a reference architecture with seeded Kaiming weights, untrained: the
    /// MLPerf Tiny shapes (resnet8, ds_cnn, mobilenet_v1, autoencoder) where their data is not here.
    Init(models::InitArgs),
    /// Quantize a float model into a nested model bundle (post-training).
    Quantize(models::QuantizeArgs),
    /// Nested-aware quantization-aware training: fine-tune a float model with every nesting
    /// level fake-quantized, write the nested bundle, compare with post-training quantization.
    #[cfg(feature = "train")]
    Finetune(finetune::FinetuneArgs),
    /// Accuracy of a float model and its quantized variants on the held-out split.
    Eval(models::EvalArgs),
    /// Import an ONNX float model (Gemm, Conv, pools, BatchNorm, ...) as a caq float model.
    Import(import::ImportArgs),
    /// Export a caq float model as an ONNX model (opset 13).
    Export(import::ExportArgs),
    /// Show a model bundle: layers, nesting levels, bytes per plane group.
    Inspect(inspect::InspectArgs),
    /// Build one gate (per-layer bit-widths) per context class into a nested bundle.
    #[cfg(feature = "sim")]
    Gate(gate::GateArgs),
    /// The end-to-end job on the digits data the repo carries: train, quantize nested, build the
    /// gates, generate the RTL, replay a context trace on the device model.
    #[cfg(all(feature = "sim", feature = "hdl"))]
    Demo(demo::DemoArgs),
    /// The benchmark report on the MNIST CNN: storage, accuracy and energy per gate and per
    /// uniform precision, cycles, switch cost, simulation speed (writes docs/results.md).
    #[cfg(feature = "sim")]
    Bench(bench::BenchArgs),
    /// Generate, lint and synthesize the accelerator RTL of a config.
    #[cfg(feature = "hdl")]
    Hdl(hdl::HdlArgs),
    /// Whole-network inference on a backend, checked byte for byte against the golden model.
    Run(run::RunArgs),
    /// Bytes and time of precision switches by paging nested plane groups, against reloading
    /// separately quantized models (on the functional device).
    #[cfg(feature = "sim")]
    SwitchCost(switch::SwitchArgs),
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(a) => models::train(a),
        Command::Init(a) => models::init(a),
        Command::Quantize(a) => models::quantize(a),
        #[cfg(feature = "train")]
        Command::Finetune(a) => finetune::run(a),
        Command::Eval(a) => models::eval(a),
        Command::Import(a) => import::import(a),
        Command::Export(a) => import::export(a),
        Command::Inspect(a) => inspect::inspect(a),
        #[cfg(feature = "sim")]
        Command::Gate(a) => gate::run(a),
        #[cfg(all(feature = "sim", feature = "hdl"))]
        Command::Demo(a) => demo::demo(a),
        #[cfg(feature = "sim")]
        Command::Bench(a) => bench::run(a),
        #[cfg(feature = "hdl")]
        Command::Hdl(a) => hdl::run(a),
        Command::Run(a) => run::run(a),
        #[cfg(feature = "sim")]
        Command::SwitchCost(a) => switch::run(a),
    }
}

/// Where the data comes from and how it is split; the same flags on every command so that a
/// model is always evaluated on the split it was not trained on.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// `digits` (the copy the repo carries), a digits CSV(.gz), an MNIST IDX directory, or
    /// `synthetic`: seeded random images of the model's own input shape (accuracy not applicable;
    /// `caq quantize`, `eval` and `run`).
    #[arg(long, default_value = "digits")]
    pub data: String,
    /// Held-out images (stratified); default 20% for digits, 2000 for MNIST.
    #[arg(long, value_parser = count)]
    pub test_count: Option<usize>,
    /// Seed of the stratified split.
    #[arg(long, default_value_t = 0)]
    pub split_seed: u64,
}

pub struct Split {
    pub train: Dataset,
    pub test: Dataset,
    /// Each held-out image's index in the data set as loaded (file order).
    pub test_index: Vec<usize>,
}

/// Top-1 as the tables print it: not applicable on synthetic data, whose labels are random.
pub fn top1_text(dataset: &str, pct: f64) -> String {
    if dataset == data::SYNTHETIC {
        "n/a".into()
    } else {
        format!("{pct:.2}")
    }
}

/// Images `--data synthetic` makes: the training split (calibration) and the held-out split by
/// default (`--test-count` sets the second).
const SYNTHETIC_TRAIN: usize = 256;
const SYNTHETIC_TEST: usize = 64;

impl DataArgs {
    /// Whether `--data synthetic` was given.
    pub fn is_synthetic(&self) -> bool {
        self.data == data::SYNTHETIC
    }

    /// The split, for a model whose input is `shape` with `classes` outputs: the data set, or
    /// with `--data synthetic` seeded random images of that shape (`--split-seed` seeds them).
    pub fn load_shaped(&self, shape: [usize; 3], classes: usize) -> Result<Split> {
        if !self.is_synthetic() {
            return self.load();
        }
        let test = self.test_count.unwrap_or(SYNTHETIC_TEST);
        let ds = data::synthetic(
            shape,
            classes.clamp(1, 256),
            SYNTHETIC_TRAIN + test,
            self.split_seed,
        )
        .context("--data synthetic")?;
        let train: Vec<usize> = (0..SYNTHETIC_TRAIN).collect();
        let test_index: Vec<usize> = (SYNTHETIC_TRAIN..SYNTHETIC_TRAIN + test).collect();
        Ok(Split {
            train: ds.subset(&train),
            test: ds.subset(&test_index),
            test_index,
        })
    }

    pub fn load(&self) -> Result<Split> {
        if self.is_synthetic() {
            bail!(
                "--data synthetic: this command has no model to take the image shape from \
                 (synthetic data works with caq quantize, eval and run)"
            );
        }
        let ds = data::load(&self.data).with_context(|| format!("loading --data {}", self.data))?;
        if ds.len() < 2 {
            bail!(
                "--data {}: {} image(s); a training and a held-out split need at least 2",
                self.data,
                ds.len()
            );
        }
        let test_count = self.test_count.unwrap_or(if ds.len() > 5000 {
            2000
        } else {
            ((ds.len() as f64 * 0.2).round() as usize).clamp(1, ds.len() - 1)
        });
        let (train, test) = ds
            .split_indices(test_count, self.split_seed)
            .with_context(|| format!("splitting {} ({} images)", ds.name, ds.len()))?;
        Ok(Split {
            train: ds.subset(&train),
            test: ds.subset(&test),
            test_index: test,
        })
    }
}

/// The validation images carved (stratified, seeded with `--split-seed`) from a training split:
/// `(rest, validation)`. `caq train --val-images N` leaves them out and `caq finetune` makes its
/// choices on them, so the same N and seed give both commands the same images.
pub fn carve_val(train: &Dataset, n: usize, split_seed: u64) -> Result<(Dataset, Dataset)> {
    train.stratified_split(n, split_seed).with_context(|| {
        format!(
            "--val-images {n}: carving a validation set from {} training images",
            train.len()
        )
    })
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum RoundingArg {
    Nearest,
    Adaptive,
}

impl From<RoundingArg> for Rounding {
    fn from(r: RoundingArg) -> Rounding {
        match r {
            RoundingArg::Nearest => Rounding::Nearest,
            RoundingArg::Adaptive => Rounding::Adaptive,
        }
    }
}

/// `minmax` or `percentile:P`.
pub fn parse_calibration(s: &str) -> Result<Calibration> {
    if s == "minmax" {
        return Ok(Calibration::MinMax);
    }
    if let Some(p) = s.strip_prefix("percentile:") {
        let pct: f32 = p
            .parse()
            .with_context(|| format!("--calibration: '{p}' is not a number"))?;
        if !(50.0..=100.0).contains(&pct) {
            bail!("--calibration: percentile {pct} is outside 50..=100");
        }
        return Ok(Calibration::Percentile { pct });
    }
    bail!("--calibration: expected 'minmax' or 'percentile:P', found '{s}'")
}

/// `8,4` -> [8, 4]: strictly descending bit-widths in 2..=8.
pub fn parse_levels(s: &str) -> Result<Vec<u8>> {
    let levels = s
        .split(',')
        .map(|t| {
            t.trim()
                .parse::<u8>()
                .with_context(|| format!("--levels: '{t}' is not a bit-width"))
        })
        .collect::<Result<Vec<u8>>>()?;
    if levels.is_empty() || levels.iter().any(|b| !(2..=8).contains(b)) {
        bail!("--levels: every bit-width must be in 2..=8, found {levels:?}");
    }
    if levels.windows(2).any(|w| w[0] <= w[1]) {
        bail!("--levels: must be strictly descending (e.g. 8,6,4), found {levels:?}");
    }
    Ok(levels)
}

/// Writes a JSON report: to standard output for `-`, otherwise atomically (never over a device
/// node: `caq_spec::fsio`).
pub fn write_json<T: serde::Serialize>(path: &Path, v: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(v).context("serializing the report")?;
    if path == Path::new("-") {
        println!("{text}");
        return Ok(());
    }
    caq_model::store::write_bytes_atomic(path, format!("{text}\n").as_bytes())
        .with_context(|| format!("writing --json {}", path.display()))
}

/// Refuses a command whose outputs name one of its inputs or each other: `caq quantize --out X
/// --json X` would leave the JSON where the bundle should be, `--out` over `--model` would destroy
/// the model. Each entry is a flag and its path; `-` (standard output) is never a clash.
pub fn check_outputs(inputs: &[(&str, &Path)], outputs: &[(&str, &Path)]) -> Result<()> {
    let same = |a: &Path, b: &Path| a == b || caq_spec::fsio::same_file(a, b);
    for (i, (flag, out)) in outputs.iter().enumerate() {
        if *out == Path::new("-") {
            continue;
        }
        for (in_flag, input) in inputs {
            if same(out, input) {
                bail!(
                    "{flag} {} is also {in_flag}: an output must not overwrite an input",
                    out.display()
                );
            }
        }
        for (other_flag, other) in &outputs[..i] {
            if same(out, other) {
                bail!(
                    "{flag} and {other_flag} are the same file ({}): give each output its own path",
                    out.display()
                );
            }
        }
    }
    Ok(())
}

/// clap value parser of a count: an integer of at least 1 (`--limit 0` would run nothing and
/// report an empty table as success).
pub fn count(text: &str) -> std::result::Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "expected a whole number of at least 1, not '{text}'"
        )),
    }
}

/// clap value parser of a positive, finite number (seconds, rates).
pub fn positive(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("expected a positive, finite number, not '{text}'")),
    }
}

/// clap value parser of a fraction in (0, 1].
#[cfg(feature = "sim")]
pub fn fraction(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(format!("expected a fraction in (0, 1], not '{text}'")),
    }
}

/// clap value parser of a percentage in 0..=100.
#[cfg(feature = "hdl")]
pub fn percent(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(format!("expected a percentage in 0..=100, not '{text}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_must_descend_within_range() {
        assert_eq!(parse_levels("8,6,4").unwrap(), vec![8, 6, 4]);
        assert!(parse_levels("8,8").is_err());
        assert!(parse_levels("4,8").is_err());
        assert!(parse_levels("9").is_err());
        let e = parse_levels("8,x").unwrap_err().to_string();
        assert!(e.contains("'x'"), "{e}");
    }

    #[test]
    fn calibration_flag_forms() {
        assert_eq!(parse_calibration("minmax").unwrap(), Calibration::MinMax);
        assert_eq!(
            parse_calibration("percentile:99.9").unwrap(),
            Calibration::Percentile { pct: 99.9 }
        );
        assert!(parse_calibration("percentile:20").is_err());
        assert!(parse_calibration("median").is_err());
    }
}
