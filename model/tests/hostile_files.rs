//! The hostile model files of issue 20, one by one: each was accepted by some backend, or
//! panicked or aborted one; each must now be refused at open with a message naming the field.
//! The files are rewritten with fresh checksums, so each edit reaches the validation rather
//! than stopping at the manifest's CRC (which has its own test here).

use caq_model::bundle::{self, Bundle};
use caq_model::graph::FloatModel;
use caq_model::qmodel::{self, QModel, QuantizeConfig};
use caq_model::store::{self, TensorFile};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

mod common;
use common::{tiny_data, tiny_model};

fn tiny_bundle(dir: &Path) -> (QModel, PathBuf) {
    let q = qmodel::quantize(
        &tiny_model(1),
        &tiny_data(32, 2),
        &QuantizeConfig::nested(&[8, 6, 4]),
    )
    .unwrap();
    let path = dir.join("tiny.caqb");
    bundle::write(&path, &q).unwrap();
    (q, path)
}

/// Rewrites the file at `src` into `dst` with its document edited, the same tensors and fresh
/// checksums.
fn rewrite(src: &Path, dst: &Path, edit: impl FnOnce(&mut Value)) {
    let f = TensorFile::open(src).unwrap();
    let mut doc = f.doc().clone();
    let tensors = f.out_tensors().unwrap();
    edit(&mut doc);
    store::write_atomic(dst, &doc, &tensors).unwrap();
}

