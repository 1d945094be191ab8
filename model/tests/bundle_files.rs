//! Bundle and float-model files: round trips, partial loading, and every way a file can be bad.

use caq_model::bundle::{self, Bundle};
use caq_model::graph::FloatModel;
use caq_model::qmodel::{self, QModel, QuantizeConfig};
use caq_model::{ModelError, store};
use std::path::Path;

mod common;
use common::{tiny_data, tiny_model};

fn tiny_bundle(dir: &Path) -> (QModel, std::path::PathBuf) {
    let mut cfg = QuantizeConfig::nested(&[8, 6, 4]);
    cfg.group_size = Some(4);
    let q = qmodel::quantize(&tiny_model(1), &tiny_data(32, 2), &cfg).unwrap();
    let path = dir.join("tiny.caqb");
    bundle::write(&path, &q).unwrap();
    (q, path)
}

#[test]
fn bundle_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (q, path) = tiny_bundle(dir.path());
    let back = Bundle::open(&path).unwrap().load().unwrap();
    assert_eq!(back, q);
}

#[test]
fn loaded_bundle_computes_the_same_logits_at_every_level() {
    let dir = tempfile::tempdir().unwrap();
    let (q, path) = tiny_bundle(dir.path());
    let back = Bundle::open(&path).unwrap().load().unwrap();
    let data = tiny_data(8, 9);
    for bits in [8, 6, 4] {
        let a = q.executor(&q.uniform_bits(bits)).unwrap();
        let b = back.executor(&back.uniform_bits(bits)).unwrap();
        for i in 0..data.len() {
            assert_eq!(
                a.logits(data.image(i)).unwrap(),
                b.logits(data.image(i)).unwrap()
            );
        }
    }
}

#[test]
fn part_bit_load_reads_only_the_high_planes_and_matches_the_full_model_at_that_level() {
    let dir = tempfile::tempdir().unwrap();
    let (q, path) = tiny_bundle(dir.path());
    let b = Bundle::open(&path).unwrap();
    let low = b.load_resident(&[4, 4]).unwrap();
    for l in low.layers.iter().flatten() {
        assert_eq!(l.weights.groups.len(), 1, "only the high part is resident");
        assert_eq!(l.weights.levels, vec![4]);
    }
    let data = tiny_data(8, 3);
    let full = q.executor(&q.uniform_bits(4)).unwrap();
    let part = low.executor(&low.uniform_bits(4)).unwrap();
    for i in 0..data.len() {
        assert_eq!(
            full.logits(data.image(i)).unwrap(),
            part.logits(data.image(i)).unwrap()
        );
    }
    // A level the resident model does not hold is an error, not a silent fallback.
    assert!(low.executor(&low.uniform_bits(8)).is_err());
    // Mixed: the first layer at 6 bits, the second at 4.
    let mixed = b.load_resident(&[6, 4]).unwrap();
    assert_eq!(mixed.layers[0].as_ref().unwrap().weights.groups.len(), 2);
}

/// Bytes of a healthy bundle, for the corruption tests.
fn healthy_bytes(dir: &Path) -> (Vec<u8>, std::path::PathBuf) {
    let (_, path) = tiny_bundle(dir);
    (std::fs::read(&path).unwrap(), path)
}

fn open_err(path: &Path) -> String {
    match Bundle::open(path).and_then(|b| b.load()) {
        Ok(_) => panic!("{} opened although it is bad", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn truncated_bundle_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, path) = healthy_bytes(dir.path());
    for cut in [0, 4, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let e = open_err(&path);
        assert!(e.contains("tiny.caqb"), "cut {cut}: {e}");
    }
}

#[test]
fn corrupted_tensor_bytes_fail_the_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bytes, path) = healthy_bytes(dir.path());
    let last = bytes.len() - 3;
    bytes[last] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let e = open_err(&path);
    assert!(e.contains("checksum") && e.contains("tiny.caqb"), "{e}");
}

#[test]
fn corrupted_header_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bytes, path) = healthy_bytes(dir.path());
    bytes[12] = b'#';
    std::fs::write(&path, &bytes).unwrap();
    let e = open_err(&path);
    assert!(e.contains("tiny.caqb"), "{e}");
}

