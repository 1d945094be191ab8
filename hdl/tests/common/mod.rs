//! Helpers shared by the integration tests: the repo's configs and tool availability.

#![allow(dead_code)]

use std::path::PathBuf;

use caq_spec::AccelConfig;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `configs/*.toml`, sorted by file name.
pub fn config_paths() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(repo_root().join("configs"))
        .expect("configs/ is readable")
        .map(|e| e.expect("configs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no configs/*.toml");
    paths
}

pub fn load(name: &str) -> AccelConfig {
    let path = repo_root().join("configs").join(format!("{name}.toml"));
    AccelConfig::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// True when `tool` can run. When it cannot, prints why the test is skipped, and fails instead
/// under CI (`CI=true`), where the tools are installed on purpose.
pub fn tool_or_skip(tool: &str, test: &str) -> bool {
    if caq_hdl::tool_available(tool) {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: `{tool}` is not on PATH, and CI=true requires it (apt-get install {tool})");
    }
    eprintln!("note: {test} skipped: `{tool}` is not on PATH (apt-get install {tool})");
    false
}
