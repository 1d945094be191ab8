//! The C ABI of the generated shim (`$OUT_DIR/shim.cpp`) and [`Handle`], the one owner of a model
//! pointer. All of caq-sim's `unsafe` is in this file; everything above it is safe Rust.
//!
//! The shim's functions are `noexcept`: a C++ exception (only `std::bad_alloc` is possible) terminates
//! the process instead of unwinding into Rust.

use std::ffi::CStr;
use std::ptr::NonNull;
use std::sync::{Mutex, PoisonError};

/// The shim's model state (context, verilated top, trace file); opaque here.
#[repr(C)]
pub(crate) struct CaqSim {
    _opaque: [u8; 0],
}

type SetFn = unsafe extern "C" fn(*mut CaqSim, u64);
type GetFn = unsafe extern "C" fn(*const CaqSim) -> u64;
type SetWideFn = unsafe extern "C" fn(*mut CaqSim, *const u32);
type GetWideFn = unsafe extern "C" fn(*const CaqSim, *mut u32);

unsafe extern "C" {
    fn caq_sim_new(seed: i32) -> *mut CaqSim;
    fn caq_sim_delete(sim: *mut CaqSim);
    fn caq_sim_eval(sim: *mut CaqSim);
    fn caq_sim_tick(sim: *mut CaqSim);
    fn caq_sim_tick_n(sim: *mut CaqSim, n: u64);
    fn caq_sim_clear_inputs(sim: *mut CaqSim);
    fn caq_sim_trace_open(sim: *mut CaqSim, path: *const std::ffi::c_char) -> i32;
    fn caq_sim_trace_close(sim: *mut CaqSim);
}

// The per-port functions and the tables SET, GET, SET_WIDE, GET_WIDE, indexed by the handles in
// `design::ports`.
include!(concat!(env!("OUT_DIR"), "/ffi.rs"));

/// What `caq_sim_trace_open` reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TraceOpen {
    Opened,
    NotCompiledIn,
    CannotOpen,
}

/// An owned model. Never null, never shared: `&mut self` for everything that changes the model.
pub(crate) struct Handle(NonNull<CaqSim>);

// SAFETY: a Handle exclusively owns its VerilatedContext and model, and nothing in them is tied to the
// creating thread: every shim entry point that evaluates the model first rebinds Verilator's
// thread-local context pointer to this model's context. Handle is not Sync (raw pointer), so two
// threads never call into the same model at once.
unsafe impl Send for Handle {}

impl Handle {
    /// A new model whose `--x-initial unique` values come from `seed` (0 is not allowed: Verilator
    /// reads it as "seed from the clock").
    pub(crate) fn new(seed: i32) -> Handle {
        // Verilator's random generator is per thread but reseeds whenever any context anywhere sets
        // a seed; a model built while another thread seeds its own would start from a mix of both
        // sequences. Building one model at a time keeps the initial state a function of the seed.
        static CONSTRUCTION: Mutex<()> = Mutex::new(());
        let _one_at_a_time = CONSTRUCTION.lock().unwrap_or_else(PoisonError::into_inner);
        // SAFETY: caq_sim_new has no preconditions; it returns a new object or terminates.
        let raw = unsafe { caq_sim_new(seed) };
        match NonNull::new(raw) {
            Some(ptr) => Handle(ptr),
            // `new` in C++ does not return null; a null here means the shim is broken.
            None => std::process::abort(),
        }
    }

    pub(crate) fn eval(&mut self) {
        // SAFETY: self.0 is a live model owned exclusively by this Handle.
        unsafe { caq_sim_eval(self.0.as_ptr()) }
    }

    pub(crate) fn tick(&mut self) {
        // SAFETY: as in `eval`.
        unsafe { caq_sim_tick(self.0.as_ptr()) }
    }

    pub(crate) fn tick_n(&mut self, n: u64) {
        // SAFETY: as in `eval`.
        unsafe { caq_sim_tick_n(self.0.as_ptr(), n) }
    }

    pub(crate) fn clear_inputs(&mut self) {
        // SAFETY: as in `eval`.
        unsafe { caq_sim_clear_inputs(self.0.as_ptr()) }
    }

    /// Drives narrow input `index` (a generated `InPort`, so always in range); the shim masks the
    /// value to the port's width.
    pub(crate) fn set(&mut self, index: usize, value: u64) {
        let f = SET[index];
        // SAFETY: the model is live and exclusively borrowed; f is the generated setter of a port.
        unsafe { f(self.0.as_ptr(), value) }
    }

    /// Reads narrow output `index`, zero-extended.
    pub(crate) fn get(&self, index: usize) -> u64 {
        let f = GET[index];
        // SAFETY: the model is live; getters only read it.
        unsafe { f(self.0.as_ptr()) }
    }

    /// Drives wide input `index` from exactly `words` 32-bit words; false (and nothing driven) when
    /// `words` has another length than the port.
    pub(crate) fn set_wide(&mut self, index: usize, words: &[u32]) -> bool {
        if words.len() != SET_WIDE_WORDS[index] {
            return false;
        }
        let f = SET_WIDE[index];
        // SAFETY: the model is live and exclusively borrowed; the setter reads exactly
        // SET_WIDE_WORDS[index] words, which `words` holds.
        unsafe { f(self.0.as_ptr(), words.as_ptr()) };
        true
    }

    /// Reads wide output `index` into a new vector of its 32-bit words.
    pub(crate) fn get_wide(&self, index: usize) -> Vec<u32> {
        let mut words = vec![0u32; GET_WIDE_WORDS[index]];
        let f = GET_WIDE[index];
        // SAFETY: the model is live; the getter writes exactly GET_WIDE_WORDS[index] words, which
        // `words` holds.
        unsafe { f(self.0.as_ptr(), words.as_mut_ptr()) };
        words
    }

    pub(crate) fn trace_open(&mut self, path: &CStr) -> TraceOpen {
        // SAFETY: the model is live and exclusively borrowed; path is NUL-terminated and outlives the
        // call (Verilator copies the name).
        match unsafe { caq_sim_trace_open(self.0.as_ptr(), path.as_ptr()) } {
            0 => TraceOpen::Opened,
            1 => TraceOpen::NotCompiledIn,
            _ => TraceOpen::CannotOpen,
        }
    }

    pub(crate) fn trace_close(&mut self) {
        // SAFETY: as in `eval`; closing without an open trace is a no-op in the shim.
        unsafe { caq_sim_trace_close(self.0.as_ptr()) }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the model is live and this is its only owner; it is not used after this call.
        unsafe { caq_sim_delete(self.0.as_ptr()) }
    }
}
