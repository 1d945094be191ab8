//! The device suite: one randomized suite, run unchanged on every backend of `caq_spec::Device`
//! and sized from the config it runs on (`caq_spec::CoreShape`, `limits`): random lists of Dense
//! and Conv2d layers whose output bytes must equal the golden kernels', the largest accumulators
//! the hardware can meet, the performance counters the device semantics fix (plane-steps, bytes
//! moved), and every error a run can stop on — each with its code and descriptor index, no hang,
//! and a correct run after SOFT_RESET.
//!
//! Included by `tests/devices.rs` (every backend, the shipped configs) and `tests/random_configs.rs`
//! (random valid configs on the RTL).

#![allow(
    dead_code,
    reason = "each including test binary uses a part of the suite"
)]

use std::time::Duration;

use caq_model::graph::Padding;
use caq_model::kernels::ConvGeom;
use caq_model::nested;
use caq_model::quant::{QuantWeights, Rounding};
use caq_model::requant::Requant;
use caq_sim::func::plan::{self, Step};
use caq_sim::layer::{self, Alloc, Placed, RunSpec};
use caq_sim::{
    FaultDir, FuncDevice, InjectFaults, LayerJob, LayerOp, Resp, Run, TimingModel, WeightGroup,
};
use caq_spec::CoreShape;
use caq_spec::descriptor::{LayerDescriptor, POOL_WINDOWS, Window};
use caq_spec::regmap::{self, ErrorCode};
use caq_spec::{AccelConfig, Caps, Device, DeviceAddr, IrqWait, MemRegion};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Device time a run may take before the suite calls it a hang.
pub const TIMEOUT: Duration = Duration::from_millis(50);
thread_local! {
    /// (timing model estimate, PERF_CYCLES) of every run `run_ok` made on this thread.
    pub static CYCLES: std::cell::RefCell<Vec<(u64, u64)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Where the functional model's memory starts, and its size.
pub const MEM_BASE: u64 = 0x1000_0000;
pub const MEM_BYTES: u64 = 4 << 20;

pub fn config(name: &str) -> AccelConfig {
    let path = format!("{}/../configs/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    AccelConfig::load(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn func_device(cfg: &AccelConfig) -> FuncDevice {
    let mem = MemRegion {
        base: DeviceAddr(MEM_BASE),
        len: MEM_BYTES,
    };
    FuncDevice::new(cfg, mem).unwrap_or_else(|e| panic!("{e}"))
}

/// What the suite may ask of a backend.
#[derive(Clone, Copy, Debug)]
pub struct SuiteOptions {
    /// Random lists and their layers.
    pub rounds: usize,
    /// Include Conv2d layers (the RTL's conv path is in progress).
    pub conv: bool,
}

/// Plane groups and the active count: a nested chain of 2..=3 groups cut from random full-bit
/// codes at a random level, or one plain group of any supported width.
pub fn random_weights(
    rng: &mut ChaCha8Rng,
    cfg: &AccelConfig,
    o: usize,
    k: usize,
) -> (Vec<WeightGroup>, usize) {
    let supported: Vec<u8> = cfg.supported_weight_bits().map(|b| b.get()).collect();
    let widest = *supported.iter().max().expect("a weight width");
    let nested_ok = (3..=widest).all(|b| supported.contains(&b)) && widest >= 3;
    if nested_ok && rng.random_bool(0.5) {
        let n = rng.random_range(3..=widest);
        let mut chain = vec![n];
        let groups = rng.random_range(2..=3usize);
        while chain.len() < groups && *chain.last().expect("n") > 2 {
            let top = *chain.last().expect("n");
            chain.push(rng.random_range(2..top));
        }
        let lim = 1i32 << (n - 1);
        let full = QuantWeights {
            bits: n,
            codes: Array2::from_shape_fn((o, k), |_| rng.random_range(-lim..lim)),
            channel_scale: vec![1.0; o],
            groups: None,
        };
        let nw = nested::nest(&full, &chain, 1, Rounding::Nearest).expect("valid chain");
        let level = chain[rng.random_range(0..chain.len())];
        let active = nw.active_groups(level).expect("a level of the chain");
        let groups = nw
            .groups
            .into_iter()
            .map(|g| WeightGroup {
                bits: g.bits,
                shift: g.shift,
                codes: g.codes,
            })
            .collect();
        (groups, active)
    } else {
        let bits = supported[rng.random_range(0..supported.len())];
        let lim = 1i32 << (bits - 1);
        let group = WeightGroup {
            bits,
            shift: rng.random_range(0..=widest - bits),
            codes: Array2::from_shape_fn((o, k), |_| rng.random_range(-lim..lim)),
        };
        (vec![group], 1)
    }
}

/// The largest layer the suite draws on a config: K within what the buffers and `limits.max_k`
/// take at the narrowest supported weight, every dimension within `limits.max_dim`.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub k: usize,
    pub dim: usize,
    /// The core averages a Conv2d's outputs on its result path.
    pub global_pool: bool,
}

impl Limits {
    pub fn of(cfg: &AccelConfig) -> Limits {
        let s = CoreShape::of(cfg);
        let narrowest = cfg
            .supported_weight_bits()
            .map(|b| u32::from(b.get()))
            .min()
            .expect("a weight width");
        let k = (64 * (s.wdepth / narrowest))
            .min(s.adepth * s.cols)
            .min(cfg.limits.max_k);
        Limits {
            k: k as usize,
            dim: cfg.limits.max_dim as usize,
            global_pool: s.global_pool,
        }
    }

    /// The longest K whose planes at `bits` fit the weight bank, within the other limits.
    pub fn k_at(self, cfg: &AccelConfig, bits: u32) -> usize {
        let s = CoreShape::of(cfg);
        self.k.min((64 * (s.wdepth / bits)) as usize)
    }
}

pub fn random_op(rng: &mut ChaCha8Rng, conv: bool, lim: Limits) -> LayerOp {
    let k_dim = lim.k.min(lim.dim);
    if !conv || rng.random_bool(0.5) {
        let in_c = if rng.random_bool(0.8) {
            rng.random_range(1..=200.min(k_dim))
        } else {
            rng.random_range(200.min(k_dim)..=600.min(k_dim))
        };
        // Mostly single inputs; sometimes a batch that each loaded weight tile serves.
        let batch = if rng.random_bool(0.75) {
            1
        } else {
            rng.random_range(2..=5)
        };
        return LayerOp::Dense { in_c, batch };
    }
    let small = lim.dim.min(7);
    // Kernel height up to 15 (a DS-CNN's first conv is 10x4), width up to 7.
    let tall = lim.dim.min(if rng.random_bool(0.2) { 15 } else { 7 });
    let kernel: [usize; 2] = [rng.random_range(1..=tall), rng.random_range(1..=small)];
    // Per side: each 0..=7, each axis's two at most its kernel (TensorFlow "same" pads
    // asymmetrically), half of the time the same on every side.
    let uniform = rng.random_bool(0.5);
    let mut side = |k: usize, other: usize| rng.random_range(0..=k.saturating_sub(other).min(7));
    let (top, left) = (side(kernel[0], 0), side(kernel[1], 0));
    let pad = if uniform {
        Padding::uniform(top.min(left).min(kernel[0].min(kernel[1]) / 2))
    } else {
        Padding {
            top,
            left,
            bottom: side(kernel[0], top),
            right: side(kernel[1], left),
        }
    };
    let stride = rng.random_range(1..=2);
    let min_h = kernel[0].saturating_sub(pad.top + pad.bottom).max(1);
    let min_w = kernel[1].saturating_sub(pad.left + pad.right).max(1);
    let in_c = rng.random_range(1..=lim.dim.min(6));
    let in_h = rng.random_range(min_h..=(min_h + 9).min(lim.dim.max(min_h)));
    let in_w = rng.random_range(min_w..=(min_w + 9).min(lim.dim.max(min_w)));
    // Max pooling on the result path a third of the time, with any window the output holds.
    let geom = ConvGeom {
        kernel,
        stride,
        pad,
        groups: 1,
    };
    let fits: Vec<usize> = match geom.out_size(in_h, in_w) {
        Ok((oh, ow)) => POOL_WINDOWS
            .iter()
            .map(|&k| usize::from(k))
            .filter(|&k| k <= oh.min(ow))
            .collect(),
        Err(_) => Vec::new(),
    };
    let max_pool = if !fits.is_empty() && rng.random_bool(0.33) {
        fits[rng.random_range(0..fits.len())]
    } else {
        0
    };
    // Global average pooling on the result path a fifth of the other times, where the core has it.
    let global_pool = lim.global_pool && max_pool == 0 && rng.random_bool(0.2);
    LayerOp::Conv2d {
        in_c,
        in_h,
        in_w,
        kernel,
        stride,
        pad,
        max_pool,
        global_pool,
    }
}

/// A random layer the config's core can hold.
pub fn random_layer(rng: &mut ChaCha8Rng, cfg: &AccelConfig, conv: bool) -> LayerJob {
    let lim = Limits::of(cfg);
    loop {
        let op = random_op(rng, conv, lim);
        let rows = cfg.array.rows as usize;
        let o = rng.random_range(1..=(2 * rows + 3).min(lim.dim));
        let k = match op {
            LayerOp::Dense { in_c, .. } => in_c,
            LayerOp::Conv2d { in_c, kernel, .. } => in_c * kernel[0] * kernel[1],
        };
        let (groups, active) = random_weights(rng, cfg, o, k);
        let gs = cfg.array.group_size as usize;
        let regions = (gs != 0 && rng.random_bool(0.5)).then(|| {
            (
                Array2::from_shape_fn((o, k.div_ceil(gs)), |_| rng.random_range(1..=256u16)),
                gs,
            )
        });
        // The typical accumulator magnitude (random-sign sums of K products), so that most
        // requantization factors land the outputs inside the code range rather than at its ends.
        let w_max: f64 = groups
            .iter()
            .take(active)
            .map(|g| f64::from((1u32 << (g.bits - 1)) << g.shift))
            .sum();
        let region_gain = if regions.is_some() { 128.0 } else { 1.0 };
        let typical = ((k as f64).sqrt() * w_max / 2.0 * 100.0 * region_gain).max(1.0);
        let out_bits = rng.random_range(2..=cfg.array.act_bits as u8);
        let target = f64::from(1u32 << (out_bits - 1));
        let requant = (0..o)
            .map(|_| {
                // Mostly fitting factors; sometimes huge or tiny ones, to saturate and to flush.
                let real = match rng.random_range(0..10) {
                    0 => rng.random_range(0.5..4.0),
                    1 => rng.random_range(1e-7..1e-5),
                    _ => target / typical * 2f64.powf(rng.random_range(-2.0..2.0)),
                };
                Requant::from_real(real).expect("positive factor below 2^30")
            })
            .collect();
        let bias_range = typical as i32;
        let relu = rng.random_bool(0.5);
        let in_signed = rng.random_bool(0.5);
        let in_bits = rng.random_range(2..=cfg.array.act_bits as u8);
        let (in_lo, in_hi) = if in_signed {
            (-(1i32 << (in_bits - 1)), (1i32 << (in_bits - 1)) - 1)
        } else {
            (0, (1i32 << in_bits) - 1)
        };
        let in_len = match op {
            LayerOp::Dense { in_c, batch } => in_c * batch,
            LayerOp::Conv2d {
                in_c, in_h, in_w, ..
            } => in_c * in_h * in_w,
        };
        let job = LayerJob {
            op,
            groups,
            active,
            regions,
            bias: (0..o)
                .map(|_| rng.random_range(-bias_range..=bias_range))
                .collect(),
            requant,
            relu,
            in_signed,
            in_bits,
            out_signed: !relu && rng.random_bool(0.7),
            out_bits,
            input: (0..in_len)
                .map(|_| rng.random_range(in_lo..=in_hi))
                .collect(),
        };
        if fits(cfg, &job) {
            return job;
        }
    }
}

/// True when the device takes `job`: laid out in a scratch device, its descriptor passes the
/// descriptor checks and the core's capacity rule.
pub fn fits(cfg: &AccelConfig, job: &LayerJob) -> bool {
    let caps = Caps::from_config(cfg).expect("valid config");
    let mut scratch = func_device(cfg);
    let mut alloc = Alloc::new(DeviceAddr(MEM_BASE), MEM_BASE + MEM_BYTES);
    let Ok(placed) = job.place(&mut scratch, &mut alloc) else {
        return false;
    };
    placed.desc.validate(&caps).is_ok() && CoreShape::of(cfg).check_capacity(&placed.desc).is_ok()
}

/// Plane-steps, bytes read and bytes written the device semantics fix for a list.
pub fn expected_counts(descs: &[LayerDescriptor], cfg: &AccelConfig) -> (u64, u64, u64) {
    let shape = CoreShape::of(cfg);
    let (mut ops, mut rd, mut wr) = (0, 0, 0);
    let mut resident = plan::Resident::default();
    for d in descs {
        rd += 8 * 16;
        let sched = shape.schedule(d).expect("the list fits the device");
        ops += sched.plane_steps();
        for step in plan::steps(d, &sched, &shape) {
            match step {
                Step::Read { words, .. } if !resident.skips(d, &step) => rd += 8 * words,
                Step::Write { bytes, .. } => wr += bytes,
                Step::Read { .. } | Step::Compute { .. } => {}
            }
            resident.observe(d, &shape, &step);
        }
    }
    (ops, rd, wr)
}

pub fn whole_memory<D: Device>(dev: &D) -> Window {
    let mem = dev.memory();
    Window {
        base: mem.base,
        limit: DeviceAddr(mem.end()),
    }
}

pub fn describe(j: &LayerJob) -> String {
    format!(
        "{:?} out_c={} K={} groups={:?} active={} regions={} out_bits={} signed in/out={}/{} relu={}",
        j.op,
        j.out_c(),
        j.k(),
        j.groups
            .iter()
            .map(|g| (g.bits, g.shift))
            .collect::<Vec<_>>(),
        j.active,
        j.regions.is_some(),
        j.out_bits,
        j.in_signed,
        j.out_signed,
        j.relu
    )
}

/// Places `jobs` after a descriptor-list slot at the start of the device's memory.
pub fn place_all<D: Device>(dev: &mut D, jobs: &[LayerJob]) -> (DeviceAddr, Vec<Placed>) {
    let (_, placed) = place_from_start(dev, jobs);
    (dev.memory().base, placed)
}

/// [`place_all`], and the allocator the jobs were placed with (for more buffers after theirs).
pub fn place_from_start<D: Device>(dev: &mut D, jobs: &[LayerJob]) -> (Alloc, Vec<Placed>) {
    let mem = dev.memory();
    let mut alloc = Alloc::new(DeviceAddr(mem.base.0 + 128 * 64), mem.end());
    let placed = jobs
        .iter()
        .map(|j| j.place(dev, &mut alloc).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    (alloc, placed)
}

pub fn check_outputs<D: Device>(dev: &mut D, jobs: &[LayerJob], placed: &[Placed], what: &str) {
    for (i, (j, p)) in jobs.iter().zip(placed).enumerate() {
        let got = layer::read_output(dev, p).unwrap_or_else(|e| panic!("{e}"));
        let golden = p.image(&j.golden().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(
            &got[..p.output_len],
            &golden[..],
            "{what} layer {i}: {}",
            describe(j)
        );
        assert!(
            got[p.output_len..].iter().all(|&b| b == layer::OUTPUT_FILL),
            "{what} layer {i}: wrote past the outputs"
        );
    }
}

pub fn run_ok<D: Device>(dev: &mut D, jobs: &[LayerJob], cfg: &AccelConfig, what: &str) -> Run {
    let (desc_addr, placed) = place_all(dev, jobs);
    let run = run_placed(dev, desc_addr, &placed, cfg, what);
    check_outputs(dev, jobs, &placed, what);
    run
}

/// Runs the placed descriptors as one list: it must complete with the interrupt, and its
/// counters must be the plan's; the timing model's estimate is recorded beside PERF_CYCLES.
pub fn run_placed<D: Device>(
    dev: &mut D,
    desc_addr: DeviceAddr,
    placed: &[Placed],
    cfg: &AccelConfig,
    what: &str,
) -> Run {
    let descs: Vec<LayerDescriptor> = placed.iter().map(|p| p.desc).collect();
    let run = layer::run_list(dev, desc_addr, &descs, TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.irq, IrqWait::Fired, "{what}: no interrupt");
    assert!(
        run.done(),
        "{what}: STATUS {:#x} ({:?})",
        run.status,
        run.error()
    );
    let (ops, rd, wr) = expected_counts(&descs, cfg);
    assert_eq!(run.perf.plane_ops, ops, "{what}: PERF_PLANE_OPS");
    assert_eq!(run.perf.busy_cycles, ops, "{what}: PERF_BUSY_CYCLES");
    assert_eq!(run.perf.bytes_rd, rd, "{what}: PERF_BYTES_RD");
    assert_eq!(run.perf.bytes_wr, wr, "{what}: PERF_BYTES_WR");
    // What the timing model predicts for this device, printed for calibration (FuncDevice
    // reports the estimate itself).
    let estimate = TimingModel::default().estimate(&CoreShape::of(cfg), &descs);
    CYCLES.with(|c| c.borrow_mut().push((estimate.cycles, run.perf.cycles)));
    let pooled = descs.iter().filter(|d| d.max_pool != 0).count();
    let averaged = descs.iter().filter(|d| d.global_pool.is_some()).count();
    println!(
        "{what}: PERF_CYCLES {} (stall {}), estimate {} ({:+.1}%); {} descriptors, {pooled} max-pooled, {averaged} global-pooled",
        run.perf.cycles,
        run.perf.stall_cycles,
        estimate.cycles,
        100.0 * (estimate.cycles as f64 / run.perf.cycles.max(1) as f64 - 1.0),
        descs.len()
    );
    assert!(
        run.perf.cycles >= ops,
        "{what}: PERF_CYCLES {}",
        run.perf.cycles
    );
    run
}

/// Runs `spec`, expects `code` at descriptor `index`, then SOFT_RESET, no fault, and `good`
/// must run correctly.
pub fn expect_error<D: Device + InjectFaults>(
    dev: &mut D,
    cfg: &AccelConfig,
    spec: &RunSpec,
    (code, index): (ErrorCode, u32),
    good: &LayerJob,
    what: &str,
) {
    let run = layer::run(dev, spec).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(run.irq, IrqWait::Fired, "{what}: no interrupt (hang)");
    assert_eq!(
        run.error(),
        Some((code.as_u8(), index)),
        "{what}: STATUS {:#x}, expected {code:?} at descriptor {index}",
        run.status
    );
    assert!(
        !regmap::STATUS_DONE.is_set(run.status),
        "{what}: DONE with ERROR"
    );
    dev.write_reg(
        regmap::CTRL.offset,
        regmap::CTRL_SOFT_RESET.mask() | regmap::CTRL_IRQ_EN.mask(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        dev.read_reg(regmap::STATUS.offset).ok(),
        Some(0),
        "{what}: STATUS after SOFT_RESET"
    );
    dev.clear_faults();
    run_ok(
        dev,
        std::slice::from_ref(good),
        cfg,
        &format!("{what}, then a good job"),
    );
    // One row of the fault matrix (the must-show of the device issue).
    eprintln!(
        "fault matrix | {} | {} | {what} | {code} at descriptor {index}, interrupt, PERF_CYCLES {} | next job after SOFT_RESET bit-exact",
        std::any::type_name::<D>()
            .rsplit("::")
            .next()
            .unwrap_or("device"),
        cfg.name,
        run.perf.cycles
    );
}

/// Random lists of layers, outputs bit-exact and counters as specified.
pub fn random_lists<D: Device>(dev: &mut D, cfg: &AccelConfig, seed: u64, opts: SuiteOptions) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let max_list = cfg.limits.max_descriptors as usize;
    // Every supported weight width as the only plane group of a layer, in lists as long as the
    // config allows.
    let sweep: Vec<LayerJob> = cfg
        .supported_weight_bits()
        .map(|b| {
            loop {
                let mut j = random_layer(&mut rng, cfg, opts.conv);
                let (o, k, bits) = (j.out_c(), j.k(), b.get());
                let lim = 1i32 << (bits - 1);
                j.groups = vec![WeightGroup {
                    bits,
                    shift: 0,
                    codes: Array2::from_shape_fn((o, k), |_| rng.random_range(-lim..lim)),
                }];
                j.active = 1;
                if fits(cfg, &j) {
                    break j;
                }
            }
        })
        .collect();
    for (i, list) in sweep.chunks(max_list).enumerate() {
        run_ok(
            dev,
            list,
            cfg,
            &format!("{} weight-width sweep, list {i}", cfg.name),
        );
    }
    for round in 0..opts.rounds {
        let jobs: Vec<LayerJob> = (0..rng.random_range(1..=3.min(max_list)))
            .map(|_| random_layer(&mut rng, cfg, opts.conv))
            .collect();
        run_ok(dev, &jobs, cfg, &format!("{} round {round}", cfg.name));
    }
}

/// A descriptor field edit and the error code it must produce.
pub type Edit = (ErrorCode, &'static str, fn(&mut [u8; 128], &Placed, u64));

pub fn put_word(bytes: &mut [u8; 128], word: usize, f: impl Fn(u32) -> u32) {
    let at = 4 * word;
    let w = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    bytes[at..at + 4].copy_from_slice(&f(w).to_le_bytes());
}

/// One descriptor edit per check of `caq_spec::descriptor::CHECKS`, and the code each gives.
pub fn field_edits() -> Vec<Edit> {
    vec![
        (ErrorCode::BadOpcode, "op = 3", |b, _, _| {
            put_word(b, 0, |w| w & !0xff | 3)
        }),
        (ErrorCode::BadGroups, "n_groups = 0", |b, _, _| {
            put_word(b, 0, |w| w & !0x00ff_0000)
        }),
        (ErrorCode::BadBits, "out_bits = 1", |b, _, _| {
            put_word(b, 1, |w| w & !0xf0 | 1 << 4)
        }),
        (
            ErrorCode::Reserved,
            "reserved bit 13 of word 0",
            |b, _, _| put_word(b, 0, |w| w | 1 << 13),
        ),
        (ErrorCode::Reserved, "reserved word 31", |b, _, _| {
            put_word(b, 31, |_| 1)
        }),
        (ErrorCode::BadShape, "in_c = 0", |b, _, _| {
            put_word(b, 2, |w| w & !0xffff)
        }),
        (ErrorCode::BadShape, "kernel_h = 2 on Dense", |b, _, _| {
            put_word(b, 5, |w| w & !0xff | 2)
        }),
        (
            ErrorCode::BadGroups,
            "active_groups = n_groups + 1",
            |b, _, _| {
                put_word(b, 0, |w| {
                    let n = (w >> 16) & 0xff;
                    w & !0xff00_0000 | (n + 1) << 24
                })
            },
        ),
        (
            ErrorCode::BadRegion,
            "grouped without group_size",
            |b, _, _| {
                put_word(b, 0, |w| w | 1 << 11);
                put_word(b, 1, |w| w & 0xffff);
            },
        ),
        (ErrorCode::Misaligned, "bias_addr + 4", |b, p, _| {
            put_word(b, 12, |_| (p.desc.bias_addr.0 + 4) as u32)
        }),
        (
            ErrorCode::OutOfWindow,
            "output_addr past the memory",
            |b, _, end| {
                put_word(b, 10, |_| end as u32);
                put_word(b, 11, |_| (end >> 32) as u32);
            },
        ),
        (
            ErrorCode::DescCount,
            "last clear on the only descriptor",
            |b, _, _| put_word(b, 0, |w| w & !(1 << 12)),
        ),
    ]
}

/// Every error a run can stop on, with its code and descriptor index; each followed by
/// SOFT_RESET and a correct run.
pub fn fault_cases<D: Device + InjectFaults>(dev: &mut D, cfg: &AccelConfig, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xfa17);
    // A Dense layer with every plane group active and no regions, so that the last allocation
    // is a weight plane the core streams, and with more outputs than a bus beat has bytes, so
    // that a window ending one beat into the output cuts a write.
    let bus = u64::from(cfg.bus_bytes());
    // Configs whose layers cannot have that many outputs skip the case that needs it.
    let most_outputs = (2 * cfg.array.rows as usize + 3).min(Limits::of(cfg).dim);
    let cuts_a_write = most_outputs > bus as usize;
    // Lists of two descriptors, where the config allows them.
    let pairs = cfg.limits.max_descriptors >= 2;
    let good = loop {
        let mut j = random_layer(&mut rng, cfg, false);
        j.active = j.groups.len();
        j.regions = None;
        if !cuts_a_write || j.out_c() > bus as usize {
            break j;
        }
    };
    let window = whole_memory(dev);
    let end = dev.memory().end();
    let spec = |desc_addr: DeviceAddr, count: u32, window: Window| RunSpec {
        desc_addr,
        count,
        window,
        timeout: TIMEOUT,
    };
    let (desc_addr, placed) = place_all(dev, std::slice::from_ref(&good));
    let p = placed[0];
    let good_bytes = {
        let mut d = p.desc;
        d.flags.last = true;
        d.encode()
    };
    for (code, what, edit) in field_edits() {
        let mut bytes = good_bytes;
        edit(&mut bytes, &p, end);
        dev.mem_write(desc_addr, &bytes)
            .unwrap_or_else(|e| panic!("{e}"));
        expect_error(
            dev,
            cfg,
            &spec(desc_addr, 1, window),
            (code, 0),
            &good,
            what,
        );
    }

    // The list itself: empty, LAST missing on the final of two, LAST on the first of two, a
    // misaligned list, a second descriptor past the window.
    let list = |dev: &mut D, lasts: [bool; 2]| {
        let (desc_addr, placed) = place_all(dev, &[good.clone(), good.clone()]);
        for (i, (p, last)) in placed.iter().zip(lasts).enumerate() {
            let mut d = p.desc;
            d.flags.last = last;
            dev.mem_write(DeviceAddr(desc_addr.0 + 128 * i as u64), &d.encode())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        desc_addr
    };
    let at = list(dev, [false, true]);
    expect_error(
        dev,
        cfg,
        &spec(at, 0, window),
        (ErrorCode::DescCount, 0),
        &good,
        "DESC_COUNT = 0",
    );
    if pairs {
        let at = list(dev, [false, false]);
        expect_error(
            dev,
            cfg,
            &spec(at, 2, window),
            (ErrorCode::DescCount, 1),
            &good,
            "LAST missing",
        );
        let at = list(dev, [true, true]);
        expect_error(
            dev,
            cfg,
            &spec(at, 2, window),
            (ErrorCode::DescCount, 0),
            &good,
            "LAST early",
        );
    }
    let count = if pairs { 2 } else { 1 };
    let at = list(dev, [false, true]);
    expect_error(
        dev,
        cfg,
        &spec(at, cfg.limits.max_descriptors + 1, window),
        (ErrorCode::DescCount, 0),
        &good,
        "DESC_COUNT = MAX_DESCRIPTORS + 1",
    );
    if cfg.axi.addr_width < 64 {
        expect_error(
            dev,
            cfg,
            &spec(DeviceAddr(at.0 | 1 << cfg.axi.addr_width), count, window),
            (ErrorCode::OutOfWindow, 0),
            &good,
            "DESC_ADDR beyond the address space",
        );
    }
    expect_error(
        dev,
        cfg,
        &spec(DeviceAddr(at.0 + 4), count, window),
        (ErrorCode::Misaligned, 0),
        &good,
        "DESC_ADDR + 4",
    );
    // Descriptor 1 lies past the window; everything descriptor 0 touches lies in it. The list
    // goes at the top of memory, its buffers below.
    if pairs {
        let (_, placed) = place_all(dev, std::slice::from_ref(&good));
        let top = DeviceAddr(end - 4096);
        let mut d = placed[0].desc;
        dev.mem_write(top, &d.encode())
            .unwrap_or_else(|e| panic!("{e}"));
        d.flags.last = true;
        dev.mem_write(DeviceAddr(top.0 + 128), &d.encode())
            .unwrap_or_else(|e| panic!("{e}"));
        let short = Window {
            base: window.base,
            limit: DeviceAddr(top.0 + 128),
        };
        expect_error(
            dev,
            cfg,
            &spec(top, 2, short),
            (ErrorCode::OutOfWindow, 1),
            &good,
            "descriptor 1 past the window",
        );
    }

    // Requests that pass the descriptor checks (they look at start addresses and tables only)
    // but run past the window: the output (moved to the last buffer), then the last weight
    // group's planes (the last buffer as placed).
    let (desc_addr, placed) = place_all(dev, std::slice::from_ref(&good));
    let mut d = placed[0].desc;
    d.flags.last = true;
    let last_group = *d.plane_groups.as_slice().last().expect("a group");
    let out = (last_group.weight_addr.0 + 64 * 1024).next_multiple_of(64);
    let short = |limit: u64| Window {
        base: window.base,
        limit: DeviceAddr(limit),
    };
    if cuts_a_write {
        let mut moved = d;
        moved.output_addr = DeviceAddr(out);
        dev.mem_write(desc_addr, &moved.encode())
            .unwrap_or_else(|e| panic!("{e}"));
        expect_error(
            dev,
            cfg,
            &spec(desc_addr, 1, short(out + bus)),
            (ErrorCode::OutOfWindow, 0),
            &good,
            "output past the window",
        );
        dev.mem_write(desc_addr, &d.encode())
            .unwrap_or_else(|e| panic!("{e}"));
        expect_error(
            dev,
            cfg,
            &spec(desc_addr, 1, short(last_group.weight_addr.0 + bus)),
            (ErrorCode::OutOfWindow, 0),
            &good,
            "weights past the window",
        );
    }

    if pairs {
        // Bus errors on descriptor 1 of two: a weight read and an output write, SLVERR and DECERR.
        for (resp, code) in [
            (Resp::SlvErr, ErrorCode::AxiSlverr),
            (Resp::DecErr, ErrorCode::AxiDecerr),
        ] {
            for dir in [FaultDir::Reads, FaultDir::Writes] {
                let (desc_addr, placed) = place_all(dev, &[good.clone(), good.clone()]);
                let descs: Vec<LayerDescriptor> = placed.iter().map(|p| p.desc).collect();
                layer::write_list(dev, desc_addr, &descs).unwrap_or_else(|e| panic!("{e}"));
                let target = match dir {
                    FaultDir::Writes => descs[1].output_addr.0,
                    _ => descs[1].plane_groups.as_slice()[0].weight_addr.0,
                };
                dev.inject(target..target + 8, resp, dir);
                expect_error(
                    dev,
                    cfg,
                    &spec(desc_addr, 2, window),
                    (code, 1),
                    &good,
                    &format!("{resp} on a {dir:?} of descriptor 1"),
                );
            }
        }
    }
}

/// The largest accumulators the hardware can meet: every weight at the most negative code of the
/// widest supported width w (then the most positive), every activation the largest unsigned code of
/// `act_bits` (255 on the shipped configs), K as long as the
/// config takes at w planes (at most 1024: on sim-small 8 planes of 16 words per row, the whole
/// weight bank), region multipliers of 256, biases at the i32 extremes, with requant factors that
/// saturate both ways, a zero multiplier, and one that maps the total exactly into range. On
/// sim-small |Σ 256·acc_g| = 256 · 1024 · 128 · 255 ≈ 2^33.
pub fn extreme_accumulators<D: Device>(dev: &mut D, cfg: &AccelConfig) {
    let bits = cfg.max_weight_bits().get();
    let lim = Limits::of(cfg);
    let k = lim.k_at(cfg, u32::from(bits)).min(lim.dim).min(1024);
    let o = 7.min(lim.dim);
    let gs = cfg.array.group_size as usize;
    let top = 1i32 << (bits - 1);
    let act_bits = cfg.array.act_bits as u8;
    for w in [-top, top - 1] {
        let mut requant: Vec<Requant> = [1.0, 1e-3, 2e-9, 0.5, 3e-10, 1.5e-9, 1e-12]
            .iter()
            .map(|&r| Requant::from_real(r).expect("positive factor below 2^30"))
            .collect();
        requant[6] = Requant { mult: 0, shift: 63 };
        requant.truncate(o);
        let mut bias = vec![i32::MIN, i32::MAX, 0, -1, i32::MAX, i32::MIN, 12345];
        bias.truncate(o);
        let job = LayerJob {
            op: LayerOp::Dense { in_c: k, batch: 1 },
            groups: vec![WeightGroup {
                bits,
                shift: 0,
                codes: Array2::from_elem((o, k), w),
            }],
            active: 1,
            regions: (gs != 0).then(|| (Array2::from_elem((o, k.div_ceil(gs)), 256u16), gs)),
            bias,
            requant,
            relu: false,
            in_signed: false,
            in_bits: act_bits,
            out_signed: true,
            out_bits: act_bits,
            input: vec![(1 << act_bits) - 1; k],
        };
        assert!(fits(cfg, &job), "{}: K = {k} does not fit", cfg.name);
        let golden = job.golden().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            job.out_bits < 8 || golden.contains(&127) || golden.contains(&128),
            "some output saturates: {golden:?}"
        );
        run_ok(
            dev,
            std::slice::from_ref(&job),
            cfg,
            &format!("{} extreme accumulators, weights {w}", cfg.name),
        );
    }
}

/// The whole suite on one backend.
pub fn suite<D: Device + InjectFaults>(
    dev: &mut D,
    cfg: &AccelConfig,
    seed: u64,
    opts: SuiteOptions,
) {
    random_lists(dev, cfg, seed, opts);
    resident_maps(dev, cfg, seed);
    mirrored_maps(dev, cfg, seed);
    sliced_maps(dev, cfg, seed);
    grown_mirror(dev, cfg, seed);
    early_handovers(dev, cfg, seed);
    extreme_accumulators(dev, cfg);
    fault_cases(dev, cfg, seed);
    window_edges(dev, cfg, seed);
}

/// A Dense layer of `n` outputs in the code range of (`signed`, `bits`), its input drawn from
/// `codes` (that range too): written over the start of a map, it changes the map's first n codes.
fn overwriter(
    rng: &mut ChaCha8Rng,
    cfg: &AccelConfig,
    n: usize,
    (signed, bits): (bool, u8),
    codes: &[i32],
) -> LayerJob {
    let lim = Limits::of(cfg);
    loop {
        let k = rng.random_range(1..=lim.k.min(lim.dim).min(64));
        let (groups, active) = random_weights(rng, cfg, n, k);
        let j = LayerJob {
            op: LayerOp::Dense { in_c: k, batch: 1 },
            groups,
            active,
            regions: None,
            bias: (0..n).map(|_| rng.random_range(-64..=64)).collect(),
            requant: (0..n)
                .map(|_| Requant::from_real(rng.random_range(1e-3..0.2)).expect("in range"))
                .collect(),
            relu: false,
            in_signed: signed,
            in_bits: bits,
            out_signed: signed,
            out_bits: bits,
            input: codes.iter().copied().cycle().take(k).collect(),
        };
        if fits(cfg, &j) {
            return j;
        }
    }
}

/// Bytes a list reads when every read is issued, and the bytes of descriptor `i`'s input read.
fn all_reads(placed: &[Placed], cfg: &AccelConfig, i: usize) -> (u64, u64) {
    let shape = CoreShape::of(cfg);
    let (mut all, mut input) = (0, 0);
    for (j, p) in placed.iter().enumerate() {
        let s = shape.schedule(&p.desc).expect("fits");
        all += 8 * 16;
        for st in plan::steps(&p.desc, &s, &shape) {
            if let Step::Read { load, words, .. } = st {
                all += 8 * words;
                if j == i && load == plan::Load::Input {
                    input = 8 * words;
                }
            }
        }
    }
    (all, input)
}

/// Conv2d descriptors on one input map (docs/hardware.md, "A resident input map"), in one list:
/// A; B on A's map, which stays on chip (its read is skipped: the byte counters are the plan's
/// with residency, and the RTL's must equal them); C, a Dense layer whose output is written over
/// the start of A's map; D on A's map again, which must be read anew and holds C's output there.
/// Every output equals its golden one (D's computed from C's golden output).
pub fn resident_maps<D: Device>(dev: &mut D, cfg: &AccelConfig, seed: u64) {
    if cfg.limits.max_descriptors < 4 {
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7e51_d3e7);
    let a = loop {
        let j = random_layer(&mut rng, cfg, true);
        if matches!(j.op, LayerOp::Conv2d { .. }) {
            break j;
        }
    };
    // The same layer shape and input with other weights and biases.
    let reweigh = |rng: &mut ChaCha8Rng, input: Vec<i32>| loop {
        let (groups, active) = random_weights(rng, cfg, a.out_c(), a.k());
        let bias = a
            .bias
            .iter()
            .map(|&b| b / 2 + rng.random_range(-8..=8))
            .collect();
        let j = LayerJob {
            groups,
            active,
            bias,
            input: input.clone(),
            ..a.clone()
        };
        if fits(cfg, &j) {
            break j;
        }
    };
    let b = reweigh(&mut rng, a.input.clone());
    let LayerOp::Conv2d {
        in_c, in_h, in_w, ..
    } = a.op
    else {
        unreachable!("drawn as a Conv2d")
    };
    // C: a Dense layer (it leaves the feature map alone) whose outputs overwrite the map's first
    // n codes.
    let n = (in_c * in_h * in_w).min(2 * cfg.array.rows as usize + 3);
    let c = overwriter(&mut rng, cfg, n, (a.in_signed, a.in_bits), &a.input);
    let c_out = c.golden().unwrap_or_else(|e| panic!("{e}"));
    let mut c_codes = codes_of(&c_out, a.in_signed);
    c_codes.extend_from_slice(&a.input[n..]);
    let d = reweigh(&mut rng, c_codes);
    let jobs = [a, b, c, d];
    let (desc_addr, mut placed) = place_all(dev, &jobs);
    let map = placed[0].desc.input_addr;
    placed[1].desc.input_addr = map;
    placed[2].desc.output_addr = map;
    placed[3].desc.input_addr = map;
    let what = format!("{} resident maps", cfg.name);
    let run = run_placed(dev, desc_addr, &placed, cfg, &what);
    let kept = [0, 1, 3];
    check_outputs(
        dev,
        &kept.map(|i| jobs[i].clone()),
        &kept.map(|i| placed[i]),
        &what,
    );
    let mut got = vec![0; c_out.len()];
    dev.sync_for_cpu(map, got.len() as u64)
        .and_then(|()| dev.mem_read(map, &mut got))
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(got, c_out, "{what}: C's output over A's map");
    // Independently of the residency rule: every read of the list but B's map, once.
    let (all_reads, b_map) = all_reads(&placed, cfg, 1);
    assert!(b_map > 0, "{what}: B reads a map");
    assert_eq!(
        run.perf.bytes_rd,
        all_reads - b_map,
        "{what}: PERF_BYTES_RD: B's map not read, D's read"
    );
    println!("{what}: B's {b_map}-byte map read from chip");
}

/// A layer's output bytes as the next layer's input codes.
fn codes_of(bytes: &[u8], signed: bool) -> Vec<i32> {
    bytes
        .iter()
        .map(|&v| {
            if signed {
                i32::from(v as i8)
            } else {
                i32::from(v)
            }
        })
        .collect()
}

/// A 1×1 stride-1 Conv2d over `prev`'s written map whose input codes are `input` (in `prev`'s
/// output range), with random weights and a requantization that keeps most outputs inside the
/// code range; none when the device cannot hold it.
fn follower(
    rng: &mut ChaCha8Rng,
    cfg: &AccelConfig,
    prev: &LayerJob,
    input: Vec<i32>,
) -> Option<LayerJob> {
    let (h, w) = prev.out_hw().ok()?;
    pointwise(rng, cfg, [prev.out_c(), h, w], prev, input)
}

/// A 1×1 stride-1 Conv2d over a `[c, h, w]` map of codes `input` in `prev`'s output range (as
/// [`follower`]).
fn pointwise(
    rng: &mut ChaCha8Rng,
    cfg: &AccelConfig,
    map: [usize; 3],
    prev: &LayerJob,
    input: Vec<i32>,
) -> Option<LayerJob> {
    conv_over(rng, cfg, map, 1, prev, input)
}

/// A `kernel`×`kernel` stride-1 Conv2d ("same" zero padding) over a `[c, h, w]` map of codes
/// `input` (as [`pointwise`]).
fn conv_over(
    rng: &mut ChaCha8Rng,
    cfg: &AccelConfig,
    [in_c, in_h, in_w]: [usize; 3],
    kernel: usize,
    prev: &LayerJob,
    input: Vec<i32>,
) -> Option<LayerJob> {
    let lim = Limits::of(cfg);
    let o = rng.random_range(1..=(2 * cfg.array.rows as usize + 3).min(lim.dim));
    let k = in_c * kernel * kernel;
    let (groups, active) = random_weights(rng, cfg, o, k);
    let w_max: f64 = groups
        .iter()
        .take(active)
        .map(|g| f64::from((1u32 << (g.bits - 1)) << g.shift))
        .sum();
    let typical = ((k as f64).sqrt() * w_max / 2.0 * 100.0).max(1.0);
    let out_bits = rng.random_range(2..=cfg.array.act_bits as u8);
    let target = f64::from(1u32 << (out_bits - 1));
    let job = LayerJob {
        op: LayerOp::Conv2d {
            in_c,
            in_h,
            in_w,
            kernel: [kernel, kernel],
            stride: 1,
            pad: Padding::uniform(kernel / 2),
            max_pool: 0,
            global_pool: false,
        },
        groups,
        active,
        regions: None,
        bias: (0..o).map(|_| rng.random_range(-64..=64)).collect(),
        requant: (0..o)
            .map(|_| {
                let real = target / typical * 2f64.powf(rng.random_range(-2.0..2.0));
                Requant::from_real(real).expect("positive factor below 2^30")
            })
            .collect(),
        relu: rng.random_bool(0.5),
        in_signed: prev.out_signed,
        in_bits: prev.out_bits,
        out_signed: rng.random_bool(0.5),
        out_bits,
        input,
    };
    fits(cfg, &job).then_some(job)
}

/// Conv2d descriptors reading the map the previous one wrote (docs/hardware.md, "The output
/// mirror"), in one list: A, a Conv2d whose written map fits a feature-map bank; B, a 1×1 conv
/// on A's output, which the engine mirrored as A wrote it (B's read is skipped: the byte
/// counters are the plan's, and the RTL's must equal them); C, a Dense layer whose output is
/// written over the start of B's output; D, a 1×1 conv on B's output, which must be read anew
/// and holds C's output there; E (when the device holds it), D's map read as 1×1×m, one byte
/// longer when D's map ends inside a word, which must then be read from memory (the mirror holds
/// D's bytes, not its last word's). Every output equals its golden one (B's start is C's output).
pub fn mirrored_maps<D: Device>(dev: &mut D, cfg: &AccelConfig, seed: u64) {
    if cfg.limits.max_descriptors < 4 {
        return;
    }
    let fm_bytes = CoreShape::of(cfg).fm_bytes as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x3a1f_0c2d);
    let golden = |j: &LayerJob| j.golden().unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = loop {
        let a = random_layer(&mut rng, cfg, true);
        if !matches!(a.op, LayerOp::Conv2d { .. }) || a.output_len().map_or(true, |n| n > fm_bytes)
        {
            continue;
        }
        let input = codes_of(&golden(&a), a.out_signed);
        if let Some(b) = follower(&mut rng, cfg, &a, input) {
            break (a, b);
        }
    };
    let b_out = golden(&b);
    let n = b_out.len().min(2 * cfg.array.rows as usize + 3);
    let b_codes = codes_of(&b_out, b.out_signed);
    let c = overwriter(&mut rng, cfg, n, (b.out_signed, b.out_bits), &b_codes);
    let c_out = golden(&c);
    let mut d_in = codes_of(&c_out, b.out_signed);
    d_in.extend_from_slice(&b_codes[n..]);
    let d = loop {
        if let Some(d) = follower(&mut rng, cfg, &b, d_in.clone()) {
            break d;
        }
    };
    // E: D's written map read as a 1×1×m map, one byte longer when D's map ends inside a word.
    // That byte is not D's (the mirror holds D's bytes, not its last word's): E must read its
    // input from memory, where the byte is set to a code beforehand.
    let d_out = golden(&d);
    let nd = d_out.len();
    let extra = (nd % 8 != 0).then_some(if d.out_signed { -1 } else { 1 });
    let mut e_in = codes_of(&d_out, d.out_signed);
    e_in.extend(extra);
    let e = pointwise(&mut rng, cfg, [1, 1, e_in.len()], &d, e_in);
    let mut jobs = vec![a, b, c, d];
    jobs.extend(e);
    let (desc_addr, mut placed) = place_all(dev, &jobs);
    let (a_out, b_at) = (placed[0].desc.output_addr, placed[1].desc.output_addr);
    placed[1].desc.input_addr = a_out;
    placed[2].desc.output_addr = b_at;
    placed[3].desc.input_addr = b_at;
    let d_at = placed[3].desc.output_addr;
    if let Some(code) = extra
        && jobs.len() == 5
    {
        dev.mem_write(DeviceAddr(d_at.0 + nd as u64), &[code as u8])
            .and_then(|()| dev.sync_for_device(DeviceAddr(d_at.0 + nd as u64), 1))
            .unwrap_or_else(|e| panic!("{e:?}"));
    }
    if let Some(p) = placed.get_mut(4) {
        p.desc.input_addr = d_at;
    }
    let what = format!("{} mirrored maps", cfg.name);
    let run = run_placed(dev, desc_addr, &placed, cfg, &what);
    let checked: Vec<usize> = [0, 4].into_iter().filter(|&i| i < jobs.len()).collect();
    check_outputs(
        dev,
        &checked.iter().map(|&i| jobs[i].clone()).collect::<Vec<_>>(),
        &checked.iter().map(|&i| placed[i]).collect::<Vec<_>>(),
        &what,
    );
    let got = layer::read_output(dev, &placed[3]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&got[..nd], &d_out[..], "{what}: D's output");
    println!(
        "{what}: E {}",
        match (jobs.len(), extra) {
            (5, Some(_)) => "reads one byte past D's map: from memory",
            (5, None) => "reads D's map, a whole number of words: from the mirror",
            _ => "does not fit the device: not run",
        }
    );
    let got = layer::read_output(dev, &placed[1]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&got[..n], &c_out[..], "{what}: C's output over B's");
    assert_eq!(
        &got[n..b_out.len()],
        &b_out[n..],
        "{what}: B's output ({}): read from A's mirrored map",
        describe(&jobs[1])
    );
    // Independently of the rule: every read of the list but B's map, once.
    let (_, e_map) = all_reads(&placed, cfg, 4);
    let (every, b_map) = all_reads(&placed, cfg, 1);
    let e_skipped = if extra.is_none() { e_map } else { 0 };
    assert_eq!(
        run.perf.bytes_rd,
        every - b_map - e_skipped,
        "{what}: PERF_BYTES_RD: B's map not read, D's read, E's read unless D's map is whole words"
    );
    println!("{what}: B's {b_map}-byte map taken from the mirror");
}

/// Conv2d descriptors on slices of one map on chip (docs/hardware.md, "The output mirror"), in
/// one list: A, a Conv2d whose input and output start at random bytes of their words and whose
/// written map fits a feature-map bank; B, a 3×3 (or 1×1) conv on A's
/// channels from s_b ≥ 1 (any channel: a slice starts at any byte), whose bytes start at an
/// offset into A's mirrored map (the banks swap,
/// and A's whole map is the resident one); C, a 3×3 (or 1×1) conv on A's channels from s_c, a
/// slice of the resident map. Neither B nor C reads its map (the byte counters are the plan's,
/// and the RTL's must equal them), and every output equals its golden one.
pub fn sliced_maps<D: Device>(dev: &mut D, cfg: &AccelConfig, seed: u64) {
    if cfg.limits.max_descriptors < 3 {
        return;
    }
    let fm_bytes = CoreShape::of(cfg).fm_bytes as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x51ce_0ff5);
    let golden = |j: &LayerJob| j.golden().unwrap_or_else(|e| panic!("{e}"));
    let mut tries = 0u32;
    let (jobs, starts, hw) = loop {
        tries += 1;
        assert!(
            tries <= 100_000,
            "sliced maps: no list of this kind fits {} in 100,000 random tries",
            cfg.name
        );
        let a = random_layer(&mut rng, cfg, true);
        let Ok((h, w)) = a.out_hw() else { continue };
        let (c, hw) = (a.out_c(), h * w);
        // Room for A's maps to start anywhere in a bus word.
        let beat = cfg.bus_bytes() as usize;
        if !matches!(a.op, LayerOp::Conv2d { .. })
            || a.output_len().map_or(true, |n| n + beat > fm_bytes)
            || a.input.len() + beat > fm_bytes
        {
            continue;
        }
        // A Conv2d's map may start at any byte: slices from any channel.
        if c < 2 {
            continue;
        }
        let codes = codes_of(&golden(&a), a.out_signed);
        let s_b = rng.random_range(1..c);
        let s_c = rng.random_range(0..c);
        let mut over = |from: usize| {
            let n = rng.random_range(1..=c - from);
            let kernel = if rng.random_bool(0.7) { 3 } else { 1 };
            let input = codes[from * hw..(from + n) * hw].to_vec();
            let job = conv_over(&mut rng, cfg, [n, h, w], kernel, &a, input)?;
            // A slice whose outputs read the same from the map's start would not show an
            // offset that was not applied.
            let at_start = LayerJob {
                input: codes[..n * hw].to_vec(),
                ..job.clone()
            };
            (from == 0 || golden(&job) != golden(&at_start)).then_some(job)
        };
        let (Some(b), Some(cj)) = (over(s_b), over(s_c)) else {
            continue;
        };
        break (vec![a, b, cj], [s_b, s_c], hw);
    };
    // A's input and output from random bytes of their words: its map is read from the word it
    // starts in, and the mirror holds its output from the word that starts in.
    let mem = dev.memory();
    let (mut alloc, mut placed) = place_from_start(dev, &jobs);
    // Off the bus word (on a 16-byte bus, also from its second 8-byte word).
    let beat = u64::from(cfg.bus_bytes());
    let (lead_in, lead_out) = (rng.random_range(1..beat), rng.random_range(1..beat));
    let a_in: Vec<u8> = jobs[0].input.iter().map(|&v| v as u8).collect();
    let a_len = placed[0].output_len as u64;
    let region_in = alloc
        .take(a_in.len() as u64 + beat)
        .unwrap_or_else(|e| panic!("{e}"));
    let region_out = alloc
        .take(a_len + beat + layer::SPARE_BYTES)
        .unwrap_or_else(|e| panic!("{e}"));
    let fill = vec![layer::OUTPUT_FILL; (a_len + beat + layer::SPARE_BYTES) as usize];
    dev.mem_write(DeviceAddr(region_in + lead_in), &a_in)
        .and_then(|()| dev.sync_for_device(DeviceAddr(region_in), a_in.len() as u64 + beat))
        .and_then(|()| dev.mem_write(DeviceAddr(region_out), &fill))
        .and_then(|()| dev.sync_for_device(DeviceAddr(region_out), fill.len() as u64))
        .unwrap_or_else(|e| panic!("{e:?}"));
    placed[0].desc.input_addr = DeviceAddr(region_in + lead_in);
    placed[0].desc.output_addr = DeviceAddr(region_out + lead_out);
    let a_out = placed[0].desc.output_addr;
    for (p, s) in placed[1..].iter_mut().zip(starts) {
        p.desc.input_addr = DeviceAddr(a_out.0 + (s * hw) as u64);
    }
    let what = format!(
        "{} sliced maps (A's input from byte {lead_in}, output from byte {lead_out} of a word)",
        cfg.name
    );
    let run = run_placed(dev, mem.base, &placed, cfg, &what);
    check_outputs(dev, &jobs, &placed, &what);
    let mut before = vec![0u8; lead_out as usize];
    dev.sync_for_cpu(DeviceAddr(region_out), lead_out)
        .and_then(|()| dev.mem_read(DeviceAddr(region_out), &mut before))
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(
        before.iter().all(|&b| b == layer::OUTPUT_FILL),
        "{what}: A wrote before its output"
    );
    // Independently of the rule: every read of the list but B's and C's maps, once.
    let (every, b_map) = all_reads(&placed, cfg, 1);
    let (_, c_map) = all_reads(&placed, cfg, 2);
    assert_eq!(
        run.perf.bytes_rd,
        every - b_map - c_map,
        "{what}: PERF_BYTES_RD: B's map ({}) and C's ({}) not read",
        describe(&jobs[1]),
        describe(&jobs[2])
    );
    println!(
        "{what}: B's {b_map}-byte slice from channel {} of the mirror, C's {c_map}-byte slice from channel {} of the resident map ({}; {})",
        starts[0],
        starts[1],
        describe(&jobs[1]),
        describe(&jobs[2])
    );
}

/// Descriptors handed over early (docs/hardware.md, "Early hand-over"), in one list: A, a Conv2d
/// that loads its input map and whose written map fits a feature-map bank; B1, B2, B3, one-tile
/// 3×3 (or 1×1) convs on slices of A's input map from random channels — each starts while the one
/// before still requantizes and writes (the plan's rule says so for every one of them, asserted).
/// B2's output follows B1's (the mirror grows while B1 writes). Every output equals its golden
/// one and the byte counters are the plan's. Then, with faults: a SLVERR on A's first output
/// write must stop the job at descriptor 0, and a DECERR on B1's at descriptor 1, with nothing of
/// a later descriptor written (B1 already runs, or B2); after SOFT_RESET the list runs clean.
pub fn early_handovers<D: Device + InjectFaults>(dev: &mut D, cfg: &AccelConfig, seed: u64) {
    if cfg.limits.max_descriptors < 4 {
        return;
    }
    let shape = CoreShape::of(cfg);
    let fm_bytes = shape.fm_bytes as usize;
    let rows = cfg.array.rows as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xea71_4a2d);
    let golden = |j: &LayerJob| j.golden().unwrap_or_else(|e| panic!("{e}"));
    let mut tries = 0u32;
    let (jobs, starts, hw) = loop {
        tries += 1;
        assert!(
            tries <= 100_000,
            "early hand-overs: no list of this kind fits {} in 100,000 random tries",
            cfg.name
        );
        let a = random_layer(&mut rng, cfg, true);
        let LayerOp::Conv2d {
            in_c, in_h, in_w, ..
        } = a.op
        else {
            continue;
        };
        if a.output_len().map_or(true, |n| n > fm_bytes) {
            continue;
        }
        // A's input codes, read by the others as the outputs of a layer of A's input range.
        let source = LayerJob {
            out_signed: a.in_signed,
            out_bits: a.in_bits,
            ..a.clone()
        };
        let hw = in_h * in_w;
        let over = |rng: &mut ChaCha8Rng| {
            let from = rng.random_range(0..in_c);
            let n = rng.random_range(1..=in_c - from);
            let kernel = if rng.random_bool(0.7) { 3 } else { 1 };
            let input = a.input[from * hw..(from + n) * hw].to_vec();
            conv_over(rng, cfg, [n, in_h, in_w], kernel, &source, input)
                .filter(|j| j.out_c() <= rows)
                .map(|j| (j, from))
        };
        let (Some(b1), Some(b2), Some(b3)) = (over(&mut rng), over(&mut rng), over(&mut rng))
        else {
            continue;
        };
        let both = b1.0.output_len().unwrap_or(usize::MAX) + b2.0.output_len().unwrap_or(0);
        if both > fm_bytes {
            continue;
        }
        break (vec![a, b1.0, b2.0, b3.0], [b1.1, b2.1, b3.1], hw);
    };
    let mem = dev.memory();
    let (mut alloc, mut placed) = place_from_start(dev, &jobs);
    let a_map = placed[0].desc.input_addr.0;
    for (p, from) in placed[1..].iter_mut().zip(starts) {
        p.desc.input_addr = DeviceAddr(a_map + (from * hw) as u64);
    }
    // B1's and B2's outputs in one region, B2's right after B1's.
    let (len1, len2) = (placed[1].output_len, placed[2].output_len);
    let span = len1 + len2 + layer::SPARE_BYTES as usize;
    let region = alloc.take(span as u64).unwrap_or_else(|e| panic!("{e}"));
    let fill_region = |dev: &mut D| {
        dev.mem_write(DeviceAddr(region), &vec![layer::OUTPUT_FILL; span])
            .and_then(|()| dev.sync_for_device(DeviceAddr(region), span as u64))
            .unwrap_or_else(|e| panic!("{e:?}"));
    };
    fill_region(dev);
    placed[1].desc.output_addr = DeviceAddr(region);
    placed[2].desc.output_addr = DeviceAddr(region + len1 as u64);
    // The plan's rule: each of B1, B2, B3 is handed over early.
    let descs: Vec<LayerDescriptor> = placed.iter().map(|p| p.desc).collect();
    let mut resident = plan::Resident::default();
    for (i, d) in descs.iter().enumerate() {
        let s = shape.schedule(d).expect("fits");
        let steps = plan::steps(d, &s, &shape);
        if i > 0 {
            assert!(
                resident.early_handover(&descs[i - 1], d, &s, &steps, &shape),
                "early hand-overs: descriptor {i} ({}) is not handed over early",
                describe(&jobs[i])
            );
        }
        for st in &steps {
            resident.observe(d, &shape, st);
        }
    }
    let what = format!("{} early hand-overs", cfg.name);
    let untouched = |dev: &mut D, i: usize| {
        layer::read_output(dev, &placed[i])
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .all(|&b| b == layer::OUTPUT_FILL)
    };
    // A's and B3's outputs in their own places; B1's and B2's in the region, nothing after them.
    let check = |dev: &mut D, what: &str| {
        for i in [0, 3] {
            check_outputs(dev, &jobs[i..=i], &placed[i..=i], what);
        }
        let got = layer::read_output(
            dev,
            &Placed {
                output_len: span - layer::SPARE_BYTES as usize,
                ..placed[1]
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let (b1, b2) = (
            placed[1].image(&golden(&jobs[1])),
            placed[2].image(&golden(&jobs[2])),
        );
        assert_eq!(
            &got[..len1],
            &b1[..],
            "{what}: B1's output ({})",
            describe(&jobs[1])
        );
        assert_eq!(
            &got[len1..len1 + len2],
            &b2[..],
            "{what}: B2's output ({})",
            describe(&jobs[2])
        );
        assert!(
            got[len1 + len2..].iter().all(|&b| b == layer::OUTPUT_FILL),
            "{what}: wrote past B2's output"
        );
    };
    let refill = |dev: &mut D| {
        for i in [0, 3] {
            let len = placed[i].output_len as u64 + layer::SPARE_BYTES;
            dev.mem_write(
                placed[i].desc.output_addr,
                &vec![layer::OUTPUT_FILL; len as usize],
            )
            .and_then(|()| dev.sync_for_device(placed[i].desc.output_addr, len))
            .unwrap_or_else(|e| panic!("{e:?}"));
        }
        fill_region(dev);
    };
    let run = run_placed(dev, mem.base, &placed, cfg, &what);
    check(dev, &what);
    // Independently of the rule: every read but the three slices, once.
    let every = all_reads(&placed, cfg, 0).0;
    let slices: u64 = (1..4).map(|i| all_reads(&placed, cfg, i).1).sum();
    assert_eq!(
        run.perf.bytes_rd,
        every - slices,
        "{what}: PERF_BYTES_RD: the slices are not read"
    );
    println!(
        "{what}: B1 {}, B2 {}, B3 {} on channels from {:?} of A's map ({})",
        describe(&jobs[1]),
        describe(&jobs[2]),
        describe(&jobs[3]),
        starts,
        describe(&jobs[0])
    );
    // Bus errors on a write of the descriptor before an early one.
    let window = whole_memory(dev);
    let spec = RunSpec {
        desc_addr: mem.base,
        count: 4,
        window,
        timeout: TIMEOUT,
    };
    for (at, resp, code) in [
        (0, Resp::SlvErr, ErrorCode::AxiSlverr),
        (1, Resp::DecErr, ErrorCode::AxiDecerr),
    ] {
        refill(dev);
        let out = placed[at].desc.output_addr.0 & !7;
        dev.inject(out..out + 8, resp, FaultDir::Writes);
        let case = format!("{what}: {resp} on descriptor {at}'s first write");
        let run = layer::run(dev, &spec).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(run.irq, IrqWait::Fired, "{case}: no interrupt (hang)");
        assert_eq!(
            run.error(),
            Some((code.as_u8(), at as u32)),
            "{case}: STATUS {:#x}",
            run.status
        );
        for later in at + 1..4 {
            assert!(
                untouched(dev, later),
                "{case}: descriptor {later}'s output was written"
            );
        }
        dev.write_reg(
            regmap::CTRL.offset,
            regmap::CTRL_SOFT_RESET.mask() | regmap::CTRL_IRQ_EN.mask(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        dev.clear_faults();
        refill(dev);
        run_placed(dev, mem.base, &placed, cfg, &format!("{case}, then again"));
        check(dev, &case);
        println!("{case}: {code} at descriptor {at}, nothing later written");
    }
}

/// Conv2d outputs written one after the other (docs/hardware.md, "The output mirror"), in one
/// list: A, a Conv2d whose written map fits a feature-map bank; B, a conv on a map of its own
/// whose output (A's codes and width, A's H×W) is written right after A's, so the mirror grows to
/// hold both; C, a 3×3 (or 1×1) conv on the two as one map of their channels together, taken
/// from the mirror (its read is skipped: the byte counters are the plan's, and the RTL's must
/// equal them). Every output equals its golden one.
pub fn grown_mirror<D: Device>(dev: &mut D, cfg: &AccelConfig, seed: u64) {
    if cfg.limits.max_descriptors < 3 {
        return;
    }
    let fm_bytes = CoreShape::of(cfg).fm_bytes as usize;
    let beat = cfg.bus_bytes() as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6a0f_e11d);
    let golden = |j: &LayerJob| j.golden().unwrap_or_else(|e| panic!("{e}"));
    let lim = Limits::of(cfg);
    let mut tries = 0u32;
    let (jobs, outs) = loop {
        tries += 1;
        assert!(
            tries <= 100_000,
            "grown mirror: no list of this kind fits {} in 100,000 random tries",
            cfg.name
        );
        let a = random_layer(&mut rng, cfg, true);
        let Ok((h, w)) = a.out_hw() else { continue };
        let Ok(len_a) = a.output_len() else { continue };
        if !matches!(a.op, LayerOp::Conv2d { .. }) || len_a % beat != 0 {
            continue;
        }
        // B: any map of its own, A's output codes.
        let c_in = rng.random_range(1..=lim.dim.min(6));
        let (lo, hi) = if a.in_signed {
            (-(1i32 << (a.in_bits - 1)), (1i32 << (a.in_bits - 1)) - 1)
        } else {
            (0, (1i32 << a.in_bits) - 1)
        };
        let input = (0..c_in * h * w)
            .map(|_| rng.random_range(lo..=hi))
            .collect();
        let source = LayerJob {
            out_signed: a.in_signed,
            out_bits: a.in_bits,
            ..a.clone()
        };
        let kernel = if rng.random_bool(0.5) { 3 } else { 1 };
        let Some(mut b) = conv_over(&mut rng, cfg, [c_in, h, w], kernel, &source, input) else {
            continue;
        };
        b.out_signed = a.out_signed;
        b.out_bits = a.out_bits;
        let len_b = b.out_c() * h * w;
        if len_a + len_b > fm_bytes || !fits(cfg, &b) {
            continue;
        }
        let (out_a, out_b) = (golden(&a), golden(&b));
        let mut both = codes_of(&out_a, a.out_signed);
        both.extend(codes_of(&out_b, a.out_signed));
        let kernel = if rng.random_bool(0.7) { 3 } else { 1 };
        let c_ch = a.out_c() + b.out_c();
        let Some(c) = conv_over(&mut rng, cfg, [c_ch, h, w], kernel, &a, both) else {
            continue;
        };
        break (vec![a, b, c], [out_a, out_b]);
    };
    // A's and B's outputs in one region, A's first.
    let mem = dev.memory();
    let (mut alloc, mut placed) = place_from_start(dev, &jobs);
    let (len_a, len_b) = (outs[0].len(), outs[1].len());
    let span = len_a + len_b + layer::SPARE_BYTES as usize;
    let region = alloc.take(span as u64).unwrap_or_else(|e| panic!("{e}"));
    dev.mem_write(DeviceAddr(region), &vec![layer::OUTPUT_FILL; span])
        .and_then(|()| dev.sync_for_device(DeviceAddr(region), span as u64))
        .unwrap_or_else(|e| panic!("{e:?}"));
    placed[0].desc.output_addr = DeviceAddr(region);
    placed[1].desc.output_addr = DeviceAddr(region + len_a as u64);
    placed[2].desc.input_addr = DeviceAddr(region);
    let what = format!("{} grown mirror", cfg.name);
    let run = run_placed(dev, mem.base, &placed, cfg, &what);
    check_outputs(dev, &jobs[2..], &placed[2..], &what);
    let got = layer::read_output(
        dev,
        &Placed {
            output_len: span,
            ..placed[0]
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&got[..len_a], &outs[0][..], "{what}: A's output");
    assert_eq!(
        &got[len_a..len_a + len_b],
        &outs[1][..],
        "{what}: B's output ({})",
        describe(&jobs[1])
    );
    assert!(
        got[len_a + len_b..span]
            .iter()
            .all(|&b| b == layer::OUTPUT_FILL),
        "{what}: wrote past B's output"
    );
    // Independently of the rule: every read of the list but C's map, once.
    let (every, c_map) = all_reads(&placed, cfg, 2);
    assert_eq!(
        run.perf.bytes_rd,
        every - c_map,
        "{what}: PERF_BYTES_RD: C's map ({}) not read",
        describe(&jobs[2])
    );
    println!(
        "{what}: C's {c_map}-byte map ({len_a} bytes of A's, {len_b} of B's) taken from the mirror"
    );
}

/// Each table (bias, requant, group multipliers) and the output buffer moved to the top of the
/// window so that it ends exactly at WIN_LIMIT: the layer runs and gives the golden outputs. With
/// WIN_LIMIT one byte lower: OutOfWindow at descriptor 0, for a table from the descriptor check,
/// before any of the layer's data is read (a check that drops a table's length, or compares
/// the end off by one, is caught here; the DMA's own burst check would refuse later).
pub fn window_edges<D: Device + InjectFaults>(dev: &mut D, cfg: &AccelConfig, seed: u64) {
    use caq_spec::descriptor::{
        BIAS_ENTRY_BYTES, DESCRIPTOR_BYTES, GROUP_MULT_ENTRY_BYTES, REQUANT_ENTRY_BYTES,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x3d9e);
    let lim = Limits::of(cfg);
    let bits = cfg.max_weight_bits().get();
    // 16 outputs: every table's length (64, 128, 32 · regions bytes) and the output's are whole
    // bus beats, so the DMA's beat-rounded bursts end at the table's end too.
    let o = 16;
    let k = 40.min(lim.k_at(cfg, u32::from(bits))).min(lim.dim);
    if lim.dim < o {
        return;
    }
    let gs = cfg.array.group_size as usize;
    let act_bits = cfg.array.act_bits as u8;
    let top_code = (1i32 << (bits - 1)) - 1;
    let job = LayerJob {
        op: LayerOp::Dense { in_c: k, batch: 1 },
        groups: vec![WeightGroup {
            bits,
            shift: 0,
            codes: Array2::from_shape_fn((o, k), |_| rng.random_range(-top_code..=top_code)),
        }],
        active: 1,
        regions: (gs != 0).then(|| {
            (
                Array2::from_shape_fn((o, k.div_ceil(gs)), |_| rng.random_range(1..=256u16)),
                gs,
            )
        }),
        bias: (0..o).map(|_| rng.random_range(-5000..5000)).collect(),
        requant: (0..o)
            .map(|_| Requant::from_real(rng.random_range(1e-4..1e-2)).expect("positive"))
            .collect(),
        relu: false,
        in_signed: false,
        in_bits: act_bits,
        out_signed: true,
        out_bits: act_bits,
        input: (0..k)
            .map(|_| rng.random_range(0..1i32 << (act_bits - 1)))
            .collect(),
    };
    let golden = job.golden().unwrap_or_else(|e| panic!("{e}"));
    let (desc_addr, placed) = place_all(dev, std::slice::from_ref(&job));
    let p = placed[0];
    let mut d0 = p.desc;
    d0.flags.last = true;
    let bus = u64::from(cfg.bus_bytes());
    let top = (dev.memory().end() - 4096) & !(bus - 1);
    assert!(
        p.desc.output_addr.0 + p.output_len as u64 <= top,
        "the job's buffers lie below the moved one"
    );
    let base = dev.memory().base;
    let run_at = |dev: &mut D, d: &LayerDescriptor, limit: u64| {
        dev.mem_write(desc_addr, &d.encode())
            .unwrap_or_else(|e| panic!("{e}"));
        let spec = RunSpec {
            desc_addr,
            count: 1,
            window: Window {
                base,
                limit: DeviceAddr(limit),
            },
            timeout: TIMEOUT,
        };
        layer::run(dev, &spec).unwrap_or_else(|e| panic!("{e}"))
    };
    let refused = |dev: &mut D, run: Run, what: &str| {
        assert_eq!(run.irq, IrqWait::Fired, "{what}: no interrupt (hang)");
        assert_eq!(
            run.error(),
            Some((ErrorCode::OutOfWindow.as_u8(), 0)),
            "{what}: STATUS {:#x}",
            run.status
        );
        dev.write_reg(
            regmap::CTRL.offset,
            regmap::CTRL_SOFT_RESET.mask() | regmap::CTRL_IRQ_EN.mask(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    };
    let out_c = o as u64;
    type Set = fn(&mut LayerDescriptor, DeviceAddr);
    let mut tables: Vec<(&str, DeviceAddr, u64, Set)> = vec![
        (
            "bias table",
            d0.bias_addr,
            out_c * BIAS_ENTRY_BYTES,
            |d, a| d.bias_addr = a,
        ),
        (
            "requant table",
            d0.requant_addr,
            out_c * REQUANT_ENTRY_BYTES,
            |d, a| d.requant_addr = a,
        ),
    ];
    if d0.flags.grouped {
        tables.push((
            "group-multiplier table",
            d0.group_mult_addr,
            out_c * d0.regions() * GROUP_MULT_ENTRY_BYTES,
            |d, a| d.group_mult_addr = a,
        ));
    }
    for (what, from, len, set) in tables {
        assert_eq!(len % bus, 0, "{what}: whole beats");
        let mut bytes = vec![0; len as usize];
        dev.mem_read(from, &mut bytes)
            .unwrap_or_else(|e| panic!("{e}"));
        dev.mem_write(DeviceAddr(top), &bytes)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut d = d0;
        set(&mut d, DeviceAddr(top));
        let run = run_at(dev, &d, top + len);
        assert!(
            run.done(),
            "{what} ending at WIN_LIMIT: STATUS {:#x} ({:?})",
            run.status,
            run.error()
        );
        check_outputs(dev, std::slice::from_ref(&job), &placed, what);
        let run = run_at(dev, &d, top + len - 1);
        refused(dev, run, &format!("{what} one byte past WIN_LIMIT"));
        assert!(
            run.perf.bytes_rd <= DESCRIPTOR_BYTES as u64,
            "{what} one byte past WIN_LIMIT: refused after {} bytes were read; the descriptor \
             check must refuse it before the layer reads anything",
            run.perf.bytes_rd
        );
    }
    // The output buffer at the top: written whole when it ends at WIN_LIMIT, refused (by the
    // DMA's burst check) when the limit is one byte lower.
    let len = p.output_len as u64;
    assert_eq!(len % bus, 0, "output: whole beats");
    let mut d = d0;
    d.output_addr = DeviceAddr(top);
    dev.mem_write(DeviceAddr(top), &vec![layer::OUTPUT_FILL; len as usize])
        .unwrap_or_else(|e| panic!("{e}"));
    let run = run_at(dev, &d, top + len);
    assert!(
        run.done(),
        "output ending at WIN_LIMIT: STATUS {:#x} ({:?})",
        run.status,
        run.error()
    );
    let mut got = vec![0; len as usize];
    dev.sync_for_cpu(DeviceAddr(top), len)
        .unwrap_or_else(|e| panic!("{e}"));
    dev.mem_read(DeviceAddr(top), &mut got)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, p.image(&golden), "output ending at WIN_LIMIT");
    let run = run_at(dev, &d, top + len - 1);
    refused(dev, run, "output one byte past WIN_LIMIT");
}
