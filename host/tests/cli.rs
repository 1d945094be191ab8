//! The `caq` binary end to end on the digits data the repo carries, and its error exits.

use std::path::Path;
use std::process::{Command, Output};

fn caq(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_caq"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("caq runs")
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "caq failed:\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn fails(out: &Output) -> String {
    assert!(!out.status.success(), "caq should have failed");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn mlperf_tiny_init_quantize_and_run_on_synthetic_data() {
    // An untrained MLPerf Tiny network at its benchmark shape, quantized nested on seeded random
    // inputs of that shape, run on the CPU backend and the functional device (byte-equal).
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = caq(
        &[
            "init", "--arch", "ds_cnn", "--seed", "3", "--out", "ds.caqf",
        ],
        d,
    );
    let text = ok(&out);
    assert!(
        text.contains("22604 parameters, input [1, 49, 10]"),
        "{text}"
    );
    let q = caq(
        &[
            "quantize",
            "--model",
            "ds.caqf",
            "--data",
            "synthetic",
            "--levels",
            "8,4,2",
            "--out",
            "ds.caqb",
        ],
        d,
    );
    let text = ok(&q);
    assert!(text.contains("8-bit") && text.contains("n/a"), "{text}");
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/pynq-z2.toml");
    let run = caq(
        &[
            "run",
            "--bundle",
            "ds.caqb",
            "--data",
            "synthetic",
            "--backend",
            "cpu",
            "--bits",
            "all-levels",
            "--limit",
            "3",
            "--config",
            cfg,
        ],
        d,
    );
    let text = ok(&run);
    assert_eq!(text.matches("3/3").count(), 3, "{text}");
    // On the functional device of pynq-z2: the 10x4 conv padded [4, 1, 5, 1] is the
    // descriptor's own, the depthwise convs run as dense parts; a mixed setting too.
    let func = caq(
        &[
            "run",
            "--bundle",
            "ds.caqb",
            "--data",
            "synthetic",
            "--backend",
            "func",
            "--config",
            cfg,
            "--limit",
            "2",
            "--bits",
            "8,2,4,2,4,2,4,2,4,8",
        ],
        d,
    );
    let text = ok(&func);
    assert!(text.contains("2/2"), "{text}");
    // Synthetic data needs a model's shape; unknown architectures are named.
    let e = fails(&caq(&["train", "--data", "synthetic"], d));
    assert!(e.contains("--data synthetic"), "{e}");
    let e = fails(&caq(&["init", "--arch", "vgg"], d));
    assert!(e.contains("expected one of mlp, lenet, resnet8"), "{e}");
}

#[cfg(feature = "train")]
#[test]
fn train_quantize_eval_inspect_on_digits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&caq(
        &[
            "train",
            "--epochs",
            "8",
            "--quiet",
            "--out",
            "m.caqf",
            "--json",
            "train.json",
        ],
        d,
    ));
    let train: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("train.json")).unwrap()).unwrap();
    assert_eq!(train["test_images"], 359);
    assert!(
        train["test_accuracy_pct"].as_f64().unwrap() > 85.0,
        "{train}"
    );

    let out = ok(&caq(
        &[
            "quantize", "--model", "m.caqf", "--levels", "8,4", "--out", "m.caqb", "--json",
            "q.json",
        ],
        d,
    ));
    assert!(out.contains("4-bit"), "{out}");
    let q: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("q.json")).unwrap()).unwrap();
    let levels = q["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 2);
    let f32_acc = q["f32_accuracy_pct"].as_f64().unwrap();
    let int8 = levels[0]["accuracy_pct"].as_f64().unwrap();
    assert!((f32_acc - int8).abs() < 3.0, "INT8 {int8} vs f32 {f32_acc}");

    let out = ok(&caq(&["inspect", "m.caqb", "--json", "i.json"], d));
    assert!(out.contains("residual 1"), "{out}");
    let i: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("i.json")).unwrap()).unwrap();
    let l0 = &i["layers"][0];
    assert_eq!(l0["levels"], serde_json::json!([8, 4]));
    assert_eq!(l0["plane_groups"][0]["bits"], 4);
    assert_eq!(l0["plane_groups"][1]["bits"], 5);

    let out = ok(&caq(
        &["eval", "--model", "m.caqf", "--bundle", "m.caqb"],
        d,
    ));
    assert!(out.contains("8-bit") && out.contains("4-bit"), "{out}");
}

