//! What belongs to the process that opened the accelerator, and what a `fork` must not inherit.
//!
//! A forked child shares the parent's open files: the UIO file's exclusive lock, its interrupt
//! event count (a read in the child steals the parent's event) and, unless told otherwise, the
//! register and DMA mappings. The driver's handles therefore carry a [`ForkGuard`] and refuse to
//! be used from any process but the one that opened them ([`HostError::Forked`]), and the
//! mappings are marked `MADV_DONTFORK` ([`dont_fork`]) so a child has no way to touch device
//! memory or registers by accident. The child opens the accelerator itself (after the parent
//! closed it: the lock stays held while any process keeps the descriptor, so a child that does not
//! need the accelerator should exec or close it).
//!
//! This module knows processes only; it does not know what the handles are.

use std::path::Path;

use memmap2::{Advice, MmapRaw};

use crate::error::{HostError, Result};

/// The process a handle was opened by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForkGuard {
    pid: u32,
}

impl Default for ForkGuard {
    fn default() -> Self {
        ForkGuard::new()
    }
}

impl ForkGuard {
    /// The calling process.
    pub fn new() -> ForkGuard {
        ForkGuard {
            pid: std::process::id(),
        }
    }

    /// The process that opened the handle.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Ok in the process that opened `path`, [`HostError::Forked`] in any other.
    pub fn check(&self, path: &Path) -> Result<()> {
        let now = std::process::id();
        if now == self.pid {
            return Ok(());
        }
        Err(HostError::Forked {
            path: path.to_path_buf(),
            opened_by: self.pid,
            pid: now,
        })
    }
}

/// Marks `map` `MADV_DONTFORK`: a child created by `fork` gets no mapping there (an access faults
/// instead of reaching the device or its memory).
pub fn dont_fork(map: &MmapRaw, path: &Path) -> Result<()> {
    map.advise(Advice::DontFork)
        .map_err(|e| HostError::io(path, "madvise(MADV_DONTFORK)", e))
}
