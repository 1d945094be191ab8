//! libcaq: the C ABI of caq's driver, for C and C++ applications on the board (docs/bindings.md).
//! A thin layer over `caq_driver::handle::Handle`: every function checks its pointers and
//! lengths, runs the call with panics caught, and returns a [`CaqStatus`]; on failure
//! [`caq_last_error`] gives the message `caq` would print, for the calling thread. No panic
//! crosses the boundary. The header, `include/caq.h`, is generated from this file by cbindgen.

#![allow(non_camel_case_types)]

use caq_driver::HostError;
use caq_driver::accel::{AdaptiveInference, EnergyReading, InferenceReport};
use caq_driver::handle::{self, AdaptiveKind, ErrorClass, Handle, MeterKind, ModelInfo};
use std::cell::RefCell;
use std::ffi::{CStr, CString, OsStr, c_char, c_int};
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Duration;

/// What a call returned. `CAQ_OK` is 0; on any other status `caq_last_error()` says what went
/// wrong.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaqStatus {
    CAQ_OK = 0,
    /// A value the caller passed: a null pointer, a wrong length, an unknown gate, bits the model
    /// does not have, a call that needs a loaded model before one is loaded.
    CAQ_ERR_ARGUMENT = 1,
    /// No such device or file.
    CAQ_ERR_NOT_FOUND = 2,
    /// A file caq reads (bundle, config) is malformed, of another version or corrupt.
    CAQ_ERR_FILE = 3,
    /// The accelerator misbehaved or is not the one expected (error status, timeout, wrong
    /// bitstream, PL not programmed).
    CAQ_ERR_DEVICE = 4,
    /// The operating system refused access.
    CAQ_ERR_PERMISSION = 5,
    /// Another process holds the accelerator.
    CAQ_ERR_BUSY = 6,
    /// Not enough DMA memory.
    CAQ_ERR_MEMORY = 7,
    /// Another I/O error.
    CAQ_ERR_IO = 8,
    /// A backend this build of libcaq does not have.
    CAQ_ERR_UNSUPPORTED = 9,
    /// A bug in libcaq (a Rust panic, caught at the boundary); the handle should be closed.
    CAQ_ERR_INTERNAL = 10,
}

impl From<ErrorClass> for CaqStatus {
    fn from(c: ErrorClass) -> CaqStatus {
        match c {
            ErrorClass::Argument => CaqStatus::CAQ_ERR_ARGUMENT,
            ErrorClass::NotFound => CaqStatus::CAQ_ERR_NOT_FOUND,
            ErrorClass::File => CaqStatus::CAQ_ERR_FILE,
            ErrorClass::Device => CaqStatus::CAQ_ERR_DEVICE,
            ErrorClass::Permission => CaqStatus::CAQ_ERR_PERMISSION,
            ErrorClass::Busy => CaqStatus::CAQ_ERR_BUSY,
            ErrorClass::Memory => CaqStatus::CAQ_ERR_MEMORY,
            ErrorClass::Io => CaqStatus::CAQ_ERR_IO,
        }
    }
}

/// Where `caq_attach_meter` takes the energy of an inference from.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaqMeter {
    /// No energy figure (the report's energy is NaN).
    CAQ_METER_NONE = 0,
    /// The energy model over the accelerator's performance counters.
    CAQ_METER_MODEL = 1,
    /// The board's power sensors (hwmon); an error where the board has none.
    CAQ_METER_HWMON = 2,
    /// The sensors where there are some, else the model.
    CAQ_METER_AUTO = 3,
}

/// Which of a context class's input-adaptive policies `caq_infer_adaptive` runs.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaqAdaptiveKind {
    /// The confidence cascade: the cheapest stage first, re-run from the first changed layer
    /// while the output is not confident enough.
    CAQ_ADAPTIVE_CASCADE = 0,
    /// The gate network: the first layer's output picks the setting of the rest.
    CAQ_ADAPTIVE_NETWORK = 1,
}

