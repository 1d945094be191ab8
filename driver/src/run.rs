//! One inference of a compiled [`Program`] on any [`Device`]: write the input, run every device
//! segment through the registers (window, descriptor list, START, interrupt, STATUS, performance
//! counters), compute the host steps on the CPU, read the output. Knows the register protocol
//! (docs/regmap.md); knows nothing of a particular backend.
//!
//! The program must have been [`Program::load`]ed into the device first (weights, tables and
//! descriptors); `run` writes only the input and the host steps' outputs.
//!
//! Recovery: a wait that fails (timeout, STATUS ERROR, an interrupt without DONE, a backend error
//! after START) may leave a job running, and START is ignored while BUSY: the next run would then
//! write its input under a live DMA, lose its own START, and take the old job's interrupt as its
//! own. So every failed wait ends in [`reset`] (SOFT_RESET, STATUS polled until idle, IRQ_STATUS
//! acknowledged) before the error is returned; a reset that does not take is
//! [`HostError::ResetFailed`], after which the caller must not touch device memory.

use crate::compile::{ActBuffer, HostOp, HostStep, PassStart, PassStep, Program};
use crate::error::{HostError, Result};
use caq_model::kernels;
use caq_spec::device::{self, PerfCounters};
use caq_spec::regmap::{self, Register, WidePair};
use caq_spec::{Device, DeviceAddr, IrqWait};
use ndarray::Array3;
use serde::Serialize;
use std::time::{Duration, Instant};

/// How a run is made and measured.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// How long to wait for each segment's interrupt (device time for simulated backends).
    pub timeout: Duration,
    /// Run one descriptor at a time so that every layer gets its own counters (one START per
    /// layer instead of per segment; the outputs are the same).
    pub per_layer: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            timeout: Duration::from_secs(10),
            per_layer: false,
        }
    }
}

/// A layer's own counters (per-layer runs only).
#[derive(Clone, Debug, Serialize)]
pub struct LayerPerf {
    pub layer: String,
    pub bits: u8,
    pub perf: PerfCounters,
}

/// One device segment.
#[derive(Clone, Debug, Serialize)]
pub struct SegmentReport {
    pub layers: Vec<String>,
    pub perf: PerfCounters,
    /// Per layer, when the run was made one descriptor at a time.
    pub per_layer: Vec<LayerPerf>,
}

/// What one host step cost.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HostCost {
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Element operations: comparisons (max-pool), additions (avg-pool), multiply-adds (add).
    pub ops: u64,
}

