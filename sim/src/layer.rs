//! [`LayerJob`]: a Dense or Conv2d layer as any device runs it — plane groups, tables, input,
//! geometry — with its golden output from caq-model's kernels, placed in a `caq_spec::Device`'s
//! memory through the trait alone, and [`run_list`], which runs descriptor lists through the
//! registers. The same code drives the functional model, the Verilator model and the board.
//! This module knows the descriptor and table layouts (docs/descriptor.md) and caq-model's
//! packing; it does not know any backend.

use std::time::Duration;

use caq_model::graph::Padding;
use caq_model::kernels::{self, ConvGeom, GroupMult, IntLayer};
use caq_model::planes;
use caq_model::quant::ActQuant;
use caq_model::requant::{self, MeanAsLayer, OutRange, Requant};
use caq_spec::descriptor::{
    Flags, LayerDescriptor, Opcode, Pad, PlaneGroup, PlaneGroups, Shape, Window,
};
use caq_spec::device::write_wide;
use caq_spec::regmap;
use caq_spec::{BitWidth, Caps, Device, DeviceAddr, IrqWait, PerfCounters};
use ndarray::{Array2, ArrayView3};

use crate::error::SimError;

/// One stored plane group: signed `bits`-bit codes `[out_c, K]` weighted by 2^shift.
#[derive(Clone, Debug)]
pub struct WeightGroup {
    pub bits: u8,
    pub shift: u8,
    pub codes: Array2<i32>,
}

/// The operation and its input geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerOp {
    /// K = in_c; the input is `batch` K-vectors, run with each loaded weight tile.
    Dense { in_c: usize, batch: usize },
    /// K = in_c · kernel[0] · kernel[1] in (c, ky, kx) order; the input is CHW. `max_pool`: the
    /// window k of the max pooling (k×k, stride k) the device applies before writing, 0 = none;
    /// `global_pool`: the device writes each channel's average instead (not with `max_pool`).
    Conv2d {
        in_c: usize,
        in_h: usize,
        in_w: usize,
        kernel: [usize; 2],
        stride: usize,
        pad: Padding,
        max_pool: usize,
        global_pool: bool,
    },
}

/// A layer at one precision (`active` plane groups), with everything the device reads.
#[derive(Clone, Debug)]
pub struct LayerJob {
    pub op: LayerOp,
    pub groups: Vec<WeightGroup>,
    pub active: usize,
    /// Local-region multipliers `[out_c, regions]` and the region size, or none.
    pub regions: Option<(Array2<u16>, usize)>,
    pub bias: Vec<i32>,
    pub requant: Vec<Requant>,
    pub relu: bool,
    pub in_signed: bool,
    /// The descriptor's input activation width (2..=8, at most the config's `array.act_bits`);
    /// every input code must lie in its range.
    pub in_bits: u8,
    pub out_signed: bool,
    pub out_bits: u8,
    /// Input codes, one byte each on the device: `batch` K-vectors one after the other (Dense)
    /// or in_c·in_h·in_w in CHW (Conv2d).
    pub input: Vec<i32>,
}

/// Hands out 64-byte-aligned buffers from `[next, end)` of device memory.
#[derive(Clone, Copy, Debug)]
pub struct Alloc {
    pub next: u64,
    pub end: u64,
}

/// Alignment of every buffer: a cache line, and a multiple of every bus width.
pub const BUFFER_ALIGN: u64 = 64;
/// Spare bytes after every buffer: the output's are pre-filled so stray writes show.
pub const SPARE_BYTES: u64 = 16;
/// The fill of output buffers before a run.
pub const OUTPUT_FILL: u8 = 0xa5;

impl Alloc {
    /// The free part of a device's memory from `start` on.
    pub fn new(start: DeviceAddr, end: u64) -> Alloc {
        Alloc {
            next: start.0.next_multiple_of(BUFFER_ALIGN),
            end,
        }
    }

    /// A buffer of `len` bytes (plus the spare bytes).
    pub fn take(&mut self, len: u64) -> Result<u64, SimError> {
        let at = self.next;
        let next = (at + len + SPARE_BYTES).next_multiple_of(BUFFER_ALIGN);
        if next > self.end {
            return Err(SimError::Job(format!(
                "device memory full: {len} bytes at {at:#x} would pass {:#x}",
                self.end
            )));
        }
        self.next = next;
        Ok(at)
    }
}

