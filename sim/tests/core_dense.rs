//! Co-simulation of the generated core through its real ports: registers over AXI4-Lite, data
//! through the word memory ports served by a Rust memory model with random stalls. Every case is
//! a random Dense layer (or a list of them) whose output bytes must equal the golden kernel's,
//! bit for bit. Seeds are printed; `CAQ_SEED=<n>` replays one.

use caq_model::nested;
use caq_model::quant::{QuantWeights, Rounding};
use caq_model::requant::Requant;
use caq_sim::Resp;
use caq_sim::axi_mem::{AxiMem, AxiMemOptions, DEFAULT_BASE as BASE};
use caq_sim::fault::{FaultDir, InjectFaults};
use caq_sim::job::{self, DenseJob, Group, Placed};
use caq_sim::rtl::design;
use caq_sim::{AxiLite, AxiLiteOptions, RtlModel};
use caq_spec::AccelConfig;
use caq_spec::DeviceAddr;
use caq_spec::descriptor::Opcode;
use caq_spec::regmap::{self, ErrorCode};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn seed() -> u64 {
    let s = std::env::var("CAQ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("CAQ_SEED={s}");
    s
}

fn config() -> AccelConfig {
    design::config().expect("the model's config parses")
}

/// A random Dense layer at one precision: a nested chain from random full-bit codes at one of
/// its levels, or one plain group of 1..=8 bits; K and out_c not multiples of the array.
fn random_job(rng: &mut ChaCha8Rng, cfg: &AccelConfig) -> DenseJob {
    let k = rng.random_range(1..=200usize);
    let o = rng.random_range(1..=19usize);
    let (groups, active) = if rng.random_bool(0.7) {
        let n = rng.random_range(3..=8u8);
        let mut chain = vec![n];
        while chain.len() < 4 && *chain.last().unwrap() > 2 && rng.random_bool(0.6) {
            let top = *chain.last().unwrap();
            chain.push(rng.random_range(2..top));
        }
        let lim = 1i32 << (n - 1);
        let full = QuantWeights {
            bits: n,
            codes: Array2::from_shape_fn((o, k), |_| rng.random_range(-lim..lim)),
            channel_scale: vec![1.0; o],
            groups: None,
        };
        let nw = nested::nest(&full, &chain, 1, Rounding::Nearest).unwrap();
        let level = chain[rng.random_range(0..chain.len())];
        let active = nw.active_groups(level).unwrap();
        let groups = nw
            .groups
            .into_iter()
            .map(|g| Group {
                bits: g.bits,
                shift: g.shift,
                codes: g.codes,
            })
            .collect();
        (groups, active)
    } else {
        let bits = rng.random_range(1..=8u8);
        let lim = 1i32 << (bits - 1);
        let group = Group {
            bits,
            shift: rng.random_range(0..=8 - bits),
            codes: Array2::from_shape_fn((o, k), |_| rng.random_range(-lim..lim)),
        };
        (vec![group], 1)
    };
    let gs = cfg.array.group_size as usize;
    let regions = (gs != 0 && rng.random_bool(0.5)).then(|| {
        (
            Array2::from_shape_fn((o, k.div_ceil(gs)), |_| rng.random_range(1..=256u16)),
            gs,
        )
    });
    let requant = (0..o)
        .map(|_| {
            // Mostly realistic factors; sometimes huge or tiny ones, to saturate and to flush.
            let real = match rng.random_range(0..10) {
                0 => rng.random_range(0.5..4.0),
                1 => rng.random_range(1e-7..1e-5),
                _ => rng.random_range(1e-4..5e-2),
            };
            Requant::from_real(real).unwrap()
        })
        .collect();
    let relu = rng.random_bool(0.5);
    let in_signed = rng.random_bool(0.5);
    DenseJob {
        groups,
        active,
        regions,
        bias: (0..o).map(|_| rng.random_range(-20000..20000)).collect(),
        requant,
        relu,
        in_signed,
        out_signed: !relu && rng.random_bool(0.7),
        out_bits: rng.random_range(2..=8u8),
        input: (0..k)
            .map(|_| {
                if in_signed {
                    rng.random_range(-128..=127)
                } else {
                    rng.random_range(0..=255)
                }
            })
            .collect(),
    }
}

/// The AXI memory behind the DMA, with `stall_percent` random stalls on every channel.
fn memory(seed: u64, stall_percent: u8) -> AxiMem {
    AxiMem::new(AxiMemOptions {
        seed,
        stall_percent,
        ..AxiMemOptions::default()
    })
    .unwrap()
}

fn model(seed: u64) -> RtlModel {
    let mut m = RtlModel::new(seed);
    m.reset(4);
    m
}

fn place_all(mem: &mut AxiMem, jobs: &[DenseJob]) -> Vec<Placed> {
    let mut next = BASE + 4096;
    let placed: Vec<Placed> = jobs
        .iter()
        .map(|j| j.place(mem, &mut next).unwrap())
        .collect();
    job::write_list(mem, BASE, &placed).unwrap();
    placed
}

fn code_of(status: u32) -> u8 {
    regmap::STATUS_ERR_CODE.get(status) as u8
}

#[test]
fn random_dense_layers_match_the_golden_model() {
    let cfg = config();
    let seed = seed();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut m = model(seed);
    let mut mem = memory(seed, 30);
    for round in 0..12 {
        let jobs: Vec<DenseJob> = (0..rng.random_range(1..=3))
            .map(|_| random_job(&mut rng, &cfg))
            .collect();
        let placed = place_all(&mut mem, &jobs);
        let run = job::run_list(&mut m, &mut mem, BASE, jobs.len() as u32, 2_000_000).unwrap();
        assert_eq!(
            run.status & (regmap::STATUS_ERROR.mask() | regmap::STATUS_DONE.mask()),
            regmap::STATUS_DONE.mask(),
            "round {round}: STATUS {:#x}",
            run.status
        );
        for (i, (j, p)) in jobs.iter().zip(&placed).enumerate() {
            let got = mem
                .read(p.desc.output_addr.0, p.out_c + 16)
                .unwrap()
                .to_vec();
            assert_eq!(
                &got[..p.out_c],
                &j.golden().unwrap()[..],
                "round {round} layer {i}: K={} O={} planes={} regions={}",
                j.k(),
                p.out_c,
                p.planes,
                j.regions.is_some()
            );
            assert!(
                got[p.out_c..].iter().all(|&b| b == 0xa5),
                "round {round} layer {i}: wrote past the outputs"
            );
        }
    }
}

#[test]
fn plane_steps_and_bytes_are_counted() {
    let cfg = config();
    let seed = seed();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut m = model(seed);
    let mut mem = memory(seed, 0);
    let j = random_job(&mut rng, &cfg);
    let placed = place_all(&mut mem, std::slice::from_ref(&j));
    AxiLite::new(&mut m, AxiLiteOptions::default())
        .write(&regmap::CTRL, regmap::CTRL_PERF_CLEAR.mask())
        .unwrap();
    let run = job::run_list(&mut m, &mut mem, BASE, 1, 1_000_000).unwrap();
    assert_eq!(
        run.status & regmap::STATUS_ERROR.mask(),
        0,
        "STATUS {:#x}",
        run.status
    );
    let mut axil = AxiLite::new(&mut m, AxiLiteOptions::default());
    let plane_ops = axil.read64(&regmap::PERF_PLANE_OPS).unwrap();
    let (r, c) = (cfg.array.rows as u64, cfg.array.cols as u64);
    let (k, o) = (j.k() as u64, j.out_c() as u64);
    assert_eq!(
        plane_ops,
        o.div_ceil(r) * k.div_ceil(c) * placed[0].planes,
        "one plane-step per (tile, chunk, plane)"
    );
    assert_eq!(axil.read64(&regmap::PERF_BUSY_CYCLES).unwrap(), plane_ops);
    assert_eq!(
        axil.read64(&regmap::PERF_BYTES_WR).unwrap(),
        o,
        "one byte per output"
    );
}

#[test]
fn bad_descriptors_and_bus_errors_report_their_code_and_the_next_job_runs() {
    let cfg = config();
    let seed = seed();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut m = model(seed);
    let mut mem = memory(seed, 20);
    let j = random_job(&mut rng, &cfg);
    let placed = place_all(&mut mem, std::slice::from_ref(&j));
    let good = placed[0].desc;

    // An unknown opcode: BAD_OPCODE on descriptor 0.
    let mut last = good;
    last.flags.last = true;
    let mut bytes = last.encode();
    bytes[0] = 3;
    mem.write(BASE, &bytes).unwrap();
    let run = job::run_list(&mut m, &mut mem, BASE, 1, 100_000).unwrap();
    assert_ne!(
        run.status & regmap::STATUS_ERROR.mask(),
        0,
        "STATUS {:#x}",
        run.status
    );
    assert_eq!(code_of(run.status), ErrorCode::BadOpcode.as_u8());

    // A misaligned table address.
    let mut d = good;
    d.flags.last = true;
    d.bias_addr = DeviceAddr(d.bias_addr.0 + 4);
    mem.write(BASE, &d.encode()).unwrap();
    let run = job::run_list(&mut m, &mut mem, BASE, 1, 100_000).unwrap();
    assert_eq!(code_of(run.status), ErrorCode::Misaligned.as_u8());

    // An empty list.
    let run = job::run_list(&mut m, &mut mem, BASE, 0, 100_000).unwrap();
    assert_eq!(code_of(run.status), ErrorCode::DescCount.as_u8());

    // A bus error on a weight word: AXI_SLVERR, after the rest of the burst is drained.
    let placed = place_all(&mut mem, std::slice::from_ref(&j));
    let w0 = placed[0].desc.plane_groups.as_slice()[0].weight_addr.0;
    mem.inject(w0..w0 + 8, Resp::SlvErr, FaultDir::Reads);
    let run = job::run_list(&mut m, &mut mem, BASE, 1, 100_000).unwrap();
    assert_eq!(code_of(run.status), ErrorCode::AxiSlverr.as_u8());
    mem.clear_faults();

    // The next job runs correctly.
    let placed = place_all(&mut mem, std::slice::from_ref(&j));
    let run = job::run_list(&mut m, &mut mem, BASE, 1, 1_000_000).unwrap();
    assert_eq!(
        run.status & regmap::STATUS_ERROR.mask(),
        0,
        "STATUS {:#x}",
        run.status
    );
    assert_eq!(
        mem.read(placed[0].desc.output_addr.0, j.out_c()).unwrap(),
        &j.golden().unwrap()[..]
    );
}

/// The largest accumulators the hardware can meet: every weight −128, every activation 255, the
/// longest K the sim-small buffers take, region multipliers of 256, biases at the i32 extremes,
/// with requant factors that saturate both ways and one that maps the 48-bit total exactly into
/// range. Also the same with all weights +127 (positive extreme).
#[test]
fn extreme_accumulators_saturate_exactly_as_the_golden_model() {
    let cfg = config();
    let seed = seed();
    let mut m = model(seed);
    let mut mem = memory(seed, 10);
    let k = 1024; // 8 planes x 16 words per row = 128 weight-bank entries on sim-small
    let o = 7;
    let gs = cfg.array.group_size as usize;
    for w in [-128, 127] {
        let mut requant: Vec<Requant> = [1.0, 1e-3, 2e-9, 0.5, 3e-10, 1.5e-9, 1e-12]
            .iter()
            .map(|&r| Requant::from_real(r).unwrap())
            .collect();
        requant[6] = Requant { mult: 0, shift: 63 };
        let job = DenseJob {
            groups: vec![Group {
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
        let golden = job.golden().unwrap();
        eprintln!(
            "weights {w}: golden outputs {:?}",
            golden.iter().map(|&b| b as i8).collect::<Vec<_>>()
        );
        // The totals really are extreme: |Σ 256·acc_g| = 256 · 1024 · 128 · 255 ≈ 2^33.
        let placed = place_all(&mut mem, std::slice::from_ref(&job));
        let run = job::run_list(&mut m, &mut mem, BASE, 1, 2_000_000).unwrap();
        assert_eq!(
            run.status & regmap::STATUS_ERROR.mask(),
            0,
            "STATUS {:#x}",
            run.status
        );
        let got = mem.read(placed[0].desc.output_addr.0, o).unwrap().to_vec();
        assert_eq!(got, golden, "weights {w}");
        assert!(
            golden.contains(&127) || golden.contains(&128),
            "some output saturates: {golden:?}"
        );
    }
}

/// The model is built with `--x-assign unique --x-initial unique`: every model seed starts from
/// different power-up values. After reset, the same job list must give the same outputs, the same
/// cycle count and the same STATUS under every seed.
#[test]
fn results_do_not_depend_on_power_up_values() {
    let cfg = config();
    let seed = seed();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let jobs: Vec<DenseJob> = (0..3).map(|_| random_job(&mut rng, &cfg)).collect();
    let mut seen = None;
    for x_seed in [seed, seed ^ 0xdead_beef, seed.wrapping_add(12345)] {
        let mut m = model(x_seed);
        let mut mem = memory(seed, 0);
        let placed = place_all(&mut mem, &jobs);
        let run = job::run_list(&mut m, &mut mem, BASE, jobs.len() as u32, 2_000_000).unwrap();
        let outputs: Vec<Vec<u8>> = placed
            .iter()
            .map(|p| mem.read(p.desc.output_addr.0, p.out_c).unwrap().to_vec())
            .collect();
        let result = (run, outputs);
        match &seen {
            None => seen = Some(result),
            Some(first) => assert_eq!(&result, first, "model seed {x_seed}"),
        }
    }
}

/// A random Conv2d layer on the RTL: the same plane groups as a Dense job of K = c·kh·kw, the
/// input a CHW feature map.
#[test]
fn random_conv_layers_match_the_golden_model() {
    use caq_model::kernels::{self, ConvGeom, GroupMult, IntLayer};
    use caq_model::quant::ActQuant;
    use caq_model::requant::OutRange;
    use caq_spec::descriptor::Shape;
    use ndarray::Array3;
    let cfg = config();
    let seed = seed();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut m = model(seed);
    let mut mem = memory(seed, 30);
    for round in 0..10 {
        let c = rng.random_range(1..=5usize);
        let (h, w) = (rng.random_range(1..=11usize), rng.random_range(1..=11usize));
        let kh = rng.random_range(1..=h.min(7));
        let kw = rng.random_range(1..=w.min(7));
        let pad = rng.random_range(0..=(kh.min(kw) / 2).min(3));
        let g = ConvGeom {
            kernel: [kh, kw],
            stride: rng.random_range(1..=2),
            pad,
        };
        let (oh, ow) = g.out_size(h, w).unwrap();
        let mut j = random_job(&mut rng, &cfg);
        // The job's groups, regions and input re-drawn for K = c·kh·kw.
        let k = c * kh * kw;
        {
            let o = j.out_c();
            for gr in j.groups.iter_mut() {
                let lim = 1i32 << (gr.bits - 1);
                gr.codes = Array2::from_shape_fn((o, k), |_| rng.random_range(-lim..lim));
            }
            if let Some((mm, gs)) = j.regions.as_mut() {
                *mm = Array2::from_shape_fn((o, k.div_ceil(*gs)), |_| rng.random_range(1..=256u16));
            }
            j.input = vec![0; k];
        }
        let o = j.out_c();
        let x = Array3::from_shape_fn((c, h, w), |_| {
            if j.in_signed {
                rng.random_range(-128..=127)
            } else {
                rng.random_range(0..=255)
            }
        });
        let mut next = BASE + 4096;
        let mut p = j.place(&mut mem, &mut next).unwrap();
        let fm_addr = next;
        let fm: Vec<u8> = x.iter().map(|&v| v as u8).collect();
        mem.write(fm_addr, &fm).unwrap();
        next = (fm_addr + fm.len() as u64 + 16).div_ceil(64) * 64;
        let out_addr = next;
        mem.write(out_addr, &vec![0xa5; o * oh * ow + 16]).unwrap();
        let d = &mut p.desc;
        d.op = Opcode::Conv2d;
        d.input = Shape {
            c: c as u16,
            h: h as u16,
            w: w as u16,
        };
        d.output = Shape {
            c: o as u16,
            h: oh as u16,
            w: ow as u16,
        };
        d.kernel_h = kh as u8;
        d.kernel_w = kw as u8;
        d.stride = g.stride as u8;
        d.pad = pad as u8;
        d.input_addr = DeviceAddr(fm_addr);
        d.output_addr = DeviceAddr(out_addr);
        job::write_list(&mut mem, BASE, std::slice::from_ref(&p)).unwrap();
        let run = job::run_list(&mut m, &mut mem, BASE, 1, 3_000_000).unwrap();
        assert_eq!(
            run.status & regmap::STATUS_ERROR.mask(),
            0,
            "round {round}: STATUS {:#x}",
            run.status
        );
        let eff = j.effective_codes();
        let act = ActQuant {
            bits: j.out_bits,
            signed: j.out_signed,
            scale: 1.0,
        };
        let layer = IntLayer {
            codes: eff.view(),
            groups: j.regions.as_ref().map(|(mm, gs)| GroupMult {
                mult: mm.view(),
                group_size: *gs,
            }),
            bias: &j.bias,
            requant: &j.requant,
            out: OutRange {
                qmin: act.qmin(),
                qmax: act.qmax(),
                relu: j.relu,
            },
        };
        let want: Vec<u8> = kernels::conv2d(&layer, x.view(), g)
            .unwrap()
            .iter()
            .map(|&v| v as u8)
            .collect();
        let got = mem.read(out_addr, o * oh * ow).unwrap().to_vec();
        assert_eq!(
            got, want,
            "round {round}: c {c} h {h} w {w} k {kh}x{kw} s {} p {pad} o {o}",
            g.stride
        );
        assert_eq!(
            mem.read(out_addr + (o * oh * ow) as u64, 16).unwrap(),
            &[0xa5; 16][..],
            "round {round}: no stray writes"
        );
        eprintln!(
            "round {round}: conv c{c} {h}x{w} k{kh}x{kw} s{} p{pad} o{o}: {} cycles",
            g.stride, run.cycles
        );
    }
}
