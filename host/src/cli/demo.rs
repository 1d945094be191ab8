//! `caq demo`: the end-to-end job on the digits data the repo carries. Train (or reuse) an MLP,
//! quantize it nested, build one gate per context class, generate the RTL of the config, and
//! replay a context trace (battery draining, a memory squeeze, a deadline) on the functional
//! device through the driver's `Accelerator` — and on the Verilator model of the RTL when this
//! caq is built with the `rtl` feature — switching gates as the context moves.

use super::adapt::{self, GateTable};
use super::adaptive_run::bits_label;
use super::models::{eval_bundle, load_float, train_model};
use super::{DataArgs, plots, table, write_json};
use anyhow::{Context as _, Result, bail};
use caq_driver::accel::{Residency, SwitchReport};
use caq_driver::compile::ActBuffer;
use caq_driver::context::{ContextTrace, GateSelector};
use caq_driver::energy::model::ModelMeter;
use caq_model::adaptive::{Adaptive, GoldenAdaptive};
use caq_model::bundle;
use caq_model::data::Dataset;
use caq_model::qmodel::{self, QModel, QuantizeConfig};
use caq_spec::{AccelConfig, Device, DeviceAddr, MemRegion, PerfCounters};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Working directory for the model, bundle, RTL, plots and reports.
    #[arg(long, default_value = "out/demo")]
    out: PathBuf,
    /// Train again even if a cached model exists in --out.
    #[arg(long)]
    retrain: bool,
    /// The accelerator config (its RTL is generated, its functional model runs the trace).
    #[arg(long, default_value = "configs/sim-small.toml")]
    config: PathBuf,
    /// A context trace (JSON or CSV) instead of the built-in scenario (configs/traces/demo.csv).
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Context classes, thresholds and budgets (default: configs/contexts/default.toml, built in).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Nesting levels of the bundle.
    #[arg(long, default_value = "8,4,3,2")]
    levels: String,
    /// Test images run on the device at each trace point (rotating through the held-out set).
    #[arg(long, default_value_t = 4, value_parser = super::count)]
    images_per_point: usize,
    /// Also build each energy-budgeted class's input-adaptive policies (`caq gate --adaptive`)
    /// and replay the points of a class that has a confidence cascade with it: every input's
    /// setting follows from its own output, the plane groups of every stage resident.
    #[arg(long)]
    adaptive: bool,
    /// Also write the figures as JSON to this file (default: <out>/demo.json; atomic).
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One trace point as replayed.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PointRow {
    pub t_s: f64,
    pub battery_pct: Option<f64>,
    pub mem_free_mib: Option<f64>,
    pub latency_budget_ms: Option<f64>,
    pub gate: String,
    /// `static` (the gate's bits) or `cascade` (the class's confidence cascade, `--adaptive`).
    pub policy: String,
    pub switched: bool,
    pub bits: Vec<u8>,
    /// The gate's top-1 on the whole held-out set (golden model; the device agrees bit for bit
    /// on every image it ran, checked here).
    pub accuracy_pct: f64,
    /// Per inference, from the device's counters.
    pub cycles: u64,
    pub latency_us: f64,
    pub energy_total_uj: f64,
    pub energy_dynamic_uj: f64,
    pub energy_source: String,
    pub resident_bytes: u64,
    /// Whether the device time met the trace's latency budget (when it has one).
    pub deadline_met: Option<bool>,
    pub switch: Option<SwitchRow>,
    pub images: usize,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SwitchRow {
    pub paged_in_bytes: u64,
    pub dropped_bytes: u64,
    pub descriptor_bytes: u64,
    /// Host time of the switch (not compared between backends).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub us: Option<f64>,
}

impl SwitchRow {
    fn of(r: &SwitchReport) -> SwitchRow {
        SwitchRow {
            paged_in_bytes: r.paged_in_bytes,
            dropped_bytes: r.dropped_bytes,
            descriptor_bytes: r.descriptor_bytes,
            us: Some(r.time.as_secs_f64() * 1e6),
        }
    }
}

#[derive(Serialize)]
struct DemoReport {
    dataset: String,
    config: String,
    levels: Vec<u8>,
    seconds: f64,
    gates: GateTable,
    #[serde(skip_serializing_if = "Option::is_none")]
    adaptive: Option<super::adaptive::AdaptiveTable>,
    trace: Vec<PointRow>,
    switches: usize,
    /// The same trace on the Verilator model of the RTL: `equal` when outputs, counters and
    /// switch bytes matched the functional device at every point.
    rtl: String,
    rtl_dir: PathBuf,
    plots: Vec<PathBuf>,
}

/// The file that marks a directory as an earlier demo output (so `--out` may replace it).
const DEMO_MARKER: &str = "digits-mlp.caqb";

pub fn demo(a: DemoArgs) -> Result<()> {
    let t0 = Instant::now();
    // Everything the flags name is read and checked before --out is touched; the output is then
    // built in a temporary directory that replaces --out whole, so an error at any step leaves
    // an older demo output as it was (and no empty directory where there was none).
    let cfg = AccelConfig::load(&a.config)
        .with_context(|| format!("reading --config {}", a.config.display()))?;
    let levels = super::parse_levels(&a.levels)?;
    if levels.len() < 2 {
        bail!("--levels: the demo switches precision; give at least two levels");
    }
    let policy = adapt::load_policy(a.policy.as_deref())?;
    let trace = match &a.trace {
        Some(p) => {
            ContextTrace::load(p).with_context(|| format!("reading --trace {}", p.display()))?
        }
        None => ContextTrace::demo(),
    };
    let json = a.json.clone().unwrap_or_else(|| a.out.join("demo.json"));
    if a.json.is_some() {
        let mut inputs = vec![("--config", a.config.as_path())];
        inputs.extend(a.policy.iter().map(|p| ("--policy", p.as_path())));
        inputs.extend(a.trace.iter().map(|p| ("--trace", p.as_path())));
        super::check_outputs(&inputs, &[("--json", json.as_path())])?;
        if json.starts_with(&a.out) {
            bail!(
                "--json {} is inside --out {}, which is replaced as a whole: leave --json out \
                 (it defaults to <out>/demo.json) or put it elsewhere",
                json.display(),
                a.out.display()
            );
        }
    }
    let em = adapt::load_energy(None, &cfg)?;
    let split = DataArgs {
        data: "digits".into(),
        test_count: None,
        split_seed: 0,
    }
    .load()?;

    let mut report = None;
    caq_spec::fsio::replace_dir(&a.out, DEMO_MARKER, |tmp| -> Result<()> {
        report = Some(build(&a, tmp, &cfg, &levels, &policy, &trace, &em, &split)?);
        Ok(())
    })
    .map_err(|e| match e {
        caq_spec::fsio::ReplaceDirError::Fill(e) => e,
        caq_spec::fsio::ReplaceDirError::Io(e) => {
            anyhow::Error::new(e).context(format!("writing --out {}", a.out.display()))
        }
    })?;
    let mut report = report.expect("filled");
    report.seconds = t0.elapsed().as_secs_f64();
    if a.json.is_some() {
        write_json(&json, &report)?;
    }
    println!(
        "\nreport written to {}; plots {} and {}; {:.1} s in all",
        json.display(),
        report.plots[0].display(),
        report.plots[1].display(),
        report.seconds
    );
    Ok(())
}

/// The demo's steps, writing into `tmp` (which becomes `a.out`); paths in the report and the
/// messages are those under `a.out`.
#[allow(clippy::too_many_arguments)]
fn build(
    a: &DemoArgs,
    tmp: &std::path::Path,
    cfg: &AccelConfig,
    levels: &[u8],
    policy: &caq_driver::context::ContextPolicy,
    trace: &ContextTrace,
    em: &caq_driver::energy::model::EnergyModel,
    split: &super::Split,
) -> Result<DemoReport> {
    let t0 = Instant::now();
    let model_name = "digits-mlp.caqf";
    let cached = a.out.join(model_name);
    let model_path = tmp.join(model_name);
    println!("== 1/5 train: MLP on {} digits images", split.train.len());
    let model = if cached.is_file() && !a.retrain {
        println!(
            "reusing {} (pass --retrain to train again)",
            cached.display()
        );
        let m = load_float(&cached)?;
        std::fs::copy(&cached, &model_path)
            .with_context(|| format!("copying {}", cached.display()))?;
        m
    } else {
        let (m, _) = train_model(split, Some("mlp"), None, 0, false)?;
        m.save(&model_path)?;
        m
    };

    let label = levels
        .iter()
        .map(|b| format!("INT{b}"))
        .collect::<Vec<_>>()
        .join(" ⊃ ");
    println!("\n== 2/5 quantize: nested {label}, adaptive rounding");
    let mut q = qmodel::quantize(&model, &split.train, &QuantizeConfig::nested(levels))?;
    let bundle_path = tmp.join(DEMO_MARKER);
    bundle::write(&bundle_path, &q)?;
    eval_bundle(&model, &bundle_path, split)?;

    println!(
        "\n== 3/5 gates: one per context class, budgets of {} classes, costs on '{}'",
        policy.classes.len(),
        cfg.name
    );
    let build = adapt::build_gates(&mut q, &model, &split.train, cfg, em, policy, 1000)?;
    bundle::write(&bundle_path, &q)?;
    let gates = GateTable::new(&q, &model, &build, &split.test, cfg, em)?;
    gates.print();
    let adaptive = if a.adaptive {
        println!("\n== 3b/5 input-adaptive policies, on the training images");
        let b = super::adaptive::build_adaptive(
            &mut q,
            &model,
            &split.train,
            cfg,
            em,
            &build,
            &super::adaptive::BuildOptions {
                images: split.train.len(),
                seed: 0,
                reference: super::adaptive::Reference::Float,
                validation: false,
                row_step: None,
                energy_fraction: 1.0,
            },
        )?;
        bundle::write(&bundle_path, &q)?;
        super::adaptive::print_build(&b);
        let t = super::adaptive::AdaptiveTable::new(&q, &split.test, cfg, em)?;
        t.print();
        Some(t)
    } else {
        None
    };

    let rtl_dir = a.out.join("rtl");
    println!("\n== 4/5 RTL: generating the Verilog of '{}'", cfg.name);
    let design =
        caq_hdl::generate(cfg).with_context(|| format!("generating RTL for {}", cfg.name))?;
    design
        .write(&tmp.join("rtl"))
        .with_context(|| format!("writing {}", rtl_dir.display()))?;
    println!(
        "{} files + manifest.json in {} (top {}, config hash {})",
        design.files.len(),
        rtl_dir.display(),
        design.top,
        design.config_hash
    );

    println!(
        "\n== 5/5 replay: {} context points over {:.0} s on the functional device",
        trace.points.len(),
        trace.points.last().map_or(0.0, |p| p.t_s)
    );
    let scene = Scene {
        cfg,
        em,
        bundle: &bundle_path,
        q: &q,
        policy,
        trace,
        test: &split.test,
        gates: &gates,
        adaptive: adaptive.as_ref(),
    };
    let (rows, switches) =
        scene.replay(caq_sim::FuncDevice::new(cfg, region())?, a.images_per_point)?;
    print_trace(&rows);
    let rtl = scene.rtl_replay()?;
    println!("\nRTL (Verilator): {rtl}");

    let mut names = vec!["gates.svg", "trace.svg"];
    plots::gates(&tmp.join(names[0]), &gates)?;
    plots::trace(&tmp.join(names[1]), &rows)?;
    if let Some(t) = &adaptive {
        names.push("adaptive.svg");
        plots::adaptive(&tmp.join("adaptive.svg"), t)?;
    }
    let report = DemoReport {
        dataset: split.test.name.clone(),
        config: cfg.name.clone(),
        levels: levels.to_vec(),
        seconds: t0.elapsed().as_secs_f64(),
        gates,
        adaptive,
        trace: rows,
        switches,
        rtl,
        rtl_dir,
        plots: names.iter().map(|n| a.out.join(n)).collect(),
    };
    if a.json.is_none() {
        write_json(&tmp.join("demo.json"), &report)?;
    }
    Ok(report)
}

const BASE: u64 = 0x1000_0000;

fn region() -> MemRegion {
    MemRegion {
        base: DeviceAddr(BASE),
        len: 16 << 20,
    }
}

/// The golden model's output codes of one image as the device stores them.
fn golden_output(q: &QModel, bits: &[u8], image: &[u8]) -> Result<Vec<u8>> {
    let nodes = q.executor(bits)?.run(image)?;
    let last = nodes.last().context("the model has no nodes")?;
    Ok(ActBuffer::encode(last.iter().copied()))
}

/// Everything a trace replay needs.
pub struct Scene<'a> {
    pub cfg: &'a AccelConfig,
    pub em: &'a caq_driver::energy::model::EnergyModel,
    /// The bundle with its gates.
    pub bundle: &'a std::path::Path,
    pub q: &'a QModel,
    pub policy: &'a caq_driver::context::ContextPolicy,
    pub trace: &'a ContextTrace,
    pub test: &'a Dataset,
    pub gates: &'a GateTable,
    /// With `--adaptive`: the held-out figures of the classes' policies.
    pub adaptive: Option<&'a super::adaptive::AdaptiveTable>,
}

