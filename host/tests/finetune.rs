//! `caq finetune` end to end on the digits data the repo carries: the nested bundle it writes,
//! its comparison table and report, and its error exits.
#![cfg(feature = "train")]

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
fn finetune_writes_a_nested_bundle_better_than_ptq_at_its_deepest_level() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&caq(&["train", "--quiet", "--out", "m.caqf"], d));
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
    // PTQ defaults, PTQ with the QAT quantizer, QAT nested, dedicated.
    assert_eq!(rows.len(), 4, "{r}");
    let acc = |row: usize, level: usize| rows[row]["accuracy_pct"][level].as_f64().unwrap();
    let (ptq2, qat2, dedicated2) = (acc(0, 2), acc(2, 2), acc(3, 2));
    eprintln!("digits 8⊃4⊃2 at 2 bits: PTQ {ptq2:.2}, QAT {qat2:.2}, dedicated {dedicated2:.2}");
    assert!(qat2 > ptq2, "QAT {qat2} should beat PTQ {ptq2} at 2 bits");
    assert!(acc(2, 0) > 95.0, "QAT 8-bit {}", acc(2, 0));
    let md = std::fs::read_to_string(d.join("qat.md")).unwrap();
    assert!(
        md.contains("caq finetune") && md.contains("| QAT nested"),
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
    assert!(!d.join("q.caqb").exists());
}
