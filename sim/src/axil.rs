//! [`AxiLite`]: an AXI4-Lite master that drives the `s_axil_*` ports of an [`RtlModel`] one cycle at
//! a time and checks the slave's side of the handshake.
//!
//! Per cycle the master sets its outputs, settles the model (`eval`), samples the slave's outputs and
//! then clocks the model: a transfer happens on the rising edge where VALID and READY were both high.
//! The master follows the AXI4-Lite rules (IHI 0022, A3.2): a VALID, once high, stays high with its
//! payload unchanged until READY; it never waits for READY before raising VALID. It checks that the
//! slave does the same for B and R (VALID held with a stable payload until READY) and that it
//! answers only after the request's handshakes. Order of AW and W, and random back-pressure on BREADY
//! and RREADY, are options for tests; every wait is bounded by a cycle timeout.
//!
//! This module knows the AXI4-Lite protocol and the port names; it does not know the register map
//! beyond naming offsets in errors.

use caq_spec::regmap::{Register, WidePair};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::axi::{AxiOp, RegAddr, Resp};
use crate::error::SimError;
use crate::rtl::{AxilPorts, RtlModel};

/// When the write address (AW) and the write data (W) are presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteOrder {
    /// AWVALID and WVALID rise in the same cycle.
    #[default]
    Together,
    /// AWVALID first; WVALID rises `lead` cycles later, or right after the AW handshake if that comes
    /// sooner (a slave may wait for both VALIDs before any READY, so W is never held back for AW).
    AddrFirst { lead: u32 },
    /// WVALID first; AWVALID follows as in [`WriteOrder::AddrFirst`].
    DataFirst { lead: u32 },
}

/// Random back-pressure on BREADY and RREADY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backpressure {
    /// Chance in percent that READY is low in a given cycle (0: always ready; 100 or more: never
    /// ready, which ends in a timeout).
    pub stall_percent: u8,
}

impl Backpressure {
    /// READY is always high.
    pub const NONE: Backpressure = Backpressure { stall_percent: 0 };
}

/// How an [`AxiLite`] master behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AxiLiteOptions {
    pub write_order: WriteOrder,
    pub backpressure: Backpressure,
    /// Cycles a read or write may take, from the first VALID to the response handshake.
    pub timeout_cycles: u64,
    /// Seeds the back-pressure pattern.
    pub seed: u64,
}

impl Default for AxiLiteOptions {
    fn default() -> Self {
        AxiLiteOptions {
            write_order: WriteOrder::Together,
            backpressure: Backpressure::NONE,
            timeout_cycles: 1000,
            seed: 0,
        }
    }
}

/// Something else on the model's ports that must see every clock cycle (the AXI memory model):
/// called after the master set its inputs and sampled the slave, right before each rising edge.
/// It may set other inputs and `eval`, but not tick.
pub trait CycleHook {
    fn before_edge(&mut self, model: &mut RtlModel) -> Result<(), SimError>;
}

/// An AXI4-Lite master on the model's `s_axil_*` port.
pub struct AxiLite<'a> {
    model: &'a mut RtlModel,
    p: &'static AxilPorts,
    options: AxiLiteOptions,
    rng: ChaCha8Rng,
    hook: Option<&'a mut dyn CycleHook>,
}

