//! The device-tree overlay (`.dtso`) that makes the accelerator visible to Linux on a real board:
//! the register window and interrupt as a `generic-uio` device, and a u-dma-buf region for the
//! model and its buffers. Addresses and the interrupt come from `caq_spec::board_map`, the DMA
//! mask from the config's AXI address width, `dma-coherent` from its `axi.coherence` (so the
//! region is marked coherent exactly when the bitstream of that config drives snooped AxCACHE and
//! AxPROT); nothing is typed twice.
//!
//! This module knows the device-tree bindings of `uio_pdrv_genirq` and u-dma-buf; it does not
//! know how big a model is (the caller passes the u-dma-buf size, see [`udmabuf_bytes_for`]) nor
//! the names the driver looks for (the caller passes them; `caq hdl overlay` uses the driver's
//! defaults).
//!
//! Sources: kernel `drivers/uio/uio_pdrv_genirq.c` (`of_id`, `linux,uio-name`, the node name
//! without unit address as the default name) and `Documentation/driver-api/uio-howto.rst`;
//! ikwzm/udmabuf `Readme.md` and `u-dma-buf.c` (`device-name`, `size`, `sync-mode`, `dma-mask`
//! read as a bit count 12..=64, `dma-coherent`); PYNQ's `pynq_uio_zynq.dtsi` /
//! `pynq_uio_zynqmp.dtsi` for the interrupt cells. Checked here with `dtc`; never booted.

use caq_spec::{AccelConfig, AxiAttrs, Board, BoardMap, ConfigHash, board_map};

use crate::{HdlError, Result};

/// The smallest u-dma-buf region an overlay declares.
pub const MIN_UDMABUF_BYTES: u64 = 1 << 20;

/// Room left beside the largest model for the buffers an application `allocate`s (inputs and
/// outputs of a batch): the driver carves both out of the one region.
pub const UDMABUF_HEADROOM_BYTES: u64 = 1 << 20;

/// The size of the committed overlays (`devicetree/*.dtso`) and of `caq hdl overlay` without
/// `--bundle` or `--udmabuf-size`: 16 MiB, well above the shipped demo and bench models (each
/// under 1 MiB of device memory) and far inside PYNQ's default 128 MiB CMA pool.
pub const DEFAULT_UDMABUF_BYTES: u64 = 16 << 20;

/// The u-dma-buf size for a largest model of `model_bytes` of device memory: the model plus
/// [`UDMABUF_HEADROOM_BYTES`], rounded up to a power of two, at least [`MIN_UDMABUF_BYTES`].
pub fn udmabuf_bytes_for(model_bytes: u64) -> u64 {
    model_bytes
        .saturating_add(UDMABUF_HEADROOM_BYTES)
        .checked_next_power_of_two()
        .unwrap_or(u64::MAX)
        .max(MIN_UDMABUF_BYTES)
}

/// What an overlay declares beyond the board's fixed map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlayOptions {
    /// The UIO device name the driver opens (`caq_host::accel::DEFAULT_UIO_NAME`).
    pub uio_name: String,
    /// The u-dma-buf device name the driver opens (`caq_host::accel::DEFAULT_UDMABUF`).
    pub udmabuf_name: String,
    /// Bytes of the u-dma-buf region: a power of two, at least [`MIN_UDMABUF_BYTES`].
    pub udmabuf_bytes: u64,
}

