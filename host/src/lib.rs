//! caq-host: the driver side of caq. It turns a quantized model into device programs
//! ([`compile`]) and runs them on any [`caq_spec::Device`] backend ([`run`]); on a board the
//! backend is the UIO driver (`uio`, `dma`); the `caq` binary is a thin command line over it.

pub mod accel;
#[cfg(feature = "sim")]
pub mod adaptive;
pub mod compile;
pub mod context;
pub mod dma;
pub mod energy;
mod error;
pub mod fake;
#[cfg(feature = "sim")]
pub mod gates;
pub mod irq;
pub mod pool;
pub mod process;
pub mod run;
pub mod sys;
pub mod uio;
pub mod uio_device;

pub use accel::{Accelerator, Inference, InferenceReport, LoadOptions, Residency, SwitchReport};
pub use compile::{Program, compile};
pub use error::{HostError, Result};
pub use run::{RunOptions, RunOutput, RunReport, run};