/// A job placed in device memory.
#[derive(Clone, Copy, Debug)]
pub struct Placed {
    pub desc: LayerDescriptor,
    /// Output bytes at `desc.output_addr`: out_c · out_h · out_w (CHW), or for a Dense batch
    /// `batch` vectors of out_c, `out_stride` bytes apart.
    pub output_len: usize,
    /// Dense: bytes from one output of the batch to the next.
    pub out_stride: usize,
}

impl Placed {
    /// The bytes the output region should hold after the run, from the job's outputs
    /// ([`LayerJob::golden`]): the gaps between a Dense batch's outputs keep [`OUTPUT_FILL`].
    pub fn image(&self, outputs: &[u8]) -> Vec<u8> {
        let out_c = usize::from(self.desc.output.c);
        if self.desc.op == Opcode::Conv2d {
            return outputs.to_vec();
        }
        let mut image = vec![OUTPUT_FILL; self.output_len];
        for (n, y) in outputs.chunks(out_c).enumerate() {
            image[n * self.out_stride..][..out_c].copy_from_slice(y);
        }
        image
    }
}

fn job_error(e: impl std::fmt::Display) -> SimError {
    SimError::Job(e.to_string())
}

fn device_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> SimError {
    SimError::Device(Box::new(e))
}

fn bits(b: u8) -> Result<BitWidth, SimError> {
    BitWidth::try_from(b).map_err(job_error)
}

/// `n` codes rounded up to whole chunks of `cols` bytes: the distance between Dense inputs (or
/// outputs) of a batch (caq_spec::CoreShape::batch_stride).
fn stride(n: usize, cols: usize) -> usize {
    n.next_multiple_of(cols)
}

/// The array's lanes C of a device, from its CAPS registers.
fn device_cols<D: Device>(dev: &mut D) -> Result<usize, SimError> {
    let words = caq_spec::device::read_caps(dev).map_err(device_error)?;
    let caps = Caps::decode(words).map_err(job_error)?;
    Ok(caps.cols() as usize)
}

/// `bytes` padded with zeros to whole 8-byte words: the device reads tables by the word.
fn padded(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.resize(bytes.len().next_multiple_of(8), 0);
    bytes
}

impl LayerJob {
    pub fn in_c(&self) -> usize {
        match self.op {
            LayerOp::Dense { in_c, .. } | LayerOp::Conv2d { in_c, .. } => in_c,
        }
    }

    /// The reduction length.
    pub fn k(&self) -> usize {
        match self.op {
            LayerOp::Dense { in_c, .. } => in_c,
            LayerOp::Conv2d { in_c, kernel, .. } => in_c * kernel[0] * kernel[1],
        }
    }

    pub fn out_c(&self) -> usize {
        self.groups[0].codes.nrows()
    }

    /// The convolution geometry, for Conv2d.
    pub fn geom(&self) -> Option<ConvGeom> {
        match self.op {
            LayerOp::Dense { .. } => None,
            LayerOp::Conv2d {
                kernel,
                stride,
                pad,
                ..
            } => Some(ConvGeom {
                kernel,
                stride,
                pad,
                groups: 1,
            }),
        }
    }

    /// The convolution's output height and width, before any pooling (1 x 1 for Dense).
    pub fn conv_hw(&self) -> Result<(usize, usize), SimError> {
        match (self.op, self.geom()) {
            (LayerOp::Conv2d { in_h, in_w, .. }, Some(g)) => {
                g.out_size(in_h, in_w).map_err(job_error)
            }
            _ => Ok((1, 1)),
        }
    }

    /// The max-pooling window, 0 = none.
    pub fn max_pool(&self) -> usize {
        match self.op {
            LayerOp::Conv2d { max_pool, .. } => max_pool,
            LayerOp::Dense { .. } => 0,
        }
    }

    /// Whether the device writes the global average of each output channel.
    pub fn global_pool(&self) -> bool {
        matches!(
            self.op,
            LayerOp::Conv2d {
                global_pool: true,
                ..
            }
        )
    }

