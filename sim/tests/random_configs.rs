//! Random valid configs (`caq_spec::testing::random_config`) down the verification ladder: for each,
//! `caq_hdl::generate` → `caq_hdl::lint` (`verilator --lint-only -Wall` clean) → the Verilator
//! model built or loaded from the shared cache → a short co-simulation with the device suite
//! (`common/suite.rs`): random Dense/Conv2d lists on `RtlDevice` with memory stalls and on
//! `FuncDevice`, both byte-equal to the golden kernels (so to each other), and the timing model's
//! estimate (FuncDevice's cycles) against the RTL's PERF_CYCLES.
//!
//! `CAQ_RANDOM_CONFIGS=<n>` sets how many configs (default [`DEFAULT_CONFIGS`]); every config's
//! seed and TOML are printed, and `CAQ_SEED=<seed>` replays that one config. Every config runs even
//! after one fails; the summary lists each with its outcome.
//!
//! The RTL runs the suite twice: with 20 % random stalls on every AXI channel (the outputs and the
//! protocol), then on a memory without stalls, where the timing model's estimate (its assumption)
//! is compared with PERF_CYCLES; the summary prints the mean and worst error per config.
//!
//! Found and fixed with it: RTL that failed lint at act_bits < 8, 8 lanes on a 128-bit bus
//! (the wide weight-bank select, every second Dense input word dropped), group_size 0 and
//! addr_width 64 (zero-width selects), one-entry activation banks, region counts for a K wider
//! than the counter, a fetch router index narrower than the region-multiplier table. Seeds of
//! configs that failed are kept in [`REGRESSION_SEEDS`] and generated and linted on every run.
//!
//! Run: `cargo test -p caq-sim --features verilator --test random_configs -- --nocapture`.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use caq_sim::rtl;
use caq_sim::{AxiMemOptions, FuncDevice, RtlDevice};
use caq_spec::testing::{SplitMix64, random_config};
use caq_spec::{AccelConfig, DeviceAddr, MemRegion};

mod common;
#[path = "common/suite.rs"]
mod suite;
use suite::{CYCLES, MEM_BASE, MEM_BYTES, SuiteOptions};

/// Configs per run unless `CAQ_RANDOM_CONFIGS` says otherwise (each builds a Verilator model: 10 s
/// to a minute on two cores).
const DEFAULT_CONFIGS: usize = 2;

/// Seeds of random configs that once failed, each replayed through generate and lint on every
/// run (the co-simulation of each is what `CAQ_SEED` replays): the bug it found stays fixed
/// even where the random draw never reaches that corner again.
const REGRESSION_SEEDS: &[(u64, &str)] = &[
    (
        1_805_272_766_052_592_922,
        "the fetch router's buffer index narrower than the region-multiplier table's \
         (16×8 array, 1-KiB activation banks, regions of 8: verilator SELRANGE in caq_fetch)",
    ),
    (
        4_575_587_848_925_467_800,
        "a weight-buffer index wider than the 16-bit words-per-row count it steps by (2582-KiB \
         weight buffer: verilator SELRANGE in caq_fetch and caq_exec)",
    ),
];

