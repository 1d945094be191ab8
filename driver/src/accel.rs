//! The [`Accelerator`]: what an embedded application calls. It wraps any [`Device`] backend (the
//! board through UIO, the functional model, the Verilator model of the RTL) and gives:
//!
//! - [`Accelerator::open`]: the identity checks (ID, VERSION, CONFIG_HASH, CAPS) before anything
//!   else touches the device, a bitstream built from another config refused with both configs in
//!   the message; then a reset ([`run::reset`]), so a job left running by a process that died
//!   cannot write into the memory this one is about to fill;
//! - the invariant that device memory is touched only while the device is idle: every failed run
//!   ends in a reset, and if a reset does not take ([`HostError::ResetFailed`]), or a debugging
//!   write started a job, the next call that writes memory resets first and refuses if that fails;
//! - [`Accelerator::load_bundle`]: compiles a model bundle into descriptor lists and a buffer
//!   layout in device memory, uploads the tables, and pages in only the plane groups the active
//!   precision needs;
//! - [`Accelerator::set_bits`] / [`Accelerator::apply_gate`]: per-layer precision switches by
//!   paging (the NestQuant promise: switching down drops a layer's residual plane groups from its
//!   descriptors; switching up copies them in from the memory-mapped bundle), each with a
//!   [`SwitchReport`] of the bytes moved and the time taken;
//! - [`Accelerator::infer`] and [`Accelerator::infer_batch`], each with an [`InferenceReport`]
//!   (latency, the performance counters, interrupt counts, energy when a meter is attached);
//! - PYNQ-style conveniences: [`Accelerator::allocate`] for DMA buffers (`pynq.allocate`),
//!   [`Accelerator::mmio_read`] / [`Accelerator::mmio_write`] for register debugging
//!   (`MMIO.read/write`), and `Accelerator::open_uio` to open a board's accelerator by its UIO name
//!   (`Overlay(...).ip`).

use crate::compile::{self, BUFFER_ALIGN, Program};
use crate::dma::{CoherencyChoice, UDmaBuf};
use crate::error::{HostError, Result};
use crate::pool::{Block, DmaPool};
use crate::run::{self, RunOptions, RunReport};
use crate::sys::SysRoot;
use crate::uio_device::{UioDevice, UioOptions};
use caq_model::adaptive::{self, Adaptive};
use caq_model::bundle::Bundle;
use caq_model::qmodel::{Gate, QModel};
use caq_spec::regmap;
use caq_spec::{AccelConfig, Caps, ConfigHash, Device, DeviceAddr, IrqStats, PerfCounters};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// What the device said about itself at [`Accelerator::open`].
#[derive(Clone, Debug, Serialize)]
pub struct DeviceInfo {
    pub id: u32,
    /// Register-map version (major, minor, patch).
    pub version: (u8, u8, u8),
    pub config_hash: u64,
    pub caps: [u32; 4],
}

/// Which plane groups stay in device memory after a layer switches down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Residency {
    /// Groups once paged in stay: switching back up costs only the descriptors.
    KeepPaged,
    /// Residual groups above the active level are dropped (their memory counts as free):
    /// switching back up pages them in again. The lowest resident footprint.
    Minimal,
}

/// How [`Accelerator::load_bundle`] starts.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The initial bit-width per weight layer; `None`: each layer's lowest level (the smallest
    /// footprint; the app switches up as its context allows).
    pub bits: Option<Vec<u8>>,
    pub residency: Residency,
    /// What the compiler may move onto the device (a residual add, a global average pool, as
    /// constant-weight layers); default: neither.
    pub compile: compile::CompileOptions,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            bits: None,
            residency: Residency::KeepPaged,
            compile: compile::CompileOptions::default(),
        }
    }
}

/// What a load wrote.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    /// Device memory of the model: descriptors, activations, tables and every plane group's
    /// place.
    pub region_base: u64,
    pub region_len: u64,
    /// Bytes copied into device memory: tables, resident plane groups, descriptors.
    pub table_bytes: u64,
    pub plane_bytes: u64,
    pub descriptor_bytes: u64,
    /// Compile, allocate and upload (the bundle's open and parse not included).
    pub time: Duration,
    /// The upload alone: tables, descriptors, plane groups into device memory.
    pub upload_time: Duration,
}

impl LoadReport {
    pub fn bytes(&self) -> u64 {
        self.table_bytes + self.plane_bytes + self.descriptor_bytes
    }
}

/// What one precision switch did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SwitchReport {
    pub from: Vec<u8>,
    pub to: Vec<u8>,
    /// Layers whose active level changed.
    pub layers_changed: usize,
    /// Plane-group bytes copied in from the bundle.
    pub paged_in_bytes: u64,
    /// Plane-group bytes given up (with [`Residency::Minimal`]).
    pub dropped_bytes: u64,
    /// Descriptor bytes rewritten.
    pub descriptor_bytes: u64,
    /// Plane-group bytes in device memory after the switch.
    pub resident_weight_bytes: u64,
    pub time: Duration,
}

impl SwitchReport {
    /// Bytes written to device memory by the switch.
    pub fn bytes_moved(&self) -> u64 {
        self.paged_in_bytes + self.descriptor_bytes
    }
}