    /// Height and width of the map written: the convolution's, divided by the pooling window
    /// (1 x 1 for Dense and with global pooling).
    pub fn out_hw(&self) -> Result<(usize, usize), SimError> {
        let (h, w) = self.conv_hw()?;
        Ok(match self.max_pool() {
            _ if self.global_pool() => (1, 1),
            0 => (h, w),
            k => (h / k, w / k),
        })
    }

    /// Inputs run with each weight tile: the Dense batch, 1 for Conv2d.
    pub fn batch(&self) -> usize {
        match self.op {
            LayerOp::Dense { batch, .. } => batch,
            LayerOp::Conv2d { .. } => 1,
        }
    }

    /// Output codes: out_c · out_h · out_w, times the batch.
    pub fn output_len(&self) -> Result<usize, SimError> {
        let (h, w) = self.out_hw()?;
        Ok(self.out_c() * h * w * self.batch())
    }

    /// Σ of the active groups' codes, shifted: the effective weight codes `[out_c, K]`.
    pub fn effective_codes(&self) -> Array2<i32> {
        let mut eff = Array2::<i32>::zeros((self.out_c(), self.k()));
        for g in self.groups.iter().take(self.active) {
            eff += &g.codes.mapv(|v| v << g.shift);
        }
        eff
    }

    /// The output code range, from the activation quantizer (one definition in caq-model).
    fn out_range(&self) -> OutRange {
        let act = ActQuant {
            bits: self.out_bits,
            signed: self.out_signed,
            scale: 1.0,
        };
        OutRange {
            qmin: act.qmin(),
            qmax: act.qmax(),
            relu: self.relu,
        }
    }

    /// Output codes (one byte each, CHW; a Dense batch's outputs one after the other), from the
    /// golden kernels. [`Placed::image`] lays them out as the device writes them.
    pub fn golden(&self) -> Result<Vec<u8>, SimError> {
        let eff = self.effective_codes();
        let layer = IntLayer {
            codes: eff.view(),
            groups: self.regions.as_ref().map(|(m, gs)| GroupMult {
                mult: m.view(),
                group_size: *gs,
            }),
            bias: &self.bias,
            requant: &self.requant,
            out: self.out_range(),
        };
        let out: Vec<i32> = match (self.op, self.geom()) {
            (
                LayerOp::Conv2d {
                    in_c, in_h, in_w, ..
                },
                Some(g),
            ) => {
                let x =
                    ArrayView3::from_shape((in_c, in_h, in_w), &self.input).map_err(job_error)?;
                let y = kernels::conv2d(&layer, x, g).map_err(job_error)?;
                let y = match self.max_pool() {
                    _ if self.global_pool() => {
                        kernels::global_avg_pool(y.view()).map_err(job_error)?
                    }
                    0 => y,
                    k => kernels::max_pool(y.view(), k, k).map_err(job_error)?,
                };
                y.iter().copied().collect()
            }
            _ => {
                let mut out = Vec::with_capacity(self.output_len()?);
                for x in self.input.chunks(self.k()) {
                    out.extend(kernels::dense(&layer, x).map_err(job_error)?);
                }
                out
            }
        };
        Ok(out.iter().map(|&v| v as u8).collect())
    }

