//! The Vivado flow of a real board: a batch-mode, non-project Tcl script (`build.tcl`) that puts
//! the generated RTL into a block design with the board's Zynq PS and builds a bitstream, and the
//! board's XDC constraints.
//!
//! Every value that comes from the [`AccelConfig`] or from [`caq_spec::board_map`] is written once,
//! into the header block of variables at the top of the script, and only referred to below it;
//! `hdl/tests/vivado.rs` reads that header back and compares it with the config. What this module
//! knows itself is Vivado's vocabulary: IP names, PS configuration properties and pin names.
//!
//! Written against Vivado 2023.2 Tcl commands; no Vivado runs here, so the script is checked for
//! consistency with the config and the RTL, never executed.

use std::path::Path;

use caq_spec::{AccelConfig, AxiAttrs, Board, BoardMap, Coherence, board_map};

use crate::design::{Design, write_atomic, write_dir};
use crate::error::{HdlError, Result};

/// The script's file name in the output directory.
pub const SCRIPT: &str = "build.tcl";
/// The constraints' file name in the output directory.
pub const XDC: &str = "constraints.xdc";
/// The directory, next to the script, that holds the Design's Verilog files.
pub const RTL_DIR: &str = "rtl";
/// The how-to-run note written next to the script.
pub const README: &str = "README";
/// The block design's name (the wrapper is `<name>_wrapper`).
pub const BD_NAME: &str = "caq_bd";
/// The Vivado release whose Tcl commands and IP properties the script was written against.
pub const VIVADO_VERSION: &str = "2023.2";

/// Everything the Vivado flow of one config needs besides the RTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VivadoFlow {
    pub board: Board,
    /// `build.tcl`.
    pub script: String,
    /// `constraints.xdc` (the same text as the committed `constraints/<board>.xdc`).
    pub constraints: String,
    /// A short note on how to run the script.
    pub readme: String,
}

impl VivadoFlow {
    /// Writes `dir/build.tcl`, `dir/constraints.xdc`, `dir/README` and the Design's files into
    /// `dir/rtl/`, as one directory swapped in whole (a failure leaves the old `dir` intact).
    /// `design` must be the one the flow was generated from.
    pub fn write(&self, design: &Design, dir: &Path) -> Result<()> {
        write_dir(dir, SCRIPT, |tmp| {
            let rtl = tmp.join(RTL_DIR);
            std::fs::create_dir_all(&rtl).map_err(|source| HdlError::Io {
                path: rtl.clone(),
                source,
            })?;
            for f in &design.files {
                write_atomic(&rtl.join(&f.name), f.text.as_bytes())?;
            }
            write_atomic(&tmp.join(XDC), self.constraints.as_bytes())?;
            write_atomic(&tmp.join(README), self.readme.as_bytes())?;
            write_atomic(&tmp.join(SCRIPT), self.script.as_bytes())
        })
    }
}

/// What the script needs to know about one board's PS beyond its [`BoardMap`]: Vivado names.
struct Ps {
    /// `board_part` of the board files (installed with Vivado or from the vendor's board store).
    board_part: &'static str,
    /// IP name (no version: the installed Vivado picks its own).
    vlnv: &'static str,
    /// The block automation rule that applies the board preset (DDR, MIO, clocks).
    automation: &'static str,
    automation_config: &'static str,
    /// The PS pins beside the ports of the BoardMap.
    fclk_resetn: &'static str,
    ctrl_aclk: &'static str,
    dma_aclk: &'static str,
    /// The PS property that reports the fabric clock the PLLs really produce.
    fclk_actual_prop: &'static str,
    /// The port names the PS configuration below was written for (checked against the BoardMap).
    ctrl_port: &'static str,
    dma_port: &'static str,
    irq_pin: &'static str,
    fclk: &'static str,
    /// Data widths the HP port can be configured to.
    hp_widths: &'static [u32],
}

