//! Energy per inference: measured from board power sensors (hwmon) where a board has them, and
//! estimated from the performance counters ([`model`]) everywhere else, always labelled so the
//! two are never confused. docs/energy.md has the formulas, the sensor tables and their sources.
//!
//! This module owns turning sensor readings or counters into joules; it does not know how the
//! accelerator runs an inference (it sees only [`crate::accel::EnergyMeter`]'s begin/end).

pub mod model;

pub use model::{EnergyEstimate, EnergyModel, MODEL_SOURCE, ModelMeter};
