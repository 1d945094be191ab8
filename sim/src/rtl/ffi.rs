//! The C ABI of the shim (`shim.rs`) in a loaded model library: [`Symbols`], the shim's functions
//! resolved once at load, and [`Handle`], the one owner of a model pointer. All of caq-sim's
//! `unsafe` is in this file; everything above it is safe Rust.
//!
//! The shim's functions are `noexcept`: a C++ exception (only `std::bad_alloc` is possible) terminates
//! the process instead of unwinding into Rust. Libraries are never unloaded (see [`Symbols::load`]).

use std::ffi::{CStr, c_char};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::{Mutex, PoisonError};

use super::port::PortDir;
use super::shim::SHIM_VERSION;

/// The shim's model state (context, verilated top, trace file); opaque here.
#[repr(C)]
pub(crate) struct CaqSim {
    _opaque: [u8; 0],
}

/// One entry of the shim's port table.
#[repr(C)]
struct CaqPort {
    name: *const c_char,
    dir: u32,
    width: u32,
}

/// The shim's functions, resolved from one loaded library.
#[derive(Clone, Copy)]
pub(crate) struct Symbols {
    new: unsafe extern "C" fn(i32) -> *mut CaqSim,
    delete: unsafe extern "C" fn(*mut CaqSim),
    eval: unsafe extern "C" fn(*mut CaqSim),
    tick_n: unsafe extern "C" fn(*mut CaqSim, u64),
    clear_inputs: unsafe extern "C" fn(*mut CaqSim),
    trace_open: unsafe extern "C" fn(*mut CaqSim, *const c_char) -> i32,
    trace_close: unsafe extern "C" fn(*mut CaqSim),
    set: unsafe extern "C" fn(*mut CaqSim, u32, u64),
    get: unsafe extern "C" fn(*const CaqSim, u32) -> u64,
    set_wide: unsafe extern "C" fn(*mut CaqSim, u32, *const u32),
    get_wide: unsafe extern "C" fn(*const CaqSim, u32, *mut u32),
}

/// What a library reports about itself at load.
pub(crate) struct Loaded {
    pub symbols: Symbols,
    /// (name, direction, width) per port, in table order.
    pub ports: Vec<(String, PortDir, u32)>,
    /// 0: none, 1: VCD, 2: FST.
    pub trace_format: u32,
}

impl Symbols {
    /// Loads the model library at `path` (`RTLD_NOW | RTLD_LOCAL`: every symbol resolved now, none
    /// visible to other libraries) and resolves the shim's functions and port table.
    ///
    /// The library is never closed: the Verilator runtime registers thread-local destructors, and
    /// unloading code a thread may still call at exit is undefined; a process loads a handful of
    /// models, so keeping them costs little.
    pub(crate) fn load(path: &Path) -> Result<Loaded, String> {
        use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
        // SAFETY: the library is one this crate built from the shim and Verilator's runtime; its
        // initialisers are C++ static constructors with no preconditions. It is never unloaded
        // (forgotten below), so its termination routines only run at process exit.
        let lib = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }
            .map_err(|e| format!("dlopen: {e}"))?;
        macro_rules! sym {
            ($name:literal) => {
                // SAFETY: the symbol is a function the shim exports with exactly the signature of
                // the field it is stored in (both are written in this crate, checked by the shim
                // version below before any is called).
                *unsafe { lib.get(concat!($name, "\0").as_bytes()) }
                    .map_err(|e| format!("symbol `{}`: {e}", $name))?
            };
        }
        let version: unsafe extern "C" fn() -> u32 = sym!("caq_sim_shim_version");
        // SAFETY: a function without arguments returning a constant.
        let found = unsafe { version() };
        if found != SHIM_VERSION {
            return Err(format!(
                "the library's shim is version {found}, this caq-sim loads version {SHIM_VERSION}"
            ));
        }
        let ports_fn: unsafe extern "C" fn(*mut u32) -> *const CaqPort = sym!("caq_sim_ports");
        let trace_fn: unsafe extern "C" fn() -> u32 = sym!("caq_sim_trace_format");
        let mut count = 0u32;
        // SAFETY: the shim writes the table's length and returns a pointer to a static array of
        // that many entries, each with a static NUL-terminated name.
        let table = unsafe {
            let ptr = ports_fn(&mut count);
            std::slice::from_raw_parts(ptr, count as usize)
        };
        let ports = table
            .iter()
            .map(|p| {
                // SAFETY: see above: a static NUL-terminated string literal.
                let name = unsafe { CStr::from_ptr(p.name) };
                let dir = if p.dir == 0 {
                    PortDir::In
                } else {
                    PortDir::Out
                };
                (name.to_string_lossy().into_owned(), dir, p.width)
            })
            .collect();
        let symbols = Symbols {
            new: sym!("caq_sim_new"),
            delete: sym!("caq_sim_delete"),
            eval: sym!("caq_sim_eval"),
            tick_n: sym!("caq_sim_tick_n"),
            clear_inputs: sym!("caq_sim_clear_inputs"),
            trace_open: sym!("caq_sim_trace_open"),
            trace_close: sym!("caq_sim_trace_close"),
            set: sym!("caq_sim_set"),
            get: sym!("caq_sim_get"),
            set_wide: sym!("caq_sim_set_wide"),
            get_wide: sym!("caq_sim_get_wide"),
        };
        // SAFETY: a function without arguments returning a constant.
        let trace_format = unsafe { trace_fn() };
        // Never unloaded: the function pointers above stay valid for the life of the process.
        std::mem::forget(lib);
        Ok(Loaded {
            symbols,
            ports,
            trace_format,
        })
    }
}

