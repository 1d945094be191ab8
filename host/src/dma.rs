//! DMA memory the accelerator masters: one physically contiguous region, seen by the CPU through a
//! mapping and by the accelerator at a device (bus) address.
//!
//! - [`DmaMemory`] is what the UIO backend needs from such a region: copies in and out, and the
//!   cache maintenance around the device's accesses.
//! - Its implementations: the u-dma-buf kernel driver on a board, and a memfd for tests and
//!   simulation (optionally incoherent: a separate device view that only the sync calls update,
//!   so a test that forgets a sync reads stale data and fails).
//!
//! Rules from docs/driver.md: never a Rust reference into uncached or device memory (raw
//! pointers, aligned volatile copies); a sync always passes offset, size and direction (a bare
//! "1" syncs nothing).

use crate::error::Result;

/// How CPU and device views of the memory are kept consistent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Coherency {
    /// The port snoops the CPU caches (ZynqMP HPC with `dma-coherent`, Zynq-7000 ACP): syncs are
    /// no-ops.
    HwCoherent,
    /// The CPU maps the memory uncached (u-dma-buf `O_SYNC`, `sync_mode=1`): no syncs needed,
    /// but copies are aligned volatile word loops (memcpy may fault on device memory).
    Uncached,
    /// Cached mapping on a non-coherent port: every device access is bracketed by a kernel sync.
    ManualSync,
}

/// Direction of a cache-maintenance operation (the kernel's `dma_data_direction` numbering as
/// u-dma-buf takes it: 0 bidirectional, 1 to the device, 2 from the device).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncDir {
    Bidirectional = 0,
    ToDevice = 1,
    FromDevice = 2,
}

/// A DMA region: `len()` bytes at device address `device_addr()`.
pub trait DmaMemory: Send {
    /// For messages: the u-dma-buf device name, or `memfd`.
    fn name(&self) -> &str;
    /// The device (bus) address of byte 0.
    fn device_addr(&self) -> u64;
    /// Bytes in the region.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn coherency(&self) -> Coherency;
    /// CPU-side copy into the region at byte offset `off`.
    fn write(&mut self, off: u64, src: &[u8]) -> Result<()>;
    /// CPU-side copy out of the region at byte offset `off`.
    fn read(&mut self, off: u64, dst: &mut [u8]) -> Result<()>;
    /// Makes CPU writes to `[off, off + len)` visible to the device (clean).
    fn sync_for_device(&mut self, off: u64, len: u64, dir: SyncDir) -> Result<()>;
    /// Makes device writes to `[off, off + len)` visible to the CPU (invalidate).
    fn sync_for_cpu(&mut self, off: u64, len: u64, dir: SyncDir) -> Result<()>;
}
