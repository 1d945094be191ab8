//! Running the external EDA tools: a scratch directory per run and a process runner that turns
//! "not installed" and "failed" into [`HdlError`]s that quote the tool's own last words.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{HdlError, Result};

/// A directory under the system temp dir, removed on drop unless [`ScratchDir::keep`] is called.
#[derive(Debug)]
pub(crate) struct ScratchDir {
    path: PathBuf,
    keep: bool,
}

impl ScratchDir {
    pub(crate) fn new(tool: &str) -> Result<ScratchDir> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let base = std::env::temp_dir();
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("caq-hdl-{tool}-{}-{n}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(ScratchDir { path, keep: false }),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(HdlError::Io { path, source }),
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory (and the log in it) after this value is dropped.
    pub(crate) fn keep(&mut self) -> PathBuf {
        self.keep = true;
        self.path.clone()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A tool and the Debian package that provides it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tool {
    pub name: &'static str,
    pub package: &'static str,
}

pub(crate) const VERILATOR: Tool = Tool {
    name: "verilator",
    package: "verilator",
};
pub(crate) const YOSYS: Tool = Tool {
    name: "yosys",
    package: "yosys",
};

/// True when `tool` can be started.
pub fn available(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

/// Runs `tool args` in `dir`; only a tool that cannot be started is an error here.
pub(crate) fn run(tool: Tool, args: &[String], dir: &Path) -> Result<Output> {
    Command::new(tool.name)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                HdlError::ToolMissing {
                    tool: tool.name,
                    package: tool.package,
                }
            } else {
                HdlError::Io {
                    path: PathBuf::from(tool.name),
                    source: e,
                }
            }
        })
}

/// The command line as a user would type it.
pub(crate) fn command_line(tool: Tool, args: &[String]) -> String {
    let mut s = tool.name.to_owned();
    for a in args {
        s.push(' ');
        if a.contains(' ') || a.contains(';') {
            s.push('\'');
            s.push_str(a);
            s.push('\'');
        } else {
            s.push_str(a);
        }
    }
    s
}

/// The last `n` non-empty lines of a log.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
