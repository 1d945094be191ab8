//! One accelerator on whichever backend the application opened — the board's UIO device, or
//! (feature `sim`) the functional model of the accelerator — behind one type, with the calls the C
//! ABI (crate caq-capi) and the Python package (caq-python) expose. Both bindings are thin layers
//! over [`Handle`], so what they do and how their errors are classed ([`ErrorClass`]) is decided
//! here once (docs/bindings.md).

use crate::accel::{
    Accelerator, AdaptiveInference, BoardOptions, EnergyMeter, InferenceReport, LoadOptions,
};
use crate::compile::ActBuffer;
use crate::energy::{EnergyModel, HwmonMeter, ModelMeter};
use crate::error::{HostError, Result};
use crate::sys::SysRoot;
use crate::uio_device::UioDevice;
use caq_model::ModelError;
use caq_model::adaptive::AdaptivePolicy;
use caq_model::qmodel::Gate;
use caq_model::quant::ActQuant;
use caq_spec::{AccelConfig, SpecError};
use std::path::Path;
use std::time::Duration;

#[cfg(feature = "sim")]
use caq_sim::FuncDevice;

/// Device memory of the functional model behind [`Handle::open_sim`]: room for any model the
/// shipped configs run.
#[cfg(feature = "sim")]
pub const SIM_REGION: caq_spec::MemRegion = caq_spec::MemRegion {
    base: caq_spec::DeviceAddr(0x1000_0000),
    len: 64 << 20,
};

enum Backend {
    Uio(Box<Accelerator<UioDevice>>),
    #[cfg(feature = "sim")]
    Sim(Box<Accelerator<FuncDevice>>),
}

/// Runs `$e` with `$a` bound to the backend's accelerator, whichever it is.
macro_rules! on {
    ($backend:expr, $a:ident => $e:expr) => {
        match $backend {
            Backend::Uio($a) => $e,
            #[cfg(feature = "sim")]
            Backend::Sim($a) => $e,
        }
    };
}

/// Where the energy of an inference comes from ([`Handle::attach_meter`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeterKind {
    /// No energy figure.
    None,
    /// The energy model over the performance counters (`configs/energy/<board>.toml`).
    Model,
    /// The board's hwmon power sensors (fails where there are none).
    Hwmon,
    /// The sensors where the board has them, else the model.
    Auto,
}

/// What a loaded model takes and gives.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    /// Input codes per inference (CHW, one byte each).
    pub input_len: usize,
    /// The input's shape (channels, height, width).
    pub input_shape: [usize; 3],
    /// Output codes per inference.
    pub output_len: usize,
    /// How real inputs become input codes.
    pub input_quant: ActQuant,
    /// The output codes' scale and signedness: `real = code × output_quant.scale`.
    pub output_quant: ActQuant,
    /// Layers with weights: the length of a per-layer bit setting.
    pub weight_layers: usize,
    /// The nesting levels, descending (the bits a layer can run at).
    pub levels: Vec<u8>,
}

/// One inference: the output codes (sign-extended as the output is signed or not) and what it
/// cost.
#[derive(Clone, Debug)]
pub struct Output {
    pub codes: Vec<i32>,
    pub report: InferenceReport,
}

/// Which of a context class's input-adaptive policies [`Handle::infer_adaptive`] runs.
pub use caq_model::adaptive::AdaptiveKind;

/// One input-adaptive inference ([`Handle::infer_adaptive`]): the output codes (as in
/// [`Output`]) and the driver's account of it: the setting that made the output, every pass,
/// the device's counters over all of them, the switches' and the gate's costs.
#[derive(Clone, Debug)]
pub struct AdaptiveOutput {
    pub codes: Vec<i32>,
    pub inference: AdaptiveInference,
}