#[test]
fn a_corrupted_bundle_exits_non_zero_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.caqb"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":",
    )
    .unwrap();
    let err = fails(&caq(&["inspect", "bad.caqb"], dir.path()));
    assert!(err.contains("bad.caqb"), "{err}");
    let err = fails(&caq(&["inspect", "missing.caqb"], dir.path()));
    assert!(err.contains("missing.caqb"), "{err}");
}

#[test]
fn bad_flags_are_rejected_with_the_flag_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = fails(&caq(
        &["quantize", "--model", "m.caqf", "--levels", "4,8"],
        dir.path(),
    ));
    assert!(
        err.contains("--levels") && err.contains("descending"),
        "{err}"
    );
    let err = fails(&caq(&["eval", "--model", "nope.caqf"], dir.path()));
    assert!(err.contains("nope.caqf"), "{err}");
    let err = fails(&caq(
        &["eval", "--model", "nope.caqf", "--part-bits", "9"],
        dir.path(),
    ));
    assert!(err.contains("--part-bits") && err.contains("'9'"), "{err}");
    for flag in [
        "--gap-on-device",
        "--add-on-device",
        "--avg-pool-on-device",
        "--max-pool-on-device",
    ] {
        let err = fails(&caq(
            &["run", "--model", "nope.caqf", "--backend", "cpu", flag],
            dir.path(),
        ));
        assert!(
            err.contains(flag) && err.contains("func, rtl and uio"),
            "{err}"
        );
    }
}

#[cfg(feature = "train")]
#[test]
fn run_on_the_functional_device_matches_golden_and_reports_counters() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&caq(
        &["train", "--epochs", "4", "--quiet", "--out", "m.caqf"],
        d,
    ));
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/sim-small.toml");
    let out = ok(&caq(
        &[
            "run",
            "--model",
            "m.caqf",
            "--backend",
            "func",
            "--config",
            config,
            "--levels",
            "8,4",
            "--limit",
            "20",
            "--json",
            "run.json",
        ],
        d,
    ));
    assert!(out.contains("per layer at 4-bit"), "{out}");
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("run.json")).unwrap()).unwrap();
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{r}");
    for run in runs {
        assert_eq!(run["byte_equal_images"], 20, "{run}");
        let cycles = run["device"]["cycles"].as_f64().unwrap();
        assert!(
            cycles > 0.0 && run["layers"].as_array().unwrap().len() == 3,
            "{run}"
        );
    }
    // 4-bit streams fewer planes than 8-bit.
    assert!(runs[1]["device"]["cycles"].as_f64() < runs[0]["device"]["cycles"].as_f64());
    let err = fails(&caq(
        &[
            "run",
            "--model",
            "m.caqf",
            "--backend",
            "func",
            "--bits",
            "8,4",
            "--config",
            config,
        ],
        d,
    ));
    assert!(err.contains("2 widths for 3 weight layers"), "{err}");
    // --backend uio through the real UIO and u-dma-buf paths on a fake tree: without a tree the
    // device is not found; with a tree but no accelerator behind the registers (they read 0) the
    // identity check refuses it before anything else is touched.
    ok(&caq(
        &[
            "quantize", "--model", "m.caqf", "--levels", "8,4", "--out", "m.caqb",
        ],
        d,
    ));
    let uio = |root: &str| {
        fails(&caq(
            &[
                "run",
                "--bundle",
                "m.caqb",
                "--backend",
                "uio",
                "--config",
                config,
                "--sysroot",
                root,
                "--limit",
                "2",
            ],
            d,
        ))
    };
    let err = uio("empty");
    assert!(
        err.contains("no UIO device named 'caq' under empty") && err.contains("generic-uio"),
        "{err}"
    );
    let fake = caq_driver::fake::FakeSys::new(d.join("tree"));
    fake.uio(0, "caq", &[(0x43c0_0000, 0x1_0000)]).unwrap();
    fake.udmabuf("udmabuf-caq", 0x1000_0000, 1 << 20, false)
        .unwrap();
    let err = uio("tree");
    assert!(
        err.contains("ID = 0x00000000, expected 0x43415121: no caq accelerator answers here"),
        "{err}"
    );
    #[cfg(not(feature = "rtl"))]
    {
        let err = fails(&caq(
            &[
                "run",
                "--model",
                "m.caqf",
                "--backend",
                "rtl",
                "--config",
                config,
            ],
            d,
        ));
        assert!(err.contains("--features rtl"), "{err}");
    }
}