/// What one inference cost.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CaqReport {
    /// Host wall time from writing the input to reading the output, in ns.
    pub latency_ns: u64,
    /// The device's cycle count at the config's clock, in ns.
    pub device_time_ns: u64,
    /// The accelerator's performance counters summed over the inference.
    pub cycles: u64,
    pub busy_cycles: u64,
    pub stall_cycles: u64,
    pub plane_ops: u64,
    pub bytes_rd: u64,
    pub bytes_wr: u64,
    /// Energy of the inference in joules; NaN without a meter.
    pub energy_j: f64,
    /// `energy_j` minus idle power × duration; NaN where the meter does not know the idle power.
    pub dynamic_energy_j: f64,
    /// 0: no energy figure; 1: from the energy model (an estimate); 2: measured by a sensor.
    pub energy_source: c_int,
}

/// What the loaded model takes and gives.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CaqModelInfo {
    /// Input codes per inference: channels × height × width, CHW order, one byte each.
    pub input_len: usize,
    pub input_channels: usize,
    pub input_height: usize,
    pub input_width: usize,
    /// The input quantizer: `code = clamp(round(x / input_scale), 0, 2^input_bits − 1)`, rounding
    /// half away from zero (what `caq_infer_f32` applies).
    pub input_scale: f32,
    pub input_bits: u8,
    /// Output codes per inference; `real = code × output_scale`.
    pub output_len: usize,
    pub output_scale: f32,
    pub output_bits: u8,
    pub output_signed: bool,
    /// Weight layers: the length of a per-layer bit setting (`caq_set_bits`).
    pub weight_layers: usize,
    /// The nesting levels, descending, in `levels[0..level_count]`.
    pub level_count: usize,
    pub levels: [u8; 8],
    /// Gates stored in the bundle (`caq_gate_name`).
    pub gate_count: usize,
}

/// An accelerator with at most one model loaded. Opaque; from `caq_open_uio` or `caq_open_sim`,
/// released with `caq_close`. Not thread-safe: one thread at a time per handle.
pub struct caq_accel {
    handle: Handle,
    /// The gates' names as C strings, made at load.
    gate_names: Vec<CString>,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// A failed call: its status and message.
struct Fail {
    status: CaqStatus,
    message: String,
}

impl Fail {
    fn arg(message: impl Into<String>) -> Fail {
        Fail {
            status: CaqStatus::CAQ_ERR_ARGUMENT,
            message: message.into(),
        }
    }
}

impl From<HostError> for Fail {
    fn from(e: HostError) -> Fail {
        Fail {
            status: ErrorClass::of(&e).into(),
            message: handle::message(&e),
        }
    }
}

fn set_last_error(message: &str) {
    // An interior NUL cannot be represented in a C string: shown as U+FFFD.
    let c = CString::new(message.replace('\0', "\u{fffd}")).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = c);
}

/// Runs `f` with panics caught: the status, with the message stored for `caq_last_error`.
fn guard(name: &str, f: impl FnOnce() -> Result<(), Fail>) -> CaqStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            set_last_error("");
            CaqStatus::CAQ_OK
        }
        Ok(Err(fail)) => {
            set_last_error(&format!("{name}: {}", fail.message));
            fail.status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!(
                "{name}: internal error (a bug in libcaq; please report it): {what}"
            ));
            CaqStatus::CAQ_ERR_INTERNAL
        }
    }
}

/// A C string argument as a path (any bytes but NUL, as Unix paths are).
unsafe fn path_arg<'a>(p: *const c_char, what: &str) -> Result<&'a Path, Fail> {
    if p.is_null() {
        return Err(Fail::arg(format!("{what} is NULL; expected a path")));
    }
    // SAFETY: the caller passes a NUL-terminated string (checked non-null above).
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    Ok(Path::new(OsStr::from_bytes(bytes)))
}

