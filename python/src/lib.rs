//! `caq._native`: the extension module behind the Python package `caq` (python/caq/), a thin
//! layer over `caq_driver::handle::Handle` — the same calls as the C ABI, with numpy arrays in and
//! out. Inputs are read straight from a C-contiguous numpy buffer; outputs are numpy arrays that
//! take over the driver's vector (no copy). Errors become exceptions of the class
//! `caq_driver::handle::ErrorClass` names; a panic becomes pyo3's `PanicException`, never an
//! abort. docs/bindings.md.

use caq_driver::HostError;
use caq_driver::accel::{EnergyReading, InferenceReport};
use caq_driver::context::{Context, ContextPolicy, ContextProbe, GateSelector};
use caq_driver::handle::{self, AdaptiveKind, ErrorClass, Handle, MeterKind};
use caq_driver::sys::SysRoot;
use caq_spec::PerfCounters;
use numpy::{PyArray1, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use std::path::PathBuf;
use std::time::Duration;

create_exception!(_native, CaqError, PyException, "Any error of caq.");
create_exception!(
    _native,
    ArgumentError,
    CaqError,
    "A value the caller passed: a wrong-length input, an unknown gate, bits the model does not have, a call before a model is loaded."
);
create_exception!(_native, NotFoundError, CaqError, "No such device or file.");
create_exception!(
    _native,
    FileFormatError,
    CaqError,
    "A file caq reads (bundle, config, policy) is malformed, of another version or corrupt."
);
create_exception!(
    _native,
    DeviceError,
    CaqError,
    "The accelerator misbehaved or is not the one expected."
);
create_exception!(
    _native,
    PermissionDeniedError,
    CaqError,
    "The operating system refused access."
);
create_exception!(
    _native,
    BusyError,
    CaqError,
    "Another process holds the accelerator."
);
create_exception!(_native, DmaMemoryError, CaqError, "Not enough DMA memory.");

fn to_py(e: HostError) -> PyErr {
    let msg = handle::message(&e);
    match ErrorClass::of(&e) {
        ErrorClass::Argument => ArgumentError::new_err(msg),
        ErrorClass::NotFound => NotFoundError::new_err(msg),
        ErrorClass::File => FileFormatError::new_err(msg),
        ErrorClass::Device => DeviceError::new_err(msg),
        ErrorClass::Permission => PermissionDeniedError::new_err(msg),
        ErrorClass::Busy => BusyError::new_err(msg),
        ErrorClass::Memory => DmaMemoryError::new_err(msg),
        ErrorClass::Io => CaqError::new_err(msg),
    }
}

/// Bits as Python ints (a `Vec<u8>` would become `bytes`).
fn ints(bits: &[u8]) -> Vec<u32> {
    bits.iter().map(|&b| u32::from(b)).collect()
}

/// What one inference cost.
#[pyclass(frozen, get_all, module = "caq")]
#[derive(Clone)]
pub struct Report {
    /// Host wall time from writing the input to reading the output, in seconds.
    latency_s: f64,
    /// The device's cycle count at the config's clock, in seconds.
    device_time_s: f64,
    cycles: u64,
    busy_cycles: u64,
    stall_cycles: u64,
    plane_ops: u64,
    bytes_rd: u64,
    bytes_wr: u64,
    /// Energy of the inference in joules; None without a meter.
    energy_j: Option<f64>,
    /// Energy minus idle power × duration; None where the meter does not know the idle power.
    dynamic_energy_j: Option<f64>,
    /// "model" for the energy model's estimate, "hwmon:…" for a sensor; None without a meter.
    energy_source: Option<String>,
}

#[pymethods]
impl Report {
    fn __repr__(&self) -> String {
        format!(
            "Report(cycles={}, latency_s={:.6}, device_time_s={:.6}, energy_j={:?}, energy_source={:?})",
            self.cycles, self.latency_s, self.device_time_s, self.energy_j, self.energy_source
        )
    }
}

fn report_of(r: &InferenceReport) -> Report {
    report_from(r.latency, r.device_time, &r.device, r.energy.as_ref())
}

fn report_from(
    latency: Duration,
    device_time: Duration,
    device: &PerfCounters,
    energy: Option<&EnergyReading>,
) -> Report {
    Report {
        latency_s: latency.as_secs_f64(),
        device_time_s: device_time.as_secs_f64(),
        cycles: device.cycles,
        busy_cycles: device.busy_cycles,
        stall_cycles: device.stall_cycles,
        plane_ops: device.plane_ops,
        bytes_rd: device.bytes_rd,
        bytes_wr: device.bytes_wr,
        energy_j: energy.map(|e| e.total_j),
        dynamic_energy_j: energy.and_then(|e| e.dynamic_j),
        energy_source: energy.map(|e| e.source.clone()),
    }
}

/// A caq accelerator (on the board, or its functional model) with at most one model loaded.
#[pyclass(unsendable, module = "caq")]
pub struct Accelerator {
    handle: Handle,
    last: Option<Report>,
}

#[pymethods]
impl Accelerator {
    /// Opens the board's accelerator generated from the config file `config`: the UIO device
    /// `uio_name` with the u-dma-buf `udmabuf` as its memory.
    #[staticmethod]
    #[pyo3(signature = (config, uio_name = None, udmabuf = None))]
    fn uio(config: PathBuf, uio_name: Option<&str>, udmabuf: Option<&str>) -> PyResult<Self> {
        Ok(Accelerator {
            handle: Handle::open_uio(&config, uio_name, udmabuf).map_err(to_py)?,
            last: None,
        })
    }

    /// Opens the functional model of the accelerator generated from `config` (bit-exact with
    /// the RTL): the same application runs without a board.
    #[staticmethod]
    fn sim(config: PathBuf) -> PyResult<Self> {
        #[cfg(feature = "sim")]
        {
            Ok(Accelerator {
                handle: Handle::open_sim(&config).map_err(to_py)?,
                last: None,
            })
        }
        #[cfg(not(feature = "sim"))]
        {
            let _ = config;
            Err(CaqError::new_err(
                "this caq was built without the functional model (feature `sim`)",
            ))
        }
    }

    /// "uio" or "sim".
    #[getter]
    fn backend(&self) -> &'static str {
        self.handle.backend_name()
    }

    /// The accelerator config's name.
    #[getter]
    fn config_name(&self) -> String {
        self.handle.config_name().to_string()
    }

    /// Loads a bundle (.caqb), every layer at its lowest level; switch with apply_gate or bits.
    fn load(&mut self, path: PathBuf) -> PyResult<()> {
        self.handle.load_bundle(&path).map_err(to_py)
    }

    /// What the loaded model takes and gives, as a dict.
    #[getter]
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let i = self.handle.info().map_err(to_py)?;
        let d = pyo3::types::PyDict::new(py);
        d.set_item(
            "input_shape",
            (i.input_shape[0], i.input_shape[1], i.input_shape[2]),
        )?;
        d.set_item("input_len", i.input_len)?;
        d.set_item("input_scale", i.input_quant.scale)?;
        d.set_item("input_bits", i.input_quant.bits)?;
        d.set_item("output_len", i.output_len)?;
        d.set_item("output_scale", i.output_quant.scale)?;
        d.set_item("output_bits", i.output_quant.bits)?;
        d.set_item("output_signed", i.output_quant.signed)?;
        d.set_item("weight_layers", i.weight_layers)?;
        d.set_item("levels", ints(&i.levels))?;
        Ok(d)
    }

    /// The bundle's gates: (name, per-layer bits) in the bundle's order.
    #[getter]
    fn gates(&self) -> PyResult<Vec<(String, Vec<u32>)>> {
        Ok(self
            .handle
            .gates()
            .map_err(to_py)?
            .iter()
            .map(|g| (g.name.clone(), ints(&g.bits)))
            .collect())
    }

    /// Switches to the bundle's gate called `name`.
    fn apply_gate(&mut self, name: &str) -> PyResult<()> {
        self.handle.apply_gate(name).map_err(to_py)
    }

    /// The active bits of every weight layer.
    #[getter]
    fn get_bits(&self) -> PyResult<Vec<u32>> {
        Ok(ints(&self.handle.bits().map_err(to_py)?))
    }

    /// Switches every weight layer to its bits (one entry per weight layer).
    #[setter]
    fn set_bits(&mut self, bits: Vec<u8>) -> PyResult<()> {
        self.handle.set_bits(&bits).map_err(to_py)
    }

    /// Measures the energy of every later inference: "model", "hwmon", "auto" or "none". With a
    /// sensor the idle power is measured first for `idle_window` seconds. Returns the source.
    #[pyo3(signature = (kind = "auto", idle_window = 1.0))]
    fn attach_meter(&mut self, kind: &str, idle_window: f64) -> PyResult<Option<String>> {
        let kind = MeterKind::from_name(kind).map_err(to_py)?;
        let window = handle::idle_window(idle_window).map_err(to_py)?;
        self.handle.attach_meter(kind, window).map_err(to_py)
    }

    /// One inference: `x` is a numpy array (or anything numpy turns into one) of input_len
    /// elements in CHW order, any shape. uint8 arrays are input codes; any other dtype holds
    /// real values, quantized with the model's input quantizer (as float32). Returns the output
    /// codes as an int32 array (`codes * info["output_scale"]` are the real outputs);
    /// `last_report` holds what it cost.
    fn infer<'py>(
        &mut self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<i32>>> {
        if let Ok(codes) = x.extract::<PyReadonlyArrayDyn<'py, u8>>() {
            return self.infer_codes(py, codes);
        }
        if let Ok(real) = x.extract::<PyReadonlyArrayDyn<'py, f32>>() {
            return self.infer_f32(py, real);
        }
        let as_f32 = py
            .import("numpy")?
            .call_method1("ascontiguousarray", (x, "float32"))?;
        self.infer_f32(py, as_f32.extract()?)
    }

    /// One inference on input codes (uint8, any shape of input_len elements, CHW order). Returns
    /// the output codes as an int32 array; `last_report` holds what it cost.
    fn infer_codes<'py>(
        &mut self,
        py: Python<'py>,
        x: PyReadonlyArrayDyn<'py, u8>,
    ) -> PyResult<Bound<'py, PyArray1<i32>>> {
        // A C-contiguous array is read in place; any other layout is gathered first.
        // (`as_slice` would also take a Fortran-ordered array, in the wrong order.)
        let contiguous = x.is_c_contiguous();
        let out = match x.as_slice() {
            Ok(s) if contiguous => self.handle.infer_codes(s),
            _ => {
                let v: Vec<u8> = x.as_array().iter().copied().collect();
                self.handle.infer_codes(&v)
            }
        };
        self.finish(py, out)
    }

    /// One inference on real-valued input (float32, any shape of input_len elements), quantized
    /// with the model's input quantizer.
    fn infer_f32<'py>(
        &mut self,
        py: Python<'py>,
        x: PyReadonlyArrayDyn<'py, f32>,
    ) -> PyResult<Bound<'py, PyArray1<i32>>> {
        // A C-contiguous array is read in place; any other layout is gathered first.
        // (`as_slice` would also take a Fortran-ordered array, in the wrong order.)
        let contiguous = x.is_c_contiguous();
        let out = match x.as_slice() {
            Ok(s) if contiguous => self.handle.infer_f32(s),
            _ => {
                let v: Vec<f32> = x.as_array().iter().copied().collect();
                self.handle.infer_f32(&v)
            }
        };
        self.finish(py, out)
    }

    /// One input-adaptive inference on input codes (uint8, any shape of input_len elements, CHW
    /// order) under the loaded bundle's policy `kind` ("cascade" or "network") for context class
    /// `class_name` (built by `caq gate --adaptive`): the setting follows from this input's own
    /// outputs. Returns the output codes (int32 array) and the per-layer bits of the setting that
    /// made them; `last_report` holds what every pass cost together (re-runs included).
    #[pyo3(signature = (x, class_name, kind = "cascade"))]
    fn infer_adaptive<'py>(
        &mut self,
        py: Python<'py>,
        x: PyReadonlyArrayDyn<'py, u8>,
        class_name: &str,
        kind: &str,
    ) -> PyResult<(Bound<'py, PyArray1<i32>>, Vec<u32>)> {
        let kind = AdaptiveKind::from_name(kind).map_err(|e| to_py(HostError::Model(e)))?;
        let input: Vec<u8> = x.as_array().iter().copied().collect();
        let out = self
            .handle
            .infer_adaptive(&input, class_name, kind)
            .map_err(to_py)?;
        let r = &out.inference;
        self.last = Some(report_from(
            r.latency,
            r.device_time,
            &r.device,
            r.energy.as_ref(),
        ));
        Ok((PyArray1::from_vec(py, out.codes), ints(&r.bits)))
    }

    /// What the last inference cost (None before the first).
    #[getter]
    fn last_report(&self) -> Option<Report> {
        self.last.clone()
    }
}

