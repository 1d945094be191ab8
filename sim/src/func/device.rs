//! [`FuncDevice`]: the accelerator at the register level, in plain Rust. Registers behave as the
//! generated `caq_axil_regs` (the spec's register map); START runs the whole descriptor list at
//! once, issuing the core's memory requests in the RTL's order ([`super::plan`]) against a byte
//! memory with injectable bus faults, and computing every tile with caq-model's golden kernels
//! from the weight planes it read. The performance counters come from the timing model.
//! This module knows registers, the device semantics and the memory; the request order belongs
//! to `plan`, the cycle costs to `timing`, the arithmetic to caq-model.

use std::ops::Range;
use std::time::Duration;

use caq_model::graph::Padding;
use caq_model::kernels::{self, ConvGeom, GroupMult, IntLayer};
use caq_model::quant::ActQuant;
use caq_model::requant::{OutRange, Requant};
use caq_spec::descriptor::{self, DESCRIPTOR_BYTES, RequantEntry, Window};
use caq_spec::regmap::{self, ErrorCode, Field, PERF_COUNTERS, Register};
use caq_spec::{
    AccelConfig, Caps, ConfigHash, Device, DeviceAddr, IrqWait, LayerDescriptor, MemRegion, Opcode,
    PerfCounters,
};
use caq_spec::{CoreShape, Schedule};
use ndarray::{Array2, ArrayView2, ArrayView3};

use super::plan::{self, Load, Source, Step};
use super::timing::TimingModel;
use crate::axi::{AxiOp, RegAddr, Resp};
use crate::error::SimError;
use crate::fault::{Fault, FaultDir, InjectFaults};

/// The requant stage keeps a 6-bit shift (caq_model::requant::MAX_SHIFT = 63).
const RQ_SHIFT_MASK: u8 = 0x3f;

/// The pure-Rust functional model of a caq accelerator.
#[derive(Debug, Clone)]
pub struct FuncDevice {
    cfg: AccelConfig,
    caps: Caps,
    hash: ConfigHash,
    shape: CoreShape,
    timing: TimingModel,
    region: MemRegion,
    mem: Vec<u8>,
    faults: Vec<Fault>,
    irq_en: bool,
    status: u32,
    irq_status: u32,
    desc_addr: u64,
    desc_count: u32,
    win_base: u64,
    win_limit: u64,
    /// Counters in `PERF_COUNTERS` order, and the HI snapshots taken by LO reads.
    counters: [u64; 6],
    snapshots: [u32; 6],
    /// A run in progress: its results are computed at START but become visible (STATUS, the
    /// interrupt, the counters) only after its cycles have passed in `wait_irq` time.
    pending: Option<Pending>,
    /// The feature buffer of the running job: which maps its banks hold, and their bytes (the
    /// engine's copies): the resident input map as read, the mirror as written.
    resident: plan::Resident,
    resident_map: Vec<u8>,
    mirror_map: Vec<u8>,
}

/// The outcome of a started run, held back until its cycles have passed.
#[derive(Debug, Clone)]
struct Pending {
    cycles_left: u64,
    status: u32,
    irq: u32,
    perf: PerfCounters,
}

/// `value` in place in field `f` (the fields here are filled from values that fit them).
fn put(f: Field, value: u32) -> u32 {
    (value & f.max()) << f.lsb
}

/// Why a run stopped: the STATUS error code.
struct Stop(ErrorCode);

impl FuncDevice {
    /// A device of config `cfg` with `mem` as its memory (zero-filled), registers at reset.
    pub fn new(cfg: &AccelConfig, mem: MemRegion) -> Result<FuncDevice, SimError> {
        let bad = |reason: String| SimError::Config {
            name: cfg.name.clone(),
            reason,
        };
        let caps = Caps::from_config(cfg).map_err(|e| bad(e.to_string()))?;
        let shape = CoreShape::of(cfg);
        let len =
            usize::try_from(mem.len).map_err(|_| bad(format!("memory of {} bytes", mem.len)))?;
        Ok(FuncDevice {
            cfg: cfg.clone(),
            caps,
            hash: ConfigHash::of(cfg),
            shape,
            timing: TimingModel::default(),
            region: mem,
            mem: vec![0; len],
            faults: Vec::new(),
            irq_en: false,
            status: 0,
            irq_status: 0,
            desc_addr: 0,
            desc_count: 0,
            win_base: 0,
            win_limit: 0,
            counters: [0; 6],
            snapshots: [0; 6],
            pending: None,
            resident: plan::Resident::default(),
            resident_map: Vec::new(),
            mirror_map: Vec::new(),
        })
    }

    /// The config the device models.
    pub fn config(&self) -> &AccelConfig {
        &self.cfg
    }

    /// The timing model behind the cycle counters.
    pub fn timing(&self) -> TimingModel {
        self.timing
    }

