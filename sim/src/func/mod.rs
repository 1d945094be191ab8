//! The functional model of the accelerator (always built, no Verilator): [`FuncDevice`]
//! implements `caq_spec::Device` with the RTL's registers and device semantics, bit-exact
//! results from caq-model's kernels and cycle counters from a calibratable [`TimingModel`].
//!
//! - `device`: registers, memory, faults, the run of a descriptor list;
//! - `plan`: the core's memory requests and compute steps per descriptor, in issue order;
//! - `timing`: the cycle cost of those steps, and the estimate of a list without running it.

mod device;
pub mod plan;
mod timing;

pub use device::FuncDevice;
pub use timing::TimingModel;