impl Scene<'_> {
    /// Replays the trace on `dev` through the `Accelerator`: at each point the selector picks a
    /// class (with hysteresis), the gate is applied when it changed, and `per_point` held-out images
    /// run, each checked byte for byte against the golden model.
    pub fn replay<D: Device>(&self, dev: D, per_point: usize) -> Result<(Vec<PointRow>, usize)> {
        let Scene {
            cfg,
            em,
            bundle: bundle_path,
            q,
            policy,
            trace,
            test,
            gates,
            adaptive,
        } = *self;
        let first = &policy
            .classes
            .last()
            .context("the policy has no classes")?
            .name;
        let mut acc = adapt::open_loaded(dev, cfg, bundle_path, &q.gate(first)?.bits)?;
        acc.attach_meter(Box::new(ModelMeter::new(em.clone(), cfg)?));
        let mut selector = GateSelector::new(policy.clone())?;
        let mut rows = Vec::new();
        let mut next_image = 0usize;
        let mut current = Some(first.clone());
        for p in &trace.points {
            let sel = selector.select(p.t_s, &p.ctx);
            let switch = if current.as_deref() != Some(sel.class.as_str()) {
                let r = acc.apply_gate(&sel.class)?;
                current = Some(sel.class.clone());
                Some(SwitchRow::of(&r))
            } else {
                None
            };
            // A class with a cascade runs it (--adaptive); its stages stay resident meanwhile.
            let cascade = match adaptive {
                Some(_) => q
                    .adaptive
                    .iter()
                    .find(|p| p.class == sel.class)
                    .and_then(|p| p.cascade.as_ref()),
                None => None,
            };
            // The gate's bits (a cascade leaves the device at its last input's final stage).
            let bits = match cascade {
                Some(_) => q.gate(&sel.class)?.bits.clone(),
                None => acc.bits()?,
            };
            acc.set_residency(if cascade.is_some() {
                Residency::KeepPaged
            } else {
                Residency::Minimal
            })?;
            let golden = match cascade {
                Some(c) => Some(GoldenAdaptive::new(q, Adaptive::Cascade(c))?),
                None => None,
            };
            let mut perf = PerfCounters::default();
            let (mut total, mut dynamic, mut source) = (0.0, 0.0, String::new());
            for _ in 0..per_point {
                let i = next_image % test.len();
                next_image += 1;
                let (output, want, device, energy) = match (cascade, &golden) {
                    (Some(c), Some(g)) => {
                        let inf = acc.infer_adaptive(test.image(i), Adaptive::Cascade(c))?;
                        let want = ActBuffer::encode(g.infer(test.image(i))?.output);
                        (inf.output, want, inf.device, inf.energy)
                    }
                    _ => {
                        let inf = acc.infer(test.image(i))?;
                        let want = golden_output(q, &bits, test.image(i))?;
                        (inf.output, want, inf.report.device, inf.report.energy)
                    }
                };
                if output != want {
                    bail!(
                        "t = {} s, gate '{}': the device's output of test image {i} differs from the \
                     golden model's",
                        p.t_s,
                        sel.class
                    );
                }
                perf.add(&device);
                if let Some(e) = &energy {
                    total += e.total_j;
                    dynamic += e.dynamic_j.unwrap_or(e.total_j);
                    source = e.source.clone();
                }
            }
            let n = per_point as f64;
            let cycles = perf.cycles / per_point as u64;
            let latency_us = cycles as f64 / cfg.clock_mhz;
            let accuracy_pct = match (cascade, adaptive) {
                (Some(_), Some(t)) => t
                    .rows
                    .iter()
                    .find(|r| r.class == sel.class && r.kind == "cascade")
                    .map_or(f64::NAN, |r| r.accuracy_pct),
                _ => gates
                    .gates
                    .iter()
                    .find(|g| g.name == sel.class)
                    .map_or(f64::NAN, |g| g.gate.accuracy_pct),
            };
            rows.push(PointRow {
                t_s: p.t_s,
                battery_pct: p.ctx.battery_pct,
                mem_free_mib: p.ctx.mem_free_mib(),
                latency_budget_ms: p.ctx.latency_budget_ms,
                gate: sel.class.clone(),
                policy: if cascade.is_some() {
                    "cascade".into()
                } else {
                    "static".into()
                },
                switched: switch.is_some(),
                bits,
                accuracy_pct,
                cycles,
                latency_us,
                energy_total_uj: total / n * 1e6,
                energy_dynamic_uj: dynamic / n * 1e6,
                energy_source: source,
                resident_bytes: acc.resident_weight_bytes()?,
                deadline_met: p.ctx.latency_budget_ms.map(|b| latency_us <= b * 1e3),
                switch,
                images: per_point,
            });
        }
        Ok((rows, selector.switches()))
    }
}

