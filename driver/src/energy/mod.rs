//! Energy per inference: measured from board power sensors (hwmon) where a board has them, and
//! estimated from the performance counters ([`model`]) everywhere else, always labelled so the
//! two are never confused. docs/energy.md has the formulas, the sensor tables and their sources.
//!
//! - [`model`]: the counter-based estimate ([`EnergyModel`], [`ModelMeter`]);
//! - [`hwmon`]: hwmon discovery, channel units, the [`PowerSource`] trait;
//! - [`boards`]: which board has which sensors ([`BoardSensors`]);
//! - [`integrate`]: joules from timestamped readings, and the sanity checks (pure);
//! - [`sampler`]: the sampling thread;
//! - [`meter`]: [`HwmonMeter`] and [`meter_batch`].
//!
//! This module owns turning sensor readings or counters into joules; it does not know how the
//! accelerator runs an inference (it sees only [`crate::accel::EnergyMeter`]'s begin/end, and
//! the public `Accelerator::infer_batch` in [`meter_batch`]).

pub mod boards;
pub mod hwmon;
pub mod integrate;
pub mod meter;
pub mod model;
pub mod sampler;

pub use boards::{BoardSensors, RailGroup};
pub use hwmon::{FnSource, HwmonPower, PowerSource};
pub use integrate::{PowerSample, SensorSpec, Timed, integrate};
pub use meter::{BatchEnergy, HwmonMeter, meter_batch, meter_window};
pub use model::{EnergyEstimate, EnergyModel, MODEL_SOURCE, ModelMeter};
pub use sampler::Sampler;
