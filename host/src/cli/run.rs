//! `caq run`: whole-network inference of a quantized model on a backend, checked byte for byte
//! against the golden executor, with accuracy and the device's counters per precision.

use super::models::{QuantFlags, load_float};
use super::{DataArgs, table, write_json};
use anyhow::{Context, Result, bail};
use caq_driver::accel::{Accelerator, BoardOptions, LoadOptions, Residency};
use caq_driver::compile;
#[cfg(feature = "sim")]
use caq_driver::compile::Program;
#[cfg(feature = "sim")]
use caq_driver::run::RunOptions;
use caq_driver::run::{self, HostCost};
use caq_driver::sys::SysRoot;
use caq_driver::uio_device::WaitStrategy;
use caq_model::bundle::Bundle;
use caq_model::qmodel::{self, QModel};
use caq_spec::{AccelConfig, Device, PerfCounters};
#[cfg(feature = "sim")]
use caq_spec::{DeviceAddr, MemRegion};
use clap::{Args, ValueEnum};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Where a simulated backend's device memory starts (inside a 32-bit AXI address space).
#[cfg(feature = "sim")]
pub(super) const SIM_MEM_BASE: u64 = 0x1000_0000;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// caq-model's golden executor on the CPU (no device, no counters).
    Golden,
    /// caq-sim's functional model: bit-exact, counters from its timing model.
    Func,
    /// caq-sim's Verilator model of the generated RTL (cargo feature `rtl`).
    Rtl,
    /// The accelerator on this board, through UIO and u-dma-buf (needs --bundle).
    Uio,
    /// caq-cpu on this CPU: table look-up kernels for low-bit layers, integer GEMM for the rest
    /// (no device, no counters; images/s per setting).
    Cpu,
}

/// Which kernels `--backend cpu` uses (caq_cpu::Engine).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuEngineArg {
    /// Table look-up for layers at 4 bits or fewer, GEMM above.
    Auto,
    /// Table look-up wherever it applies.
    Lut,
    /// Integer GEMM for every layer.
    Gemm,
}

impl CpuEngineArg {
    fn engine(self) -> caq_cpu::Engine {
        match self {
            CpuEngineArg::Auto => caq_cpu::Engine::Auto,
            CpuEngineArg::Lut => caq_cpu::Engine::Lut,
            CpuEngineArg::Gemm => caq_cpu::Engine::Gemm,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnergyArg {
    Auto,
    Hwmon,
    Model,
    None,
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["model", "bundle"]))]
pub struct RunArgs {
    /// A float model (from `caq train`), quantized nested here.
    #[arg(long)]
    model: Option<PathBuf>,
    /// A model bundle (from `caq quantize`), run at its own levels.
    #[arg(long)]
    bundle: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    #[arg(long, value_enum, default_value = "func")]
    backend: Backend,
    /// Kernels of --backend cpu.
    #[arg(long, value_enum, default_value = "auto")]
    cpu_engine: CpuEngineArg,
    /// Images per batch of --backend cpu (dense layers see the batch as columns at once).
    #[arg(long, default_value_t = 64, value_parser = super::count)]
    cpu_batch: usize,
    /// The accelerator config.
    #[arg(long, default_value = "configs/sim-small.toml")]
    config: PathBuf,
    /// `all-levels` (each nesting level, every layer alike), one width for every layer (`8`), or
    /// one width per weight layer (`8,4,8`).
    #[arg(long, default_value = "all-levels", conflicts_with = "gate")]
    bits: String,
    /// Run at the per-layer bits of this gate of the bundle (instead of --bits).
    #[arg(long)]
    gate: Option<String>,
    /// Run this context class's input-adaptive policies from the bundle (`caq gate --adaptive`)
    /// instead of fixed settings: each input's setting follows from its own outputs, every image
    /// checked against the golden reference (any --backend).
    #[arg(long, conflicts_with = "gate", requires = "bundle")]
    adaptive: Option<String>,
    /// Which of the class's policies --adaptive runs.
    #[arg(long, value_enum, default_value = "both")]
    adaptive_kind: super::adaptive_run::KindArg,
    #[command(flatten)]
    board: BoardArgs,
    /// How --model is quantized (refused with --bundle).
    #[command(flatten)]
    q: QuantFlags,
    /// Run at most this many held-out images.
    #[arg(long, value_parser = super::count)]
    limit: Option<usize>,
    /// Energy per inference on a board (--backend uio): `auto` (the board's hwmon power sensors
    /// when found under --sysroot, the energy model otherwise), `hwmon`, `model` or `none`
    /// [default: auto].
    #[arg(long, value_enum)]
    energy: Option<EnergyArg>,
    /// With a sensor: seconds of back-to-back inferences metered per setting (and of idle before
    /// them); slow sensors update only every ~35 ms to 1 s (docs/energy.md) [default: 2].
    #[arg(long, value_parser = super::positive)]
    energy_window: Option<f64>,
    /// Also write the figures as JSON to this file (written atomically; `-` for standard output).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run the global average pools the result path cannot take on the array (--backend func,
    /// rtl and uio): one list fewer, at the array's cost (docs/hardware.md "Global average pooling by
    /// constant-weight layers").
    #[arg(long)]
    gap_on_device: bool,
    /// Run the residual Adds whose inputs share a quantizer on the array, each at the end of the
    /// list of the layer before it (--backend func, rtl and uio): no host step, at the array's cost
    /// (docs/hardware.md "Residual adds as layers").
    #[arg(long)]
    add_on_device: bool,
    /// Run the average pools whose window is their stride (2) on the array, each at the end of
    /// the list of the layer before it (--backend func, rtl and uio): no host step, at the array's
    /// cost (docs/hardware.md "Pooling by constant-weight layers").
    #[arg(long)]
    avg_pool_on_device: bool,
    /// Run the standalone max pools whose window is their stride (2, 4 or 8) on the array, each
    /// at the end of the list of the layer before it (--backend func, rtl and uio): no host step,
    /// at the array's cost (docs/hardware.md "Pooling by constant-weight layers").
    #[arg(long)]
    max_pool_on_device: bool,
    /// Also write every held-out image's output codes and prediction, one JSON object a line
    /// per setting and image (written atomically; `-` for standard output); see docs/bundle.md.
    #[arg(long, value_name = "FILE")]
    outputs: Option<PathBuf>,
}

/// Where `--backend uio` finds the accelerator.
#[derive(Args, Debug)]
pub struct BoardArgs {
    /// UIO device name of the accelerator (its device-tree `linux,uio-name`) [default: caq].
    #[arg(long)]
    uio_name: Option<String>,
    /// u-dma-buf device the accelerator masters [default: udmabuf0].
    #[arg(long)]
    udmabuf: Option<String>,
    /// Root of /sys and /dev (a fake tree for testing) [default: /].
    #[arg(long)]
    sysroot: Option<PathBuf>,
    /// Poll STATUS every this many microseconds instead of waiting for the interrupt (a device
    /// tree without `interrupts`).
    #[arg(long)]
    poll_us: Option<u64>,
    /// Map the DMA buffer cached and sync through the kernel (on Zynq-7000 the default is
    /// uncached); refused when u-dma-buf cannot map it cached (sync_mode with SYNC_ALWAYS,
    /// quirk-mmap off).
    #[arg(long)]
    cached: bool,
}

impl BoardArgs {
    fn sysroot(&self) -> &Path {
        self.sysroot.as_deref().unwrap_or(Path::new("/"))
    }