/// An optional C string argument as UTF-8 text (NULL: `None`).
unsafe fn opt_str_arg<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, Fail> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller passes a NUL-terminated string (checked non-null above).
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map(Some)
        .map_err(|_| Fail::arg(format!("{what} is not UTF-8")))
}

unsafe fn accel<'a>(acc: *mut caq_accel) -> Result<&'a mut caq_accel, Fail> {
    // SAFETY: the caller passes a handle from caq_open_* that it has not closed, or NULL.
    unsafe { acc.as_mut() }.ok_or_else(|| Fail::arg("the accelerator handle is NULL"))
}

fn out_ptr<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, Fail> {
    // SAFETY: the caller passes a writable pointer to a T, or NULL.
    unsafe { p.as_mut() }.ok_or_else(|| Fail::arg(format!("{what} is NULL")))
}

/// `len` elements at `p`; NULL is allowed only for zero elements.
unsafe fn slice_arg<'a, T>(p: *const T, len: usize, what: &str) -> Result<&'a [T], Fail> {
    if p.is_null() {
        if len == 0 {
            return Ok(&[]);
        }
        return Err(Fail::arg(format!("{what} is NULL with length {len}")));
    }
    // SAFETY: the caller passes `len` readable elements at `p`.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

fn open(out: *mut *mut caq_accel, handle: Handle) -> Result<(), Fail> {
    let out = out_ptr(out, "out")?;
    *out = Box::into_raw(Box::new(caq_accel {
        handle,
        gate_names: Vec::new(),
    }));
    Ok(())
}

/// libcaq's version (the caq workspace version), a static string.
#[unsafe(no_mangle)]
pub extern "C" fn caq_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The message of the calling thread's last failed call ("" after a call that succeeded). Valid
/// until the thread's next libcaq call; copy it to keep it.
#[unsafe(no_mangle)]
pub extern "C" fn caq_last_error() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().as_ptr())
}

/// The name of a `caq_status` value (`"CAQ_ERR_FILE"`), a static string.
#[unsafe(no_mangle)]
pub extern "C" fn caq_status_name(status: c_int) -> *const c_char {
    let s: &'static str = match status {
        0 => "CAQ_OK\0",
        1 => "CAQ_ERR_ARGUMENT\0",
        2 => "CAQ_ERR_NOT_FOUND\0",
        3 => "CAQ_ERR_FILE\0",
        4 => "CAQ_ERR_DEVICE\0",
        5 => "CAQ_ERR_PERMISSION\0",
        6 => "CAQ_ERR_BUSY\0",
        7 => "CAQ_ERR_MEMORY\0",
        8 => "CAQ_ERR_IO\0",
        9 => "CAQ_ERR_UNSUPPORTED\0",
        10 => "CAQ_ERR_INTERNAL\0",
        _ => "(not a caq_status)\0",
    };
    s.as_ptr().cast()
}

/// Opens the board's accelerator generated from the accelerator config file `config` (TOML):
/// the UIO device named `uio_name` ("caq" when NULL) with the u-dma-buf `udmabuf` ("udmabuf-caq"
/// when NULL) as its memory. Checks the PL is programmed, locks the device, and checks its ID,
/// register-map version and config hash. On success `*out` holds the handle.
///
/// # Safety
/// `config` is a NUL-terminated path; `uio_name` and `udmabuf` are NUL-terminated or NULL;
/// `out` points to writable storage for a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caq_open_uio(
    config: *const c_char,
    uio_name: *const c_char,
    udmabuf: *const c_char,
    out: *mut *mut caq_accel,
) -> CaqStatus {
    guard("caq_open_uio", || {
        // SAFETY: forwarded from the caller's contract.
        let (config, uio, udma) = unsafe {
            (
                path_arg(config, "config")?,
                opt_str_arg(uio_name, "uio_name")?,
                opt_str_arg(udmabuf, "udmabuf")?,
            )
        };
        open(out, Handle::open_uio(config, uio, udma)?)
    })
}

