//! [`RtlDevice`]: the Verilator model of the RTL as a `caq_spec::Device` — registers through the
//! AXI4-Lite master, device memory in the [`AxiMem`] model behind the DMA's AXI4 master, the
//! interrupt line read off the model. The memory is served on every clock cycle, register
//! accesses included, so the device runs while the host polls.
//!
//! An `RtlDevice` is made for any valid config: the RTL is generated with `caq_hdl::generate` and
//! its Verilator model built (or found in the on-disk cache, `caq_sim::rtl`) when the device is
//! created. Time is device time: `wait_irq` converts its timeout to cycles at the config's clock.

use std::time::Duration;

use caq_spec::device::{self, Device, IrqWait, MemRegion};
use caq_spec::{AccelConfig, DeviceAddr};

use crate::axi::Resp;
use crate::axi_mem::{AxiMem, AxiMemOptions};
use crate::axil::{AxiLite, AxiLiteOptions};
use crate::error::SimError;
use crate::fault::{FaultDir, InjectFaults};
use crate::rtl::{self, ModelLib, RtlModel, TopPorts};

/// Reset cycles of a new device.
const RESET_CYCLES: u32 = 4;

/// The RTL model with its register master and memory.
#[derive(Debug)]
pub struct RtlDevice {
    model: RtlModel,
    ports: &'static TopPorts,
    mem: AxiMem,
    axil: AxiLiteOptions,
    clock_mhz: f64,
}

impl RtlDevice {
    /// The accelerator of `cfg` (its model built or loaded from the cache), power-up values from
    /// `seed` (and the memory's stalls from `options.seed`), reset and idle.
    pub fn new(
        cfg: &AccelConfig,
        seed: u64,
        options: AxiMemOptions,
    ) -> Result<RtlDevice, SimError> {
        RtlDevice::with_library(rtl::top_library(cfg)?, cfg, seed, options)
    }

    /// A device on an already loaded model library of `cfg`'s accelerator ([`rtl::top_library`]).
    pub fn with_library(
        lib: &'static ModelLib,
        cfg: &AccelConfig,
        seed: u64,
        options: AxiMemOptions,
    ) -> Result<RtlDevice, SimError> {
        let ports = lib.top_ports()?;
        let mut model = lib.instantiate(seed);
        model.reset(RESET_CYCLES);
        Ok(RtlDevice {
            model,
            ports,
            mem: AxiMem::new(cfg, options),
            axil: AxiLiteOptions::default(),
            clock_mhz: cfg.clock_mhz,
        })
    }

    /// The Verilator model (for tests that look at ports).
    pub fn model(&mut self) -> &mut RtlModel {
        &mut self.model
    }

    /// The memory model: its options, error injection, backdoor.
    pub fn mem(&mut self) -> &mut AxiMem {
        &mut self.mem
    }

    /// The register master's options (back-pressure, write order) for the following accesses.
    pub fn set_axil_options(&mut self, options: AxiLiteOptions) {
        self.axil = options;
    }

    /// Clock cycles since the model was created.
    pub fn cycles(&self) -> u64 {
        self.model.cycles()
    }

    /// `n` clock cycles with the memory served.
    pub fn step(&mut self, n: u64) -> Result<(), SimError> {
        for _ in 0..n {
            self.mem.cycle(&mut self.model)?;
        }
        Ok(())
    }

    fn axil(&mut self) -> Result<AxiLite<'_>, SimError> {
        AxiLite::with_hook(&mut self.model, self.axil, &mut self.mem)
    }
}

impl Device for RtlDevice {
    type Error = SimError;

    fn read_reg(&mut self, offset: u32) -> Result<u32, SimError> {
        self.axil()?.read32(offset)
    }

    fn write_reg(&mut self, offset: u32, value: u32) -> Result<(), SimError> {
        self.axil()?.write32(offset, value, 0xf)
    }

    fn memory(&self) -> MemRegion {
        let (base, len) = self.mem.region();
        MemRegion {
            base: DeviceAddr(base),
            len,
        }
    }

    fn mem_write(&mut self, addr: DeviceAddr, data: &[u8]) -> Result<(), SimError> {
        self.mem.write(addr.0, data)
    }

    fn mem_read(&mut self, addr: DeviceAddr, buf: &mut [u8]) -> Result<(), SimError> {
        buf.copy_from_slice(self.mem.read(addr.0, buf.len())?);
        Ok(())
    }

    fn wait_irq(&mut self, timeout: Duration) -> Result<IrqWait, SimError> {
        let limit = device::timeout_cycles(timeout, self.clock_mhz);
        for _ in 0..limit {
            if self.model.is_high(self.ports.irq) {
                return Ok(IrqWait::Fired);
            }
            self.mem.cycle(&mut self.model)?;
        }
        Ok(if self.model.is_high(self.ports.irq) {
            IrqWait::Fired
        } else {
            IrqWait::TimedOut
        })
    }
}

impl InjectFaults for RtlDevice {
    fn inject(&mut self, range: std::ops::Range<u64>, resp: Resp, dir: FaultDir) {
        self.mem.inject(range, resp, dir);
    }

    fn clear_faults(&mut self) {
        self.mem.clear_faults();
    }
}
