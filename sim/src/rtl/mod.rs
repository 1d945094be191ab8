//! Verilator models of generated RTL (feature `verilator`), built at run time and cached on disk.
//!
//! - [`ModelSource`] names what to verilate (any set of Verilog files and a top module);
//!   [`ModelLib::load`] builds it into a shared library, or finds it in the cache that every test
//!   binary and run shares (`build`: key, lock, location), and loads it;
//! - [`ModelLib`]: the library's port table, port handles resolved by name, new instances;
//! - [`RtlModel`]: one instance — clock, reset, ports; `ffi` is the only place with `unsafe`;
//! - [`TopPorts`] (`top`): the accelerator top's handles by name (`s_axil_*`, `m_axi_*`, `irq`);
//! - [`top_library`]: the accelerator of an [`AccelConfig`] (`caq_hdl::generate`, then load), and
//!   [`default_config`]: the config tests simulate, `CAQ_SIM_CONFIG` or `configs/sim-small.toml`.

mod build;
mod ffi;
mod library;
mod model;
mod port;
mod shim;
mod top;

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use caq_spec::AccelConfig;

pub use build::{BuildOptions, ModelSource, cache_dir};
pub use library::ModelLib;
pub use model::RtlModel;
pub use port::{
    AnyInPort, AnyOutPort, InPort, OutPort, PortDir, PortInfo, TraceFormat, WideInPort, WideOutPort,
};
pub use top::{AxiPorts, AxilPorts, TopPorts};

use crate::error::SimError;

/// The config simulated when `CAQ_SIM_CONFIG` is not set, relative to the workspace root.
pub const DEFAULT_CONFIG: &str = "configs/sim-small.toml";

/// The config file tests and examples simulate: `CAQ_SIM_CONFIG` (absolute, or relative to the
/// workspace root), else [`DEFAULT_CONFIG`].
pub fn default_config_path() -> PathBuf {
    let workspace = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    match std::env::var_os("CAQ_SIM_CONFIG") {
        Some(p) if !p.is_empty() => workspace.join(p),
        _ => workspace.join(DEFAULT_CONFIG),
    }
}

/// The config at [`default_config_path`], parsed and validated.
pub fn default_config() -> Result<AccelConfig, SimError> {
    let path = default_config_path();
    AccelConfig::load(&path).map_err(|e| SimError::Config {
        name: path.display().to_string(),
        reason: format!("{e} (CAQ_SIM_CONFIG picks the simulated config)"),
    })
}

/// The model source of the accelerator generated for `cfg` (all of `caq_hdl::generate`'s files,
/// top `caq_top`, clocked at the config's clock).
pub fn top_source(cfg: &AccelConfig) -> Result<ModelSource, SimError> {
    let design = caq_hdl::generate(cfg).map_err(|e| SimError::Config {
        name: cfg.name.clone(),
        reason: format!("caq_hdl::generate: {e}"),
    })?;
    Ok(ModelSource {
        name: format!("config `{}`", cfg.name),
        top: design.top.clone(),
        files: design
            .files
            .iter()
            .map(|f| (f.name.clone(), f.text.clone()))
            .collect(),
        clock: "clk".to_string(),
        clock_mhz: cfg.clock_mhz,
    })
}

/// The Verilator model of the accelerator generated for `cfg`, built or found in the cache, with
/// its top ports resolved. Within a process the same config is generated and loaded once.
pub fn top_library(cfg: &AccelConfig) -> Result<&'static ModelLib, SimError> {
    static BY_CONFIG: Mutex<Vec<(AccelConfig, &'static ModelLib)>> = Mutex::new(Vec::new());
    let known = BY_CONFIG
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .find(|(c, _)| c == cfg)
        .map(|(_, lib)| *lib);
    if let Some(lib) = known {
        return Ok(lib);
    }
    let lib = ModelLib::load(&top_source(cfg)?, BuildOptions::default())?;
    lib.top_ports()?;
    BY_CONFIG
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((cfg.clone(), lib));
    Ok(lib)
}