    pub fn set_timing(&mut self, timing: TimingModel) {
        self.timing = timing;
    }

    /// The interrupt line: IRQ_EN and a pending cause.
    pub fn irq_line(&self) -> bool {
        self.irq_en && self.irq_status != 0
    }

    fn slverr(op: AxiOp, offset: u32) -> SimError {
        SimError::Response {
            op,
            addr: RegAddr(offset),
            resp: Resp::SlvErr,
        }
    }

    fn register(op: AxiOp, offset: u32) -> Result<&'static Register, SimError> {
        regmap::register_at(offset)
            .filter(|_| offset.is_multiple_of(4))
            .ok_or_else(|| Self::slverr(op, offset))
    }

    fn clear_counters(&mut self) {
        self.counters = [0; 6];
        self.snapshots = [0; 6];
    }

    /// The window the core checks against: each bound saturated to the address space.
    fn window(&self) -> Window {
        let top = 1u64
            .checked_shl(self.cfg.axi.addr_width)
            .unwrap_or(u64::MAX);
        Window {
            base: DeviceAddr(self.win_base.min(top)),
            limit: DeviceAddr(self.win_limit.min(top)),
        }
    }

    /// Runs the list at once (memory is written now) and holds the outcome back for the run's
    /// cycles: until then STATUS reads BUSY and the interrupt is low. A run of zero cycles (one
    /// that fails before its first fetch) finishes within the START write.
    fn start(&mut self) -> Result<(), SimError> {
        self.status = regmap::STATUS_BUSY.mask();
        let mut perf = PerfCounters::default();
        let mut index = 0;
        let mut ran = Vec::new();
        let outcome = self.run_list(&mut perf, &mut index, &mut ran);
        // Bytes and plane-steps are what the run did; its time is the timing model's: the whole
        // list, or the descriptors completed before a failure plus what the failing one read.
        let time = self.timing.estimate(&self.shape, &ran);
        if matches!(outcome, Ok(Ok(()))) {
            debug_assert_eq!(
                (time.bytes_rd, time.bytes_wr, time.plane_ops),
                (perf.bytes_rd, perf.bytes_wr, perf.plane_ops),
                "the timing model prices the steps the device ran"
            );
        }
        let tail = perf.bytes_rd.saturating_sub(time.bytes_rd) / 8;
        perf.cycles = time.cycles + tail;
        perf.busy_cycles = perf.plane_ops;
        perf.stall_cycles = time.stall_cycles + tail;
        let (status, irq) = match outcome? {
            Ok(()) => (regmap::STATUS_DONE.mask(), regmap::IRQ_STATUS_DONE.mask()),
            Err(Stop(code)) => (
                regmap::STATUS_ERROR.mask()
                    | put(regmap::STATUS_ERR_CODE, u32::from(code.as_u8()))
                    | put(regmap::STATUS_ERR_DESC, index),
                regmap::IRQ_STATUS_ERROR.mask(),
            ),
        };
        self.pending = Some(Pending {
            cycles_left: perf.cycles,
            status,
            irq,
            perf,
        });
        self.advance(0);
        Ok(())
    }

    /// Lets `cycles` device cycles pass: a pending run whose cycles are all spent finishes.
    fn advance(&mut self, cycles: u64) {
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        if p.cycles_left > cycles {
            p.cycles_left -= cycles;
            return;
        }
        let p = self.pending.take().expect("pending");
        for (c, v) in self.counters.iter_mut().zip(p.perf.to_array()) {
            *c = c.wrapping_add(v);
        }
        self.status = p.status;
        self.irq_status |= p.irq;
    }

    /// True while a started run has cycles left.
    pub fn busy(&self) -> bool {
        self.pending.is_some()
    }

    /// Runs the list; the outer error is a failure of the model itself, the inner one the
    /// device's error code (with the failing descriptor in `index`).
    fn run_list(
        &mut self,
        perf: &mut PerfCounters,
        index: &mut u32,
        ran: &mut Vec<LayerDescriptor>,
    ) -> Result<Result<(), Stop>, SimError> {
        let count = self.desc_count;
        if let Err((code, _)) = self.caps.check_desc_count(count) {
            return Ok(Err(Stop(code)));
        }
        if !DeviceAddr(self.desc_addr).is_aligned(self.caps.bus_bytes()) {
            return Ok(Err(Stop(ErrorCode::Misaligned)));
        }
        self.resident = plan::Resident::default();
        for i in 0..count {
            *index = i;
            let at = self.desc_addr.wrapping_add(128 * u64::from(i));
            let fetched = match self.read(&plan::descriptor_read(at), perf) {
                Ok(bytes) => bytes,
                Err(stop) => return Ok(Err(stop)),
            };
            let mut bytes = [0u8; DESCRIPTOR_BYTES];
            bytes.copy_from_slice(&fetched);
            let desc = match descriptor::check_fetched(&bytes, i, count, &self.caps, self.window())
            {
                Ok(d) => d,
                Err((code, _)) => return Ok(Err(Stop(code))),
            };
            let Ok(sched) = self.shape.schedule(&desc) else {
                return Ok(Err(Stop(ErrorCode::BadShape)));
            };
            if let Err(stop) = self.run_descriptor(&desc, &sched, perf)? {
                return Ok(Err(stop));
            }
            ran.push(desc);
        }
        Ok(Ok(()))
    }

    /// The beat-rounded extent of a request, if it lies in the window.
    fn extent(&self, addr: u64, words: u64) -> Result<Range<u64>, Stop> {
        let beat = u64::from(self.caps.bus_bytes());
        let lo = addr & !(beat - 1);
        let hi = addr
            .checked_add(8 * words)
            .and_then(|e| e.checked_next_multiple_of(beat));
        let w = self.window();
        match hi {
            Some(hi) if lo >= w.base.0 && hi <= w.limit.0 => Ok(lo..hi),
            _ => Err(Stop(ErrorCode::OutOfWindow)),
        }
    }

    /// The bus's answer to an access of `extent`: an injected fault, DECERR outside the
    /// memory, else OKAY.
    fn bus_answer(&self, extent: &Range<u64>, write: bool) -> Resp {
        let len = extent.end - extent.start;
        if let Some(resp) = self
            .faults
            .iter()
            .find_map(|f| f.answer(extent.start, len, write))
        {
            return resp;
        }
        if self.region.contains(DeviceAddr(extent.start), len) {
            Resp::Okay
        } else {
            Resp::DecErr
        }
    }

    fn stop_on(resp: Resp) -> Result<(), Stop> {
        match resp {
            Resp::Okay | Resp::ExOkay => Ok(()),
            Resp::SlvErr => Err(Stop(ErrorCode::AxiSlverr)),
            Resp::DecErr => Err(Stop(ErrorCode::AxiDecerr)),
        }
    }

    fn offset(&self, addr: u64) -> usize {
        (addr - self.region.base.0) as usize
    }

    /// Issues a read step: window check, counters, bus answer, data.
    fn read(&self, step: &Step, perf: &mut PerfCounters) -> Result<Vec<u8>, Stop> {
        let Step::Read { addr, words, .. } = *step else {
            return Ok(Vec::new());
        };
        let extent = self.extent(addr, words)?;
        perf.bytes_rd += 8 * words;
        Self::stop_on(self.bus_answer(&extent, false))?;
        let at = self.offset(addr);
        Ok(self.mem[at..at + 8 * words as usize].to_vec())
    }

    fn run_descriptor(
        &mut self,
        d: &LayerDescriptor,
        sched: &Schedule,
        perf: &mut PerfCounters,
    ) -> Result<Result<(), Stop>, SimError> {
        let k = sched.k as usize;
        let wpr = sched.wpr as usize;
        let regions = sched.regions as usize;
        let mut input = Vec::new();
        let mut bias = Vec::new();
        let mut requant = Vec::new();
        let mut mults = Vec::new();
        let mut codes = Array2::<i32>::zeros((0, k));
        // The tile's outputs, row-major (row, item).
        let mut outputs: Vec<u8> = Vec::new();
        let mut tile_rows = 0;
        for step in plan::steps(d, sched, &self.shape) {
            match &step {
                Step::Read { load, words, .. } => {
                    // A map on chip is the engine's copy of a bank, not memory's: the read's
                    // slice of it (the slice's last word past the bank's defined bytes is not
                    // defined). Taking the mirror swaps the banks.
                    let source = self.resident.source(d, &step);
                    let data = match source {
                        Source::Resident { offset } => {
                            bank_slice(&self.resident_map, offset, *words)
                        }
                        Source::Mirror { offset } => {
                            self.resident_map = std::mem::take(&mut self.mirror_map);
                            bank_slice(&self.resident_map, offset, *words)
                        }
                        Source::Memory => match self.read(&step, perf) {
                            Ok(data) => data,
                            Err(stop) => return Ok(Err(stop)),
                        },
                    };
                    self.resident.observe(d, &self.shape, &step);
                    // A Conv2d map loaded from memory: the current bank holds its words now.
                    let loaded_map = source == Source::Memory && self.resident.skips(d, &step);
                    if let Some((_, bytes)) = self.resident.mirroring()
                        && *load == Load::Input
                    {
                        // A new mirror or a grown one: the bytes it keeps stay where they are
                        // (from its address); every byte a reader may take is written by then.
                        self.mirror_map.resize(bytes as usize, 0);
                    }
                    match *load {
                        Load::Descriptor => {}
                        Load::Input => {
                            // A map read from memory starts inside the first word it reads.
                            let lead = match (source, d.op) {
                                (Source::Memory, Opcode::Conv2d) => d.input_addr.0 % 8,
                                _ => 0,
                            };
                            input = self.decode_input(d, sched, &data[lead as usize..]);
                        }
                        Load::Bias => {
                            bias = data
                                .chunks_exact(4)
                                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                                .collect();
                        }
                        Load::Requant => {
                            requant = data
                                .chunks_exact(8)
                                .map(|c| {
                                    let mut e = [0u8; 8];
                                    e.copy_from_slice(c);
                                    let e = RequantEntry::from_bytes(e);
                                    Requant {
                                        mult: e.multiplier,
                                        shift: e.shift & RQ_SHIFT_MASK,
                                    }
                                })
                                .collect();
                        }
                        Load::GroupMult => {
                            mults = data
                                .chunks_exact(2)
                                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                                .collect();
                        }
                        Load::Plane { group, plane } => {
                            let g = d.active_plane_groups()[group];
                            let n = data.len() / (8 * wpr);
                            if codes.nrows() != n {
                                codes = Array2::zeros((n, k));
                            }
                            let top = plane + 1 == g.bits.get();
                            let weight = (1i32 << plane) << g.shift;
                            let weight = if top { -weight } else { weight };
                            for (i, w) in data.chunks_exact(8).enumerate() {
                                let mut word = u64::from_le_bytes(w.try_into().expect("8 bytes"));
                                let (r, base) = (i / wpr, 64 * (i % wpr));
                                while word != 0 {
                                    let c = base + word.trailing_zeros() as usize;
                                    word &= word - 1;
                                    if c < k {
                                        codes[[r, c]] += weight;
                                    }
                                }
                            }
                        }
                    }
                    if loaded_map {
                        self.resident_map = data;
                    }
                }
                Step::Compute { rows: n, .. } => {
                    let n = *n;
                    if codes.nrows() != n {
                        codes = Array2::zeros((n, k));
                    }
                    let gm: Option<Array2<u16>> = d
                        .flags
                        .grouped
                        .then(|| {
                            ArrayView2::from_shape((n, regions), &mults[..n * regions])
                                .map(|v| v.to_owned())
                        })
                        .transpose()
                        .map_err(|e| SimError::Job(format!("functional model: {e}")))?;
                    outputs = self.compute_tile(
                        d,
                        sched,
                        &codes,
                        gm.as_ref(),
                        &bias[..n],
                        &requant[..n],
                        &input,
                    )?;
                    tile_rows = n;
                    codes = Array2::zeros((0, k));
                    perf.plane_ops += sched.items * sched.chunks * sched.planes;
                }
                Step::Write {
                    addr,
                    words,
                    first,
                    bytes,
                    out,
                    ..
                } => {
                    let extent = match self.extent(*addr, *words) {
                        Ok(e) => e,
                        Err(stop) => return Ok(Err(stop)),
                    };
                    perf.bytes_wr += bytes;
                    self.resident.observe(d, &self.shape, &step);
                    if let Err(stop) = Self::stop_on(self.bus_answer(&extent, true)) {
                        return Ok(Err(stop));
                    }
                    let items = sched.written as usize;
                    let data: Vec<u8> = match *out {
                        plan::Out::Channel { row, first, len } => {
                            let at = row * items + first as usize;
                            outputs[at..at + len as usize].to_vec()
                        }
                        plan::Out::Item { item } => (0..tile_rows)
                            .map(|r| outputs[r * items + item as usize])
                            .collect(),
                    };
                    let at = self.offset(*first);
                    self.mem[at..at + data.len()].copy_from_slice(&data);
                    // The running Conv2d's writes are mirrored into the feature buffer's other
                    // bank as they go out.
                    if let Some((m, _)) = self.resident.mirroring()
                        && let Some(dst) = first.checked_sub(m).and_then(|at| {
                            self.mirror_map
                                .get_mut(at as usize..)?
                                .get_mut(..data.len())
                        })
                    {
                        dst.copy_from_slice(&data);
                    }
                }
            }
        }
        Ok(Ok(()))
    }

    /// The layer input as codes: `batch` K-vectors (Dense) or the CHW feature map (Conv2d).
    fn decode_input(&self, d: &LayerDescriptor, sched: &Schedule, data: &[u8]) -> Vec<i32> {
        let act = self.caps.act_bits();
        let code = |&b: &u8| descriptor::activation_code(b, act, d.flags.in_signed);
        match d.op {
            Opcode::Dense => (0..sched.items as usize)
                .flat_map(|n| {
                    let at = n * sched.in_stride as usize;
                    data[at..at + sched.k as usize].iter().map(code)
                })
                .collect(),
            Opcode::Conv2d => {
                let len = usize::from(d.input.c) * usize::from(d.input.h) * usize::from(d.input.w);
                data[..len].iter().map(code).collect()
            }
        }
    }

    /// One tile's outputs with the golden kernels, row-major (row, item): every input of the
    /// batch (Dense) or every output pixel written (Conv2d; max-pooled when the descriptor asks).
    #[allow(clippy::too_many_arguments)]
    fn compute_tile(
        &self,
        d: &LayerDescriptor,
        sched: &Schedule,
        codes: &Array2<i32>,
        gm: Option<&Array2<u16>>,
        bias: &[i32],
        requant: &[Requant],
        input: &[i32],
    ) -> Result<Vec<u8>, SimError> {
        let model = |e: caq_model::ModelError| SimError::Job(format!("functional model: {e}"));
        let act = ActQuant {
            bits: d.out_bits.get(),
            signed: d.flags.out_signed,
            scale: 1.0,
        };
        let layer = IntLayer {
            codes: codes.view(),
            groups: gm.map(|m| GroupMult {
                mult: m.view(),
                group_size: usize::from(d.group_size),
            }),
            bias,
            requant,
            out: OutRange {
                qmin: act.qmin(),
                qmax: act.qmax(),
                relu: d.flags.relu,
            },
        };
        let y: Vec<i32> = match d.op {
            Opcode::Dense => {
                let (k, items, n) = (sched.k as usize, sched.items as usize, bias.len());
                let mut y = vec![0; n * items];
                for item in 0..items {
                    let out =
                        kernels::dense(&layer, &input[item * k..(item + 1) * k]).map_err(model)?;
                    for (r, v) in out.into_iter().enumerate() {
                        y[r * items + item] = v;
                    }
                }
                y
            }
            Opcode::Conv2d => {
                let shape = (
                    usize::from(d.input.c),
                    usize::from(d.input.h),
                    usize::from(d.input.w),
                );
                let x = ArrayView3::from_shape(shape, input)
                    .map_err(|e| SimError::Job(format!("functional model: {e}")))?;
                let g = ConvGeom {
                    kernel: [usize::from(d.kernel_h), usize::from(d.kernel_w)],
                    stride: usize::from(d.stride),
                    pad: Padding {
                        top: usize::from(d.pad.top),
                        left: usize::from(d.pad.left),
                        bottom: usize::from(d.pad.bottom),
                        right: usize::from(d.pad.right),
                    },
                    groups: 1,
                };
                let y = kernels::conv2d(&layer, x, g).map_err(model)?;
                let y = match (d.global_pool, usize::from(d.max_pool)) {
                    (Some(mean), _) => kernels::global_pool_requantized(
                        y.view(),
                        Requant {
                            mult: mean.multiplier,
                            shift: mean.shift,
                        },
                        layer.out,
                    ),
                    (None, 0) => y,
                    (None, k) => kernels::max_pool(y.view(), k, k).map_err(model)?,
                };
                y.iter().copied().collect()
            }
        };
        Ok(y.iter().map(|&v| v as u8).collect())
    }

    fn check_memory(&self, addr: DeviceAddr, len: usize) -> Result<usize, SimError> {
        if self.region.contains(addr, len as u64) {
            Ok(self.offset(addr.0))
        } else {
            Err(SimError::Memory {
                addr: addr.0,
                len: len as u64,
                base: self.region.base.0,
                end: self.region.end(),
            })
        }
    }
}