/// Energy of one inference or batch, from a meter ([`EnergyMeter`]; see `crate::energy` and
/// docs/energy.md).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EnergyReading {
    /// Everything the meter sees over the work: the sensor rails' energy, or the model's total.
    pub total_j: f64,
    /// `total_j` minus idle power × duration, when the meter knows the idle power.
    pub dynamic_j: Option<f64>,
    /// The idle power subtracted for `dynamic_j` (measured before the work, given, or the
    /// model's static power).
    pub idle_w: Option<f64>,
    /// Where the figure comes from: `hwmon:<sensor>/<rails>` for a sensor, `model` for an
    /// estimate from the performance counters (never reported as measured).
    pub source: String,
    /// Power samples integrated (0 for the model).
    pub samples: usize,
    /// Doubts about the figure (too few sensor updates in the window, a reading that did not
    /// change, ...); empty when there are none.
    pub warnings: Vec<String>,
}

/// Something that measures the energy of a stretch of work: a board power sensor sampled on a
/// thread, or an energy model over the performance counters.
pub trait EnergyMeter: Send {
    /// Marks the start of the work.
    fn begin(&mut self) -> Result<()>;
    /// Marks its end; `perf` are the device's counters for the work, `elapsed` its wall time.
    fn end(&mut self, perf: &PerfCounters, elapsed: Duration) -> Result<EnergyReading>;
}

/// Everything measured in one inference.
#[derive(Clone, Debug, Serialize)]
pub struct InferenceReport {
    /// Host wall time from writing the input to reading the output.
    pub latency: Duration,
    /// The device's counters summed over the inference's segments.
    pub device: PerfCounters,
    /// PERF_CYCLES at the config's clock.
    pub device_time: Duration,
    /// Interrupts delivered and missed during the inference, where the backend counts them.
    pub irq: Option<IrqStats>,
    pub energy: Option<EnergyReading>,
    /// Per segment and host step.
    pub run: RunReport,
}

/// One input-adaptive inference ([`Accelerator::infer_adaptive`]): the output, the setting that
/// made it, and everything its passes cost, re-runs and descriptor rewrites included.
#[derive(Clone, Debug, Serialize)]
pub struct AdaptiveInference {
    /// Output codes as the device stores them.
    pub output: Vec<u8>,
    /// The final setting's index (cascade stage or gate codebook entry) and bits.
    pub choice: usize,
    pub bits: Vec<u8>,
    /// `(setting index, first weight layer run)` per pass, as `caq_model::adaptive::Outcome`.
    pub passes: Vec<(usize, usize)>,
    /// The device's counters summed over every pass.
    pub device: PerfCounters,
    /// `device.cycles` at the config's clock.
    pub device_time: Duration,
    /// Host wall time of the whole inference, switches and decisions included.
    pub latency: Duration,
    /// Host steps of every pass.
    pub host: crate::run::HostCost,
    /// Descriptor bytes rewritten by the setting switches of this inference.
    pub switch_descriptor_bytes: u64,
    /// Plane-group bytes paged in (0 once every setting of the policy is resident).
    pub paged_in_bytes: u64,
    /// Host time of the switches.
    pub switch_time: Duration,
    /// Integer operations of the gate network's choice (0 for a cascade).
    pub gate_ops: u64,
    /// Host time of the gate network: reading the first layer's codes from device memory, its
    /// features and choice.
    pub gate_time: Duration,
    /// Energy over every pass, when a meter is attached.
    pub energy: Option<EnergyReading>,
}

/// One inference's output codes (one byte per code as the device stores them; two's complement
/// when the output is signed) and its report.
#[derive(Clone, Debug)]
pub struct Inference {
    pub output: Vec<u8>,
    pub report: InferenceReport,
}

impl Inference {
    /// The index of the largest output code (the predicted class of a classifier), the first on
    /// ties.
    pub fn argmax(&self, signed: bool) -> usize {
        let v = |b: u8| caq_spec::descriptor::byte_code(b, signed);
        let mut best = 0;
        for (i, &b) in self.output.iter().enumerate() {
            if v(b) > v(self.output[best]) {
                best = i;
            }
        }
        best
    }
}

/// A DMA buffer from [`Accelerator::allocate`]: `len` bytes at device address `addr`.
///
/// Neither `Clone` nor `Copy`: [`Accelerator::free`] takes it, so no copy can outlive the free and
/// write into memory the pool has since given to descriptors or planes. It belongs to the
/// accelerator that allocated it; another one refuses it.
#[derive(Debug, PartialEq, Eq)]
pub struct DmaBuffer {
    block: Block,
    owner: u64,
}

impl DmaBuffer {
    /// The device address (what a descriptor or register holds), like PYNQ's
    /// `.device_address`.
    pub fn device_address(&self) -> DeviceAddr {
        self.block.addr
    }

    pub fn len(&self) -> u64 {
        self.block.len
    }

    pub fn is_empty(&self) -> bool {
        self.block.len == 0
    }
}

/// Where paged-in plane groups come from.
enum PlaneSource {
    /// The memory-mapped bundle file: a page-in reads only that tensor's pages.
    Bundle(Box<Bundle>),
    /// The program's own copy (a model loaded from memory, not from a file).
    Program,
}

struct Loaded {
    program: Program,
    source: PlaneSource,
    gates: Vec<Gate>,
    /// Shared, so that an inference under one of them borrows nothing from `self`.
    adaptive: std::sync::Arc<[adaptive::AdaptivePolicy]>,
    /// Per layer: plane groups 0..resident[i] are in device memory.
    resident: Vec<usize>,
    residency: Residency,
    block: Block,
}

/// A caq accelerator with a model: see the module documentation.
pub struct Accelerator<D: Device> {
    dev: D,
    cfg: AccelConfig,
    info: DeviceInfo,
    pool: DmaPool,
    loaded: Option<Loaded>,
    run_opts: RunOptions,
    meter: Option<Box<dyn EnergyMeter>>,
    /// Tells this accelerator's [`DmaBuffer`]s from another's.
    id: u64,
    /// The device may be running a job nobody waits for (a reset that did not take, a START
    /// written through `mmio_write`): reset before device memory is touched again.
    unsettled: bool,
}

