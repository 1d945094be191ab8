//! Mutation fuzzing of every file caq reads, on stable Rust: seeded, structure-aware mutations of
//! bundle manifests and tensor values (rewritten under fresh checksums) and raw bytes, float-model
//! graphs, ONNX protobufs, IDX headers, accelerator configs, context traces and policies, each run
//! through the real entry points (open, load, one golden inference, the CPU backend, compile for a
//! device; import; data loading; parsing). Every outcome must be a
//! clean `Ok` or `Err`: a panic fails the test with the seed that replays it.
//!
//! Memory and time are bounded by caq's own limits (`caq_model::validate::Limits`), set low here
//! through `CAQ_MEMORY_LIMIT_MB` and `CAQ_MAX_MACS`. By default each decoder runs a fixed number
//! of cases; `CAQ_FUZZ_SECS=N` runs each decoder for N seconds instead (a soak), `CAQ_SEED=S`
//! replays one seed. Each decoder prints its seed, case count, cases per second and how many
//! cases were accepted and refused.

use caq_model::arch::{Arch, graph_for};
use caq_model::bundle::{self, Bundle};
use caq_model::data;
use caq_model::graph::{FloatModel, FloatParams};
use caq_model::qmodel::{self, QuantizeConfig};
use caq_model::store::{OutTensor, TensorFile};
use caq_spec::{AccelConfig, DeviceAddr};
use ndarray::{Array1, Array2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

#[path = "common/rewrite.rs"]
mod rewrite;

/// Cases per decoder in a default run.
const CASES: usize = 150;
/// The longest a case may run: the slowest accepted cases take well under a second.
const HANG: Duration = Duration::from_secs(30);

fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: set once, before any test thread reads these variables (every test calls
        // setup() first, under the Once).
        unsafe {
            std::env::set_var(caq_model::validate::MEMORY_LIMIT_ENV, "256");
            std::env::set_var(caq_model::validate::MACS_LIMIT_ENV, "50000000");
        }
        // A panic is a finding, reported with the seed; keep the default hook's noise off.
        std::panic::set_hook(Box::new(|_| {}));
    });
}

/// Runs `case` with seeds until the budget is spent; panics (with the seed) on the first case
/// that panicked.
fn fuzz(name: &str, mut case: impl FnMut(&mut StdRng) -> bool) {
    setup();
    let base: u64 = match std::env::var("CAQ_SEED") {
        Ok(s) => s.parse().expect("CAQ_SEED is a u64"),
        Err(_) => rand::rng().random(),
    };
    let replay = std::env::var("CAQ_SEED").is_ok();
    let soak = std::env::var("CAQ_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let t0 = Instant::now();
    let (mut n, mut accepted) = (0usize, 0usize);
    let mut slowest = Duration::ZERO;
    // A case that runs past HANG is a hang: the watchdog names its seed and ends the process
    // (a hung case cannot be unwound).
    let current = Arc::new(Mutex::new((0u64, Instant::now(), true)));
    {
        let current = Arc::clone(&current);
        let name = name.to_string();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(500));
                let (seed, since, done) = *current.lock().unwrap_or_else(|e| e.into_inner());
                if done {
                    return;
                }
                if since.elapsed() > HANG {
                    eprintln!(
                        "fuzz {name}: case with seed {seed} ran {:?}: a hang (replay: CAQ_SEED={seed})",
                        since.elapsed()
                    );
                    std::process::exit(1);
                }
            }
        });
    }
    loop {
        let seed = base.wrapping_add(n as u64);
        let mut rng = StdRng::seed_from_u64(seed);
        let started = Instant::now();
        *current.lock().unwrap_or_else(|e| e.into_inner()) = (seed, started, false);
        let outcome = catch_unwind(AssertUnwindSafe(|| case(&mut rng)));
        slowest = slowest.max(started.elapsed());
        match outcome {
            Ok(ok) => accepted += usize::from(ok),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                current.lock().unwrap_or_else(|e| e.into_inner()).2 = true;
                panic!("{name}: case with seed {seed} panicked: {msg} (replay: CAQ_SEED={seed})");
            }
        }
        n += 1;
        let done = match soak {
            _ if replay => true,
            Some(d) => t0.elapsed() >= d,
            None => n >= CASES,
        };
        if done {
            break;
        }
    }
    current.lock().unwrap_or_else(|e| e.into_inner()).2 = true;
    let s = t0.elapsed().as_secs_f64();
    println!(
        "fuzz {name}: seed {base}, {n} cases in {s:.1} s ({:.0}/s), {accepted} accepted, {} refused, \
         0 panics, slowest case {:.0} ms",
        n as f64 / s,
        n - accepted,
        slowest.as_secs_f64() * 1e3
    );
}

