//! The one error type of caq-host: what went wrong, with the layer, register or value involved.

use caq_spec::ErrorCode;

pub type Result<T, E = HostError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Model(#[from] caq_model::ModelError),

    #[error(transparent)]
    Spec(#[from] caq_spec::SpecError),

    /// A layer the device cannot run as compiled (shape, capacity, bits, regions).
    #[error("layer '{layer}' does not fit config '{config}': {what}")]
    Layer {
        layer: String,
        config: String,
        what: String,
    },

    /// A value the caller passed that the program cannot take.
    #[error("{what}: {why}")]
    Arg { what: &'static str, why: String },

    /// The program's memory region is not inside the backend's device memory.
    #[error(
        "the program needs device memory [{base:#x}, {end:#x}); the backend offers [{mem_base:#x}, {mem_end:#x})"
    )]
    Memory {
        base: u64,
        end: u64,
        mem_base: u64,
        mem_end: u64,
    },

    /// The backend failed a register or memory access.
    #[error("device access failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),

    /// The device stopped a descriptor list with an error in STATUS.
    #[error(
        "device error {code_name} ({code}) on descriptor {desc} of the list, layer '{layer}' (STATUS = {status:#010x})"
    )]
    Device {
        layer: String,
        desc: u32,
        code: u8,
        code_name: &'static str,
        status: u32,
    },

    /// The interrupt came but STATUS shows neither DONE nor ERROR.
    #[error(
        "the interrupt fired but STATUS = {status:#010x} is not DONE running layers {layers:?}"
    )]
    NotDone { layers: Vec<String>, status: u32 },

    /// The completion interrupt did not come.
    #[error(
        "no completion interrupt within {timeout_ms} ms running layers {layers:?} (STATUS = {status:#010x})"
    )]
    Timeout {
        layers: Vec<String>,
        timeout_ms: u128,
        status: u32,
    },
}

impl HostError {
    pub(crate) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> HostError {
        HostError::Backend(Box::new(e))
    }

    pub(crate) fn device(layer: String, desc: u32, code: u8, status: u32) -> HostError {
        let code_name = ErrorCode::from_u8(code).map_or("unknown", ErrorCode::name);
        HostError::Device {
            layer,
            desc,
            code,
            code_name,
            status,
        }
    }
}