fn print_trace(rows: &[PointRow]) {
    let opt = |v: Option<f64>, prec: usize| v.map_or("-".into(), |x| format!("{x:.prec$}"));
    let mut out = Vec::new();
    for r in rows {
        out.push(vec![
            format!("{:.0}", r.t_s),
            opt(r.battery_pct, 0),
            opt(r.mem_free_mib, 0),
            opt(r.latency_budget_ms, 3),
            format!(
                "{}{}{}",
                r.gate,
                if r.policy == "static" {
                    ""
                } else {
                    " (cascade)"
                },
                if r.switched { " *" } else { "" }
            ),
            bits_label(&r.bits),
            format!("{:.2}", r.accuracy_pct),
            format!("{} / {:.1}", r.cycles, r.latency_us),
            format!("{:.3} / {:.3}", r.energy_dynamic_uj, r.energy_total_uj),
            r.resident_bytes.to_string(),
            r.switch.as_ref().map_or(String::new(), |s| {
                format!(
                    "+{} −{} B, {:.0} µs",
                    s.paged_in_bytes + s.descriptor_bytes,
                    s.dropped_bytes,
                    s.us.unwrap_or(0.0)
                )
            }),
            match r.deadline_met {
                Some(true) => "met".into(),
                Some(false) => "MISSED".into(),
                None => "-".into(),
            },
        ]);
    }
    println!("(* = gate switched here; energy from the model, per inference)");
    table::print(
        &[
            "t s",
            "battery %",
            "free MiB",
            "budget ms",
            "gate",
            "bits",
            "top-1 %",
            "cycles / µs",
            "dyn / total µJ",
            "resident B",
            "switch",
            "deadline",
        ],
        &out,
    );
}

