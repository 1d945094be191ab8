//! `caq bench`: the benchmark report on the MNIST CNN that a reader can set beside the seeds and
//! anchors — storage, accuracy per gate and per uniform precision, energy per inference (model),
//! cycles, MACs per cycle, utilization, switch cost, simulation speed. Writes JSON and the
//! Markdown of `docs/results.md` (generated, never edited by hand). `--suite mlperf-tiny` runs the
//! MLPerf Tiny suite instead (`tiny.rs`).

use super::adapt::{self, GateTable};
use super::adaptive_run::bits_label;
use super::models::{load_float, train_model};
use super::{DataArgs, write_json};
use anyhow::{Context as _, Result, bail};
use caq_model::bundle;
use caq_model::graph::FloatModel;
use caq_model::qmodel::{self, QModel, QuantizeConfig};
use caq_model::report;
use caq_spec::{AccelConfig, MemRegion};
use clap::Args;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Another suite instead of the MNIST CNN report: `mlperf-tiny` (the four MLPerf Tiny
    /// networks, seeded weights, synthetic inputs, on the functional device of pynq-z2 and
    /// zcu104 -> docs/results-mlperf-tiny.md).
    #[arg(long)]
    suite: Option<String>,
    /// The float LeNet (from `caq train`); trained here (and cached in --work) when absent.
    #[arg(long)]
    model: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    /// The accelerator config the costs are predicted for and the device model runs.
    #[arg(long, default_value = "configs/pynq-z2.toml")]
    config: PathBuf,
    /// Nesting levels of the bundle.
    #[arg(long, default_value = "8,4,3,2", conflicts_with = "bundle")]
    levels: String,
    /// Benchmark this nested bundle (e.g. from `caq finetune`) instead of quantizing --model;
    /// its levels replace --levels, --model stays the float reference and its gates are rebuilt.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Context classes and budgets (default: configs/contexts/default.toml, built in).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Training images the gates are chosen on.
    #[arg(long, default_value_t = 1000, value_parser = super::count)]
    images: usize,
    /// Choose the gates on this many validation images carved from the training split
    /// (stratified, seeded with --split-seed; at most --images of them) instead of on training
    /// images: the images `caq train --val-images` and `caq finetune --val-images` with the same
    /// number leave out, so neither the model nor its fine-tune saw them. Needs --model.
    #[arg(long, value_parser = super::count)]
    val_images: Option<usize>,
    /// Held-out images run on the functional device to time it.
    #[arg(long, default_value_t = 50, value_parser = super::count)]
    sim_images: usize,
    /// Working directory (cached model, bundle).
    #[arg(long, default_value = "out/bench")]
    work: PathBuf,
    /// The Markdown report [default: docs/results.md; docs/results-mlperf-tiny.md with --suite].
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// The JSON report (default: <work>/bench.json).
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Serialize)]
struct Storage {
    f32_bytes: u64,
    int8_bytes: u64,
    /// Plane-group payload of the nested bundle (every level inside).
    nested_bytes: u64,
    /// The bundle file (manifest, scales, biases and planes).
    nested_file_bytes: u64,
    /// One separately quantized model per level.
    separate_bytes: u64,
    separate: Vec<(u8, u64)>,
}

#[derive(Serialize)]
struct SwitchCost {
    gate: String,
    /// From the full-precision gate to this one, and back.
    down_bytes: u64,
    down_us: f64,
    up_bytes: u64,
    up_us: f64,
}

#[derive(Serialize)]
struct Speed {
    golden_images_per_s: f64,
    func_images_per_s: f64,
    /// The Verilator model, when this caq is built with `rtl` for this config.
    rtl_images_per_s: Option<f64>,
    rtl_note: String,
}

#[derive(Serialize)]
struct Targets {
    /// Lowest-battery gate vs INT8: (dynamic, total) energy saved %, points of top-1 lost.
    low_battery_dynamic_saved_pct: f64,
    low_battery_total_saved_pct: f64,
    low_battery_points_lost: f64,
    /// The mixed gate with the smallest resident weights within 1 point of INT8.
    mixed_gate: Option<String>,
    mixed_resident_saved_pct: f64,
    mixed_points_lost: f64,
    /// Gates less accurate than uniform precision of the same budget.
    gates_below_uniform: Vec<String>,
}

