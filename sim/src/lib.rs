//! caq-sim: simulation backends of the caq accelerator.
//!
//! - [`rtl`] (feature `verilator`, on by default in this crate): Verilator models built at run time
//!   from any generated Verilog into shared libraries cached on disk and shared by every test binary
//!   and run ([`rtl::ModelLib`]), [`RtlModel`] (one instance, ports resolved by name), and the
//!   accelerator of any config ([`rtl::top_library`]); tests pick the config with `CAQ_SIM_CONFIG`
//!   ([`rtl::default_config`], default `configs/sim-small.toml`);
//! - [`axil`] (feature `verilator`): [`AxiLite`], an AXI4-Lite master that drives the model's register
//!   port cycle by cycle and checks the slave's side of the handshake rules;
//! - [`axi`]: the AXI vocabulary shared by every backend (response codes, register addresses);
//! - [`axi_mem`] (feature `verilator`): [`AxiMem`], DDR behind the DMA's AXI4 master port with
//!   latency, random stalls, error injection and an AXI4 protocol checker;
//! - [`rtl_device`] (feature `verilator`): [`RtlDevice`], the RTL model of a config as a
//!   `caq_spec::Device`;
//! - [`func`] (always built): [`FuncDevice`], the functional model of the accelerator at the register
//!   level (`caq_spec::Device`), bit-exact through caq-model's kernels, with a calibratable
//!   [`TimingModel`]; [`fault`]: bus-fault injection any backend can offer ([`InjectFaults`]);
//! - [`layer`] (always built): [`LayerJob`], a Dense or Conv2d layer with its golden output, placed in
//!   any `Device` and run through its registers ([`layer::run_list`]);
//! - [`SimError`]: the one error type.
//!
//! The `verilator` feature needs Verilator >= 5.0 and a C++17 compiler when a model is first built
//! (at run time; nothing is compiled by cargo). Crates that must
//! build without them (the driver for the board) depend on caq-sim through the workspace dependency,
//! which has default features off, and opt in with `features = ["verilator"]` where they simulate.
//! Tracing: features `trace-vcd` / `trace-fst` (or `rtl::BuildOptions::trace`), then
//! [`RtlModel::trace_open`].

pub mod axi;
#[cfg(feature = "verilator")]
pub mod axi_mem;
#[cfg(feature = "verilator")]
pub mod axil;
mod error;
pub mod fault;
pub mod func;
pub mod layer;
#[cfg(feature = "verilator")]
pub mod rtl;
#[cfg(feature = "verilator")]
pub mod rtl_device;

pub use axi::{AxiOp, RegAddr, Resp};
#[cfg(feature = "verilator")]
pub use axi_mem::{AxiMem, AxiMemOptions};
#[cfg(feature = "verilator")]
pub use axil::{AxiLite, AxiLiteOptions, Backpressure, WriteOrder};
pub use error::SimError;
pub use fault::{FaultDir, InjectFaults};
pub use func::{FuncDevice, TimingModel};
pub use layer::{LayerJob, LayerOp, Run, WeightGroup};
#[cfg(feature = "verilator")]
pub use rtl::RtlModel;
#[cfg(feature = "verilator")]
pub use rtl_device::RtlDevice;
