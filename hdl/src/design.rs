//! [`Design`]: the generated files of one config, what they expose, and how they are written to disk
//! (each file atomically, plus a `manifest.json` that tools and the Verilator shim read back).

use std::fs;
use std::io::Write as _;
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
        let text = fs::read_to_string(&path).map_err(|source| HdlError::Io {
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

    /// Writes every file and `manifest.json` into `dir` (created if needed). Each file is written
    /// to a temporary name in `dir` and renamed, so a reader never sees half a file.
    pub fn write(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).map_err(|source| HdlError::Io {
            path: dir.to_owned(),
            source,
        })?;
        for f in &self.files {
            write_atomic(&dir.join(&f.name), f.text.as_bytes())?;
        }
        write_atomic(&dir.join(MANIFEST), self.manifest_json().as_bytes())
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| HdlError::Io {
        path: path.to_owned(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io)
}
