//! `caq gate`: build one gate per context class into a model bundle.

use super::adapt::{self, GateTable};
use super::adaptive;
use super::models::load_float;
use super::{DataArgs, write_json};
use anyhow::{Context as _, Result};
use caq_model::bundle::{self, Bundle};
use caq_spec::AccelConfig;
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct GateArgs {
    /// The nested bundle (from `caq quantize`); its gates are replaced.
    #[arg(long)]
    bundle: PathBuf,
    /// The float model the bundle was quantized from: the gates are chosen by how far each
    /// setting's logits move from its logits (on training images, so nothing is tuned on the
    /// held-out split).
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// The accelerator config the costs are predicted for.
    #[arg(long, default_value = "configs/sim-small.toml")]
    config: PathBuf,
    /// Context classes, thresholds and budgets (default: the built-in copy of
    /// configs/contexts/default.toml).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Energy-model coefficients (default: the built-in ones of the config's board).
    #[arg(long)]
    energy: Option<PathBuf>,
    /// Training images the settings are scored on.
    #[arg(long, default_value_t = 1000, value_parser = super::count)]
    images: usize,
    /// Where the bundle with its gates is written (default: over --bundle, atomically).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also build each energy-budgeted class's input-adaptive policies: a confidence cascade
    /// and a gate network, within the class's budget on average and never above its static
    /// gate's energy (docs/gates.md, "Input-adaptive gating").
    #[arg(long)]
    adaptive: bool,
    /// Training images the adaptive policies are calibrated and trained on.
    #[arg(long, default_value_t = 4000)]
    adaptive_images: usize,
    /// With --adaptive: calibrate and train the policies on this many validation images carved
    /// from the training split (stratified, seeded with --split-seed): the images `caq train
    /// --val-images` with the same number leaves out, so the backbone never saw them. A model is
    /// more confident on the images it was trained on than on new ones, so thresholds set there
    /// escalate more new inputs, and spend more, than they did in calibration.
    #[arg(long, value_parser = super::count)]
    val_images: Option<usize>,
    /// With --adaptive: what each calibration image's output is scored against: the float
    /// model's top-1 (`float`, label-free) or the dataset's labels (`labels`).
    #[arg(long, value_enum, default_value_t = adaptive::Reference::Float)]
    adaptive_reference: adaptive::Reference,
    /// With --adaptive: the policies average at most this fraction of the static gate's
    /// energy (0 < F ≤ 1; 1: the most accuracy at no more energy than the gate; 0.8: aim for the
    /// gate's accuracy at 20 % less energy).
    #[arg(long, default_value_t = 1.0, value_parser = super::fraction)]
    adaptive_energy_fraction: f64,
    /// With --adaptive: the gate networks' features sum every N-th row of each cell of the
    /// first layer's output (default: about 4 rows per cell; 1 reads every code).
    #[arg(long, value_parser = super::count)]
    gate_row_step: Option<usize>,
    /// Seed of the gate networks' training.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// With --adaptive: write top-1 against energy per inference of every policy (SVG).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// With --adaptive: write the held-out table, the policies and the target as
    /// Markdown (generated documentation, e.g. docs/adaptive/lenet.md).
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Also write the figures as JSON to this file (written atomically).
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Serialize)]
struct GateReport {
    bundle: PathBuf,
    build: caq_host::gates::GateBuild,
    table: GateTable,
    adaptive: Option<AdaptiveReport>,
}

#[derive(Serialize)]
struct AdaptiveReport {
    build: adaptive::AdaptiveBuild,
    held_out: adaptive::AdaptiveTable,
}

pub fn run(a: GateArgs) -> Result<()> {
    {
        // --out may be left out to rewrite --bundle in place; it must not name another input.
        let mut inputs = vec![
            ("--model", a.model.as_path()),
            ("--config", a.config.as_path()),
        ];
        inputs.extend(a.policy.iter().map(|p| ("--policy", p.as_path())));
        inputs.extend(a.energy.iter().map(|p| ("--energy", p.as_path())));
        let mut outputs = vec![("--out", a.out.as_deref().unwrap_or(a.bundle.as_path()))];
        outputs.extend(a.json.iter().map(|j| ("--json", j.as_path())));
        super::check_outputs(&inputs, &outputs)?;
    }
    let cfg = AccelConfig::load(&a.config)?;
    let em = adapt::load_energy(a.energy.as_deref(), &cfg)?;
    let policy = adapt::load_policy(a.policy.as_deref())?;
    let float = load_float(&a.model)?;
    let split = a.data.load()?;
    // Policies of an older build no longer match the new gates: read without them.
    let mut q = Bundle::open_without_adaptive(&a.bundle)
        .and_then(|b| b.load())
        .with_context(|| format!("reading --bundle {}", a.bundle.display()))?;
    let build = adapt::build_gates(&mut q, &float, &split.train, &cfg, &em, &policy, a.images)?;
    let calibration = match a.val_images {
        Some(n) if a.adaptive => Some(super::carve_val(&split.train, n, a.data.split_seed)?.1),
        Some(_) => anyhow::bail!("--val-images: only with --adaptive"),
        None => None,
    };
    let adaptive_build = if a.adaptive {
        Some(adaptive::build_adaptive(
            &mut q,
            &float,
            calibration.as_ref().unwrap_or(&split.train),
            &cfg,
            &em,
            &build,
            &adaptive::BuildOptions {
                images: a.adaptive_images,
                seed: a.seed,
                reference: a.adaptive_reference,
                validation: calibration.is_some(),
                row_step: a.gate_row_step,
                energy_fraction: a.adaptive_energy_fraction,
            },
        )?)
    } else {
        None
    };
    let out = a.out.clone().unwrap_or_else(|| a.bundle.clone());
    bundle::write(&out, &q).with_context(|| format!("writing {}", out.display()))?;
    let table = GateTable::new(&q, &float, &build, &split.test, &cfg, &em)?;
    table.print();
    let adaptive_report = match adaptive_build {
        Some(b) => {
            adaptive::print_build(&b);
            let held_out = adaptive::AdaptiveTable::new(&q, &split.test, &cfg, &em)?;
            held_out.print();
            if let Some(p) = &a.plot {
                super::plots::adaptive(p, &held_out)?;
                println!("plot written to {}", p.display());
            }
            if let Some(m) = &a.markdown {
                let setup = adaptive::ReportSetup {
                    command: std::iter::once("caq".to_string())
                        .chain(std::env::args().skip(1))
                        .collect::<Vec<_>>()
                        .join(" "),
                    model: &a.model,
                    dataset: &split.test.name,
                    train_images: split.train.len(),
                    test_images: split.test.len(),
                    split_seed: a.data.split_seed,
                    plot: a.plot.as_deref(),
                };
                let md = adaptive::markdown(&setup, &b, &held_out);
                caq_model::store::write_bytes_atomic(m, md.as_bytes())
                    .with_context(|| format!("writing --markdown {}", m.display()))?;
                println!("report written to {}", m.display());
            }
            Some(AdaptiveReport { build: b, held_out })
        }
        None => None,
    };
    println!(
        "\n{} gates{} written to {}",
        build.gates.len(),
        if q.adaptive.is_empty() {
            String::new()
        } else {
            format!(" and {} classes' adaptive policies", q.adaptive.len())
        },
        out.display()
    );
    if let Some(j) = &a.json {
        write_json(
            j,
            &GateReport {
                bundle: out,
                build,
                table,
                adaptive: adaptive_report,
            },
        )?;
    }
    Ok(())
}
