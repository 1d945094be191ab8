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

/// The timing model's coefficients fitted to the RTL's PERF_CYCLES over random lists (least
/// squares; the cost is linear in the coefficients, so each one's count is the estimate of a
/// model with only that coefficient set). Prints the fit and the estimate error before and
/// after: `cargo test -p caq-sim --test devices calibrate -- --ignored --nocapture`.
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
    let mut samples: Vec<(Vec<LayerDescriptor>, u64)> = Vec::new();
    for round in 0..60 {
        let jobs: Vec<LayerJob> = (0..rng.random_range(1..=2))
            .map(|_| random_layer(&mut rng, &cfg, RTL_RUNS_CONV))
            .collect();
        let run = run_ok(&mut dev, &jobs, &cfg, &format!("calibration {round}"));
        let (_, placed) = place_all(&mut dev, &jobs);
        samples.push((placed.iter().map(|p| p.desc).collect(), run.perf.cycles));
    }
    let zero = TimingModel {
        start: 0,
        read_latency: 0,
        read_word: 0,
        write_latency: 0,
        write_word: 0,
        write_response: 0,
        descriptor: 0,
        pixel: 0,
        gather_row: 0,
        drain_row: 0,
        drain_latency: 0,
        next: 0,
    };
    // One coefficient per column; collinear ones (write_response with write_latency,
    // drain_latency with pixel, next with descriptor) are folded into the first.
    let units: Vec<(&str, TimingModel)> = vec![
        ("start", TimingModel { start: 1, ..zero }),
        (
            "read_latency",
            TimingModel {
                read_latency: 1,
                ..zero
            },
        ),
        (
            "read_word",
            TimingModel {
                read_word: 1,
                ..zero
            },
        ),
        (
            "write_latency",
            TimingModel {
                write_latency: 1,
                ..zero
            },
        ),
        (
            "write_word",
            TimingModel {
                write_word: 1,
                ..zero
            },
        ),
        (
            "descriptor",
            TimingModel {
                descriptor: 1,
                ..zero
            },
        ),
        ("pixel", TimingModel { pixel: 1, ..zero }),
        (
            "gather_row",
            TimingModel {
                gather_row: 1,
                ..zero
            },
        ),
        (
            "drain_row",
            TimingModel {
                drain_row: 1,
                ..zero
            },
        ),
    ];
    let n = units.len();
    let mut ata = vec![vec![0f64; n]; n];
    let mut atb = vec![0f64; n];
    for (descs, cycles) in &samples {
        let fixed = zero.estimate(&CoreShape::of(&cfg), descs).cycles as f64;
        let x: Vec<f64> = units
            .iter()
            .map(|(_, u)| u.estimate(&CoreShape::of(&cfg), descs).cycles as f64 - fixed)
            .collect();
        for i in 0..n {
            atb[i] += x[i] * (*cycles as f64 - fixed);
            for j in 0..n {
                ata[i][j] += x[i] * x[j];
            }
        }
    }
    // Gaussian elimination with partial pivoting; a column with no signal keeps 0.
    for c in 0..n {
        let p = (c..n)
            .max_by(|&a, &b| ata[a][c].abs().total_cmp(&ata[b][c].abs()))
            .expect("rows");
        ata.swap(c, p);
        atb.swap(c, p);
        if ata[c][c].abs() < 1e-9 {
            continue;
        }
        let (pivot, pivot_b) = (ata[c].clone(), atb[c]);
        for (r, (row, b)) in ata.iter_mut().zip(atb.iter_mut()).enumerate() {
            if r != c {
                let f = row[c] / pivot[c];
                for (x, p) in row.iter_mut().zip(&pivot).skip(c) {
                    *x -= f * p;
                }
                *b -= f * pivot_b;
            }
        }
    }
    let fit: Vec<f64> = (0..n)
        .map(|i| {
            if ata[i][i].abs() < 1e-9 {
                0.0
            } else {
                atb[i] / ata[i][i]
            }
        })
        .collect();
    for ((name, _), v) in units.iter().zip(&fit) {
        println!("fit {name} = {v:.2}");
    }
    let fitted = TimingModel {
        start: fit[0].round().max(0.0) as u64,
        read_latency: fit[1].round().max(0.0) as u64,
        read_word: fit[2].round().max(0.0) as u64,
        write_latency: fit[3].round().max(0.0) as u64,
        write_word: fit[4].round().max(0.0) as u64,
        descriptor: fit[5].round().max(0.0) as u64,
        pixel: fit[6].round().max(0.0) as u64,
        gather_row: fit[7].round().max(0.0) as u64,
        drain_row: fit[8].round().max(0.0) as u64,
        ..zero
    };
    println!("rounded: {fitted:?}");
    for (name, model) in [("default", TimingModel::default()), ("fitted", fitted)] {
        let errors: Vec<f64> = samples
            .iter()
            .map(|(descs, cycles)| {
                100.0 * (model.estimate(&CoreShape::of(&cfg), descs).cycles as f64 / *cycles as f64 - 1.0)
            })
            .collect();
        let worst = errors.iter().fold(0f64, |m, e| m.max(e.abs()));
        let mean = errors.iter().map(|e| e.abs()).sum::<f64>() / errors.len() as f64;
        println!("{name}: mean |error| {mean:.1}%, worst {worst:.1}%");
    }
}
