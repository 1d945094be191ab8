//! caq-spec: the hardware/software contract of the caq accelerator.
//!
//! Every other crate obeys what is defined here, once:
//! - [`AccelConfig`] (`config`): the accelerator configuration read from `configs/*.toml`, its rules
//!   and every derived parameter;
//! - [`Coherence`] (`coherence`): how the DMA master meets the CPU caches, and the AxCACHE/AxPROT
//!   each mode drives;
//! - [`ConfigHash`] (`hash`): the fingerprint the hardware carries in CONFIG_HASH;
//! - the register map (`regmap`): offsets, fields, access, reset values and [`ErrorCode`]s;
//! - [`Caps`] (`caps`): the capabilities packed into CAPS0..CAPS3;
//! - [`CoreShape`] (`shape`): the layer engine's buffer geometry and its capacity rule;
//! - [`LayerDescriptor`] (`descriptor`): the 128-byte layer record and the checks a device makes;
//! - `fsio`: how every crate reads its input files (regular files only) and writes its outputs
//!   (never half-written, never over a device node);
//! - `doc`: the Markdown in `docs/regmap.md` and `docs/descriptor.md`, rendered from those tables;
//! - [`device::Device`] (`device`): the register-level interface every backend implements, and the
//!   [`PerfCounters`] it reports;
//! - [`BitWidth`], [`DeviceAddr`] (`types`): the value types the contract is written in;
//! - `testing` (feature `testing`): seeded random valid configs for the tests of every crate.
//!
//! This crate knows no numerics beyond the widths the contract fixes, and no backend.

pub mod board;
mod caps;
mod coherence;
mod config;
pub mod descriptor;
pub mod device;
pub mod doc;
mod error;
pub mod fsio;
mod hash;
pub mod regmap;
pub mod shape;
#[cfg(feature = "testing")]
pub mod testing;
mod types;

pub use board::{BoardMap, board_map};
pub use caps::Caps;
pub use coherence::{AxiAttrs, Coherence};
pub use config::{
    ACC_BITS, AccelConfig, ArrayConfig, AxiConfig, Board, GROUP_MULT_MAX, LimitsConfig,
    MemoryConfig, SCHEMA_VERSION, TOTAL_ACC_BITS, max_k_for,
};
pub use descriptor::{
    DescField, Flags, LayerDescriptor, Opcode, PlaneGroup, PlaneGroups, RequantEntry, Shape, Window,
};
pub use device::{Device, IrqStats, IrqWait, MemRegion, PerfCounters};
pub use error::{ConfigProblem, SpecError};
pub use hash::{ConfigHash, canonical_json};
pub use regmap::{Access, ErrorCode, Field, Register};
pub use shape::{CoreShape, Schedule};
pub use types::{BitWidth, DeviceAddr, NAME_RULE, name_ok};
