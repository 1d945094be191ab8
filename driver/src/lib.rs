//! caq-driver: the driver for embedded Linux applications on Zynq boards. It turns a quantized
//! model into device programs ([`compile`]) and runs them on any [`caq_spec::Device`] backend
//! ([`run`], [`accel::Accelerator`]); on a board the backend is the UIO device ([`uio`], [`dma`],
//! [`irq`]), on a workstation the functional model (feature `sim`). Around it: the context probe
//! and gate selection ([`context`]), energy meters ([`energy`]), a fake sysfs tree for testing
//! without a board ([`fake`]), and [`handle::Handle`], the one type the C and Python bindings wrap.
//!
//! No command line, training, plotting, Verilog generator or Verilator here: the `caq` tool
//! (crate caq-host), the C ABI (caq-capi) and the Python package (caq-python) are built on top.

pub mod accel;
pub mod compile;
pub mod context;
pub mod dma;
pub mod energy;
mod error;
pub mod fake;
pub mod handle;
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