    fn options(&self) -> BoardOptions {
        let mut o = BoardOptions {
            root: SysRoot::new(self.sysroot()),
            uio_name: self
                .uio_name
                .clone()
                .unwrap_or_else(|| caq_driver::accel::DEFAULT_UIO_NAME.into()),
            udmabuf: self
                .udmabuf
                .clone()
                .unwrap_or_else(|| caq_driver::accel::DEFAULT_UDMABUF.into()),
            ..BoardOptions::default()
        };
        o.coherency.require_cached = self.cached;
        if let Some(us) = self.poll_us {
            o.uio.wait = WaitStrategy::Poll {
                interval: std::time::Duration::from_micros(us),
            };
        }
        o
    }

    /// The board flags given, by name (they apply to `--backend uio` only).
    fn given(&self) -> Vec<&'static str> {
        [
            ("--uio-name", self.uio_name.is_some()),
            ("--udmabuf", self.udmabuf.is_some()),
            ("--sysroot", self.sysroot.is_some()),
            ("--poll-us", self.poll_us.is_some()),
            ("--cached", self.cached),
        ]
        .into_iter()
        .filter_map(|(f, on)| on.then_some(f))
        .collect()
    }
}

/// One layer's counters from a run one descriptor at a time.
#[derive(Serialize)]
pub(super) struct LayerRow {
    pub(super) layer: String,
    pub(super) bits: u8,
    pub(super) cycles: u64,
    pub(super) busy_cycles: u64,
    pub(super) utilization: f64,
    pub(super) bytes_rd: u64,
    pub(super) bytes_wr: u64,
}

#[derive(Serialize)]
pub(super) struct LevelReport {
    pub(super) bits: Vec<u8>,
    pub(super) images: usize,
    accuracy_pct: f64,
    /// Images whose output bytes equal the golden executor's (all of them, or `caq run` fails).
    pub(super) byte_equal_images: usize,
    /// Per image, whole network (None on the golden backend).
    pub(super) device: Option<PerfPerImage>,
    pub(super) host: Option<HostCost>,
    /// The timing model's prediction from the descriptors alone, cycles per image.
    estimate_cycles: Option<u64>,
    pub(super) layers: Vec<LayerRow>,
    /// `--backend cpu`: speed and the kernel of every layer.
    cpu: Option<CpuFigures>,
}

#[derive(Serialize)]
struct CpuFigures {
    engine: CpuEngineArg,
    batch: usize,
    images_per_s: f64,
    /// Per weight layer, in graph order: `lut` or `gemm`, and why a layer asked for the table
    /// kernel runs on GEMM.
    kernels: Vec<CpuLayerKernel>,
}

#[derive(Serialize)]
struct CpuLayerKernel {
    layer: String,
    bits: u8,
    kernel: String,
    fallback: Option<String>,
}

