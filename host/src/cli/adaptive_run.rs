//! `caq run --adaptive`: a context class's input-adaptive policies from a bundle, run on the
//! golden model, the CPU backend or the accelerator through the driver (the functional device,
//! the RTL or a board), every image checked against the golden reference. Available in every
//! build, the board's included; building the policies is `caq gate --adaptive` (adaptive.rs).

use super::table;
use anyhow::{Context as _, Result};
use caq_cpu::CpuAdaptive;
use caq_driver::accel::{Accelerator, BoardOptions, LoadOptions, Residency};
use caq_driver::energy::model::EnergyModel;
use caq_model::adaptive::{Adaptive, AdaptiveKind, Outcome};
use caq_model::data::Dataset;
use caq_model::qmodel::{self, QModel};
use caq_spec::{AccelConfig, PerfCounters};
use serde::Serialize;
use std::path::Path;

/// A per-layer setting as the tables print it: `8/4/2`.
pub fn bits_label(bits: &[u8]) -> String {
    bits.iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// A final-setting histogram as `bits: images, …`.
pub fn histogram_text(h: &[(String, usize)]) -> String {
    h.iter()
        .map(|(b, c)| format!("{b}: {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which of a class's input-adaptive policies `caq run --adaptive` runs.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KindArg {
    Cascade,
    Network,
    /// Each the class has.
    Both,
}

impl KindArg {
    fn kinds(self) -> &'static [AdaptiveKind] {
        match self {
            KindArg::Cascade => &[AdaptiveKind::Cascade],
            KindArg::Network => &[AdaptiveKind::Network],
            KindArg::Both => &[AdaptiveKind::Cascade, AdaptiveKind::Network],
        }
    }
}

/// Where `caq run --adaptive` runs its passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdaptiveBackend {
    /// The golden executor (caq_model::adaptive::GoldenAdaptive).
    Golden,
    /// caq-cpu (CpuAdaptive).
    Cpu,
    /// The functional device through the driver (Accelerator::infer_adaptive).
    Func,
    /// The Verilator model of the RTL through the driver (cargo feature `rtl`).
    Rtl,
    /// A board's accelerator through the driver (UIO and u-dma-buf).
    Uio,
}

/// One policy run by `caq run --adaptive`.
#[derive(Clone, Debug, Serialize)]
pub struct AdaptiveRun {
    pub class: String,
    pub kind: String,
    pub images: usize,
    pub accuracy_pct: f64,
    /// How many images ended at each setting.
    pub histogram: Vec<(String, usize)>,
    pub passes_per_inference: f64,
    /// Images whose setting, passes and output codes equal the golden reference's (all of them,
    /// or the run fails).
    pub golden_equal: usize,
    /// Device figures, per inference (the driver's backends only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceFigures>,
}

/// Per-inference means of what the driver reports for adaptive inferences.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceFigures {
    pub cycles: f64,
    pub latency_us: f64,
    /// Energy model over the counters of every pass (re-runs included).
    pub energy_dynamic_uj: f64,
    pub energy_total_uj: f64,
    /// Descriptor bytes rewritten by the setting switches.
    pub switch_descriptor_bytes: f64,
    /// Host time of the switches.
    pub switch_us: f64,
    /// Plane-group bytes paged in, over the whole run (every setting once, at the first input).
    pub paged_in_bytes_total: u64,
    /// The gate network's integer operations and host time (0 for a cascade).
    pub gate_ops: u64,
    pub gate_us: f64,
    /// Host wall time of the whole inference.
    pub host_latency_us: f64,
}

