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
//! Also here, because every driver of the trait needs them the same way: 64-bit register pairs
//! ([`read_wide`], [`write_wide`]) and the performance counters ([`PerfCounters`]).
//!
//! Everything else (which descriptors, where tables go, when to start) is the driver's business.

use std::time::Duration;

use serde::Serialize;

use crate::DeviceAddr;
use crate::regmap::{self, WidePair};

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

    /// Prepares the interrupt path for the next job. The driver calls it after acknowledging
    /// IRQ_STATUS and before writing START: a UIO backend drains events left from earlier jobs
    /// (so a stale event cannot end the next wait early) and re-enables the interrupt line (the
    /// kernel's `uio_pdrv_genirq` masks it on every interrupt). Simulated backends have nothing to
    /// do.
    fn arm_irq(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Waits until the interrupt line is asserted or `timeout` passes (device time for simulated
    /// backends). Returns at once when the line is already high. The line stays high until the
    /// host acknowledges IRQ_STATUS.
    fn wait_irq(&mut self, timeout: Duration) -> Result<IrqWait, Self::Error>;

    /// Interrupts this backend has delivered and missed since it was opened, where it counts them
    /// (a UIO backend reads the kernel's event count); `None` for backends without a count.
    fn irq_stats(&self) -> Option<IrqStats> {
        None
    }
}

/// Interrupt events a backend has seen (see [`Device::irq_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct IrqStats {
    /// Completion waits that ended with an interrupt event.
    pub delivered: u64,
    /// Events the kernel counted that no wait consumed one by one (the count jumped by more than
    /// one between two reads): interrupts that fired while nobody waited.
    pub missed: u64,
    /// Waits that polled STATUS instead of waiting for an interrupt (no interrupt configured).
    pub polled: u64,
}

/// The capability words CAPS0..CAPS3 of a device (decode them with `Caps::decode`).
pub fn read_caps<D: Device + ?Sized>(dev: &mut D) -> Result<[u32; 4], D::Error> {
    let mut words = [0u32; 4];
    for (w, r) in words.iter_mut().zip(crate::regmap::CAPS) {
        *w = dev.read_reg(r.offset)?;
    }
    Ok(words)
}

/// Reads a 64-bit register pair LO first: reading a counter's LO word snapshots it and HI returns
/// the snapshot's upper half, so the value is never torn (docs/regmap.md).
pub fn read_wide<D: Device + ?Sized>(dev: &mut D, pair: WidePair) -> Result<u64, D::Error> {
    let lo = dev.read_reg(pair.lo.offset)?;
    let hi = dev.read_reg(pair.hi.offset)?;
    Ok(WidePair::join(lo, hi))
}

/// Writes a 64-bit register pair, LO then HI.
pub fn write_wide<D: Device + ?Sized>(
    dev: &mut D,
    pair: WidePair,
    value: u64,
) -> Result<(), D::Error> {
    let (lo, hi) = WidePair::split(value);
    dev.write_reg(pair.lo.offset, lo)?;
    dev.write_reg(pair.hi.offset, hi)
}

/// The six performance counters of a run, PERF_CYCLES to PERF_BYTES_WR (docs/regmap.md): what a
/// device reports, and what a timing model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PerfCounters {
    pub cycles: u64,
    pub busy_cycles: u64,
    pub stall_cycles: u64,
    pub plane_ops: u64,
    pub bytes_rd: u64,
    pub bytes_wr: u64,
}

impl PerfCounters {
    /// Reads every counter of [`regmap::PERF_COUNTERS`], each LO then HI (see [`read_wide`]).
    pub fn read<D: Device + ?Sized>(dev: &mut D) -> Result<PerfCounters, D::Error> {
        let mut v = [0u64; 6];
        for (slot, pair) in v.iter_mut().zip(regmap::PERF_COUNTERS) {
            *slot = read_wide(dev, pair)?;
        }
        Ok(PerfCounters::from_array(v))
    }

    /// The counters in [`regmap::PERF_COUNTERS`] order.
    pub fn from_array(v: [u64; 6]) -> PerfCounters {
        let [
            cycles,
            busy_cycles,
            stall_cycles,
            plane_ops,
            bytes_rd,
            bytes_wr,
        ] = v;
        PerfCounters {
            cycles,
            busy_cycles,
            stall_cycles,
            plane_ops,
            bytes_rd,
            bytes_wr,
        }
    }

    /// The counters in [`regmap::PERF_COUNTERS`] order.
    pub fn to_array(&self) -> [u64; 6] {
        [
            self.cycles,
            self.busy_cycles,
            self.stall_cycles,
            self.plane_ops,
            self.bytes_rd,
            self.bytes_wr,
        ]
    }

    /// Adds another run's counters (a sum over segments or images).
    pub fn add(&mut self, o: &PerfCounters) {
        self.cycles += o.cycles;
        self.busy_cycles += o.busy_cycles;
        self.stall_cycles += o.stall_cycles;
        self.plane_ops += o.plane_ops;
        self.bytes_rd += o.bytes_rd;
        self.bytes_wr += o.bytes_wr;
    }

    /// Compute utilization: busy cycles over all cycles (0 for an empty run).
    pub fn utilization(&self) -> f64 {
        if self.cycles == 0 {
            0.0
        } else {
            self.busy_cycles as f64 / self.cycles as f64
        }
    }
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

    /// Registers that answer their own offset and log every read.
    struct Echo(Vec<u32>);

    impl Device for Echo {
        type Error = std::io::Error;
        fn read_reg(&mut self, offset: u32) -> Result<u32, Self::Error> {
            self.0.push(offset);
            Ok(offset)
        }
        fn write_reg(&mut self, _: u32, _: u32) -> Result<(), Self::Error> {
            Ok(())
        }
        fn memory(&self) -> MemRegion {
            MemRegion {
                base: DeviceAddr(0),
                len: 0,
            }
        }
        fn mem_write(&mut self, _: DeviceAddr, _: &[u8]) -> Result<(), Self::Error> {
            Ok(())
        }
        fn mem_read(&mut self, _: DeviceAddr, _: &mut [u8]) -> Result<(), Self::Error> {
            Ok(())
        }
        fn wait_irq(&mut self, _: Duration) -> Result<IrqWait, Self::Error> {
            Ok(IrqWait::Fired)
        }
    }

    #[test]
    fn counters_are_read_lo_then_hi_in_register_order() {
        let mut dev = Echo(Vec::new());
        let perf = PerfCounters::read(&mut dev).unwrap();
        let order: Vec<u32> = regmap::PERF_COUNTERS
            .iter()
            .flat_map(|p| [p.lo.offset, p.hi.offset])
            .collect();
        assert_eq!(dev.0, order);
        let p = regmap::PERF_BYTES_WR;
        assert_eq!(
            perf.bytes_wr,
            WidePair::join(p.lo.offset, p.hi.offset),
            "the last pair is bytes_wr"
        );
        assert_eq!(
            perf.cycles & 0xffff_ffff,
            u64::from(regmap::PERF_CYCLES.lo.offset)
        );
    }

    #[test]
    fn timeouts_convert_at_the_clock() {
        assert_eq!(timeout_cycles(Duration::from_millis(1), 100.0), 100_000);
        assert_eq!(timeout_cycles(Duration::ZERO, 100.0), 1);
    }
}
