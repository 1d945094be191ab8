//! [`RtlModel`]: the safe wrapper around one instance of a verilated module (the accelerator's top
//! or any module under a bench).
//!
//! Owns the clock (rising-edge, one [`RtlModel::tick`] per cycle), the reset sequence and the cycle
//! count; knows nothing about the bus protocols driven through its ports (`axil` does).

use std::ffi::CString;
use std::path::Path;

use super::ffi::{Handle, TraceOpen};
use super::library::ModelLib;
use super::port::{AnyInPort, AnyOutPort, InPort, OutPort, WideInPort, WideOutPort};
use super::top::TopPorts;
use crate::error::SimError;

/// One instance of a verilated module.
///
/// Inputs keep the value last set; outputs reflect the inputs after [`RtlModel::eval`] or a tick.
/// `Send` (a model may move to another thread) but not `Sync`.
pub struct RtlModel {
    lib: &'static ModelLib,
    handle: Handle,
    rst_n: Option<InPort>,
    seed: u64,
    cycles: u64,
}

impl RtlModel {
    /// A new instance of `lib`'s module. `seed` picks the values every register and memory holds
    /// before reset (`--x-initial unique`), so runs with different seeds show whether the design
    /// depends on uninitialised state. Inputs start at 0 with the clock low; nothing is reset yet.
    pub fn new(lib: &'static ModelLib, seed: u64) -> RtlModel {
        RtlModel {
            lib,
            handle: Handle::new(&lib.symbols, verilator_seed(seed)),
            rst_n: lib.input("rst_n").ok(),
            seed,
            cycles: 0,
        }
    }

