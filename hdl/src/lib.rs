//! caq-hdl: the RTL generator of the caq accelerator.
//!
//! [`generate`] turns an [`AccelConfig`] into a [`Design`]: Verilog-2005 files, one module per file,
//! written through the small typed builder in [`emit`]. The register block (`caq_axil_regs`) is
//! generated from `caq_spec::regmap::REGISTERS`, never copied by hand. [`lint()`] runs Verilator's
//! linter and [`synth()`] runs Yosys `synth_xilinx` and reads back resources and logic depth;
//! [`synth_with_timing()`] also runs Yosys `sta` in the same run and reads back the worst logic path
//! with its start and end named by RTL signal ([`timing`]).
//! [`vivado()`] writes the Vivado Tcl and XDC that build a real board's bitstream around the RTL.
//!
//! This crate knows the register map and the RTL; it does not know numerics beyond the contract's
//! widths, and nothing about drivers or simulation bindings.

pub mod array;
pub mod core;
pub mod design;
pub mod devicetree;
pub mod dma;
pub mod emit;
mod error;
pub mod lint;
pub mod regs;
pub mod requant;
pub mod synth;
pub mod timing;
mod tools;
pub mod top;
pub mod vivado;

pub use design::{Design, GeneratedFile, Manifest, PortInfo};
pub use emit::Dir;
pub use error::{HdlError, Result};
pub use lint::{LintReport, LintSource, lint};
pub use synth::{
    Family, ModuleUse, Part, Resources, SynthReport, synth, synth_modules, synth_with_timing,
};
pub use timing::{NameSource, PathEnd, PathStep, TimingReport};
pub use tools::available as tool_available;
pub use vivado::{VivadoFlow, vivado};

use caq_spec::{AccelConfig, Caps, ConfigHash};
use serde_json::json;

/// Generates every RTL file for a config. Fails on an invalid config (naming its problems) or if
/// the spec's register table has a register this generator cannot implement.
pub fn generate(cfg: &AccelConfig) -> Result<Design> {
    let caps = Caps::from_config(cfg)?.encode();
    let hash = ConfigHash::of(cfg);
    let regs = regs::generate(cfg, hash)?;
    let array = array::array(cfg)?;
    let requant = requant::requant()?;
    let engine = core::core(cfg, &array.interface, &requant.interface)?;
    let core = engine.last().expect("the engine's top comes last");
    let dma = dma::dma(cfg)?;
    let top = top::generate(
        cfg,
        hash,
        &regs.module.interface,
        &core.interface,
        &dma.interface,
    )?;
    let ports = top
        .interface
        .ports
        .iter()
        .map(|p| PortInfo {
            name: p.name.clone(),
            dir: p.dir,
            width: p.width,
            signed: p.signed,
        })
        .collect();
    let mut files: Vec<GeneratedFile> = [&regs.module, &array, &requant, &dma, &top]
        .into_iter()
        .chain(engine.iter())
        .map(|m| GeneratedFile {
            name: format!("{}.v", m.interface.name),
            text: emit::file(cfg, hash, m),
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let params = json!({
        "config": cfg.name,
        "board": cfg.board.as_str(),
        "part": cfg.part,
        "clock_mhz": cfg.clock_mhz,
        "config_hash": hash.to_string(),
        "regmap_version": caq_spec::regmap::REGMAP_VERSION_STRING,
        "caps": caps.iter().map(|w| format!("0x{w:08x}")).collect::<Vec<_>>(),
        "axil": {
            "addr_width": regs::AXIL_ADDR_WIDTH,
            "data_width": regs::AXIL_DATA_WIDTH,
            "register_space_bytes": caq_spec::regmap::REGISTER_SPACE_BYTES,
            "write_latency_cycles": regs::WRITE_LATENCY_CYCLES,
            "read_latency_cycles": regs::READ_LATENCY_CYCLES,
        },
        "perf_increment_width": regs::PERF_INC_WIDTH,
        "reset": "synchronous, active low (rst_n)",
    });
    Ok(Design {
        top: top::MODULE.to_owned(),
        files,
        config_hash: hash,
        params,
        ports,
    })
}