/// The overlay source for `cfg`'s board. Fails for `sim` (no board), for a size that is not a
/// power of two of at least 1 MiB or larger than half the board's DDR (the CMA pool must hold it
/// beside the OS), for `axi.coherence = "io"` on a board without a coherent port (which a valid
/// config cannot have), and for a name that is not a plain device name.
pub fn overlay(cfg: &AccelConfig, opts: &OverlayOptions) -> Result<String> {
    let unsupported = |what: String| HdlError::Unsupported {
        config: cfg.name.clone(),
        what,
    };
    let map = board_map(cfg.board).ok_or_else(|| {
        unsupported(format!(
            "board '{}' has no device tree; overlays exist for pynq-z2 and zcu104",
            cfg.board.as_str()
        ))
    })?;
    for (field, name) in [
        ("uio name", &opts.uio_name),
        ("u-dma-buf name", &opts.udmabuf_name),
    ] {
        let plain = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !plain {
            return Err(unsupported(format!(
                "{field} '{name}' must be non-empty ASCII letters, digits, '-' or '_'"
            )));
        }
    }
    let size = opts.udmabuf_bytes;
    if size < MIN_UDMABUF_BYTES || !size.is_power_of_two() {
        return Err(unsupported(format!(
            "u-dma-buf size {size} bytes must be a power of two of at least {MIN_UDMABUF_BYTES}"
        )));
    }
    if size > map.ddr_size / 2 {
        return Err(unsupported(format!(
            "u-dma-buf size {size} bytes exceeds half of the {} bytes of {} DDR",
            map.ddr_size,
            cfg.board.as_str()
        )));
    }
    if cfg.axi.coherence.dma_coherent() && map.dma_port_coherent.is_none() {
        return Err(unsupported(format!(
            "axi.coherence = \"{}\" but board '{}' has no I/O-coherent DMA port",
            cfg.axi.coherence.as_str(),
            cfg.board.as_str()
        )));
    }
    Ok(render(cfg, &map, opts))
}

/// Per-chip facts of the base device tree the overlay applies to.
struct Chip {
    /// `#address-cells` = `#size-cells` of the `amba` bus.
    cells: u32,
    /// Label of the GIC in the base tree.
    gic: &'static str,
    name: &'static str,
}

fn chip(board: Board) -> Chip {
    match board {
        Board::Zcu104 => Chip {
            cells: 2,
            gic: "gic",
            name: "Zynq UltraScale+ (ZynqMP)",
        },
        Board::PynqZ2 | Board::Sim => Chip {
            cells: 1,
            gic: "intc",
            name: "Zynq-7000",
        },
    }
}

/// `n` as `cells` 32-bit cells, most significant first.
fn cells(n: u64, cells: u32) -> String {
    (0..cells)
        .rev()
        .map(|i| format!("0x{:x}", (n >> (32 * i)) & 0xffff_ffff))
        .collect::<Vec<_>>()
        .join(" ")
}

