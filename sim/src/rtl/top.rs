//! [`TopPorts`]: the handles of the accelerator top's ports (`caq_top`), resolved by name from a
//! loaded library's port table. Their widths follow the config (address, ID and data widths), so
//! nothing here is a constant: the names are the contract (docs/hardware.md, "Modules").
//!
//! This module knows the names of caq_top's ports; the protocols on them are `axil`'s and
//! `axi_mem`'s.

use super::library::ModelLib;
use super::port::{AnyInPort, AnyOutPort, InPort, OutPort};
use crate::error::SimError;

/// The AXI4-Lite slave `s_axil_*`.
#[derive(Debug, Clone, Copy)]
pub struct AxilPorts {
    pub awaddr: InPort,
    pub awvalid: InPort,
    pub awready: OutPort,
    pub wdata: InPort,
    pub wstrb: InPort,
    pub wvalid: InPort,
    pub wready: OutPort,
    pub bresp: OutPort,
    pub bvalid: OutPort,
    pub bready: InPort,
    pub araddr: InPort,
    pub arvalid: InPort,
    pub arready: OutPort,
    pub rdata: OutPort,
    pub rresp: OutPort,
    pub rvalid: OutPort,
    pub rready: InPort,
}

/// The DMA engine's AXI4 master `m_axi_*` (the ports the memory model drives and samples).
#[derive(Debug, Clone, Copy)]
pub struct AxiPorts {
    pub awid: OutPort,
    pub awaddr: OutPort,
    pub awlen: OutPort,
    pub awsize: OutPort,
    pub awburst: OutPort,
    pub awvalid: OutPort,
    pub awready: InPort,
    pub wdata: AnyOutPort,
    pub wstrb: OutPort,
    pub wlast: OutPort,
    pub wvalid: OutPort,
    pub wready: InPort,
    pub bid: InPort,
    pub bresp: InPort,
    pub bvalid: InPort,
    pub bready: OutPort,
    pub arid: OutPort,
    pub araddr: OutPort,
    pub arlen: OutPort,
    pub arsize: OutPort,
    pub arburst: OutPort,
    pub arvalid: OutPort,
    pub arready: InPort,
    pub rid: InPort,
    pub rdata: AnyInPort,
    pub rresp: InPort,
    pub rlast: InPort,
    pub rvalid: InPort,
    pub rready: OutPort,
}

/// Every port of `caq_top` the simulation uses.
#[derive(Debug, Clone, Copy)]
pub struct TopPorts {
    pub rst_n: InPort,
    pub irq: OutPort,
    pub axil: AxilPorts,
    pub axi: AxiPorts,
}

impl TopPorts {
    /// Resolves every handle by name; fails naming the first port that is missing or of the wrong
    /// kind.
    pub fn resolve(lib: &ModelLib) -> Result<TopPorts, SimError> {
        let i = |n: &str| lib.input(n);
        let o = |n: &str| lib.output(n);
        let axil = AxilPorts {
            awaddr: i("s_axil_awaddr")?,
            awvalid: i("s_axil_awvalid")?,
            awready: o("s_axil_awready")?,
            wdata: i("s_axil_wdata")?,
            wstrb: i("s_axil_wstrb")?,
            wvalid: i("s_axil_wvalid")?,
            wready: o("s_axil_wready")?,
            bresp: o("s_axil_bresp")?,
            bvalid: o("s_axil_bvalid")?,
            bready: i("s_axil_bready")?,
            araddr: i("s_axil_araddr")?,
            arvalid: i("s_axil_arvalid")?,
            arready: o("s_axil_arready")?,
            rdata: o("s_axil_rdata")?,
            rresp: o("s_axil_rresp")?,
            rvalid: o("s_axil_rvalid")?,
            rready: i("s_axil_rready")?,
        };
        let axi = AxiPorts {
            awid: o("m_axi_awid")?,
            awaddr: o("m_axi_awaddr")?,
            awlen: o("m_axi_awlen")?,
            awsize: o("m_axi_awsize")?,
            awburst: o("m_axi_awburst")?,
            awvalid: o("m_axi_awvalid")?,
            awready: i("m_axi_awready")?,
            wdata: lib.any_output("m_axi_wdata")?,
            wstrb: o("m_axi_wstrb")?,
            wlast: o("m_axi_wlast")?,
            wvalid: o("m_axi_wvalid")?,
            wready: i("m_axi_wready")?,
            bid: i("m_axi_bid")?,
            bresp: i("m_axi_bresp")?,
            bvalid: i("m_axi_bvalid")?,
            bready: o("m_axi_bready")?,
            arid: o("m_axi_arid")?,
            araddr: o("m_axi_araddr")?,
            arlen: o("m_axi_arlen")?,
            arsize: o("m_axi_arsize")?,
            arburst: o("m_axi_arburst")?,
            arvalid: o("m_axi_arvalid")?,
            arready: i("m_axi_arready")?,
            rid: i("m_axi_rid")?,
            rdata: lib.any_input("m_axi_rdata")?,
            rresp: i("m_axi_rresp")?,
            rlast: i("m_axi_rlast")?,
            rvalid: i("m_axi_rvalid")?,
            rready: o("m_axi_rready")?,
        };
        Ok(TopPorts {
            rst_n: i("rst_n")?,
            irq: o("irq")?,
            axil,
            axi,
        })
    }
}
