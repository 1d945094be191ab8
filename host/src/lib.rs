//! caq-host: the `caq` command-line tool's library part, on top of the driver (crate
//! caq-driver): building gates for context classes from a model's costs and sensitivities
//! ([`gates`]) and input-adaptive policies ([`adaptive`]). The binary (`src/main.rs`, `src/cli/`)
//! is a thin command line over these and the library crates.

#[cfg(feature = "sim")]
pub mod adaptive;
#[cfg(feature = "sim")]
pub mod gates;
