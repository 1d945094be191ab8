//! The C and C++ examples, compiled with the system's compilers against `include/caq.h` and the
//! libcaq this build made, run the fixture bundle on the functional model: every output code
//! equal to the golden model's, at the top level and at each gate; and libcaq's errors (a missing
//! device, a corrupt bundle, a bad gate name, a short input) each a status and a clear message.

#[allow(dead_code)]
#[path = "../examples/fixture.rs"]
mod fixture;

use std::path::{Path, PathBuf};
use std::process::Command;

const COUNT: usize = 12;

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory of the libcaq.so this build made.
fn lib_dir() -> PathBuf {
    let lib = fixture::built_library("libcaq.so");
    lib.parent().expect("a directory").to_path_buf()
}

fn compile(compiler: &str, std: &str, source: &str, out: &Path) {
    let lib = lib_dir();
    let status = Command::new(compiler)
        .arg(std)
        .args(["-Wall", "-Wextra", "-Werror", "-O1"])
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg(crate_dir().join("examples").join(source))
        .arg("-o")
        .arg(out)
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lcaq")
        .status()
        .unwrap_or_else(|e| panic!("{compiler}: {e} (a C/C++ compiler is needed)"));
    assert!(status.success(), "{compiler} {source} failed");
}

fn config() -> String {
    crate_dir()
        .join("../configs/sim-small.toml")
        .display()
        .to_string()
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the compiled `digits` on the fixture in `dir` against `expected-<expected>.i32`, at
/// `setting` (a gate, `-` or `<kind>=<class>`).
fn run_digits(exe: &Path, dir: &Path, expected: &str, setting: &str) -> (bool, String, String) {
    run(Command::new(exe).args([
        "sim".into(),
        config(),
        dir.join("mlp.caqb").display().to_string(),
        dir.join("images.u8").display().to_string(),
        dir.join(format!("expected-{expected}.i32"))
            .display()
            .to_string(),
        COUNT.to_string(),
        setting.into(),
    ]))
}

#[test]
fn the_c_example_equals_golden_at_the_top_level_and_every_gate() {
    let dir = tempfile::tempdir().unwrap();
    fixture::write_fixture(dir.path(), COUNT).unwrap();
    let exe = dir.path().join("digits");
    compile("cc", "-std=c99", "digits.c", &exe);
    let mut settings = vec![("top".to_string(), "-".to_string())];
    settings.extend(
        fixture::GATES
            .iter()
            .map(|(n, _)| (n.to_string(), n.to_string())),
    );
    for (name, gate) in settings {
        let (ok, stdout, stderr) = run_digits(&exe, dir.path(), &name, &gate);
        println!("--- {name}\n{stdout}{stderr}");
        assert!(ok, "{name}: {stdout}{stderr}");
        assert!(stdout.contains(&format!("{COUNT}/{COUNT} outputs equal to golden")));
        assert!(stdout.contains("gate 0: battery-low") && stdout.contains("gate 1: balanced"));
    }
    // The check can fail: against another setting's expected codes it does.
    let (ok, stdout, _) = run_digits(&exe, dir.path(), "battery-low", "-");
    assert!(!ok && stdout.contains("MISMATCH"), "{stdout}");
}

/// Each input-adaptive policy of the fixture bundle through `caq_infer_adaptive`: every image's
/// output equal to the golden reference's, its setting the golden one, and both of the policy's
/// settings used.
#[test]
fn the_c_example_runs_each_adaptive_policy_as_golden_does() {
    let dir = tempfile::tempdir().unwrap();
    fixture::write_fixture(dir.path(), COUNT).unwrap();
    let exe = dir.path().join("digits");
    compile("cc", "-std=c99", "digits.c", &exe);
    for kind in ["cascade", "network"] {
        let name = format!("{kind}-{}", fixture::ADAPTIVE_CLASS);
        let setting = format!("{kind}={}", fixture::ADAPTIVE_CLASS);
        let (ok, stdout, stderr) = run_digits(&exe, dir.path(), &name, &setting);
        println!("--- {name}\n{stdout}{stderr}");
        assert!(ok, "{name}: {stdout}{stderr}");
        assert!(stdout.contains(&format!("{COUNT}/{COUNT} outputs equal to golden")));
        let want = std::fs::read(dir.path().join(format!("bits-{name}.u8"))).unwrap();
        let got: Vec<u8> = stdout
            .lines()
            .filter_map(|l| l.split(", bits ").nth(1))
            .flat_map(|b| b.split('/').map(|v| v.trim().parse::<u8>().unwrap()))
            .collect();
        assert_eq!(got, want, "{name}: the settings golden chose");
        let mut settings: Vec<&[u8]> = want.chunks(3).collect();
        settings.sort();
        settings.dedup();
        assert_eq!(
            settings.len(),
            2,
            "{name}: both settings used: {settings:?}"
        );
    }
}

#[test]
fn the_cpp_example_equals_golden() {
    let dir = tempfile::tempdir().unwrap();
    fixture::write_fixture(dir.path(), COUNT).unwrap();
    let exe = dir.path().join("digits_cpp");
    compile("c++", "-std=c++17", "digits.cpp", &exe);
    let (ok, stdout, stderr) = run(Command::new(&exe).args([
        config(),
        dir.path().join("mlp.caqb").display().to_string(),
        dir.path().join("images.u8").display().to_string(),
        dir.path().join("expected-top.i32").display().to_string(),
        COUNT.to_string(),
    ]));
    println!("{stdout}{stderr}");
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains(&format!("{COUNT}/{COUNT} outputs equal to golden (C++)")));
    assert!(
        stdout.contains(
            "null handle: CAQ_ERR_ARGUMENT: caq_apply_gate: the accelerator handle is NULL"
        ),
        "{stdout}"
    );
}