#[derive(Serialize)]
struct BenchReport {
    dataset: String,
    model: PathBuf,
    config: String,
    clock_mhz: f64,
    array: String,
    levels: Vec<u8>,
    /// The weight layers by kind, e.g. "2 Conv2d + 2 Dense".
    layers: String,
    macs_per_image: u64,
    storage: Storage,
    gates: GateTable,
    switch: Vec<SwitchCost>,
    speed: Speed,
    targets: Targets,
    seconds: f64,
}

/// Device memory of the simulated backends: the driver's, as the bindings use it.
fn region() -> MemRegion {
    caq_driver::handle::SIM_REGION
}

fn median_us(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v.get(v.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

/// The model's weight layers counted by kind, in the order each kind first appears: "2 Conv2d
/// + 2 Dense".
fn layer_kinds(q: &QModel) -> String {
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for n in &q.graph.nodes {
        let kind = match n.op {
            caq_model::graph::Op::Conv2d { .. } => "Conv2d",
            caq_model::graph::Op::Dense { .. } => "Dense",
            _ => continue,
        };
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, count)) => *count += 1,
            None => kinds.push((kind, 1)),
        }
    }
    kinds
        .iter()
        .map(|(k, c)| format!("{c} {k}"))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Multiply-accumulates of one image: per weight layer, outputs × K.
fn macs(q: &QModel) -> Result<u64> {
    let shapes = q.graph.shapes()?;
    Ok(q.weight_layers()
        .into_iter()
        .map(|i| {
            let s = shapes[i];
            let k = q.layers[i].as_ref().map_or(0, |ql| ql.k());
            (s[0] * s[1] * s[2] * k) as u64
        })
        .sum())
}

pub fn run(a: BenchArgs) -> Result<()> {
    let t0 = Instant::now();
    if a.val_images.is_some() {
        if a.suite.is_some() {
            bail!("--val-images: the --suite report chooses no gates");
        }
        if a.model.is_none() {
            bail!(
                "--val-images: give --model, a model trained without those images (`caq train \
                 --val-images` with the same number); the LeNet this command trains sees every \
                 training image"
            );
        }
    }
    std::fs::create_dir_all(&a.work).with_context(|| format!("creating {}", a.work.display()))?;
    if let Some(suite) = &a.suite {
        if suite != "mlperf-tiny" {
            bail!("--suite: expected 'mlperf-tiny', found '{suite}'");
        }
        return super::tiny::run(&super::tiny::Options {
            configs: vec![
                PathBuf::from("configs/pynq-z2.toml"),
                PathBuf::from("configs/zcu104.toml"),
            ],
            images: a.sim_images.min(8),
            seed: 1,
            markdown: a
                .markdown
                .clone()
                .unwrap_or_else(super::tiny::default_markdown),
            json: a
                .json
                .clone()
                .unwrap_or_else(|| a.work.join("mlperf-tiny.json")),
        });
    }
    let md_path = a
        .markdown
        .clone()
        .unwrap_or_else(|| "docs/results.md".into());
    let cfg = AccelConfig::load(&a.config)
        .with_context(|| format!("reading --config {}", a.config.display()))?;
    let given = match &a.bundle {
        Some(p) => Some(
            bundle::Bundle::open(p)
                .and_then(|b| b.load())
                .with_context(|| format!("reading --bundle {}", p.display()))?,
        ),
        None => None,
    };
    let levels = match &given {
        Some(q) => q.levels().to_vec(),
        None => super::parse_levels(&a.levels)?,
    };
    if levels.len() < 2 {
        bail!("--levels: the benchmark compares precisions; give at least two levels");
    }
    let em = adapt::load_energy(None, &cfg)?;
    let policy = adapt::load_policy(a.policy.as_deref())?;
    let split = a.data.load()?;
    let model_path = match &a.model {
        Some(p) => p.clone(),
        None => {
            let p = a.work.join("lenet.caqf");
            if !p.exists() {
                eprintln!(
                    "training a LeNet on {} images (cached in {})",
                    split.train.len(),
                    p.display()
                );
                let (m, _) = train_model(&split, None, None, 0, true)?;
                m.save(&p)?;
            }
            p
        }
    };
    let float = load_float(&model_path)?;

    let qcfg = QuantizeConfig::nested(&levels);
    let mut q = match given {
        Some(q) => {
            if q.graph != float.graph {
                bail!(
                    "--bundle {}: its network is not the one of --model {}",
                    a.bundle
                        .as_ref()
                        .map_or(String::new(), |p| p.display().to_string()),
                    model_path.display()
                );
            }
            q
        }
        None => {
            eprintln!("quantizing nested {levels:?} and one model per level");
            qmodel::quantize(&float, &split.train, &qcfg)?
        }
    };
    let storage = storage(&float, &q, &split.train, &qcfg, &a.work)?;

    let carved;
    let choice = match a.val_images {
        Some(n) => {
            carved = super::carve_val(&split.train, n, a.data.split_seed)?.1;
            &carved
        }
        None => &split.train,
    };
    let build = adapt::build_gates(&mut q, &float, choice, &cfg, &em, &policy, a.images)?;
    let bundle_path = a.work.join("lenet.caqb");
    bundle::write(&bundle_path, &q)?;
    let gates = GateTable::new(&q, &float, &build, &split.test, &cfg, &em)?;
    gates.print();

    eprintln!("switch costs and simulation speed");
    let switch = switch_costs(&cfg, &bundle_path, &q)?;
    let speed = speed(&cfg, &bundle_path, &q, &split.test, a.sim_images)?;
    let targets = targets(&gates);
    let report = BenchReport {
        dataset: split.test.name.clone(),
        model: model_path,
        config: cfg.name.clone(),
        clock_mhz: cfg.clock_mhz,
        array: format!("{}x{}", cfg.array.rows, cfg.array.cols),
        levels,
        layers: layer_kinds(&q),
        macs_per_image: macs(&q)?,
        storage,
        gates,
        switch,
        speed,
        targets,
        seconds: t0.elapsed().as_secs_f64(),
    };
    let md = markdown(&report, &a);
    caq_model::store::write_bytes_atomic(&md_path, md.as_bytes())
        .with_context(|| format!("writing --markdown {}", md_path.display()))?;
    let json = a.json.clone().unwrap_or_else(|| a.work.join("bench.json"));
    write_json(&json, &report)?;
    println!("\n{md}");
    println!(
        "report written to {} and {} in {:.1} s",
        md_path.display(),
        json.display(),
        report.seconds
    );
    Ok(())
}