/// The class of an error as the bindings report it: a C status code, a Python exception class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// A value the caller passed: a null or wrong-length buffer, an unknown gate, bits the model
    /// does not have, a call before a model is loaded.
    Argument,
    /// No such device or file.
    NotFound,
    /// A file caq reads (bundle, config, energy model) that is malformed, of another version or
    /// corrupt.
    File,
    /// The accelerator misbehaved or is not the one expected: error status, timeout, reset that
    /// did not take, wrong ID / config hash, PL not programmed, no interrupt.
    Device,
    /// The operating system refused access (file modes, udev rules).
    Permission,
    /// Another process holds the accelerator.
    Busy,
    /// Not enough DMA memory, or a buffer the device cannot reach.
    Memory,
    /// Any other I/O error.
    Io,
}

impl ErrorClass {
    /// The class of `e`.
    pub fn of(e: &HostError) -> ErrorClass {
        use HostError as H;
        match e {
            H::Model(m) => match m {
                ModelError::Io { source, .. } => io_class(source),
                ModelError::Format { .. }
                | ModelError::Version { .. }
                | ModelError::Checksum { .. } => ErrorClass::File,
                _ => ErrorClass::Argument,
            },
            H::Spec(s) => match s {
                SpecError::Io { source, .. } => io_class(source),
                SpecError::Toml { .. }
                | SpecError::SchemaVersion { .. }
                | SpecError::InvalidConfig { .. } => ErrorClass::File,
                _ => ErrorClass::Argument,
            },
            H::Layer { .. } | H::Arg { .. } | H::BadConfig { .. } => ErrorClass::Argument,
            H::DeviceNotFound { .. } => ErrorClass::NotFound,
            H::PermissionDenied { .. } => ErrorClass::Permission,
            H::DeviceBusy { .. } => ErrorClass::Busy,
            H::Memory { .. }
            | H::DmaAlloc { .. }
            | H::AddressOutOfRange { .. }
            | H::MapTooSmall { .. } => ErrorClass::Memory,
            H::Io { source, .. } => io_class(source),
            _ => ErrorClass::Device,
        }
    }
}

fn io_class(e: &std::io::Error) -> ErrorClass {
    match e.kind() {
        std::io::ErrorKind::NotFound => ErrorClass::NotFound,
        std::io::ErrorKind::PermissionDenied => ErrorClass::Permission,
        _ => ErrorClass::Io,
    }
}

impl MeterKind {
    /// The kind called `name`: `none`, `model`, `hwmon` or `auto`.
    pub fn from_name(name: &str) -> Result<MeterKind> {
        match name {
            "none" => Ok(MeterKind::None),
            "model" => Ok(MeterKind::Model),
            "hwmon" => Ok(MeterKind::Hwmon),
            "auto" => Ok(MeterKind::Auto),
            other => Err(HostError::Arg {
                what: "meter kind",
                why: format!("{other:?}: expected \"model\", \"hwmon\", \"auto\" or \"none\""),
            }),
        }
    }
}

/// The longest idle window [`Handle::attach_meter`] takes.
pub const MAX_IDLE_WINDOW: Duration = Duration::from_secs(3600);

/// `secs` seconds as an idle window: finite, in [0, [`MAX_IDLE_WINDOW`]].
pub fn idle_window(secs: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|w| *w <= MAX_IDLE_WINDOW)
        .ok_or_else(|| HostError::Arg {
            what: "idle window",
            why: format!(
                "{secs} s: expected seconds in [0, {}]",
                MAX_IDLE_WINDOW.as_secs()
            ),
        })
}

/// `e`'s message followed by each of its causes not already in it, as the `caq` tool prints
/// them: what the bindings report.
pub fn message(e: &HostError) -> String {
    let mut msg = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cause = c.source();
    }
    msg
}

/// An accelerator on the board or on the functional model, with at most one model loaded.
pub struct Handle {
    backend: Backend,
}

impl Handle {
    /// Opens the board's accelerator generated from the config file `config`: the UIO device
    /// named `uio_name` (default [`crate::accel::DEFAULT_UIO_NAME`]) with the u-dma-buf
    /// `udmabuf` (default [`crate::accel::DEFAULT_UDMABUF`]) as its memory, under `/`.
    pub fn open_uio(
        config: &Path,
        uio_name: Option<&str>,
        udmabuf: Option<&str>,
    ) -> Result<Handle> {
        Handle::open_uio_at(config, uio_name, udmabuf, SysRoot::default())
    }

