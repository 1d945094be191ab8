//! Input-adaptive inference through the driver: a confidence cascade and a gate network on the
//! functional device and on the CPU backend give the golden reference's setting, passes and
//! output for every input, their counters are the ones the pass pricer predicts (re-runs
//! included), a switch rewrites descriptors only, and a cascade calibrated on some images keeps
//! its average-energy limit on them as the device counts it. With `--features rtl`, the same
//! checks on the RTL of sim-small.

mod common;
#[path = "common/rewrite.rs"]
mod rewrite;

use caq_cpu::CpuAdaptive;
use caq_driver::accel::{Accelerator, LoadOptions, Residency};
use caq_driver::energy::EnergyModel;
use caq_host::adaptive::cascade::{self, Prices};
use caq_host::adaptive::{PassPricer, Scored};
use caq_host::gates::Limits;
use caq_model::adaptive::{self, Adaptive, Cascade, GateNet, GoldenAdaptive, PreparedGate};
use caq_model::bundle;
use caq_model::data::Dataset;
use caq_model::qmodel::{Gate, QModel};
use caq_sim::FuncDevice;
use caq_spec::{AccelConfig, DeviceAddr};
use common::*;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;

fn bundle_of(q: &QModel, dir: &std::path::Path) -> PathBuf {
    let path = dir.join("m.caqb");
    bundle::write(&path, q).unwrap();
    path
}

/// The functional device of `cfg` with `q` loaded from a bundle in `dir`, every setting paged in
/// on demand and kept (`Residency::KeepPaged`).
fn loaded(q: &QModel, cfg: &AccelConfig, dir: &std::path::Path) -> Accelerator<FuncDevice> {
    loaded_on(device(cfg), q, cfg, dir)
}

/// [`loaded`] on any device.
fn loaded_on<D: caq_spec::Device>(
    dev: D,
    q: &QModel,
    cfg: &AccelConfig,
    dir: &std::path::Path,
) -> Accelerator<D> {
    let mut acc = Accelerator::open(dev, cfg).unwrap();
    let opts = LoadOptions {
        bits: None,
        residency: Residency::KeepPaged,
        ..LoadOptions::default()
    };
    acc.load_bundle(&bundle_of(q, dir), &opts).unwrap();
    acc
}

/// Runs `policy` on the functional device and the CPU backend for `set`'s first `n` images and
/// checks each against the golden reference and the pricer; returns how often each setting was
/// final.
fn check(q: &QModel, set: &Dataset, n: usize, policy: Adaptive<'_>) -> Vec<usize> {
    let cfg = config("sim-small");
    check_on(device(&cfg), true, &cfg, q, set, n, policy)
}

/// [`check`] on any device of `cfg`. The pricer predicts the functional device's counters
/// (`timed_by_model`); on another device (the RTL) every counter but the cycle counts must equal
/// its prediction.
fn check_on<D: caq_spec::Device>(
    dev: D,
    timed_by_model: bool,
    cfg: &AccelConfig,
    q: &QModel,
    set: &Dataset,
    n: usize,
    policy: Adaptive<'_>,
) -> Vec<usize> {
    let dir = tempfile::tempdir().unwrap();
    let mut acc = loaded_on(dev, q, cfg, dir.path());
    let base = acc.program().unwrap().region.base;
    let mut pricer = PassPricer::new(q, cfg, base).unwrap();
    let golden = GoldenAdaptive::new(q, policy).unwrap();
    let cpu = CpuAdaptive::new(q, policy).unwrap();
    let out = q.acts.last().unwrap();
    let mut hist = vec![0; policy.settings().len()];
    for i in 0..n {
        let img = set.image(i);
        let want = golden.infer(img).unwrap();
        let got = acc.infer_adaptive(img, policy).unwrap();
        assert_eq!(cpu.infer(img).unwrap(), want, "image {i}: CPU backend");
        assert_eq!(got.choice, want.choice, "image {i}");
        assert_eq!(got.passes, want.passes, "image {i}");
        assert_eq!(got.bits, want.bits, "image {i}");
        let want_bytes: Vec<u8> = want.output.iter().map(|&c| c as u8).collect();
        assert_eq!(got.output, want_bytes, "image {i}: output bytes");
        assert!(out.signed || got.output.len() == want.output.len());
        let mut predicted = pricer.outcome(policy, &got.passes).unwrap();
        if !timed_by_model {
            eprintln!(
                "image {i}: passes {:?}, {} cycles ({} predicted)",
                got.passes, got.device.cycles, predicted.cycles
            );
            (
                predicted.cycles,
                predicted.busy_cycles,
                predicted.stall_cycles,
            ) = (
                got.device.cycles,
                got.device.busy_cycles,
                got.device.stall_cycles,
            );
        }
        assert_eq!(
            got.device, predicted,
            "image {i}: counters of passes {:?}",
            got.passes
        );
        // Everything was paged in on the first inference; after it, descriptors only.
        if i > 0 {
            assert_eq!(got.paged_in_bytes, 0, "image {i}");
        }
        assert_eq!(
            got.switch_descriptor_bytes % 256,
            0,
            "two copies of 128 B per layer"
        );
        hist[got.choice] += 1;
    }
    hist
}

