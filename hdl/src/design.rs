//! [`Design`]: the generated files of one config, what they expose, and how they are written to disk
//! (each file atomically, plus a `manifest.json` that tools and the Verilator shim read back).

use std::path::Path;

use caq_spec::ConfigHash;
use serde::{Deserialize, Serialize};

use crate::emit::Dir;
use crate::error::{HdlError, Result};

/// Name of the manifest written next to the Verilog files.
pub const MANIFEST: &str = "manifest.json";

/// One generated Verilog file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// File name, `<module>.v`.
    pub name: String,
    pub text: String,
}

/// A port of the top module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    pub name: String,
    pub dir: Dir,
    pub width: u32,
    pub signed: bool,
}

/// Everything generated for one config.
#[derive(Debug, Clone, PartialEq)]
pub struct Design {
    /// Name of the top module.
    pub top: String,
    /// Every file, in name order; each holds one module named after it.
    pub files: Vec<GeneratedFile>,
    pub config_hash: ConfigHash,
    /// Derived parameters worth knowing outside the RTL (latencies, widths, CAPS words).
    pub params: serde_json::Value,
    /// The top module's ports, in declaration order.
    pub ports: Vec<PortInfo>,
}

/// The manifest's form on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub top: String,
    pub files: Vec<String>,
    /// 16 hex digits (a JSON number cannot hold 64 bits exactly).
    pub config_hash: String,
    pub params: serde_json::Value,
    pub ports: Vec<PortInfo>,
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let text =
            caq_spec::fsio::read_regular_to_string(&path).map_err(|source| HdlError::Io {
                path: path.clone(),
                source,
            })?;
        serde_json::from_str(&text).map_err(|e| HdlError::Manifest {
            path,
            message: e.to_string(),
        })
    }
}

impl Design {
    /// The manifest describing this design.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            top: self.top.clone(),
            files: self.files.iter().map(|f| f.name.clone()).collect(),
            config_hash: self.config_hash.to_string(),
            params: self.params.clone(),
            ports: self.ports.clone(),
        }
    }

    /// The manifest as written to disk.
    pub fn manifest_json(&self) -> String {
        // A Manifest holds strings, numbers and JSON values only, so serializing it cannot fail.
        let text = serde_json::to_string_pretty(&self.manifest()).unwrap_or_default();
        format!("{text}\n")
    }

    /// Writes every file and `manifest.json` as the directory `dir`, as a whole: the files are
    /// written into a temporary directory beside it that then takes its place, so a failure
    /// (a full disk) leaves the old `dir` intact, and `dir` never mixes two configs' files.
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_dir(dir, MANIFEST, |tmp| {
            for f in &self.files {
                write_atomic(&tmp.join(&f.name), f.text.as_bytes())?;
            }
            write_atomic(&tmp.join(MANIFEST), self.manifest_json().as_bytes())
        })
    }
}

/// Builds the directory `dir` as a whole with `fill` (`caq_spec::fsio::replace_dir`).
/// `marker` is the file that identifies an earlier output of the same kind.
pub fn write_dir(dir: &Path, marker: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    caq_spec::fsio::replace_dir(dir, marker, fill).map_err(|e| match e {
        caq_spec::fsio::ReplaceDirError::Fill(e) => e,
        caq_spec::fsio::ReplaceDirError::Io(source) => HdlError::Io {
            path: dir.to_owned(),
            source,
        },
    })
}

/// Writes `bytes` to `path` atomically (`caq_spec::fsio::write_atomic`).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    caq_spec::fsio::write_atomic(path, bytes).map_err(|source| HdlError::Io {
        path: path.to_owned(),
        source,
    })
}
