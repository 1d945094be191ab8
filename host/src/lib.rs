//! caq-host: the driver side of caq. It turns a quantized model into device programs
//! ([`compile`]) and runs them on any [`caq_spec::Device`] backend ([`run`]); the `caq` binary is a
//! thin command line over it.

pub mod compile;
mod error;
pub mod run;

pub use compile::{Program, compile};
pub use error::{HostError, Result};
pub use run::{RunOptions, RunOutput, RunReport, run};