#[derive(Serialize)]
pub(super) struct PerfPerImage {
    pub(super) cycles: f64,
    pub(super) busy_cycles: f64,
    pub(super) utilization: f64,
    pub(super) bytes_rd: f64,
    pub(super) bytes_wr: f64,
    pub(super) plane_ops: f64,
}

#[derive(Serialize)]
struct RunSummary {
    source: PathBuf,
    backend: Backend,
    config: String,
    dataset: String,
    levels: Vec<u8>,
    weight_bytes_resident: Option<u64>,
    runs: Vec<LevelReport>,
    /// Energy per inference per setting (board backend).
    energy: Vec<EnergyRow>,
}

#[derive(Serialize)]
struct EnergyRow {
    bits: Vec<u8>,
    inferences: usize,
    per_inference_j: f64,
    per_inference_dynamic_j: Option<f64>,
    /// A sensor description, or `model`.
    source: String,
    warnings: Vec<String>,
}

/// Meters each setting as one window of back-to-back inferences: with a power sensor, after an
/// idle window, for at least `--energy-window` seconds; with the energy model, one pass.
fn energy_rows<D: Device>(
    acc: &mut Accelerator<D>,
    a: &RunArgs,
    cfg: &AccelConfig,
    settings: &[Vec<u8>],
    set: &caq_model::data::Dataset,
) -> Result<Vec<EnergyRow>> {
    use caq_driver::accel::EnergyMeter;
    use caq_driver::energy::{EnergyModel, HwmonMeter, ModelMeter, meter_window};
    let energy = a.energy.unwrap_or(EnergyArg::Auto);
    if energy == EnergyArg::None || set.is_empty() {
        return Ok(Vec::new());
    }
    let energy_window = a.energy_window.unwrap_or(2.0);
    let root = SysRoot::new(a.board.sysroot());
    let sensor = match energy {
        EnergyArg::Model => None,
        _ => match HwmonMeter::detect_any(&root) {
            Ok(m) => Some(m),
            Err(e) if energy == EnergyArg::Hwmon => {
                return Err(anyhow::Error::new(e).context("--energy hwmon"));
            }
            Err(e) => {
                eprintln!("energy: no power sensor ({e}); using the energy model");
                None
            }
        },
    };
    let window = std::time::Duration::from_secs_f64(energy_window);
    let mut meter: Box<dyn EnergyMeter> = match sensor {
        Some(mut m) => {
            eprintln!(
                "energy: measuring idle power for {:.1} s",
                window.as_secs_f64()
            );
            m.measure_idle(window)?;
            Box::new(m)
        }
        None => Box::new(ModelMeter::new(EnergyModel::for_config(cfg, None)?, cfg)?),
    };
    let timed = energy != EnergyArg::Model;
    let mut rows = Vec::new();
    for bits in settings {
        acc.set_bits(bits)?;
        let inputs: Vec<&[u8]> = (0..set.len()).map(|i| set.image(i)).collect();
        let e = meter_window(acc, meter.as_mut(), &inputs, timed.then_some(window))?;
        rows.push(EnergyRow {
            bits: bits.clone(),
            inferences: e.inferences,
            per_inference_j: e.per_inference_j,
            per_inference_dynamic_j: e.per_inference_dynamic_j,
            source: e.reading.source.clone(),
            warnings: e.reading.warnings.clone(),
        });
    }
    Ok(rows)
}

/// The quantized model (the bundle, or the float model quantized on the training split), where
/// it came from, and the split (`--data`, or synthetic images of the model's input shape).
fn quantized(a: &RunArgs) -> Result<(QModel, PathBuf, super::Split)> {
    match (&a.model, &a.bundle) {
        (_, Some(b)) => {
            a.q.refuse_with("with --bundle: the bundle is already quantized")?;
            let bundle =
                Bundle::open(b).with_context(|| format!("reading --bundle {}", b.display()))?;
            let q = bundle.load()?;
            let classes = q.graph.output_shape()?.iter().product();
            let split = a.data.load_shaped(q.graph.input_shape, classes)?;
            Ok((q, b.clone(), split))
        }
        (Some(m), None) => {
            let model = load_float(m)?;
            let split = super::models::load_for(&a.data, &model)?;
            let cfg = a.q.config()?;
            let q = qmodel::quantize(&model, &split.train, &cfg).context("quantizing")?;
            Ok((q, m.clone(), split))
        }
        (None, None) => bail!("give --model or --bundle"),
    }
}

/// The per-layer settings `--bits` asks for.
fn settings(spec: &str, q: &QModel) -> Result<Vec<Vec<u8>>> {
    let n = q.weight_layers().len();
    if spec == "all-levels" {
        return Ok(q.levels().iter().map(|&b| vec![b; n]).collect());
    }
    let bits = spec
        .split(',')
        .map(|t| {
            t.trim()
                .parse::<u8>()
                .with_context(|| format!("--bits: '{t}' is not a bit-width"))
        })
        .collect::<Result<Vec<u8>>>()?;
    match bits.len() {
        1 => Ok(vec![vec![bits[0]; n]]),
        len if len == n => Ok(vec![bits]),
        len => bail!(
            "--bits: {len} widths for {n} weight layers (give one, one per layer, or all-levels)"
        ),
    }
}