/// The next [`Accelerator`]'s id (owner of its [`DmaBuffer`]s).
static NEXT_ACCELERATOR: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn describe(c: &Caps) -> String {
    let bits: Vec<String> = (1..=8u8)
        .filter(|b| c.weight_bits_mask() & (1 << (b - 1)) != 0)
        .map(|b| b.to_string())
        .collect();
    format!(
        "{}x{} array, weight bits {{{}}}, {}-bit activations, {} plane groups, {}-bit bus, \
         {}-bit addresses, group size {}, up to {} descriptors",
        c.rows(),
        c.cols(),
        bits.join(","),
        c.act_bits().get(),
        c.max_plane_groups(),
        c.bus_bytes() * 8,
        c.addr_width(),
        c.group_size(),
        c.max_descriptors()
    )
}

fn reg<D: Device>(dev: &mut D, r: &regmap::Register) -> Result<u32> {
    dev.read_reg(r.offset).map_err(HostError::backend)
}

impl<D: Device> Accelerator<D> {
    /// Checks that `dev` is a caq accelerator generated from `cfg`: ID, then the register-map
    /// major version, then CONFIG_HASH and CAPS. Nothing else is touched before the ID matched
    /// (a wrong bitstream can hang the bus on other registers).
    pub fn open(mut dev: D, cfg: &AccelConfig) -> Result<Accelerator<D>> {
        let id = reg(&mut dev, &regmap::ID)?;
        if id != regmap::ID_VALUE {
            return Err(HostError::IdMismatch {
                register: "ID",
                found: id,
                expected: regmap::ID_VALUE,
                hint: "no caq accelerator answers here: the bitstream is not loaded, or this is \
                       the wrong UIO device or map",
            });
        }
        let v = reg(&mut dev, &regmap::VERSION)?;
        let version = (
            regmap::VERSION_MAJOR.get(v) as u8,
            regmap::VERSION_MINOR.get(v) as u8,
            regmap::VERSION_PATCH.get(v) as u8,
        );
        let (maj, min, pat) = regmap::REGMAP_VERSION;
        if version.0 != maj || version.1 < min {
            return Err(HostError::IdMismatch {
                register: "VERSION",
                found: v,
                expected: (u32::from(maj) << 16) | (u32::from(min) << 8) | u32::from(pat),
                hint: if version.0 != maj {
                    "the register map's major version differs: use the caq release the \
                     bitstream was generated with"
                } else {
                    "the bitstream's register map is older than this driver's (it lacks \
                     descriptor fields the driver writes): regenerate the bitstream, or use the \
                     caq release it was generated with"
                },
            });
        }
        let lo = reg(&mut dev, &regmap::CONFIG_HASH_LO)?;
        let hi = reg(&mut dev, &regmap::CONFIG_HASH_HI)?;
        let found_hash = ConfigHash::from_words(lo, hi);
        let mut caps_words = [0u32; 4];
        for (w, r) in caps_words.iter_mut().zip(regmap::CAPS) {
            *w = reg(&mut dev, r)?;
        }
        let expected_hash = ConfigHash::of(cfg);
        let caps = Caps::from_config(cfg)?;
        if found_hash != expected_hash || caps_words != caps.encode() {
            let found = match Caps::decode(caps_words) {
                Ok(c) => describe(&c),
                Err(e) => format!("CAPS unreadable: {e}"),
            };
            return Err(HostError::ConfigMismatch {
                expected_name: cfg.name.clone(),
                expected_hash: format!("{:#018x}", expected_hash.0),
                expected: describe(&caps),
                found_hash: format!("{:#018x}", found_hash.0),
                found,
            });
        }
        // A job left running (its process killed mid-run, or a timeout nobody recovered from)
        // would finish into memory this process is about to fill: stop it first.
        run::reset(&mut dev)?;
        let mem = dev.memory();
        let pool = DmaPool::new("device memory", mem, caps.addr_width());
        let run_opts = RunOptions::default();
        Ok(Accelerator {
            dev,
            cfg: cfg.clone(),
            info: DeviceInfo {
                id,
                version,
                config_hash: found_hash.0,
                caps: caps_words,
            },
            pool,
            loaded: None,
            run_opts,
            meter: None,
            id: NEXT_ACCELERATOR.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            unsettled: false,
        })
    }

    /// Resets the device (SOFT_RESET, STATUS until idle, IRQ_STATUS acknowledged; see
    /// [`run::reset`]). Needed only after a [`HostError::ResetFailed`]: every failed run already
    /// ends in a reset.
    pub fn reset(&mut self) -> Result<()> {
        run::reset(&mut self.dev)?;
        self.unsettled = false;
        Ok(())
    }

    /// Resets first when the device may still be running, so that what follows never writes
    /// memory a live job reads.
    fn settle(&mut self) -> Result<()> {
        if self.unsettled {
            self.reset()?;
        }
        Ok(())
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    pub fn config(&self) -> &AccelConfig {
        &self.cfg
    }

    /// The backend, for what the accelerator API does not cover.
    pub fn device(&mut self) -> &mut D {
        &mut self.dev
    }

    /// Gives the backend back.
    pub fn into_device(self) -> D {
        self.dev
    }

    /// How long to wait for each completion interrupt (default 10 s).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.run_opts.timeout = timeout;
    }

    /// Measure every layer on its own (one START per layer; same outputs, per-layer counters).
    pub fn set_per_layer(&mut self, per_layer: bool) {
        self.run_opts.per_layer = per_layer;
    }

