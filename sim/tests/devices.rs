//! One randomized suite, run unchanged on every backend of `caq_spec::Device`: random lists of
//! Dense and Conv2d layers whose output bytes must equal the golden kernels', the largest
//! accumulators the hardware can meet, the performance counters the device semantics fix
//! (plane-steps, bytes moved), and every error a run can stop on — each with its code and
//! descriptor index, no hang, and a correct run after SOFT_RESET.
//!
//! Backends: [`FuncDevice`] always, on every shipped config; `caq_sim::RtlDevice` (feature
//! `verilator`) on the config the model was built from, with random memory stalls, Conv2d
//! layers gated by [`RTL_RUNS_CONV`].
//!
//! Seeds are printed; `CAQ_SEED=<n>` replays one.

use std::time::Duration;

use caq_model::nested;
use caq_model::quant::{QuantWeights, Rounding};
use caq_model::requant::Requant;
use caq_sim::func::plan::{self, Step};
use caq_sim::layer::{self, Alloc, Placed, RunSpec};
use caq_sim::{
    FaultDir, FuncDevice, InjectFaults, LayerJob, LayerOp, Resp, Run, SimError, TimingModel,
    WeightGroup,
};
use caq_spec::CoreShape;
use caq_spec::descriptor::{LayerDescriptor, Window};
use caq_spec::regmap::{self, ErrorCode};
use caq_spec::{AccelConfig, Caps, Device, DeviceAddr, IrqWait, MemRegion};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Device time a run may take before the suite calls it a hang.
const TIMEOUT: Duration = Duration::from_millis(50);
/// Where the functional model's memory starts, and its size.
const MEM_BASE: u64 = 0x1000_0000;
const MEM_BYTES: u64 = 4 << 20;

mod common;
use common::seed;