pub fn run(a: RunArgs) -> Result<()> {
    {
        let mut inputs = vec![("--config", a.config.as_path())];
        inputs.extend(a.model.iter().map(|m| ("--model", m.as_path())));
        inputs.extend(a.bundle.iter().map(|b| ("--bundle", b.as_path())));
        let mut outputs: Vec<(&str, &Path)> = Vec::new();
        outputs.extend(a.json.iter().map(|j| ("--json", j.as_path())));
        outputs.extend(a.outputs.iter().map(|o| ("--outputs", o.as_path())));
        super::check_outputs(&inputs, &outputs)?;
    }
    if a.backend != Backend::Uio {
        let mut given = a.board.given();
        given.extend(a.energy.map(|_| "--energy"));
        given.extend(a.energy_window.map(|_| "--energy-window"));
        match given.as_slice() {
            [] => {}
            [one] => bail!("{one} applies to --backend uio only"),
            _ => bail!("{} apply to --backend uio only", given.join(", ")),
        }
    }
    for (on, flag) in [
        (a.gap_on_device, "--gap-on-device"),
        (a.add_on_device, "--add-on-device"),
        (a.avg_pool_on_device, "--avg-pool-on-device"),
        (a.max_pool_on_device, "--max-pool-on-device"),
    ] {
        let device = matches!(a.backend, Backend::Func | Backend::Rtl | Backend::Uio);
        if on && (!device || a.adaptive.is_some()) {
            bail!("{flag} applies to --backend func, rtl and uio with fixed settings only");
        }
    }
    let (q, source, split) = quantized(&a)?;
    if let Some(class) = &a.adaptive {
        if a.outputs.is_some() {
            bail!(
                "--outputs does not apply with --adaptive (its --json lists each image's setting)"
            );
        }
        return run_adaptive(&a, &q, &source, class, split.test);
    }
    let settings = match &a.gate {
        Some(g) => vec![q.gate(g)?.bits.clone()],
        None => settings(&a.bits, &q)?,
    };
    let mut set = split.test;
    let images = a.limit.unwrap_or(set.len()).min(set.len());
    set = set.subset(&(0..images).collect::<Vec<_>>());
    let set_index = &split.test_index[..images];
    let cfg = AccelConfig::load(&a.config)
        .with_context(|| format!("reading --config {}", a.config.display()))?;
    let mut summary = RunSummary {
        source,
        backend: a.backend,
        config: cfg.name.clone(),
        dataset: set.name.clone(),
        levels: q.levels().to_vec(),
        weight_bytes_resident: None,
        runs: Vec::new(),
        energy: Vec::new(),
    };
    let compile_opts = compile::CompileOptions {
        gap_on_device: a.gap_on_device,
        add_on_device: a.add_on_device,
        avg_pool_on_device: a.avg_pool_on_device,
        max_pool_on_device: a.max_pool_on_device,
    };
    match a.backend {
        Backend::Golden => {
            for bits in &settings {
                summary.runs.push(golden_level(&q, bits, &set)?);
            }
        }
        Backend::Uio => {
            let Some(bundle) = &a.bundle else {
                bail!("--backend uio runs a bundle: give --bundle (from `caq quantize`)");
            };
            let mut acc = Accelerator::open_uio(&cfg, &a.board.options())
                .context("opening the accelerator")?;
            let load = acc.load_bundle(
                bundle,
                &LoadOptions {
                    bits: Some(settings[0].clone()),
                    residency: Residency::KeepPaged,
                    compile: compile_opts,
                },
            )?;
            println!(
                "loaded {}: {} B into device memory at {:#x} ({} B of plane groups) in {:.1} ms",
                bundle.display(),
                load.bytes(),
                load.region_base,
                load.plane_bytes,
                load.time.as_secs_f64() * 1e3
            );
            for bits in &settings {
                summary.runs.push(runner_level(&mut acc, &q, bits, &set)?);
            }
            summary.weight_bytes_resident = Some(acc.resident_weight_bytes()?);
            summary.energy = energy_rows(&mut acc, &a, &cfg, &settings, &set)?;
        }
        Backend::Cpu => {
            for bits in &settings {
                summary
                    .runs
                    .push(cpu_level(&q, bits, &set, a.cpu_engine, a.cpu_batch)?);
            }
        }
        Backend::Func | Backend::Rtl => {
            sim_runs(
                a.backend,
                &cfg,
                &q,
                &settings,
                &set,
                compile_opts,
                &mut summary,
            )?;
        }
    }
    print(&summary);
    if let Some(j) = &a.json {
        write_json(j, &summary)?;
    }
    if let Some(o) = &a.outputs {
        let text = output_lines(&q, &settings, &set, set_index)?;
        if o == Path::new("-") {
            print!("{text}");
        } else {
            caq_spec::fsio::write_atomic(o, text.as_bytes())
                .with_context(|| format!("writing --outputs {}", o.display()))?;
        }
    }
    Ok(())
}