/// Values a hostile editor would try for a number.
fn hostile_number(rng: &mut StdRng) -> serde_json::Value {
    use serde_json::json;
    match rng.random_range(0..12) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(1u64 << 62),
        3 => json!(u64::MAX),
        4 => json!(1e38),
        5 => json!(-1e38),
        6 => json!(255),
        7 => json!(65_535),
        8 => json!(100_000),
        9 => json!(1),
        10 => json!(2.5e-45),
        _ => json!(rng.random_range(0..20)),
    }
}

/// Replaces one random leaf of `v` (a number, string, bool) or empties / duplicates an array.
fn mutate_json(v: &mut serde_json::Value, rng: &mut StdRng) {
    use serde_json::Value;
    let mut leaves: Vec<*mut Value> = Vec::new();
    fn walk(v: &mut Value, out: &mut Vec<*mut Value>) {
        out.push(v as *mut Value);
        match v {
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, out)),
            Value::Object(o) => o.values_mut().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(v, &mut leaves);
    let pick = leaves[rng.random_range(0..leaves.len())];
    // SAFETY: `pick` points into `v`, which is not otherwise borrowed until the pointers are
    // dropped at the end of this function; only one is dereferenced.
    let target = unsafe { &mut *pick };
    *target = match target {
        Value::Number(_) => hostile_number(rng),
        Value::String(s) => match rng.random_range(0..4) {
            0 => Value::String(String::new()),
            1 => Value::String(format!("{s}\u{1b}[2J")),
            2 => Value::String("x".repeat(300)),
            _ => Value::String(format!("{s}_")),
        },
        Value::Bool(b) => Value::Bool(!*b),
        Value::Array(a) => match rng.random_range(0..3) {
            0 => Value::Array(Vec::new()),
            1 if !a.is_empty() => {
                let mut b = a.clone();
                b.push(a[0].clone());
                Value::Array(b)
            }
            _ => {
                let mut b = a.clone();
                b.reverse();
                Value::Array(b)
            }
        },
        Value::Object(_) | Value::Null => hostile_number(rng),
    };
}

/// Byte-level damage: bit flips, a truncation, or random bytes spliced in.
fn mutate_bytes(b: &mut Vec<u8>, rng: &mut StdRng) {
    match rng.random_range(0..3) {
        0 => {
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
        }
        1 => {
            let n = rng.random_range(0..b.len());
            b.truncate(n);
        }
        _ => {
            let i = rng.random_range(0..=b.len());
            let junk: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
            b.splice(i..i, junk);
        }
    }
}

fn digits_subset(n: usize) -> data::Dataset {
    let d = data::digits().unwrap();
    d.subset(&(0..n).collect::<Vec<_>>())
}

