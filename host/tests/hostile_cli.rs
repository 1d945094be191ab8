//! The reproductions of issue 20 through the `caq` binary: each hostile file or flag that used to
//! panic, abort, hang, clobber an output or exit 0 now exits non-zero with a message naming the
//! file and what is wrong. Each case prints its command and the message (run with
//! `--nocapture` to see them).

use caq_model::arch::{Arch, graph_for};
use caq_model::bundle;
use caq_model::graph::{FloatModel, FloatParams};
use caq_model::qmodel::{self, QuantizeConfig};
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "common/rewrite.rs"]
mod rewrite;
use rewrite::rewrite_doc as rewrite;

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/sim-small.toml");

/// Runs caq in `dir`; returns (exit code, stderr). A run longer than a minute is a hang.
fn caq(args: &[&str], dir: &Path) -> (Option<i32>, String) {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_caq"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("caq runs");
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "{args:?}: took {:?}",
        t.elapsed()
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The run must exit 1 (an error) or 2 (clap's usage error), not a panic's 101 or a signal, with
/// `want` in its message.
fn refused(args: &[&str], dir: &Path, want: &str) {
    let (code, err) = caq(args, dir);
    println!("$ caq {}\n{err}", args.join(" "));
    assert!(
        matches!(code, Some(1 | 2)),
        "{args:?}: exit {code:?}\n{err}"
    );
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(err.contains(want), "{args:?}: expected '{want}' in\n{err}");
}

fn float_mlp() -> FloatModel {
    let graph = graph_for(Arch::Mlp, [1, 8, 8], 10);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let params = graph
        .nodes
        .iter()
        .map(|n| {
            n.op.weight_matrix_dims().map(|(o, k, _)| FloatParams {
                weight: Array2::from_shape_fn((o, k), |_| rng.random_range(-0.3..0.3)),
                bias: Array1::from_shape_fn(o, |_| rng.random_range(-0.1..0.1)),
            })
        })
        .collect();
    FloatModel { graph, params }
}

#[test]
fn every_reproduction_of_issue_20_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = float_mlp();
    model.save(&d.join("m.caqf")).unwrap();
    let digits = caq_model::data::digits().unwrap();
    let calib = digits.subset(&(0..64).collect::<Vec<_>>());
    let q = qmodel::quantize(&model, &calib, &QuantizeConfig::nested(&[8, 4])).unwrap();
    bundle::write(&d.join("good.caqb"), &q).unwrap();

    // levels: [] panicked `caq run` and `caq gate` (index out of bounds).
    rewrite(&d.join("good.caqb"), &d.join("nolevels.caqb"), |doc| {
        doc["quantize"]["levels"] = json!([]);
    });
    let want = "nolevels.caqb: invalid argument 'quantize.levels': no levels given";
    refused(
        &[
            "run",
            "--bundle",
            "nolevels.caqb",
            "--backend",
            "golden",
            "--config",
            CONFIG,
        ],
        d,
        want,
    );
    refused(
        &[
            "gate",
            "--bundle",
            "nolevels.caqb",
            "--model",
            "m.caqf",
            "--config",
            CONFIG,
        ],
        d,
        want,
    );

    // Conv padding 2^62 panicked inside ndarray; 100,000 asked for 160 GB.
    let lenet = FloatModel {
        graph: graph_for(Arch::LeNet, [1, 28, 28], 10),
        params: Vec::new(),
    };
    let lenet = FloatModel {
        params: lenet
            .graph
            .nodes
            .iter()
            .map(|n| {
                n.op.weight_matrix_dims().map(|(o, k, _)| FloatParams {
                    weight: Array2::from_elem((o, k), 0.01),
                    bias: Array1::zeros(o),
                })
            })
            .collect(),
        ..lenet
    };
    lenet.save(&d.join("lenet.caqf")).unwrap();
    for (pad, name) in [
        (json!(1u64 << 62), "pad62.caqf"),
        (json!(100_000), "pad1e5.caqf"),
    ] {
        rewrite(&d.join("lenet.caqf"), &d.join(name), |doc| {
            doc["graph"]["nodes"][0]["op"]["padding"] = pad.clone();
        });
        let want = format!("{name}: layer 'conv1': padding.top = {pad} exceeds 65535");
        refused(&["quantize", "--model", name, "--out", "q.caqb"], d, &want);
        refused(&["eval", "--model", name], d, &want);
    }

    // NaN and −inf biases ran on some backends.
    let mut nan = float_mlp();
    let first = nan.params.iter().position(Option::is_some).unwrap();
    nan.params[first].as_mut().unwrap().bias[0] = f32::NAN;
    nan.save(&d.join("nan.caqf")).unwrap();
    refused(
        &["quantize", "--model", "nan.caqf", "--out", "q.caqb"],
        d,
        &format!(
            "nan.caqf: layer '{}': bias[0] = NaN is not finite",
            nan.graph.nodes[first].name
        ),
    );

    // Activation bits of 9, an ANSI gate name, and a flipped manifest digit exited 0.
    rewrite(&d.join("good.caqb"), &d.join("bits9.caqb"), |doc| {
        doc["acts"][0]["bits"] = json!(9);
    });
    refused(
        &[
            "run",
            "--bundle",
            "bits9.caqb",
            "--backend",
            "golden",
            "--config",
            CONFIG,
        ],
        d,
        "bits9.caqb: invalid argument 'acts[0]': bits 9 is outside 2..=8",
    );
    rewrite(&d.join("good.caqb"), &d.join("ansi.caqb"), |doc| {
        doc["gates"] = json!([{"name": "\u{1b}[2Jlow", "bits": [4, 4]}]);
    });
    refused(
        &["inspect", "ansi.caqb"],
        d,
        "'gates[0].name': \"\\u{1b}[2Jlow\"",
    );
    let mut bytes = std::fs::read(d.join("good.caqb")).unwrap();
    let at = bytes
        .windows(9)
        .position(|w| w == b"\\\"scale\\\"")
        .unwrap();
    let digit = at
        + bytes[at..]
            .iter()
            .position(|b| (b'1'..=b'8').contains(b))
            .unwrap();
    bytes[digit] += 1;
    std::fs::write(d.join("flipped.caqb"), &bytes).unwrap();
    refused(
        &["inspect", "flipped.caqb"],
        d,
        "flipped.caqb: the manifest failed its checksum",
    );

    // An IDX data set of 0×0 images panicked `caq train`.
    std::fs::create_dir(d.join("idx")).unwrap();
    let mut images = 0x0803u32.to_be_bytes().to_vec();
    for v in [3u32, 0, 0] {
        images.extend_from_slice(&v.to_be_bytes());
    }
    std::fs::write(d.join("idx/t10k-images-idx3-ubyte"), images).unwrap();
    let mut labels = 0x0801u32.to_be_bytes().to_vec();
    labels.extend_from_slice(&3u32.to_be_bytes());
    labels.extend_from_slice(&[1, 2, 3]);
    std::fs::write(d.join("idx/t10k-labels-idx1-ubyte"), labels).unwrap();
    refused(
        &["train", "--data", "idx", "--out", "t.caqf"],
        d,
        "images of 0 × 0: each side must be in 1..=65535",
    );

    // A FIFO given as an input file blocked forever; a directory said `No such device`.
    let fifo = d.join("fifo.caqf");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    refused(
        &["quantize", "--model", "fifo.caqf", "--out", "q.caqb"],
        d,
        "fifo.caqf: is a FIFO, expected a regular file",
    );
    refused(
        &[
            "run",
            "--bundle",
            ".",
            "--backend",
            "golden",
            "--config",
            CONFIG,
        ],
        d,
        "is a directory, expected a regular file",
    );

    // `quantize --out X --json X` left the JSON where the bundle should be.
    refused(
        &["quantize", "--model", "m.caqf", "--out", "x", "--json", "x"],
        d,
        "--json and --out are the same file (x)",
    );
    assert!(!d.join("x").exists());

    // --json through a link to the process's standard output: written there, the link kept
    // (the rename used to replace the link with a regular file).
    std::os::unix::fs::symlink("/proc/self/fd/1", d.join("stdout.json")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_caq"))
        .args([
            "run",
            "--bundle",
            "good.caqb",
            "--backend",
            "golden",
            "--config",
            CONFIG,
            "--limit",
            "2",
            "--json",
            "stdout.json",
        ])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"byte_equal_images\""));
    let link = std::fs::symlink_metadata(d.join("stdout.json")).unwrap();
    assert!(link.file_type().is_symlink());

    // Flags: counts of 0, NaN, and quantization flags with --bundle.
    refused(
        &["run", "--bundle", "good.caqb", "--limit", "0"],
        d,
        "expected a whole number of at least 1, not '0'",
    );
    refused(
        &["switch-cost", "--model", "m.caqf", "--repeat", "0"],
        d,
        "expected a whole number of at least 1, not '0'",
    );
    refused(
        &["run", "--bundle", "good.caqb", "--energy-window", "NaN"],
        d,
        "expected a positive, finite number, not 'NaN'",
    );
    refused(
        &[
            "hdl",
            "synth",
            "--config",
            CONFIG,
            "--require-headroom",
            "NaN",
        ],
        d,
        "expected a percentage in 0..=100, not 'NaN'",
    );
    refused(
        &[
            "run",
            "--bundle",
            "good.caqb",
            "--backend",
            "golden",
            "--config",
            CONFIG,
            "--rounding",
            "nearest",
        ],
        d,
        "--rounding does not apply with --bundle: the bundle is already quantized",
    );
    refused(
        &[
            "run",
            "--bundle",
            "good.caqb",
            "--backend",
            "golden",
            "--config",
            CONFIG,
            "--poll-us",
            "5",
            "--energy",
            "model",
        ],
        d,
        "--poll-us, --energy apply to --backend uio only",
    );
    refused(
        &[
            "eval",
            "--model",
            "m.caqf",
            "--bundle",
            "good.caqb",
            "--chain",
            "8,4",
            "--act-bits",
            "6",
        ],
        d,
        "--chain, --act-bits do not apply with --bundle: the bundle is evaluated as it was \
         quantized",
    );
}

