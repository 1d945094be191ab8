//! `caq_top`: the accelerator's top level: the AXI4-Lite register block, the layer engine
//! (`caq_core`) and the DMA engine (`caq_dma`) between the core's word memory ports and the AXI4
//! master port `m_axi_*` (names Vivado infers as an AXI4 interface).

use caq_spec::{AccelConfig, ConfigHash};

use crate::emit::{Dir, Expr, Interface, Module, ModuleBuilder};
use crate::error::Result;

/// The module's name (and file stem).
pub const MODULE: &str = "caq_top";

/// Ports of the register block that become ports of the top under the same name.
fn is_shared(port: &str) -> bool {
    port == "clk" || port == "rst_n" || port.starts_with("s_axil_")
}

/// Core ports that face memory (wired to the DMA engine's ports of the same name).
fn is_memory_port(port: &str) -> bool {
    port.starts_with("rd_") || port.starts_with("wr_")
}

/// Generates `caq_top` around the register block, the core and the DMA engine.
pub fn generate(
    cfg: &AccelConfig,
    hash: ConfigHash,
    regs: &Interface,
    core: &Interface,
    dma: &Interface,
) -> Result<Module> {
    let aw = cfg.axi.addr_width;
    let mut m = ModuleBuilder::new(MODULE)?;
    m.doc_line(format!(
        "{MODULE}: top level of the caq accelerator for config '{}' (hash {hash}).",
        cfg.name
    ));
    m.doc(&[
        "Ports: clk; rst_n (synchronous, active low); the AXI4-Lite slave s_axil_* of the register",
        "block (see caq_axil_regs for its timing); irq, the level completion interrupt; m_axi_*, the",
        "AXI4 master of the DMA engine (caq_dma), for a Zynq HP port.",
    ]);

    let mut regs_conns: Vec<(String, Expr)> = Vec::new();
    for p in &regs.ports {
        if is_shared(&p.name) {
            if p.name == "s_axil_awaddr" {
                m.port_group("AXI4-Lite slave (control registers)");
            }
            let sig = m.port_full(p.dir, &p.name, p.width, p.signed, None)?;
            regs_conns.push((p.name.clone(), sig.expr()));
        }
    }
    m.port_group("Completion interrupt, level");
    let irq = m.port(Dir::Output, "irq", 1)?;
    regs_conns.push(("irq_o".to_owned(), irq.expr()));
    let mut core_conns: Vec<(String, Expr)> = vec![
        ("clk".into(), Expr::raw("clk", 1)),
        ("rst_n".into(), Expr::raw("rst_n", 1)),
    ];
    let mut dma_conns: Vec<(String, Expr)> = vec![
        ("clk".into(), Expr::raw("clk", 1)),
        ("rst_n".into(), Expr::raw("rst_n", 1)),
        ("soft_reset".into(), Expr::raw("regs_soft_reset_o", 1)),
    ];
    m.port_group("AXI4 master of the DMA engine (see caq_dma)");
    for p in &dma.ports {
        if p.name.starts_with("m_axi_") {
            let sig = m.port_full(p.dir, &p.name, p.width, p.signed, None)?;
            dma_conns.push((p.name.clone(), sig.expr()));
        }
    }

    m.section("core <-> DMA engine (word protocol, see caq_core)");
    for p in &core.ports {
        if is_memory_port(&p.name) {
            let w = m.wire(&format!("mem_{}", p.name), p.width, None)?;
            core_conns.push((p.name.clone(), w.expr()));
            dma_conns.push((p.name.clone(), w.expr()));
        }
    }

    m.section("register block <-> core");
    let mut regs_wires = std::collections::BTreeMap::new();
    for p in &regs.ports {
        if !is_shared(&p.name) && p.name != "irq_o" {
            let w = m.wire(&format!("regs_{}", p.name), p.width, None)?;
            regs_conns.push((p.name.clone(), w.expr()));
            regs_wires.insert(p.name.clone(), w);
        }
    }
    m.comment(&[
        "The window in the master's address space: a bound at or above 2^addr_width saturates",
        "to 2^addr_width, which no address reaches.",
    ]);
    for (port, reg) in [
        ("win_base", "regs_win_base_o"),
        ("win_limit", "regs_win_limit_o"),
    ] {
        core_conns.push((
            port.into(),
            Expr::raw(
                if aw < 64 {
                    format!(
                        "(|{reg}[63:{aw}]) ? {{1'b1, {aw}'d0}} : {{1'b0, {reg}[{}:0]}}",
                        aw - 1
                    )
                } else {
                    format!("{{1'b0, {reg}}}")
                },
                aw + 1,
            ),
        ));
    }
    // A DESC_ADDR beyond the address space keeps its alignment bits and saturates above them,
    // so the core reports MISALIGNED or, at the fetch, OUT_OF_WINDOW; a DESC_COUNT beyond 16
    // bits saturates, so the core reports DESC_COUNT (MAX_DESCRIPTORS < 2^16).
    let blog = cfg.bus_bytes().trailing_zeros();
    let core_ctl = [
        ("start", "regs_start_o".to_string(), 1),
        ("soft_reset", "regs_soft_reset_o".to_string(), 1),
        (
            "desc_addr",
            if aw < 64 {
                format!(
                    "(|regs_desc_addr_o[63:{aw}]) ? {{{{{hi}{{1'b1}}}}, regs_desc_addr_o[{b1}:0]}} : regs_desc_addr_o[{a1}:0]",
                    hi = aw - blog,
                    b1 = blog - 1,
                    a1 = aw - 1
                )
            } else {
                "regs_desc_addr_o".to_string()
            },
            aw,
        ),
        (
            "desc_count",
            "(|regs_desc_count_o[31:16]) ? 16'hffff : regs_desc_count_o[15:0]".to_string(),
            16,
        ),
    ];
    for (port, text, w) in core_ctl {
        core_conns.push((port.into(), Expr::raw(text, w)));
    }
    let core_out = [
        ("busy", "busy_i"),
        ("done", "done_i"),
        ("error", "error_i"),
        ("err_code", "err_code_i"),
        ("err_desc", "err_desc_i"),
        ("perf_busy", "perf_busy_i"),
        ("perf_stall", "perf_stall_i"),
        ("perf_plane_ops", "perf_plane_ops_i"),
        ("perf_bytes_rd", "perf_bytes_rd_i"),
        ("perf_bytes_wr", "perf_bytes_wr_i"),
    ];
    for (port, regs_port) in core_out {
        let w = regs_wires
            .get(regs_port)
            .ok_or_else(|| crate::error::HdlError::Undeclared {
                module: MODULE.to_owned(),
                name: format!("regs_{regs_port}"),
            })?;
        core_conns.push((port.into(), w.expr()));
    }
    let conns = regs_conns
        .iter()
        .map(|(n, e)| (n.as_str(), e.clone()))
        .collect();
    m.instance(regs, "u_regs", conns)?;
    let conns = core_conns
        .iter()
        .map(|(n, e)| (n.as_str(), e.clone()))
        .collect();
    m.instance(core, "u_core", conns)?;
    let conns = dma_conns
        .iter()
        .map(|(n, e)| (n.as_str(), e.clone()))
        .collect();
    m.instance(dma, "u_dma", conns)?;
    Ok(m.finish())
}