    /// As [`Handle::open_uio`], with `/sys` and `/dev` under `root` (a fake tree in tests).
    pub fn open_uio_at(
        config: &Path,
        uio_name: Option<&str>,
        udmabuf: Option<&str>,
        root: SysRoot,
    ) -> Result<Handle> {
        let cfg = AccelConfig::load(config)?;
        let mut opts = BoardOptions {
            root,
            ..BoardOptions::default()
        };
        if let Some(n) = uio_name {
            opts.uio_name = n.into();
        }
        if let Some(u) = udmabuf {
            opts.udmabuf = u.into();
        }
        let acc = Accelerator::open_uio(&cfg, &opts)?;
        Ok(Handle {
            backend: Backend::Uio(Box::new(acc)),
        })
    }

    /// Opens the functional model of the accelerator generated from the config file `config`
    /// (bit-exact with the RTL, with its timing model's cycle counts), with [`SIM_REGION`] as
    /// device memory.
    #[cfg(feature = "sim")]
    pub fn open_sim(config: &Path) -> Result<Handle> {
        let cfg = AccelConfig::load(config)?;
        let dev = FuncDevice::new(&cfg, SIM_REGION).map_err(HostError::backend)?;
        Ok(Handle {
            backend: Backend::Sim(Box::new(Accelerator::open(dev, &cfg)?)),
        })
    }

