//! The DMA engine through the whole design, against the AXI memory model and its protocol
//! checker: long requests split at max_burst and 4 KiB boundaries (starting on odd 64-bit words,
//! which a 128-bit bus must handle), SLVERR and DECERR on reads and writes reported in
//! STATUS.ERR_CODE, soft resets at any point of a job, and the next job correct every time. The
//! checker fails a run on any AXI4 rule the master breaks, so every passing run here is also a
//! protocol check. Seeds are printed; `CAQ_SEED=<n>` replays one.

use std::time::Duration;

use caq_model::requant::Requant;
use caq_sim::axi_mem::{AxiMemOptions, Channel, DEFAULT_BASE as BASE};
use caq_sim::fault::{FaultDir, InjectFaults};
use caq_sim::layer::{self, Alloc, OUTPUT_FILL, Placed, SPARE_BYTES};
use caq_sim::rtl;
use caq_sim::{LayerJob, LayerOp, Resp, RtlDevice, Run, WeightGroup};
use caq_spec::CoreShape;
use caq_spec::descriptor::LayerDescriptor;
use caq_spec::device::Device;
use caq_spec::regmap::{self, ErrorCode};
use caq_spec::{AccelConfig, DeviceAddr, IrqWait};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod common;
use common::seed;

fn config() -> AccelConfig {
    rtl::default_config().unwrap_or_else(|e| panic!("{e}"))
}

/// The longest K an 8-bit layer may have on this config, capped to keep the simulation short.
fn long_k(cfg: &AccelConfig) -> usize {
    let s = CoreShape::of(cfg);
    let k = (8 * s.wdepth)
        .min(s.adepth * s.cols)
        .min(cfg.limits.max_k)
        .min(2048);
    k as usize
}

/// A Dense layer of one 8-bit group.
fn dense(rng: &mut ChaCha8Rng, k: usize, o: usize) -> LayerJob {
    LayerJob {
        op: LayerOp::Dense { in_c: k, batch: 1 },
        groups: vec![WeightGroup {
            bits: 8,
            shift: 0,
            codes: Array2::from_shape_fn((o, k), |_| rng.random_range(-128..128)),
        }],
        active: 1,
        regions: None,
        bias: (0..o).map(|_| rng.random_range(-5000..5000)).collect(),
        requant: (0..o)
            .map(|_| Requant::from_real(rng.random_range(1e-5..1e-3)).unwrap())
            .collect(),
        relu: false,
        in_signed: false,
        in_bits: 8,
        out_signed: true,
        out_bits: 8,
        input: (0..k).map(|_| rng.random_range(0..=255)).collect(),
    }
}