/// Opens the functional model of the accelerator generated from `config` (bit-exact with the RTL,
/// cycle counts from its timing model): an application runs unchanged without a board.
/// `CAQ_ERR_UNSUPPORTED` where libcaq was built without it (feature `sim`).
///
/// # Safety
/// `config` is a NUL-terminated path; `out` points to writable storage for a handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caq_open_sim(
    config: *const c_char,
    out: *mut *mut caq_accel,
) -> CaqStatus {
    guard("caq_open_sim", || {
        // SAFETY: forwarded from the caller's contract.
        let config = unsafe { path_arg(config, "config")? };
        #[cfg(feature = "sim")]
        {
            open(out, Handle::open_sim(config)?)
        }
        #[cfg(not(feature = "sim"))]
        {
            let _ = (config, out);
            Err(Fail {
                status: CaqStatus::CAQ_ERR_UNSUPPORTED,
                message: "this libcaq was built without the functional model (feature `sim`)"
                    .into(),
            })
        }
    })
}

/// Releases the handle (NULL is ignored). The device is reset and unlocked.
///
/// # Safety
/// `acc` is a handle from `caq_open_*` not closed before, or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caq_close(acc: *mut caq_accel) {
    if acc.is_null() {
        return;
    }
    // A panic in a destructor must not unwind into C either.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the caller gives back a handle from Box::into_raw, once.
        drop(unsafe { Box::from_raw(acc) });
    }));
}

/// Loads the bundle (`.caqb`) at `path`, replacing any model loaded. Every layer starts at its
/// lowest level (the smallest footprint): switch with `caq_apply_gate` or `caq_set_bits`.
///
/// # Safety
/// `acc` is an open handle; `path` is a NUL-terminated path.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caq_load_bundle(acc: *mut caq_accel, path: *const c_char) -> CaqStatus {
    guard("caq_load_bundle", || {
        // SAFETY: forwarded from the caller's contract.
        let (a, path) = unsafe { (accel(acc)?, path_arg(path, "path")?) };
        a.gate_names.clear();
        a.handle.load_bundle(path)?;
        a.gate_names = a
            .handle
            .gates()?
            .iter()
            .map(|g| CString::new(g.name.as_str()).unwrap_or_default())
            .collect();
        Ok(())
    })
}

fn info_of(i: &ModelInfo, gates: usize) -> CaqModelInfo {
    let mut levels = [0u8; 8];
    for (slot, &l) in levels.iter_mut().zip(&i.levels) {
        *slot = l;
    }
    CaqModelInfo {
        input_len: i.input_len,
        input_channels: i.input_shape[0],
        input_height: i.input_shape[1],
        input_width: i.input_shape[2],
        input_scale: i.input_quant.scale,
        input_bits: i.input_quant.bits,
        output_len: i.output_len,
        output_scale: i.output_quant.scale,
        output_bits: i.output_quant.bits,
        output_signed: i.output_quant.signed,
        weight_layers: i.weight_layers,
        level_count: i.levels.len().min(8),
        levels,
        gate_count: gates,
    }
}

/// Fills `*out` with what the loaded model takes and gives.
///
/// # Safety
/// `acc` is an open handle; `out` points to a writable `caq_model_info`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caq_get_model_info(
    acc: *mut caq_accel,
    out: *mut CaqModelInfo,
) -> CaqStatus {
    guard("caq_get_model_info", || {
        // SAFETY: forwarded from the caller's contract.
        let a = unsafe { accel(acc)? };
        let info = a.handle.info()?;
        *out_ptr(out, "out")? = info_of(&info, a.gate_names.len());
        Ok(())
    })
}