    /// Writes the input, tables and plane groups into `dev`'s memory from `alloc` (64-byte
    /// aligned buffers, tables zero-padded to whole words, the output pre-filled with
    /// [`OUTPUT_FILL`] including its spare bytes) and returns the descriptor (`last` clear).
    pub fn place<D: Device>(&self, dev: &mut D, alloc: &mut Alloc) -> Result<Placed, SimError> {
        let mut put = |dev: &mut D, bytes: &[u8]| -> Result<u64, SimError> {
            let at = alloc.take(bytes.len() as u64)?;
            dev.mem_write(DeviceAddr(at), bytes).map_err(device_error)?;
            dev.sync_for_device(DeviceAddr(at), bytes.len() as u64)
                .map_err(device_error)?;
            Ok(at)
        };
        let out_c = self.out_c();
        let (out_h, out_w) = self.conv_hw()?;
        let cols = device_cols(dev)?;
        let out_stride = stride(out_c, cols);
        let output_len = match self.op {
            LayerOp::Dense { batch, .. } => (batch - 1) * out_stride + out_c,
            LayerOp::Conv2d { .. } => self.output_len()?,
        };
        let input: Vec<u8> = match self.op {
            LayerOp::Dense { in_c, .. } => self
                .input
                .chunks(in_c)
                .flat_map(|x| {
                    let mut v: Vec<u8> = x.iter().map(|&c| c as u8).collect();
                    v.resize(stride(in_c, cols), 0);
                    v
                })
                .collect(),
            LayerOp::Conv2d { .. } => self.input.iter().map(|&v| v as u8).collect(),
        };
        let input_addr = put(dev, &input)?;
        let output_addr = put(dev, &vec![OUTPUT_FILL; output_len + SPARE_BYTES as usize])?;
        let bias = padded(self.bias.iter().flat_map(|b| b.to_le_bytes()).collect());
        let bias_addr = put(dev, &bias)?;
        let rq_addr = put(dev, &requant::table_bytes(&self.requant))?;
        let (gm_addr, group_size) = match &self.regions {
            Some((m, gs)) => {
                let b = padded(m.iter().flat_map(|v| v.to_le_bytes()).collect());
                (put(dev, &b)?, u16::try_from(*gs).map_err(job_error)?)
            }
            None => (0, 0),
        };
        let mut pg = Vec::new();
        for g in &self.groups {
            let bytes = planes::pack(g.codes.view(), g.bits)
                .map_err(job_error)?
                .to_le_bytes();
            pg.push(PlaneGroup {
                bits: bits(g.bits)?,
                shift: g.shift,
                weight_addr: DeviceAddr(put(dev, &bytes)?),
            });
        }
        let dim = |v: usize| u16::try_from(v).map_err(job_error);
        let small = |v: usize| u8::try_from(v).map_err(job_error);
        let (input_shape, kernel, stride, pad) = match self.op {
            LayerOp::Dense { in_c, .. } => ((in_c, 1, 1), [1, 1], 1, Padding::default()),
            LayerOp::Conv2d {
                in_c,
                in_h,
                in_w,
                kernel,
                stride,
                pad,
                ..
            } => ((in_c, in_h, in_w), kernel, stride, pad),
        };
        let desc = LayerDescriptor {
            op: match self.op {
                LayerOp::Dense { .. } => Opcode::Dense,
                LayerOp::Conv2d { .. } => Opcode::Conv2d,
            },
            flags: Flags {
                relu: self.relu,
                in_signed: self.in_signed,
                out_signed: self.out_signed,
                grouped: self.regions.is_some(),
                last: false,
            },
            in_bits: bits(self.in_bits)?,
            out_bits: bits(self.out_bits)?,
            group_size,
            input: Shape {
                c: dim(input_shape.0)?,
                h: dim(input_shape.1)?,
                w: dim(input_shape.2)?,
            },
            output: Shape {
                c: dim(out_c)?,
                h: dim(out_h)?,
                w: dim(out_w)?,
            },
            kernel_h: small(kernel[0])?,
            kernel_w: small(kernel[1])?,
            stride: small(stride)?,
            pad: Pad {
                top: small(pad.top)?,
                left: small(pad.left)?,
                bottom: small(pad.bottom)?,
                right: small(pad.right)?,
            },
            plane_groups: PlaneGroups::new(&pg).map_err(job_error)?,
            active_groups: small(self.active)?,
            input_addr: DeviceAddr(input_addr),
            output_addr: DeviceAddr(output_addr),
            bias_addr: DeviceAddr(bias_addr),
            requant_addr: DeviceAddr(rq_addr),
            group_mult_addr: DeviceAddr(gm_addr),
            batch: u16::try_from(self.batch()).map_err(job_error)?,
            max_pool: small(self.max_pool())?,
            global_pool: match self.global_pool() {
                true => Some(
                    MeanAsLayer::of(out_h * out_w)
                        .ok_or_else(|| job_error(format!("no mean for {out_h}x{out_w}")))?
                        .requant
                        .entry(),
                ),
                false => None,
            },
        };
        Ok(Placed {
            desc,
            output_len,
            out_stride,
        })
    }
}

/// Reads a placed job's output bytes and the spare bytes after them.
pub fn read_output<D: Device>(dev: &mut D, p: &Placed) -> Result<Vec<u8>, SimError> {
    let len = p.output_len + SPARE_BYTES as usize;
    dev.sync_for_cpu(p.desc.output_addr, len as u64)
        .map_err(device_error)?;
    let mut buf = vec![0; len];
    dev.mem_read(p.desc.output_addr, &mut buf)
        .map_err(device_error)?;
    Ok(buf)
}