fn mlp_model() -> (QModel, Dataset) {
    let set = digits();
    let mut q = quantize(mlp(), &set, &[8, 4, 2], 5);
    q.set_gates(vec![Gate {
        name: "battery-low".into(),
        bits: vec![4, 4, 2],
    }])
    .unwrap();
    (q, set)
}

#[test]
fn a_cascade_on_the_functional_device_is_the_golden_cascade_and_costs_what_was_predicted() {
    let (q, set) = mlp_model();
    let stages = vec![vec![2, 2, 2], vec![2, 4, 8], vec![8, 8, 8]];
    let t0 = median_margin(&q, &stages[0], &set, 40);
    let t1 = median_margin(&q, &stages[1], &set, 40);
    let c = Cascade {
        stages,
        thresholds: vec![t0, t1],
    };
    let hist = check(&q, &set, 40, Adaptive::Cascade(&c));
    eprintln!("cascade settings used: {hist:?}");
    assert!(
        hist.iter().all(|&h| h > 0),
        "every stage is final somewhere: {hist:?}"
    );
}

/// A gate network with random weights over `q`'s gate node, its scores centred on the
/// features' mean over `set`'s first `n` images so that every entry wins for some inputs.
fn random_gate(
    q: &QModel,
    set: &Dataset,
    n: usize,
    sampling: adaptive::Sampling,
    codebook: Vec<Vec<u8>>,
    rng: &mut impl Rng,
) -> PreparedGate {
    let layout = adaptive::Layout::of(q).unwrap();
    let (d, hidden, k) = (
        layout.gate_shape[0] * sampling.grid * sampling.grid,
        6,
        codebook.len(),
    );
    let feats: Vec<Vec<i64>> = (0..n)
        .map(|i| {
            let out = q.executor(&codebook[0]).unwrap().run(set.image(i)).unwrap();
            let codes: Vec<i32> = out[layout.gate_node].iter().copied().collect();
            adaptive::features(&codes, layout.gate_shape, sampling).unwrap()
        })
        .collect();
    let mean: Vec<i64> = (0..d)
        .map(|j| feats.iter().map(|f| f[j]).sum::<i64>() / feats.len() as i64)
        .collect();
    // Drawn again until at least two entries win on these images (a draw can favour one).
    for _ in 0..100 {
        let w1: Vec<i32> = (0..hidden * d)
            .map(|_| rng.random_range(-100..100))
            .collect();
        let b1: Vec<i64> = (0..hidden)
            .map(|j| {
                -(0..d)
                    .map(|i| i64::from(w1[j * d + i]) * mean[i])
                    .sum::<i64>()
            })
            .collect();
        let net = GateNet {
            grid: sampling.grid,
            row_step: sampling.row_step,
            hidden,
            w1,
            b1,
            shift: 8,
            w2: (0..k * hidden)
                .map(|_| rng.random_range(-100..100))
                .collect(),
            b2: vec![0; k],
            codebook: codebook.clone(),
        };
        let first = net.choose(&feats[0]);
        if feats.iter().any(|f| net.choose(f) != first) {
            return net.into();
        }
    }
    panic!("no draw of 100 splits the images");
}

