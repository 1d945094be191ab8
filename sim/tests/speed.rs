//! Simulation speed of the model of the simulated config, and the time to build it or load it from
//! the model cache (`caq_sim::rtl`). Prints, never asserts a rate:
//! `cargo test -p caq-sim --release -- --nocapture speed` (with `CAQ_SIM_CONFIG=...` for another
//! config).

use std::time::Instant;

use caq_sim::rtl;
use caq_sim::{AxiLite, AxiLiteOptions};
use caq_spec::regmap;

fn rate(cycles: u64, seconds: f64) -> String {
    format!("{:.2} M cycles/s", cycles as f64 / seconds / 1e6)
}

/// Runs `step` (which simulates `chunk` cycles) until `budget_s` seconds have passed; returns the
/// cycles simulated and the seconds taken. Time-bounded so that a large config stays quick.
fn measure(chunk: u64, budget_s: f64, mut step: impl FnMut() -> u64) -> (u64, f64) {
    let t = Instant::now();
    let mut cycles = 0;
    while t.elapsed().as_secs_f64() < budget_s {
        for _ in 0..chunk {
            cycles += step();
        }
    }
    (cycles, t.elapsed().as_secs_f64())
}

#[test]
fn speed_of_tick_n_tick_and_register_reads() {
    let cfg = rtl::default_config().unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    let lib = rtl::top_library(&cfg).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "model of {}: built or loaded from the cache in {:.3} s ({})",
        cfg.name,
        t.elapsed().as_secs_f64(),
        lib.path().display()
    );
    let mut m = lib.instantiate(1);
    m.reset(2);
    let (n, tick_n) = measure(1, 0.5, || {
        m.tick_n(1000);
        1000
    });
    let (n_single, tick) = measure(1000, 0.5, || {
        m.tick();
        1
    });
    let mut bus = AxiLite::new(&mut m, AxiLiteOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut reads = 0u32;
    let (axi_cycles, axi) = measure(100, 0.5, || {
        let start = bus.model().cycles();
        bus.read(&regmap::ID).expect("ID");
        reads += 1;
        bus.model().cycles() - start
    });

    println!(
        "speed, config {} ({}), idle core: tick_n {} | tick() from Rust {} | AXI4-Lite reads \
         {:.0}/s ({})",
        cfg.name,
        lib.verilator_version(),
        rate(n, tick_n),
        rate(n_single, tick),
        f64::from(reads) / axi,
        rate(axi_cycles, axi),
    );
}