impl std::fmt::Debug for AxiLite<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AxiLite")
            .field("model", &self.model)
            .field("options", &self.options)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl<'a> AxiLite<'a> {
    /// A master on `model`, whose library must be the accelerator top's (it has the `s_axil_*`
    /// ports).
    pub fn new(model: &'a mut RtlModel, options: AxiLiteOptions) -> Result<AxiLite<'a>, SimError> {
        Ok(AxiLite {
            p: &model.top_ports()?.axil,
            model,
            rng: ChaCha8Rng::seed_from_u64(options.seed),
            options,
            hook: None,
        })
    }

    /// A master whose every clock cycle also runs `hook` (e.g. the AXI memory model, which must
    /// be served on every cycle, register accesses included).
    pub fn with_hook(
        model: &'a mut RtlModel,
        options: AxiLiteOptions,
        hook: &'a mut dyn CycleHook,
    ) -> Result<AxiLite<'a>, SimError> {
        Ok(AxiLite {
            hook: Some(hook),
            ..AxiLite::new(model, options)?
        })
    }

    /// One rising edge, with the hook (if any) run first.
    fn clock(&mut self) -> Result<(), SimError> {
        if let Some(h) = self.hook.as_mut() {
            h.before_edge(self.model)?;
        }
        self.model.tick();
        Ok(())
    }

    pub fn options(&self) -> AxiLiteOptions {
        self.options
    }

    /// Changes the options for the following transfers (the back-pressure pattern continues).
    pub fn set_options(&mut self, options: AxiLiteOptions) {
        self.options = options;
    }

    /// The model, to tick it or read other ports between transfers.
    pub fn model(&mut self) -> &mut RtlModel {
        self.model
    }

    /// Reads the 32-bit register at byte offset `addr`. An error response is an error.
    pub fn read32(&mut self, addr: u32) -> Result<u32, SimError> {
        let target = RegAddr(addr);
        let op = AxiOp::Read;
        self.model
            .set(self.p.araddr, u64::from(addr))
            .map_err(|_| SimError::Address {
                op,
                addr: target,
                width: self.p.araddr.width(),
            })?;
        let protocol = |cycle: u64, rule: &str| SimError::Protocol {
            op,
            addr: target,
            cycle,
            rule: rule.to_string(),
        };
        let mut ar_done = false;
        // RDATA and RRESP of an RVALID the master has not yet accepted.
        let mut waiting: Option<(u64, u64)> = None;
        for cycle in 0..self.options.timeout_cycles {
            let arvalid = !ar_done;
            let rready = self.ready();
            self.model.set(self.p.arvalid, u64::from(arvalid))?;
            self.model.set(self.p.rready, u64::from(rready))?;
            self.model.eval();
            let arready = self.model.is_high(self.p.arready);
            let rvalid = self.model.is_high(self.p.rvalid);
            let r = (self.model.get(self.p.rdata), self.model.get(self.p.rresp));
            if rvalid && !ar_done {
                return Err(protocol(cycle, "RVALID before the AR handshake"));
            }
            if let Some(held) = waiting {
                if !rvalid {
                    return Err(protocol(cycle, "RVALID dropped before RREADY"));
                }
                if r != held {
                    return Err(protocol(cycle, "RDATA/RRESP changed while RVALID waited"));
                }
            }
            self.clock()?;
            ar_done |= arvalid && arready;
            if rvalid && rready {
                self.idle(&[self.p.arvalid, self.p.rready])?;
                let (data, resp) = r;
                return match Resp::from_bits(resp) {
                    // RDATA is a 32-bit port.
                    Resp::Okay => Ok(data as u32),
                    resp => Err(SimError::Response {
                        op,
                        addr: target,
                        resp,
                    }),
                };
            }
            waiting = rvalid.then_some(r);
        }
        self.idle(&[self.p.arvalid, self.p.rready])?;
        Err(SimError::Timeout {
            op,
            addr: target,
            waiting_for: if ar_done { "RVALID" } else { "ARREADY" },
            cycles: self.options.timeout_cycles,
        })
    }

    /// Writes `value` to the 32-bit register at byte offset `addr`, with byte lane `i` enabled by bit
    /// `i` of `strb`. An error response is an error.
    pub fn write32(&mut self, addr: u32, value: u32, strb: u8) -> Result<(), SimError> {
        let target = RegAddr(addr);
        let op = AxiOp::Write;
        if strb > 0xf {
            return Err(SimError::Strobe { addr: target, strb });
        }
        self.model
            .set(self.p.awaddr, u64::from(addr))
            .map_err(|_| SimError::Address {
                op,
                addr: target,
                width: self.p.awaddr.width(),
            })?;
        self.model.set(self.p.wdata, u64::from(value))?;
        self.model.set(self.p.wstrb, u64::from(strb))?;
        let protocol = |cycle: u64, rule: &str| SimError::Protocol {
            op,
            addr: target,
            cycle,
            rule: rule.to_string(),
        };
        let (aw_at, w_at) = match self.options.write_order {
            WriteOrder::Together => (0, 0),
            WriteOrder::AddrFirst { lead } => (0, u64::from(lead)),
            WriteOrder::DataFirst { lead } => (u64::from(lead), 0),
        };
        let (mut aw_done, mut w_done) = (false, false);
        let (mut awvalid, mut wvalid) = (false, false);
        // BRESP of a BVALID the master has not yet accepted.
        let mut waiting: Option<u64> = None;
        for cycle in 0..self.options.timeout_cycles {
            // Once high, a VALID stays high until its handshake.
            awvalid = !aw_done && (awvalid || cycle >= aw_at || w_done);
            wvalid = !w_done && (wvalid || cycle >= w_at || aw_done);
            let bready = self.ready();
            self.model.set(self.p.awvalid, u64::from(awvalid))?;
            self.model.set(self.p.wvalid, u64::from(wvalid))?;
            self.model.set(self.p.bready, u64::from(bready))?;
            self.model.eval();
            let awready = self.model.is_high(self.p.awready);
            let wready = self.model.is_high(self.p.wready);
            let bvalid = self.model.is_high(self.p.bvalid);
            let bresp = self.model.get(self.p.bresp);
            if bvalid && !(aw_done && w_done) {
                return Err(protocol(
                    cycle,
                    "BVALID before both the AW and the W handshake",
                ));
            }
            if let Some(held) = waiting {
                if !bvalid {
                    return Err(protocol(cycle, "BVALID dropped before BREADY"));
                }
                if bresp != held {
                    return Err(protocol(cycle, "BRESP changed while BVALID waited"));
                }
            }
            self.clock()?;
            aw_done |= awvalid && awready;
            w_done |= wvalid && wready;
            if bvalid && bready {
                self.idle(&[self.p.awvalid, self.p.wvalid, self.p.bready])?;
                return match Resp::from_bits(bresp) {
                    Resp::Okay => Ok(()),
                    resp => Err(SimError::Response {
                        op,
                        addr: target,
                        resp,
                    }),
                };
            }
            waiting = bvalid.then_some(bresp);
        }
        self.idle(&[self.p.awvalid, self.p.wvalid, self.p.bready])?;
        Err(SimError::Timeout {
            op,
            addr: target,
            waiting_for: match (aw_done, w_done) {
                (false, _) => "AWREADY",
                (true, false) => "WREADY",
                (true, true) => "BVALID",
            },
            cycles: self.options.timeout_cycles,
        })
    }

    /// Reads a register of the map.
    pub fn read(&mut self, reg: &Register) -> Result<u32, SimError> {
        self.read32(reg.offset)
    }

    /// Writes all four bytes of a register of the map.
    pub fn write(&mut self, reg: &Register, value: u32) -> Result<(), SimError> {
        self.write32(reg.offset, value, 0xf)
    }

    /// Reads a 64-bit value, LO word first (which snapshots a performance counter), then HI.
    pub fn read64(&mut self, pair: &WidePair) -> Result<u64, SimError> {
        let lo = self.read(&pair.lo)?;
        let hi = self.read(&pair.hi)?;
        Ok(WidePair::join(lo, hi))
    }

    /// BREADY / RREADY for this cycle.
    fn ready(&mut self) -> bool {
        let stall = self.options.backpressure.stall_percent;
        stall == 0 || self.rng.random_range(0..100u8) >= stall
    }

    /// Lowers the master's handshake outputs after a transfer.
    fn idle(&mut self, ports: &[crate::rtl::InPort]) -> Result<(), SimError> {
        for &port in ports {
            self.model.set(port, 0)?;
        }
        self.model.eval();
        Ok(())
    }
}
