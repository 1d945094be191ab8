//! [`Coherence`]: how the accelerator's AXI master meets the CPU caches (`axi.coherence` of a
//! config), and the AXI memory attributes ([`AxiAttrs`]: AxCACHE, AxPROT) each mode makes the DMA
//! engine drive. Written once here; the generator (`caq_dma`), the Vivado script (which checks the
//! RTL it builds against them), the device-tree overlay (`dma-coherent`) and the driver (which
//! refuses a `dma-coherent` buffer for a config whose traffic is not snooped) all read it.
//!
//! Sources: UG1085 "APU Coherent Interfaces" (S_AXI_HPC0/1_FPD snoop the APU caches through the
//! CCI only for AxCACHE[3:2] != 0, and with the CCI's Snoop_Control_Register_S3 enabled); AR# 69446
//! (the tested pairs ARCACHE/AWCACHE = 1011/1111 and 1111/1111; AxPROT[1] must match the security
//! state of the CPU's mapping, which is non-secure (1) for Linux at EL1/EL0); the AXI4
//! specification's AxCACHE memory types (0011 is Normal Non-cacheable Bufferable, what Xilinx
//! recommends on the non-coherent HP ports; 1111 is Write-back Read- and Write-allocate). Not
//! checked on a board.
//!
//! This module knows the attribute values and which boards have a port for each mode; it does not
//! know the port names (`board`) or how Verilog or Tcl spell them.

use serde::{Deserialize, Serialize};

/// How the DMA master's traffic meets the CPU caches: `axi.coherence` of a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Coherence {
    /// Not snooped (Zynq-7000 HP, ZynqMP HP): the driver maps the buffer uncached or brackets every
    /// job with kernel cache maintenance. The default; a config without the field means this.
    #[default]
    None,
    /// I/O-coherent (ZynqMP HPC through the CCI): reads snoop the CPU caches and writes invalidate
    /// them, so the u-dma-buf region is `dma-coherent` and the driver issues no cache maintenance.
    Io,
}

/// The AXI memory attributes a master drives on AR and AW: AxCACHE (4 bits) and AxPROT (3 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AxiAttrs {
    pub arcache: u8,
    pub awcache: u8,
    pub prot: u8,
}

impl AxiAttrs {
    /// `value` of `bits` bits as a Verilog sized binary literal, e.g. `4'b0011`.
    pub fn verilog(value: u8, bits: u32) -> String {
        format!("{bits}'b{value:0width$b}", width = bits as usize)
    }

    /// AxCACHE[3:2] != 0: the CCI snoops the CPU caches for this traffic (UG1085).
    pub const fn snooped(&self) -> bool {
        self.arcache & 0b1100 != 0 && self.awcache & 0b1100 != 0
    }

    /// AxPROT[1]: the access is non-secure.
    pub const fn non_secure(&self) -> bool {
        self.prot & 0b010 != 0
    }
}

impl Coherence {
    /// Every mode, for tables and tests.
    pub const ALL: [Coherence; 2] = [Coherence::None, Coherence::Io];

    /// The name in TOML (`none`, `io`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Coherence::None => "none",
            Coherence::Io => "io",
        }
    }

    /// True for the default, which the config's canonical form (and so its hash) leaves out.
    pub fn is_none(&self) -> bool {
        *self == Coherence::None
    }

    /// The AxCACHE and AxPROT the DMA engine drives in this mode.
    ///
    /// - `None`: AxCACHE 0011 (Normal Non-cacheable Bufferable; AxCACHE[3:2] = 00 keeps the CCI
    ///   from snooping), AxPROT 000 (unprivileged, secure, data), as the engine always drove.
    /// - `Io`: AxCACHE 1111 (Write-back Read- and Write-allocate, one of AR# 69446's tested
    ///   pairs), AxPROT 010 (non-secure, as Linux maps the buffer; a secure access would not
    ///   match the CPU's non-secure cache lines).
    pub const fn axi_attrs(self) -> AxiAttrs {
        match self {
            Coherence::None => AxiAttrs {
                arcache: 0b0011,
                awcache: 0b0011,
                prot: 0b000,
            },
            Coherence::Io => AxiAttrs {
                arcache: 0b1111,
                awcache: 0b1111,
                prot: 0b010,
            },
        }
    }

    /// Whether the DMA region of this mode is `dma-coherent` in the device tree (the kernel then
    /// skips cache maintenance, which is right only for snooped traffic).
    pub const fn dma_coherent(self) -> bool {
        matches!(self, Coherence::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_io_mode_is_snooped_and_non_secure() {
        let none = Coherence::None.axi_attrs();
        assert!(!none.snooped() && !none.non_secure());
        assert_eq!(AxiAttrs::verilog(none.arcache, 4), "4'b0011");
        assert_eq!(AxiAttrs::verilog(none.prot, 3), "3'b000");
        let io = Coherence::Io.axi_attrs();
        assert!(io.snooped() && io.non_secure());
        assert_eq!(AxiAttrs::verilog(io.awcache, 4), "4'b1111");
        assert_eq!(AxiAttrs::verilog(io.prot, 3), "3'b010");
        for c in Coherence::ALL {
            assert_eq!(c.dma_coherent(), c.axi_attrs().snooped(), "{c:?}");
        }
        assert_eq!(Coherence::default(), Coherence::None);
    }
}
