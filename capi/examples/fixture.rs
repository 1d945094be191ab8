//! Writes the files the C and C++ examples (`digits.c`, `digits.cpp`) and the Python tests run
//! on: a nested 8 ⊃ 4 ⊃ 2 digits MLP bundle (deterministic random weights, quantized on the
//! digits) with two gates and input-adaptive policies, `count` digits images, and the golden
//! model's output codes for them at the top level, at each gate and under each policy.
//!
//!   cargo run -p caq-capi --example fixture -- DIR [COUNT]
//!
//! Files: `mlp.caqb`, `images.u8` (count × 64 bytes), `expected-top.i32` and `expected-<gate>.i32`
//! (count × 10 little-endian int32), `corrupt.caqb` (the bundle with one byte flipped). The bundle
//! also carries input-adaptive policies for the class `battery-low` (a cascade and a gate
//! network): `expected-<kind>-battery-low.i32` are their outputs and `bits-<kind>-battery-low.u8`
//! their final settings (count × 3 bytes), from the golden reference.

#[path = "../../host/tests/common/mod.rs"]
mod common;

use caq_model::adaptive::{AdaptiveKind, AdaptivePolicy, Cascade, GoldenAdaptive};
use caq_model::data::Dataset;
use caq_model::qmodel::{Gate, QModel};
use std::path::{Path, PathBuf};

/// The gates of the fixture bundle: (name, bits of its three weight layers).
pub const GATES: [(&str, [u8; 3]); 2] = [("battery-low", [2, 2, 2]), ("balanced", [8, 4, 4])];

/// The context class whose input-adaptive policies the fixture bundle carries.
pub const ADAPTIVE_CLASS: &str = "battery-low";

/// The input-adaptive policies of [`ADAPTIVE_CLASS`], each splitting the first `count` images
/// about evenly between its two settings: a cascade from 2/2/2 to 8/8/8 with the median stage-0
/// margin as its threshold, and a one-unit gate network comparing the first hidden unit's code
/// with its median (4/2/2 or 4/8/8).
fn adaptive_policy(q: &QModel, set: &Dataset, count: usize) -> AdaptivePolicy {
    let n = count.max(1);
    let stages = vec![vec![2u8; 3], vec![8u8; 3]];
    AdaptivePolicy {
        class: ADAPTIVE_CLASS.into(),
        cascade: Some(Cascade {
            thresholds: vec![common::median_margin(q, &stages[0], set, n)],
            stages,
        }),
        network: Some(common::mlp_gate(q, set, n).into()),
    }
}

/// Writes the fixture into `dir` (created if missing).
pub fn write_fixture(dir: &Path, count: usize) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let set = common::digits();
    let count = count.min(set.len());
    let mut q = common::quantize(common::mlp(), &set, &[8, 4, 2], 7);
    let gates = GATES
        .iter()
        .map(|(name, bits)| Gate {
            name: name.to_string(),
            bits: bits.to_vec(),
        })
        .collect();
    q.set_gates(gates).map_err(|e| e.to_string())?;
    q.set_adaptive(vec![adaptive_policy(&q, &set, count)])
        .map_err(|e| e.to_string())?;
    let bundle = dir.join("mlp.caqb");
    caq_model::bundle::write(&bundle, &q).map_err(|e| e.to_string())?;

    let images: Vec<u8> = (0..count).flat_map(|i| set.image(i).to_vec()).collect();
    write(&dir.join("images.u8"), &images)?;
    let mut settings = vec![("top".to_string(), vec![8u8; 3])];
    settings.extend(GATES.iter().map(|(n, b)| (n.to_string(), b.to_vec())));
    for (name, bits) in settings {
        let exec = q.executor(&bits).map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        for i in 0..count {
            for v in exec.logits(set.image(i)).map_err(|e| e.to_string())? {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
        }
        write(&dir.join(format!("expected-{name}.i32")), &bytes)?;
    }
    // Each adaptive policy's outputs and final settings, from the golden reference.
    let policy = q
        .adaptive_policy(ADAPTIVE_CLASS)
        .map_err(|e| e.to_string())?;
    for kind in AdaptiveKind::ALL {
        let p = policy.get(kind).map_err(|e| e.to_string())?;
        let golden = GoldenAdaptive::new(&q, p).map_err(|e| e.to_string())?;
        let (mut codes, mut bits) = (Vec::new(), Vec::new());
        for i in 0..count {
            let o = golden.infer(set.image(i)).map_err(|e| e.to_string())?;
            for v in o.output {
                codes.extend_from_slice(&v.to_le_bytes());
            }
            bits.extend_from_slice(&o.bits);
        }
        let name = format!("{}-{ADAPTIVE_CLASS}", kind.name());
        write(&dir.join(format!("expected-{name}.i32")), &codes)?;
        write(&dir.join(format!("bits-{name}.u8")), &bits)?;
    }
    let mut corrupt = std::fs::read(&bundle).map_err(|e| e.to_string())?;
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0x5a;
    write(&dir.join("corrupt.caqb"), &corrupt)?;
    Ok(())
}

/// The shared library `file` (`libcaq.so`, `libcaq_native.so`) this build made, for the tests
/// that load it: beside the running test binary in target/<profile>/deps/ (cargo builds every
/// crate type of a library for its tests there), or in target/<profile>/.
pub fn built_library(file: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("target/<profile>/deps");
    [Some(deps), deps.parent()]
        .into_iter()
        .flatten()
        .map(|d| d.join(file))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no {file} in {} or its parent", deps.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

#[allow(dead_code)]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), count) = (args.first(), args.get(1)) else {
        eprintln!("usage: fixture DIR [COUNT]");
        std::process::exit(2);
    };
    let count = match count.map(|c| c.parse::<usize>()) {
        None => 20,
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            eprintln!("fixture: COUNT: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = write_fixture(Path::new(dir), count) {
        eprintln!("fixture: {e}");
        std::process::exit(1);
    }
}