    /// Attaches an energy meter: every inference report then carries its energy.
    pub fn attach_meter(&mut self, meter: Box<dyn EnergyMeter>) {
        self.meter = Some(meter);
    }

    /// Removes the meter (later inferences report no energy) and returns it.
    pub fn detach_meter(&mut self) -> Option<Box<dyn EnergyMeter>> {
        self.meter.take()
    }

    /// Reads a register by byte offset (debugging, like PYNQ's `MMIO.read`): only a register of
    /// `caq_spec::regmap::REGISTERS` that is readable (any other offset answers SLVERR on the
    /// bus, which can take the kernel down; see `regmap::checked_access`).
    pub fn mmio_read(&mut self, offset: u32) -> Result<u32> {
        regmap::checked_access(offset, false)?;
        self.dev.read_reg(offset).map_err(HostError::backend)
    }

    /// Writes a register by byte offset (debugging, like PYNQ's `MMIO.write`): only a writable
    /// register of `caq_spec::regmap::REGISTERS`.
    pub fn mmio_write(&mut self, offset: u32, value: u32) -> Result<()> {
        regmap::checked_access(offset, true)?;
        // A START from here is a job no call waits for: reset before memory is touched again.
        if offset == regmap::CTRL.offset && regmap::CTRL_START.is_set(value) {
            self.unsettled = true;
        }
        self.dev
            .write_reg(offset, value)
            .map_err(HostError::backend)
    }

    /// A DMA buffer of `len` bytes from the device memory the model does not use, cache-line
    /// aligned (like `pynq.allocate`). Free it with [`Accelerator::free`].
    pub fn allocate(&mut self, len: u64) -> Result<DmaBuffer> {
        let block = self.pool.alloc(len, BUFFER_ALIGN, "buffer")?;
        Ok(DmaBuffer {
            block,
            owner: self.id,
        })
    }

    /// Gives `buf` back to the pool (and so the handle: nothing can use it after).
    pub fn free(&mut self, buf: DmaBuffer) -> Result<()> {
        self.check_owner(&buf)?;
        self.pool.free(buf.block)
    }

    fn check_owner(&self, buf: &DmaBuffer) -> Result<()> {
        if buf.owner == self.id {
            return Ok(());
        }
        Err(HostError::BadConfig {
            field: "buffer".into(),
            value: format!("{:#x} (+{})", buf.block.addr.0, buf.block.len),
            expected: "a buffer this accelerator allocated".into(),
        })
    }

    /// Copies `data` into `buf` at byte `offset` and flushes it for the device.
    pub fn write_buffer(&mut self, buf: &DmaBuffer, offset: u64, data: &[u8]) -> Result<()> {
        self.check_owner(buf)?;
        let addr = buffer_range(buf, offset, data.len() as u64)?;
        self.settle()?;
        self.dev.mem_write(addr, data).map_err(HostError::backend)?;
        self.dev
            .sync_for_device(addr, data.len() as u64)
            .map_err(HostError::backend)
    }

    /// Invalidates `buf` for the CPU and copies bytes from `offset` into `out`.
    pub fn read_buffer(&mut self, buf: &DmaBuffer, offset: u64, out: &mut [u8]) -> Result<()> {
        self.check_owner(buf)?;
        let addr = buffer_range(buf, offset, out.len() as u64)?;
        self.settle()?;
        self.dev
            .sync_for_cpu(addr, out.len() as u64)
            .map_err(HostError::backend)?;
        self.dev.mem_read(addr, out).map_err(HostError::backend)
    }

    /// Loads a model bundle: compile, allocate its device memory, upload tables and descriptors,
    /// page in the plane groups of the initial precision from the mapped file. Replaces any model
    /// loaded before.
    pub fn load_bundle(&mut self, path: &Path, opts: &LoadOptions) -> Result<LoadReport> {
        let bundle = Bundle::open(path)?;
        let q = bundle.load()?;
        self.load_inner(q, PlaneSource::Bundle(Box::new(bundle)), opts)
    }

    /// Loads a quantized model held in memory (the plane groups page in from the compiled
    /// program's copy).
    pub fn load_model(&mut self, q: QModel, opts: &LoadOptions) -> Result<LoadReport> {
        self.load_inner(q, PlaneSource::Program, opts)
    }

    fn load_inner(
        &mut self,
        q: QModel,
        source: PlaneSource,
        opts: &LoadOptions,
    ) -> Result<LoadReport> {
        let t0 = Instant::now();
        self.settle()?;
        if let Some(old) = self.loaded.take() {
            self.pool.free(old.block)?;
        }
        let bits = match &opts.bits {
            Some(b) => {
                check_bits(&q, b)?;
                b.clone()
            }
            None => q
                .weight_layers()
                .iter()
                .map(|&i| {
                    let l = q.layers[i].as_ref().expect("weight layer");
                    *l.levels().last().expect("a layer has levels")
                })
                .collect(),
        };
        // Compile once to learn the size, allocate, and compile at the allocated address.
        let base = self.pool.region().base;
        let probe = compile::compile_with(&q, &self.cfg, &bits, base, opts.compile)?;
        let block = self.pool.alloc(probe.region.len, BUFFER_ALIGN, "model")?;
        let mut program = if block.addr == probe.region.base {
            probe
        } else {
            compile::compile_with(&q, &self.cfg, &bits, block.addr, opts.compile)?
        };
        if matches!(source, PlaneSource::Bundle(_)) {
            program.drop_planes();
        }
        let mut loaded = Loaded {
            resident: vec![0; program.layers.len()],
            gates: q.gates,
            adaptive: q.adaptive.into(),
            residency: opts.residency,
            block,
            source,
            program,
        };
        let t_upload = Instant::now();
        let table_bytes = loaded.program.load_tables(&mut self.dev)?;
        let descriptor_bytes = loaded.program.descriptor_image().len() as u64
            * caq_spec::descriptor::DESCRIPTOR_BYTES as u64;
        let mut plane_bytes = 0;
        for li in 0..loaded.program.layers.len() {
            let need = usize::from(loaded.program.layers[li].desc().active_groups);
            plane_bytes += page_in(&mut self.dev, &mut loaded, li, need)?;
        }
        let report = LoadReport {
            region_base: loaded.program.region.base.0,
            region_len: loaded.program.region.len,
            table_bytes,
            plane_bytes,
            descriptor_bytes,
            time: t0.elapsed(),
            upload_time: t_upload.elapsed(),
        };
        self.loaded = Some(loaded);
        Ok(report)
    }