#[test]
fn a_gate_network_on_the_functional_device_is_the_golden_gate() {
    let seed: u64 = rand::rng().random();
    eprintln!("CAQ_SEED={seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let set = digits28(&digits(), 60);
    let mut q = quantize(lenet(), &set, &[8, 4, 2], 11);
    q.set_gates(vec![Gate {
        name: "battery-low".into(),
        bits: vec![4, 4, 4, 4],
    }])
    .unwrap();
    // The gate reads pool1 (conv1's only reader, fused on the device): 16×12×12.
    let layout = adaptive::Layout::of(&q).unwrap();
    assert_eq!((layout.gate_node, layout.gate_shape), (1, [16, 12, 12]));
    // Every second row of each cell, so that the sampling is exercised too.
    let sampling = adaptive::Sampling {
        grid: 2,
        row_step: 2,
    };
    let codebook = vec![vec![4, 2, 2, 2], vec![4, 4, 8, 2], vec![4, 8, 8, 8]];
    let net = random_gate(&q, &set, 40, sampling, codebook, &mut rng);
    let hist = check(&q, &set, 40, Adaptive::Network(&net));
    eprintln!("gate settings used: {hist:?}");
    assert!(hist.iter().filter(|&&h| h > 0).count() >= 2, "{hist:?}");
}

#[test]
fn a_gate_network_reads_a_first_pool_the_device_cannot_run() {
    // A 2×2 stride-1 max pool after conv1 stays a host step: the first pass runs it, the gate
    // reads its output, and the second pass starts after it.
    let seed: u64 = rand::rng().random();
    eprintln!("CAQ_SEED={seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let set = digits();
    let graph = chain(
        [1, 8, 8],
        vec![
            ("conv1", conv(1, 8, 3, 1)),
            (
                "overlap",
                caq_model::graph::Op::MaxPool {
                    kernel: 2,
                    stride: 1,
                },
            ),
            ("conv2", conv(8, 8, 3, 1)),
            ("flatten", caq_model::graph::Op::Flatten),
            ("fc", dense(8 * 7 * 7, 10, false)),
        ],
    );
    let q = quantize(graph, &set, &[8, 4, 2], 5);
    let layout = adaptive::Layout::of(&q).unwrap();
    assert_eq!((layout.gate_node, layout.gate_shape), (1, [8, 7, 7]));
    let codebook = vec![vec![4, 2, 2], vec![4, 8, 2], vec![4, 8, 8]];
    let net = random_gate(
        &q,
        &set,
        40,
        adaptive::Sampling::dense(2),
        codebook,
        &mut rng,
    );
    let hist = check(&q, &set, 40, Adaptive::Network(&net));
    eprintln!("gate settings used: {hist:?}");
    assert!(hist.iter().filter(|&&h| h > 0).count() >= 2, "{hist:?}");
}

#[test]
fn a_gate_network_on_the_mlp_splits_its_only_segment_after_the_first_layer() {
    let (q, set) = mlp_model();
    let net = PreparedGate::new(mlp_gate(&q, &set, 40));
    let hist = check(&q, &set, 40, Adaptive::Network(&net));
    assert!(hist.iter().all(|&h| h > 0), "{hist:?}");
    // Two STARTs where the static setting needs one: the pricer charges both.
    let cfg = config("sim-small");
    let mut p = PassPricer::new(&q, &cfg, DeviceAddr(BASE)).unwrap();
    let whole = p
        .pass(&[4, 8, 8], caq_driver::compile::PassStart::Input, None)
        .unwrap();
    let split = p
        .outcome(Adaptive::Network(&net), &[(0, 0), (1, 1)])
        .unwrap();
    assert!(split.cycles > whole.cycles, "{split:?} vs {whole:?}");
    assert_eq!(split.plane_ops, whole.plane_ops);
}

#[test]
fn a_schema_2_gate_network_over_a_first_pool_is_refused_and_caq_gate_can_rebuild_it() {
    // Schema 2 gate networks read conv1's output before its pool; schema 3's read the pool.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let set = digits28(&digits(), 20);
    let mut q = quantize(lenet(), &set, &[8, 4, 2], 11);
    q.set_gates(vec![Gate {
        name: "battery-low".into(),
        bits: vec![4, 4, 4, 4],
    }])
    .unwrap();
    let net = random_gate(
        &q,
        &set,
        10,
        adaptive::Sampling::dense(2),
        vec![vec![4, 2, 2, 2], vec![4, 8, 8, 8]],
        &mut rng,
    );
    q.set_adaptive(vec![adaptive::AdaptivePolicy {
        class: "battery-low".into(),
        cascade: None,
        network: Some(net),
    }])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (now, old) = (dir.path().join("now.caqb"), dir.path().join("old.caqb"));
    bundle::write(&now, &q).unwrap();
    assert_eq!(bundle::Bundle::open(&now).unwrap().load().unwrap(), q);
    rewrite::rewrite_doc(&now, &old, |doc| doc["schema_version"] = 2.into());
    let e = bundle::Bundle::open(&old).err().unwrap().to_string();
    assert!(
        e.contains("old.caqb") && e.contains("'conv1'") && e.contains("'pool1'"),
        "{e}"
    );
    assert!(e.contains("caq gate --adaptive"), "{e}");
    // What `caq gate` reads: the model without its stale policies.
    let back = bundle::Bundle::open_without_adaptive(&old)
        .unwrap()
        .load()
        .unwrap();
    assert!(back.adaptive.is_empty());
    q.set_adaptive(Vec::new()).unwrap();
    assert_eq!(back, q);
}

#[test]
fn adaptive_inference_needs_every_setting_resident() {
    let (q, set) = mlp_model();
    let cfg = config("sim-small");
    let dir = tempfile::tempdir().unwrap();
    let path = bundle_of(&q, dir.path());
    let mut acc = Accelerator::open(device(&cfg), &cfg).unwrap();
    acc.load_bundle(
        &path,
        &LoadOptions {
            bits: None,
            residency: Residency::Minimal,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let c = Cascade {
        stages: vec![vec![2, 2, 2], vec![8, 8, 8]],
        thresholds: vec![10],
    };
    let e = acc
        .infer_adaptive(set.image(0), Adaptive::Cascade(&c))
        .unwrap_err()
        .to_string();
    assert!(e.contains("KeepPaged"), "{e}");
    acc.set_residency(Residency::KeepPaged).unwrap();
    acc.infer_adaptive(set.image(0), Adaptive::Cascade(&c))
        .unwrap();
    // Back to minimal: the groups above the active level are given up.
    let before = acc.resident_weight_bytes().unwrap();
    let dropped = acc.set_residency(Residency::Minimal).unwrap();
    assert_eq!(acc.resident_weight_bytes().unwrap(), before - dropped);
    let bad = Cascade {
        stages: vec![vec![2, 2], vec![8, 8, 8]],
        thresholds: vec![10],
    };
    acc.set_residency(Residency::KeepPaged).unwrap();
    let e = acc
        .infer_adaptive(set.image(0), Adaptive::Cascade(&bad))
        .unwrap_err()
        .to_string();
    assert!(e.contains("one bit-width per weight layer"), "{e}");
}

#[test]
fn a_calibrated_cascade_keeps_its_average_energy_limit_as_the_device_counts_it() {
    let (q, set) = mlp_model();
    let cfg = config("sim-small");
    let em = EnergyModel::for_config(&cfg, None).unwrap();
    let energy = |p: &caq_spec::PerfCounters| em.estimate(&cfg, p).dynamic_j;
    // Calibration images only: the first 60 (labels unused; the reference is the 8-bit model's
    // top-1, standing in for the float model's).
    let calib = set.subset(&(0..60).collect::<Vec<_>>());
    let ex = q.executor(&[8, 8, 8]).unwrap();
    let reference: Vec<usize> = (0..calib.len())
        .map(|i| caq_model::qmodel::argmax(&ex.logits(calib.image(i)).unwrap()))
        .collect();
    let settings = vec![vec![2, 2, 2], vec![2, 2, 8], vec![4, 4, 2], vec![8, 8, 8]];
    let scored = Scored::new(&q, settings, &calib, &reference).unwrap();
    let mut pricer = PassPricer::new(&q, &cfg, DeviceAddr(BASE)).unwrap();
    let full = |p: &mut PassPricer, b: &[u8]| {
        energy(
            &p.pass(b, caq_driver::compile::PassStart::Input, None)
                .unwrap(),
        )
    };
    let (cheap, dear) = (full(&mut pricer, &[2, 2, 2]), full(&mut pricer, &[8, 8, 8]));
    let limit = cheap + 0.3 * (dear - cheap);
    let no_resident = |_: &[u8]| -> caq_driver::Result<u64> { Ok(0) };
    let mut prices = Prices {
        pricer: &mut pricer,
        energy: &energy,
        resident: &no_resident,
    };
    let limits = Limits {
        energy_j: Some(limit),
        cycles: None,
        resident_bytes: None,
    };
    let choice = cascade::calibrate(&scored, &mut prices, &limits)
        .unwrap()
        .expect("the cheapest setting fits");
    assert!(choice.energy_j <= limit * (1.0 + 1e-9), "{choice:?}");
    assert!(
        choice.agreement_pct >= scored.agreement_pct(0),
        "never worse than its cheapest stage alone: {choice:?}"
    );
    // The device's own counters over the calibration images, re-runs included, give the same
    // mean energy and agreement.
    let dir = tempfile::tempdir().unwrap();
    let mut acc = loaded(&q, &cfg, dir.path());
    let policy = Adaptive::Cascade(&choice.cascade);
    let signed = q.acts.last().unwrap().signed;
    let (mut e, mut agree, mut reruns) = (0.0, 0, 0);
    for (i, &want) in reference.iter().enumerate() {
        let r = acc.infer_adaptive(calib.image(i), policy).unwrap();
        e += energy(&r.device);
        reruns += r.passes.len() - 1;
        let codes: Vec<i32> = r
            .output
            .iter()
            .map(|&b| {
                if signed {
                    i32::from(b as i8)
                } else {
                    i32::from(b)
                }
            })
            .collect();
        agree += usize::from(caq_model::qmodel::argmax(&codes) == want);
    }
    let mean = e / calib.len() as f64;
    assert!(
        (mean - choice.energy_j).abs() <= 1e-9 * mean,
        "device {mean} J, calibration {} J",
        choice.energy_j
    );
    assert!(mean <= limit * (1.0 + 1e-9));
    assert_eq!(
        100.0 * agree as f64 / calib.len() as f64,
        choice.agreement_pct
    );
    eprintln!(
        "cascade {:?}: {reruns} re-runs on 60 images",
        choice.cascade
    );
}

/// The RTL of sim-small (Verilator) through the driver: the MLP's cascade and a gate network,
/// each input's setting, passes and output equal to the golden reference's, every counter but
/// the cycle counts equal to the pricer's (which `check` prints beside the prediction).
#[cfg(feature = "rtl")]
#[test]
fn adaptive_inference_on_the_rtl_is_the_golden_one() {
    let cfg = caq_sim::rtl::default_config().unwrap_or_else(|e| panic!("{e}"));
    let rtl = || {
        caq_sim::RtlDevice::new(
            &cfg,
            5,
            caq_sim::AxiMemOptions {
                base: BASE,
                size: 4 << 20,
                stall_percent: 10,
                seed: 5,
                ..caq_sim::AxiMemOptions::default()
            },
        )
        .expect("RtlDevice")
    };
    let (q, set) = mlp_model();
    let stages = vec![vec![2, 2, 2], vec![8, 8, 8]];
    let c = Cascade {
        thresholds: vec![median_margin(&q, &stages[0], &set, 12)],
        stages,
    };
    let hist = check_on(rtl(), false, &cfg, &q, &set, 12, Adaptive::Cascade(&c));
    assert!(hist.iter().all(|&h| h > 0), "cascade: {hist:?}");
    let net = PreparedGate::new(mlp_gate(&q, &set, 12));
    let hist = check_on(rtl(), false, &cfg, &q, &set, 12, Adaptive::Network(&net));
    assert!(hist.iter().all(|&h| h > 0), "gate network: {hist:?}");
}

/// `caq run --adaptive` on each backend of this build: the bundle's cascade on the golden model,
/// the CPU backend and the functional device, every image checked against the golden reference;
/// `--backend uio` through the board's UIO and u-dma-buf paths, on a fake tree with no
/// accelerator behind its registers (they read 0), which the identity check refuses.
#[test]
fn caq_run_adaptive_reaches_every_backend() {
    let (mut q, set) = mlp_model();
    let stages = vec![vec![2, 2, 2], vec![8, 8, 8]];
    let cascade = Cascade {
        thresholds: vec![median_margin(&q, &stages[0], &set, 40)],
        stages,
    };
    q.set_adaptive(vec![adaptive::AdaptivePolicy {
        class: "battery-low".into(),
        cascade: Some(cascade),
        network: None,
    }])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle_of(&q, dir.path());
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/sim-small.toml");
    let run = |backend: &str, extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_caq"))
            .args(["run", "--bundle"])
            .arg(&bundle)
            .args(["--data", "digits", "--config", config, "--backend", backend])
            .args(["--adaptive", "battery-low", "--limit", "10"])
            .args(extra)
            .output()
            .unwrap()
    };
    for (backend, name) in [("golden", "Golden"), ("cpu", "Cpu"), ("func", "Func")] {
        let out = run(backend, &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{backend}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("Input-adaptive inference on {name}"))
                && stdout.contains("battery-low  cascade      10"),
            "{backend}: {stdout}"
        );
    }
    let tree = dir.path().join("tree");
    let fake = caq_driver::fake::FakeSys::new(&tree);
    fake.uio(0, "caq", &[(0x43c0_0000, 0x1_0000)]).unwrap();
    fake.udmabuf("udmabuf-caq", 0x1000_0000, 1 << 20, false)
        .unwrap();
    let out = run("uio", &["--sysroot", tree.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("ID = 0x00000000, expected 0x43415121: no caq accelerator answers here"),
        "{err}"
    );
}