const PS7: Ps = Ps {
    board_part: "tul.com.tw:pynq-z2:part0:1.0",
    vlnv: "xilinx.com:ip:processing_system7",
    automation: "xilinx.com:bd_rule:processing_system7",
    automation_config: "make_external \"FIXED_IO, DDR\" apply_board_preset \"1\" Master \"Disable\" Slave \"Disable\"",
    fclk_resetn: "FCLK_RESET0_N",
    ctrl_aclk: "M_AXI_GP0_ACLK",
    dma_aclk: "S_AXI_HP0_ACLK",
    fclk_actual_prop: "CONFIG.PCW_ACT_FPGA0_PERIPHERAL_FREQMHZ",
    ctrl_port: "M_AXI_GP0",
    dma_port: "S_AXI_HP0",
    irq_pin: "IRQ_F2P[0]",
    fclk: "FCLK_CLK0",
    // UG585 §5.4: the HP ports are 32 or 64 bits wide on the PL side.
    hp_widths: &[32, 64],
};

const PSU: Ps = Ps {
    board_part: "xilinx.com:zcu104:part0:1.1",
    vlnv: "xilinx.com:ip:zynq_ultra_ps_e",
    automation: "xilinx.com:bd_rule:zynq_ultra_ps_e",
    automation_config: "apply_board_preset \"1\"",
    fclk_resetn: "pl_resetn0",
    ctrl_aclk: "maxihpm0_fpd_aclk",
    dma_aclk: "saxihp0_fpd_aclk",
    fclk_actual_prop: "CONFIG.PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ",
    ctrl_port: "M_AXI_HPM0_FPD",
    dma_port: "S_AXI_HP0_FPD",
    irq_pin: "pl_ps_irq0[0]",
    fclk: "pl_clk0",
    // UG1085 §35: the PL-side slave ports are 32, 64 or 128 bits wide.
    hp_widths: &[32, 64, 128],
};

fn unsupported(cfg: &AccelConfig, what: String) -> HdlError {
    HdlError::Unsupported {
        config: cfg.name.clone(),
        what,
    }
}

/// The board's map and PS description, or an error naming the board field.
fn board(cfg: &AccelConfig) -> Result<(BoardMap, &'static Ps)> {
    let ps = match cfg.board {
        Board::PynqZ2 => &PS7,
        Board::Zcu104 => &PSU,
        Board::Sim => {
            return Err(unsupported(
                cfg,
                format!(
                    "board = \"{}\" has no Vivado flow; set `board` to \"pynq-z2\" or \"zcu104\"",
                    cfg.board.as_str()
                ),
            ));
        }
    };
    let map = board_map(cfg.board).ok_or_else(|| {
        unsupported(
            cfg,
            format!(
                "board = \"{}\" has no caq_spec::board_map entry",
                cfg.board.as_str()
            ),
        )
    })?;
    // The PS properties below are written for these ports; a BoardMap that moved the accelerator
    // elsewhere needs new properties, not a silently wrong script.
    let expected = [
        ("ctrl_port", map.ctrl_port, ps.ctrl_port),
        ("dma_port", map.dma_port, ps.dma_port),
        ("irq_pin", map.irq_pin, ps.irq_pin),
        ("fclk", map.fclk, ps.fclk),
    ];
    for (field, got, want) in expected {
        if got != want {
            return Err(unsupported(
                cfg,
                format!(
                    "BoardMap.{field} of board \"{}\" is {got}; the Vivado flow knows only {want}",
                    cfg.board.as_str()
                ),
            ));
        }
    }
    if !ps.hp_widths.contains(&cfg.axi.data_width) {
        return Err(unsupported(
            cfg,
            format!(
                "axi.data_width = {} cannot be set on {} of board \"{}\" (allowed: {:?})",
                cfg.axi.data_width,
                map.dma_port,
                cfg.board.as_str(),
                ps.hp_widths
            ),
        ));
    }
    Ok((map, ps))
}

/// The Vivado flow of `cfg`, whose RTL is `design` (from [`crate::generate`] of the same config).
pub fn vivado(cfg: &AccelConfig, design: &Design) -> Result<VivadoFlow> {
    let (map, ps) = board(cfg)?;
    let script = script(cfg, design, &map, ps);
    let constraints = constraints(cfg.board)?;
    let readme = format!(
        "caq accelerator '{name}' (config hash {hash}) for board {board}: Vivado flow.\n\
         Run from this directory: vivado -mode batch -source {SCRIPT}\n\
         It reads {RTL_DIR}/*.v and {XDC}, and writes build/ (checkpoints, caq_{board}.bit, \
         caq_{board}.hwh) and reports/.\n\
         Written against Vivado {VIVADO_VERSION} Tcl commands; not run by caq.\n",
        name = cfg.name,
        hash = design.config_hash,
        board = cfg.board.as_str(),
    );
    Ok(VivadoFlow {
        board: cfg.board,
        script,
        constraints,
        readme,
    })
}