#[test]
fn hdl_vivado_writes_the_script_beside_the_rtl_and_refuses_a_sim_config() {
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let dir = tempfile::tempdir().unwrap();
    let pynq = configs.join("pynq-z2.toml");
    let out = caq(
        &[
            "hdl",
            "vivado",
            "--config",
            pynq.to_str().unwrap(),
            "--out",
            "viv",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let viv = dir.path().join("viv");
    let script = std::fs::read_to_string(viv.join("build.tcl")).unwrap();
    assert!(script.contains("set CAQ_PART xc7z020clg400-1"), "{script}");
    assert!(viv.join("constraints.xdc").is_file());
    assert!(viv.join("rtl/caq_top.v").is_file());
    let readme = std::fs::read_to_string(viv.join("README")).unwrap();
    assert!(readme.contains("vivado -mode batch -source build.tcl"));

    let sim = configs.join("sim-small.toml");
    let err = fails(&caq(
        &[
            "hdl",
            "vivado",
            "--config",
            sim.to_str().unwrap(),
            "--out",
            "sim",
        ],
        dir.path(),
    ));
    assert!(err.contains("board = \"sim\""), "{err}");
    assert!(err.contains("sim-small.toml"), "{err}");
}

/// True when Yosys can run. Without it the test is skipped with a note, except under CI
/// (`CI=true`), which installs it on purpose.
fn yosys_or_skip(test: &str) -> bool {
    if caq_hdl::tool_available("yosys") {
        return true;
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "{test}: CI=true requires `yosys` on PATH (apt-get install yosys)"
    );
    eprintln!("note: {test} skipped: `yosys` is not on PATH (apt-get install yosys)");
    false
}

#[test]
fn hdl_timing_refuses_a_nan_zero_or_negative_budget_before_running_yosys() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/sim-small.toml");
    let dir = tempfile::tempdir().unwrap();
    for command in ["timing", "synth"] {
        for budget in ["NaN", "-1", "0", "inf", "5ns"] {
            let out = caq(
                &["hdl", command, "--config", config, "--require-ns", budget],
                dir.path(),
            );
            let err = fails(&out);
            assert!(
                err.contains("--require-ns") && err.contains(&format!("not '{budget}'")),
                "{command} {budget}: {err}"
            );
            // Refused by the argument parser: nothing was synthesized.
            assert!(out.stdout.is_empty(), "{command} {budget}");
        }
    }
}

/// One synthesis of sim-small: `hdl timing` passes a loose budget and writes its report; the
/// report is then checked again (`--report`, no Yosys) against a budget it fails and one it meets.
#[test]
fn hdl_timing_fails_a_budget_shorter_than_the_worst_path_naming_the_path() {
    if !yosys_or_skip("hdl_timing_fails_a_budget_shorter_than_the_worst_path_naming_the_path") {
        return;
    }
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/sim-small.toml");
    let dir = tempfile::tempdir().unwrap();
    let out = caq(
        &[
            "hdl",
            "timing",
            "--config",
            config,
            "--json",
            "t.json",
            "--require-ns",
            "1000",
        ],
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("within the 1000 ns budget"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("t.json")).unwrap()).unwrap();
    let t = &report["timing"];
    let worst = t["worst_ns"].as_f64().unwrap();
    let (start, end) = (
        t["start"]["name"].as_str().unwrap(),
        t["end"]["name"].as_str().unwrap(),
    );
    assert!(worst > 0.0 && t["lut_depth"].as_u64().unwrap() >= 1, "{t}");
    assert!(stdout.contains(start) && stdout.contains(end), "{stdout}");
    assert!(report["lut"].as_u64().unwrap() > 0, "{report}");

    let tight = format!("{:.3}", worst / 2.0);
    let err = fails(&caq(
        &[
            "hdl",
            "timing",
            "--report",
            "t.json",
            "--require-ns",
            &tight,
        ],
        dir.path(),
    ));
    assert!(
        err.contains("t.json")
            && err.contains(&format!(
                "exceeds the {} ns budget",
                tight.parse::<f64>().unwrap()
            )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{start} (")) && err.contains(&format!("-> {end} (")),
        "{err}"
    );

    let loose = format!("{:.3}", worst + 0.001);
    let out = caq(
        &[
            "hdl",
            "timing",
            "--report",
            "t.json",
            "--require-ns",
            &loose,
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A seeded random float model of `arch` on digits-sized input.
fn random_float_model(arch: caq_model::arch::Arch) -> caq_model::graph::FloatModel {
    use rand::{Rng, SeedableRng};
    let graph = caq_model::arch::graph_for(arch, [1, 8, 8], 10);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let mut randn =
        |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-0.5..0.5)).collect() };
    let params = graph
        .nodes
        .iter()
        .map(|n| {
            n.op.weight_matrix_dims()
                .map(|(o, k, _)| caq_model::graph::FloatParams {
                    weight: ndarray::Array2::from_shape_vec((o, k), randn(o * k)).unwrap(),
                    bias: ndarray::Array1::from(randn(o)),
                })
        })
        .collect();
    caq_model::graph::FloatModel { graph, params }
}

#[test]
fn export_then_import_gives_back_the_float_model_with_an_operator_table() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = random_float_model(caq_model::arch::Arch::Mlp);
    m.save(&d.join("m.caqf")).unwrap();
    let out = caq(&["export", "--model", "m.caqf", "--out", "m.onnx"], d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = caq(
        &[
            "import",
            "m.onnx",
            "--out",
            "back.caqf",
            "--json",
            "import.json",
        ],
        d,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("fc1/relu") && stdout.contains("ReLU of fc1"),
        "{stdout}"
    );
    assert_eq!(
        caq_model::graph::FloatModel::load(&d.join("back.caqf")).unwrap(),
        m
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("import.json")).unwrap()).unwrap();
    assert_eq!(report["opset"], 13);
    assert_eq!(report["nodes"][0]["op_type"], "Flatten");
}

#[test]
fn import_of_an_unsupported_operator_exits_non_zero_naming_the_node_and_writes_nothing() {
    use caq_onnx::proto::{Message, ModelProto, NodeProto};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let m = random_float_model(caq_model::arch::Arch::Mlp);
    let mut onnx = ModelProto::decode(caq_onnx::export(&m).unwrap().as_slice()).unwrap();
    let g = onnx.graph.as_mut().unwrap();
    let last = g.output[0].name.clone();
    g.node.push(NodeProto {
        input: vec![last],
        output: vec!["probs".into()],
        name: "sm".into(),
        op_type: "Softmax".into(),
        ..Default::default()
    });
    g.output[0].name = "probs".into();
    std::fs::write(d.join("sm.onnx"), onnx.encode_to_vec()).unwrap();
    let err = fails(&caq(&["import", "sm.onnx", "--out", "sm.caqf"], d));
    assert!(
        err.contains("importing sm.onnx")
            && err.contains("node 'sm' (Softmax): operator not supported; caq imports Gemm"),
        "{err}"
    );
    assert!(!d.join("sm.caqf").exists());
}

#[test]
fn run_on_the_cpu_backend_matches_golden_on_every_held_out_digit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    random_float_model(caq_model::arch::Arch::Mlp)
        .save(&d.join("m.caqf"))
        .unwrap();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/sim-small.toml");
    for engine in ["auto", "gemm"] {
        let out = caq(
            &[
                "run",
                "--model",
                "m.caqf",
                "--backend",
                "cpu",
                "--cpu-engine",
                engine,
                "--config",
                config,
                "--levels",
                "8,4,2",
                "--json",
                "run.json",
            ],
            d,
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "caq failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("images/s"), "{stdout}");
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.join("run.json")).unwrap()).unwrap();
        assert_eq!(r["backend"], "cpu", "{r}");
        let runs = r["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 3, "{r}");
        for run in runs {
            // The whole held-out set of digits, every output byte-equal to golden.
            assert_eq!(run["images"], 359, "{run}");
            assert_eq!(run["byte_equal_images"], 359, "{run}");
            assert!(run["cpu"]["images_per_s"].as_f64().unwrap() > 0.0, "{run}");
            let kernels = run["cpu"]["kernels"].as_array().unwrap();
            assert_eq!(kernels.len(), 3, "{run}");
            let want = match (engine, run["bits"][0].as_u64().unwrap()) {
                ("auto", b) if b <= 4 => "lut",
                _ => "gemm",
            };
            assert!(kernels.iter().all(|k| k["kernel"] == want), "{run}");
        }
    }
}

// `caq finetune` end to end on digits: the nested bundle, its comparison table and report, and
// its error exits.
#[cfg(feature = "train")]
#[test]
fn finetune_writes_a_nested_bundle_better_than_ptq_at_its_deepest_level() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The validation images of `caq finetune` (an eighth of the 1438) are left out of training.
    ok(&caq(
        &[
            "train",
            "--quiet",
            "--val-images",
            "179",
            "--out",
            "m.caqf",
            "--json",
            "t.json",
        ],
        d,
    ));
    let t: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("t.json")).unwrap()).unwrap();
    assert_eq!(t["train_images"], 1438 - 179, "{t}");
    let out = ok(&caq(
        &[
            "finetune",
            "--model",
            "m.caqf",
            "--levels",
            "8,4,2",
            "--epochs",
            "3",
            "--distill",
            "0.5",
            "--quiet",
            "--dedicated",
            "--out",
            "q.caqb",
            "--float-out",
            "t.caqf",
            "--report",
            "qat.md",
            "--json",
            "qat.json",
        ],
        d,
    ));
    assert!(out.contains("QAT nested"), "{out}");
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("qat.json")).unwrap()).unwrap();
    assert_eq!(r["levels"], serde_json::json!([8, 4, 2]));
    let rows = r["rows"].as_array().unwrap();
    // PTQ defaults, PTQ with the QAT quantizer, QAT joint, the joint bundle's levels chosen
    // bottom-up, the PTQ bundle's chosen top-down (the bundle written), dedicated.
    assert_eq!(rows.len(), 6, "{r}");
    assert!(
        rows[4]["method"]
            .as_str()
            .is_some_and(|m| m.starts_with("QAT nested from PTQ") && m.contains("bundle written")),
        "{r}"
    );
    let acc = |row: usize, level: usize| rows[row]["accuracy_pct"][level].as_f64().unwrap();
    let val = |row: usize, level: usize| rows[row]["val_accuracy_pct"][level].as_f64().unwrap();
    let (ptq2, qat2, dedicated2) = (acc(0, 2), acc(4, 2), acc(5, 2));
    eprintln!("digits 8⊃4⊃2 at 2 bits: PTQ {ptq2:.2}, QAT {qat2:.2}, dedicated {dedicated2:.2}");
    assert!(qat2 > ptq2, "QAT {qat2} should beat PTQ {ptq2} at 2 bits");
    // The validation images are carved from the training split (an eighth of 1438).
    assert_eq!(r["val_images"], 179, "{r}");
    assert_eq!(r["train_images"], 1438 - 179, "{r}");
    // The bundle written keeps the PTQ model's full-bit level, on both sets.
    assert_eq!((acc(4, 0), val(4, 0)), (acc(0, 0), val(0, 0)), "{r}");
    // Every level of it kept the candidate with the lowest validation loss, with the margin
    // (while the levels above kept the PTQ codes) among the PTQ codes and those clearly below;
    // each candidate's paired standard error is reported beside it.
    let choices = r["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3, "{r}");
    for (level, c) in choices.iter().enumerate() {
        let chosen = c["chosen"].as_u64().unwrap() as usize;
        assert_eq!(
            c["val_accuracy_pct"][chosen].as_f64(),
            Some(val(4, level)),
            "{r}"
        );
        let losses: Vec<f64> = serde_json::from_value(c["val_loss"].clone()).unwrap();
        let ses: Vec<f64> = serde_json::from_value(c["val_loss_se"].clone()).unwrap();
        assert_eq!(ses.len(), losses.len(), "{r}");
        let margin = c["margin"].as_bool().unwrap();
        let competes = |k: usize| {
            !margin || k == 0 || losses[0] - losses[k] > caq_model::qat::KEEP_MARGIN_SE * ses[k]
        };
        assert!(
            (0..losses.len()).all(|k| !competes(k) || losses[k] >= losses[chosen]),
            "{r}"
        );
    }
    assert_eq!(r["joint_choices"].as_array().map(Vec::len), Some(3), "{r}");
    let md = std::fs::read_to_string(d.join("qat.md")).unwrap();
    assert!(
        md.contains("caq finetune")
            && md.contains("| QAT nested from PTQ")
            && md.contains("the bundle written")
            && md.contains("nested − dedicated"),
        "{md}"
    );
    // The bundle and the fine-tuned float model are real: quantize/inspect read them back.
    let inspect = ok(&caq(&["inspect", "q.caqb"], d));
    assert!(inspect.contains("8") && inspect.contains("2"), "{inspect}");
    ok(&caq(
        &[
            "quantize",
            "--model",
            "t.caqf",
            "--levels",
            "8,2",
            "--out",
            "again.caqb",
        ],
        d,
    ));
}