    fn loaded(&self) -> Result<&Loaded> {
        loaded_ref(&self.loaded)
    }

    /// The compiled program of the loaded model.
    pub fn program(&self) -> Result<&Program> {
        Ok(&self.loaded()?.program)
    }

    /// The active bit-width of every weight layer.
    pub fn bits(&self) -> Result<Vec<u8>> {
        Ok(self.loaded()?.program.bits())
    }

    /// The loaded model's gates.
    pub fn gates(&self) -> Result<&[Gate]> {
        Ok(&self.loaded()?.gates)
    }

    /// The loaded model's input-adaptive policies (`caq gate --adaptive`), per context class.
    pub fn adaptive_policies(&self) -> Result<&[adaptive::AdaptivePolicy]> {
        Ok(&self.loaded()?.adaptive)
    }

    /// Plane-group bytes in device memory now.
    pub fn resident_weight_bytes(&self) -> Result<u64> {
        let l = self.loaded()?;
        Ok(resident_bytes(l))
    }

    /// Switches every weight layer to `bits[i]` (one of its nesting levels). Layers that go up
    /// page in the plane groups they lack; layers that go down stop streaming their residual
    /// groups (and, with [`Residency::Minimal`], give them up). Only the changed layers'
    /// descriptors are rewritten. A bad setting changes nothing; a failure while paging in
    /// leaves the old precision running (some groups may stay resident).
    pub fn set_bits(&mut self, bits: &[u8]) -> Result<SwitchReport> {
        let t0 = Instant::now();
        self.settle()?;
        let loaded = self.loaded.as_mut().ok_or(HostError::Arg {
            what: "accelerator",
            why: "no model is loaded (call load_bundle first)".into(),
        })?;
        let from = loaded.program.bits();
        check_program_bits(&loaded.program, bits)?;
        let mut report = SwitchReport {
            from: from.clone(),
            to: bits.to_vec(),
            ..SwitchReport::default()
        };
        // Page in before any descriptor asks for the groups: a failure here leaves the old
        // precision running, with at most some extra groups resident.
        let need: Vec<usize> = loaded
            .program
            .layers
            .iter()
            .zip(bits)
            .map(|(l, b)| l.levels.len() - l.levels.iter().position(|x| x == b).unwrap_or(0))
            .collect();
        for (li, &n) in need.iter().enumerate() {
            report.paged_in_bytes += page_in(&mut self.dev, loaded, li, n)?;
        }
        loaded.program.set_bits(bits)?;
        for (li, &n) in need.iter().enumerate() {
            if from[li] != bits[li] {
                report.layers_changed += 1;
                report.descriptor_bytes +=
                    loaded.program.write_layer_descriptors(&mut self.dev, li)?;
            }
            // Given up only once no descriptor streams them.
            if loaded.residency == Residency::Minimal && loaded.resident[li] > n {
                report.dropped_bytes += loaded.program.layers[li].group_bytes
                    [n..loaded.resident[li]]
                    .iter()
                    .sum::<u64>();
                loaded.resident[li] = n;
            }
        }
        report.resident_weight_bytes = resident_bytes(loaded);
        report.time = t0.elapsed();
        Ok(report)
    }

    /// Switches to the gate called `name` (stored in the bundle).
    pub fn apply_gate(&mut self, name: &str) -> Result<SwitchReport> {
        let loaded = self.loaded()?;
        let gate = loaded
            .gates
            .iter()
            .find(|g| g.name == name)
            .ok_or_else(|| HostError::BadConfig {
                field: "gate".into(),
                value: name.into(),
                expected: format!(
                    "one of the bundle's gates {:?}",
                    loaded.gates.iter().map(|g| &g.name).collect::<Vec<_>>()
                ),
            })?;
        let bits = gate.bits.clone();
        self.set_bits(&bits)
    }

    /// Runs one inference on `input` (CHW pixel codes, one byte each).
    pub fn infer(&mut self, input: &[u8]) -> Result<Inference> {
        self.settle()?;
        let loaded = self.loaded.as_ref().ok_or(HostError::Arg {
            what: "accelerator",
            why: "no model is loaded (call load_bundle first)".into(),
        })?;
        let irq0 = self.dev.irq_stats();
        if let Some(m) = self.meter.as_mut() {
            m.begin()?;
        }
        let t0 = Instant::now();
        let out = match run::run(&mut self.dev, &loaded.program, input, &self.run_opts) {
            Ok(out) => out,
            Err(e) => {
                // Any other failure was followed by a reset that took (run.rs).
                self.unsettled = matches!(e, HostError::ResetFailed { .. });
                return Err(e);
            }
        };
        let latency = t0.elapsed();
        let energy = match self.meter.as_mut() {
            Some(m) => Some(m.end(&out.report.device, latency)?),
            None => None,
        };
        let irq = match (irq0, self.dev.irq_stats()) {
            (Some(a), Some(b)) => Some(IrqStats {
                delivered: b.delivered - a.delivered,
                missed: b.missed - a.missed,
                polled: b.polled - a.polled,
            }),
            _ => None,
        };
        let cycles = out.report.device.cycles;
        Ok(Inference {
            output: out.output,
            report: InferenceReport {
                latency,
                device: out.report.device,
                device_time: Duration::from_secs_f64(cycles as f64 / (self.cfg.clock_mhz * 1e6)),
                irq,
                energy,
                run: out.report,
            },
        })
    }

