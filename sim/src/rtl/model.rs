//! [`RtlModel`]: the safe wrapper around one Verilator model of the generated top.
//!
//! Owns the clock (rising-edge, one [`RtlModel::tick`] per cycle), the reset sequence and the cycle
//! count; knows nothing about the bus protocols driven through its ports (`axil` does).

use std::ffi::CString;
use std::path::Path;

use super::design::{TRACE_FORMAT, ports};
use super::ffi::{Handle, TraceOpen};
use super::port::{InPort, OutPort, WideInPort, WideOutPort};
use crate::error::SimError;

/// A Verilator model of the accelerator's top module.
///
/// Inputs keep the value last set; outputs reflect the inputs after [`RtlModel::eval`] or a tick.
/// `Send` (a model may move to another thread) but not `Sync`.
pub struct RtlModel {
    handle: Handle,
    seed: u64,
    cycles: u64,
}

impl RtlModel {
    /// A new model. `seed` picks the values every register and memory holds before reset
    /// (`--x-initial unique`), so runs with different seeds show whether the design depends on
    /// uninitialised state. Inputs start at 0 with the clock low; nothing is reset yet.
    pub fn new(seed: u64) -> RtlModel {
        RtlModel {
            handle: Handle::new(verilator_seed(seed)),
            seed,
            cycles: 0,
        }
    }

    /// The seed the model was created with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Rising clock edges since the model was created, reset cycles included.
    pub fn cycles(&self) -> u64 {
        self.cycles
    }

    /// Drives every input to 0, holds `rst_n` low for `cycles` rising edges (at least one), then
    /// releases it and settles the outputs.
    pub fn reset(&mut self, cycles: u32) {
        self.handle.clear_inputs();
        self.handle.set(ports::RST_N.index(), 0);
        self.tick_n(u64::from(cycles.max(1)));
        self.handle.set(ports::RST_N.index(), 1);
        self.eval();
    }

    /// Settles the combinational logic after inputs changed, without a clock edge.
    pub fn eval(&mut self) {
        self.handle.eval();
    }

    /// One clock cycle: clock low, evaluate, clock high (the rising edge), evaluate.
    pub fn tick(&mut self) {
        self.handle.tick();
        self.cycles += 1;
    }

    /// `n` clock cycles in one call into the model (no per-cycle crossing into Rust).
    pub fn tick_n(&mut self, n: u64) {
        self.handle.tick_n(n);
        self.cycles += n;
    }

    /// Drives `port` with the bit pattern `value`, which must fit the port's width.
    pub fn set(&mut self, port: InPort, value: u64) -> Result<(), SimError> {
        if port.width() < 64 && value >> port.width() != 0 {
            return Err(SimError::PortValue {
                port: port.name(),
                width: port.width(),
                signed: false,
                value: i128::from(value),
            });
        }
        self.handle.set(port.index(), value);
        Ok(())
    }

    /// Drives `port` with the two's complement of `value`, which must lie in the signed range of the
    /// port's width.
    pub fn set_signed(&mut self, port: InPort, value: i64) -> Result<(), SimError> {
        let w = port.width();
        let fits = w >= 64 || (-(1i64 << (w - 1))..(1i64 << (w - 1))).contains(&value);
        if !fits {
            return Err(SimError::PortValue {
                port: port.name(),
                width: w,
                signed: true,
                value: i128::from(value),
            });
        }
        // The shim masks to the width, which turns the sign extension into the two's complement.
        self.handle.set(port.index(), value as u64);
        Ok(())
    }

    /// The bits of `port`, zero-extended.
    pub fn get(&self, port: OutPort) -> u64 {
        self.handle.get(port.index())
    }

    /// The value of `port` read as two's complement of its width, sign-extended.
    pub fn get_signed(&self, port: OutPort) -> i64 {
        let shift = 64 - port.width().min(64);
        ((self.handle.get(port.index()) << shift) as i64) >> shift
    }

    /// True when a 1-bit (or any) output is non-zero.
    pub fn is_high(&self, port: OutPort) -> bool {
        self.get(port) != 0
    }

    /// Drives a wide input from `port.words()` 32-bit words, least significant first; bits above the
    /// port's width in the last word are dropped.
    pub fn set_wide(&mut self, port: WideInPort, words: &[u32]) -> Result<(), SimError> {
        if self.handle.set_wide(port.index(), words) {
            Ok(())
        } else {
            Err(SimError::PortWords {
                port: port.name(),
                width: port.width(),
                expected: port.words(),
                got: words.len(),
            })
        }
    }

    /// The 32-bit words of a wide output, least significant first.
    pub fn get_wide(&self, port: WideOutPort) -> Vec<u32> {
        self.handle.get_wide(port.index())
    }

    /// Starts writing every signal to a waveform file (VCD or FST, whichever the model was built
    /// with: features `trace-vcd` / `trace-fst`), replacing any open trace. Time stamps follow the
    /// config's clock.
    pub fn trace_open(&mut self, path: impl AsRef<Path>) -> Result<(), SimError> {
        let path = path.as_ref();
        let err = |reason: &str| SimError::Trace {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        if TRACE_FORMAT.is_none() {
            return Err(err(
                "tracing is not compiled in; build caq-sim with feature `trace-vcd` or `trace-fst`",
            ));
        }
        let c_path = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| err("the path contains a NUL byte"))?;
        match self.handle.trace_open(&c_path) {
            TraceOpen::Opened => Ok(()),
            TraceOpen::NotCompiledIn => Err(err("tracing is not compiled in")),
            TraceOpen::CannotOpen => Err(err("Verilator could not open the file")),
        }
    }

    /// Flushes and closes the trace file, if one is open.
    pub fn trace_close(&mut self) {
        self.handle.trace_close();
    }
}

impl std::fmt::Debug for RtlModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtlModel")
            .field("top", &super::design::TOP)
            .field("config", &super::design::CONFIG_NAME)
            .field("seed", &self.seed)
            .field("cycles", &self.cycles)
            .finish()
    }
}

/// Verilator's random-reset seed: a non-zero `int` (0 would mean "seed from the clock"). The 64-bit
/// seed is mixed (SplitMix64 finalizer) so that nearby seeds give unrelated initial states.
fn verilator_seed(seed: u64) -> i32 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    match z as u32 as i32 {
        0 => 1,
        s => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verilator_seed_is_never_zero_and_differs_for_nearby_seeds() {
        let seeds: Vec<i32> = (0..1000).map(verilator_seed).collect();
        assert!(seeds.iter().all(|&s| s != 0));
        let mut unique = seeds.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), seeds.len());
    }
}