fn render(cfg: &AccelConfig, map: &BoardMap, opts: &OverlayOptions) -> String {
    let chip = chip(cfg.board);
    let hash = ConfigHash::of(cfg);
    let board = cfg.board.as_str();
    let mut s = String::new();
    let mut l = |line: &str| {
        s.push_str(line);
        s.push('\n');
    };
    l(&format!(
        "// caq device-tree overlay for {board} ({}), config '{}' (hash {hash}).",
        chip.name, cfg.name
    ));
    l("// Generated by `caq hdl overlay`; do not edit. Compile with:");
    l("//   dtc -@ -I dts -O dtb -o caq.dtbo caq.dtso");
    l("// Apply after the bitstream is loaded (docs/deploy.md).");
    l("/dts-v1/;");
    l("/plugin/;");
    l("");
    l(
        "// Both nodes go under `amba`, the label of the SoC bus in the Zynq-7000 and ZynqMP trees of",
    );
    l("// mainline Linux, Xilinx/PetaLinux and PYNQ images (built with symbols, `dtc -@`). The");
    l(
        "// ZynqMP `fpga_full` node is the alternative, but Xilinx's trees give it a `firmware-name`",
    );
    l(
        "// flow that loads the bitstream from the overlay; caq loads the bitstream first (fpga_manager",
    );
    l(
        "// or the PYNQ image) and only then declares the device, so the plain bus works on both chips.",
    );
    l("&amba {");
    let c = chip.cells;
    l(&format!(
        "\t// The bus's own cell counts ({c} on {}), restated so dtc checks `reg` against them.",
        chip.name
    ));
    l(&format!("\t#address-cells = <{c}>;"));
    l(&format!("\t#size-cells = <{c}>;"));
    l("");
    l(&format!(
        "\t// The AXI4-Lite register window on {} and the accelerator's irq on {}.",
        map.ctrl_port, map.irq_pin
    ));
    l(&format!("\t{}@{:x} {{", opts.uio_name, map.ctrl_base));
    l("\t\t// uio_pdrv_genirq binds only the compatible named by its `of_id` parameter: boot with");
    l("\t\t// `uio_pdrv_genirq.of_id=generic-uio` (built in; PYNQ images do) or load it with");
    l("\t\t// `modprobe uio_pdrv_genirq of_id=generic-uio`. Without it no /dev/uioN appears.");
    l("\t\tcompatible = \"generic-uio\";");
    l(&format!(
        "\t\treg = <{} {}>;",
        cells(map.ctrl_base, c),
        cells(map.ctrl_size, c)
    ));
    l(&format!("\t\tinterrupt-parent = <&{}>;", chip.gic));
    l(&format!(
        "\t\t// <0 {spi} 4>: a shared peripheral interrupt (0), SPI {spi} = GIC ID {id} ({pin}),",
        spi = map.gic_spi,
        id = map.gic_spi + 32,
        pin = map.irq_pin
    ));
    l("\t\t// level high (4): the accelerator holds irq high until the driver acknowledges");
    l("\t\t// IRQ_STATUS, and uio_pdrv_genirq masks the line on each interrupt until the driver");
    l("\t\t// re-enables it after that acknowledgement, so no completion is lost or doubled.");
    l(&format!("\t\tinterrupts = <0 {} 4>;", map.gic_spi));
    l("\t\t// The name the driver opens (/sys/class/uio/uioN/name). Kernels older than the 2019");
    l("\t\t// change that added it use the node name without unit address, which is the same.");
    l(&format!("\t\tlinux,uio-name = \"{}\";", opts.uio_name));
    l("\t};");
    l("");
    l(&format!(
        "\t// The DMA region the driver opens as /dev/{0} and /sys/class/u-dma-buf/{0}: the",
        opts.udmabuf_name
    ));
    l(&format!(
        "\t// model and every buffer, {} MiB from the kernel's CMA pool (sized from the largest",
        opts.udmabuf_bytes >> 20
    ));
    l("\t// model, `caq hdl overlay --bundle`; raise `cma=` if it does not fit).");
    l(&format!("\t{} {{", opts.udmabuf_name));
    l("\t\tcompatible = \"ikwzm,u-dma-buf\";");
    l(&format!("\t\tdevice-name = \"{}\";", opts.udmabuf_name));
    l("\t\t// One cell, as in the u-dma-buf README (the size is at most half the DDR).");
    l(&format!("\t\tsize = <0x{:x}>;", opts.udmabuf_bytes));
    l(&format!(
        "\t\t// The accelerator's AXI master drives {} address bits (config axi.addr_width): the",
        cfg.axi.addr_width
    ));
    l("\t\t// region must lie below that.");
    l(&format!("\t\tdma-mask = <{}>;", cfg.axi.addr_width));
    l("\t\t// An O_SYNC open maps the region uncached (the Zynq-7000 default of the driver).");
    l("\t\tsync-mode = <1>;");
    let attrs = cfg.axi.coherence.axi_attrs();
    let coherence = cfg.axi.coherence.as_str();
    let port = match map.dma_port_coherent {
        Some(p) if cfg.axi.coherence.dma_coherent() => p,
        _ => map.dma_port,
    };
    l(&format!(
        "\t\t// axi.coherence = \"{coherence}\": the DMA master is on {port} and drives ARCACHE {},",
        AxiAttrs::verilog(attrs.arcache, 4)
    ));
    l(&format!(
        "\t\t// AWCACHE {}, AxPROT {}, {}",
        AxiAttrs::verilog(attrs.awcache, 4),
        AxiAttrs::verilog(attrs.prot, 3),
        if attrs.snooped() {
            "so the CCI snoops the CPU caches and the kernel's syncs"
        } else {
            "which the port does not snoop: no dma-coherent, the"
        }
    ));
    if attrs.snooped() {
        l("\t\t// are no-ops. Also needed, from the boot firmware: snoops enabled on the CCI port");
        l(
            "\t\t// (Snoop_Control_Register_S3) and inner-shareable broadcast; not checked on a board",
        );
        l("\t\t// (docs/deploy.md).");
        l("\t\tdma-coherent;");
    } else {
        l("\t\t// driver syncs (or maps uncached) around every job.");
    }
    l("\t};");
    l("};");
    s
}

