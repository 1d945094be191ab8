//! The device suite (`common/suite.rs`) on every backend: [`FuncDevice`] on every shipped config,
//! `caq_sim::RtlDevice` (feature `verilator`) on the config `CAQ_SIM_CONFIG` names (default
//! sim-small), with random memory stalls, Conv2d layers gated by [`RTL_RUNS_CONV`].
//!
//! Seeds are printed; `CAQ_SEED=<n>` replays one.

use caq_sim::{LayerJob, SimError, TimingModel};
use caq_spec::descriptor::LayerDescriptor;
use caq_spec::regmap;
use caq_spec::{CoreShape, Device, IrqWait};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod common;
use common::seed;
#[path = "common/suite.rs"]
mod suite;
use suite::*;

#[test]
fn func_device_passes_the_suite_on_every_shipped_config() {
    let seed = seed("func suite");
    for name in ["sim-small", "pynq-z2", "zcu104"] {
        let cfg = config(name);
        let mut dev = func_device(&cfg);
        suite(
            &mut dev,
            &cfg,
            seed,
            SuiteOptions {
                rounds: 25,
                conv: true,
            },
        );
    }
}

#[test]
fn func_device_cycles_are_the_timing_models_estimate() {
    let seed = seed("func timing");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let cfg = config("sim-small");
    let mut dev = func_device(&cfg);
    let jobs: Vec<LayerJob> = (0..3).map(|_| random_layer(&mut rng, &cfg, true)).collect();
    let run = run_ok(&mut dev, &jobs, &cfg, "timing");
    let (_, placed) = place_all(&mut dev, &jobs);
    let descs: Vec<LayerDescriptor> = placed.iter().map(|p| p.desc).collect();
    let estimate = dev.timing().estimate(&CoreShape::of(&cfg), &descs);
    assert_eq!(run.perf, estimate);
    assert!(run.perf.stall_cycles < run.perf.cycles);
}

#[test]
fn a_timeout_is_reported_not_hidden() {
    // An error run with IRQ_EN clear leaves the line low: wait_irq must say so.
    let cfg = config("sim-small");
    let mut dev = func_device(&cfg);
    dev.write_reg(regmap::CTRL.offset, regmap::CTRL_START.mask())
        .unwrap_or_else(|e: SimError| panic!("{e}"));
    assert_eq!(dev.wait_irq(TIMEOUT).ok(), Some(IrqWait::TimedOut));
}

/// The RTL runs Conv2d layers (flip to keep the RTL suite on Dense while its conv path changes).
#[cfg(feature = "verilator")]
const RTL_RUNS_CONV: bool = true;

#[cfg(feature = "verilator")]
#[test]
fn rtl_device_passes_the_suite() {
    use caq_sim::{AxiMemOptions, RtlDevice};
    let seed = seed("rtl suite");
    let cfg = caq_sim::rtl::default_config().unwrap_or_else(|e| panic!("{e}"));
    let options = AxiMemOptions {
        seed,
        stall_percent: 20,
        ..AxiMemOptions::default()
    };
    let mut dev = RtlDevice::new(&cfg, seed, options).unwrap_or_else(|e| panic!("{e}"));
    suite(
        &mut dev,
        &cfg,
        seed,
        SuiteOptions {
            rounds: 20,
            conv: RTL_RUNS_CONV,
        },
    );
}

/// The model is built with `--x-assign unique --x-initial unique`: every model seed starts from
/// different power-up values. After reset, the same list must give the golden outputs and the
/// same STATUS and counters under every seed.
#[cfg(feature = "verilator")]
#[test]
fn rtl_results_do_not_depend_on_power_up_values() {
    use caq_sim::{AxiMemOptions, RtlDevice};
    let seed = seed("power-up values");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let cfg = caq_sim::rtl::default_config().unwrap_or_else(|e| panic!("{e}"));
    let jobs: Vec<LayerJob> = (0..3)
        .map(|_| random_layer(&mut rng, &cfg, RTL_RUNS_CONV))
        .collect();
    let mut first = None;
    for x_seed in [seed, seed ^ 0xdead_beef, seed.wrapping_add(12345)] {
        let options = AxiMemOptions {
            seed,
            ..AxiMemOptions::default()
        };
        let mut dev = RtlDevice::new(&cfg, x_seed, options).unwrap_or_else(|e| panic!("{e}"));
        let run = run_ok(&mut dev, &jobs, &cfg, &format!("model seed {x_seed}"));
        assert_eq!(*first.get_or_insert(run), run, "model seed {x_seed}");
    }
}

/// The timing model's estimate against the RTL's PERF_CYCLES over random lists on a memory
/// without stalls (the model's assumption): prints each list and the mean and worst error.
/// `cargo test -p caq-sim --features verilator --test devices calibrate -- --ignored --nocapture`
/// (`CAQ_SIM_CONFIG` for another config, `CAQ_SEED` to replay).
#[cfg(feature = "verilator")]
#[test]
#[ignore = "a measurement, not a check"]
fn calibrate_the_timing_model_against_the_rtl() {
    use caq_sim::{AxiMemOptions, RtlDevice};
    let seed = seed("calibrate");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let cfg = caq_sim::rtl::default_config().unwrap_or_else(|e| panic!("{e}"));
    let mut dev =
        RtlDevice::new(&cfg, seed, AxiMemOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let rounds: usize = std::env::var("CAQ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let mut errors = Vec::new();
    for round in 0..rounds {
        let jobs: Vec<LayerJob> = (0..rng.random_range(1..=2))
            .map(|_| random_layer(&mut rng, &cfg, RTL_RUNS_CONV))
            .collect();
        let run = run_ok(&mut dev, &jobs, &cfg, &format!("calibration {round}"));
        let (_, placed) = place_all(&mut dev, &jobs);
        let descs: Vec<LayerDescriptor> = placed.iter().map(|p| p.desc).collect();
        let est = TimingModel::default().estimate(&CoreShape::of(&cfg), &descs);
        let err = 100.0 * (est.cycles as f64 / run.perf.cycles as f64 - 1.0);
        for j in &jobs {
            println!("    {}", suite::describe(j));
        }
        errors.push(err);
    }
    let worst = errors.iter().fold(0f64, |m, e| m.max(e.abs()));
    let mean = errors.iter().map(|e| e.abs()).sum::<f64>() / errors.len() as f64;
    println!(
        "{}: mean |error| {mean:.1}%, worst {worst:.1}% over {rounds} lists",
        cfg.name
    );
}
