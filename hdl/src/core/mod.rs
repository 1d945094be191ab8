//! The layer engine (`caq_core`): a thin top over decoupled stages, each generated as its own
//! module from its own file, joined by buffers and token signals (docs/architecture.md, "The
//! layer engine"):
//! - [`fetch`] (`caq_fetch`): the command processor and loader — descriptors, their checks
//!   ([`decode`], `caq_decode`), every read, routed into the other stages' buffers;
//! - [`window`] (`caq_window`): the feature map and the window generator that gathers Conv2d
//!   patches, a block of pixels at a time, into the activation banks;
//! - [`exec`] (`caq_exec`): the weight and activation banks and the plane-step sequencer that
//!   feeds `caq_array` one step per cycle;
//! - [`result`] (`caq_result`): requantization (one `caq_requant` per row), output staging and the
//!   writer.
//!
//! [`ports`] defines the memory ports to the DMA engine; [`params`] the run parameters the fetch
//! stage hands the others.

pub mod decode;
pub mod exec;
pub mod fetch;
pub mod params;
pub mod ports;
pub mod result;
pub mod window;

use std::collections::BTreeMap;

use caq_spec::AccelConfig;

use crate::emit::{Dir, Expr, Interface, Module, ModuleBuilder, Sig};
use crate::error::Result;
use ports::{Side, control_inputs, memory_ports, status_outputs};

/// Every module of the layer engine, the thin top `caq_core` last; `array_if` and `requant_if`
/// are the interfaces of `caq_array` and `caq_requant`.
pub fn core(
    cfg: &AccelConfig,
    array_if: &Interface,
    requant_if: &Interface,
) -> Result<Vec<Module>> {
    let decode = decode::decode(cfg)?;
    let fetch = fetch::fetch(cfg, &decode.interface)?;
    let window = window::window(cfg)?;
    let exec = exec::exec(cfg)?;
    let result = result::result(cfg, requant_if)?;
    let top = top(
        cfg,
        &[
            &fetch.interface,
            &window.interface,
            &exec.interface,
            array_if,
            &result.interface,
        ],
    )?;
    Ok(vec![decode, fetch, window, exec, result, top])
}

/// Stage ports connected under another name: the stages' `clear` is the fetch stage's
/// `job_clear`.
fn net_of(port: &str) -> &str {
    match port {
        "clear" => "job_clear",
        other => other,
    }
}

/// `caq_core`: the thin top. Its ports face the register block and the DMA engine; inside, every
/// stage port is wired by name to the one stage (or top port) that drives it.
fn top(cfg: &AccelConfig, stages: &[&Interface]) -> Result<Module> {
    let aw = cfg.axi.addr_width;
    let mut m = ModuleBuilder::new("caq_core")?;
    m.doc(&[
        "Layer engine: caq_fetch (descriptors, checks, reads), caq_window (Conv2d patches),",
        "caq_exec (banks, plane-steps), caq_array, caq_result (requantization, writes), wired",
        "by port name. See caq-hdl core/mod.rs and docs/architecture.md.",
    ]);
    control_inputs(&mut m, aw)?;
    status_outputs(&mut m)?;
    m.port_doc(
        Dir::Output,
        "perf_busy",
        1,
        "a plane-step entered the array",
    )?;
    m.port_doc(
        Dir::Output,
        "perf_stall",
        1,
        "a descriptor runs and no step issues",
    )?;
    m.port(Dir::Output, "perf_plane_ops", 16)?;
    m.port(Dir::Output, "perf_bytes_rd", 16)?;
    m.port(Dir::Output, "perf_bytes_wr", 16)?;
    memory_ports(&mut m, aw, cfg.bus_bytes(), Side::Core)?;
    m.port_group("address window (from WIN_BASE / WIN_LIMIT, saturated to 2^addr_width)");
    m.port(Dir::Input, "win_base", aw + 1)?;
    m.port(Dir::Input, "win_limit", aw + 1)?;
    let own: BTreeMap<String, (Dir, u32)> = m
        .ports()
        .iter()
        .map(|p| (p.name.clone(), (p.dir, p.width)))
        .collect();

    m.section("nets between the stages: each driven by one stage output of the same name");
    let mut nets: BTreeMap<String, Sig> = BTreeMap::new();
    for s in stages {
        for p in &s.ports {
            if p.dir == Dir::Output && !own.contains_key(&p.name) {
                let w = m.wire(&p.name, p.width, None)?;
                nets.insert(p.name.clone(), w);
            }
        }
    }
    for s in stages {
        let mut conns: Vec<(&str, Expr)> = Vec::new();
        for p in &s.ports {
            let net = net_of(&p.name);
            let expr = match nets.get(net) {
                Some(sig) => sig.expr(),
                None => m.sig(net)?.expr(),
            };
            conns.push((p.name.as_str(), expr));
        }
        let name = format!("u_{}", s.name.trim_start_matches("caq_"));
        m.instance(s, &name, conns)?;
    }
    m.assign_raw("perf_plane_ops", "{15'd0, perf_busy}")?;
    Ok(m.finish())
}