/// The overlay's file name in `devicetree/`: the config's name (`zcu104-hpc.dtso` for the
/// coherent variant of the ZCU104).
pub fn file_name(cfg: &AccelConfig) -> String {
    format!("{}.dtso", cfg.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(bytes: u64) -> OverlayOptions {
        OverlayOptions {
            uio_name: "caq".into(),
            udmabuf_name: "udmabuf-caq".into(),
            udmabuf_bytes: bytes,
        }
    }

    fn config(board: &str) -> AccelConfig {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        AccelConfig::load(dir.join(format!("{board}.toml"))).unwrap()
    }

    #[test]
    fn udmabuf_size_is_a_power_of_two_with_headroom_and_a_floor() {
        assert_eq!(udmabuf_bytes_for(0), MIN_UDMABUF_BYTES);
        assert_eq!(udmabuf_bytes_for(100_000), 2 << 20);
        assert_eq!(udmabuf_bytes_for(3 << 20), 4 << 20);
        assert_eq!(udmabuf_bytes_for((3 << 20) + 1), 8 << 20);
    }

    #[test]
    fn zynq7000_uses_one_cell_and_intc_zynqmp_two_cells_and_gic() {
        let z7 = overlay(&config("pynq-z2"), &opts(DEFAULT_UDMABUF_BYTES)).unwrap();
        assert!(z7.contains("caq@43c00000 {"));
        assert!(z7.contains("reg = <0x43c00000 0x1000>;"));
        assert!(z7.contains("interrupt-parent = <&intc>;"));
        assert!(z7.contains("interrupts = <0 29 4>;"));
        assert!(z7.contains("dma-mask = <32>;"));
        assert!(!z7.contains("dma-coherent;"));
        let mp = overlay(&config("zcu104"), &opts(DEFAULT_UDMABUF_BYTES)).unwrap();
        assert!(mp.contains("reg = <0x0 0xa0000000 0x0 0x1000>;"));
        assert!(mp.contains("interrupt-parent = <&gic>;"));
        assert!(mp.contains("interrupts = <0 89 4>;"));
        assert!(mp.contains("dma-mask = <40>;"));
        assert!(!mp.contains("dma-coherent;"));
        assert!(
            mp.contains("drives ARCACHE 4'b0011,\n\t\t// AWCACHE 4'b0011, AxPROT 3'b000, which")
        );
        let hpc = overlay(&config("zcu104-hpc"), &opts(DEFAULT_UDMABUF_BYTES)).unwrap();
        assert!(hpc.contains("dma-coherent;"));
        assert!(hpc.contains("on S_AXI_HPC0_FPD and drives ARCACHE 4'b1111,\n\t\t// AWCACHE 4'b1111, AxPROT 3'b010, so"));
        assert_eq!(file_name(&config("zcu104-hpc")), "zcu104-hpc.dtso");
    }

    #[test]
    fn bad_requests_are_errors_that_say_what_was_wrong() {
        let err = |cfg: &str, o: OverlayOptions| overlay(&config(cfg), &o).unwrap_err().to_string();
        assert!(err("sim-small", opts(1 << 20)).contains("no device tree"));
        assert!(err("pynq-z2", opts(3 << 20)).contains("power of two"));
        assert!(err("pynq-z2", opts(1 << 19)).contains("power of two"));
        assert!(err("pynq-z2", opts(512 << 20)).contains("half of the"));
        // An unvalidated config with io coherence on a board without a coherent port.
        let mut io = config("pynq-z2");
        io.axi.coherence = caq_spec::Coherence::Io;
        let msg = overlay(&io, &opts(1 << 20)).unwrap_err().to_string();
        assert!(msg.contains("no I/O-coherent"), "{msg}");
        let mut bad = opts(1 << 20);
        bad.uio_name = "caq\"; evil".into();
        assert!(err("pynq-z2", bad).contains("uio name"));
    }
}
