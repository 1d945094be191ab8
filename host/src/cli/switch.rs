//! `caq switch-cost`: what a precision switch costs when the nested bundle's plane groups are paged
//! in and out (the `Accelerator`'s `set_bits`), against the alternative a device without nesting
//! has: loading a separately quantized model of the target precision (open, compile, upload).
//!
//! Both run on the functional device through the same `Accelerator` code a board runs; bytes are
//! the bytes written into device memory, times are host wall time (median of `--repeat`), so they
//! measure the driver's work: on a board, the copies go to a u-dma-buf instead of a `Vec`.

use super::models::{QuantFlags, load_float};
use super::{DataArgs, table, write_json};
use anyhow::{Context, Result, bail};
use caq_driver::accel::{Accelerator, LoadOptions, Residency};
use caq_model::bundle;
use caq_model::qmodel::{self, QModel};
use caq_spec::AccelConfig;
use clap::Args;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct SwitchArgs {
    /// The float model (from `caq train`), quantized here nested (--levels) and once per level.
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    q: QuantFlags,
    /// The accelerator config.
    #[arg(long, default_value = "configs/sim-small.toml")]
    config: PathBuf,
    /// Timed repetitions of every switch and load (the median is reported).
    #[arg(long, default_value_t = 25, value_parser = super::count)]
    repeat: usize,
    /// Also write the figures as JSON to this file (written atomically).
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Serialize)]
struct Row {
    from: u8,
    to: u8,
    /// Nested, residual groups dropped on the way down (Residency::Minimal).
    nested_bytes: u64,
    nested_us: f64,
    /// Nested, every group kept once paged in (Residency::KeepPaged): a switch back up that
    /// finds its groups resident moves descriptors only.
    nested_resident_bytes: u64,
    nested_resident_us: f64,
    /// Loading the separately quantized model of precision `to`: compile and upload.
    separate_bytes: u64,
    separate_us: f64,
    /// Its upload alone (a device that kept every model compiled would still pay this).
    separate_upload_us: f64,
}

#[derive(Serialize)]
struct Summary {
    model: PathBuf,
    config: String,
    levels: Vec<u8>,
    repeat: usize,
    rows: Vec<Row>,
    /// Mean over the switches of 1 − nested / separate.
    bytes_saved_pct: f64,
    time_saved_pct: f64,
    /// Against the upload alone.
    upload_time_saved_pct: f64,
    /// NestQuant's reported reduction of switching overhead (arXiv 2506.17870).
    nestquant_reported_pct: f64,
}

