//! What `caq gate`, `caq demo` and `caq bench` share: building the gates of a nested model for an
//! accelerator config, and the table that sets each gate beside uniform precision.

use super::adaptive_run::bits_label;
use super::table;
use anyhow::{Context as _, Result};
use caq_driver::accel::{Accelerator, LoadOptions, Residency};
use caq_driver::context::ContextPolicy;
use caq_driver::energy::model::{EnergyEstimate, EnergyModel};
use caq_host::gates::{self, CostTable, GateBuild, SettingCost};
use caq_model::data::Dataset;
use caq_model::graph::FloatModel;
use caq_model::qmodel::{self, QModel};
use caq_model::report;
use caq_spec::{AccelConfig, Device, MemRegion, PerfCounters};
use serde::Serialize;
use std::path::Path;

/// The selection images: up to `n` of the training split, spread evenly over it (the split is
/// stratified and shuffled, so a stride keeps the class mix).
pub fn selection_images(train: &Dataset, n: usize) -> Dataset {
    let n = n.clamp(1, train.len().max(1));
    let idx: Vec<usize> = (0..n).map(|i| i * train.len() / n).collect();
    train.subset(&idx)
}

/// Loads the context policy: the file when given, the built-in default otherwise.
pub fn load_policy(path: Option<&Path>) -> Result<ContextPolicy> {
    match path {
        Some(p) => {
            ContextPolicy::load(p).with_context(|| format!("reading --policy {}", p.display()))
        }
        None => Ok(ContextPolicy::default_policy()),
    }
}

/// The energy model for `cfg`: the file when given, the built-in coefficients of its board
/// otherwise.
pub fn load_energy(path: Option<&Path>, cfg: &AccelConfig) -> Result<EnergyModel> {
    let m = match path {
        Some(p) => {
            EnergyModel::load(p).with_context(|| format!("reading --energy {}", p.display()))?
        }
        None => EnergyModel::for_config(cfg, None)?,
    };
    m.check_config(cfg)?;
    Ok(m)
}

/// Builds the gates of `q` for `cfg` under `policy` and stores them in `q`. Budgets on energy
/// apply to the dynamic energy: the part of an inference's energy its precision changes (the
/// chip's static power is paid whatever runs; docs/gates.md).
pub fn build_gates(
    q: &mut QModel,
    float: &FloatModel,
    train: &Dataset,
    cfg: &AccelConfig,
    em: &EnergyModel,
    policy: &ContextPolicy,
    images: usize,
) -> Result<GateBuild> {
    let sel = selection_images(train, images);
    let reference = report::float_logits(float, &sel)?;
    let costs = CostTable::new(q, cfg)?;
    let energy = |p: &PerfCounters| em.estimate(cfg, p).dynamic_j;
    let build = gates::build(q, costs, policy, &sel, &reference, &energy, |what| {
        eprintln!("  gates: {what}")
    })?;
    q.set_gates(build.gates())?;
    Ok(build)
}

/// One setting's figures on the held-out set, priced by the energy model.
#[derive(Clone, Debug, Serialize)]
pub struct Figures {
    pub bits: Vec<u8>,
    pub accuracy_pct: f64,
    pub cycles: u64,
    pub latency_us: f64,
    /// Busy cycles over all cycles.
    pub utilization: f64,
    pub energy: EnergyEstimate,
    pub resident_bytes: u64,
}

impl Figures {
    fn of(
        q: &QModel,
        bits: &[u8],
        cost: &SettingCost,
        test: &Dataset,
        cfg: &AccelConfig,
        em: &EnergyModel,
    ) -> Result<Figures> {
        Ok(Figures {
            bits: bits.to_vec(),
            accuracy_pct: qmodel::int_accuracy(q, bits, test)?,
            cycles: cost.perf.cycles,
            latency_us: cost.latency_s * 1e6,
            utilization: cost.perf.utilization(),
            energy: em.estimate(cfg, &cost.perf),
            resident_bytes: cost.resident_bytes,
        })
    }
}

/// A gate beside the uniform precision of the same budget.
#[derive(Clone, Debug, Serialize)]
pub struct GateRow {
    pub name: String,
    pub gate: Figures,
    /// Agreement with the float model on the selection images, %.
    pub selection_agreement_pct: f64,
    /// False when no setting fits the class's budget (the gate is the cheapest setting).
    pub within_budget: bool,
    /// The class's energy budget, a fraction of the full model's dynamic energy.
    pub energy_fraction: Option<f64>,
    /// The highest uniform precision within the same budget.
    pub uniform: Option<Figures>,
}

/// Every gate and every uniform level on the held-out set.
#[derive(Clone, Debug, Serialize)]
pub struct GateTable {
    pub config: String,
    pub test_images: usize,
    pub f32_accuracy_pct: f64,
    pub gates: Vec<GateRow>,
    pub uniform: Vec<Figures>,
}