/// A small float MLP for the 8×8 digits with seeded random weights.
fn float_mlp() -> FloatModel {
    let graph = graph_for(Arch::Mlp, [1, 8, 8], 10);
    let mut rng = StdRng::seed_from_u64(7);
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

/// Rewrites a caq tensor file with a new document and the same tensors (fresh checksums), so a
/// structure-aware mutation reaches validation instead of stopping at the checksum.
fn rewrite(src: &Path, dst: &Path, doc: &serde_json::Value) {
    rewrite_with(src, dst, doc, |_| {});
}

/// [`rewrite`], with `edit` applied to the tensors first.
fn rewrite_with(
    src: &Path,
    dst: &Path,
    doc: &serde_json::Value,
    edit: impl FnOnce(&mut Vec<OutTensor>),
) {
    rewrite::rewrite_parts(src, dst, |d| *d = doc.clone(), edit);
}

/// Damage to the values of one tensor, under fresh checksums so that it reaches the checks of
/// the content: a run of one to four bytes (an element, at an aligned or any offset) set to all
/// zeros, all ones, a lone sign bit or random bits.
fn mutate_tensor(tensors: &mut [OutTensor], rng: &mut StdRng) {
    let t = &mut tensors[rng.random_range(0..tensors.len())];
    if t.bytes.is_empty() {
        return;
    }
    let width = [1, 2, 4][rng.random_range(0..3)];
    let mut at = rng.random_range(0..t.bytes.len());
    if rng.random_bool(0.5) {
        at -= at % width;
    }
    let end = (at + width).min(t.bytes.len());
    let pattern = rng.random_range(0..4);
    for (i, b) in t.bytes[at..end].iter_mut().enumerate() {
        *b = match pattern {
            0 => 0,
            1 => 0xff,
            2 if i + 1 == width => 0x80,
            2 => 0,
            _ => rng.random(),
        };
    }
}

fn sim_small() -> AccelConfig {
    AccelConfig::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/sim-small.toml"))
        .unwrap()
}

/// Open and load (the validation), then one golden inference at every level and a compile for
/// sim-small: what `caq run` does with a bundle. Ok(()) when the bundle was accepted. Once the
/// validation has passed, the golden executor must not find a problem it missed (that panics,
/// a finding); a device may still refuse a model over its capacity.
fn use_bundle(path: &Path, cfg: &AccelConfig, image: &[u8]) -> caq_model::Result<()> {
    let q = Bundle::open(path)?.load()?;
    for &b in q.levels() {
        let bits = q.uniform_bits(b);
        let golden = match q.executor(&bits).and_then(|ex| ex.logits(image)) {
            Ok(v) => v,
            Err(e) => {
                panic!("the bundle passed validation but the golden executor refused it: {e}")
            }
        };
        // The CPU backend may refuse a layer its kernels cannot hold exactly; what it runs must
        // equal the golden executor.
        for engine in [caq_cpu::Engine::Lut, caq_cpu::Engine::Gemm] {
            if let Ok(plan) = caq_cpu::CpuModel::new(&q, &bits, engine) {
                let out = plan.infer_batch(image, 1).map(|mut v| v.remove(0));
                assert_eq!(out.ok(), Some(golden.clone()), "{engine:?} at {bits:?}");
            }
        }
        let _ = caq_driver::compile::compile(&q, cfg, &bits, DeviceAddr(0x1000_0000));
    }
    Ok(())
}

#[test]
fn bundle_mutations_are_clean_errors() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let calib = digits_subset(16);
    // Regions of 16 along K, so the group-multiplier tensors are mutated too.
    let mut qcfg = QuantizeConfig::nested(&[8, 6, 4]);
    qcfg.group_size = Some(16);
    let q = qmodel::quantize(&float_mlp(), &calib, &qcfg).unwrap();
    let good = dir.path().join("good.caqb");
    bundle::write(&good, &q).unwrap();
    let doc = TensorFile::open(&good).unwrap().doc().clone();
    let bytes = std::fs::read(&good).unwrap();
    let cfg = sim_small();
    let image = calib.image(0).to_vec();
    use_bundle(&good, &cfg, &image).unwrap();
    let case = dir.path().join("case.caqb");
    fuzz("bundle", |rng| {
        let pick = rng.random_range(0..10);
        if pick < 5 {
            let mut d = doc.clone();
            for _ in 0..rng.random_range(1..3) {
                mutate_json(&mut d, rng);
            }
            rewrite(&good, &case, &d);
        } else if pick < 8 {
            rewrite_with(&good, &case, &doc, |t| mutate_tensor(t, rng));
        } else {
            let mut b = bytes.clone();
            mutate_bytes(&mut b, rng);
            std::fs::write(&case, b).unwrap();
        }
        use_bundle(&case, &cfg, &image).is_ok()
    });
}

#[test]
fn float_model_mutations_are_clean_errors() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.caqf");
    float_mlp().save(&good).unwrap();
    let doc = TensorFile::open(&good).unwrap().doc().clone();
    let bytes = std::fs::read(&good).unwrap();
    let calib = digits_subset(8);
    let mut cfg = QuantizeConfig::nested(&[8, 4]);
    cfg.calib_images = 8;
    let case = dir.path().join("case.caqf");
    fuzz("float model", |rng| {
        let pick = rng.random_range(0..10);
        if pick < 5 {
            let mut d = doc.clone();
            mutate_json(&mut d, rng);
            rewrite(&good, &case, &d);
        } else if pick < 8 {
            rewrite_with(&good, &case, &doc, |t| mutate_tensor(t, rng));
        } else {
            let mut b = bytes.clone();
            mutate_bytes(&mut b, rng);
            std::fs::write(&case, b).unwrap();
        }
        FloatModel::load(&case)
            .and_then(|m| qmodel::quantize(&m, &calib, &cfg))
            .is_ok()
    });
}