fn device(cfg: &AccelConfig) -> Result<caq_sim::FuncDevice> {
    Ok(caq_sim::FuncDevice::new(
        cfg,
        caq_driver::handle::SIM_REGION,
    )?)
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v.get(v.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

/// Bytes and median time of switching `from` → `to` with `residency`.
fn nested_switch(
    cfg: &AccelConfig,
    path: &Path,
    n_layers: usize,
    from: u8,
    to: u8,
    residency: Residency,
    repeat: usize,
) -> Result<(u64, f64)> {
    let mut acc = Accelerator::open(device(cfg)?, cfg)?;
    acc.load_bundle(
        path,
        &LoadOptions {
            bits: Some(vec![from; n_layers]),
            residency,
            ..LoadOptions::default()
        },
    )?;
    let (a, b) = (vec![from; n_layers], vec![to; n_layers]);
    // With KeepPaged, visit the highest level once so every group is resident.
    if residency == Residency::KeepPaged {
        let top = acc
            .program()?
            .layers
            .iter()
            .map(|l| l.levels[0])
            .collect::<Vec<_>>();
        acc.set_bits(&top)?;
        acc.set_bits(&a)?;
    }
    let mut times = Vec::with_capacity(repeat);
    let mut bytes = None;
    for _ in 0..repeat {
        let r = acc.set_bits(&b)?;
        times.push(r.time);
        match bytes {
            None => bytes = Some(r.bytes_moved()),
            Some(x) if x != r.bytes_moved() => {
                bail!(
                    "switch {from} -> {to} moved {x} then {} bytes",
                    r.bytes_moved()
                )
            }
            Some(_) => {}
        }
        acc.set_bits(&a)?;
    }
    Ok((bytes.unwrap_or(0), median(times)))
}

fn separate_load(cfg: &AccelConfig, path: &Path, repeat: usize) -> Result<(u64, f64, f64)> {
    let mut acc = Accelerator::open(device(cfg)?, cfg)?;
    let mut times = Vec::with_capacity(repeat);
    let mut uploads = Vec::with_capacity(repeat);
    let mut bytes = 0;
    for _ in 0..repeat {
        // The model already in device memory is replaced, as a device switching models would.
        let r = acc.load_bundle(path, &LoadOptions::default())?;
        bytes = r.bytes();
        times.push(r.time);
        uploads.push(r.upload_time);
    }
    Ok((bytes, median(times), median(uploads)))
}

pub fn run(a: SwitchArgs) -> Result<()> {
    let split = a.data.load()?;
    let model = load_float(&a.model)?;
    let qcfg = a.q.config()?;
    let levels = qcfg.levels.clone();
    if levels.len() < 2 {
        bail!("--levels: give at least two nesting levels to switch between");
    }
    let cfg = AccelConfig::load(&a.config)
        .with_context(|| format!("reading --config {}", a.config.display()))?;
    let dir = std::env::temp_dir().join(format!("caq-switch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = measure(&a, &model, &split.train, &qcfg, &levels, &cfg, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let summary = result?;
    print(&summary);
    if let Some(j) = &a.json {
        write_json(j, &summary)?;
    }
    Ok(())
}

fn measure(
    a: &SwitchArgs,
    model: &caq_model::graph::FloatModel,
    train: &caq_model::data::Dataset,
    qcfg: &qmodel::QuantizeConfig,
    levels: &[u8],
    cfg: &AccelConfig,
    dir: &Path,
) -> Result<Summary> {
    let nested: QModel = qmodel::quantize(model, train, qcfg).context("quantizing nested")?;
    let n_layers = nested.weight_layers().len();
    let nested_path = dir.join("nested.caqb");
    bundle::write(&nested_path, &nested)?;
    let mut separate = Vec::new();
    for &b in levels {
        let mut c = qcfg.clone();
        c.levels = vec![b];
        let q = qmodel::quantize(model, train, &c)
            .with_context(|| format!("quantizing a separate {b}-bit model"))?;
        let p = dir.join(format!("int{b}.caqb"));
        bundle::write(&p, &q)?;
        separate.push((b, p));
    }
    let repeat = a.repeat.max(1);
    let mut rows = Vec::new();
    for &from in levels {
        for &to in levels {
            if from == to {
                continue;
            }
            let (nb, nt) = nested_switch(
                cfg,
                &nested_path,
                n_layers,
                from,
                to,
                Residency::Minimal,
                repeat,
            )?;
            let (rb, rt) = nested_switch(
                cfg,
                &nested_path,
                n_layers,
                from,
                to,
                Residency::KeepPaged,
                repeat,
            )?;
            let sep = &separate
                .iter()
                .find(|(b, _)| *b == to)
                .expect("a model per level")
                .1;
            let (sb, st, su) = separate_load(cfg, sep, repeat)?;
            rows.push(Row {
                from,
                to,
                nested_bytes: nb,
                nested_us: nt,
                nested_resident_bytes: rb,
                nested_resident_us: rt,
                separate_bytes: sb,
                separate_us: st,
                separate_upload_us: su,
            });
        }
    }
    let mean = |f: &dyn Fn(&Row) -> f64| rows.iter().map(f).sum::<f64>() / rows.len() as f64;
    let bytes_saved_pct =
        mean(&|r| 100.0 * (1.0 - r.nested_bytes as f64 / r.separate_bytes as f64));
    let time_saved_pct = mean(&|r| 100.0 * (1.0 - r.nested_us / r.separate_us));
    let upload_time_saved_pct = mean(&|r| 100.0 * (1.0 - r.nested_us / r.separate_upload_us));
    Ok(Summary {
        model: a.model.clone(),
        config: cfg.name.clone(),
        levels: levels.to_vec(),
        repeat,
        rows,
        bytes_saved_pct,
        time_saved_pct,
        upload_time_saved_pct,
        nestquant_reported_pct: 78.1,
    })
}

fn print(s: &Summary) {
    println!(
        "\nprecision switches of {} on config {} (functional device, median of {} runs):",
        s.model.display(),
        s.config,
        s.repeat
    );
    let rows: Vec<Vec<String>> = s
        .rows
        .iter()
        .map(|r| {
            vec![
                format!("{} -> {}", r.from, r.to),
                r.nested_bytes.to_string(),
                format!("{:.1}", r.nested_us),
                r.nested_resident_bytes.to_string(),
                format!("{:.1}", r.nested_resident_us),
                r.separate_bytes.to_string(),
                format!("{:.1}", r.separate_us),
                format!("{:.1}", r.separate_upload_us),
                format!(
                    "{:.1}",
                    100.0 * (1.0 - r.nested_bytes as f64 / r.separate_bytes as f64)
                ),
            ]
        })
        .collect();
    table::print(
        &[
            "switch",
            "paging B",
            "paging us",
            "resident B",
            "resident us",
            "reload B",
            "reload us",
            "upload us",
            "B saved %",
        ],
        &rows,
    );
    println!(
        "paging moves {:.1} % fewer bytes and takes {:.1} % less time than reloading a separate \
         model ({:.1} % less than its upload alone; mean over the switches; NestQuant reports \
         ~{:.1} % lower switching overhead)",
        s.bytes_saved_pct, s.time_saved_pct, s.upload_time_saved_pct, s.nestquant_reported_pct
    );
    println!(
        "paging: residual groups dropped on the way down and paged in on the way up; resident: \
         every group kept once paged in (only descriptors move); reload: compile and upload the \
         separately quantized model of the target precision; upload: its upload alone"
    );
}
