//! Runs the Python package's tests (tests/test_caq.py, pytest) against the extension this build
//! made: the cdylib is staged as `caq/_native.abi3.so` beside the package's Python sources in a
//! temp dir, as maturin lays it out in a wheel, with the fixture of the C examples.

#[allow(dead_code)]
#[path = "../../capi/examples/fixture.rs"]
mod fixture;

use std::path::Path;
use std::process::Command;

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_python_package_passes_its_tests_on_the_functional_model() {
    let dir = tempfile::tempdir().unwrap();
    let fix = dir.path().join("fixture");
    fixture::write_fixture(&fix, 16).unwrap();
    let pkg = dir.path().join("site").join("caq");
    std::fs::create_dir_all(&pkg).unwrap();
    for entry in std::fs::read_dir(crate_dir().join("caq")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, pkg.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::copy(
        fixture::built_library("libcaq_native.so"),
        pkg.join("_native.abi3.so"),
    )
    .unwrap();

    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(crate_dir().join("tests"))
        // Not from the crate directory, whose caq/ has no extension in it.
        .current_dir(dir.path())
        .env("PYTHONPATH", dir.path().join("site"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("CAQ_FIXTURE", &fix)
        .env("CAQ_CONFIG", crate_dir().join("../configs/sim-small.toml"))
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        !text.contains("No module named pytest"),
        "pytest is missing: scripts/setup.sh installs it"
    );
    assert!(out.status.success(), "pytest failed:\n{text}");
    assert!(text.contains(" passed"), "{text}");
}