/// How one config fared.
#[derive(Debug)]
enum Outcome {
    Passed { mean_err: f64, worst_err: f64 },
    Failed { step: &'static str, why: String },
}

/// The config seeds of this run: `CAQ_SEED` alone, else `CAQ_RANDOM_CONFIGS` seeds drawn from a
/// printed random base.
fn config_seeds() -> Vec<u64> {
    if std::env::var_os("CAQ_SEED").is_some() {
        return vec![common::seed("random config")];
    }
    let n = std::env::var("CAQ_RANDOM_CONFIGS")
        .ok()
        .map(|v| {
            v.trim()
                .parse::<usize>()
                .unwrap_or_else(|e| panic!("CAQ_RANDOM_CONFIGS={v}: {e}"))
        })
        .unwrap_or(DEFAULT_CONFIGS);
    let mut base = SplitMix64::new(rand::random());
    (0..n).map(|_| base.next_u64()).collect()
}

/// The panic message of a failed step.
fn message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// Runs one config down the ladder; `step` names the step in progress, for a panic.
fn one_config(seed: u64, cfg: &AccelConfig, step: &Cell<&'static str>) -> Outcome {
    let fail = |step, why: String| Outcome::Failed { step, why };
    step.set("generate");
    let design = match caq_hdl::generate(cfg) {
        Ok(d) => d,
        Err(e) => return fail("generate", e.to_string()),
    };
    step.set("lint");
    match caq_hdl::lint(&design) {
        Ok(r) if r.is_clean() => {}
        Ok(r) => return fail("lint", r.warnings.join("\n")),
        Err(e) => return fail("lint", e.to_string()),
    }
    step.set("build");
    let t = Instant::now();
    let lib = match rtl::top_library(cfg) {
        Ok(lib) => lib,
        Err(e) => return fail("build", e.to_string()),
    };
    println!(
        "config {seed:#018x}: model ready in {:.1} s ({})",
        t.elapsed().as_secs_f64(),
        lib.path().display()
    );
    let opts = SuiteOptions {
        rounds: 3,
        conv: true,
    };
    let mem = MemRegion {
        base: DeviceAddr(MEM_BASE),
        len: MEM_BYTES,
    };
    step.set("FuncDevice suite");
    let func = catch_unwind(|| {
        let mut dev = FuncDevice::new(cfg, mem).unwrap_or_else(|e| panic!("{e}"));
        suite::random_lists(&mut dev, cfg, seed, opts);
    });
    if let Err(e) = func {
        return fail("FuncDevice suite", message(&*e));
    }
    step.set("RtlDevice suite");
    CYCLES.with(|c| c.borrow_mut().clear());
    let rtl_run = catch_unwind(AssertUnwindSafe(|| {
        let options = AxiMemOptions {
            seed,
            stall_percent: 20,
            ..AxiMemOptions::default()
        };
        let mut dev =
            RtlDevice::with_library(lib, cfg, seed, options).unwrap_or_else(|e| panic!("{e}"));
        suite::random_lists(&mut dev, cfg, seed, opts);
        suite::extreme_accumulators(&mut dev, cfg);
    }));
    if let Err(e) = rtl_run {
        return fail("RtlDevice suite", message(&*e));
    }
    // The timing model assumes a memory that never stalls: measure it on one.
    step.set("RtlDevice without stalls");
    CYCLES.with(|c| c.borrow_mut().clear());
    let timed = catch_unwind(AssertUnwindSafe(|| {
        let mut dev = RtlDevice::with_library(lib, cfg, seed, AxiMemOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        suite::random_lists(&mut dev, cfg, seed ^ 1, opts);
    }));
    if let Err(e) = timed {
        return fail("RtlDevice without stalls", message(&*e));
    }
    let errors: Vec<f64> = CYCLES.with(|c| {
        c.borrow()
            .iter()
            .map(|&(est, rtl)| 100.0 * (est as f64 / rtl.max(1) as f64 - 1.0))
            .collect()
    });
    let mean_err = errors.iter().map(|e| e.abs()).sum::<f64>() / errors.len().max(1) as f64;
    let worst_err = errors.iter().fold(0f64, |m, e| m.max(e.abs()));
    Outcome::Passed {
        mean_err,
        worst_err,
    }
}

fn shape(cfg: &AccelConfig) -> String {
    format!(
        "{} {}x{} w{:?} a{} g{} gs{} buf {}/{}/{} KiB, bus {} burst {} addr {} id {} out {}, \
         max_k {} max_dim {} max_desc {}",
        cfg.board.as_str(),
        cfg.array.rows,
        cfg.array.cols,
        cfg.array.weight_bits,
        cfg.array.act_bits,
        cfg.array.max_plane_groups,
        cfg.array.group_size,
        cfg.memory.weight_buf_kib,
        cfg.memory.act_buf_kib,
        cfg.memory.acc_buf_kib,
        cfg.axi.data_width,
        cfg.axi.max_burst,
        cfg.axi.addr_width,
        cfg.axi.id_width,
        cfg.axi.max_outstanding_reads,
        cfg.limits.max_k,
        cfg.limits.max_dim,
        cfg.limits.max_descriptors,
    )
}

#[test]
fn random_valid_configs_generate_lint_build_and_cosimulate() {
    let mut results = Vec::new();
    for seed in config_seeds() {
        let cfg = random_config(seed);
        println!(
            "=== config seed {seed} (CAQ_SEED={seed} replays it): {}\n{}",
            shape(&cfg),
            toml::to_string(&cfg).unwrap_or_default()
        );
        let t = Instant::now();
        let step = Cell::new("start");
        let outcome = catch_unwind(AssertUnwindSafe(|| one_config(seed, &cfg, &step)))
            .unwrap_or_else(|e| Outcome::Failed {
                step: step.get(),
                why: format!("panicked: {}", message(&*e)),
            });
        println!(
            "config seed {seed}: {outcome:?} in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        results.push((seed, shape(&cfg), outcome));
    }
    println!("\nsummary:");
    for (seed, shape, outcome) in &results {
        match outcome {
            Outcome::Passed {
                mean_err,
                worst_err,
            } => println!(
                "  {seed:>20} pass  {shape}; timing model vs PERF_CYCLES: mean |error| \
                 {mean_err:.1}%, worst {worst_err:.1}%"
            ),
            Outcome::Failed { step, why } => {
                let first = why.lines().next().unwrap_or("");
                println!("  {seed:>20} FAIL  {shape}; {step}: {first}");
            }
        }
    }
    let passed: Vec<(f64, f64)> = results
        .iter()
        .filter_map(|(_, _, o)| match o {
            Outcome::Passed {
                mean_err,
                worst_err,
            } => Some((*mean_err, *worst_err)),
            Outcome::Failed { .. } => None,
        })
        .collect();
    if !passed.is_empty() {
        let mean = passed.iter().map(|p| p.0).sum::<f64>() / passed.len() as f64;
        let worst = passed.iter().fold(0f64, |m, p| m.max(p.1));
        println!(
            "timing model over {} configs: mean |error| {mean:.1}% (mean of the configs' means), \
             worst {worst:.1}%",
            passed.len()
        );
    }
    let failed: Vec<u64> = results
        .iter()
        .filter(|(_, _, o)| matches!(o, Outcome::Failed { .. }))
        .map(|(s, _, _)| *s)
        .collect();
    assert!(failed.is_empty(), "configs failed: {failed:?} (see above)");
}

#[test]
fn configs_that_once_failed_generate_and_lint_clean() {
    for &(seed, what) in REGRESSION_SEEDS {
        let cfg = random_config(seed);
        let design = caq_hdl::generate(&cfg)
            .unwrap_or_else(|e| panic!("config seed {seed} ({what}): generate: {e}"));
        let report = caq_hdl::lint(&design)
            .unwrap_or_else(|e| panic!("config seed {seed} ({what}): lint: {e}"));
        assert!(
            report.is_clean(),
            "config seed {seed} ({what}):\n{}",
            report.warnings.join("\n")
        );
    }
}