/// The bus name of a PS pin written `NAME[bit]` in the BoardMap (block-design pins are buses).
fn bus_name(pin: &str) -> &str {
    pin.split('[').next().unwrap_or(pin)
}

fn script(cfg: &AccelConfig, design: &Design, map: &BoardMap, ps: &Ps) -> String {
    let board = cfg.board.as_str();
    let rtl: Vec<String> = design
        .files
        .iter()
        .map(|f| format!("{RTL_DIR}/{}", f.name))
        .collect();
    // (variable, value, where the value comes from)
    let mut vars: Vec<(&str, String, String)> = vec![
        ("CAQ_CONFIG", tcl_word(&cfg.name), "config: name".into()),
        (
            "CAQ_CONFIG_HASH",
            design.config_hash.to_string(),
            "config: its ConfigHash (also in the RTL's CAPS registers)".into(),
        ),
        ("CAQ_BOARD", tcl_word(board), "config: board".into()),
        ("CAQ_PART", tcl_word(&cfg.part), "config: part".into()),
        (
            "CAQ_BOARD_PART",
            tcl_word(ps.board_part),
            "the board files of config: board (install them if Vivado lacks them)".into(),
        ),
        (
            "CAQ_CLOCK_MHZ",
            format!("{:?}", cfg.clock_mhz),
            "config: clock_mhz (the PS fabric clock is set to it)".into(),
        ),
        (
            "CAQ_AXI_DATA_WIDTH",
            cfg.axi.data_width.to_string(),
            "config: axi.data_width (m_axi data bits; the HP port is set to it)".into(),
        ),
        (
            "CAQ_AXI_ADDR_WIDTH",
            cfg.axi.addr_width.to_string(),
            "config: axi.addr_width (m_axi address bits)".into(),
        ),
        (
            "CAQ_AXI_ID_WIDTH",
            cfg.axi.id_width.to_string(),
            "config: axi.id_width (m_axi ID bits)".into(),
        ),
        (
            "CAQ_CTRL_BASE",
            format!("0x{:08X}", map.ctrl_base),
            "BoardMap.ctrl_base (register window base in the PS address map)".into(),
        ),
        (
            "CAQ_CTRL_SIZE",
            format!("0x{:X}", map.ctrl_size),
            "BoardMap.ctrl_size (register window size)".into(),
        ),
        (
            "CAQ_CTRL_PORT",
            map.ctrl_port.into(),
            "BoardMap.ctrl_port (PS master for s_axil)".into(),
        ),
        (
            "CAQ_CTRL_ACLK",
            ps.ctrl_aclk.into(),
            "the PS IP's clock pin of BoardMap.ctrl_port".into(),
        ),
        (
            "CAQ_DMA_PORT",
            map.dma_port.into(),
            "BoardMap.dma_port (PS slave for m_axi)".into(),
        ),
        (
            "CAQ_DMA_ACLK",
            ps.dma_aclk.into(),
            "the PS IP's clock pin of BoardMap.dma_port".into(),
        ),
    ];
    if let Some(port) = map.dma_port_coherent {
        vars.push((
            "CAQ_DMA_PORT_COHERENT",
            port.into(),
            "BoardMap.dma_port_coherent (the I/O-coherent alternative for m_axi)".into(),
        ));
        vars.push((
            "CAQ_DMA_COHERENT",
            u8::from(cfg.axi.coherence == Coherence::Io).to_string(),
            format!(
                "config: axi.coherence = {} (1 puts m_axi on CAQ_DMA_PORT_COHERENT instead of \
                 CAQ_DMA_PORT)",
                cfg.axi.coherence.as_str()
            ),
        ));
    }
    let attrs = cfg.axi.coherence.axi_attrs();
    vars.extend([
        (
            "CAQ_DMA_RTL",
            tcl_word(&format!("{RTL_DIR}/{}.v", crate::dma::MODULE)),
            "Design: the DMA engine's file, whose AxCACHE/AxPROT are checked below".into(),
        ),
        (
            "CAQ_DMA_ARCACHE",
            AxiAttrs::verilog(attrs.arcache, 4),
            format!(
                "config: axi.coherence = {} -> ARCACHE (caq_spec::Coherence::axi_attrs)",
                cfg.axi.coherence.as_str()
            ),
        ),
        (
            "CAQ_DMA_AWCACHE",
            AxiAttrs::verilog(attrs.awcache, 4),
            "config: axi.coherence -> AWCACHE".into(),
        ),
        (
            "CAQ_DMA_AXPROT",
            AxiAttrs::verilog(attrs.prot, 3),
            "config: axi.coherence -> ARPROT and AWPROT".into(),
        ),
    ]);
    vars.extend([
        (
            "CAQ_IRQ_PIN",
            bus_name(map.irq_pin).into(),
            format!("BoardMap.irq_pin {} (bit 0 of this PS bus)", map.irq_pin),
        ),
        (
            "CAQ_FCLK",
            map.fclk.into(),
            "BoardMap.fclk (the PS fabric clock of the accelerator)".into(),
        ),
        (
            "CAQ_FCLK_RESETN",
            ps.fclk_resetn.into(),
            "the PS reset output paired with BoardMap.fclk".into(),
        ),
        (
            "CAQ_TOP",
            tcl_word(&design.top),
            "Design.top (added as a module reference)".into(),
        ),
        (
            "CAQ_RTL_FILES",
            format!("{{{}}}", rtl.join(" ")),
            "Design.files, relative to this script".into(),
        ),
        (
            "CAQ_XDC",
            tcl_word(XDC),
            "constraints/<board>.xdc, copied next to this script".into(),
        ),
    ]);

    let mut s = format!(
        "# Vivado build of the caq accelerator, config '{name}' (hash {hash}), board {board}.\n\
         # Generated by `caq hdl vivado` (caq-hdl, hdl/src/vivado.rs) -- do not edit; regenerate.\n\
         # Run next to {RTL_DIR}/ and {XDC}: vivado -mode batch -source {SCRIPT}\n\
         # Written against Vivado {VIVADO_VERSION} Tcl commands (non-project, batch); not run by caq.\n\
         \n\
         # ---- Header: every value derived from the config or caq_spec::board_map ----------\n\
         # (hdl/tests/vivado.rs reads this block back and compares it with both.)\n",
        name = cfg.name,
        hash = design.config_hash,
    );
    for (name, value, source) in &vars {
        s.push_str(&format!("# {source}\nset {name} {value}\n"));
    }
    s.push_str(HEADER_END);
    s.push_str(BODY_START);
    s.push_str(match cfg.board {
        Board::PynqZ2 => PS7_BODY,
        _ => PSU_BODY,
    });
    s.push_str(BODY_END);
    s.replace("@VLNV@", ps.vlnv)
        .replace("@RULE@", ps.automation)
        .replace("@RULE_CONFIG@", ps.automation_config)
        .replace("@ACT_FREQ@", ps.fclk_actual_prop)
        .replace("@BD@", BD_NAME)
}

