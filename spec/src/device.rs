//! The register-level device interface every backend implements: the pure-Rust functional model
//! (`caq_sim::FuncDevice`), the Verilator model of the RTL (`caq_sim::RtlDevice`) and the board
//! (`caq_host`'s UIO backend). The driver is written once against this trait.
//!
//! It is the smallest surface a driver needs, and exactly what the hardware offers:
//! - 32-bit reads and writes of the AXI4-Lite register window (offsets of [`crate::regmap`]);
//! - the device memory the accelerator masters: a region of device (bus) addresses the host can
//!   write and read, with explicit cache maintenance around the device's accesses;
//! - waiting for the completion interrupt with a timeout.
//!
//! Everything else (which descriptors, where tables go, when to start) is the driver's business.

use std::time::Duration;

use crate::DeviceAddr;

/// What [`Device::wait_irq`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqWait {
    /// The interrupt line was (or became) asserted.
    Fired,
    /// The timeout passed with the line low.
    TimedOut,
}

/// A contiguous region of device memory: `[base, base + len)` in the accelerator's address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemRegion {
    pub base: DeviceAddr,
    pub len: u64,
}

impl MemRegion {
    /// The first address past the region.
    pub fn end(&self) -> u64 {
        self.base.0.saturating_add(self.len)
    }

    /// True when `[addr, addr + len)` lies in the region (an empty range at `end` does too).
    pub fn contains(&self, addr: DeviceAddr, len: u64) -> bool {
        addr >= self.base && addr.0.checked_add(len).is_some_and(|e| e <= self.end())
    }
}

/// A caq accelerator seen from the host: registers, device memory, interrupt.
///
/// Register offsets are byte offsets into the AXI4-Lite window (`caq_spec::regmap`); a backend
/// reports an access the slave answers with SLVERR (an unmapped offset) as an error. Memory
/// accesses outside [`Device::memory`] are errors, never silently clipped.
///
/// Simulated backends measure time in device clock cycles: a `timeout` is converted to cycles at
/// the config's clock (`clock_mhz`), so a test's timeout means the same on every host machine.
pub trait Device {
    /// The backend's error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Reads the 32-bit register at byte `offset`.
    fn read_reg(&mut self, offset: u32) -> Result<u32, Self::Error>;

    /// Writes the 32-bit register at byte `offset`.
    fn write_reg(&mut self, offset: u32, value: u32) -> Result<(), Self::Error>;

    /// The device memory this backend gives the host (a u-dma-buf region, a simulated DDR).
    fn memory(&self) -> MemRegion;

    /// Copies `data` into device memory at `addr` (CPU side; call [`Device::sync_for_device`]
    /// before the device reads it).
    fn mem_write(&mut self, addr: DeviceAddr, data: &[u8]) -> Result<(), Self::Error>;

    /// Copies device memory at `addr` into `buf` (CPU side; call [`Device::sync_for_cpu`] after
    /// the device wrote it).
    fn mem_read(&mut self, addr: DeviceAddr, buf: &mut [u8]) -> Result<(), Self::Error>;

    /// Makes the CPU's writes to `[addr, addr + len)` visible to the device (cache clean). A
    /// coherent backend does nothing.
    fn sync_for_device(&mut self, addr: DeviceAddr, len: u64) -> Result<(), Self::Error> {
        let _ = (addr, len);
        Ok(())
    }

    /// Makes the device's writes to `[addr, addr + len)` visible to the CPU (cache invalidate).
    /// A coherent backend does nothing.
    fn sync_for_cpu(&mut self, addr: DeviceAddr, len: u64) -> Result<(), Self::Error> {
        let _ = (addr, len);
        Ok(())
    }

    /// Waits until the interrupt line is asserted or `timeout` passes (device time for simulated
    /// backends). Returns at once when the line is already high. The line stays high until the
    /// host acknowledges IRQ_STATUS.
    fn wait_irq(&mut self, timeout: Duration) -> Result<IrqWait, Self::Error>;
}

/// Converts a timeout to device clock cycles at `clock_mhz` (at least one cycle).
pub fn timeout_cycles(timeout: Duration, clock_mhz: f64) -> u64 {
    let cycles = timeout.as_secs_f64() * clock_mhz * 1e6;
    if cycles.is_finite() && cycles >= 1.0 {
        cycles.min(u64::MAX as f64) as u64
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_contain_ranges_inside_them_only() {
        let r = MemRegion {
            base: DeviceAddr(0x1000),
            len: 0x100,
        };
        assert!(r.contains(DeviceAddr(0x1000), 0x100));
        assert!(r.contains(DeviceAddr(0x1100), 0));
        assert!(!r.contains(DeviceAddr(0x1000), 0x101));
        assert!(!r.contains(DeviceAddr(0xfff), 1));
        assert!(!r.contains(DeviceAddr(u64::MAX), 2));
    }

    #[test]
    fn timeouts_convert_at_the_clock() {
        assert_eq!(timeout_cycles(Duration::from_millis(1), 100.0), 100_000);
        assert_eq!(timeout_cycles(Duration::ZERO, 100.0), 1);
    }
}