/// Runs `class`'s input-adaptive policies on `backend` for every image of `set`, each checked
/// against the golden reference (setting, passes, output codes).
#[allow(clippy::too_many_arguments)]
pub fn run_policies(
    q: &QModel,
    bundle: &Path,
    class: &str,
    kinds: KindArg,
    backend: AdaptiveBackend,
    cfg: &AccelConfig,
    board: &BoardOptions,
    set: &Dataset,
) -> Result<Vec<AdaptiveRun>> {
    let p = q.adaptive_policy(class)?;
    let mut runs = Vec::new();
    for &kind in kinds.kinds() {
        let policy = match p.get(kind) {
            Ok(policy) => policy,
            Err(e) if kinds == KindArg::Both => {
                eprintln!("skipping: {e}");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let golden = caq_model::adaptive::GoldenAdaptive::new(q, policy)?;
        let want = qmodel::par_map(set.len(), |i| golden.infer(set.image(i)));
        let want = want.into_iter().collect::<caq_model::Result<Vec<_>>>()?;
        let (got, device) = match backend {
            AdaptiveBackend::Golden => (want.clone(), None),
            AdaptiveBackend::Cpu => {
                let cpu = CpuAdaptive::new(q, policy)?;
                let got = qmodel::par_map(set.len(), |i| cpu.infer(set.image(i)));
                (got.into_iter().collect::<caq_cpu::Result<Vec<_>>>()?, None)
            }
            AdaptiveBackend::Func | AdaptiveBackend::Rtl => {
                let (got, fig) = on_simulated(backend, cfg, bundle, q, policy, set)?;
                (got, Some(fig))
            }
            AdaptiveBackend::Uio => {
                let dev =
                    caq_driver::accel::open_board(cfg, board).context("opening the accelerator")?;
                let (got, fig) = on_device(dev, cfg, bundle, q, policy, set)?;
                (got, Some(fig))
            }
        };
        let settings = policy.settings();
        let mut hist = vec![0usize; settings.len()];
        let (mut correct, mut passes, mut equal) = (0usize, 0usize, 0usize);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            if g != w {
                anyhow::bail!(
                    "image {i}: {backend:?} ran setting {} in passes {:?} with output {:?}, the \
                     golden reference setting {} in passes {:?} with output {:?}",
                    g.choice,
                    g.passes,
                    g.output,
                    w.choice,
                    w.passes,
                    w.output
                );
            }
            equal += 1;
            hist[g.choice] += 1;
            passes += g.passes.len();
            correct += usize::from(qmodel::argmax(&g.output) == set.labels[i] as usize);
        }
        let n = set.len().max(1) as f64;
        runs.push(AdaptiveRun {
            class: class.into(),
            kind: kind.name().into(),
            images: set.len(),
            accuracy_pct: 100.0 * correct as f64 / n,
            histogram: settings
                .iter()
                .zip(hist)
                .map(|(s, c)| (bits_label(s), c))
                .collect(),
            passes_per_inference: passes as f64 / n,
            golden_equal: equal,
            device,
        });
    }
    Ok(runs)
}

/// The passes and figures of one policy on a simulated device (`Func` or `Rtl`), with
/// [`caq_driver::handle::SIM_REGION`] as its memory.
fn on_simulated(
    backend: AdaptiveBackend,
    cfg: &AccelConfig,
    bundle: &Path,
    q: &QModel,
    policy: Adaptive<'_>,
    set: &Dataset,
) -> Result<(Vec<Outcome>, DeviceFigures)> {
    match backend {
        #[cfg(feature = "sim")]
        AdaptiveBackend::Func => {
            let dev = caq_sim::FuncDevice::new(cfg, caq_driver::handle::SIM_REGION)?;
            on_device(dev, cfg, bundle, q, policy, set)
        }
        #[cfg(feature = "rtl")]
        AdaptiveBackend::Rtl => {
            let dev = super::run::rtl_device(cfg, caq_driver::handle::SIM_REGION)?;
            on_device(dev, cfg, bundle, q, policy, set)
        }
        _ => {
            let _ = (cfg, bundle, q, policy, set);
            anyhow::bail!(
                "--backend {}: this caq was built without it (cargo feature `{}`)",
                if backend == AdaptiveBackend::Rtl {
                    "rtl"
                } else {
                    "func"
                },
                if backend == AdaptiveBackend::Rtl {
                    "rtl"
                } else {
                    "sim"
                }
            )
        }
    }
}

/// Adaptive inference of every image through the driver on `dev` (`Residency::KeepPaged`); the
/// outcomes in the model's terms (output codes decoded) and the per-inference means.
fn on_device<D: caq_spec::Device>(
    dev: D,
    cfg: &AccelConfig,
    bundle: &Path,
    q: &QModel,
    policy: Adaptive<'_>,
    set: &Dataset,
) -> Result<(Vec<Outcome>, DeviceFigures)> {
    let mut acc = Accelerator::open(dev, cfg)?;
    acc.load_bundle(
        bundle,
        &LoadOptions {
            bits: Some(policy.settings()[0].clone()),
            residency: Residency::KeepPaged,
            ..LoadOptions::default()
        },
    )
    .with_context(|| format!("loading {}", bundle.display()))?;
    let em = EnergyModel::for_config(cfg, None)?;
    let out = q.acts.last().context("a model has an output")?;
    let mut outcomes = Vec::with_capacity(set.len());
    let mut perf = PerfCounters::default();
    let (mut switch_bytes, mut paged, mut gate_ops) = (0u64, 0u64, 0u64);
    let (mut switch_s, mut gate_s, mut host_s) = (0f64, 0f64, 0f64);
    for i in 0..set.len() {
        let r = acc.infer_adaptive(set.image(i), policy)?;
        perf.add(&r.device);
        switch_bytes += r.switch_descriptor_bytes;
        paged += r.paged_in_bytes;
        switch_s += r.switch_time.as_secs_f64();
        gate_s += r.gate_time.as_secs_f64();
        host_s += r.latency.as_secs_f64();
        gate_ops = r.gate_ops;
        let output = r
            .output
            .iter()
            .map(|&b| caq_spec::descriptor::byte_code(b, out.signed))
            .collect();
        outcomes.push(Outcome {
            output,
            choice: r.choice,
            bits: r.bits,
            passes: r.passes,
        });
    }
    let n = set.len().max(1) as f64;
    let e = em.estimate(cfg, &perf);
    Ok((
        outcomes,
        DeviceFigures {
            cycles: perf.cycles as f64 / n,
            latency_us: perf.cycles as f64 / n / cfg.clock_mhz,
            energy_dynamic_uj: e.dynamic_j / n * 1e6,
            energy_total_uj: e.total_j / n * 1e6,
            switch_descriptor_bytes: switch_bytes as f64 / n,
            switch_us: switch_s / n * 1e6,
            paged_in_bytes_total: paged,
            gate_ops,
            gate_us: gate_s / n * 1e6,
            host_latency_us: host_s / n * 1e6,
        },
    ))
}

/// Prints what `caq run --adaptive` measured.
pub fn print_runs(runs: &[AdaptiveRun], backend: AdaptiveBackend) {
    println!(
        "\nInput-adaptive inference on {backend:?} (every image's setting, passes and output equal \
         the golden reference's):"
    );
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let d = r.device.as_ref();
            let f = |v: Option<f64>, p: usize| v.map_or("-".into(), |v| format!("{v:.p$}"));
            vec![
                r.class.clone(),
                r.kind.clone(),
                r.images.to_string(),
                format!("{:.2}", r.accuracy_pct),
                format!("{:.2}", r.passes_per_inference),
                f(d.map(|d| d.cycles), 0),
                f(d.map(|d| d.latency_us), 1),
                f(d.map(|d| d.energy_dynamic_uj), 3),
                f(d.map(|d| d.switch_descriptor_bytes), 0),
                f(d.map(|d| d.switch_us), 2),
                f(d.map(|d| d.gate_us), 2),
                histogram_text(&r.histogram),
            ]
        })
        .collect();
    table::print(
        &[
            "class",
            "policy",
            "images",
            "top-1 %",
            "passes",
            "cycles",
            "device µs",
            "dynamic µJ",
            "switch B",
            "switch µs",
            "gate µs",
            "final setting: images",
        ],
        &rows,
    );
}