impl Scene<'_> {
    /// The trace on the Verilator model, one image per point, against the functional device.
    fn rtl_replay(&self) -> Result<String> {
        let dev = match adapt::rtl_device(self.cfg, region())? {
            Ok(dev) => dev,
            Err(note) => return Ok(note.replacen("not run", "skipped", 1)),
        };
        #[cfg(not(feature = "rtl"))]
        match dev {}
        #[cfg(feature = "rtl")]
        self.compare_rtl(dev)
    }

    #[cfg(feature = "rtl")]
    fn compare_rtl(&self, dev: caq_sim::RtlDevice) -> Result<String> {
        let r = region();
        // One image per point keeps the RTL replay short; the functional replay is re-run the same
        // way so the rows compare one for one.
        let t = Instant::now();
        let (rtl_rows, _) = self.replay(dev, 1)?;
        let secs = t.elapsed().as_secs_f64();
        let (func_rows1, _) = self.replay(caq_sim::FuncDevice::new(self.cfg, r)?, 1)?;
        // Outputs were checked against the golden model inside each replay. The RTL's cycles depend
        // on the memory model's latency and stalls, so they (and the latency and energy priced from
        // them) are compared as an error; everything else must be equal.
        let strip = |rows: &[PointRow]| -> Vec<PointRow> {
            rows.iter()
                .cloned()
                .map(|mut r| {
                    if let Some(s) = r.switch.as_mut() {
                        s.us = None;
                    }
                    r.cycles = 0;
                    r.latency_us = 0.0;
                    r.energy_total_uj = 0.0;
                    r.energy_dynamic_uj = 0.0;
                    r.deadline_met = None;
                    r
                })
                .collect()
        };
        if strip(&rtl_rows) != strip(&func_rows1) {
            bail!(
                "the trace on the RTL differs from the functional device (gates, bits, resident or \
             switch bytes)"
            );
        }
        let worst = rtl_rows
            .iter()
            .zip(&func_rows1)
            .map(|(r, f)| (r.cycles as f64 / f.cycles as f64 - 1.0).abs())
            .fold(0.0f64, f64::max);
        Ok(format!(
            "equal: {} points, one image each, outputs bit-exact with the golden model; gates, bits, \
         resident and switch bytes equal to the functional device's; RTL cycles within {:.1} % of \
         the timing model's (the RTL waits on the AXI memory model); {secs:.1} s",
            rtl_rows.len(),
            100.0 * worst
        ))
    }
}