/// A Tcl word that stands for itself: braced unless it is plain.
fn tcl_word(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c))
    {
        text.to_owned()
    } else {
        format!("{{{}}}", text.replace(['{', '}', '\\'], ""))
    }
}

/// The line that closes the header block (the tests split the script there).
pub const HEADER_END: &str =
    "# ---- End of header ------------------------------------------------------------\n\n";

const BODY_START: &str = r#"set script_dir [file dirname [file normalize [info script]]]
set build_dir [file join $script_dir build]
set rpt_dir [file join $script_dir reports]
file mkdir $build_dir $rpt_dir

# ---- Sources: the generated RTL and the board's constraints --------------------------------
create_project -in_memory -part $CAQ_PART
if {[catch {set_property board_part $CAQ_BOARD_PART [current_project]} err]} {
    error "caq: board files $CAQ_BOARD_PART are not installed ($err); install them (Vivado board store) and rerun"
}
set_property target_language Verilog [current_project]
foreach f $CAQ_RTL_FILES {
    set path [file join $script_dir $f]
    if {![file exists $path]} {
        error "caq: $path is missing; run `caq hdl vivado --config <config> --out <dir>` and run this script from <dir>"
    }
    read_verilog $path
}
read_xdc [file join $script_dir $CAQ_XDC]
update_compile_order -fileset sources_1