/// Sets `*name` to the name of the bundle's gate number `index` (0-based, below
/// `caq_get_model_info`'s `gate_count`). The string belongs to the handle: valid until the next
/// `caq_load_bundle` or `caq_close`.
///
/// # Safety
/// `acc` is an open handle; `name` points to writable storage for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caq_gate_name(
    acc: *mut caq_accel,
    index: usize,
    name: *mut *const c_char,
) -> CaqStatus {
    guard("caq_gate_name", || {
        // SAFETY: forwarded from the caller's contract.
        let a = unsafe { accel(acc)? };
        let n = a.gate_names.len();
        let s = a.gate_names.get(index).ok_or_else(|| {
            Fail::arg(format!(
                "gate index {index}: the loaded bundle has {n} gates"
            ))
        })?;
        *out_ptr(name, "name")? = s.as_ptr();
        Ok(())
    })
}

/// Switches to the bundle's gate called `name` (the per-layer bits a gate network chose for a
/// context class).
///
/// # Safety
/// `acc` is an open handle; `name` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caq_apply_gate(acc: *mut caq_accel, name: *const c_char) -> CaqStatus {
    guard("caq_apply_gate", || {
        // SAFETY: forwarded from the caller's contract.
        let (a, name) = unsafe { (accel(acc)?, opt_str_arg(name, "name")?) };
        let name = name.ok_or_else(|| Fail::arg("name is NULL; expected a gate name"))?;
        a.handle.apply_gate(name)?;
        Ok(())
    })
}

/// Switches every weight layer to its bits: `bits[i]` for weight layer `i`, `len` equal to
/// `caq_get_model_info`'s `weight_layers`, each one of the model's levels.
///
/// # Safety
/// `acc` is an open handle; `bits` points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caq_set_bits(
    acc: *mut caq_accel,
    bits: *const u8,
    len: usize,
) -> CaqStatus {
    guard("caq_set_bits", || {
        // SAFETY: forwarded from the caller's contract.
        let (a, bits) = unsafe { (accel(acc)?, slice_arg(bits, len, "bits")?) };
        a.handle.set_bits(bits)?;
        Ok(())
    })
}

/// Writes the active bits of every weight layer to `bits[0..len]`; `len` must be
/// `weight_layers`.
///
/// # Safety
/// `acc` is an open handle; `bits` points to `len` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caq_get_bits(acc: *mut caq_accel, bits: *mut u8, len: usize) -> CaqStatus {
    guard("caq_get_bits", || {
        // SAFETY: forwarded from the caller's contract.
        let a = unsafe { accel(acc)? };
        let now = a.handle.bits()?;
        if len != now.len() || bits.is_null() {
            return Err(Fail::arg(format!(
                "bits holds {len} entries{}; the model has {} weight layers",
                if bits.is_null() { " and is NULL" } else { "" },
                now.len()
            )));
        }
        // SAFETY: `len` writable bytes at `bits` (caller's contract), checked non-null.
        unsafe { std::slice::from_raw_parts_mut(bits, len) }.copy_from_slice(&now);
        Ok(())
    })
}

/// Measures the energy of every later inference (the report's `energy_j`) with a meter of kind
/// `meter` (a `caq_meter`). With a power sensor, the idle power is measured first for
/// `idle_window_s` seconds (keep the accelerator idle meanwhile) and subtracted in
/// `dynamic_energy_j`.
///
/// # Safety
/// `acc` is an open handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caq_attach_meter(
    acc: *mut caq_accel,
    meter: c_int,
    idle_window_s: f64,
) -> CaqStatus {
    guard("caq_attach_meter", || {
        // SAFETY: forwarded from the caller's contract.
        let a = unsafe { accel(acc)? };
        let kind = match meter {
            0 => MeterKind::None,
            1 => MeterKind::Model,
            2 => MeterKind::Hwmon,
            3 => MeterKind::Auto,
            m => {
                return Err(Fail::arg(format!(
                    "meter {m}: expected CAQ_METER_NONE (0), _MODEL (1), _HWMON (2) or _AUTO (3)"
                )));
            }
        };
        a.handle
            .attach_meter(kind, handle::idle_window(idle_window_s)?)?;
        Ok(())
    })
}