/// `caq bench --val-images` chooses the gates on images the model was not trained on, so it
/// refuses to train its own LeNet (which would see them), before any work and writing nothing.
#[cfg(feature = "sim")]
#[test]
fn bench_val_images_without_a_model_is_an_error_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/pynq-z2.toml");
    let e = fails(&caq(
        &[
            "bench",
            "--config",
            config,
            "--val-images",
            "100",
            "--work",
            "w",
            "--markdown",
            "r.md",
        ],
        d,
    ));
    assert!(e.contains("--val-images") && e.contains("--model"), "{e}");
    assert!(!d.join("r.md").exists() && !d.join("w").exists());
}

#[cfg(feature = "train")]
#[test]
fn bad_finetune_flags_exit_non_zero_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&caq(
        &["train", "--quiet", "--epochs", "1", "--out", "m.caqf"],
        d,
    ));
    let e = fails(&caq(
        &[
            "finetune",
            "--model",
            "m.caqf",
            "--levels",
            "8,4",
            "--level-weights",
            "1",
            "--out",
            "q.caqb",
        ],
        d,
    ));
    assert!(
        e.contains("--level-weights") && e.contains("1 weights for 2 levels"),
        "{e}"
    );
    let e = fails(&caq(
        &[
            "finetune", "--model", "m.caqf", "--levels", "4,8", "--out", "q.caqb",
        ],
        d,
    ));
    assert!(e.contains("--levels"), "{e}");
    let e = fails(&caq(
        &["finetune", "--model", "nope.caqf", "--out", "q.caqb"],
        d,
    ));
    assert!(e.contains("nope.caqf"), "{e}");
    let e = fails(&caq(
        &[
            "finetune",
            "--model",
            "m.caqf",
            "--levels",
            "8,4",
            "--gate-weights",
            "m.caqf",
            "--out",
            "q.caqb",
        ],
        d,
    ));
    assert!(e.contains("--gate-weights") && e.contains("m.caqf"), "{e}");
    let e = fails(&caq(
        &[
            "finetune",
            "--model",
            "m.caqf",
            "--val-images",
            "5000",
            "--out",
            "q.caqb",
        ],
        d,
    ));
    assert!(e.contains("--val-images 5000"), "{e}");
    assert!(!d.join("q.caqb").exists());
}

