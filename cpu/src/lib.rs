//! caq-cpu: the CPU backend. A quantized model (`caq_model::qmodel::QModel`) is prepared once per
//! precision setting into a [`CpuModel`] and then runs single images or batches, bit-exact with
//! the golden `Executor`. Weight layers of few bits run on a bit-plane table look-up kernel
//! (`lut`), wider ones on an integer GEMM (`gemm`); docs/cpu.md states the algorithm, the range
//! argument behind exactness, and measured speeds.
//!
//! Knows nothing of devices, bundles on disk or the CLI.

pub mod adaptive;
mod error;
mod gemm;
mod layer;
mod lut;
mod ops;
mod panel;
mod plan;

pub use adaptive::CpuAdaptive;
pub use error::{CpuError, Result};
pub use layer::{Engine, Kernel, LayerInfo};
pub use plan::CpuModel;