fn storage(
    float: &FloatModel,
    q: &QModel,
    train: &caq_model::data::Dataset,
    qcfg: &QuantizeConfig,
    work: &Path,
) -> Result<Storage> {
    let (weights, _) = report::weight_counts(float);
    let (nested, _) = report::plane_bytes(q)?;
    let path = work.join("nested-nogates.caqb");
    bundle::write(&path, q)?;
    let file = std::fs::metadata(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let _ = std::fs::remove_file(&path);
    let mut separate = Vec::new();
    for &b in &qcfg.levels {
        let mut c = qcfg.clone();
        c.levels = vec![b];
        let s = qmodel::quantize(float, train, &c)?;
        separate.push((b, report::plane_bytes(&s)?.0 as u64));
    }
    Ok(Storage {
        f32_bytes: weights as u64 * 4,
        int8_bytes: separate.first().map_or(0, |s| s.1),
        nested_bytes: nested as u64,
        nested_file_bytes: file,
        separate_bytes: separate.iter().map(|s| s.1).sum(),
        separate,
    })
}

fn switch_costs(cfg: &AccelConfig, path: &Path, q: &QModel) -> Result<Vec<SwitchCost>> {
    let full = q.uniform_bits(q.levels()[0]);
    let mut out = Vec::new();
    for g in &q.gates {
        if g.bits == full {
            continue;
        }
        let mut acc =
            adapt::open_loaded(caq_sim::FuncDevice::new(cfg, region())?, cfg, path, &full)?;
        let (mut down, mut up) = (Vec::new(), Vec::new());
        let (mut db, mut ub) = (0, 0);
        for _ in 0..9 {
            let r = acc.set_bits(&g.bits)?;
            db = r.bytes_moved();
            down.push(r.time);
            let r = acc.set_bits(&full)?;
            ub = r.bytes_moved();
            up.push(r.time);
        }
        out.push(SwitchCost {
            gate: g.name.clone(),
            down_bytes: db,
            down_us: median_us(down),
            up_bytes: ub,
            up_us: median_us(up),
        });
    }
    Ok(out)
}

fn speed(
    cfg: &AccelConfig,
    path: &Path,
    q: &QModel,
    test: &caq_model::data::Dataset,
    n: usize,
) -> Result<Speed> {
    let n = n.clamp(1, test.len());
    let full = q.uniform_bits(q.levels()[0]);
    let ex = q.executor(&full)?;
    let t = Instant::now();
    for i in 0..n {
        ex.run(test.image(i))?;
    }
    let golden = n as f64 / t.elapsed().as_secs_f64();
    let func = images_per_s(
        caq_sim::FuncDevice::new(cfg, region())?,
        cfg,
        path,
        &full,
        test,
        n,
    )?;
    let (rtl, note) = match adapt::rtl_device(cfg, region())? {
        #[cfg(feature = "rtl")]
        Ok(dev) => (
            Some(images_per_s(dev, cfg, path, &full, test, n.min(5))?),
            format!(
                "{} images on the Verilator model of '{}'",
                n.min(5),
                cfg.name
            ),
        ),
        #[cfg(not(feature = "rtl"))]
        Ok(never) => match never {},
        Err(note) => (None, note),
    };
    Ok(Speed {
        golden_images_per_s: golden,
        func_images_per_s: func,
        rtl_images_per_s: rtl,
        rtl_note: note,
    })
}

/// Inferences per second of the first `n` images on `dev`, through the driver.
fn images_per_s<D: caq_spec::Device>(
    dev: D,
    cfg: &AccelConfig,
    path: &Path,
    bits: &[u8],
    test: &caq_model::data::Dataset,
    n: usize,
) -> Result<f64> {
    let mut acc = adapt::open_loaded(dev, cfg, path, bits)?;
    let t = Instant::now();
    for i in 0..n {
        acc.infer(test.image(i))?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

fn targets(t: &GateTable) -> Targets {
    let full = t.full();
    let saved = |x: f64, base: f64| 100.0 * (1.0 - x / base);
    // The lowest-battery gate: the class with the tightest energy budget.
    let low = t
        .gates
        .iter()
        .filter(|g| g.energy_fraction.is_some())
        .min_by(|a, b| {
            a.energy_fraction
                .unwrap_or(1.0)
                .total_cmp(&b.energy_fraction.unwrap_or(1.0))
        })
        .map(|g| &g.gate)
        .unwrap_or(full);
    let mixed = t
        .gates
        .iter()
        .filter(|g| g.gate.bits.windows(2).any(|w| w[0] != w[1]))
        .filter(|g| full.accuracy_pct - g.gate.accuracy_pct <= 1.0)
        .min_by_key(|g| g.gate.resident_bytes);
    Targets {
        low_battery_dynamic_saved_pct: saved(low.energy.dynamic_j, full.energy.dynamic_j),
        low_battery_total_saved_pct: saved(low.energy.total_j, full.energy.total_j),
        low_battery_points_lost: full.accuracy_pct - low.accuracy_pct,
        mixed_gate: mixed.map(|g| g.name.clone()),
        mixed_resident_saved_pct: mixed.map_or(0.0, |g| {
            saved(g.gate.resident_bytes as f64, full.resident_bytes as f64)
        }),
        mixed_points_lost: mixed.map_or(f64::NAN, |g| full.accuracy_pct - g.gate.accuracy_pct),
        gates_below_uniform: t
            .gates
            .iter()
            .filter(|g| {
                g.uniform
                    .as_ref()
                    .is_some_and(|u| g.gate.accuracy_pct < u.accuracy_pct)
            })
            .map(|g| g.name.clone())
            .collect(),
    }
}

fn markdown(r: &BenchReport, a: &BenchArgs) -> String {
    let mut s = String::new();
    let full = r.gates.full();
    let _ = writeln!(
        s,
        "# Results\n\n<!-- Written by `caq bench`; do not edit by hand. -->\n\n\
         Generated by:\n\n```sh\ncargo run --release -p caq-host -- bench --data {} --config {} \
         {}{}{}{}\n```\n",
        a.data.data,
        a.config.display(),
        a.bundle.as_ref().map_or_else(
            || format!("--levels {}", a.levels),
            |b| format!("--bundle {}", b.display())
        ),
        a.model
            .as_ref()
            .map_or(String::new(), |m| format!(" --model {}", m.display())),
        a.val_images
            .map_or(String::new(), |n| format!(" --val-images {n}")),
        a.markdown
            .as_ref()
            .map_or(String::new(), |m| format!(" --markdown {}", m.display()))
    );
    let _ = writeln!(
        s,
        "Model: `{}` ({} weight layers), {} MACs per image; data {} ({} held-out images); \
         accelerator `{}` ({} array at {} MHz); nesting levels {}. Accuracy is the golden integer \
         model's top-1 (the device models agree with it bit for bit). Energy is the **energy \
         model** over the counters the device's timing model predicts (`configs/energy/`, \
         docs/energy.md), not a measurement; *dynamic* is the part the precision changes, *total* \
         adds the chip's static power over the inference's device time.\n",
        r.model.display(),
        r.layers,
        r.macs_per_image,
        r.dataset,
        r.gates.test_images,
        r.config,
        r.array,
        r.clock_mhz,
        r.levels
            .iter()
            .map(|b| format!("INT{b}"))
            .collect::<Vec<_>>()
            .join(" ⊃ ")
    );
    let _ = writeln!(s, "## Storage (weights)\n");
    let _ = writeln!(s, "| what | bytes | vs f32 |\n| --- | ---: | ---: |");
    let st = &r.storage;
    let row = |s: &mut String, what: &str, b: u64| {
        let _ = writeln!(
            s,
            "| {what} | {b} | {:.1} % |",
            100.0 * b as f64 / st.f32_bytes as f64
        );
    };
    row(&mut s, "f32", st.f32_bytes);
    row(&mut s, "INT8 (planes)", st.int8_bytes);
    row(
        &mut s,
        "nested bundle: planes (every level inside)",
        st.nested_bytes,
    );
    row(&mut s, "nested bundle: whole file", st.nested_file_bytes);
    row(
        &mut s,
        &format!(
            "separate models ({})",
            st.separate
                .iter()
                .map(|(b, _)| format!("INT{b}"))
                .collect::<Vec<_>>()
                .join(" + ")
        ),
        st.separate_bytes,
    );
    let _ = writeln!(
        s,
        "\n## Gates and uniform precision\n\nf32 top-1: {:.2} %. Gates come from \
         `configs/contexts/default.toml`; each is the best per-layer setting within its class's budget \
         (docs/gates.md), chosen on {}, beside the highest uniform precision within the same \
         budget.\n",
        r.gates.f32_accuracy_pct,
        match a.val_images {
            Some(n) => format!(
                "{} of {n} validation images carved from the training split (never trained on)",
                a.images.min(n)
            ),
            None => format!("{} training images", a.images),
        }
    );
    let _ = writeln!(
        s,
        "| gate | bits per layer | top-1 % | dynamic µJ (vs INT8) | total µJ (vs INT8) | cycles | \
         µs | MACs/cycle | utilization | resident B (vs INT8) | uniform at the same budget |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    let pct = |x: f64, b: f64| 100.0 * (x / b - 1.0);
    let macs = r.macs_per_image as f64;
    for g in &r.gates.gates {
        let f = &g.gate;
        let _ = writeln!(
            s,
            "| {}{} | {} | {:.2} | {:.2} ({:+.0} %) | {:.2} ({:+.0} %) | {} | {:.1} | {:.1} | {:.1} % | \
             {} ({:+.0} %) | {} |",
            g.name,
            if g.within_budget {
                ""
            } else {
                " (no setting fits its budget: the cheapest)"
            },
            bits_label(&f.bits),
            f.accuracy_pct,
            f.energy.dynamic_j * 1e6,
            pct(f.energy.dynamic_j, full.energy.dynamic_j),
            f.energy.total_j * 1e6,
            pct(f.energy.total_j, full.energy.total_j),
            f.cycles,
            f.latency_us,
            macs / f.cycles as f64,
            100.0 * f.utilization,
            f.resident_bytes,
            pct(f.resident_bytes as f64, full.resident_bytes as f64),
            g.uniform.as_ref().map_or("none fits".into(), |u| format!(
                "{}-bit: {:.2} %, {:.2} µJ",
                u.bits[0],
                u.accuracy_pct,
                u.energy.dynamic_j * 1e6
            ))
        );
    }
    let _ = writeln!(
        s,
        "\n| uniform | top-1 % | dynamic µJ | total µJ | cycles | MACs/cycle | utilization | resident B |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for f in &r.gates.uniform {
        let _ = writeln!(
            s,
            "| {}-bit | {:.2} | {:.2} | {:.2} | {} | {:.1} | {:.1} % | {} |",
            f.bits[0],
            f.accuracy_pct,
            f.energy.dynamic_j * 1e6,
            f.energy.total_j * 1e6,
            f.cycles,
            macs / f.cycles as f64,
            100.0 * f.utilization,
            f.resident_bytes
        );
    }
    let t = &r.targets;
    let _ = writeln!(
        s,
        "\n## Against the seeds' targets\n\n| target | result | met |\n| --- | --- | --- |\n\
         | lowest-battery gate: ≥ 60 % less energy than INT8, ≤ 2 points lost (Wang 2023) | \
         dynamic −{:.1} %, total −{:.1} %, {} | dynamic {}, total {} |\n\
         | a mixed gate: ≥ 50 % less resident weight storage than INT8 within 1 point (CAQ) | {} | {} |\n\
         | every gate at least as accurate as uniform precision of the same budget | {} | {} |",
        t.low_battery_dynamic_saved_pct,
        t.low_battery_total_saved_pct,
        points_lost(t.low_battery_points_lost),
        yes(t.low_battery_dynamic_saved_pct >= 60.0 && t.low_battery_points_lost <= 2.0),
        yes(t.low_battery_total_saved_pct >= 60.0 && t.low_battery_points_lost <= 2.0),
        t.mixed_gate
            .as_ref()
            .map_or("no mixed gate within 1 point".into(), |g| format!(
                "'{g}': −{:.1} % resident, {}",
                t.mixed_resident_saved_pct,
                points_lost(t.mixed_points_lost)
            )),
        yes(t.mixed_gate.is_some() && t.mixed_resident_saved_pct >= 50.0),
        if t.gates_below_uniform.is_empty() {
            "no gate below".to_string()
        } else {
            format!("below: {:?}", t.gates_below_uniform)
        },
        yes(t.gates_below_uniform.is_empty())
    );
    let _ = writeln!(
        s,
        "\n## Switching precision (functional device, through the driver)\n\n\
         Paging nested plane groups in and out (`Residency::Minimal`); bytes written to device \
         memory (plane groups and descriptors), host time median of 9.\n\n\
         | gate | INT8 → gate bytes | µs | gate → INT8 bytes | µs |\n| --- | ---: | ---: | ---: | ---: |"
    );
    for w in &r.switch {
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {} | {:.1} |",
            w.gate, w.down_bytes, w.down_us, w.up_bytes, w.up_us
        );
    }
    let sp = &r.speed;
    let _ = writeln!(
        s,
        "\n## Simulation speed (this machine)\n\n| backend | images/s |\n| --- | ---: |\n\
         | golden integer model | {:.1} |\n| functional device (through the driver) | {:.1} |\n\
         | Verilator RTL | {} |\n",
        sp.golden_images_per_s,
        sp.func_images_per_s,
        sp.rtl_images_per_s
            .map_or(sp.rtl_note.clone(), |v| format!("{v:.2} ({})", sp.rtl_note))
    );
    s
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "**no**" }
}

/// Top-1 points lost against INT8 (`lost` > 0) or gained (< 0), two decimals.
fn points_lost(lost: f64) -> String {
    if lost < 0.0 {
        format!("{:.2} points gained", -lost)
    } else {
        format!("{lost:.2} points lost")
    }
}

#[cfg(test)]
mod tests {
    use super::points_lost;

    #[test]
    fn a_gain_in_top1_is_printed_as_points_gained() {
        assert_eq!(points_lost(-0.05), "0.05 points gained");
        assert_eq!(points_lost(0.3), "0.30 points lost");
        assert_eq!(points_lost(0.0), "0.00 points lost");
    }
}