/// `--adaptive`: the class's input-adaptive policies on the held-out images.
fn run_adaptive(
    a: &RunArgs,
    q: &QModel,
    bundle: &std::path::Path,
    class: &str,
    set: caq_model::data::Dataset,
) -> Result<()> {
    use super::adaptive_run::{self, AdaptiveBackend};
    let backend = match a.backend {
        Backend::Golden => AdaptiveBackend::Golden,
        Backend::Cpu => AdaptiveBackend::Cpu,
        Backend::Func => AdaptiveBackend::Func,
        Backend::Rtl => AdaptiveBackend::Rtl,
        Backend::Uio => AdaptiveBackend::Uio,
    };
    let n = a.limit.unwrap_or(set.len()).min(set.len());
    let set = set.subset(&(0..n).collect::<Vec<_>>());
    let cfg = AccelConfig::load(&a.config)
        .with_context(|| format!("reading --config {}", a.config.display()))?;
    let runs = adaptive_run::run_policies(
        q,
        bundle,
        class,
        a.adaptive_kind,
        backend,
        &cfg,
        &a.board.options(),
        &set,
    )?;
    adaptive_run::print_runs(&runs, backend);
    if let Some(j) = &a.json {
        write_json(j, &runs)?;
    }
    Ok(())
}

/// One output record of `--outputs`.
#[derive(Serialize)]
struct OutputLine<'a> {
    bits: &'a [u8],
    /// Position in the held-out set as run.
    image: usize,
    /// Index in the data set as loaded (file order).
    index: usize,
    label: u8,
    prediction: usize,
    /// The last layer's output codes (signed, or unsigned after a ReLU).
    codes: Vec<i32>,
}

/// `--outputs`: every setting's output codes and prediction of every image, as JSON lines. The
/// codes are the golden executor's, which every backend's outputs were just checked to equal
/// byte for byte (`caq run` fails otherwise), so they are the outputs of the backend that ran.
fn output_lines(
    q: &QModel,
    settings: &[Vec<u8>],
    set: &caq_model::data::Dataset,
    set_index: &[usize],
) -> Result<String> {
    let mut text = String::new();
    for bits in settings {
        let ex = q.executor(bits)?;
        for (i, &index) in set_index.iter().enumerate() {
            let codes = ex.logits(set.image(i))?;
            let line = OutputLine {
                bits,
                image: i,
                index,
                label: set.labels[i],
                prediction: qmodel::argmax(&codes),
                codes,
            };
            text.push_str(&serde_json::to_string(&line).context("serializing --outputs")?);
            text.push('\n');
        }
    }
    Ok(text)
}

/// The simulated backends: compile, then run on the functional model or the RTL.
#[cfg(feature = "sim")]
fn sim_runs(
    backend: Backend,
    cfg: &AccelConfig,
    q: &QModel,
    settings: &[Vec<u8>],
    set: &caq_model::data::Dataset,
    opts: compile::CompileOptions,
    summary: &mut RunSummary,
) -> Result<()> {
    let mut program = compile::compile_with(q, cfg, &settings[0], DeviceAddr(SIM_MEM_BASE), opts)
        .context("compiling the model for the device")?;
    summary.weight_bytes_resident = Some(program.weight_bytes());
    if backend == Backend::Func {
        summary.runs = func_runs(cfg, &mut program, q, settings, set)?;
    } else {
        summary.runs = rtl_runs(cfg, &mut program, q, settings, set)?;
        add_estimates(cfg, &mut program, settings, &mut summary.runs)?;
    }
    Ok(())
}

#[cfg(not(feature = "sim"))]
fn sim_runs(
    backend: Backend,
    _cfg: &AccelConfig,
    _q: &QModel,
    _settings: &[Vec<u8>],
    _set: &caq_model::data::Dataset,
    _opts: compile::CompileOptions,
    _summary: &mut RunSummary,
) -> Result<()> {
    bail!(
        "--backend {}: this caq was built without the device models (cargo feature `sim`)",
        if backend == Backend::Func {
            "func"
        } else {
            "rtl"
        }
    )
}

/// Runs on caq-sim's functional model, with its timing model's estimate beside each run.
#[cfg(feature = "sim")]
fn func_runs(
    cfg: &AccelConfig,
    program: &mut Program,
    q: &QModel,
    settings: &[Vec<u8>],
    set: &caq_model::data::Dataset,
) -> Result<Vec<LevelReport>> {
    let mut dev = caq_sim::FuncDevice::new(cfg, sim_memory(program))?;
    let timing = dev.timing();
    let shape = caq_spec::CoreShape::of(cfg);
    program.load(&mut dev)?;
    let mut runs = Vec::new();
    for bits in settings {
        let mut r = device_level(&mut dev, program, q, bits, set)?;
        r.estimate_cycles = Some(estimate(&timing, &shape, program));
        runs.push(r);
    }
    Ok(runs)
}

/// FuncDevice's timing model beside the RTL's measured cycles: its estimate error.
#[cfg(feature = "sim")]
fn add_estimates(
    cfg: &AccelConfig,
    program: &mut Program,
    settings: &[Vec<u8>],
    runs: &mut [LevelReport],
) -> Result<()> {
    let (timing, shape) = (
        caq_sim::TimingModel::default(),
        caq_spec::CoreShape::of(cfg),
    );
    for (r, bits) in runs.iter_mut().zip(settings) {
        program.set_bits(bits)?;
        r.estimate_cycles = Some(estimate(&timing, &shape, program));
    }
    Ok(())
}