impl Accelerator {
    fn finish<'py>(
        &mut self,
        py: Python<'py>,
        out: Result<caq_driver::handle::Output, HostError>,
    ) -> PyResult<Bound<'py, PyArray1<i32>>> {
        let out = out.map_err(to_py)?;
        self.last = Some(report_of(&out.report));
        Ok(PyArray1::from_vec(py, out.codes))
    }
}

/// Reads the live context (battery, memory, temperature) from sysfs and procfs; returns it as
/// JSON (the package's `ContextProbe.read` turns it into a dict).
#[pyclass(name = "_ContextProbe", module = "caq")]
pub struct PyContextProbe {
    probe: ContextProbe,
}

#[pymethods]
impl PyContextProbe {
    #[new]
    #[pyo3(signature = (root = None))]
    fn new(root: Option<PathBuf>) -> Self {
        let root = root.map(SysRoot::new).unwrap_or_default();
        PyContextProbe {
            probe: ContextProbe::new(root),
        }
    }

    fn read_json(&mut self) -> PyResult<String> {
        serde_json::to_string(&self.probe.probe()).map_err(|e| CaqError::new_err(e.to_string()))
    }

    /// Sensors that could not be read in the last probe.
    fn warnings(&self) -> Vec<String> {
        self.probe.warnings().to_vec()
    }
}