fn config(name: &str) -> AccelConfig {
    let path = format!("{}/../configs/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    AccelConfig::load(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn func_device(cfg: &AccelConfig) -> FuncDevice {
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
fn random_weights(
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

fn random_op(rng: &mut ChaCha8Rng, conv: bool) -> LayerOp {
    if !conv || rng.random_bool(0.5) {
        let in_c = if rng.random_bool(0.8) {
            rng.random_range(1..=200)
        } else {
            rng.random_range(200..=600)
        };
        // Mostly single inputs; sometimes a batch that each loaded weight tile serves.
        let batch = if rng.random_bool(0.75) {
            1
        } else {
            rng.random_range(2..=5)
        };
        return LayerOp::Dense { in_c, batch };
    }
    let kernel: [usize; 2] = [rng.random_range(1..=7), rng.random_range(1..=7)];
    let pad = rng.random_range(0..=(kernel[0].min(kernel[1]) / 2).min(3));
    let stride = rng.random_range(1..=2);
    let min_h = kernel[0].saturating_sub(2 * pad).max(1);
    let min_w = kernel[1].saturating_sub(2 * pad).max(1);
    LayerOp::Conv2d {
        in_c: rng.random_range(1..=6),
        in_h: rng.random_range(min_h..=min_h + 9),
        in_w: rng.random_range(min_w..=min_w + 9),
        kernel,
        stride,
        pad,
    }
}

/// A random layer the config's core can hold.
fn random_layer(rng: &mut ChaCha8Rng, cfg: &AccelConfig, conv: bool) -> LayerJob {
    let caps = Caps::from_config(cfg).expect("valid config");
    let shape = CoreShape::of(cfg);
    loop {
        let op = random_op(rng, conv);
        let rows = cfg.array.rows as usize;
        let o = rng.random_range(1..=2 * rows + 3);
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
            out_signed: !relu && rng.random_bool(0.7),
            out_bits,
            input: (0..in_len)
                .map(|_| {
                    if in_signed {
                        rng.random_range(-128..=127)
                    } else {
                        rng.random_range(0..=255)
                    }
                })
                .collect(),
        };
        // Lay it out in a scratch device to see the descriptor the device will check.
        let mut scratch = func_device(cfg);
        let mut alloc = Alloc::new(DeviceAddr(MEM_BASE), MEM_BASE + MEM_BYTES);
        let Ok(placed) = job.place(&mut scratch, &mut alloc) else {
            continue;
        };
        if placed.desc.validate(&caps).is_ok() && shape.check_capacity(&placed.desc).is_ok() {
            return job;
        }
    }
}

/// Plane-steps, bytes read and bytes written the device semantics fix for a list.
fn expected_counts(descs: &[LayerDescriptor], cfg: &AccelConfig) -> (u64, u64, u64) {
    let shape = CoreShape::of(cfg);
    let (mut ops, mut rd, mut wr) = (0, 0, 0);
    for d in descs {
        rd += 8 * 16;
        let sched = shape.schedule(d).expect("the list fits the device");
        ops += sched.plane_steps();
        for step in plan::steps(d, &sched, &shape) {
            match step {
                Step::Read { words, .. } => rd += 8 * words,
                Step::Write { bytes, .. } => wr += bytes,
                Step::Compute { .. } => {}
            }
        }
    }
    (ops, rd, wr)
}

fn whole_memory<D: Device>(dev: &D) -> Window {
    let mem = dev.memory();
    Window {
        base: mem.base,
        limit: DeviceAddr(mem.end()),
    }
}

fn describe(j: &LayerJob) -> String {
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
fn place_all<D: Device>(dev: &mut D, jobs: &[LayerJob]) -> (DeviceAddr, Vec<Placed>) {
    let mem = dev.memory();
    let desc_addr = mem.base;
    let mut alloc = Alloc::new(DeviceAddr(mem.base.0 + 128 * 64), mem.end());
    let placed = jobs
        .iter()
        .map(|j| j.place(dev, &mut alloc).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    (desc_addr, placed)
}

fn check_outputs<D: Device>(dev: &mut D, jobs: &[LayerJob], placed: &[Placed], what: &str) {
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

fn run_ok<D: Device>(dev: &mut D, jobs: &[LayerJob], cfg: &AccelConfig, what: &str) -> Run {
    let (desc_addr, placed) = place_all(dev, jobs);
    let descs: Vec<LayerDescriptor> = placed.iter().map(|p| p.desc).collect();
    let run = layer::run_list(dev, desc_addr, &descs, TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.irq, IrqWait::Fired, "{what}: no interrupt");
    assert!(
        run.done(),
        "{what}: STATUS {:#x} ({:?})",
        run.status,
        run.error()
    );
    check_outputs(dev, jobs, &placed, what);
    let (ops, rd, wr) = expected_counts(&descs, cfg);
    assert_eq!(run.perf.plane_ops, ops, "{what}: PERF_PLANE_OPS");
    assert_eq!(run.perf.busy_cycles, ops, "{what}: PERF_BUSY_CYCLES");
    assert_eq!(run.perf.bytes_rd, rd, "{what}: PERF_BYTES_RD");
    assert_eq!(run.perf.bytes_wr, wr, "{what}: PERF_BYTES_WR");
    // What the timing model predicts for this device, printed for calibration (FuncDevice
    // reports the estimate itself).
    let caps = Caps::from_config(cfg).expect("valid config");
    let estimate = TimingModel::default().estimate(&CoreShape::of(cfg), &descs);
    println!(
        "{what}: PERF_CYCLES {} (stall {}), estimate {} ({:+.1}%)",
        run.perf.cycles,
        run.perf.stall_cycles,
        estimate.cycles,
        100.0 * (estimate.cycles as f64 / run.perf.cycles.max(1) as f64 - 1.0)
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
fn expect_error<D: Device + InjectFaults>(
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
    // One list with every supported weight width as the only plane group of a layer (at most 8
    // planes, which every layer random_layer makes holds).
    let sweep: Vec<LayerJob> = cfg
        .supported_weight_bits()
        .map(|b| {
            let mut j = random_layer(&mut rng, cfg, opts.conv);
            let (o, k, bits) = (j.out_c(), j.k(), b.get());
            let lim = 1i32 << (bits - 1);
            j.groups = vec![WeightGroup {
                bits,
                shift: 0,
                codes: Array2::from_shape_fn((o, k), |_| rng.random_range(-lim..lim)),
            }];
            j.active = 1;
            j
        })
        .collect();
    run_ok(
        dev,
        &sweep,
        cfg,
        &format!("{} weight-width sweep", cfg.name),
    );
    for round in 0..opts.rounds {
        let jobs: Vec<LayerJob> = (0..rng.random_range(1..=3))
            .map(|_| random_layer(&mut rng, cfg, opts.conv))
            .collect();
        run_ok(dev, &jobs, cfg, &format!("{} round {round}", cfg.name));
    }
}

/// A descriptor field edit and the error code it must produce.
type Edit = (ErrorCode, &'static str, fn(&mut [u8; 128], &Placed, u64));

fn put_word(bytes: &mut [u8; 128], word: usize, f: impl Fn(u32) -> u32) {
    let at = 4 * word;
    let w = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    bytes[at..at + 4].copy_from_slice(&f(w).to_le_bytes());
}

/// One descriptor edit per check of `caq_spec::descriptor::CHECKS`, and the code each gives.
fn field_edits() -> Vec<Edit> {
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
    let good = loop {
        let mut j = random_layer(&mut rng, cfg, false);
        j.active = j.groups.len();
        j.regions = None;
        if j.out_c() > cfg.bus_bytes() as usize {
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
    let at = list(dev, [false, true]);
    expect_error(
        dev,
        cfg,
        &spec(at, cfg.limits.max_descriptors + 1, window),
        (ErrorCode::DescCount, 0),
        &good,
        "DESC_COUNT = MAX_DESCRIPTORS + 1",
    );
    expect_error(
        dev,
        cfg,
        &spec(DeviceAddr(at.0 | 1 << cfg.axi.addr_width), 2, window),
        (ErrorCode::OutOfWindow, 0),
        &good,
        "DESC_ADDR beyond the address space",
    );
    expect_error(
        dev,
        cfg,
        &spec(DeviceAddr(at.0 + 4), 2, window),
        (ErrorCode::Misaligned, 0),
        &good,
        "DESC_ADDR + 4",
    );
    // Descriptor 1 lies past the window; everything descriptor 0 touches lies in it. The list
    // goes at the top of memory, its buffers below.
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

    // Requests that pass the descriptor checks (they look at start addresses and tables only)
    // but run past the window: the output (moved to the last buffer), then the last weight
    // group's planes (the last buffer as placed).
    let bus = u64::from(cfg.bus_bytes());
    let (desc_addr, placed) = place_all(dev, std::slice::from_ref(&good));
    let mut d = placed[0].desc;
    d.flags.last = true;
    let last_group = *d.plane_groups.as_slice().last().expect("a group");
    let out = (last_group.weight_addr.0 + 64 * 1024).next_multiple_of(64);
    let short = |limit: u64| Window {
        base: window.base,
        limit: DeviceAddr(limit),
    };
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

/// The largest accumulators the hardware can meet: every weight −128 (then +127), every
/// activation 255, K = 1024 (8 planes of 16 words per row: the whole weight bank of sim-small),
/// region multipliers of 256, biases at the i32 extremes, with requant factors that saturate both
/// ways, a zero multiplier, and one that maps the total exactly into range. |Σ 256·acc_g| =
/// 256 · 1024 · 128 · 255 ≈ 2^33.
pub fn extreme_accumulators<D: Device>(dev: &mut D, cfg: &AccelConfig) {
    let k = 1024;
    let o = 7;
    let gs = cfg.array.group_size as usize;
    for w in [-128, 127] {
        let mut requant: Vec<Requant> = [1.0, 1e-3, 2e-9, 0.5, 3e-10, 1.5e-9, 1e-12]
            .iter()
            .map(|&r| Requant::from_real(r).expect("positive factor below 2^30"))
            .collect();
        requant[6] = Requant { mult: 0, shift: 63 };
        let job = LayerJob {
            op: LayerOp::Dense { in_c: k, batch: 1 },
            groups: vec![WeightGroup {
                bits: 8,
                shift: 0,
                codes: Array2::from_elem((o, k), w),
            }],
            active: 1,
            regions: (gs != 0).then(|| (Array2::from_elem((o, k.div_ceil(gs)), 256u16), gs)),
            bias: vec![i32::MIN, i32::MAX, 0, -1, i32::MAX, i32::MIN, 12345],
            requant,
            relu: false,
            in_signed: false,
            out_signed: true,
            out_bits: 8,
            input: vec![255; k],
        };
        let golden = job.golden().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            golden.contains(&127) || golden.contains(&128),
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
    extreme_accumulators(dev, cfg);
    fault_cases(dev, cfg, seed);
}

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
    let caps = Caps::from_config(&cfg).expect("valid config");
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
    let cfg = caq_sim::rtl::design::config().expect("the config the model was built from");
    let options = AxiMemOptions {
        seed,
        stall_percent: 20,
        ..AxiMemOptions::default()
    };
    let mut dev = RtlDevice::new(seed, options).unwrap_or_else(|e| panic!("{e}"));
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
    let cfg = caq_sim::rtl::design::config().expect("the config the model was built from");
    let jobs: Vec<LayerJob> = (0..3)
        .map(|_| random_layer(&mut rng, &cfg, RTL_RUNS_CONV))
        .collect();
    let mut first = None;
    for x_seed in [seed, seed ^ 0xdead_beef, seed.wrapping_add(12345)] {
        let options = AxiMemOptions {
            seed,
            ..AxiMemOptions::default()
        };
        let mut dev = RtlDevice::new(x_seed, options).unwrap_or_else(|e| panic!("{e}"));
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
    let cfg = caq_sim::rtl::design::config().expect("the config the model was built from");
    let caps = Caps::from_config(&cfg).expect("valid config");
    let mut dev = RtlDevice::new(seed, AxiMemOptions::default()).unwrap_or_else(|e| panic!("{e}"));
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
                100.0
                    * (model.estimate(&CoreShape::of(&cfg), descs).cycles as f64 / *cycles as f64
                        - 1.0)
            })
            .collect();
        let worst = errors.iter().fold(0f64, |m, e| m.max(e.abs()));
        let mean = errors.iter().map(|e| e.abs()).sum::<f64>() / errors.len() as f64;
        println!("{name}: mean |error| {mean:.1}%, worst {worst:.1}%");
    }
}