fn device(seed: u64, stall_percent: u8) -> RtlDevice {
    RtlDevice::new(
        &config(),
        seed,
        AxiMemOptions {
            seed,
            stall_percent,
            read_latency: 12,
            write_latency: 6,
            log_bursts: true,
            ..AxiMemOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Device time for `cycles` clock cycles of this config.
fn cycles(cfg: &AccelConfig, cycles: u64) -> Duration {
    Duration::from_secs_f64(cycles as f64 / (cfg.clock_mhz * 1e6))
}

/// `jobs` placed from `first` on, exactly there (not rounded up to a buffer alignment: the first
/// buffer's address is the test's choice), the descriptor list at BASE.
fn place(dev: &mut RtlDevice, jobs: &[LayerJob], first: u64) -> Vec<Placed> {
    let end = dev.memory().end();
    let mut alloc = Alloc { next: first, end };
    jobs.iter()
        .map(|j| j.place(dev, &mut alloc).unwrap())
        .collect()
}

/// Places `jobs` from `first` on and runs them for at most `limit` cycles.
fn run(dev: &mut RtlDevice, jobs: &[LayerJob], first: u64, limit: Duration) -> (Run, Vec<Placed>) {
    run_with_output(dev, jobs, first, None, limit)
}

/// [`run`], with the first job's outputs moved to `out_at` (when given). After the interrupt
/// the bus must be idle: the core finishes a list only after every burst it caused.
fn run_with_output(
    dev: &mut RtlDevice,
    jobs: &[LayerJob],
    first: u64,
    out_at: Option<u64>,
    limit: Duration,
) -> (Run, Vec<Placed>) {
    let mut placed = place(dev, jobs, first);
    if let Some(at) = out_at {
        placed[0].desc.output_addr = DeviceAddr(at);
        let fill = vec![OUTPUT_FILL; placed[0].output_len + SPARE_BYTES as usize];
        dev.mem_write(DeviceAddr(at), &fill).unwrap();
    }
    let descs: Vec<LayerDescriptor> = placed.iter().map(|p| p.desc).collect();
    let run = layer::run_list(dev, DeviceAddr(BASE), &descs, limit).unwrap();
    if run.irq == IrqWait::Fired {
        dev.mem().check_idle().unwrap();
    }
    (run, placed)
}

fn assert_done_and_golden(dev: &mut RtlDevice, run: Run, jobs: &[LayerJob], placed: &[Placed]) {
    assert_eq!(run.irq, IrqWait::Fired, "no interrupt");
    assert!(run.done(), "STATUS {:#x}", run.status);
    for (i, (j, p)) in jobs.iter().zip(placed).enumerate() {
        let got = layer::read_output(dev, p).unwrap();
        assert_eq!(&got[..p.output_len], &j.golden().unwrap()[..], "layer {i}");
        assert!(
            got[p.output_len..].iter().all(|&b| b == OUTPUT_FILL),
            "layer {i}: wrote past the outputs"
        );
    }
}

#[test]
fn long_requests_split_at_max_burst_and_4k_boundaries() {
    let cfg = config();
    let seed = seed("long requests");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut dev = device(seed, 25);
    let k = long_k(&cfg);
    let bytes = u64::from(cfg.axi.data_width / 8);
    // Descriptor addresses are multiples of the bus width (MISALIGNED otherwise). The first
    // buffer (the K-byte input) starts just below a 4 KiB boundary, so its read crosses it; the
    // outputs start one beat below a 4 KiB boundary: with R >= 16 rows an output write spans it
    // (sim-small's 4 rows write one word per tile). On a 128-bit bus, odd word counts (plane rows,
    // the input, the outputs) end requests on half beats.
    let starts = [
        (BASE + 3 * 4096 - bytes * 37, BASE + 64 * 4096 - bytes),
        // 51 beats below the boundary: an odd word count that still lies inside the shortest
        // input (K >= 1024 bytes), so the crossing never depends on the random row count.
        (BASE + 9 * 4096 - bytes * 51, BASE + 80 * 4096 - 3 * bytes),
    ];
    for (first, out_at) in starts {
        let o = rng.random_range(1..=2 * cfg.array.rows as usize + 3);
        let jobs = vec![dense(&mut rng, k, o), dense(&mut rng, k / 2 + 8, o)];
        dev.mem().clear_bursts();
        let (r, placed) = run_with_output(
            &mut dev,
            &jobs,
            first,
            Some(out_at),
            cycles(&cfg, 5_000_000),
        );
        assert_done_and_golden(&mut dev, r, &jobs, &placed);
        let bursts = dev.mem().bursts().to_vec();
        let reads: Vec<_> = bursts.iter().filter(|(c, _)| *c == Channel::Ar).collect();
        assert!(
            reads
                .iter()
                .any(|(_, a)| u32::from(a.len) + 1 == cfg.axi.max_burst),
            "some read burst has max_burst = {} beats",
            cfg.axi.max_burst
        );
        let end = |a: &caq_sim::axi_mem::AddrReq| a.addr + (u64::from(a.len) + 1) * bytes;
        assert!(
            reads.windows(2).any(|w| {
                let (a, b) = (&w[0].1, &w[1].1);
                end(a) % 4096 == 0 && b.addr == end(a)
            }),
            "a request runs across a 4 KiB boundary in two bursts"
        );
        assert!(
            bursts.iter().any(|(c, _)| *c == Channel::Aw),
            "the outputs are written"
        );
    }
}

#[test]
fn bus_errors_on_reads_and_writes_give_their_code_and_a_soft_reset_recovers() {
    let cfg = config();
    let seed = seed("bus errors");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut dev = device(seed, 20);
    let k = rng.random_range(64..=256usize);
    let o = rng.random_range(1..=2 * cfg.array.rows as usize);
    let jobs = vec![dense(&mut rng, k, o)];
    let first = BASE + 4096 + u64::from(cfg.axi.data_width / 8);
    // Where each fault lands: an address range of the placed job.
    type Target = fn(&Placed) -> (u64, u64);
    let weights: Target = |p| {
        let a = p.desc.plane_groups.as_slice()[0].weight_addr.0;
        (a + 8, a + 16)
    };
    let input: Target = |p| (p.desc.input_addr.0, p.desc.input_addr.0 + 8);
    let output: Target = |p| (p.desc.output_addr.0, p.desc.output_addr.0 + 1);
    let cases = [
        (FaultDir::Reads, Resp::SlvErr, weights, ErrorCode::AxiSlverr),
        (FaultDir::Reads, Resp::DecErr, input, ErrorCode::AxiDecerr),
        (FaultDir::Writes, Resp::SlvErr, output, ErrorCode::AxiSlverr),
        (FaultDir::Writes, Resp::DecErr, output, ErrorCode::AxiDecerr),
        (FaultDir::Both, Resp::DecErr, weights, ErrorCode::AxiDecerr),
    ];
    for (dir, resp, target, code) in cases {
        // Place once to learn the addresses, then fault them and run.
        let (lo, hi) = target(&place(&mut dev, &jobs, first)[0]);
        dev.inject(lo..hi, resp, dir);
        let (r, _) = run(&mut dev, &jobs, first, cycles(&cfg, 2_000_000));
        assert_eq!(
            r.error().map(|(c, _)| c),
            Some(code.as_u8()),
            "{dir:?} {resp}: STATUS {:#x}",
            r.status
        );
        dev.clear_faults();
        dev.write_reg(regmap::CTRL.offset, regmap::CTRL_SOFT_RESET.mask())
            .unwrap();
        let (r, placed) = run(&mut dev, &jobs, first, cycles(&cfg, 2_000_000));
        assert_done_and_golden(&mut dev, r, &jobs, &placed);
    }
}

/// A soft reset abandons the job at once; the DMA finishes the bursts in flight without telling
/// the core (the checker sees every burst complete), and the next job runs correctly.
#[test]
fn soft_reset_at_any_point_leaves_the_bus_clean_for_the_next_job() {
    let cfg = config();
    let seed = seed("soft reset");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut dev = device(seed, 30);
    let k = long_k(&cfg) / 2;
    let o = 3 * cfg.array.rows as usize + 1;
    let jobs = vec![dense(&mut rng, k, o)];
    let first = BASE + 2 * 4096 - 11 * u64::from(cfg.axi.data_width / 8);
    let (r, placed) = run(&mut dev, &jobs, first, cycles(&cfg, 5_000_000));
    assert_done_and_golden(&mut dev, r, &jobs, &placed);
    let total = r.perf.cycles;
    for step in 1..=12u64 {
        let at = total * step / 13 + rng.random_range(0..7);
        let (r, _) = run(&mut dev, &jobs, first, cycles(&cfg, at));
        assert_eq!(
            r.irq,
            IrqWait::TimedOut,
            "expected the job to be still running at cycle {at}: {r:?}"
        );
        dev.write_reg(regmap::CTRL.offset, regmap::CTRL_SOFT_RESET.mask())
            .unwrap();
        let status = dev.read_reg(regmap::STATUS.offset).unwrap();
        assert_eq!(status & regmap::STATUS_BUSY.mask(), 0, "STATUS {status:#x}");
        let (r, placed) = run(&mut dev, &jobs, first, cycles(&cfg, 5_000_000));
        assert_done_and_golden(&mut dev, r, &jobs, &placed);
    }
}
