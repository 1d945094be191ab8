//! A fully connected layer (MNIST LeNet fc1's shape, K = 512 -> 64) on the RTL at batch 1, 8 and
//! 32 and plain INT8/4/2 weights: PERF_CYCLES, the array's busy cycles and utilization beside the
//! two bounds: the compute (one plane-step per chunk, plane and input: batch · tiles · ⌈K/C⌉ · P)
//! and the bandwidth (every weight plane of the layer read once, P · out_c · ⌈K/64⌉ words at one bus
//! beat per cycle, plus the batch's inputs). Every output is checked against the golden kernel, and
//! the timing model's estimate is printed beside PERF_CYCLES.
//!
//! `CAQ_SIM_CONFIG=configs/pynq-z2.toml cargo run --release -p caq-sim --features verilator
//! --example fc_batch`

use caq_model::requant::Requant;
use caq_sim::layer::{self, Alloc};
use caq_sim::rtl;
use caq_sim::{AxiMemOptions, LayerJob, LayerOp, RtlDevice, TimingModel, WeightGroup};
use caq_spec::{CoreShape, Device, DeviceAddr, IrqWait};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

const K: usize = 512;
const O: usize = 64;

fn job(bits: u8, batch: usize, rng: &mut ChaCha8Rng) -> LayerJob {
    let lim = 1i32 << (bits - 1);
    LayerJob {
        op: LayerOp::Dense { in_c: K, batch },
        groups: vec![WeightGroup {
            bits,
            shift: 0,
            codes: Array2::from_shape_fn((O, K), |_| rng.random_range(-lim..lim)),
        }],
        active: 1,
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
        input: (0..K * batch).map(|_| rng.random_range(0..=255)).collect(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cfg = rtl::default_config()?;
    let shape = CoreShape::of(&cfg);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut dev = RtlDevice::new(&cfg, 1, AxiMemOptions::default())?;
    let mem = dev.memory();
    println!(
        "config {} ({} x {} array, {}-bit bus), FC layer K = {K} -> {O}, AXI memory without stalls",
        cfg.name, cfg.array.rows, cfg.array.cols, cfg.axi.data_width
    );
    println!(
        "{:>5} {:>5} {:>8} {:>8} {:>7} {:>13} {:>15} {:>9} {:>8}",
        "bits",
        "batch",
        "cycles",
        "busy",
        "util %",
        "compute bound",
        "bandwidth bound",
        "estimate",
        "est err"
    );
    for bits in [8u8, 4, 2] {
        for batch in [1usize, 8, 32] {
            let j = job(bits, batch, &mut rng);
            let mut alloc = Alloc::new(DeviceAddr(mem.base.0 + 4096), mem.end());
            let placed = j.place(&mut dev, &mut alloc)?;
            let run = layer::run_list(&mut dev, mem.base, &[placed.desc], Duration::from_secs(5))?;
            if run.irq != IrqWait::Fired || !run.done() {
                return Err(format!(
                    "{bits}-bit batch {batch}: {:?}, STATUS {:#x}",
                    run.irq, run.status
                )
                .into());
            }
            let out = layer::read_output(&mut dev, &placed)?;
            if out[..placed.output_len] != placed.image(&j.golden()?)[..] {
                return Err(format!("{bits}-bit batch {batch}: output differs from golden").into());
            }
            let s = shape.schedule(&placed.desc)?;
            let compute = s.tiles * s.items * s.chunks * s.planes;
            let bus_words = u64::from(shape.bus_words);
            let weight_words = s.planes * O as u64 * s.wpr;
            let input_words = s.items * s.in_stride / 8;
            let bandwidth = (weight_words + input_words).div_ceil(bus_words);
            let est = TimingModel::default()
                .estimate(&shape, &[placed.desc])
                .cycles;
            println!(
                "{bits:>5} {batch:>5} {:>8} {:>8} {:>7.1} {compute:>13} {bandwidth:>15} {est:>9} {:>+7.1}%",
                run.perf.cycles,
                run.perf.busy_cycles,
                100.0 * run.perf.busy_cycles as f64 / run.perf.cycles as f64,
                100.0 * (est as f64 / run.perf.cycles as f64 - 1.0)
            );
        }
    }
    println!("all outputs equal the golden kernel's");
    Ok(())
}