/// The timing model's cycles for one image: one START per device segment, as `run` issues them.
#[cfg(feature = "sim")]
fn estimate(timing: &caq_sim::TimingModel, shape: &caq_spec::CoreShape, program: &Program) -> u64 {
    program
        .steps
        .iter()
        .filter_map(|step| match step {
            compile::Step::Device(seg) => Some(seg),
            compile::Step::Host(_) => None,
        })
        .map(|seg| {
            let descs: Vec<_> = program.layers[seg.layers.clone()]
                .iter()
                .flat_map(|l| l.list().copied())
                .collect();
            timing.estimate(shape, &descs).cycles
        })
        .sum()
}

/// Runs on the Verilator model of `cfg`'s RTL (generated now, its model built or found in the
/// shared cache, see caq_sim::rtl).
#[cfg(feature = "rtl")]
fn rtl_runs(
    cfg: &AccelConfig,
    program: &mut Program,
    q: &QModel,
    settings: &[Vec<u8>],
    set: &caq_model::data::Dataset,
) -> Result<Vec<LevelReport>> {
    let mut dev = rtl_device(cfg, sim_memory(program))?;
    program.load(&mut dev)?;
    settings
        .iter()
        .map(|bits| device_level(&mut dev, program, q, bits, set))
        .collect()
}

/// The RTL's Verilator model of `cfg` (power-up seed 0) with `mem` as its AXI memory (no
/// stalls).
#[cfg(feature = "rtl")]
pub(super) fn rtl_device(cfg: &AccelConfig, mem: MemRegion) -> Result<caq_sim::RtlDevice> {
    Ok(caq_sim::RtlDevice::new(
        cfg,
        0,
        caq_sim::AxiMemOptions {
            base: mem.base.0,
            size: mem.len,
            ..caq_sim::AxiMemOptions::default()
        },
    )?)
}

#[cfg(all(feature = "sim", not(feature = "rtl")))]
fn rtl_runs(
    _cfg: &AccelConfig,
    _program: &mut Program,
    _q: &QModel,
    _settings: &[Vec<u8>],
    _set: &caq_model::data::Dataset,
) -> Result<Vec<LevelReport>> {
    bail!(
        "--backend rtl: this caq was built without the Verilator model; rebuild with \
         `cargo build -p caq-host --features rtl` (needs Verilator >= 5.0 and a C++17 compiler)"
    )
}

/// Device memory for a simulated backend: the program's region, rounded up to 4 KiB.
#[cfg(feature = "sim")]
pub(super) fn sim_memory(p: &Program) -> MemRegion {
    MemRegion {
        base: p.region.base,
        len: p.region.len.div_ceil(4096) * 4096,
    }
}

/// Runs every image on caq-cpu in batches (timed), then checks each output against the golden
/// executor byte for byte.
fn cpu_level(
    q: &QModel,
    bits: &[u8],
    set: &caq_model::data::Dataset,
    engine: CpuEngineArg,
    batch: usize,
) -> Result<LevelReport> {
    if batch == 0 {
        bail!("--cpu-batch: expected at least 1 image per batch, found 0");
    }
    let plan = caq_cpu::CpuModel::new(q, bits, engine.engine())
        .with_context(|| format!("preparing the CPU plan at bits {bits:?}"))?;
    let n = set.len();
    let len = plan.input_len();
    let start = std::time::Instant::now();
    let mut outputs = Vec::with_capacity(n);
    for first in (0..n).step_by(batch) {
        let count = batch.min(n - first);
        let pixels = &set.pixels[first * len..(first + count) * len];
        outputs.extend(
            plan.infer_batch(pixels, count)
                .with_context(|| format!("images {first}..{} at bits {bits:?}", first + count))?,
        );
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ex = q.executor(bits)?;
    let mut correct = 0usize;
    for (i, out) in outputs.iter().enumerate() {
        let golden = ex.logits(set.image(i))?;
        let bytes = |v: &[i32]| v.iter().map(|&c| c as u8).collect::<Vec<u8>>();
        let (got, want) = (bytes(out), bytes(&golden));
        if got != want || out.len() != golden.len() {
            let at = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
            bail!(
                "image {i} at bits {bits:?}: the CPU backend's output differs from the golden \
                 executor at byte {at}\n  cpu:    {got:?}\n  golden: {want:?}"
            );
        }
        correct += usize::from(qmodel::argmax(out) == set.labels[i] as usize);
    }
    let kernels = plan
        .layers()
        .map(|l| CpuLayerKernel {
            layer: l.name.clone(),
            bits: l.bits,
            kernel: match l.kernel {
                caq_cpu::Kernel::Lut => "lut".into(),
                caq_cpu::Kernel::Gemm => "gemm".into(),
            },
            fallback: l.fallback.clone(),
        })
        .collect();
    Ok(LevelReport {
        bits: bits.to_vec(),
        images: n,
        accuracy_pct: 100.0 * correct as f64 / n.max(1) as f64,
        byte_equal_images: n,
        device: None,
        host: None,
        estimate_cycles: None,
        layers: Vec::new(),
        cpu: Some(CpuFigures {
            engine,
            batch,
            images_per_s: n as f64 / elapsed.max(1e-9),
            kernels,
        }),
    })
}

fn golden_level(q: &QModel, bits: &[u8], set: &caq_model::data::Dataset) -> Result<LevelReport> {
    let acc = qmodel::int_accuracy(q, bits, set)?;
    Ok(LevelReport {
        bits: bits.to_vec(),
        images: set.len(),
        accuracy_pct: acc,
        byte_equal_images: set.len(),
        device: None,
        host: None,
        estimate_cycles: None,
        layers: Vec::new(),
        cpu: None,
    })
}

/// How a level's images run: a program driven directly on a simulated device, or the
/// `Accelerator` (the board).
trait Runner {
    /// Switches every layer to `bits`.
    fn switch(&mut self, bits: &[u8]) -> Result<()>;
    fn infer(&mut self, img: &[u8], per_layer: bool) -> Result<run::RunOutput>;
    fn output_act(&self) -> Result<compile::ActBuffer>;
}

#[cfg(feature = "sim")]
struct Direct<'a, D: Device> {
    dev: &'a mut D,
    program: &'a mut Program,
}