impl InjectFaults for FuncDevice {
    fn inject(&mut self, range: Range<u64>, resp: Resp, dir: FaultDir) {
        self.faults.push(Fault { range, resp, dir });
    }

    fn clear_faults(&mut self) {
        self.faults.clear();
    }
}

impl Device for FuncDevice {
    type Error = SimError;

    fn read_reg(&mut self, offset: u32) -> Result<u32, SimError> {
        let r = Self::register(AxiOp::Read, offset)?;
        let (major, minor, patch) = regmap::REGMAP_VERSION;
        let caps = self.caps.encode();
        if let Some(i) = PERF_COUNTERS.iter().position(|p| p.lo == *r) {
            self.snapshots[i] = (self.counters[i] >> 32) as u32;
            return Ok(self.counters[i] as u32);
        }
        if let Some(i) = PERF_COUNTERS.iter().position(|p| p.hi == *r) {
            return Ok(self.snapshots[i]);
        }
        let lo = |v: u64| v as u32;
        let hi = |v: u64| (v >> 32) as u32;
        Ok(match r.name {
            "ID" => regmap::ID_VALUE,
            "VERSION" => [
                (regmap::VERSION_MAJOR, major),
                (regmap::VERSION_MINOR, minor),
                (regmap::VERSION_PATCH, patch),
            ]
            .iter()
            .fold(0, |w, (f, v)| w | put(*f, u32::from(*v))),
            "CONFIG_HASH_LO" => self.hash.lo(),
            "CONFIG_HASH_HI" => self.hash.hi(),
            "CAPS0" => caps[0],
            "CAPS1" => caps[1],
            "CAPS2" => caps[2],
            "CAPS3" => caps[3],
            "CTRL" => put(regmap::CTRL_IRQ_EN, u32::from(self.irq_en)),
            "STATUS" => self.status,
            "IRQ_STATUS" => self.irq_status,
            "DESC_ADDR_LO" => lo(self.desc_addr),
            "DESC_ADDR_HI" => hi(self.desc_addr),
            "DESC_COUNT" => self.desc_count,
            "WIN_BASE_LO" => lo(self.win_base),
            "WIN_BASE_HI" => hi(self.win_base),
            "WIN_LIMIT_LO" => lo(self.win_limit),
            "WIN_LIMIT_HI" => hi(self.win_limit),
            _ => return Err(Self::slverr(AxiOp::Read, offset)),
        })
    }