    /// Changes how plane groups are kept from now on. Going to [`Residency::Minimal`] gives up
    /// the groups above every layer's active level at once; going to [`Residency::KeepPaged`]
    /// keeps whatever is paged in from now on.
    pub fn set_residency(&mut self, residency: Residency) -> Result<u64> {
        let loaded = self.loaded.as_mut().ok_or(HostError::Arg {
            what: "accelerator",
            why: "no model is loaded (call load_bundle first)".into(),
        })?;
        loaded.residency = residency;
        let mut dropped = 0;
        if residency == Residency::Minimal {
            for li in 0..loaded.program.layers.len() {
                let n = usize::from(loaded.program.layers[li].desc().active_groups);
                if loaded.resident[li] > n {
                    dropped += loaded.program.layers[li].group_bytes[n..loaded.resident[li]]
                        .iter()
                        .sum::<u64>();
                    loaded.resident[li] = n;
                }
            }
        }
        Ok(dropped)
    }

    /// One pass of the loaded program (see [`run::run_pass`]).
    fn pass(
        &mut self,
        input: Option<&[u8]>,
        start: compile::PassStart,
        stop: Option<usize>,
    ) -> Result<run::RunReport> {
        let loaded = loaded_ref(&self.loaded)?;
        match run::run_pass(
            &mut self.dev,
            &loaded.program,
            input,
            start,
            stop,
            &self.run_opts,
        ) {
            Ok(r) => Ok(r),
            Err(e) => {
                self.unsettled = matches!(e, HostError::ResetFailed { .. });
                Err(e)
            }
        }
    }

    /// One input-adaptive inference under the loaded model's policy of kind `kind` for context
    /// class `class` ([`Accelerator::infer_adaptive`]).
    pub fn infer_class(
        &mut self,
        input: &[u8],
        class: &str,
        kind: adaptive::AdaptiveKind,
    ) -> Result<AdaptiveInference> {
        let all = std::sync::Arc::clone(&self.loaded()?.adaptive);
        self.infer_adaptive(input, adaptive::policy_for(&all, class)?.get(kind)?)
    }

    /// One input-adaptive inference under `policy` (`caq_model::adaptive`): a cascade runs its
    /// cheapest stage and re-runs from the first changed layer while the output is not confident
    /// enough; a gate network runs the first weight layer, picks a setting from its output and
    /// runs the rest at it. Needs [`Residency::KeepPaged`]: once every setting of the policy is
    /// resident, a switch rewrites a few descriptors and pages nothing. The decisions are the
    /// model's rules over the device's own output codes, so they are those of the golden model
    /// wherever the device is bit-exact.
    pub fn infer_adaptive(
        &mut self,
        input: &[u8],
        policy: Adaptive<'_>,
    ) -> Result<AdaptiveInference> {
        let t0 = Instant::now();
        self.settle()?;
        let loaded = self.loaded()?;
        if loaded.residency != Residency::KeepPaged {
            return Err(HostError::BadConfig {
                field: "residency".into(),
                value: format!("{:?}", loaded.residency),
                expected: "KeepPaged for input-adaptive inference (its switches rewrite \
                           descriptors only; load with Residency::KeepPaged or call \
                           set_residency)"
                    .into(),
            });
        }
        for s in policy.settings() {
            check_program_bits(&loaded.program, s)?;
        }
        let gate_shape = loaded.program.nodes[loaded.program.gate_node].shape;
        // Every setting's plane groups resident before the first pass: from then on a switch
        // only rewrites descriptors.
        let loaded = self.loaded.as_mut().expect("checked above");
        let mut paged_first = 0;
        for li in 0..loaded.program.layers.len() {
            let levels = &loaded.program.layers[li].levels;
            let need = policy
                .settings()
                .iter()
                .map(|s| levels.len() - levels.iter().position(|&b| b == s[li]).unwrap_or(0))
                .max()
                .unwrap_or(0);
            paged_first += page_in(&mut self.dev, loaded, li, need)?;
        }
        if let Some(m) = self.meter.as_mut() {
            m.begin()?;
        }
        let mut passes = DevicePasses {
            acc: self,
            input,
            settings: policy.settings(),
            device: PerfCounters::default(),
            host: run::HostCost::default(),
            switch_bytes: 0,
            paged: paged_first,
            switch_time: Duration::ZERO,
            gate_start: None,
            gate_time: Duration::ZERO,
            failed: None,
        };
        let outcome = adaptive::infer(policy, gate_shape, &mut passes);
        let DevicePasses {
            device,
            host,
            switch_bytes,
            paged,
            switch_time,
            gate_time,
            failed,
            ..
        } = passes;
        let outcome = match (outcome, failed) {
            (Ok(o), _) => o,
            (Err(_), Some(e)) => return Err(e),
            (Err(e), None) => return Err(e.into()),
        };
        let gate_ops = match policy {
            Adaptive::Network(n) => n.net().ops(gate_shape),
            Adaptive::Cascade(_) => 0,
        };
        let output = run::read_output(&mut self.dev, &loaded_ref(&self.loaded)?.program)?;
        let latency = t0.elapsed();
        let energy = match self.meter.as_mut() {
            Some(m) => Some(m.end(&device, latency)?),
            None => None,
        };
        Ok(AdaptiveInference {
            output,
            choice: outcome.choice,
            bits: outcome.bits,
            passes: outcome.passes,
            device,
            device_time: Duration::from_secs_f64(device.cycles as f64 / (self.cfg.clock_mhz * 1e6)),
            latency,
            host,
            switch_descriptor_bytes: switch_bytes,
            paged_in_bytes: paged,
            switch_time,
            gate_ops,
            gate_time,
            energy,
        })
    }