    /// `"uio"` or `"sim"`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Uio(_) => "uio",
            #[cfg(feature = "sim")]
            Backend::Sim(_) => "sim",
        }
    }

    /// The accelerator config's name.
    pub fn config_name(&self) -> &str {
        on!(&self.backend, a => &a.config().name)
    }

    /// Loads the bundle at `path` (replacing any model loaded) as the driver does by default:
    /// every layer at its lowest level, the smallest footprint (switch up with
    /// [`Handle::apply_gate`] or [`Handle::set_bits`]).
    pub fn load_bundle(&mut self, path: &Path) -> Result<()> {
        on!(&mut self.backend, a => a.load_bundle(path, &LoadOptions::default()).map(|_| ()))
    }

    /// What the loaded model takes and gives.
    pub fn info(&self) -> Result<ModelInfo> {
        on!(&self.backend, a => {
            let p = a.program()?;
            let out: ActBuffer = p.output();
            Ok(ModelInfo {
                input_len: p.input.elements(),
                input_shape: p.input.shape,
                output_len: out.elements(),
                input_quant: p.input_quant,
                output_quant: p.output_quant,
                weight_layers: p.layers.len(),
                levels: p.layers.first().map(|l| l.levels.clone()).unwrap_or_default(),
            })
        })
    }

    /// Output codes per inference of the loaded model (what [`Handle::info`] says, without
    /// building the rest of it).
    pub fn output_len(&self) -> Result<usize> {
        on!(&self.backend, a => Ok(a.program()?.output().elements()))
    }

    /// The loaded bundle's gates.
    pub fn gates(&self) -> Result<&[Gate]> {
        on!(&self.backend, a => a.gates())
    }

    /// The active bits of every weight layer.
    pub fn bits(&self) -> Result<Vec<u8>> {
        on!(&self.backend, a => a.bits())
    }

    /// Switches to the bundle's gate called `name`.
    pub fn apply_gate(&mut self, name: &str) -> Result<()> {
        on!(&mut self.backend, a => a.apply_gate(name).map(|_| ()))
    }

    /// Switches every weight layer to its bits in `bits` (one entry per weight layer).
    pub fn set_bits(&mut self, bits: &[u8]) -> Result<()> {
        on!(&mut self.backend, a => a.set_bits(bits).map(|_| ()))
    }

    /// Measures the energy of every later inference with a meter of `kind`; with a sensor, the
    /// idle power is measured first over `idle_window` (keep the accelerator idle). Returns the
    /// meter's source (`model`, `hwmon:…`) or `None` for [`MeterKind::None`].
    pub fn attach_meter(
        &mut self,
        kind: MeterKind,
        idle_window: Duration,
    ) -> Result<Option<String>> {
        self.attach_meter_at(kind, idle_window, &SysRoot::default())
    }

    /// As [`Handle::attach_meter`], with the hwmon tree under `root`.
    pub fn attach_meter_at(
        &mut self,
        kind: MeterKind,
        idle_window: Duration,
        root: &SysRoot,
    ) -> Result<Option<String>> {
        let cfg = on!(&self.backend, a => a.config().clone());
        let model = || -> Result<Box<dyn EnergyMeter>> {
            Ok(Box::new(ModelMeter::new(
                EnergyModel::for_config(&cfg, None)?,
                &cfg,
            )?))
        };
        let sensor = |mut m: HwmonMeter| -> Result<(Box<dyn EnergyMeter>, String)> {
            let source = m.measure_idle(idle_window)?.source;
            Ok((Box::new(m), source))
        };
        let (meter, source): (Option<Box<dyn EnergyMeter>>, Option<String>) = match kind {
            MeterKind::None => (None, None),
            MeterKind::Model => (Some(model()?), Some(crate::energy::MODEL_SOURCE.into())),
            MeterKind::Hwmon => {
                let (m, s) = sensor(HwmonMeter::detect_any(root)?)?;
                (Some(m), Some(s))
            }
            MeterKind::Auto => match HwmonMeter::detect_any(root) {
                Ok(m) => {
                    let (m, s) = sensor(m)?;
                    (Some(m), Some(s))
                }
                Err(_) => (Some(model()?), Some(crate::energy::MODEL_SOURCE.into())),
            },
        };
        on!(&mut self.backend, a => match meter {
            Some(m) => a.attach_meter(m),
            None => drop(a.detach_meter()),
        });
        Ok(source)
    }

    /// Runs one inference on input codes (CHW, one byte each, [`ModelInfo::input_len`] of them).
    pub fn infer_codes(&mut self, input: &[u8]) -> Result<Output> {
        on!(&mut self.backend, a => {
            let inf = a.infer(input)?;
            let codes = a.program()?.output().decode(&inf.output);
            Ok(Output { codes, report: inf.report })
        })
    }

    /// The loaded bundle's input-adaptive policies, per context class (`caq gate --adaptive`).
    pub fn adaptive_policies(&self) -> Result<&[AdaptivePolicy]> {
        on!(&self.backend, a => a.adaptive_policies())
    }

    /// One input-adaptive inference on input codes under the loaded bundle's policy of kind
    /// `kind` for context class `class`: each input's setting follows from its own outputs (a
    /// cascade's confidence, a gate network's features), with every setting of the policy kept
    /// resident, so a switch rewrites descriptors only.
    pub fn infer_adaptive(
        &mut self,
        input: &[u8],
        class: &str,
        kind: AdaptiveKind,
    ) -> Result<AdaptiveOutput> {
        on!(&mut self.backend, a => {
            let inference = a.infer_class(input, class, kind)?;
            let codes = a.program()?.output().decode(&inference.output);
            Ok(AdaptiveOutput { codes, inference })
        })
    }

    /// The input codes of real-valued `input` under the model's input quantizer
    /// (`code = clamp(round(x / scale))`, half away from zero; docs/numerics.md).
    pub fn quantize_input(&self, input: &[f32]) -> Result<Vec<u8>> {
        let q = on!(&self.backend, a => a.program()?.input_quant);
        Ok(ActBuffer::encode(input.iter().map(|&x| q.quantize(x))))
    }

    /// Runs one inference on real-valued input, quantized by [`Handle::quantize_input`].
    pub fn infer_f32(&mut self, input: &[f32]) -> Result<Output> {
        let codes = self.quantize_input(input)?;
        self.infer_codes(&codes)
    }
}
