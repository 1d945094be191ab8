//! Build script of caq-sim.
//!
//! With the `verilator` feature it turns the accelerator config named by `CAQ_SIM_CONFIG` (default
//! `configs/sim-small.toml`) into a linked Verilator model:
//! 1. `caq_hdl::generate` → the Verilog in `$OUT_DIR/rtl/`;
//! 2. `shim` → a C ABI shim (`shim.cpp`) and its Rust side (`ffi.rs`, `params.rs`), both generated
//!    from `Design::ports`, never from a hand-written port list;
//! 3. `verilator --cc` → C++ in `$OUT_DIR/obj_dir` (file names hashed by Verilator 5, so globbed);
//! 4. the `cc` crate compiles the model with the shim, and the Verilator runtime once per `OUT_DIR`.
//!
//! Without the feature it does nothing, so the crate builds without Verilator or a C++ compiler.

#[cfg(feature = "verilator")]
mod model;
#[cfg(feature = "verilator")]
mod shim;

fn main() {
    #[cfg(feature = "verilator")]
    if let Err(message) = model::build() {
        // `cargo::error` fails the build and shows every line of the message.
        for line in message.lines() {
            println!("cargo::error={line}");
        }
    }
}
