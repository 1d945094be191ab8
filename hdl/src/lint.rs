//! [`lint`]: `verilator --lint-only -Wall` over a generated design. Clean means no warning at all:
//! the generated RTL carries no blanket waivers, only scoped ones with a written reason.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::design::{Design, Manifest};
use crate::error::{HdlError, Result};
use crate::tools::{self, ScratchDir, VERILATOR};

/// What to lint: a design in memory (written to a scratch directory first) or a directory written
/// by [`Design::write`] (its `manifest.json` names the top and the files).
#[derive(Debug, Clone, Copy)]
pub enum LintSource<'a> {
    Design(&'a Design),
    Dir(&'a Path),
}

impl<'a> From<&'a Design> for LintSource<'a> {
    fn from(d: &'a Design) -> Self {
        LintSource::Design(d)
    }
}

impl<'a> From<&'a Path> for LintSource<'a> {
    fn from(p: &'a Path) -> Self {
        LintSource::Dir(p)
    }
}

impl<'a> From<&'a PathBuf> for LintSource<'a> {
    fn from(p: &'a PathBuf) -> Self {
        LintSource::Dir(p)
    }
}

/// The result of a lint run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LintReport {
    /// The command that was run.
    pub command: String,
    /// One entry per Verilator message (`%Warning-…` or `%Error…` with its location); empty when
    /// the design is clean.
    pub warnings: Vec<String>,
}

impl LintReport {
    pub fn is_clean(&self) -> bool {
        self.warnings.is_empty()
    }
}

/// Lints a design with `verilator --lint-only -Wall --top-module <top>`.
pub fn lint<'a>(source: impl Into<LintSource<'a>>) -> Result<LintReport> {
    let mut scratch = None;
    let (dir, manifest) = match source.into() {
        LintSource::Design(d) => {
            let s = ScratchDir::new("lint")?;
            d.write(s.path())?;
            let dir = s.path().to_owned();
            scratch = Some(s);
            (dir, d.manifest())
        }
        LintSource::Dir(dir) => (dir.to_owned(), Manifest::read(dir)?),
    };
    let mut args: Vec<String> = ["--lint-only", "-Wall", "--top-module"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    args.push(manifest.top.clone());
    args.extend(manifest.files.iter().cloned());
    let out = tools::run(VERILATOR, &args, &dir)?;
    let command = tools::command_line(VERILATOR, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<String> = stderr
        .lines()
        .filter(|l| l.starts_with("%Warning") || l.starts_with("%Error"))
        .map(str::to_owned)
        .collect();
    if !out.status.success() && warnings.is_empty() {
        let log = dir.join("verilator-lint.log");
        fs::write(&log, stderr.as_bytes()).map_err(|source| HdlError::Io {
            path: log.clone(),
            source,
        })?;
        if let Some(s) = scratch.as_mut() {
            s.keep();
        }
        return Err(HdlError::ToolFailed {
            command,
            status: out.status.to_string(),
            log,
            tail: tools::tail(&stderr, 20),
        });
    }
    Ok(LintReport { command, warnings })
}
