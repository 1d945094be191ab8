//! The file system the driver reads: sysfs, procfs and `/dev`, all under one configurable root.
//!
//! On a board the root is `/`. Tests build a fake tree in a temporary directory (see
//! [`crate::fake`]) and point the driver at it, so discovery, parsing and the error paths run
//! without hardware. Every path the driver touches is built here, from the root.
//!
//! Attribute formats are the kernel's (docs/driver.md cites the sources): UIO `addr`/`size` are
//! `%pa` (hex with `0x`), `offset` is `0x%llx`, u-dma-buf `phys_addr` is `%pad` (hex) and `size` is
//! `%zu` (decimal). A value that does not parse is a [`HostError::SysfsParse`] naming the file.

use crate::error::{HostError, Result};
use std::path::{Path, PathBuf};

/// The root under which `/sys`, `/proc` and `/dev` are found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysRoot {
    root: PathBuf,
}

impl Default for SysRoot {
    fn default() -> Self {
        SysRoot::new("/")
    }
}

impl SysRoot {
    pub fn new(root: impl Into<PathBuf>) -> SysRoot {
        SysRoot { root: root.into() }
    }

    /// The root itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `rel` (written without a leading `/`, e.g. `sys/class/uio`) under the root.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        let rel = rel.as_ref();
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        self.root.join(rel)
    }

    /// `sys/class/<class>` under the root.
    pub fn class(&self, class: &str) -> PathBuf {
        self.join(Path::new("sys/class").join(class))
    }

    /// `dev/<name>` under the root.
    pub fn dev(&self, name: &str) -> PathBuf {
        self.join(Path::new("dev").join(name))
    }
}

/// Reads a sysfs attribute, trailing newline and blanks removed.
pub fn read_attr(path: &Path) -> Result<String> {
    let s = std::fs::read_to_string(path).map_err(|e| HostError::io(path, "sysfs", e))?;
    Ok(s.trim_end().to_string())
}

/// Reads an attribute that may be absent: `Ok(None)` when the file does not exist.
pub fn read_attr_opt(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim_end().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(HostError::io(path, "sysfs", e)),
    }
}

/// Parses a hexadecimal value with or without `0x` (the kernel's `%pa`, `%pad`, `0x%llx`).
pub fn parse_hex(path: &Path, content: &str) -> Result<u64> {
    let t = content.trim();
    let digits = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if digits.is_empty() {
        return Err(bad(path, content, "a hexadecimal number"));
    }
    u64::from_str_radix(digits, 16).map_err(|_| bad(path, content, "a hexadecimal number"))
}

/// Parses a decimal value (the kernel's `%zu`, `%d`, `%u`).
pub fn parse_dec(path: &Path, content: &str) -> Result<u64> {
    content
        .trim()
        .parse::<u64>()
        .map_err(|_| bad(path, content, "a decimal number"))
}

/// Reads and parses a hexadecimal attribute.
pub fn read_hex(path: &Path) -> Result<u64> {
    let s = read_attr(path)?;
    parse_hex(path, &s)
}

/// Reads and parses a decimal attribute.
pub fn read_dec(path: &Path) -> Result<u64> {
    let s = read_attr(path)?;
    parse_dec(path, &s)
}

fn bad(path: &Path, content: &str, expected: &'static str) -> HostError {
    HostError::SysfsParse {
        path: path.to_path_buf(),
        content: content.to_string(),
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_formats() {
        let p = Path::new("/x");
        assert_eq!(parse_hex(p, "0x43c00000").unwrap(), 0x43c0_0000);
        assert_eq!(parse_hex(p, "0x0000000043c00000\n").unwrap(), 0x43c0_0000);
        assert_eq!(parse_hex(p, "1000").unwrap(), 0x1000);
        assert_eq!(parse_dec(p, "4194304\n").unwrap(), 4_194_304);
        for bad in ["", "0x", "0xzz", "-1", "0x1_0"] {
            let e = parse_hex(p, bad).unwrap_err();
            assert!(matches!(e, HostError::SysfsParse { .. }), "{bad}: {e}");
        }
        let e = parse_dec(p, "0x10").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/x: expected a decimal number, found \"0x10\""
        );
    }

    #[test]
    fn joins_under_the_root() {
        let r = SysRoot::new("/tmp/fake");
        assert_eq!(r.class("uio"), Path::new("/tmp/fake/sys/class/uio"));
        assert_eq!(r.join("/proc/meminfo"), Path::new("/tmp/fake/proc/meminfo"));
        assert_eq!(r.dev("uio0"), Path::new("/tmp/fake/dev/uio0"));
    }
}