    /// Runs one inference per input, in order; stops at the first error.
    pub fn infer_batch<'a>(
        &mut self,
        inputs: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<Inference>> {
        inputs.into_iter().map(|x| self.infer(x)).collect()
    }
}

/// The passes of one adaptive inference on the accelerator: each switches to its setting
/// (descriptor rewrites of the changed layers) and runs the part of the program it needs.
struct DevicePasses<'a, 's, D: Device> {
    acc: &'a mut Accelerator<D>,
    input: &'a [u8],
    settings: &'s [Vec<u8>],
    device: PerfCounters,
    host: run::HostCost,
    switch_bytes: u64,
    paged: u64,
    switch_time: Duration,
    /// When the gate network began reading the first layer's codes: the time until the next
    /// pass is its reading them and its choice.
    gate_start: Option<Instant>,
    /// Host time of the gate network: reading the first layer's codes, features and choice.
    gate_time: Duration,
    /// The driver's own error, kept whole through the model's pass interface.
    failed: Option<HostError>,
}

impl<D: Device> DevicePasses<'_, '_, D> {
    fn switch(&mut self, bits: &[u8]) -> Result<()> {
        if self.acc.bits()? != bits {
            let r = self.acc.set_bits(bits)?;
            self.switch_bytes += r.descriptor_bytes;
            self.paged += r.paged_in_bytes;
            self.switch_time += r.time;
        }
        Ok(())
    }

    fn pass(&mut self, input: bool, start: compile::PassStart, stop: Option<usize>) -> Result<()> {
        let r = self.acc.pass(input.then_some(self.input), start, stop)?;
        self.device.add(&r.device);
        self.host.add(&r.host);
        Ok(())
    }

    fn output(&mut self) -> Result<Vec<i32>> {
        let acc = &mut *self.acc;
        let p = &loaded_ref(&acc.loaded)?.program;
        Ok(p.output().decode(&run::read_output(&mut acc.dev, p)?))
    }
}

impl<D: Device> adaptive::Passes for DevicePasses<'_, '_, D> {
    fn run(&mut self, k: usize, pass: adaptive::Pass) -> caq_model::Result<Vec<i32>> {
        let bits = self.settings[k].clone();
        let r = match pass {
            adaptive::Pass::Full => self
                .switch(&bits)
                .and_then(|()| self.pass(true, compile::PassStart::Input, None))
                .and_then(|()| self.output()),
            adaptive::Pass::From(i) => self
                .switch(&bits)
                .and_then(|()| self.pass(false, compile::PassStart::Layer(i), None))
                .and_then(|()| self.output()),
            adaptive::Pass::FirstLayer => return self.first_layer(k).map(|c| c.to_codes()),
            adaptive::Pass::AfterFirst => {
                if let Some(t) = self.gate_start.take() {
                    self.gate_time += t.elapsed();
                }
                self.switch(&bits).and_then(|()| {
                    if self.settings[k].len() > 1 {
                        self.pass(false, compile::PassStart::After(0), None)?;
                    }
                    self.output()
                })
            }
        };
        r.map_err(|e| self.fail(e))
    }

    fn first_layer(&mut self, k: usize) -> caq_model::Result<adaptive::LayerCodes> {
        // Only the first layer's level matters to this pass: the others stay as they are, so
        // no descriptor of theirs is rewritten twice.
        let first = self.settings[k][0];
        let r = self
            .acc
            .bits()
            .and_then(|mut now| {
                now[0] = first;
                self.switch(&now)
            })
            .and_then(|()| self.pass(true, compile::PassStart::Input, Some(0)))
            .and_then(|()| {
                // The gate's time starts here: reading the codes is its cost, not the pass's.
                self.gate_start = Some(Instant::now());
                let acc = &mut *self.acc;
                let p = &loaded_ref(&acc.loaded)?.program;
                let (bytes, signed) = run::read_node_bytes(&mut acc.dev, p, p.gate_node)?;
                Ok(adaptive::LayerCodes::Bytes { bytes, signed })
            });
        r.map_err(|e| self.fail(e))
    }
}

impl<D: Device> DevicePasses<'_, '_, D> {
    /// The driver's error kept whole (the model's pass interface carries only a message).
    fn fail(&mut self, e: HostError) -> caq_model::ModelError {
        let m = caq_model::ModelError::arg("device pass", e.to_string());
        self.failed = Some(e);
        m
    }
}

/// The UIO name of the accelerator's device-tree node (`linux,uio-name`), as the shipped overlays
/// set it.
pub const DEFAULT_UIO_NAME: &str = "caq";
/// The u-dma-buf device (`device-name`) the shipped overlays create.
pub const DEFAULT_UDMABUF: &str = "udmabuf-caq";

/// Where and how to find a board's accelerator.
#[derive(Clone, Debug)]
pub struct BoardOptions {
    /// The root under which `/sys` and `/dev` are found (`/` on a board).
    pub root: SysRoot,
    /// The UIO device's name.
    pub uio_name: String,
    /// The u-dma-buf device the accelerator masters.
    pub udmabuf: String,
    pub coherency: CoherencyChoice,
    pub uio: UioOptions,
}