    /// The library this model is an instance of (its port table, handles by name).
    pub fn lib(&self) -> &'static ModelLib {
        self.lib
    }

    /// The accelerator top's port handles (a `caq_top` model only).
    pub fn top_ports(&self) -> Result<&'static TopPorts, SimError> {
        self.lib.top_ports()
    }

    /// The seed the model was created with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Rising clock edges since the model was created, reset cycles included.
    pub fn cycles(&self) -> u64 {
        self.cycles
    }

    /// Drives every input to 0, holds `rst_n` (synchronous, active low) low for `cycles` rising
    /// edges (at least one), then releases it and settles the outputs. A module without `rst_n`
    /// just sees its inputs cleared and the clock run.
    pub fn reset(&mut self, cycles: u32) {
        self.handle.clear_inputs();
        if let Some(rst_n) = self.rst_n {
            self.handle.set(rst_n.index(), 0);
        }
        self.tick_n(u64::from(cycles.max(1)));
        if let Some(rst_n) = self.rst_n {
            self.handle.set(rst_n.index(), 1);
        }
        self.eval();
    }

    /// Settles the combinational logic after inputs changed, without a clock edge.
    pub fn eval(&mut self) {
        self.handle.eval();
    }

    /// One clock cycle: clock low, evaluate, clock high (the rising edge), evaluate.
    pub fn tick(&mut self) {
        self.handle.tick_n(1);
        self.cycles += 1;
    }

    /// `n` clock cycles in one call into the model (no per-cycle crossing into Rust).
    pub fn tick_n(&mut self, n: u64) {
        self.handle.tick_n(n);
        self.cycles += n;
    }

    /// Panics unless `lib` (a handle's library) is this model's: a handle of another module's
    /// table would address a different port.
    fn check(&self, lib: u32, name: &str) {
        assert!(
            lib == self.lib.id(),
            "port handle `{name}` was resolved in another model library than {}'s",
            self.lib.name()
        );
    }

    /// Drives `port` with the bit pattern `value`, which must fit the port's width.
    pub fn set(&mut self, port: InPort, value: u64) -> Result<(), SimError> {
        self.check(port.lib(), port.name());
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
        self.check(port.lib(), port.name());
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
        self.check(port.lib(), port.name());
        self.handle.get(port.index())
    }

    /// The value of `port` read as two's complement of its width, sign-extended.
    pub fn get_signed(&self, port: OutPort) -> i64 {
        let shift = 64 - port.width().min(64);
        ((self.get(port) << shift) as i64) >> shift
    }

    /// True when a 1-bit (or any) output is non-zero.
    pub fn is_high(&self, port: OutPort) -> bool {
        self.get(port) != 0
    }

    /// Drives a wide input from `port.words()` 32-bit words, least significant first; bits above the
    /// port's width in the last word are dropped.
    pub fn set_wide(&mut self, port: WideInPort, words: &[u32]) -> Result<(), SimError> {
        self.check(port.lib(), port.name());
        if words.len() != port.words() {
            return Err(SimError::PortWords {
                port: port.name(),
                width: port.width(),
                expected: port.words(),
                got: words.len(),
            });
        }
        self.handle.set_wide(port.index(), words);
        Ok(())
    }

    /// The 32-bit words of a wide output, least significant first.
    pub fn get_wide(&self, port: WideOutPort) -> Vec<u32> {
        self.check(port.lib(), port.name());
        let mut words = vec![0u32; port.words()];
        self.handle.get_wide(port.index(), &mut words);
        words
    }

    /// Drives a port of either width from up to 128 bits (`[low, high]` 64-bit halves); bits above
    /// the port's width must be 0.
    pub fn set_any(&mut self, port: AnyInPort, value: [u64; 2]) -> Result<(), SimError> {
        match port {
            AnyInPort::Narrow(p) if value[1] == 0 => self.set(p, value[0]),
            AnyInPort::Narrow(p) => Err(SimError::PortValue {
                port: p.name(),
                width: p.width(),
                signed: false,
                value: i128::from(value[0]) | i128::from(value[1]) << 64,
            }),
            AnyInPort::Wide(p) => {
                let words = [
                    value[0] as u32,
                    (value[0] >> 32) as u32,
                    value[1] as u32,
                    (value[1] >> 32) as u32,
                ];
                let n = p.words();
                if n > words.len() {
                    let mut all = vec![0; n];
                    all[..words.len()].copy_from_slice(&words);
                    return self.set_wide(p, &all);
                }
                self.set_wide(p, &words[..n])
            }
        }
    }

    /// The low 128 bits of a port of either width, as `[low, high]` 64-bit halves.
    pub fn get_any(&self, port: AnyOutPort) -> [u64; 2] {
        match port {
            AnyOutPort::Narrow(p) => [self.get(p), 0],
            AnyOutPort::Wide(p) => {
                let w = self.get_wide(p);
                let at = |i: usize| u64::from(w.get(i).copied().unwrap_or(0));
                [at(0) | at(1) << 32, at(2) | at(3) << 32]
            }
        }
    }

    /// Drives the input called `name` (at most 64 bits): for benches that poke ports by name.
    pub fn set_by_name(&mut self, name: &str, value: u64) -> Result<(), SimError> {
        let port = self.lib.input(name)?;
        self.set(port, value)
    }

    /// Reads the port called `name` (at most 64 bits).
    pub fn get_by_name(&self, name: &str) -> Result<u64, SimError> {
        Ok(self.get(self.lib.output(name)?))
    }

    /// Starts writing every signal to a waveform file (VCD or FST, whichever the library was built
    /// with: `BuildOptions::trace`, by default from features `trace-vcd` / `trace-fst`), replacing
    /// any open trace. Time stamps follow the source's clock.
    pub fn trace_open(&mut self, path: impl AsRef<Path>) -> Result<(), SimError> {
        let path = path.as_ref();
        let err = |reason: &str| SimError::Trace {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        if self.lib.trace_format().is_none() {
            return Err(err(
                "tracing is not compiled in; build caq-sim with feature `trace-vcd` or `trace-fst` \
                 (or load the model with BuildOptions::trace)",
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
            .field("top", &self.lib.top())
            .field("model", &self.lib.name())
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