/// What `caq_sim_trace_open` reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TraceOpen {
    Opened,
    NotCompiledIn,
    CannotOpen,
}

/// An owned model. Never null, never shared: `&mut self` for everything that changes the model.
pub(crate) struct Handle {
    ptr: NonNull<CaqSim>,
    f: &'static Symbols,
}

// SAFETY: a Handle exclusively owns its VerilatedContext and model, and nothing in them is tied to the
// creating thread: every shim entry point that evaluates the model first rebinds Verilator's
// thread-local context pointer to this model's context. Handle is not Sync (raw pointer), so two
// threads never call into the same model at once.
unsafe impl Send for Handle {}

impl Handle {
    /// A new model whose `--x-initial unique` values come from `seed` (0 is not allowed: Verilator
    /// reads it as "seed from the clock").
    pub(crate) fn new(f: &'static Symbols, seed: i32) -> Handle {
        // Verilator's random generator is per thread but reseeds whenever any context anywhere sets
        // a seed; a model built while another thread seeds its own would start from a mix of both
        // sequences. Building one model at a time keeps the initial state a function of the seed.
        static CONSTRUCTION: Mutex<()> = Mutex::new(());
        let _one_at_a_time = CONSTRUCTION.lock().unwrap_or_else(PoisonError::into_inner);
        // SAFETY: caq_sim_new has no preconditions; it returns a new object or terminates.
        let raw = unsafe { (f.new)(seed) };
        match NonNull::new(raw) {
            Some(ptr) => Handle { ptr, f },
            // `new` in C++ does not return null; a null here means the shim is broken.
            None => std::process::abort(),
        }
    }

    pub(crate) fn eval(&mut self) {
        // SAFETY: self.ptr is a live model of the library self.f came from, owned exclusively by
        // this Handle.
        unsafe { (self.f.eval)(self.ptr.as_ptr()) }
    }

    pub(crate) fn tick_n(&mut self, n: u64) {
        // SAFETY: as in `eval`.
        unsafe { (self.f.tick_n)(self.ptr.as_ptr(), n) }
    }

    pub(crate) fn clear_inputs(&mut self) {
        // SAFETY: as in `eval`.
        unsafe { (self.f.clear_inputs)(self.ptr.as_ptr()) }
    }

    /// Drives the narrow input at table `index`; the shim masks the value to the port's width and
    /// ignores an index of any other kind of port.
    pub(crate) fn set(&mut self, index: u32, value: u64) {
        // SAFETY: as in `eval`; the setter reads no memory but the model.
        unsafe { (self.f.set)(self.ptr.as_ptr(), index, value) }
    }

    /// Reads the narrow port at table `index`, zero-extended.
    pub(crate) fn get(&self, index: u32) -> u64 {
        // SAFETY: the model is live; getters only read it.
        unsafe { (self.f.get)(self.ptr.as_ptr(), index) }
    }

    /// Drives the wide input at table `index` from its words; `words` must hold exactly the port's
    /// word count (the caller, `RtlModel`, checks it against the port table).
    pub(crate) fn set_wide(&mut self, index: u32, words: &[u32]) {
        // SAFETY: the model is live and exclusively borrowed; the setter reads exactly as many
        // words as the port has, which `words` holds (checked by the caller).
        unsafe { (self.f.set_wide)(self.ptr.as_ptr(), index, words.as_ptr()) }
    }

    /// Reads the wide port at table `index` into `words`, which holds exactly its word count.
    pub(crate) fn get_wide(&self, index: u32, words: &mut [u32]) {
        // SAFETY: the model is live; the getter writes exactly as many words as the port has,
        // which `words` holds (checked by the caller).
        unsafe { (self.f.get_wide)(self.ptr.as_ptr(), index, words.as_mut_ptr()) }
    }

    pub(crate) fn trace_open(&mut self, path: &CStr) -> TraceOpen {
        // SAFETY: the model is live and exclusively borrowed; path is NUL-terminated and outlives the
        // call (Verilator copies the name).
        match unsafe { (self.f.trace_open)(self.ptr.as_ptr(), path.as_ptr()) } {
            0 => TraceOpen::Opened,
            1 => TraceOpen::NotCompiledIn,
            _ => TraceOpen::CannotOpen,
        }
    }

    pub(crate) fn trace_close(&mut self) {
        // SAFETY: as in `eval`; closing without an open trace is a no-op in the shim.
        unsafe { (self.f.trace_close)(self.ptr.as_ptr()) }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the model is live and this is its only owner; it is not used after this call.
        unsafe { (self.f.delete)(self.ptr.as_ptr()) }
    }
}