fn bundle_err(path: &Path) -> String {
    match Bundle::open(path).and_then(|b| b.load()) {
        Ok(_) => panic!("{} opened although it is bad", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn hostile_bundle_manifests_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (_, good) = tiny_bundle(dir.path());
    Bundle::open(&good).unwrap().load().unwrap();
    let case = dir.path().join("case.caqb");
    type Edit = fn(&mut Value);
    let cases: Vec<(&str, Edit, &str)> = vec![
        // Panicked `caq run` and `caq gate` (index out of bounds).
        (
            "levels []",
            |d| d["quantize"]["levels"] = json!([]),
            "'quantize.levels': no levels given",
        ),
        (
            "ascending levels",
            |d| d["quantize"]["levels"] = json!([4, 6, 8]),
            "quantize.levels",
        ),
        (
            "a layer's levels differ",
            |d| d["layers"][0]["levels"] = json!([8, 4]),
            "differ from the model's quantize.levels",
        ),
        (
            "input bits 0",
            |d| d["input"]["bits"] = json!(0),
            "'input': bits 0 is outside 2..=8",
        ),
        (
            "activation bits 9",
            |d| d["acts"][0]["bits"] = json!(9),
            "'acts[0]': bits 9 is outside 2..=8",
        ),
        (
            "activation bits 255",
            |d| d["acts"][3]["bits"] = json!(255),
            "'acts[3]': bits 255 is outside 2..=8",
        ),
        (
            "act_bits 0",
            |d| d["quantize"]["act_bits"] = json!(0),
            "'quantize.act_bits': 0 is outside 2..=8",
        ),
        (
            "a ReLU layer's output marked signed",
            |d| d["acts"][0]["signed"] = json!(true),
            "'acts[0] (node 'conv1')': 8 bits signed; this node's output is 8 bits unsigned",
        ),
        (
            "a pooling node's quantizer edited",
            |d| d["acts"][1]["scale"] = json!(0.5),
            "'acts[1] (node 'pool1')': ActQuant { bits: 8, signed: false, scale: 0.5 }; this node \
             passes its input's quantizer on",
        ),
        (
            "signed input pixels",
            |d| d["input"]["signed"] = json!(true),
            "'input': signed; the input quantizer takes unsigned pixel codes",
        ),
        (
            "scale 0",
            |d| d["input"]["scale"] = json!(0.0),
            "'input': scale 0 must be finite and in [2^-100, 2^100]",
        ),
        (
            "scale negative",
            |d| d["acts"][0]["scale"] = json!(-1.0),
            "'acts[0]': scale -1 must be finite",
        ),
        (
            "scale 1e38",
            |d| d["acts"][1]["scale"] = json!(1e38),
            "'acts[1]': scale 100000000000000000000000000000000000000 must be finite",
        ),
        (
            "plane-group shift 0",
            |d| d["layers"][0]["plane_groups"][0]["shift"] = json!(0),
            "plane groups (bits, shift) [(4, 0), (3, 2), (3, 0)]; levels [8, 6, 4] store [(4, 4), (3, 2), (3, 0)]",
        ),
        (
            "plane-group shift 7",
            |d| d["layers"][1]["plane_groups"][1]["shift"] = json!(7),
            "levels [8, 6, 4] store",
        ),
        (
            "padding 2^62",
            |d| d["graph"]["nodes"][0]["op"]["padding"] = json!(1u64 << 62),
            "layer 'conv1': padding.top = 4611686018427387904 exceeds 65535",
        ),
        (
            "padding 100,000",
            |d| d["graph"]["nodes"][0]["op"]["padding"] = json!(100_000),
            "layer 'conv1': padding.top = 100000 exceeds 65535",
        ),
        (
            "stride 2^63",
            |d| d["graph"]["nodes"][0]["op"]["stride"] = json!(1u64 << 63),
            "layer 'conv1': stride = 9223372036854775808 exceeds 65535",
        ),
        (
            "duplicate node names",
            |d| d["graph"]["nodes"][3]["name"] = json!("conv1"),
            "'node 3 name': 'conv1' is the name of an earlier node too",
        ),
        (
            "ANSI escape in a gate name",
            |d| d["gates"] = json!([{"name": "\u{1b}[2Jx", "bits": [8, 8]}]),
            "'gates[0].name': \"\\u{1b}[2Jx\": expected 1..=64 letters, digits, '-' or '_'",
        ),
        (
            "a plane group's tensor renamed",
            |d| d["layers"][1]["plane_groups"][2]["tensor"] = json!("conv1.g2"),
            "layer 'fc': plane group 2: tensor 'conv1.g2'",
        ),
    ];
    for (what, edit, want) in cases {
        rewrite(&good, &case, edit);
        let e = bundle_err(&case);
        assert!(e.contains(want), "{what}: {e}");
        assert!(e.contains("case.caqb"), "{what}: {e}");
    }
}

/// Moves the tensor data of a safetensors file after a new header text.
fn with_header(bytes: &[u8], header: &str) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut h = header.as_bytes().to_vec();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

fn header_text(bytes: &[u8]) -> String {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    String::from_utf8(bytes[8..8 + n].to_vec()).unwrap()
}

#[test]
fn a_flipped_manifest_digit_fails_the_header_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let (_, good) = tiny_bundle(dir.path());
    let mut bytes = std::fs::read(&good).unwrap();
    let h = header_text(&bytes);
    // The first digit of the input quantizer's scale, inside the escaped manifest text.
    let at = h.find("\\\"scale\\\":").unwrap() + "\\\"scale\\\":".len();
    let at = at
        + h[at..]
            .find(|c: char| c.is_ascii_digit() && c != '0')
            .unwrap();
    let b = &mut bytes[8 + at];
    *b = if *b == b'9' { b'8' } else { *b + 1 };
    std::fs::write(&good, &bytes).unwrap();
    let e = bundle_err(&good);
    assert!(
        e.contains("tiny.caqb: the manifest failed its checksum"),
        "{e}"
    );
}

#[test]
fn a_header_with_a_key_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, good) = tiny_bundle(dir.path());
    let bytes = std::fs::read(&good).unwrap();
    let h = header_text(&bytes);
    let v: Value = serde_json::from_str(&h).unwrap();
    // The same tensor entry twice: a JSON reader keeps one of them, which one is up to it.
    let entry = format!("\"fc.bias\":{}", v["fc.bias"]);
    let forged = h.replacen('{', &format!("{{{entry},"), 1);
    std::fs::write(&good, with_header(&bytes, forged.trim_end())).unwrap();
    let e = bundle_err(&good);
    assert!(e.contains("the header has the key 'fc.bias' twice"), "{e}");
}

#[test]
fn a_version_1_file_is_refused_with_how_to_regenerate_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, good) = tiny_bundle(dir.path());
    let bytes = std::fs::read(&good).unwrap();
    let mut v: Value = serde_json::from_str(&header_text(&bytes)).unwrap();
    let meta = v["__metadata__"].as_object_mut().unwrap();
    meta.remove("caq.header_crc32");
    let mut doc: Value = serde_json::from_str(meta["caq"].as_str().unwrap()).unwrap();
    doc["schema_version"] = json!(1);
    meta.insert("caq".into(), Value::String(doc.to_string()));
    std::fs::write(&good, with_header(&bytes, &v.to_string())).unwrap();
    let e = bundle_err(&good);
    assert!(
        e.contains("has no header checksum")
            && e.contains("`caq quantize` for a bundle")
            && e.contains("tiny.caqb"),
        "{e}"
    );
}