#[test]
fn wrong_schema_version_and_kind_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (q, path) = tiny_bundle(dir.path());
    let e = rewrite_with_doc(&path, &q, |doc| doc["schema_version"] = 99.into());
    assert!(
        e.contains("schema version 99") && e.contains("tiny.caqb"),
        "{e}"
    );
    let e = rewrite_with_doc(&path, &q, |doc| doc["kind"] = "caq.float_model".into());
    assert!(e.contains("expected 'caq.bundle'"), "{e}");
    let e = rewrite_with_doc(&path, &q, |doc| doc["layers"][0]["k"] = 7.into());
    assert!(e.contains("conv1") && e.contains("[3, 7]"), "{e}");
    let e = rewrite_with_doc(&path, &q, |doc| doc["surprise"] = 1.into());
    assert!(
        e.contains("surprise"),
        "unknown manifest fields are errors: {e}"
    );
}

/// Writes the bundle's tensors again under an edited manifest and returns the open error.
fn rewrite_with_doc(path: &Path, q: &QModel, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    bundle::write(path, q).unwrap();
    let f = store::TensorFile::open(path).unwrap();
    let mut doc = f.doc().clone();
    let tensors = f.out_tensors().unwrap();
    drop(f);
    edit(&mut doc);
    store::write_atomic(path, &doc, &tensors).unwrap();
    open_err(path)
}

#[test]
fn missing_file_and_non_bundle_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_err(&dir.path().join("absent.caqb"));
    assert!(e.contains("absent.caqb"), "{e}");
    let junk = dir.path().join("junk.caqb");
    std::fs::write(&junk, b"this is not a tensor file at all").unwrap();
    assert!(open_err(&junk).contains("junk.caqb"));
    // A float model is not a bundle.
    let f = dir.path().join("m.caqf");
    tiny_model(3).save(&f).unwrap();
    assert!(open_err(&f).contains("expected 'caq.bundle'"));
}

#[test]
fn float_model_round_trips_and_rejects_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.caqf");
    let m = tiny_model(4);
    m.save(&path).unwrap();
    assert_eq!(FloatModel::load(&path).unwrap(), m);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let e = FloatModel::load(&path).unwrap_err();
    assert!(matches!(e, ModelError::Checksum { .. }), "{e}");
}

#[test]
fn write_is_atomic_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path) = tiny_bundle(dir.path());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, vec!["tiny.caqb".to_string()], "{path:?}");
    // Writing into a directory that is a file fails cleanly and leaves nothing behind.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, b"x").unwrap();
    let q = Bundle::open(&path).unwrap().load().unwrap();
    assert!(bundle::write(&blocker.join("x.caqb"), &q).is_err());
}

#[test]
fn gates_round_trip_and_bad_gates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut q, _) = tiny_bundle(dir.path());
    let gates = vec![
        qmodel::Gate {
            name: "battery-low".into(),
            bits: vec![4, 4],
        },
        qmodel::Gate {
            name: "mixed".into(),
            bits: vec![8, 4],
        },
    ];
    q.set_gates(gates.clone()).unwrap();
    let path = dir.path().join("gated.caqb");
    bundle::write(&path, &q).unwrap();
    let b = Bundle::open(&path).unwrap();
    assert_eq!(b.manifest().gates, gates);
    let back = b.load().unwrap();
    assert_eq!(back.gate("mixed").unwrap().bits, vec![8, 4]);
    let e = back.gate("nope").unwrap_err().to_string();
    assert!(
        e.contains("no gate named 'nope'") && e.contains("battery-low"),
        "{e}"
    );
    // A level the layer does not have, a wrong length, a duplicate name.
    for (bits, name, what) in [
        (vec![5, 4], "x", "5 bits is not one of its nesting levels"),
        (vec![8], "x", "1 entries for 2 weight layers"),
        (vec![8, 8], "mixed", "unique"),
    ] {
        let mut g = gates.clone();
        g.push(qmodel::Gate {
            name: name.into(),
            bits,
        });
        let e = q.clone().set_gates(g).unwrap_err().to_string();
        assert!(e.contains(what), "{e}");
    }
    // A bundle whose manifest carries a bad gate is refused at open.
    let e = rewrite_with_doc(&path, &q, |doc| {
        doc["gates"][0]["bits"] = serde_json::json!([8, 3]);
    });
    assert!(
        e.contains("gate 'battery-low'") && e.contains("3 bits"),
        "{e}"
    );
}

#[test]
fn plane_group_bytes_are_the_packed_planes_of_that_group() {
    let dir = tempfile::tempdir().unwrap();
    let (_, path) = tiny_bundle(dir.path());
    let b = Bundle::open(&path).unwrap();
    for li in 0..2 {
        for g in 0..3 {
            let raw = b.plane_group_bytes(li, g).unwrap();
            assert_eq!(raw, b.plane_group(li, g).unwrap().to_le_bytes().as_slice());
        }
    }
    assert!(b.plane_group_bytes(0, 3).is_err());
    assert!(b.plane_group_bytes(2, 0).is_err());
}
