//! The board backend: a caq accelerator behind Linux UIO, as a [`caq_spec::Device`].
//!
//! Registers go through a [`Mmio`] window, the completion interrupt through a [`UioIrq`] on the
//! same open dev file (the kernel keeps the event count per open file, and one `dup` shares it),
//! device memory through a [`DmaMemory`] (u-dma-buf on a board). Without an interrupt in the
//! device tree, [`WaitStrategy::Poll`] reads STATUS instead.
//!
//! Before it maps anything it checks that the FPGA manager reports the PL `operating`
//! ([`check_fpga_operating`]); every register access goes through
//! [`caq_spec::regmap::checked_access`], so an offset the slave would answer with SLVERR (a fatal
//! SError on a Cortex-A53 store) never reaches the bus. It does not check what is mapped: the
//! driver (`Accelerator`) reads ID, VERSION and CONFIG_HASH through [`Device::read_reg`] before
//! anything else.

use std::time::{Duration, Instant};

use caq_spec::regmap;
use caq_spec::{Device, DeviceAddr, IrqStats, IrqWait, MemRegion};

use crate::dma::{DmaMemory, SyncDir};
use crate::error::{HostError, Result};
use crate::irq::{IrqOutcome, UioIrq};
use crate::sys::{SysRoot, read_attr_opt};
use crate::uio::{Mmio, check_fpga_operating, find_uio};

/// How [`Device::wait_irq`] learns that a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStrategy {
    /// Block on the UIO interrupt (the device-tree node has `interrupts`).
    Irq,
    /// Read STATUS every `interval` until BUSY is clear and DONE or ERROR is set (no interrupt
    /// wired, or to rule the interrupt path out while debugging).
    Poll { interval: Duration },
}

/// How to open the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UioOptions {
    /// The UIO map holding the register window (0 for a node with one `reg`).
    pub map_index: usize,
    pub wait: WaitStrategy,
}

impl Default for UioOptions {
    fn default() -> Self {
        UioOptions {
            map_index: 0,
            wait: WaitStrategy::Irq,
        }
    }
}

/// A caq accelerator behind UIO.
pub struct UioDevice {
    mmio: Mmio,
    irq: UioIrq,
    mem: Box<dyn DmaMemory>,
    wait: WaitStrategy,
    polled: u64,
}

impl std::fmt::Debug for UioDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UioDevice")
            .field("mmio", &self.mmio)
            .field("irq", &self.irq)
            .field("mem", &self.mem.name())
            .field("wait", &self.wait)
            .finish()
    }
}

impl UioDevice {
    /// Checks that the PL is programmed ([`check_fpga_operating`]), finds the UIO device called
    /// `name` under `root`, maps its register window (at least [`regmap::REGISTER_SPACE_BYTES`])
    /// with an exclusive lock, and takes the interrupt from the same open file. `mem` is the DMA
    /// memory the accelerator masters.
    pub fn open(
        root: &SysRoot,
        name: &str,
        mem: Box<dyn DmaMemory>,
        opts: UioOptions,
    ) -> Result<UioDevice> {
        Self::open_with(root, name, opts, || Ok(mem))
    }

    /// As [`UioDevice::open`], with the DMA memory opened by `mem` only once the UIO device is
    /// locked: opening a u-dma-buf may write its `sync_mode`, which must not happen under the feet
    /// of the process that holds the accelerator (that one gets [`HostError::DeviceBusy`] here
    /// first).
    pub fn open_with(
        root: &SysRoot,
        name: &str,
        opts: UioOptions,
        mem: impl FnOnce() -> Result<Box<dyn DmaMemory>>,
    ) -> Result<UioDevice> {
        check_fpga_operating(root)?;
        let info = find_uio(root, name)?;
        let mmio = Mmio::open(
            &info,
            opts.map_index,
            u64::from(regmap::REGISTER_SPACE_BYTES),
        )?;
        let mem = mem()?;
        let mut irq = UioIrq::new(mmio.try_clone_fd()?, &info.dev_path)?;
        // The kernel starts this file's event count at the device's count when it was opened;
        // `event` read just after tells the first wait where it starts.
        let event = info.sysfs_dir.join("event");
        if let Some(s) = read_attr_opt(&event)? {
            let n = crate::sys::parse_dec(&event, &s)?;
            irq = irq.with_count(n as u32);
        }
        Ok(UioDevice::from_parts(mmio, irq, mem, opts.wait))
    }