#[test]
fn a_removed_tensor_is_named_as_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (_, good) = tiny_bundle(dir.path());
    let f = TensorFile::open(&good).unwrap();
    let doc = f.doc().clone();
    let mut tensors = f.out_tensors().unwrap();
    tensors.retain(|t| t.name != "conv1.requant_shift");
    drop(f);
    let case = dir.path().join("case.caqb");
    store::write_atomic(&case, &doc, &tensors).unwrap();
    let e = bundle_err(&case);
    assert!(e.contains("tensor 'conv1.requant_shift' is missing"), "{e}");
}

fn float_err(path: &Path) -> String {
    match FloatModel::load(path) {
        Ok(_) => panic!("{} loaded although it is bad", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn hostile_float_models_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("m.caqf");
    tiny_model(3).save(&good).unwrap();
    FloatModel::load(&good).unwrap();
    // Non-finite biases and weights.
    for (bad, shown) in [(f32::NAN, "NaN"), (f32::NEG_INFINITY, "-inf")] {
        let mut m = tiny_model(3);
        m.params[3].as_mut().unwrap().bias[2] = bad;
        m.save(&good).unwrap();
        let e = float_err(&good);
        assert!(
            e.contains(&format!("layer 'fc': bias[2] = {shown} is not finite")),
            "{e}"
        );
    }
    tiny_model(3).save(&good).unwrap();
    let case = dir.path().join("case.caqf");
    type Edit = fn(&mut Value);
    let cases: Vec<(Edit, &str)> = vec![
        // Panicked inside ndarray (shape overflow).
        (
            |d| d["graph"]["nodes"][0]["op"]["padding"] = json!(1u64 << 62),
            "layer 'conv1': padding.top = 4611686018427387904 exceeds 65535",
        ),
        // Asked for a 160 GB allocation.
        (
            |d| d["graph"]["nodes"][0]["op"]["padding"] = json!(100_000),
            "padding.top = 100000 exceeds 65535",
        ),
        (
            |d| d["graph"]["nodes"][1]["name"] = json!("conv1"),
            "'conv1' is the name of an earlier node too",
        ),
        (
            |d| d["graph"]["nodes"][1]["name"] = json!("pool\n1"),
            "'node 1 name': \"pool\\n1\": expected",
        ),
        (
            |d| d["graph"]["nodes"][1]["op"]["stride"] = json!(u64::MAX),
            "layer 'pool1': stride = 18446744073709551615 exceeds 65535",
        ),
    ];
    for (edit, want) in cases {
        rewrite(&good, &case, edit);
        let e = float_err(&case);
        assert!(e.contains(want) && e.contains("case.caqf"), "{want}: {e}");
    }
}

#[test]
fn an_activation_over_the_memory_limit_is_refused_at_load() {
    // Padding 30,000 keeps every dimension within 65,535 but asks for 3 × 60,006² f32 values
    // (43 GB) of conv output; the limit is half the machine's memory or CAQ_MEMORY_LIMIT_MB.
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("m.caqf");
    tiny_model(3).save(&good).unwrap();
    let case = dir.path().join("case.caqf");
    rewrite(&good, &case, |d| {
        d["graph"]["nodes"][0]["op"]["padding"] = json!(30_000);
    });
    let e = float_err(&case);
    assert!(
        e.contains("conv1") && e.contains("MiB; the limit is"),
        "{e}"
    );
}

#[test]
fn calibration_that_would_not_fit_in_memory_is_refused_before_allocating() {
    // A 1×1 conv to 65,535 channels on 28×28 images: a valid model of 205 MB of activations per
    // image, which calibration on 512 images (105 GB) used to abort on.
    use caq_model::data::Dataset;
    use caq_model::graph::{FloatParams, Graph, Node, Op, Src};
    use ndarray::{Array1, Array2};
    let c = 65_535;
    let graph = Graph {
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
    };
    let m = FloatModel {
        graph,
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
    caq_model::validate::float_model(&m, &caq_model::validate::Limits::for_this_machine()).unwrap();
    let n = 512;
    let data = Dataset {
        name: "zeros".into(),
        shape: [1, 28, 28],
        pixels: vec![0; n * 784],
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
        max_value: 255,
        classes: 10,
    };
    let mut cfg = QuantizeConfig::nested(&[8, 4]);
    cfg.calib_images = n;
    let e = qmodel::quantize(&m, &data, &cfg).unwrap_err().to_string();
    assert!(
        e.contains("'calib_images': calibrating on 512 images holds")
            && e.contains("use fewer calibration images"),
        "{e}"
    );
}