/// A report's energy fields: total, dynamic (NaN where unknown) and `energy_source`.
fn energy_of(e: Option<&EnergyReading>) -> (f64, f64, c_int) {
    match e {
        None => (f64::NAN, f64::NAN, 0),
        Some(e) => (
            e.total_j,
            e.dynamic_j.unwrap_or(f64::NAN),
            if e.source == caq_driver::energy::MODEL_SOURCE {
                1
            } else {
                2
            },
        ),
    }
}

fn report_of(r: &InferenceReport) -> CaqReport {
    report_from(
        r.latency,
        r.device_time,
        r.device.to_array(),
        r.energy.as_ref(),
    )
}

/// A report from its parts: the counters in the register map's order (`PerfCounters::to_array`).
fn report_from(
    latency: Duration,
    device_time: Duration,
    counters: [u64; 6],
    energy: Option<&EnergyReading>,
) -> CaqReport {
    let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let [
        cycles,
        busy_cycles,
        stall_cycles,
        plane_ops,
        bytes_rd,
        bytes_wr,
    ] = counters;
    let (energy_j, dynamic_energy_j, energy_source) = energy_of(energy);
    CaqReport {
        latency_ns: ns(latency),
        device_time_ns: ns(device_time),
        cycles,
        busy_cycles,
        stall_cycles,
        plane_ops,
        bytes_rd,
        bytes_wr,
        energy_j,
        dynamic_energy_j,
        energy_source,
    }
}

/// The report of an adaptive inference: its passes' counters, latency and energy together.
fn adaptive_report_of(r: &AdaptiveInference) -> CaqReport {
    report_from(
        r.latency,
        r.device_time,
        r.device.to_array(),
        r.energy.as_ref(),
    )
}

/// The model's output length, checked against the caller's buffer.
fn output_room(a: &caq_accel, output: *mut i32, output_len: usize) -> Result<usize, Fail> {
    let need = a.handle.output_len()?;
    if output.is_null() || output_len < need {
        return Err(Fail::arg(format!(
            "output holds {output_len} codes{}; the model gives {need}",
            if output.is_null() { " and is NULL" } else { "" }
        )));
    }
    Ok(need)
}

/// Checks the output buffer, runs `infer`, writes the codes and the report.
fn infer_into(
    a: &mut caq_accel,
    output: *mut i32,
    output_len: usize,
    report: *mut CaqReport,
    infer: impl FnOnce(&mut Handle) -> Result<caq_driver::handle::Output, HostError>,
) -> Result<(), Fail> {
    let need = output_room(a, output, output_len)?;
    let out = infer(&mut a.handle)?;
    // SAFETY: `output_len` ≥ `need` writable i32 at `output` (caller's contract), non-null.
    unsafe { std::slice::from_raw_parts_mut(output, need) }.copy_from_slice(&out.codes);
    // SAFETY: the caller passes a writable report or NULL.
    if let Some(r) = unsafe { report.as_mut() } {
        *r = report_of(&out.report);
    }
    Ok(())
}

/// Runs one inference on input codes (`input_len` bytes, CHW) and writes the output codes to
/// `output[0..output_len]` (`output_len` at least the model's) and, when `report` is not NULL,
/// what it cost.
///
/// # Safety
/// `acc` is an open handle; `input` points to `input_len` readable bytes; `output` to
/// `output_len` writable `int32_t`; `report` to a writable `caq_report` or is NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caq_infer(
    acc: *mut caq_accel,
    input: *const u8,
    input_len: usize,
    output: *mut i32,
    output_len: usize,
    report: *mut CaqReport,
) -> CaqStatus {
    guard("caq_infer", || {
        // SAFETY: forwarded from the caller's contract.
        let (a, input) = unsafe { (accel(acc)?, slice_arg(input, input_len, "input")?) };
        infer_into(a, output, output_len, report, |h| h.infer_codes(input))
    })
}