#[test]
fn errors_cross_the_boundary_as_a_status_and_a_message() {
    let dir = tempfile::tempdir().unwrap();
    fixture::write_fixture(dir.path(), 1).unwrap();
    let exe = dir.path().join("digits");
    compile("cc", "-std=c99", "digits.c", &exe);
    let (ok, stdout, stderr) = run(Command::new(&exe).args([
        "errors".into(),
        config(),
        dir.path().join("corrupt.caqb").display().to_string(),
        dir.path().join("mlp.caqb").display().to_string(),
    ]));
    println!("{stdout}{stderr}");
    assert!(ok, "{stdout}{stderr}");
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in {stdout}"))
            .to_string()
    };
    let missing = line("missing device: ");
    assert!(
        missing.starts_with("missing device: CAQ_ERR_")
            && missing.contains("caq_open_uio: ")
            && !missing.contains("CAQ_OK"),
        "{missing}"
    );
    let corrupt = line("corrupt bundle: ");
    assert!(
        corrupt.starts_with("corrupt bundle: CAQ_ERR_FILE: caq_load_bundle: ")
            && corrupt.contains("corrupt.caqb"),
        "{corrupt}"
    );
    let gate = line("bad gate name: ");
    assert!(
        gate.starts_with("bad gate name: CAQ_ERR_ARGUMENT: caq_apply_gate: ")
            && gate.contains("no-such-gate")
            && gate.contains("battery-low"),
        "{gate}"
    );
    let class = line("bad class: ");
    assert!(
        class.starts_with("bad class: CAQ_ERR_ARGUMENT: caq_infer_adaptive: ")
            && class.contains("no-such-class")
            && class.contains("battery-low"),
        "{class}"
    );
    let kind = line("bad kind: ");
    assert!(
        kind.starts_with("bad kind: CAQ_ERR_ARGUMENT: caq_infer_adaptive: kind 7: expected"),
        "{kind}"
    );
    let short = line("short input: ");
    assert!(
        short.starts_with(
            "short input: CAQ_ERR_ARGUMENT: caq_infer: input: 1 bytes for an input of shape [1, 8, 8] (64 codes)"
        ),
        "{short}"
    );
}