#[cfg(feature = "sim")]
impl<D: Device> Runner for Direct<'_, D> {
    fn switch(&mut self, bits: &[u8]) -> Result<()> {
        self.program
            .set_bits(bits)
            .with_context(|| format!("setting bits {bits:?}"))?;
        self.program.write_descriptors(self.dev)?;
        Ok(())
    }

    fn infer(&mut self, img: &[u8], per_layer: bool) -> Result<run::RunOutput> {
        let opts = RunOptions {
            per_layer,
            ..RunOptions::default()
        };
        Ok(run::run(self.dev, self.program, img, &opts)?)
    }

    fn output_act(&self) -> Result<compile::ActBuffer> {
        Ok(self.program.output())
    }
}

impl<D: Device> Runner for Accelerator<D> {
    fn switch(&mut self, bits: &[u8]) -> Result<()> {
        let r = self
            .set_bits(bits)
            .with_context(|| format!("setting bits {bits:?}"))?;
        println!(
            "switched to {}: {} layers changed, {} B paged in, {} B of descriptors, {:.1} us",
            label(bits),
            r.layers_changed,
            r.paged_in_bytes,
            r.descriptor_bytes,
            r.time.as_secs_f64() * 1e6
        );
        Ok(())
    }

    fn infer(&mut self, img: &[u8], per_layer: bool) -> Result<run::RunOutput> {
        self.set_per_layer(per_layer);
        let inf = Accelerator::infer(self, img)?;
        Ok(run::RunOutput {
            output: inf.output,
            report: inf.report.run,
        })
    }

    fn output_act(&self) -> Result<compile::ActBuffer> {
        Ok(self.program()?.output())
    }
}

#[cfg(feature = "sim")]
pub(super) fn device_level<D: Device>(
    dev: &mut D,
    program: &mut Program,
    q: &QModel,
    bits: &[u8],
    set: &caq_model::data::Dataset,
) -> Result<LevelReport> {
    runner_level(&mut Direct { dev, program }, q, bits, set)
}

fn runner_level(
    runner: &mut impl Runner,
    q: &QModel,
    bits: &[u8],
    set: &caq_model::data::Dataset,
) -> Result<LevelReport> {
    runner.switch(bits)?;
    let ex = q.executor(bits)?;
    let n = set.len();
    let mut total = PerfCounters::default();
    let mut host = HostCost::default();
    let mut correct = 0usize;
    let out_act = runner.output_act()?;
    for i in 0..n {
        let img = set.image(i);
        let out = runner
            .infer(img, false)
            .with_context(|| format!("image {i} at bits {bits:?}"))?;
        let golden: Vec<u8> = ex.logits(img)?.iter().map(|&v| v as u8).collect();
        if out.output != golden {
            let at = out
                .output
                .iter()
                .zip(&golden)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            bail!(
                "image {i} at bits {bits:?}: the device's output differs from the golden \
                 executor at byte {at}\n  device: {:?}\n  golden: {golden:?}",
                out.output
            );
        }
        let logits = out_act.decode(&out.output);
        correct += usize::from(qmodel::argmax(&logits) == set.labels[i] as usize);
        total.add(&out.report.device);
        host.add(&out.report.host);
    }
    // Per-layer figures from one image run one descriptor at a time.
    let mut layers = Vec::new();
    if n > 0 {
        let out = runner.infer(set.image(0), true)?;
        for seg in &out.report.segments {
            for l in &seg.per_layer {
                layers.push(LayerRow {
                    layer: l.layer.clone(),
                    bits: l.bits,
                    cycles: l.perf.cycles,
                    busy_cycles: l.perf.busy_cycles,
                    utilization: l.perf.utilization(),
                    bytes_rd: l.perf.bytes_rd,
                    bytes_wr: l.perf.bytes_wr,
                });
            }
        }
    }
    let per = |v: u64| v as f64 / n.max(1) as f64;
    Ok(LevelReport {
        bits: bits.to_vec(),
        images: n,
        accuracy_pct: 100.0 * correct as f64 / n.max(1) as f64,
        byte_equal_images: n,
        device: Some(PerfPerImage {
            cycles: per(total.cycles),
            busy_cycles: per(total.busy_cycles),
            utilization: total.utilization(),
            bytes_rd: per(total.bytes_rd),
            bytes_wr: per(total.bytes_wr),
            plane_ops: per(total.plane_ops),
        }),
        host: Some(HostCost {
            bytes_read: host.bytes_read / n.max(1) as u64,
            bytes_written: host.bytes_written / n.max(1) as u64,
            ops: host.ops / n.max(1) as u64,
        }),
        estimate_cycles: None,
        layers,
        cpu: None,
    })
}