/// Chooses a context class (and so a gate) for each context, with hysteresis.
#[pyclass(name = "_GateSelector", module = "caq")]
pub struct PyGateSelector {
    selector: GateSelector,
}

#[pymethods]
impl PyGateSelector {
    /// The selector of the policy file `policy` (TOML), or of the default policy.
    #[new]
    #[pyo3(signature = (policy = None))]
    fn new(policy: Option<PathBuf>) -> PyResult<Self> {
        let p = match policy {
            Some(path) => {
                ContextPolicy::load(&path).map_err(|e| FileFormatError::new_err(e.to_string()))?
            }
            None => ContextPolicy::default_policy(),
        };
        Ok(PyGateSelector {
            selector: GateSelector::new(p).map_err(|e| FileFormatError::new_err(e.to_string()))?,
        })
    }

    /// The class for the context given as JSON at time `t_s`: (class name, switched).
    fn select_json(&mut self, context_json: &str, t_s: f64) -> PyResult<(String, bool)> {
        let ctx: Context = serde_json::from_str(context_json)
            .map_err(|e| ArgumentError::new_err(format!("context: {e}")))?;
        let s = self.selector.select(t_s, &ctx);
        Ok((s.class, s.switched))
    }

    /// The policy's class names, in priority order.
    fn classes(&self) -> Vec<String> {
        self.selector
            .policy()
            .classes
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Accelerator>()?;
    m.add_class::<Report>()?;
    m.add_class::<PyContextProbe>()?;
    m.add_class::<PyGateSelector>()?;
    m.add("CaqError", py.get_type::<CaqError>())?;
    m.add("ArgumentError", py.get_type::<ArgumentError>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add("FileFormatError", py.get_type::<FileFormatError>())?;
    m.add("DeviceError", py.get_type::<DeviceError>())?;
    m.add(
        "PermissionDeniedError",
        py.get_type::<PermissionDeniedError>(),
    )?;
    m.add("BusyError", py.get_type::<BusyError>())?;
    m.add("DmaMemoryError", py.get_type::<DmaMemoryError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