/// As `caq_infer`, on real-valued input quantized with the model's input quantizer
/// (`caq_get_model_info`'s `input_scale`).
///
/// # Safety
/// As `caq_infer`, with `input` pointing to `input_len` readable floats.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caq_infer_f32(
    acc: *mut caq_accel,
    input: *const f32,
    input_len: usize,
    output: *mut i32,
    output_len: usize,
    report: *mut CaqReport,
) -> CaqStatus {
    guard("caq_infer_f32", || {
        // SAFETY: forwarded from the caller's contract.
        let (a, input) = unsafe { (accel(acc)?, slice_arg(input, input_len, "input")?) };
        infer_into(a, output, output_len, report, |h| h.infer_f32(input))
    })
}

/// One input-adaptive inference on input codes under the loaded bundle's policy `kind`
/// (`CAQ_ADAPTIVE_CASCADE` or `CAQ_ADAPTIVE_NETWORK`) for context class `class_name` (built by
/// `caq gate --adaptive`): the setting follows from this input's own outputs, with every setting
/// of the policy kept resident, so a switch rewrites descriptors only. Writes the output codes
/// as `caq_infer` does, the report summed over every pass (re-runs included) when `report` is
/// not NULL, and, when `bits` is not NULL, the per-layer bits of the setting that made the
/// output (`bits_len` at least `caq_get_model_info`'s `weight_layers`). The accelerator stays at
/// that setting afterwards.
///
/// # Safety
/// As `caq_infer`; `class_name` is NUL-terminated; `bits` points to `bits_len` writable bytes or is
/// NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caq_infer_adaptive(
    acc: *mut caq_accel,
    class_name: *const c_char,
    kind: c_int,
    input: *const u8,
    input_len: usize,
    output: *mut i32,
    output_len: usize,
    report: *mut CaqReport,
    bits: *mut u8,
    bits_len: usize,
) -> CaqStatus {
    guard("caq_infer_adaptive", || {
        // SAFETY: forwarded from the caller's contract.
        let (a, class, input) = unsafe {
            (
                accel(acc)?,
                opt_str_arg(class_name, "class_name")?,
                slice_arg(input, input_len, "input")?,
            )
        };
        let class =
            class.ok_or_else(|| Fail::arg("class_name is NULL; expected a context class"))?;
        let kind = match kind {
            0 => AdaptiveKind::Cascade,
            1 => AdaptiveKind::Network,
            k => {
                return Err(Fail::arg(format!(
                    "kind {k}: expected CAQ_ADAPTIVE_CASCADE (0) or CAQ_ADAPTIVE_NETWORK (1)"
                )));
            }
        };
        let layers = a.handle.info()?.weight_layers;
        if !bits.is_null() && bits_len < layers {
            return Err(Fail::arg(format!(
                "bits holds {bits_len} entries; the model has {layers} weight layers"
            )));
        }
        let need = output_room(a, output, output_len)?;
        let out = a.handle.infer_adaptive(input, class, kind)?;
        // SAFETY: `output_len` ≥ `need` writable i32 at `output` (caller's contract), non-null.
        unsafe { std::slice::from_raw_parts_mut(output, need) }.copy_from_slice(&out.codes);
        // SAFETY: the caller passes a writable report or NULL.
        if let Some(r) = unsafe { report.as_mut() } {
            *r = adaptive_report_of(&out.inference);
        }
        if !bits.is_null() {
            // SAFETY: `bits_len` ≥ `layers` writable bytes at `bits` (caller's contract).
            unsafe { std::slice::from_raw_parts_mut(bits, layers) }
                .copy_from_slice(&out.inference.bits);
        }
        Ok(())
    })
}