fn label(bits: &[u8]) -> String {
    match bits.first() {
        Some(&b) if bits.iter().all(|&x| x == b) => format!("{b}-bit"),
        _ => bits
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(","),
    }
}

fn print(s: &RunSummary) {
    println!(
        "\n{} on {} ({:?} backend, config {}), nesting levels {:?}:",
        s.source.display(),
        s.dataset,
        s.backend,
        s.config,
        s.levels
    );
    if let Some(w) = s.weight_bytes_resident {
        println!("weight planes resident in device memory: {w} bytes");
    }
    let rows: Vec<Vec<String>> = s
        .runs
        .iter()
        .map(|r| {
            let dev = r.device.as_ref();
            let f = |v: Option<f64>, p: usize| v.map_or("-".into(), |x| format!("{x:.p$}"));
            vec![
                label(&r.bits),
                r.images.to_string(),
                super::top1_text(&s.dataset, r.accuracy_pct),
                format!("{}/{}", r.byte_equal_images, r.images),
                f(dev.map(|d| d.cycles), 0),
                r.estimate_cycles.map_or("-".into(), |c| match dev {
                    Some(d) if d.cycles > 0.0 => {
                        format!("{c} ({:+.1} %)", 100.0 * (c as f64 - d.cycles) / d.cycles)
                    }
                    _ => c.to_string(),
                }),
                f(dev.map(|d| 100.0 * d.utilization), 1),
                f(dev.map(|d| d.bytes_rd), 0),
                f(dev.map(|d| d.bytes_wr), 0),
                r.host.as_ref().map_or("-".into(), |h| {
                    format!("{} B, {} ops", h.bytes_read + h.bytes_written, h.ops)
                }),
            ]
        })
        .collect();
    table::print(
        &[
            "bits",
            "images",
            "top-1 %",
            "= golden",
            "cycles/img",
            "model est. (err)",
            "util %",
            "DMA rd B/img",
            "DMA wr B/img",
            "host steps/img",
        ],
        &rows,
    );
    let cpu: Vec<(&LevelReport, &CpuFigures)> = s
        .runs
        .iter()
        .filter_map(|r| r.cpu.as_ref().map(|c| (r, c)))
        .collect();
    if !cpu.is_empty() {
        println!("\nCPU backend (caq-cpu, one thread; byte-equal to golden on every image):");
        let rows: Vec<Vec<String>> = cpu
            .iter()
            .map(|(r, c)| {
                vec![
                    label(&r.bits),
                    format!("{:?}", c.engine).to_lowercase(),
                    c.batch.to_string(),
                    format!("{:.0}", c.images_per_s),
                    super::top1_text(&s.dataset, r.accuracy_pct),
                    c.kernels
                        .iter()
                        .map(|k| format!("{} {}b {}", k.layer, k.bits, k.kernel))
                        .collect::<Vec<_>>()
                        .join(", "),
                ]
            })
            .collect();
        table::print(
            &["bits", "engine", "batch", "images/s", "top-1 %", "kernels"],
            &rows,
        );
    }
    for r in s.runs.iter().filter(|r| !r.layers.is_empty()) {
        println!(
            "\nper layer at {} (one image, one descriptor per START):",
            label(&r.bits)
        );
        let rows: Vec<Vec<String>> = r
            .layers
            .iter()
            .map(|l| {
                vec![
                    l.layer.clone(),
                    l.bits.to_string(),
                    l.cycles.to_string(),
                    format!("{}/{}", l.busy_cycles, l.cycles),
                    format!("{:.1}", 100.0 * l.utilization),
                    l.bytes_rd.to_string(),
                    l.bytes_wr.to_string(),
                ]
            })
            .collect();
        table::print(
            &[
                "layer",
                "bits",
                "cycles",
                "busy/total",
                "util %",
                "rd B",
                "wr B",
            ],
            &rows,
        );
    }
    if !s.energy.is_empty() {
        println!("\nenergy per inference (each setting metered as one window):");
        let rows: Vec<Vec<String>> = s
            .energy
            .iter()
            .map(|e| {
                vec![
                    e.bits
                        .iter()
                        .map(|b| b.to_string())
                        .collect::<Vec<_>>()
                        .join("/"),
                    e.inferences.to_string(),
                    format!("{:.3}", e.per_inference_j * 1e6),
                    e.per_inference_dynamic_j
                        .map_or("-".into(), |d| format!("{:.3}", d * 1e6)),
                    e.source.clone(),
                    e.warnings.join("; "),
                ]
            })
            .collect();
        table::print(
            &[
                "bits",
                "inferences",
                "total µJ",
                "dynamic µJ",
                "source",
                "warnings",
            ],
            &rows,
        );
    }
}