/// Writes `descs` as a list at `desc_addr`, `last` set on the final one only.
pub fn write_list<D: Device>(
    dev: &mut D,
    desc_addr: DeviceAddr,
    descs: &[LayerDescriptor],
) -> Result<(), SimError> {
    let bytes: Vec<u8> = descs
        .iter()
        .enumerate()
        .flat_map(|(i, d)| {
            let mut d = *d;
            d.flags.last = i + 1 == descs.len();
            d.encode()
        })
        .collect();
    dev.mem_write(desc_addr, &bytes).map_err(device_error)?;
    dev.sync_for_device(desc_addr, bytes.len() as u64)
        .map_err(device_error)
}

/// How a list is started.
#[derive(Clone, Copy, Debug)]
pub struct RunSpec {
    pub desc_addr: DeviceAddr,
    pub count: u32,
    pub window: Window,
    /// Device time to wait for the interrupt.
    pub timeout: Duration,
}

/// The outcome of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub irq: IrqWait,
    pub status: u32,
    pub perf: PerfCounters,
}

impl Run {
    /// STATUS.ERR_CODE and ERR_DESC when STATUS.ERROR is set.
    pub fn error(&self) -> Option<(u8, u32)> {
        regmap::STATUS_ERROR.is_set(self.status).then(|| {
            (
                regmap::STATUS_ERR_CODE.get(self.status) as u8,
                regmap::STATUS_ERR_DESC.get(self.status),
            )
        })
    }

    /// STATUS.DONE without STATUS.ERROR.
    pub fn done(&self) -> bool {
        regmap::STATUS_DONE.is_set(self.status) && !regmap::STATUS_ERROR.is_set(self.status)
    }
}

/// Programs WIN_*, DESC_ADDR and DESC_COUNT, clears the performance counters and IRQ_STATUS,
/// writes START with IRQ_EN, waits for the interrupt and reads STATUS and every counter.
/// A timeout is not an error: the returned [`Run`] says `TimedOut`.
pub fn run<D: Device>(dev: &mut D, spec: &RunSpec) -> Result<Run, SimError> {
    write_wide(dev, regmap::WIN_BASE, spec.window.base.0).map_err(device_error)?;
    write_wide(dev, regmap::WIN_LIMIT, spec.window.limit.0).map_err(device_error)?;
    write_wide(dev, regmap::DESC_ADDR, spec.desc_addr.0).map_err(device_error)?;
    dev.write_reg(regmap::DESC_COUNT.offset, spec.count)
        .map_err(device_error)?;
    let irq_en = regmap::CTRL_IRQ_EN.mask();
    dev.write_reg(regmap::CTRL.offset, irq_en | regmap::CTRL_PERF_CLEAR.mask())
        .map_err(device_error)?;
    let causes = regmap::IRQ_STATUS_DONE.mask() | regmap::IRQ_STATUS_ERROR.mask();
    dev.write_reg(regmap::IRQ_STATUS.offset, causes)
        .map_err(device_error)?;
    dev.write_reg(regmap::CTRL.offset, irq_en | regmap::CTRL_START.mask())
        .map_err(device_error)?;
    let irq = dev.wait_irq(spec.timeout).map_err(device_error)?;
    let status = dev.read_reg(regmap::STATUS.offset).map_err(device_error)?;
    let perf = PerfCounters::read(dev).map_err(device_error)?;
    Ok(Run { irq, status, perf })
}

/// Writes `descs` as a list at `desc_addr` and runs it in the device's whole memory as the
/// window (see [`run`]).
pub fn run_list<D: Device>(
    dev: &mut D,
    desc_addr: DeviceAddr,
    descs: &[LayerDescriptor],
    timeout: Duration,
) -> Result<Run, SimError> {
    write_list(dev, desc_addr, descs)?;
    let mem = dev.memory();
    let spec = RunSpec {
        desc_addr,
        count: u32::try_from(descs.len()).map_err(job_error)?,
        window: Window {
            base: mem.base,
            limit: DeviceAddr(mem.end()),
        },
        timeout,
    };
    run(dev, &spec)
}