    /// A device from its parts: how tests give it a socket pair's end as the interrupt, and a
    /// fake tree's file as the registers.
    pub fn from_parts(
        mmio: Mmio,
        irq: UioIrq,
        mem: Box<dyn DmaMemory>,
        wait: WaitStrategy,
    ) -> UioDevice {
        UioDevice {
            mmio,
            irq,
            mem,
            wait,
            polled: 0,
        }
    }

    /// The interrupt.
    pub fn irq(&mut self) -> &mut UioIrq {
        &mut self.irq
    }

    /// The DMA memory.
    pub fn dma(&mut self) -> &mut dyn DmaMemory {
        self.mem.as_mut()
    }

    pub fn wait_strategy(&self) -> WaitStrategy {
        self.wait
    }

    /// The offset of `[addr, addr + len)` in the DMA memory, or `AddressOutOfRange` naming both
    /// ranges.
    fn offset_of(&self, addr: DeviceAddr, len: u64, what: &str) -> Result<u64> {
        let region = self.memory();
        if region.contains(addr, len) {
            return Ok(addr.0 - region.base.0);
        }
        Err(HostError::AddressOutOfRange {
            what: format!("{what} of {len} bytes"),
            addr: addr.0,
            end: addr.0.saturating_add(len),
            limit_base: region.base.0,
            limit_end: region.end(),
            why: "not inside the DMA buffer",
        })
    }

    fn poll_status(&mut self, timeout: Duration, interval: Duration) -> Result<IrqWait> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let status = self.mmio.read32(regmap::STATUS.offset)?;
            let ended = regmap::STATUS_DONE.is_set(status) || regmap::STATUS_ERROR.is_set(status);
            if ended && !regmap::STATUS_BUSY.is_set(status) {
                self.polled += 1;
                return Ok(IrqWait::Fired);
            }
            let now = Instant::now();
            let left = match deadline {
                Some(d) if now >= d => return Ok(IrqWait::TimedOut),
                Some(d) => d - now,
                None => interval,
            };
            std::thread::sleep(interval.min(left));
        }
    }
}

impl Device for UioDevice {
    type Error = HostError;

    fn read_reg(&mut self, offset: u32) -> Result<u32> {
        regmap::checked_access(offset, false)?;
        self.mmio.read32(offset)
    }

    fn write_reg(&mut self, offset: u32, value: u32) -> Result<()> {
        regmap::checked_access(offset, true)?;
        self.mmio.write32(offset, value)
    }

    fn memory(&self) -> MemRegion {
        MemRegion {
            base: DeviceAddr(self.mem.device_addr()),
            len: self.mem.len(),
        }
    }

    fn mem_write(&mut self, addr: DeviceAddr, data: &[u8]) -> Result<()> {
        let off = self.offset_of(addr, data.len() as u64, "write")?;
        self.mem.write(off, data)
    }

    fn mem_read(&mut self, addr: DeviceAddr, buf: &mut [u8]) -> Result<()> {
        let off = self.offset_of(addr, buf.len() as u64, "read")?;
        self.mem.read(off, buf)
    }

    fn sync_for_device(&mut self, addr: DeviceAddr, len: u64) -> Result<()> {
        let off = self.offset_of(addr, len, "sync for device")?;
        self.mem.sync_for_device(off, len, SyncDir::ToDevice)
    }

    fn sync_for_cpu(&mut self, addr: DeviceAddr, len: u64) -> Result<()> {
        let off = self.offset_of(addr, len, "sync for CPU")?;
        self.mem.sync_for_cpu(off, len, SyncDir::FromDevice)
    }

    /// Drains stale events and re-enables the line (genirq masked it at the last interrupt).
    /// With [`WaitStrategy::Poll`] the interrupt file is not touched: a device without an
    /// interrupt answers both with EIO.
    fn arm_irq(&mut self) -> Result<()> {
        match self.wait {
            WaitStrategy::Irq => {
                self.irq.drain()?;
                self.irq.enable()
            }
            WaitStrategy::Poll { .. } => Ok(()),
        }
    }

    fn wait_irq(&mut self, timeout: Duration) -> Result<IrqWait> {
        match self.wait {
            WaitStrategy::Irq => Ok(match self.irq.wait(timeout)? {
                IrqOutcome::Fired { .. } => IrqWait::Fired,
                IrqOutcome::TimedOut => IrqWait::TimedOut,
            }),
            WaitStrategy::Poll { interval } => self.poll_status(timeout, interval),
        }
    }

    /// `delivered` and `missed` from the interrupt's event counts; `polled` counts the waits
    /// that ended by reading STATUS.
    fn irq_stats(&self) -> Option<IrqStats> {
        Some(IrqStats {
            polled: self.polled,
            ..self.irq.stats()
        })
    }
}