# ---- Block design: PS, accelerator, interconnect, reset --------------------------------------
create_bd_design -dir [file join $build_dir bd] @BD@
set ps [create_bd_cell -type ip -vlnv @VLNV@ ps]
# The board preset configures DDR, MIO and the PS clocks; the ports the accelerator uses follow.
apply_bd_automation -rule @RULE@ -config {@RULE_CONFIG@} $ps
"#;

const PS7_BODY: &str = r#"# UG585: M_AXI_GP0 is fixed at 32 bits and reaches the PL at 0x4000_0000; S_AXI_HP0 is AXI3
# (the SmartConnect below converts caq's AXI4 bursts); IRQ_F2P[0] is the first PL interrupt.
set_property -dict [list \
    CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ $CAQ_CLOCK_MHZ \
    CONFIG.PCW_USE_M_AXI_GP0 1 \
    CONFIG.PCW_USE_S_AXI_HP0 1 \
    CONFIG.PCW_S_AXI_HP0_DATA_WIDTH $CAQ_AXI_DATA_WIDTH \
    CONFIG.PCW_USE_FABRIC_INTERRUPT 1 \
    CONFIG.PCW_IRQ_F2P_INTR 1 \
] $ps
set dma_port $CAQ_DMA_PORT
set dma_aclk $CAQ_DMA_ACLK
"#;

const PSU_BODY: &str = r#"# UG1085: M_AXI_HPM0_FPD (PSU__USE__M_AXI_GP0) at 32 bits for the register window, nothing on
# HPM1_FPD or HPM0_LPD; the DMA master on S_AXI_HP0_FPD (PSU__USE__S_AXI_GP2) or, for I/O
# coherence, S_AXI_HPC0_FPD (PSU__USE__S_AXI_GP0); pl_ps_irq0 (PSU__USE__IRQ0).
if {$CAQ_DMA_COHERENT} {
    set dma_port $CAQ_DMA_PORT_COHERENT
    set dma_aclk saxihpc0_fpd_aclk
    set dma_use CONFIG.PSU__USE__S_AXI_GP0
    set dma_width CONFIG.PSU__SAXIGP0__DATA_WIDTH
} else {
    set dma_port $CAQ_DMA_PORT
    set dma_aclk $CAQ_DMA_ACLK
    set dma_use CONFIG.PSU__USE__S_AXI_GP2
    set dma_width CONFIG.PSU__SAXIGP2__DATA_WIDTH
}
set_property -dict [list \
    CONFIG.PSU__FPGA_PL0_ENABLE 1 \
    CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ $CAQ_CLOCK_MHZ \
    CONFIG.PSU__USE__M_AXI_GP0 1 \
    CONFIG.PSU__MAXIGP0__DATA_WIDTH 32 \
    CONFIG.PSU__USE__M_AXI_GP1 0 \
    CONFIG.PSU__USE__M_AXI_GP2 0 \
    $dma_use 1 \
    $dma_width $CAQ_AXI_DATA_WIDTH \
    CONFIG.PSU__USE__IRQ0 1 \
] $ps
"#;

const BODY_END: &str = r#"# The DMA engine must drive the AxCACHE/AxPROT the port needs (caq_spec::Coherence): RTL
# generated from another config would send unsnooped traffic to a dma-coherent region, or the
# reverse, and the data would go stale without any error. Checked in the Verilog this script reads.
set fh [open [file join $script_dir $CAQ_DMA_RTL] r]
set dma_rtl [read $fh]
close $fh
foreach {sig want} [list m_axi_arcache $CAQ_DMA_ARCACHE m_axi_awcache $CAQ_DMA_AWCACHE \
        m_axi_arprot $CAQ_DMA_AXPROT m_axi_awprot $CAQ_DMA_AXPROT] {
    set got "(no assignment)"
    regexp "assign $sig = (\[0-9\]+'b\[01\]+);" $dma_rtl -> got
    if {$got ne $want} {
        error "caq: $CAQ_DMA_RTL drives $sig = $got; config $CAQ_CONFIG needs $want on $dma_port; regenerate the RTL and this script from one config"
    }
}

set fclk_act [get_property @ACT_FREQ@ $ps]
if {abs($fclk_act - $CAQ_CLOCK_MHZ) > 0.5} {
    puts "CRITICAL WARNING: caq: the PS makes $CAQ_FCLK $fclk_act MHz, not $CAQ_CLOCK_MHZ MHz; timing is checked at $fclk_act MHz"
}