impl Default for BoardOptions {
    fn default() -> Self {
        BoardOptions {
            root: SysRoot::default(),
            uio_name: DEFAULT_UIO_NAME.into(),
            udmabuf: DEFAULT_UDMABUF.into(),
            coherency: CoherencyChoice::default(),
            uio: UioOptions::default(),
        }
    }
}

impl Accelerator<UioDevice> {
    /// Opens the board's accelerator by its UIO name, with the u-dma-buf region as its device
    /// memory (like PYNQ's `Overlay(...).ip_name` with `allocate`), and runs the identity checks
    /// of [`Accelerator::open`].
    pub fn open_uio(cfg: &AccelConfig, opts: &BoardOptions) -> Result<Accelerator<UioDevice>> {
        Accelerator::open(open_board(cfg, opts)?, cfg)
    }
}

/// The board's device as [`Accelerator::open_uio`] opens it, before the identity checks: the PL
/// checked programmed, the UIO device found and locked first (a missing accelerator is the likelier
/// problem and its error says what to check; and nothing touches the u-dma-buf while another
/// process holds the accelerator), then the u-dma-buf opened and its coherence checked against
/// `cfg`. For callers that wrap the device (a recorder in tests) before [`Accelerator::open`].
pub fn open_board(cfg: &AccelConfig, opts: &BoardOptions) -> Result<UioDevice> {
    UioDevice::open_with(&opts.root, &opts.uio_name, opts.uio, || {
        let mem = UDmaBuf::open(&opts.root, &opts.udmabuf, opts.coherency)?;
        check_coherence(cfg, &mem)?;
        Ok(Box::new(mem))
    })
}

/// A `dma-coherent` region is right only for a config whose DMA engine drives snooped traffic: for
/// any other, the kernel would drop the syncs the non-coherent port needs (docs/deploy.md). The
/// reverse (a coherent config over a region that is not `dma-coherent`) is slower but correct.
fn check_coherence(cfg: &AccelConfig, mem: &UDmaBuf) -> Result<()> {
    if mem.dma_coherent() && !cfg.axi.coherence.dma_coherent() {
        return Err(HostError::CoherenceMismatch {
            path: mem.sysfs_dir().join("dma_coherent"),
            config: cfg.name.clone(),
            coherence: cfg.axi.coherence.as_str(),
            arcache: caq_spec::AxiAttrs::verilog(cfg.axi.coherence.axi_attrs().arcache, 4),
        });
    }
    Ok(())
}

fn buffer_range(buf: &DmaBuffer, offset: u64, len: u64) -> Result<DeviceAddr> {
    match offset.checked_add(len) {
        Some(end) if end <= buf.len() => Ok(DeviceAddr(buf.block.addr.0 + offset)),
        _ => Err(HostError::BadConfig {
            field: "buffer range".into(),
            value: format!("[{offset}, {offset} + {len})"),
            expected: format!("inside the buffer's {} bytes", buf.len()),
        }),
    }
}

/// A per-layer setting's shape and levels, as a bad-config error naming the layer.
fn check_bits(q: &QModel, bits: &[u8]) -> Result<()> {
    q.check_bits(bits).map_err(|e| HostError::BadConfig {
        field: "bits".into(),
        value: format!("{bits:?}"),
        expected: e.to_string(),
    })
}

fn check_program_bits(p: &Program, bits: &[u8]) -> Result<()> {
    if bits.len() != p.layers.len() {
        return Err(HostError::BadConfig {
            field: "bits".into(),
            value: format!("{bits:?}"),
            expected: format!("one bit-width per weight layer ({})", p.layers.len()),
        });
    }
    for (l, b) in p.layers.iter().zip(bits) {
        if !l.levels.contains(b) {
            return Err(HostError::BadConfig {
                field: format!("bits of layer '{}'", l.name),
                value: b.to_string(),
                expected: format!("one of its nesting levels {:?}", l.levels),
            });
        }
    }
    Ok(())
}

fn loaded_ref(l: &Option<Loaded>) -> Result<&Loaded> {
    l.as_ref().ok_or(HostError::Arg {
        what: "accelerator",
        why: "no model is loaded (call load_bundle first)".into(),
    })
}

fn resident_bytes(l: &Loaded) -> u64 {
    l.program
        .layers
        .iter()
        .zip(&l.resident)
        .map(|(layer, &r)| layer.group_bytes[..r].iter().sum::<u64>())
        .sum()
}

/// Pages in plane groups `resident..need` of layer `li`; returns the bytes copied.
fn page_in<D: Device>(dev: &mut D, l: &mut Loaded, li: usize, need: usize) -> Result<u64> {
    let mut bytes = 0;
    for g in l.resident[li]..need {
        match &l.source {
            // A lowered grouped convolution's device planes are not the bundle's: the program
            // keeps them (Program::drop_planes).
            PlaneSource::Bundle(b) if !l.program.layers[li].expanded => {
                let data = b.plane_group_bytes(li, g)?;
                l.program.write_group(dev, li, g, data)?;
                bytes += data.len() as u64;
            }
            PlaneSource::Bundle(_) | PlaneSource::Program => {
                let data = l.program.group_bytes(li, g).ok_or(HostError::Arg {
                    what: "program",
                    why: "its plane bytes were dropped".into(),
                })?;
                l.program.write_group(dev, li, g, data)?;
                bytes += data.len() as u64;
            }
        }
    }
    l.resident[li] = l.resident[li].max(need);
    Ok(bytes)
}
