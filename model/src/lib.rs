//! caq-model: the numbers of caq. Quantizers, nested integer weights, bit-plane packing, the golden
//! integer kernels with the hardware's exact rounding, the model bundle on disk, datasets, and (behind
//! the `train` feature) float training. Knows the numeric contract; knows nothing of registers,
//! descriptors or devices.

pub mod adaptive;
pub mod arch;
pub mod bundle;
pub mod data;
pub mod error;
pub mod graph;
pub mod kernels;
pub mod nested;
pub mod planes;
#[cfg(feature = "train")]
pub mod qat;
pub mod qmodel;
pub mod quant;
pub mod report;
pub mod requant;
pub mod rounding;
pub mod store;
#[cfg(feature = "train")]
pub mod train;
pub mod validate;

pub use error::{ModelError, Result};