# caq_top as a module reference: Vivado infers the AXI interfaces s_axil and m_axi from the port
# prefixes; the clock and reset are tied to them here so that validation does not guess.
set caq [create_bd_cell -type module -reference $CAQ_TOP caq]
set_property CONFIG.POLARITY ACTIVE_LOW [get_bd_pins caq/rst_n]
set_property -dict [list CONFIG.ASSOCIATED_BUSIF {s_axil:m_axi} CONFIG.ASSOCIATED_RESET {rst_n}] \
    [get_bd_pins caq/clk]

# The interface Vivado inferred must have the config's widths (the RTL was generated from it).
foreach {param want} [list ADDR_WIDTH $CAQ_AXI_ADDR_WIDTH DATA_WIDTH $CAQ_AXI_DATA_WIDTH \
        ID_WIDTH $CAQ_AXI_ID_WIDTH] {
    set got [get_property CONFIG.$param [get_bd_intf_pins caq/m_axi]]
    if {$got ne $want} {
        puts "CRITICAL WARNING: caq: m_axi has $param $got, the config says $want"
    }
}

set rst [create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset rst]
set ctrl_sc [create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect ctrl_sc]
set_property -dict [list CONFIG.NUM_SI 1 CONFIG.NUM_MI 1] $ctrl_sc
set dma_sc [create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect dma_sc]
set_property -dict [list CONFIG.NUM_SI 1 CONFIG.NUM_MI 1] $dma_sc

# One clock domain: the PS fabric clock drives the accelerator, both interconnects and both PS
# ports, so no clock crossing is built.
connect_bd_net [get_bd_pins ps/$CAQ_FCLK] \
    [get_bd_pins caq/clk] \
    [get_bd_pins ps/$CAQ_CTRL_ACLK] \
    [get_bd_pins ps/$dma_aclk] \
    [get_bd_pins ctrl_sc/aclk] \
    [get_bd_pins dma_sc/aclk] \
    [get_bd_pins rst/slowest_sync_clk]
connect_bd_net [get_bd_pins ps/$CAQ_FCLK_RESETN] [get_bd_pins rst/ext_reset_in]
# caq_top resets synchronously on rst_n low; proc_sys_reset releases it synchronously to the clock.
connect_bd_net [get_bd_pins rst/peripheral_aresetn] [get_bd_pins caq/rst_n]
connect_bd_net [get_bd_pins rst/interconnect_aresetn] \
    [get_bd_pins ctrl_sc/aresetn] [get_bd_pins dma_sc/aresetn]

connect_bd_intf_net [get_bd_intf_pins ps/$CAQ_CTRL_PORT] [get_bd_intf_pins ctrl_sc/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins ctrl_sc/M00_AXI] [get_bd_intf_pins caq/s_axil]
connect_bd_intf_net [get_bd_intf_pins caq/m_axi] [get_bd_intf_pins dma_sc/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins dma_sc/M00_AXI] [get_bd_intf_pins ps/$dma_port]
# A single source: the PS interrupt bus is one bit wide, so irq is bit 0.
connect_bd_net [get_bd_pins caq/irq] [get_bd_pins ps/$CAQ_IRQ_PIN]

# ---- Addresses -------------------------------------------------------------------------------
set ctrl_seg [get_bd_addr_segs -of_objects [get_bd_intf_pins caq/s_axil]]
assign_bd_address -offset $CAQ_CTRL_BASE -range $CAQ_CTRL_SIZE \
    -target_address_space [get_bd_addr_spaces ps/Data] $ctrl_seg -force
# The DMA master sees the DDR the HP port reaches, at the PS's own addresses.
assign_bd_address -target_address_space [get_bd_addr_spaces caq/m_axi]
assign_bd_address
set ctrl_map [get_bd_addr_segs -of_objects [get_bd_addr_spaces ps/Data] -filter {NAME =~ *caq*}]
if {[llength $ctrl_map] != 1 || [get_property OFFSET $ctrl_map] != $CAQ_CTRL_BASE} {
    error "caq: the register window is not at $CAQ_CTRL_BASE: $ctrl_map"
}