    fn write_reg(&mut self, offset: u32, value: u32) -> Result<(), SimError> {
        let r = Self::register(AxiOp::Write, offset)?;
        let set_lo = |v: &mut u64| *v = *v & !0xffff_ffff | u64::from(value);
        let set_hi = |v: &mut u64| *v = *v & 0xffff_ffff | u64::from(value) << 32;
        match r.name {
            "CTRL" => {
                self.irq_en = regmap::CTRL_IRQ_EN.is_set(value);
                let soft_reset = regmap::CTRL_SOFT_RESET.is_set(value);
                if soft_reset {
                    self.pending = None;
                    self.status = 0;
                    self.irq_status = 0;
                }
                if soft_reset || regmap::CTRL_PERF_CLEAR.is_set(value) {
                    self.clear_counters();
                }
                // START is ignored while BUSY and when SOFT_RESET is written in the same word, as
                // in caq_axil_regs.
                if regmap::CTRL_START.is_set(value) && !soft_reset && !self.busy() {
                    self.start()?;
                }
            }
            "IRQ_STATUS" => {
                let causes = regmap::IRQ_STATUS_DONE.mask() | regmap::IRQ_STATUS_ERROR.mask();
                self.irq_status &= !(value & causes);
            }
            "DESC_ADDR_LO" => set_lo(&mut self.desc_addr),
            "DESC_ADDR_HI" => set_hi(&mut self.desc_addr),
            "DESC_COUNT" => self.desc_count = value,
            "WIN_BASE_LO" => set_lo(&mut self.win_base),
            "WIN_BASE_HI" => set_hi(&mut self.win_base),
            "WIN_LIMIT_LO" => set_lo(&mut self.win_limit),
            "WIN_LIMIT_HI" => set_hi(&mut self.win_limit),
            // Read-only registers ignore writes (OKAY), as the RTL does.
            _ => {}
        }
        Ok(())
    }

