//! The Verilator model of the generated RTL (feature `verilator`).
//!
//! The model, its port list and its parameters are generated at build time from the config named by
//! `CAQ_SIM_CONFIG` (see the crate's build script); [`design`] holds what it was built from and a
//! typed handle per port. [`RtlModel`] is the safe wrapper; `ffi` is the only place with `unsafe`.

mod ffi;
mod model;
mod port;

pub use model::RtlModel;
pub use port::{InPort, OutPort, PortDir, PortInfo, TraceFormat, WideInPort, WideOutPort};

/// What the model was generated from, and a typed handle per port (`design::ports::S_AXIL_AWADDR`).
pub mod design {
    use caq_spec::{AccelConfig, ConfigHash, SpecError};

    use super::{PortDir, PortInfo, TraceFormat};

    include!(concat!(env!("OUT_DIR"), "/params.rs"));

    /// The accelerator config the model was generated from, parsed from [`CONFIG_TOML`].
    pub fn config() -> Result<AccelConfig, SpecError> {
        AccelConfig::from_toml_str(CONFIG_TOML, CONFIG_PATH)
    }
}