validate_bd_design
save_bd_design

# ---- Synthesis and implementation ------------------------------------------------------------
set bd_file [get_files @BD@.bd]
# Non-project mode: the IPs are synthesized with the top, not as out-of-context runs.
set_property synth_checkpoint_mode None $bd_file
generate_target all $bd_file
read_verilog [make_wrapper -files $bd_file -top]

synth_design -top @BD@_wrapper -part $CAQ_PART
write_checkpoint -force [file join $build_dir post_synth.dcp]
report_utilization -file [file join $rpt_dir utilization_synth.rpt]

opt_design
place_design
phys_opt_design
route_design
write_checkpoint -force [file join $build_dir post_route.dcp]
report_timing_summary -max_paths 10 -file [file join $rpt_dir timing_summary.rpt]
report_utilization -file [file join $rpt_dir utilization.rpt]
report_utilization -hierarchical -file [file join $rpt_dir utilization_hierarchical.rpt]
set wns [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -setup]]
if {$wns ne "" && $wns < 0} {
    puts "CRITICAL WARNING: caq: timing not met at $CAQ_CLOCK_MHZ MHz (WNS $wns ns); see reports/timing_summary.rpt"
}

# ---- Outputs: bitstream, and the handoff PYNQ and PetaLinux read ------------------------------
write_bitstream -force [file join $build_dir caq_$CAQ_BOARD.bit]
set hwh [glob -nocomplain -join [file join $build_dir bd] * hw_handoff @BD@.hwh]
if {[llength $hwh] == 1} {
    # PYNQ's Overlay wants the .hwh next to the .bit, with the same base name.
    file copy -force [lindex $hwh 0] [file join $build_dir caq_$CAQ_BOARD.hwh]
} else {
    puts "WARNING: caq: no single @BD@.hwh under build/bd (found: $hwh); copy it by hand"
}
if {[catch {write_hw_platform -fixed -include_bit -force [file join $build_dir caq_$CAQ_BOARD.xsa]} err]} {
    puts "WARNING: caq: write_hw_platform failed ($err); the .bit and .hwh are complete without it"
}
puts "caq: done: config $CAQ_CONFIG (hash $CAQ_CONFIG_HASH) -> build/caq_$CAQ_BOARD.bit, reports/"
"#;

/// The XDC of a real board (`constraints/<board>.xdc`).
pub fn constraints(board: Board) -> Result<String> {
    let (name, part_note) = match board {
        Board::PynqZ2 => (
            "pynq-z2",
            "# PYNQ-Z2: the design uses no PL pins (no LEDs, buttons or PMODs), so no PACKAGE_PIN or\n\
             # IOSTANDARD is set; DDR and MIO belong to the PS and are constrained by its IP.\n",
        ),
        Board::Zcu104 => (
            "zcu104",
            "# ZCU104: the design uses no PL pins (no LEDs, buttons, FMC or PMODs), so no PACKAGE_PIN or\n\
             # IOSTANDARD is set; DDR and MIO belong to the PS and are constrained by its IP.\n",
        ),
        Board::Sim => {
            return Err(HdlError::Unsupported {
                config: board.as_str().to_owned(),
                what: "board = \"sim\" has no constraints; only pynq-z2 and zcu104 do".to_owned(),
            });
        }
    };
    Ok(format!(
        "# Constraints of the caq accelerator on {name}. Generated by caq-hdl (hdl/src/vivado.rs);\n\
         # regenerate with `caq hdl vivado`, do not edit.\n\
         #\n\
         # Clock: the accelerator runs on the PS fabric clock (caq_spec::board_map's fclk), set to\n\
         # the config's clock_mhz in build.tcl. The PS IP's own XDC creates that clock on its\n\
         # output, so no create_clock is needed here and none is on a pin.\n\
         #\n\
         # Resets and crossings: rst_n comes from proc_sys_reset, synchronous to the same clock, and\n\
         # the PS ports and both SmartConnects share that clock, so there is no clock crossing and\n\
         # no false path or max-delay exception to declare. The PS synchronizes the interrupt input\n\
         # itself.\n\
         #\n\
         {part_note}\
         \n\
         # A compressed bitstream loads faster through fpga_manager and PYNQ.\n\
         set_property BITSTREAM.GENERAL.COMPRESS TRUE [current_design]\n"
    ))
}