    fn memory(&self) -> MemRegion {
        self.region
    }

    fn mem_write(&mut self, addr: DeviceAddr, data: &[u8]) -> Result<(), SimError> {
        let at = self.check_memory(addr, data.len())?;
        self.mem[at..at + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn mem_read(&mut self, addr: DeviceAddr, buf: &mut [u8]) -> Result<(), SimError> {
        let at = self.check_memory(addr, buf.len())?;
        buf.copy_from_slice(&self.mem[at..at + buf.len()]);
        Ok(())
    }

    /// Device time passes: `timeout` at the config clock, or less when a pending run finishes
    /// first. A run longer than the timeout stays BUSY, so a later wait can still see it finish.
    fn wait_irq(&mut self, timeout: Duration) -> Result<IrqWait, SimError> {
        self.advance(caq_spec::device::timeout_cycles(
            timeout,
            self.cfg.clock_mhz,
        ));
        Ok(if self.irq_line() {
            IrqWait::Fired
        } else {
            IrqWait::TimedOut
        })
    }
}

/// `words` 64-bit words of a bank's copy from byte `offset`, zero past its end.
fn bank_slice(bank: &[u8], offset: u64, words: u64) -> Vec<u8> {
    let from = usize::try_from(offset).map_or(&[][..], |o| bank.get(o..).unwrap_or(&[]));
    let mut out: Vec<u8> = from.iter().take(8 * words as usize).copied().collect();
    out.resize(8 * words as usize, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use caq_spec::regmap::{Access, REGISTERS, Reset};

    const BASE: u64 = 0x1000_0000;

    fn config() -> AccelConfig {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/sim-small.toml");
        AccelConfig::load(path).expect("sim-small")
    }

    fn device() -> FuncDevice {
        let mem = MemRegion {
            base: DeviceAddr(BASE),
            len: 1 << 16,
        };
        FuncDevice::new(&config(), mem).expect("valid config")
    }

    fn plain_rw() -> impl Iterator<Item = &'static Register> {
        REGISTERS
            .iter()
            .filter(|r| r.access == Access::Rw && r.fields.is_empty())
    }

    fn read(dev: &mut FuncDevice, r: Register) -> u32 {
        dev.read_reg(r.offset).expect(r.name)
    }

    fn write(dev: &mut FuncDevice, r: Register, value: u32) {
        dev.write_reg(r.offset, value).expect(r.name);
    }

    #[test]
    fn every_register_starts_at_its_reset_value_for_the_config() {
        let cfg = config();
        let hash = ConfigHash::of(&cfg);
        let caps = Caps::from_config(&cfg).expect("valid").encode();
        let mut dev = device();
        for r in REGISTERS {
            let expected = match (r.reset, r.name) {
                (Reset::Value(v), _) => v,
                (Reset::FromConfig, "CONFIG_HASH_LO") => hash.lo(),
                (Reset::FromConfig, "CONFIG_HASH_HI") => hash.hi(),
                (Reset::FromConfig, name) => {
                    let i = ["CAPS0", "CAPS1", "CAPS2", "CAPS3"]
                        .iter()
                        .position(|c| *c == name)
                        .unwrap_or_else(|| panic!("no config value for {name}"));
                    caps[i]
                }
            };
            assert_eq!(read(&mut dev, *r), expected, "{}", r.name);
        }
        assert!(!dev.irq_line());
    }

    #[test]
    fn rw_registers_round_trip_and_read_only_ones_ignore_writes() {
        let mut dev = device();
        for (r, v) in plain_rw().zip(1u32..) {
            write(&mut dev, *r, 0x1357_9bdf_u32.wrapping_mul(v));
            assert_eq!(
                read(&mut dev, *r),
                0x1357_9bdf_u32.wrapping_mul(v),
                "{}",
                r.name
            );
        }
        for r in REGISTERS.iter().filter(|r| r.access == Access::Ro) {
            let before = read(&mut dev, *r);
            write(&mut dev, *r, !before);
            assert_eq!(read(&mut dev, *r), before, "{}", r.name);
        }
    }

    #[test]
    fn unmapped_and_unaligned_offsets_answer_slverr_and_change_nothing() {
        let mut dev = device();
        write(&mut dev, regmap::DESC_COUNT, 7);
        for offset in [
            0x02c, 0x03c, 0x050, 0x07c, 0x0b0, 0x0fc, 0x100, 0xffc, 0x001, 0x022,
        ] {
            for result in [
                dev.read_reg(offset).map(|_| ()),
                dev.write_reg(offset, u32::MAX),
            ] {
                let err = result.expect_err("SLVERR");
                assert!(
                    matches!(
                        err,
                        SimError::Response {
                            resp: Resp::SlvErr,
                            ..
                        }
                    ),
                    "{offset:#x}: {err}"
                );
            }
        }
        assert_eq!(
            dev.read_reg(0x02c).expect_err("SLVERR").to_string(),
            "AXI4-Lite read of unmapped 0x02c: the slave answered SLVERR"
        );
        assert_eq!(read(&mut dev, regmap::DESC_COUNT), 7);
        assert_eq!(read(&mut dev, regmap::STATUS), 0);
    }

    #[test]
    fn ctrl_stores_irq_en_only_and_soft_reset_keeps_the_programming() {
        let mut dev = device();
        let irq_en = regmap::CTRL_IRQ_EN.mask();
        write(&mut dev, regmap::CTRL, regmap::CTRL_PERF_CLEAR.mask());
        assert_eq!(read(&mut dev, regmap::CTRL), 0);
        write(
            &mut dev,
            regmap::CTRL,
            irq_en | regmap::CTRL_SOFT_RESET.mask(),
        );
        assert_eq!(read(&mut dev, regmap::CTRL), irq_en);
        for (r, v) in plain_rw().zip(1u32..) {
            write(&mut dev, *r, v);
        }
        write(
            &mut dev,
            regmap::CTRL,
            irq_en | regmap::CTRL_SOFT_RESET.mask(),
        );
        assert_eq!(read(&mut dev, regmap::CTRL), irq_en);
        for (r, v) in plain_rw().zip(1u32..) {
            assert_eq!(read(&mut dev, *r), v, "{} after SOFT_RESET", r.name);
        }
    }

    #[test]
    fn an_empty_list_fails_with_desc_count_and_irq_status_is_write_one_to_clear() {
        let mut dev = device();
        let irq_en = regmap::CTRL_IRQ_EN.mask();
        let error = regmap::IRQ_STATUS_ERROR.mask();
        write(&mut dev, regmap::CTRL, regmap::CTRL_START.mask());
        let status = read(&mut dev, regmap::STATUS);
        assert!(regmap::STATUS_ERROR.is_set(status), "STATUS {status:#x}");
        assert!(!regmap::STATUS_DONE.is_set(status) && !regmap::STATUS_BUSY.is_set(status));
        assert_eq!(
            regmap::STATUS_ERR_CODE.get(status),
            u32::from(ErrorCode::DescCount.as_u8())
        );
        assert_eq!(regmap::STATUS_ERR_DESC.get(status), 0);
        assert_eq!(read(&mut dev, regmap::IRQ_STATUS), error);
        // The cause was pending with IRQ_EN clear: enabling the line raises it.
        assert!(!dev.irq_line());
        assert_eq!(dev.wait_irq(Duration::ZERO).ok(), Some(IrqWait::TimedOut));
        write(&mut dev, regmap::CTRL, irq_en);
        assert!(dev.irq_line());
        assert_eq!(dev.wait_irq(Duration::ZERO).ok(), Some(IrqWait::Fired));
        // Zeros and the other cause clear nothing; the W1C leaves STATUS alone.
        write(&mut dev, regmap::IRQ_STATUS, regmap::IRQ_STATUS_DONE.mask());
        assert_eq!(read(&mut dev, regmap::IRQ_STATUS), error);
        write(&mut dev, regmap::IRQ_STATUS, error);
        assert_eq!(read(&mut dev, regmap::IRQ_STATUS), 0);
        assert!(!dev.irq_line());
        assert_eq!(read(&mut dev, regmap::STATUS), status);
        write(
            &mut dev,
            regmap::CTRL,
            irq_en | regmap::CTRL_SOFT_RESET.mask(),
        );
        assert_eq!(read(&mut dev, regmap::STATUS), 0);
    }

    #[test]
    fn start_written_with_soft_reset_is_ignored() {
        let mut dev = device();
        write(
            &mut dev,
            regmap::CTRL,
            regmap::CTRL_START.mask() | regmap::CTRL_SOFT_RESET.mask(),
        );
        assert_eq!(read(&mut dev, regmap::STATUS), 0);
        assert_eq!(read(&mut dev, regmap::IRQ_STATUS), 0);
    }

    #[test]
    fn a_misaligned_desc_addr_fails_before_any_fetch() {
        let mut dev = device();
        write(&mut dev, regmap::WIN_BASE_LO, BASE as u32);
        write(&mut dev, regmap::WIN_LIMIT_LO, (BASE + 0x1_0000) as u32);
        write(&mut dev, regmap::DESC_ADDR_LO, BASE as u32 + 4);
        write(&mut dev, regmap::DESC_COUNT, 1);
        write(&mut dev, regmap::CTRL, regmap::CTRL_START.mask());
        let status = read(&mut dev, regmap::STATUS);
        assert_eq!(
            regmap::STATUS_ERR_CODE.get(status),
            u32::from(ErrorCode::Misaligned.as_u8())
        );
        let rd = regmap::PERF_BYTES_RD;
        assert_eq!(read(&mut dev, rd.lo), 0, "no word was requested");
    }

    #[test]
    fn counters_snapshot_hi_on_lo_reads_and_clear() {
        let mut dev = device();
        let pair = regmap::PERF_CYCLES;
        dev.counters[0] = 0x0000_0005_ffff_fff0;
        assert_eq!(read(&mut dev, pair.lo), 0xffff_fff0);
        dev.counters[0] += 0x100;
        // HI returns the snapshot of the last LO read, not the moved counter.
        assert_eq!(read(&mut dev, pair.hi), 5);
        assert_eq!(read(&mut dev, pair.lo), 0xf0);
        assert_eq!(read(&mut dev, pair.hi), 6);
        write(&mut dev, regmap::CTRL, regmap::CTRL_PERF_CLEAR.mask());
        assert_eq!(read(&mut dev, pair.hi), 0);
        assert_eq!(read(&mut dev, pair.lo), 0);
        dev.counters[3] = 9;
        write(&mut dev, regmap::CTRL, regmap::CTRL_SOFT_RESET.mask());
        assert_eq!(read(&mut dev, regmap::PERF_PLANE_OPS.lo), 0);
    }

    #[test]
    fn host_memory_accesses_outside_the_region_are_errors() {
        let mut dev = device();
        dev.mem_write(DeviceAddr(BASE), &[1, 2, 3]).expect("inside");
        let mut buf = [0u8; 3];
        dev.mem_read(DeviceAddr(BASE), &mut buf).expect("inside");
        assert_eq!(buf, [1, 2, 3]);
        let err = dev
            .mem_write(DeviceAddr(BASE + 0xffff), &[0, 0])
            .expect_err("past the end");
        assert!(
            matches!(
                err,
                SimError::Memory {
                    addr: 0x1000_ffff,
                    len: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(dev.mem_read(DeviceAddr(BASE - 1), &mut buf).is_err());
    }
}
