//! The Python route: models built with PyPI's `onnx` package import and match its reference
//! evaluator; models caq exports pass `onnx.checker.check_model(full_check=True)` and give the
//! same outputs in the reference evaluator as `FloatModel::forward`.
//!
//! Needs `python3` with `onnx` and `numpy` (`scripts/setup.sh` installs them). Without them the
//! tests print why and pass, unless `CI` or `CAQ_REQUIRE_PYONNX=1` is set: then they fail.

mod common;

use caq_model::arch::{Arch, graph_for};
use caq_model::graph::FloatModel;
use caq_model::train::{TrainConfig, train};
use ndarray::Array3;
use std::path::Path;
use std::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/make_models.py");

/// Runs the helper script from `cwd` (never the repo root, whose `onnx/` folder would shadow the
/// Python package).
fn script(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new("python3")
        .arg(SCRIPT)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("python3 runs")
}

/// Whether python3 can import onnx and numpy; panics when they are required.
fn python_onnx(cwd: &Path) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import onnx, numpy, onnx.reference"])
        .current_dir(cwd)
        .output()
        .is_ok_and(|o| o.status.success());
    let required = std::env::var_os("CI").is_some_and(|v| !v.is_empty())
        || std::env::var("CAQ_REQUIRE_PYONNX").as_deref() == Ok("1");
    if !ok && required {
        panic!(
            "python3 cannot import onnx and numpy, and CI or CAQ_REQUIRE_PYONNX=1 requires them; \
             run scripts/setup.sh (python3 -m pip install onnx==1.17.0 numpy)"
        );
    }
    if !ok {
        eprintln!(
            "skipping: python3 cannot import onnx and numpy (python3 -m pip install \
             onnx==1.17.0 numpy; set CAQ_REQUIRE_PYONNX=1 to make this a failure)"
        );
    }
    ok
}

fn ok(out: std::process::Output) {
    assert!(
        out.status.success(),
        "make_models.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: output length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
            "{what}: output {i} is {g}, reference {w}"
        );
    }
}

fn f32s(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

fn input_for(m: &FloatModel, flat: Vec<f32>) -> Array3<f32> {
    let [c, h, w] = m.graph.input_shape;
    Array3::from_shape_vec((c, h, w), flat).expect("input size")
}

#[test]
fn python_built_models_import_and_match_the_reference_evaluator() {
    let dir = tempfile::tempdir().unwrap();
    if !python_onnx(dir.path()) {
        return;
    }
    ok(script(&["make", dir.path().to_str().unwrap()], dir.path()));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    let entries = manifest.as_array().unwrap();
    assert_eq!(entries.len(), 5);
    for e in entries {
        let name = e["name"].as_str().unwrap();
        let path = Path::new(e["file"].as_str().unwrap());
        let result = caq_onnx::import(path);
        if let Some(want) = e["error_contains"].as_str() {
            let err = result.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(want), "{name}: error '{err}' lacks '{want}'");
            continue;
        }
        let m = result.unwrap_or_else(|err| panic!("{name}: {err}"));
        let y = m.forward(input_for(&m, f32s(&e["input"])).view());
        close(y.as_slice().unwrap(), &f32s(&e["output"]), name);
    }
}

/// Exports `m`, has Python check it and evaluate it on `x`, compares with `forward`, and
/// re-imports it.
fn check_export(m: &FloatModel, x: &[f32], dir: &Path, name: &str) {
    let onnx_path = dir.join(format!("{name}.onnx"));
    caq_onnx::export_file(m, &onnx_path).unwrap();
    let input = dir.join(format!("{name}.in.json"));
    std::fs::write(&input, serde_json::json!({ "input": x }).to_string()).unwrap();
    let out = dir.join(format!("{name}.out.json"));
    ok(script(
        &[
            "check",
            onnx_path.to_str().unwrap(),
            input.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
        dir,
    ));
    let res: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let y = m.forward(input_for(m, x.to_vec()).view());
    close(y.as_slice().unwrap(), &f32s(&res["output"]), name);
    assert_eq!(
        caq_onnx::import(&onnx_path).unwrap(),
        *m,
        "{name}: re-import"
    );
}

#[test]
fn exported_models_pass_the_onnx_checker_and_match_forward() {
    let dir = tempfile::tempdir().unwrap();
    if !python_onnx(dir.path()) {
        return;
    }
    let models = [
        (
            "mlp",
            common::random_model(graph_for(Arch::Mlp, [1, 8, 8], 10), 11),
        ),
        (
            "lenet",
            common::random_model(graph_for(Arch::LeNet, [1, 20, 20], 10), 12),
        ),
        (
            "residual",
            common::random_model(common::residual_graph(), 13),
        ),
        ("vector", common::random_model(common::vector_graph(), 14)),
    ];
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(15);
    for (name, m) in &models {
        let [c, h, w] = m.graph.input_shape;
        let x = common::randn(&mut rng, c * h * w, 1.0);
        check_export(m, &x, dir.path(), name);
    }
}

#[test]
fn the_mlperf_tiny_networks_export_and_match_the_reference_evaluator() {
    // Depthwise (group = C) and pointwise convs, per-side "same" pads, a 10x4 kernel, residual
    // adds, global average pools over non-square maps: onnx's checker and reference evaluator
    // against `forward`, and the re-import identical.
    let dir = tempfile::tempdir().unwrap();
    if !python_onnx(dir.path()) {
        return;
    }
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(16);
    for (name, arch) in Arch::ALL {
        let Some((shape, classes)) = arch.mlperf_tiny() else {
            continue;
        };
        let m = caq_model::arch::seeded(arch, shape, classes, 17).unwrap();
        let x = common::randn(&mut rng, shape.iter().product(), 1.0);
        check_export(&m, &x, dir.path(), name);
    }
}

#[test]
fn trained_digits_mlp_exports_checks_and_reimports_identically() {
    let dir = tempfile::tempdir().unwrap();
    if !python_onnx(dir.path()) {
        return;
    }
    let digits = caq_model::data::digits().unwrap();
    let cfg = TrainConfig {
        epochs: 3,
        ..TrainConfig::default_for(Arch::Mlp)
    };
    let (m, _) = train(&digits, &cfg, false).unwrap();
    for i in [0, 1, 2] {
        let x = digits.image_f32(i);
        check_export(
            &m,
            x.as_slice().unwrap(),
            dir.path(),
            &format!("digits_mlp_{i}"),
        );
    }
}