#[test]
fn a_wide_onnx_conv_imports_and_then_refuses_calibration_instead_of_aborting() {
    // A 1×1 conv to 65,535 channels: a valid model, 205 MB of activations per 28×28 image;
    // calibrating on 512 images asked for 105 GB and aborted.
    use caq_model::graph::{Graph, Node, Op, Src};
    let c = 65_535;
    let m = FloatModel {
        graph: Graph {
            input_shape: [1, 28, 28],
            nodes: vec![
                Node {
                    name: "wide".into(),
                    op: Op::Conv2d {
                        in_channels: 1,
                        out_channels: c,
                        kernel: [1, 1],
                        stride: 1,
                        padding: caq_model::graph::Padding::uniform(0),
                        groups: 1,
                        relu: true,
                    },
                    inputs: vec![Src::Input],
                },
                Node {
                    name: "pool".into(),
                    op: Op::MaxPool {
                        kernel: 28,
                        stride: 28,
                    },
                    inputs: vec![Src::Node(0)],
                },
                Node {
                    name: "flatten".into(),
                    op: Op::Flatten,
                    inputs: vec![Src::Node(1)],
                },
                Node {
                    name: "fc".into(),
                    op: Op::Dense {
                        in_features: c,
                        out_features: 10,
                        relu: false,
                    },
                    inputs: vec![Src::Node(2)],
                },
            ],
        },
        params: vec![
            Some(FloatParams {
                weight: Array2::from_elem((c, 1), 0.01),
                bias: Array1::zeros(c),
            }),
            None,
            None,
            Some(FloatParams {
                weight: Array2::from_elem((10, c), 0.01),
                bias: Array1::zeros(10),
            }),
        ],
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    caq_onnx::export_file(&m, &d.join("wide.onnx")).unwrap();
    let (code, err) = caq(&["import", "wide.onnx", "--out", "wide.caqf"], d);
    assert_eq!(code, Some(0), "{err}");
    // 28×28 images: write an MNIST-shaped IDX set of 600 blank images.
    std::fs::create_dir(d.join("mnist")).unwrap();
    let n = 600u32;
    let mut images = 0x0803u32.to_be_bytes().to_vec();
    for v in [n, 28, 28] {
        images.extend_from_slice(&v.to_be_bytes());
    }
    images.resize(16 + n as usize * 784, 0);
    std::fs::write(d.join("mnist/t10k-images-idx3-ubyte"), images).unwrap();
    let mut labels = 0x0801u32.to_be_bytes().to_vec();
    labels.extend_from_slice(&n.to_be_bytes());
    labels.extend((0..n).map(|i| (i % 10) as u8));
    std::fs::write(d.join("mnist/t10k-labels-idx1-ubyte"), labels).unwrap();
    refused(
        &[
            "quantize",
            "--model",
            "wide.caqf",
            "--data",
            "mnist",
            "--out",
            "q.caqb",
        ],
        d,
        "'calib_images': calibrating on 480 images holds",
    );
}