#[test]
fn onnx_mutations_are_clean_errors() {
    setup();
    let good = caq_onnx::export(&float_mlp()).unwrap();
    let calib = digits_subset(8);
    let mut cfg = QuantizeConfig::nested(&[8, 4]);
    cfg.calib_images = 8;
    fuzz("onnx", |rng| {
        let mut b = good.clone();
        for _ in 0..rng.random_range(1..4) {
            mutate_bytes(&mut b, rng);
            if b.is_empty() {
                break;
            }
        }
        caq_onnx::import_bytes(&b)
            .map_err(|e| e.to_string())
            .and_then(|m| qmodel::quantize(&m, &calib, &cfg).map_err(|e| e.to_string()))
            .is_ok()
    });
}

fn idx_file(magic: u32, dims: &[u32], payload: usize) -> Vec<u8> {
    let mut b = magic.to_be_bytes().to_vec();
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend((0..payload).map(|i| (i % 10) as u8));
    b
}

#[test]
fn idx_mutations_are_clean_errors() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    fuzz("idx", |rng| {
        let pick = |rng: &mut StdRng| -> u32 {
            match rng.random_range(0..6) {
                0 => 0,
                1 => u32::MAX,
                2 => 65_536,
                3 => 1,
                _ => rng.random_range(1..12),
            }
        };
        let (n, h, w) = (pick(rng), pick(rng), pick(rng));
        let size = (n as usize)
            .saturating_mul(h as usize)
            .saturating_mul(w as usize)
            .min(1 << 16);
        let mut images = idx_file(0x0803, &[n, h, w], size);
        let mut labels = idx_file(0x0801, &[n.min(1 << 16)], (n as usize).min(1 << 16));
        if rng.random_bool(0.5) {
            mutate_bytes(
                if rng.random_bool(0.5) {
                    &mut images
                } else {
                    &mut labels
                },
                rng,
            );
        }
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), &images).unwrap();
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), &labels).unwrap();
        data::load(dir.path().to_str().unwrap())
            .and_then(|d| {
                if d.len() >= 2 {
                    d.stratified_split(1, 0)?;
                }
                Ok(())
            })
            .is_ok()
    });
}

/// Line-level mutations of a text file: a number replaced, a line dropped or doubled.
fn mutate_text(text: &str, rng: &mut StdRng) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let i = rng.random_range(0..lines.len());
    match rng.random_range(0..4) {
        0 => {
            lines.remove(i);
        }
        1 => {
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        _ => {
            let v = hostile_number(rng).to_string();
            let l = &lines[i];
            let digits: Vec<usize> = l
                .char_indices()
                .filter(|(_, c)| c.is_ascii_digit())
                .map(|(j, _)| j)
                .collect();
            if let Some(&j) = digits.first() {
                let end = l[j..]
                    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .map_or(l.len(), |e| j + e);
                lines[i] = format!("{}{v}{}", &l[..j], &l[end..]);
            } else {
                lines[i] = format!("{l}{v}");
            }
        }
    }
    lines.join("\n")
}

/// Configs are parsed, and the accepted ones given to the Verilog generator (feature `hdl`).
#[cfg(feature = "hdl")]
#[test]
fn config_mutations_are_clean_errors() {
    setup();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = std::fs::read_to_string(root.join("configs/sim-small.toml")).unwrap();
    fuzz("config", |rng| {
        AccelConfig::from_toml_str(&mutate_text(&config, rng), "fuzz")
            .map(|c| caq_hdl::generate(&c).is_ok())
            .is_ok()
    });
}

#[test]
fn trace_mutations_are_clean_errors() {
    setup();
    let trace = caq_driver::context::ContextTrace::demo().to_csv_string();
    fuzz("trace", |rng| {
        caq_driver::context::ContextTrace::from_csv_str(
            &mutate_text(&trace, rng),
            Path::new("fuzz.csv"),
        )
        .is_ok()
    });
}

#[test]
fn policy_mutations_are_clean_errors() {
    use caq_driver::context::ContextPolicy;
    setup();
    let policy = ContextPolicy::default_policy().to_toml_string();
    fuzz("policy", |rng| {
        ContextPolicy::from_toml_str(&mutate_text(&policy, rng), "fuzz").is_ok()
    });
}
