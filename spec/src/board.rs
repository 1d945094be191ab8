//! Where the accelerator sits on each real board: the PS ports, addresses, clock and interrupt
//! that the Vivado block design assigns (`caq hdl vivado`), that the device-tree overlay declares,
//! and that the driver finds through UIO. Written once here so the three cannot drift.
//!
//! Sources: Zynq-7000 TRM (UG585) §7.2.3 (IRQ_F2P[0] is interrupt ID 61, SPI 29) and §4.1 (the GP0
//! window at 0x4000_0000, where Vivado's address editor puts the first slave at 0x43C0_0000);
//! Zynq UltraScale+ TRM (UG1085) Table 13-1 (pl_ps_irq0[0] is interrupt ID 121, SPI 89) and
//! §10 (M_AXI_HPM0_FPD at 0xA000_0000). Not checked on a board.

use crate::Board;

/// The accelerator's place on one board.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoardMap {
    pub board: Board,
    /// Base of the AXI4-Lite register window in the PS address map.
    pub ctrl_base: u64,
    /// Size of the window the block design assigns (the RTL decodes 12 address bits: 4 KiB).
    pub ctrl_size: u64,
    /// The PS master port the register block hangs on.
    pub ctrl_port: &'static str,
    /// The PS slave port the accelerator's AXI4 master reads and writes DDR through.
    pub dma_port: &'static str,
    /// An I/O-coherent slave port the DMA master may use instead (ZynqMP HPC), if any.
    pub dma_port_coherent: Option<&'static str>,
    /// The PL-to-PS interrupt input the accelerator's `irq` drives.
    pub irq_pin: &'static str,
    /// That input's GIC shared peripheral interrupt number (the device tree's `<0 N 4>`).
    pub gic_spi: u32,
    /// The PS fabric clock that clocks the accelerator (set to the config's `clock_mhz`).
    pub fclk: &'static str,
    /// The DDR the PS maps at address 0 (the HP port's view): its size in bytes.
    pub ddr_size: u64,
}

/// The map of `board`, or None for simulation.
pub const fn board_map(board: Board) -> Option<BoardMap> {
    match board {
        Board::PynqZ2 => Some(BoardMap {
            board,
            ctrl_base: 0x43C0_0000,
            ctrl_size: 0x1000,
            ctrl_port: "M_AXI_GP0",
            dma_port: "S_AXI_HP0",
            dma_port_coherent: None,
            irq_pin: "IRQ_F2P[0]",
            gic_spi: 29,
            fclk: "FCLK_CLK0",
            ddr_size: 512 << 20,
        }),
        Board::Zcu104 => Some(BoardMap {
            board,
            ctrl_base: 0xA000_0000,
            ctrl_size: 0x1000,
            ctrl_port: "M_AXI_HPM0_FPD",
            dma_port: "S_AXI_HP0_FPD",
            dma_port_coherent: Some("S_AXI_HPC0_FPD"),
            irq_pin: "pl_ps_irq0[0]",
            gic_spi: 89,
            fclk: "pl_clk0",
            ddr_size: 2 << 30,
        }),
        Board::Sim => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_real_board_has_a_map_that_covers_the_register_window() {
        for b in [Board::PynqZ2, Board::Zcu104] {
            let m = board_map(b).unwrap();
            assert_eq!(m.board, b);
            // The register block decodes 12 address bits.
            assert!(m.ctrl_size >= 1 << 12);
            assert_eq!(m.ctrl_base % m.ctrl_size, 0, "window aligned to its size");
            assert!(m.gic_spi >= 29 && m.gic_spi < 128);
        }
        assert!(board_map(Board::Sim).is_none());
    }
}