impl HostCost {
    pub fn add(&mut self, o: &HostCost) {
        self.bytes_read += o.bytes_read;
        self.bytes_written += o.bytes_written;
        self.ops += o.ops;
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct HostStepReport {
    pub node: String,
    pub op: &'static str,
    pub cost: HostCost,
}

/// Everything measured in one inference.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunReport {
    pub segments: Vec<SegmentReport>,
    pub host_steps: Vec<HostStepReport>,
    /// Sum over the segments.
    pub device: PerfCounters,
    /// Sum over the host steps.
    pub host: HostCost,
}

/// The output codes (bytes as the device stores them) and the report.
#[derive(Clone, Debug)]
pub struct RunOutput {
    pub output: Vec<u8>,
    pub report: RunReport,
}

fn reg_write<D: Device>(dev: &mut D, r: &Register, v: u32) -> Result<()> {
    dev.write_reg(r.offset, v).map_err(HostError::backend)
}

fn reg_read<D: Device>(dev: &mut D, r: &Register) -> Result<u32> {
    dev.read_reg(r.offset).map_err(HostError::backend)
}

fn write_wide<D: Device>(dev: &mut D, p: WidePair, v: u64) -> Result<()> {
    device::write_wide(dev, p, v).map_err(HostError::backend)
}

/// Runs one inference of `program` (already loaded) on `input` (CHW pixel codes, one byte each).
pub fn run<D: Device>(
    dev: &mut D,
    program: &Program,
    input: &[u8],
    opts: &RunOptions,
) -> Result<RunOutput> {
    let report = run_pass(dev, program, Some(input), PassStart::Input, None, opts)?;
    let output = read_act(dev, &program.output())?;
    Ok(RunOutput { output, report })
}

/// Runs one pass of `program` (`Program::pass`): from the input (`input` is then written first)
/// or from where an earlier pass left the activations, through weight layer `stop` or to the
/// end. Returns the pass's report; the outputs stay in device memory ([`read_node`],
/// [`read_output`]).
pub fn run_pass<D: Device>(
    dev: &mut D,
    program: &Program,
    input: Option<&[u8]>,
    start: PassStart,
    stop: Option<usize>,
    opts: &RunOptions,
) -> Result<RunReport> {
    let steps = program.pass(start, stop)?;
    match (start, input) {
        (PassStart::Input, Some(input)) => write_input(dev, program, input)?,
        (PassStart::Input, None) => {
            return Err(HostError::Arg {
                what: "pass",
                why: "a pass from the input needs the input".into(),
            });
        }
        (_, Some(_)) => {
            return Err(HostError::Arg {
                what: "pass",
                why: "only a pass from the input writes an input".into(),
            });
        }
        (_, None) => {}
    }
    write_wide(dev, regmap::WIN_BASE, program.region.base.0)?;
    write_wide(dev, regmap::WIN_LIMIT, program.region.end())?;
    let mut report = RunReport::default();
    for step in steps {
        match step {
            PassStep::Device { layers, list } => {
                let r = run_segment(dev, program, layers, list, opts)?;
                report.device.add(&r.perf);
                report.segments.push(r);
            }
            PassStep::Host(h) => {
                let cost = host_step(dev, program, h)?;
                report.host.add(&cost);
                report.host_steps.push(HostStepReport {
                    node: h.name.clone(),
                    op: h.op.name(),
                    cost,
                });
            }
        }
    }
    Ok(report)
}

fn write_input<D: Device>(dev: &mut D, program: &Program, input: &[u8]) -> Result<()> {
    let inb = program.input;
    if input.len() as u64 != inb.buf.len {
        return Err(HostError::Arg {
            what: "input",
            why: format!(
                "{} bytes for an input of shape {:?} ({} codes)",
                input.len(),
                inb.shape,
                inb.buf.len
            ),
        });
    }
    dev.mem_write(inb.buf.addr, input)
        .map_err(HostError::backend)?;
    dev.sync_for_device(inb.buf.addr, inb.buf.len)
        .map_err(HostError::backend)
}

/// The output codes of the network as the device stores them (one byte per code), after a pass
/// that reached the end.
pub fn read_output<D: Device>(dev: &mut D, program: &Program) -> Result<Vec<u8>> {
    read_act(dev, &program.output())
}

/// The output codes of graph node `node` (CHW), after a pass that computed it.
pub fn read_node<D: Device>(dev: &mut D, program: &Program, node: usize) -> Result<Vec<i32>> {
    let a = node_act(program, node)?;
    Ok(a.decode(&read_act(dev, &a)?))
}

/// A node's activation buffer's bytes (one byte per code, CHW, [`ActBuffer::chw`]) and whether
/// its codes are signed: [`read_node`] without widening each code.
pub fn read_node_bytes<D: Device>(
    dev: &mut D,
    program: &Program,
    node: usize,
) -> Result<(Vec<u8>, bool)> {
    let a = node_act(program, node)?;
    Ok((a.chw(read_act(dev, &a)?), a.signed))
}

fn node_act(program: &Program, node: usize) -> Result<ActBuffer> {
    program
        .nodes
        .get(node)
        .copied()
        .ok_or_else(|| HostError::Arg {
            what: "node",
            why: format!("{node} of {} nodes", program.nodes.len()),
        })
}

fn run_segment<D: Device>(
    dev: &mut D,
    program: &Program,
    range: std::ops::Range<usize>,
    list: DeviceAddr,
    opts: &RunOptions,
) -> Result<SegmentReport> {
    let layers = &program.layers[range];
    let mut report = SegmentReport {
        layers: layers.iter().map(|l| l.name.clone()).collect(),
        perf: PerfCounters::default(),
        per_layer: Vec::new(),
    };
    // One name per descriptor: a lowered layer's parts are "name[part/parts]".
    let names: Vec<String> = layers.iter().flat_map(|l| l.list_names()).collect();
    if opts.per_layer {
        for l in layers {
            let perf = start_and_wait(dev, l.single_addr.0, &l.list_names(), opts)?;
            report.perf.add(&perf);
            report.per_layer.push(LayerPerf {
                layer: l.name.clone(),
                bits: l.bits,
                perf,
            });
        }
    } else {
        report.perf = start_and_wait(dev, list.0, &names, opts)?;
    }
    // The outputs the lists wrote: every layer's, and a global average pool's or an Add's in
    // its list.
    for l in layers {
        for node in l.written_nodes() {
            let out = program.nodes[node].buf;
            dev.sync_for_cpu(out.addr, out.len)
                .map_err(HostError::backend)?;
        }
    }
    Ok(report)
}

/// One START of the list at `list` whose descriptors run the layers `names`; returns the
/// counters.
fn start_and_wait<D: Device>(
    dev: &mut D,
    list: u64,
    names: &[String],
    opts: &RunOptions,
) -> Result<PerfCounters> {
    let count = names.len() as u32;
    reg_write(dev, &regmap::CTRL, regmap::CTRL_PERF_CLEAR.mask())?;
    write_wide(dev, regmap::DESC_ADDR, list)?;
    reg_write(dev, &regmap::DESC_COUNT, count)?;
    reg_write(dev, &regmap::IRQ_STATUS, IRQ_CAUSES)?;
    // Stale events drained and the line re-enabled only now, after the device's own interrupt was
    // acknowledged: a level-triggered line re-enabled before would fire again at once.
    dev.arm_irq().map_err(HostError::backend)?;
    // From START on, a failure may leave the job running: reset before reporting it.
    reg_write(
        dev,
        &regmap::CTRL,
        regmap::CTRL_START.mask() | regmap::CTRL_IRQ_EN.mask(),
    )
    .and_then(|()| finish(dev, names, opts))
    .map_err(|e| recover(dev, e))
}

/// Waits for the job started last and checks how it ended; returns its counters.
fn finish<D: Device>(dev: &mut D, names: &[String], opts: &RunOptions) -> Result<PerfCounters> {
    let count = names.len() as u32;
    let waited = dev.wait_irq(opts.timeout).map_err(HostError::backend)?;
    let status = reg_read(dev, &regmap::STATUS)?;
    if waited == IrqWait::TimedOut {
        return Err(HostError::Timeout {
            layers: names.to_vec(),
            timeout: opts.timeout,
            status,
            hint: timeout_hint(status),
        });
    }
    reg_write(dev, &regmap::IRQ_STATUS, IRQ_CAUSES)?;
    if regmap::STATUS_ERROR.is_set(status) {
        let desc = regmap::STATUS_ERR_DESC.get(status);
        let code = regmap::STATUS_ERR_CODE.get(status) as u8;
        let layer = names
            .get(desc as usize)
            .cloned()
            .unwrap_or_else(|| format!("<descriptor {desc} of {count}>"));
        return Err(HostError::device(layer, desc, code, status));
    }
    if !regmap::STATUS_DONE.is_set(status) || regmap::STATUS_BUSY.is_set(status) {
        return Err(HostError::NotDone {
            layers: names.to_vec(),
            status,
        });
    }
    PerfCounters::read(dev).map_err(HostError::backend)
}

/// Every IRQ_STATUS cause: written to acknowledge them all (write-1-to-clear).
const IRQ_CAUSES: u32 = regmap::IRQ_STATUS_DONE.mask() | regmap::IRQ_STATUS_ERROR.mask();

/// How long [`reset`] waits for STATUS to clear after SOFT_RESET. The DMA engine finishes the
/// bursts it has in flight silently (at most `max_outstanding_reads` bursts of 256 beats each
/// way), which takes microseconds at the fabric clock; a device still not idle after this is
/// wedged on the bus.
pub const RESET_TIMEOUT: Duration = Duration::from_millis(100);

/// Stops whatever the device runs and leaves it idle, the one way out of a failed run and the
/// first thing after open: CTRL = SOFT_RESET (which also clears IRQ_EN), STATUS read until BUSY,
/// DONE and ERROR are all clear (at most [`RESET_TIMEOUT`]), then IRQ_STATUS acknowledged so the
/// interrupt line is low. Afterwards the device neither reads nor writes memory and the next START
/// is taken. [`HostError::ResetFailed`] when STATUS does not clear.
pub fn reset<D: Device>(dev: &mut D) -> Result<()> {
    let failed = |why: String| HostError::ResetFailed { cause: None, why };
    let access = |e: HostError| failed(format!("a register access failed: {e}"));
    reg_write(dev, &regmap::CTRL, regmap::CTRL_SOFT_RESET.mask()).map_err(access)?;
    let t0 = Instant::now();
    let running =
        regmap::STATUS_BUSY.mask() | regmap::STATUS_DONE.mask() | regmap::STATUS_ERROR.mask();
    loop {
        let status = reg_read(dev, &regmap::STATUS).map_err(access)?;
        if status & running == 0 {
            break;
        }
        let waited = t0.elapsed();
        if waited >= RESET_TIMEOUT {
            return Err(failed(format!("STATUS = {status:#010x} after {waited:?}")));
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    reg_write(dev, &regmap::IRQ_STATUS, IRQ_CAUSES).map_err(access)
}

/// The error of a failed run after [`reset`]: `cause` when the reset took, and
/// [`HostError::ResetFailed`] carrying `cause` when it did not.
fn recover<D: Device>(dev: &mut D, cause: HostError) -> HostError {
    match reset(dev) {
        Ok(()) => cause,
        Err(HostError::ResetFailed { why, .. }) => HostError::ResetFailed {
            cause: Some(Box::new(cause)),
            why,
        },
        Err(other) => other,
    }
}

/// What STATUS says after a wait that timed out.
pub(crate) fn timeout_hint(status: u32) -> &'static str {
    if regmap::STATUS_BUSY.is_set(status) {
        "the device is still BUSY (a longer job than the timeout allows, or a DMA transfer that never completes)"
    } else if regmap::STATUS_DONE.is_set(status) || regmap::STATUS_ERROR.is_set(status) {
        "the device reports the job finished but no interrupt arrived: check the interrupt wiring, the device-tree trigger type and that the line is re-enabled"
    } else {
        "the device is idle and never started (START not seen: wrong register window or no clock)"
    }
}

fn read_act<D: Device>(dev: &mut D, a: &ActBuffer) -> Result<Vec<u8>> {
    let mut bytes = vec![0u8; a.buf.len as usize];
    dev.mem_read(a.buf.addr, &mut bytes)
        .map_err(HostError::backend)?;
    Ok(bytes)
}

fn read_codes<D: Device>(dev: &mut D, a: &ActBuffer) -> Result<Array3<i32>> {
    let bytes = read_act(dev, a)?;
    let [c, h, w] = a.shape;
    Ok(Array3::from_shape_vec((c, h, w), a.decode(&bytes)).expect("buffer holds the shape"))
}

fn host_step<D: Device>(dev: &mut D, program: &Program, h: &HostStep) -> Result<HostCost> {
    let ins: Vec<ActBuffer> = h.inputs.iter().map(|&s| program.act(s)).collect();
    let out = program.nodes[h.node];
    let mut xs = Vec::with_capacity(ins.len());
    for a in &ins {
        xs.push(read_codes(dev, a)?);
    }
    let n_out = out.elements() as u64;
    let (y, ops) = match h.op {
        HostOp::MaxPool { kernel, stride } => (
            kernels::max_pool(xs[0].view(), kernel, stride)?,
            n_out * (kernel * kernel) as u64,
        ),
        HostOp::AvgPool { kernel, stride } => (
            kernels::avg_pool(xs[0].view(), kernel, stride)?,
            n_out * (kernel * kernel) as u64,
        ),
        HostOp::GlobalAvgPool => {
            let [_, h, w] = ins[0].shape;
            (
                kernels::global_avg_pool(xs[0].view())?,
                n_out * (h * w) as u64,
            )
        }
        HostOp::Add {
            requant,
            out: range,
        } => (
            kernels::add(xs[0].view(), xs[1].view(), &requant, range)?,
            2 * n_out,
        ),
        HostOp::Relu => (kernels::relu(xs[0].view()), n_out),
    };
    let bytes = ActBuffer::encode(y.iter().copied());
    dev.mem_write(out.buf.addr, &bytes)
        .map_err(HostError::backend)?;
    dev.sync_for_device(out.buf.addr, out.buf.len)
        .map_err(HostError::backend)?;
    Ok(HostCost {
        bytes_read: ins.iter().map(|a| a.buf.len).sum(),
        bytes_written: out.buf.len,
        ops,
    })
}
