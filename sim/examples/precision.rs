//! Cycles of one fully connected layer (MNIST LeNet fc1's shape, K = 512 -> 64) on the RTL at
//! each precision: every level of a nested 8 ⊃ 6 ⊃ 4 ⊃ 2 model and plain INT8/6/4/2 layers. Prints
//! compute (busy) cycles, total cycles (PERF_CYCLES), bytes read, simulation speed, and checks
//! every output against the golden kernel.
//!
//! `cargo run --release -p caq-sim --example precision` (sim-small model), or with
//! `CAQ_SIM_CONFIG=configs/pynq-z2.toml` for the PYNQ-Z2 array.

use caq_model::nested;
use caq_model::quant::{QuantWeights, Rounding};
use caq_model::requant::Requant;
use caq_sim::layer::{self, Alloc};
use caq_sim::rtl;
use caq_sim::{AxiMemOptions, LayerJob, LayerOp, RtlDevice, WeightGroup};
use caq_spec::{Device, DeviceAddr, IrqWait};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::{Duration, Instant};

const K: usize = 512;
const O: usize = 64;

fn job(groups: Vec<WeightGroup>, active: usize, rng: &mut ChaCha8Rng) -> LayerJob {
    LayerJob {
        op: LayerOp::Dense { in_c: K, batch: 1 },
        groups,
        active,
        regions: None,
        bias: (0..O).map(|_| rng.random_range(-5000..5000)).collect(),
        requant: (0..O)
            .map(|_| Requant::from_real(rng.random_range(1e-4..1e-3)).unwrap())
            .collect(),
        relu: true,
        in_signed: false,
        in_bits: 8,
        out_signed: false,
        out_bits: 8,
        input: (0..K).map(|_| rng.random_range(0..=255)).collect(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = rtl::default_config()?;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let full = QuantWeights {
        bits: 8,
        codes: Array2::from_shape_fn((O, K), |_| rng.random_range(-128..128)),
        channel_scale: vec![1.0; O],
        groups: None,
    };
    let chain = [8u8, 6, 4, 2];
    let nw = nested::nest(&full, &chain, 1, Rounding::Adaptive)?;
    let nested_groups: Vec<WeightGroup> = nw
        .groups
        .iter()
        .map(|g| WeightGroup {
            bits: g.bits,
            shift: g.shift,
            codes: g.codes.clone(),
        })
        .collect();
    let mut cases: Vec<(String, LayerJob)> = Vec::new();
    for &b in &chain {
        let active = nw.active_groups(b)?;
        cases.push((
            format!("nested 8⊃6⊃4⊃2 @{b}-bit"),
            job(nested_groups.clone(), active, &mut rng),
        ));
    }
    for b in [8u8, 6, 4, 2] {
        let lim = 1i32 << (b - 1);
        let g = WeightGroup {
            bits: b,
            shift: 0,
            codes: Array2::from_shape_fn((O, K), |_| rng.random_range(-lim..lim)),
        };
        cases.push((format!("plain INT{b}"), job(vec![g], 1, &mut rng)));
    }
    println!(
        "config {} ({} x {} array), FC layer K = {K} -> {O}, AXI memory without stalls (default latencies)",
        cfg.name, cfg.array.rows, cfg.array.cols
    );
    let mut dev = RtlDevice::new(&cfg, 1, AxiMemOptions::default())?;
    let mem = dev.memory();
    let mut rows = Vec::new();
    for (name, j) in &cases {
        // The descriptor at the start of memory, the job's buffers after it.
        let mut alloc = Alloc::new(DeviceAddr(mem.base.0 + 4096), mem.end());
        let placed = j.place(&mut dev, &mut alloc)?;
        let (t, c0) = (Instant::now(), dev.cycles());
        let run = layer::run_list(&mut dev, mem.base, &[placed.desc], Duration::from_secs(1))?;
        let speed = (dev.cycles() - c0) as f64 / t.elapsed().as_secs_f64();
        if run.irq != IrqWait::Fired || !run.done() {
            return Err(format!("{name}: {:?}, STATUS {:#x}", run.irq, run.status).into());
        }
        if layer::read_output(&mut dev, &placed)?[..O] != j.golden()?[..] {
            return Err(format!("{name}: output differs from the golden kernel").into());
        }
        let planes: u64 = j.groups[..j.active].iter().map(|g| u64::from(g.bits)).sum();
        rows.push((
            name.clone(),
            planes,
            run.perf.busy_cycles,
            run.perf.cycles,
            run.perf.bytes_rd,
            speed,
        ));
    }
    let int8 = rows
        .iter()
        .find(|r| r.0 == "plain INT8")
        .map(|r| (r.2, r.3))
        .ok_or("no INT8 row")?;
    println!(
        "{:<26} {:>6} {:>12} {:>8} {:>12} {:>8} {:>10} {:>10}",
        "weights",
        "planes",
        "busy cycles",
        "vs INT8",
        "total cycles",
        "vs INT8",
        "bytes read",
        "Mcycles/s"
    );
    for (name, planes, busy, total, bytes, speed) in &rows {
        println!(
            "{name:<26} {planes:>6} {busy:>12} {:>8.3} {total:>12} {:>8.3} {bytes:>10} {:>10.2}",
            *busy as f64 / int8.0 as f64,
            *total as f64 / int8.1 as f64,
            speed / 1e6
        );
    }
    println!("all outputs equal the golden kernel's");
    Ok(())
}