impl GateTable {
    pub fn new(
        q: &QModel,
        float: &FloatModel,
        build: &GateBuild,
        test: &Dataset,
        cfg: &AccelConfig,
        em: &EnergyModel,
    ) -> Result<GateTable> {
        let energy = |p: &PerfCounters| em.estimate(cfg, p).dynamic_j;
        let mut uniform = Vec::new();
        for &b in q.levels() {
            let bits = q.uniform_bits(b);
            let cost = build.costs.cost(&bits, &energy)?;
            uniform.push(Figures::of(q, &bits, &cost, test, cfg, em)?);
        }
        let mut gates = Vec::new();
        for g in &build.gates {
            gates.push(GateRow {
                name: g.name.clone(),
                gate: Figures::of(q, &g.bits, &g.cost, test, cfg, em)?,
                selection_agreement_pct: g.score.agreement_pct,
                within_budget: g.within_budget,
                energy_fraction: g.budget.energy_fraction,
                uniform: g
                    .uniform
                    .as_ref()
                    .and_then(|u| uniform.iter().find(|f| f.bits[0] == u.bits).cloned()),
            });
        }
        Ok(GateTable {
            config: cfg.name.clone(),
            test_images: test.len(),
            f32_accuracy_pct: qmodel::float_accuracy(float, test)?,
            gates,
            uniform,
        })
    }

    /// The full-precision uniform row (the INT8 reference of the savings).
    pub fn full(&self) -> &Figures {
        &self.uniform[0]
    }

    pub fn print(&self) {
        let full = self.full().clone();
        let pct = |x: f64, base: f64| {
            if base > 0.0 {
                format!("{:+.0} %", 100.0 * (x / base - 1.0))
            } else {
                "-".into()
            }
        };
        let mut rows = Vec::new();
        for g in &self.gates {
            let f = &g.gate;
            rows.push(vec![
                if g.within_budget {
                    g.name.clone()
                } else {
                    format!("{} (over budget)", g.name)
                },
                bits_label(&f.bits),
                format!("{:.2}", f.accuracy_pct),
                format!(
                    "{:.2} ({})",
                    f.energy.dynamic_j * 1e6,
                    pct(f.energy.dynamic_j, full.energy.dynamic_j)
                ),
                format!(
                    "{:.2} ({})",
                    f.energy.total_j * 1e6,
                    pct(f.energy.total_j, full.energy.total_j)
                ),
                format!("{} ({:.1} µs)", f.cycles, f.latency_us),
                format!(
                    "{} ({})",
                    f.resident_bytes,
                    pct(f.resident_bytes as f64, full.resident_bytes as f64)
                ),
                match &g.uniform {
                    Some(u) => format!(
                        "{}-bit: {:.2} %, {:.2} µJ",
                        u.bits[0],
                        u.accuracy_pct,
                        u.energy.dynamic_j * 1e6
                    ),
                    None => "none fits".into(),
                },
            ]);
        }
        println!(
            "\nGates on {} held-out images (config {}; energy from the model over the predicted \
             counters; f32 {:.2} %):",
            self.test_images, self.config, self.f32_accuracy_pct
        );
        table::print(
            &[
                "gate",
                "bits per layer",
                "top-1 %",
                "dynamic µJ (vs INT8)",
                "total µJ (vs INT8)",
                "cycles",
                "resident B (vs INT8)",
                "uniform, same budget",
            ],
            &rows,
        );
        let rows: Vec<Vec<String>> = self
            .uniform
            .iter()
            .map(|f| {
                vec![
                    format!("{}-bit", f.bits[0]),
                    format!("{:.2}", f.accuracy_pct),
                    format!("{:.2}", f.energy.dynamic_j * 1e6),
                    format!("{:.2}", f.energy.total_j * 1e6),
                    f.cycles.to_string(),
                    f.resident_bytes.to_string(),
                ]
            })
            .collect();
        println!("\nUniform precision:");
        table::print(
            &[
                "precision",
                "top-1 %",
                "dynamic µJ",
                "total µJ",
                "cycles",
                "resident B",
            ],
            &rows,
        );
    }
}

/// An accelerator on `dev` with the bundle at `path` loaded at `bits`, residual plane groups
/// dropped on the way down (`Residency::Minimal`).
pub fn open_loaded<D: Device>(
    dev: D,
    cfg: &AccelConfig,
    path: &Path,
    bits: &[u8],
) -> Result<Accelerator<D>> {
    let mut acc = Accelerator::open(dev, cfg)?;
    acc.load_bundle(
        path,
        &LoadOptions {
            bits: Some(bits.to_vec()),
            residency: Residency::Minimal,
            ..LoadOptions::default()
        },
    )?;
    Ok(acc)
}

/// The Verilator model of `cfg`'s RTL over `region` (built, or found in the shared model cache).
/// The inner `Err` says why there is none; with the `rtl` feature there always is one.
#[cfg(feature = "rtl")]
pub fn rtl_device(
    cfg: &AccelConfig,
    region: MemRegion,
) -> Result<std::result::Result<caq_sim::RtlDevice, String>> {
    Ok(Ok(caq_sim::RtlDevice::new(
        cfg,
        0,
        caq_sim::AxiMemOptions {
            base: region.base.0,
            size: region.len,
            ..caq_sim::AxiMemOptions::default()
        },
    )?))
}

/// Why there is no Verilator model in this build.
#[cfg(not(feature = "rtl"))]
pub fn rtl_device(
    _cfg: &AccelConfig,
    _region: MemRegion,
) -> Result<std::result::Result<std::convert::Infallible, String>> {
    Ok(Err(
        "not run: this caq was built without the `rtl` feature (cargo run --release -p caq-host \
         --features rtl)"
            .into(),
    ))
}