#[test]
fn hostile_flags_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: [(&[&str], &str); 6] = [
        (
            &["run", "--bundle", "b.caqb", "--limit", "0"],
            "'--limit <LIMIT>': expected a whole number of at least 1",
        ),
        (
            &["switch-cost", "--model", "m.caqf", "--repeat", "0"],
            "'--repeat <REPEAT>'",
        ),
        (
            &["run", "--bundle", "b.caqb", "--energy-window", "NaN"],
            "expected a positive, finite number, not 'NaN'",
        ),
        (
            &[
                "hdl",
                "synth",
                "--config",
                "c.toml",
                "--require-headroom",
                "NaN",
            ],
            "expected a percentage in 0..=100, not 'NaN'",
        ),
        (
            &["quantize", "--model", "m.caqf", "--out", "x", "--json", "x"],
            "--json and --out are the same file",
        ),
        (
            &["quantize", "--model", "m.caqf", "--out", "m.caqf"],
            "is also --model: an output must not overwrite an input",
        ),
    ];
    for (args, want) in cases {
        let err = fails(&caq(args, d));
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // A FIFO or a directory as a model file is refused at once (a FIFO used to block forever).
    let fifo = d.join("fifo.caqb");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let err = fails(&caq(&["inspect", "fifo.caqb"], d));
    assert!(err.contains("is a FIFO, expected a regular file"), "{err}");
    let err = fails(&caq(&["inspect", "."], d));
    assert!(
        err.contains("is a directory, expected a regular file"),
        "{err}"
    );
    // The OS cause is printed once, not again as a `caused by` line.
    let err = fails(&caq(&["inspect", "missing.caqb"], d));
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[cfg(feature = "train")]
#[test]
fn quantization_flags_with_a_bundle_are_refused_and_json_goes_to_a_device_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/sim-small.toml");
    ok(&caq(
        &["train", "--epochs", "2", "--quiet", "--out", "m.caqf"],
        d,
    ));
    ok(&caq(
        &[
            "quantize", "--model", "m.caqf", "--levels", "8,4", "--out", "m.caqb",
        ],
        d,
    ));
    let err = fails(&caq(
        &[
            "run",
            "--bundle",
            "m.caqb",
            "--backend",
            "golden",
            "--config",
            config,
            "--levels",
            "8,4",
            "--act-bits",
            "6",
        ],
        d,
    ));
    assert!(
        err.contains("--levels, --act-bits do not apply with --bundle"),
        "{err}"
    );
    // `--json -` prints the report on standard output.
    let out = ok(&caq(
        &[
            "run",
            "--bundle",
            "m.caqb",
            "--backend",
            "golden",
            "--config",
            config,
            "--limit",
            "3",
            "--json",
            "-",
        ],
        d,
    ));
    assert!(out.contains("\"byte_equal_images\""), "{out}");
    // --outputs: one JSON line per setting and image, the codes the golden executor gives for
    // that image of the data set, the prediction their first maximum.
    ok(&caq(
        &[
            "run",
            "--bundle",
            "m.caqb",
            "--backend",
            "golden",
            "--config",
            config,
            "--limit",
            "5",
            "--outputs",
            "out.jsonl",
        ],
        d,
    ));
    let q = caq_model::bundle::Bundle::open(&d.join("m.caqb"))
        .unwrap()
        .load()
        .unwrap();
    let digits = caq_model::data::digits().unwrap();
    let text = std::fs::read_to_string(d.join("out.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2 * 5, "two levels × five images");
    for (n, l) in lines.iter().enumerate() {
        assert_eq!(l["image"], n % 5);
        let bits: Vec<u8> = serde_json::from_value(l["bits"].clone()).unwrap();
        assert!(bits.iter().all(|&b| b == [8, 4][n / 5]), "{l}");
        let index = l["index"].as_u64().unwrap() as usize;
        assert_eq!(l["label"], digits.labels[index]);
        let codes = q
            .executor(&bits)
            .unwrap()
            .logits(digits.image(index))
            .unwrap();
        assert_eq!(l["codes"], serde_json::json!(codes));
        let best = codes.iter().max().unwrap();
        let first = codes.iter().position(|c| c == best).unwrap();
        assert_eq!(l["prediction"], first);
    }
    // A character device given as --json stays a device (root can make one in a temp dir; the
    // old rename replaced it with a regular file).
    let null = d.join("null");
    let made = Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .status()
        .is_ok_and(|s| s.success());
    if made {
        ok(&caq(
            &[
                "run",
                "--bundle",
                "m.caqb",
                "--backend",
                "golden",
                "--config",
                config,
                "--limit",
                "3",
                "--json",
                "null",
            ],
            d,
        ));
        use std::os::unix::fs::FileTypeExt;
        assert!(
            std::fs::metadata(&null)
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }
}

#[test]
fn a_failed_demo_leaves_no_output_and_never_sweeps_a_foreign_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // An early error (a missing config) used to leave an empty output directory.
    let err = fails(&caq(
        &["demo", "--out", "demo", "--config", "missing.toml"],
        d,
    ));
    assert!(err.contains("missing.toml"), "{err}");
    assert!(!d.join("demo").exists());
    // A directory of other files is refused before any work, and left as it was.
    std::fs::create_dir(d.join("mine")).unwrap();
    std::fs::write(d.join("mine/notes.txt"), b"precious").unwrap();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/sim-small.toml");
    let err = fails(&caq(&["demo", "--out", "mine", "--config", config], d));
    assert!(
        err.contains("is a directory of other files (no digits-mlp.caqb)"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(d.join("mine/notes.txt")).unwrap(),
        b"precious"
    );
    assert_eq!(
        std::fs::read_dir(d).unwrap().count(),
        1,
        "no temporary left"
    );
}
