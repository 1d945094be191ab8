//! Writes the files the C and C++ examples (`digits.c`, `digits.cpp`) and the Python tests run
//! on: a nested 8 ⊃ 4 ⊃ 2 digits MLP bundle (deterministic random weights, quantized on the
//! digits) with two gates, `count` digits images, and the golden model's output codes for them
//! at the top level and at each gate.
//!
//!   cargo run -p caq-capi --example fixture -- DIR [COUNT]
//!
//! Files: `mlp.caqb`, `images.u8` (count × 64 bytes), `expected-top.i32` and `expected-<gate>.i32`
//! (count × 10 little-endian int32), `corrupt.caqb` (the bundle with one byte flipped).

#[path = "../../host/tests/common/mod.rs"]
mod common;

use caq_model::qmodel::Gate;
use std::path::{Path, PathBuf};

/// The gates of the fixture bundle: (name, bits of its three weight layers).
pub const GATES: [(&str, [u8; 3]); 2] = [("battery-low", [2, 2, 2]), ("balanced", [8, 4, 4])];

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
