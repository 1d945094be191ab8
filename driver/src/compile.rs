//! The compiler from a quantized model to a device program: where every buffer lives in device
//! memory, the descriptor lists the device runs and the steps the host does itself. Knows the
//! descriptor format (caq-spec), the device's buffer limits (caq-spec's `CoreShape`) and the model's
//! numbers (caq-model); knows no backend: [`crate::run`] executes a [`Program`] on any `Device`.
//!
//! # Layout in device memory
//!
//! One contiguous region from `base`, every buffer 64-byte aligned (a multiple of any bus width the
//! configs allow), each table padded to whole 8-byte words:
//!
//! 1. the descriptor lists of every device segment (128 bytes per layer, `last` on a segment's final
//!    descriptor), then one single-descriptor list per layer (`last` set) for per-layer runs;
//! 2. the network input and the output of every node: one byte per code, CHW (a Flatten node
//!    shares its input's buffer: CHW flattening does not move a byte; the two inputs of an Add
//!    the device runs lie one right after the other, [`AddLayer`]), or each channel's map
//!    transposed where a depthwise conv is lowered by columns ([`ColumnParts`],
//!    [`ActBuffer::transposed`]);
//! 3. per weight layer: bias (i32 LE per output channel), requantization entries
//!    ([`caq_spec::RequantEntry`], 8 bytes), group multipliers (u16 LE `[out_c][regions]`, grouped layers
//!    only) and every stored plane group in caq-model's planes layout (`[plane][row][⌈K/64⌉ u64]`,
//!    K ordered (c, ky, kx)).
//!
//! Every plane group has its place in the layout, so [`Program::set_bits`] changes a layer's
//! precision by rewriting `active_groups` in its descriptors and nothing else. Whether a group's
//! bytes are in device memory is the loader's choice: [`Program::load`] writes them all, the
//! `Accelerator` pages in only what the active precision needs ([`Program::write_group`]).
//!
//! # Steps
//!
//! Consecutive Dense / Conv2d nodes (Flatten between them is free) form one device segment: one
//! descriptor list, one START, ReLU fused through the descriptor's `relu` flag; a run longer than
//! the device's MAX_DESCRIPTORS is split into several segments. A MaxPool whose window is its
//! stride (2, 4 or 8) and that alone reads a plain Conv2d is fused into it (the descriptor's
//! `max_pool`: the device pools on its result path and writes the pooled map, which is then the
//! conv node's buffer too); so is, on a device with CAPS0.GLOBAL_POOL, a GlobalAvgPool that alone
//! reads a plain Conv2d and keeps its codes' width and sign (`global_pool`: the device writes
//! each channel's mean, with the requantization of `MeanAsLayer`); an AvgPool whose window is
//! its whole map computes the same codes and counts as a GlobalAvgPool here
//! (`Graph::with_global_pools`). With
//! [`CompileOptions::gap_on_device`], another GlobalAvgPool followed by a weight layer (nothing but
//! Flatten between them) whose output codes are its input's runs at the head of that layer's
//! list, as constant-weight Conv2d parts ([`GapParts`], [`DeviceLayer::gap`]). With
//! [`CompileOptions::add_on_device`], an Add whose multipliers are equal runs at the end of the
//! list of the weight layer before it, as a 1×1 Conv2d with unit weights over its two input
//! buffers, which the layout places one right after the other ([`AddLayer`],
//! [`DeviceLayer::after`]); a GlobalAvgPool that alone reads it then runs on its result path where
//! the device has CAPS0.GLOBAL_POOL. With [`CompileOptions::avg_pool_on_device`], an AvgPool
//! whose window is its stride (at most 2) runs there too, as constant-weight k×k stride-k parts,
//! and with [`CompileOptions::max_pool_on_device`] a MaxPool the result path can pool, as 1×1
//! copies pooled there ([`PoolParts`]; Adds and pools that end one list run in graph order,
//! [`DeviceLayer::after`]).
//! Other pools, the other global pools, the other Adds and a standalone ReLU are host steps:
//! read the codes back, run the golden kernel, write the result where the next layer reads it. A
//! grouped convolution is lowered to dense parts
//! ([`GroupedParts`]), a stride-1 depthwise one over a narrow map to parts by output columns where
//! that is cheaper ([`ColumnParts`]).

use crate::error::{HostError, Result};
use caq_model::graph::{Graph, Op, Padding, Shape3, Src};
use caq_model::planes;
use caq_model::qmodel::{QLayer, QModel};
use caq_model::quant::ActQuant;
use caq_model::requant::{self, AddRequant, MeanAsLayer, OutRange};
use caq_spec::CoreShape;
use caq_spec::descriptor::{DESCRIPTOR_BYTES, MAX_KERNEL_H, MAX_KERNEL_W, POOL_WINDOWS, Window};
use caq_spec::shape::POOL_LINE;
use caq_spec::{
    AccelConfig, BitWidth, Caps, DeviceAddr, Flags, LayerDescriptor, MemRegion, Opcode, PlaneGroup,
    PlaneGroups, Shape, descriptor::Pad,
};

/// Alignment of every buffer: a multiple of every configurable bus width (8 or 16 bytes) and of
/// a cache line.
pub const BUFFER_ALIGN: u64 = 64;

/// A byte range in device memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    pub addr: DeviceAddr,
    pub len: u64,
}

/// An activation tensor in device memory: one byte per code, CHW.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActBuffer {
    pub buf: Buffer,
    pub shape: Shape3,
    /// Codes are two's complement (else unsigned).
    pub signed: bool,
    /// Each channel's map is stored transposed, `[x][y]` (written by a depthwise conv lowered by
    /// columns, [`ColumnParts`], and by the convs that read such a map); the codes the host reads
    /// are CHW all the same ([`ActBuffer::chw`]).
    pub transposed: bool,
}

impl ActBuffer {
    /// Bytes of device memory to codes, CHW.
    pub fn decode(&self, bytes: &[u8]) -> Vec<i32> {
        let code = |&b: &u8| caq_spec::descriptor::byte_code(b, self.signed);
        if self.transposed {
            self.chw(bytes.to_vec()).iter().map(code).collect()
        } else {
            bytes.iter().map(code).collect()
        }
    }

    /// Bytes of device memory in CHW order: a transposed map's channels transposed back, any
    /// other buffer as it is (no copy).
    pub fn chw(&self, bytes: Vec<u8>) -> Vec<u8> {
        let [c, h, w] = self.shape;
        if !self.transposed || bytes.len() < c * h * w {
            return bytes;
        }
        let mut out = bytes.clone();
        for ch in 0..c {
            let map = &bytes[ch * h * w..(ch + 1) * h * w];
            for y in 0..h {
                for x in 0..w {
                    out[ch * h * w + y * w + x] = map[x * h + y];
                }
            }
        }
        out
    }

    /// Codes to bytes (the low byte of each code, two's complement when signed).
    pub fn encode(codes: impl IntoIterator<Item = i32>) -> Vec<u8> {
        codes.into_iter().map(|v| v as u8).collect()
    }

    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// One weight layer as the device runs it.
#[derive(Clone, Debug)]
pub struct DeviceLayer {
    pub name: String,
    /// Its node in the graph.
    pub node: usize,
    /// Nesting levels, descending; level `levels[j]` streams `levels.len() − j` plane groups.
    pub levels: Vec<u8>,
    /// The active level.
    pub bits: u8,
    /// Its descriptors, `last` clear (the copies in memory set it where they must): one, or one
    /// per part of a grouped convolution lowered to dense ones (consecutive in the lists, at the
    /// same precision; docs/hardware.md "Convolution geometry").
    pub descs: Vec<LayerDescriptor>,
    /// Its place in its segment's list (its first descriptor's).
    pub list_addr: DeviceAddr,
    /// Its own list (`last` set on its final descriptor), for per-layer measurements.
    pub single_addr: DeviceAddr,
    /// Whether it is the final layer of its segment's list.
    pub last_in_list: bool,
    /// Bytes of each stored plane group (every part's planes of that group, back to back).
    pub group_bytes: Vec<u64>,
    /// Whether its planes in device memory differ from the bundle's (a lowered grouped
    /// convolution's block-diagonal planes): page-ins then copy the program's bytes.
    pub expanded: bool,
    /// A global average pool that runs just before the layer, in its lists ([`GapParts`]).
    pub gap: Option<DeviceOp>,
    /// The residual Adds and average pools that run just after the layer, in its lists, in graph
    /// order ([`AddLayer`], [`PoolParts`]).
    pub after: Vec<DeviceOp>,
}

/// A node without weights the device runs as constant-weight Conv2d descriptors: a global
/// average pool (first in the list of the weight layer after it), a residual Add or an average
/// pool (last in the list of the weight layer before it). Their weights and tables are constant
/// (part of the static image), so a precision switch leaves them alone.
#[derive(Clone, Debug)]
pub struct DeviceOp {
    pub name: String,
    /// Its node in the graph.
    pub node: usize,
    pub descs: Vec<LayerDescriptor>,
}

impl DeviceLayer {
    /// Its first descriptor: the shapes of the layer's input and output start there, and every
    /// part has the same precision (`active_groups`).
    pub fn desc(&self) -> &LayerDescriptor {
        &self.descs[0]
    }

    /// Its descriptors in list order: a global average pool's before it, its own, then those of
    /// the nodes after it.
    pub fn list(&self) -> impl Iterator<Item = &LayerDescriptor> {
        let gap = self.gap.iter().flat_map(|g| &g.descs);
        gap.chain(&self.descs)
            .chain(self.after.iter().flat_map(|a| &a.descs))
    }

    /// The nodes whose outputs its list writes: a global average pool's, its own, and those of
    /// the nodes after it.
    pub fn written_nodes(&self) -> impl Iterator<Item = usize> + '_ {
        let gap = self.gap.as_ref().map(|g| g.node);
        gap.into_iter()
            .chain([self.node])
            .chain(self.after.iter().map(|a| a.node))
    }

    /// The name of each descriptor in [`DeviceLayer::list`]: the layer's (or the pool's) name, with
    /// "[part/parts]" where it has several.
    pub fn list_names(&self) -> Vec<String> {
        let named = |name: &str, n: usize| -> Vec<String> {
            if n == 1 {
                vec![name.to_string()]
            } else {
                (1..=n).map(|p| format!("{name}[{p}/{n}]")).collect()
            }
        };
        let mut names = self
            .gap
            .as_ref()
            .map_or_else(Vec::new, |g| named(&g.name, g.descs.len()));
        names.extend(named(&self.name, self.descs.len()));
        for a in &self.after {
            names.extend(named(&a.name, a.descs.len()));
        }
        names
    }
}

/// A descriptor list run with one START.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub list: DeviceAddr,
    /// Indices into [`Program::layers`], in list order.
    pub layers: std::ops::Range<usize>,
}

/// An operator the host computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HostOp {
    MaxPool { kernel: usize, stride: usize },
    AvgPool { kernel: usize, stride: usize },
    GlobalAvgPool,
    Add { requant: AddRequant, out: OutRange },
    Relu,
}

impl HostOp {
    pub fn name(&self) -> &'static str {
        match self {
            HostOp::MaxPool { .. } => "maxpool",
            HostOp::AvgPool { .. } => "avgpool",
            HostOp::GlobalAvgPool => "global-avgpool",
            HostOp::Add { .. } => "add",
            HostOp::Relu => "relu",
        }
    }
}

/// A node the host computes: inputs and output are node buffers ([`Program::act`]).
#[derive(Clone, Debug, PartialEq)]
pub struct HostStep {
    pub node: usize,
    pub name: String,
    pub op: HostOp,
    pub inputs: Vec<Src>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Device(Segment),
    Host(HostStep),
}

/// Where a pass over a program starts (an adaptive inference runs the network in passes,
/// `caq_model::adaptive`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PassStart {
    /// From the input: every step.
    Input,
    /// Again from weight layer `i`: the layers before it, and the host steps before it, keep
    /// their outputs from the last pass.
    Layer(usize),
    /// Right after weight layer `i`, where a pass that stopped there left off.
    After(usize),
}

/// One step of a pass: a START of weight layers `layers` (a piece of one segment) from the list
/// at `list`, or a host step.
#[derive(Clone, Debug, PartialEq)]
pub enum PassStep<'a> {
    Device {
        layers: std::ops::Range<usize>,
        list: DeviceAddr,
    },
    Host(&'a HostStep),
}

/// A compiled model: memory layout, static contents and the steps of one inference.
#[derive(Clone, Debug)]
pub struct Program {
    pub config: String,
    /// Everything the program touches; the DMA window is set to it.
    pub region: MemRegion,
    pub input: ActBuffer,
    /// How real inputs become the input codes (the model's input quantizer): applications that
    /// hold floats quantize with it (`ActQuant::quantize`, docs/numerics.md).
    pub input_quant: ActQuant,
    /// The scale and signedness of the output codes (the last node's quantizer).
    pub output_quant: ActQuant,
    /// The output buffer of every graph node. A conv with a fused max pool shares its pool's
    /// buffer and shape: its own output never reaches memory.
    pub nodes: Vec<ActBuffer>,
    /// Per node, the MaxPool or GlobalAvgPool node fused into it (whose values its buffer holds),
    /// if any.
    pub fused_pool: Vec<Option<usize>>,
    /// The node whose output a gate network reads (`caq_model::adaptive::gate_node`): a pass
    /// that stops at weight layer 0 leaves it in memory, fused pool or not ([`Program::pass`]).
    pub gate_node: usize,
    pub layers: Vec<DeviceLayer>,
    pub steps: Vec<Step>,
    /// Bias, requantization and region tables: written once by [`Program::load`].
    image: Vec<(DeviceAddr, Vec<u8>)>,
    /// Per layer, the bytes of every plane group (empty after [`Program::drop_planes`]).
    planes: Vec<Vec<Vec<u8>>>,
    caps: Caps,
    shape: CoreShape,
}

/// Bytes of device memory `model` takes on `cfg` (the compiled program's region: tables,
/// descriptors, every plane group of every layer and every activation buffer), as
/// `Accelerator::load_bundle` allocates it from the DMA region. Sizes the u-dma-buf of the
/// device-tree overlay (`caq hdl overlay --bundle`).
pub fn device_bytes(model: &QModel, cfg: &AccelConfig) -> Result<u64> {
    let bits: Vec<u8> = model
        .weight_layers()
        .iter()
        .map(|&i| {
            model.layers[i]
                .as_ref()
                .and_then(|l| l.levels().last().copied())
                .ok_or_else(|| HostError::Arg {
                    what: "model",
                    why: format!("weight layer {i} has no quantization levels"),
                })
        })
        .collect::<Result<_>>()?;
    Ok(compile(model, cfg, &bits, DeviceAddr(0))?.region.len)
}

/// Refuses a per-layer setting with other than one entry per weight layer.
pub fn check_bits_len(bits: &[u8], layers: usize) -> Result<()> {
    if bits.len() == layers {
        return Ok(());
    }
    Err(HostError::Arg {
        what: "bits",
        why: format!("{} entries for {layers} weight layers", bits.len()),
    })
}

/// The pool node fused into each node, by the rule in the module docs: the only reader of a
/// Conv2d that is not grouped, either a MaxPool of window = stride in `POOL_WINDOWS` whose pooled
/// width fits the device's pooling line, or, on a device with CAPS0.GLOBAL_POOL, a GlobalAvgPool
/// whose codes are the conv's.
fn fused_pools(model: &QModel, shapes: &[Shape3], caps: &Caps) -> Vec<Option<usize>> {
    let graph = &model.graph;
    let mut pools = vec![None; graph.nodes.len()];
    for (p, node) in graph.nodes.iter().enumerate() {
        let Some(Src::Node(c)) = node.inputs.first().copied() else {
            continue;
        };
        let plain_conv = matches!(graph.nodes[c].op, Op::Conv2d { groups: 1, .. });
        let device = match node.op {
            Op::MaxPool { kernel, stride } => result_path_max_pool(kernel, stride, shapes[p]),
            Op::GlobalAvgPool => global_pool_fuses(model, shapes, caps, p, c),
            _ => false,
        };
        if plain_conv && sole_reader(graph, c) == Some(p) && device {
            pools[c] = Some(p);
        }
    }
    pools
}

/// Whether a result path pools a max pool of `kernel` and `stride` with output `pooled`: window
/// = stride, one of `POOL_WINDOWS`, the pooled width within the pooling line.
fn result_path_max_pool(kernel: usize, stride: usize, pooled: Shape3) -> bool {
    let window = u8::try_from(kernel).is_ok_and(|k| POOL_WINDOWS.contains(&k));
    kernel == stride && window && pooled[2] <= POOL_LINE as usize
}

/// The only node that reads node `c`'s output, if it has exactly one reader.
fn sole_reader(graph: &Graph, c: usize) -> Option<usize> {
    let mut readers =
        (0..graph.nodes.len()).filter(|&j| graph.nodes[j].inputs.contains(&Src::Node(c)));
    match (readers.next(), readers.next()) {
        (Some(r), None) => Some(r),
        _ => None,
    }
}

/// Whether GlobalAvgPool node `p` can run on the result path of node `c`'s descriptor: the core
/// has CAPS0.GLOBAL_POOL, the pool's codes are `c`'s (the mean of in-range codes is in range) and
/// the map has a mean requantization.
fn global_pool_fuses(model: &QModel, shapes: &[Shape3], caps: &Caps, p: usize, c: usize) -> bool {
    let (a, b) = (model.acts[p], model.acts[c]);
    caps.global_pool()
        && (a.bits, a.signed) == (b.bits, b.signed)
        && MeanAsLayer::of(shapes[c][1] * shapes[c][2]).is_some()
}

/// Whether the pool fused into node `i` (`pooled_by`, from [`fused_pools`]) is a global average
/// pool: the device writes each channel's mean.
fn fused_global(graph: &Graph, pooled_by: &[Option<usize>], i: usize) -> bool {
    pooled_by[i].is_some_and(|p| matches!(graph.nodes[p].op, Op::GlobalAvgPool))
}

/// The global average pools the device runs, by the rule in the module docs: per GlobalAvgPool
/// node, the weight node whose list it joins (the next weight node, with nothing but Flatten
/// between them) and its lowering; `None` where it stays a host step.
fn fused_gaps(
    model: &QModel,
    shapes: &[Shape3],
    fused: &[bool],
    caps: &Caps,
    shape: &CoreShape,
) -> Vec<Option<(usize, GapParts)>> {
    let graph = &model.graph;
    let n = graph.nodes.len();
    (0..n)
        .map(|g| {
            let node = &graph.nodes[g];
            // A pool on its conv's result path needs no parts.
            if !matches!(node.op, Op::GlobalAvgPool) || fused[g] {
                return None;
            }
            let (in_shape, in_act) = match node.inputs[0] {
                Src::Input => (graph.input_shape, model.input),
                Src::Node(j) => (shapes[j], model.acts[j]),
            };
            // The mean of in-range codes is in range: the output codes must be the input's.
            let out = model.acts[g];
            if (out.bits, out.signed) != (in_act.bits, in_act.signed) {
                return None;
            }
            let w = (g + 1..n).find(|&j| !matches!(graph.nodes[j].op, Op::Flatten))?;
            if !graph.nodes[w].op.has_weights() {
                return None;
            }
            let bits = BitWidth::try_from(in_act.bits).ok()?;
            GapParts::of(in_shape, bits, in_act.signed, caps, shape).map(|p| (w, p))
        })
        .collect()
}

/// Choices the compiler leaves to its caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompileOptions {
    /// Run a global average pool the result path does not take on the device where the rule in
    /// the module docs allows ([`GapParts`]): the network needs one list fewer, but the array pays
    /// for it with block-diagonal weights (thousands of cycles for DS-CNN's pool, docs/hardware.md
    /// "Global average pooling by constant-weight layers"); off, it is a host step.
    pub gap_on_device: bool,
    /// Run a residual Add whose inputs share a quantizer on the device where the rule of
    /// [`AddLayer`] allows, at the end of the list of the weight layer before it: one list fewer
    /// and no host step, for a 1×1 layer over both inputs (docs/hardware.md "Residual adds as
    /// layers"); off, it is a host step.
    pub add_on_device: bool,
    /// Run an average pool whose window is its stride (2, or 1) on the device where
    /// [`PoolParts`] allows, at the end of the list of the weight layer before it, as
    /// constant-weight parts (docs/hardware.md "Pooling by constant-weight layers"); off,
    /// it is a host step.
    pub avg_pool_on_device: bool,
    /// Run a standalone max pool whose window is its stride (2, 4 or 8) on the device where the
    /// layer before it can take it: 1×1 copies of its channels with the window on their result
    /// path (docs/hardware.md "Pooling by constant-weight layers"); off, it is a host step. (A
    /// max pool that alone reads a plain conv is always fused into it.)
    pub max_pool_on_device: bool,
}

/// [`compile_with`] with the default [`CompileOptions`].
pub fn compile(
    model: &QModel,
    cfg: &AccelConfig,
    bits: &[u8],
    base: DeviceAddr,
) -> Result<Program> {
    compile_with(model, cfg, bits, base, CompileOptions::default())
}

/// Compiles `model` for the accelerator `cfg` into device memory from `base`, with weight layer
/// `i` at level `bits[i]` (one of its nesting levels), fusing every pool the module docs' rule
/// allows. Every layer is checked against the descriptor rules (`LayerDescriptor::validate`) and
/// the device's buffers (`CoreShape::check_capacity`); the error names the first layer that does
/// not fit.
pub fn compile_with(
    model: &QModel,
    cfg: &AccelConfig,
    bits: &[u8],
    base: DeviceAddr,
    opts: CompileOptions,
) -> Result<Program> {
    let caps = Caps::from_config(cfg)?;
    let shape = CoreShape::of(cfg);
    let wl = model.weight_layers();
    if bits.len() != wl.len() {
        return Err(HostError::Arg {
            what: "bits",
            why: format!("{} entries for {} weight layers", bits.len(), wl.len()),
        });
    }
    if !base.is_aligned(BUFFER_ALIGN as u32) {
        return Err(HostError::Arg {
            what: "base",
            why: format!("{base} is not a multiple of {BUFFER_ALIGN}"),
        });
    }
    // An average pool over its whole map is a global one: the same codes, and the device runs
    // global pools.
    let whole;
    let model = match model.graph.with_global_pools()? {
        Some(graph) => {
            whole = QModel {
                graph,
                ..model.clone()
            };
            &whole
        }
        None => model,
    };
    let graph = &model.graph;
    let shapes = graph.shapes()?;
    // The pool node fused into each conv, and whether each node is a fused pool.
    let mut pooled_by = fused_pools(model, &shapes, &caps);
    let mut fused = vec![false; graph.nodes.len()];
    for &p in pooled_by.iter().flatten() {
        fused[p] = true;
    }
    let mut mem = Alloc { next: base.0 };
    // The lowering of each grouped conv, from the maps it reads and writes (a grouped conv's
    // output is never pooled on the device), which maps are stored transposed, and the
    // descriptors per node: one per weight layer, one per part of a lowered grouped conv.
    let (lowerings, transposed) = lower(model, &shapes, &pooled_by, &shape);
    // The Adds and average pools the device runs at the end of the list of the weight layer
    // before them. A global average pool that alone reads such an add runs on its result path
    // where the core can.
    let mut after = AfterCtx {
        model,
        shapes: &shapes,
        fused: &fused,
        transposed: &transposed,
        caps: &caps,
        shape: &shape,
    }
    .after_ops(opts);
    // (Not a pool whose output is itself an input of such an add: its buffer is placed as one.)
    let paired: Vec<usize> = after
        .iter()
        .flatten()
        .filter_map(|o| match o {
            AfterOp::Add(a) => Some([a.first, a.second]),
            AfterOp::Pool(_) => None,
        })
        .flatten()
        .collect();
    for (i, op) in after.iter_mut().enumerate() {
        let Some(AfterOp::Add(add)) = op else {
            continue;
        };
        if let Some(p) = sole_reader(graph, i)
            && matches!(graph.nodes[p].op, Op::GlobalAvgPool)
            && !paired.contains(&p)
            && global_pool_fuses(model, &shapes, &caps, p, i)
        {
            add.global_pool = true;
            pooled_by[i] = Some(p);
            fused[p] = true;
        }
    }
    // The global average pools the device runs, and per weight node the one in its list.
    let gaps = if opts.gap_on_device {
        fused_gaps(model, &shapes, &fused, &caps, &shape)
    } else {
        vec![None; graph.nodes.len()]
    };
    let mut gap_before: Vec<Option<(usize, GapParts)>> = vec![None; graph.nodes.len()];
    for (g, f) in gaps.iter().enumerate() {
        if let Some((w, p)) = *f {
            gap_before[w] = Some((g, p));
        }
    }
    // Per weight node, the nodes at the end of its list, in graph order.
    let mut after_of: Vec<Vec<(usize, AfterOp)>> = vec![Vec::new(); graph.nodes.len()];
    // The address each second buffer of an Add's pair takes, once its first is placed.
    let mut second_of: Vec<Option<usize>> = vec![None; graph.nodes.len()];
    for (i, op) in after.iter().enumerate() {
        let Some(op) = *op else { continue };
        after_of[op.after()].push((i, op));
        if let AfterOp::Add(a) = op {
            second_of[a.first] = Some(a.second);
        }
    }
    let descs_of: Vec<usize> = graph
        .nodes
        .iter()
        .zip(&lowerings)
        .zip(gap_before.iter().zip(&after_of))
        .map(|((n, g), (gap, ops))| {
            g.map_or(usize::from(n.op.has_weights()), |p| p.parts())
                + gap.map_or(0, |(_, p)| p.parts)
                + ops.iter().map(|(_, o)| o.parts()).sum::<usize>()
        })
        .collect();

    // Segments: runs of weight nodes with nothing but Flatten between them.
    let mut steps: Vec<Step> = Vec::new();
    let mut seg_nodes: Vec<Vec<usize>> = Vec::new();
    let mut open = false;
    for (i, node) in graph.nodes.iter().enumerate() {
        match &node.op {
            Op::Dense { .. } | Op::Conv2d { .. } => {
                // A run longer than the device's longest descriptor list becomes several lists,
                // one START each: the outputs are the same, only the STARTs differ.
                let full = seg_nodes.last().is_some_and(|s| {
                    let n: usize = s.iter().map(|&j| descs_of[j]).sum();
                    (n + descs_of[i]) as u64 > u64::from(caps.max_descriptors())
                });
                if !open || full {
                    seg_nodes.push(Vec::new());
                    steps.push(Step::Device(Segment {
                        list: DeviceAddr(0),
                        layers: 0..0,
                    }));
                    open = true;
                }
                seg_nodes.last_mut().expect("opened").push(i);
            }
            Op::Flatten => {}
            Op::MaxPool { .. } | Op::GlobalAvgPool if fused[i] => {}
            Op::GlobalAvgPool if gaps[i].is_some() => {}
            Op::Add { .. } | Op::AvgPool { .. } | Op::MaxPool { .. } if after[i].is_some() => {}
            op => {
                open = false;
                let host_op = match *op {
                    Op::MaxPool { kernel, stride } => HostOp::MaxPool { kernel, stride },
                    Op::AvgPool { kernel, stride } => HostOp::AvgPool { kernel, stride },
                    Op::GlobalAvgPool => HostOp::GlobalAvgPool,
                    Op::Add { relu } => HostOp::Add {
                        requant: model.adds[i].ok_or_else(|| HostError::Arg {
                            what: "model",
                            why: format!("add node '{}' has no requantization", node.name),
                        })?,
                        out: out_range(&model.acts[i], relu),
                    },
                    Op::Relu => HostOp::Relu,
                    _ => unreachable!("weight layers and flatten are matched above"),
                };
                steps.push(Step::Host(HostStep {
                    node: i,
                    name: node.name.clone(),
                    op: host_op,
                    inputs: node.inputs.clone(),
                }));
            }
        }
    }

    // Descriptor lists: every segment's, then one single list per layer.
    let n_descs = descs_of.iter().sum::<usize>() as u64;
    let lists = mem.take(2 * n_descs * DESCRIPTOR_BYTES as u64);
    let singles = lists.0 + n_descs * DESCRIPTOR_BYTES as u64;

    // Activation buffers.
    let input = ActBuffer {
        buf: mem.buffer(graph.input_shape.iter().product::<usize>() as u64),
        shape: graph.input_shape,
        signed: model.input.signed,
        transposed: false,
    };
    let mut nodes: Vec<ActBuffer> = Vec::with_capacity(graph.nodes.len());
    let mut reserved: Vec<Option<DeviceAddr>> = vec![None; graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        let signed = model.acts[i].signed;
        // A Flatten, or a pool the device runs, shares its input's buffer; a conv with a fused
        // pool has the pooled map's.
        let act = if matches!(node.op, Op::Flatten) || fused[i] {
            ActBuffer {
                shape: shapes[i],
                signed,
                ..src_act(&input, &nodes, node.inputs[0])
            }
        } else {
            let written = shapes[pooled_by[i].unwrap_or(i)];
            let len = written.iter().product::<usize>() as u64;
            // The first buffer of an Add's pair is followed at once by the second.
            let buf = match (reserved[i], second_of[i]) {
                (Some(addr), _) => Buffer { addr, len },
                (None, Some(second)) => {
                    let second_len = shapes[pooled_by[second].unwrap_or(second)]
                        .iter()
                        .product::<usize>() as u64;
                    let pair = mem.buffer(len + second_len);
                    reserved[second] = Some(DeviceAddr(pair.addr.0 + len));
                    Buffer {
                        addr: pair.addr,
                        len,
                    }
                }
                (None, None) => mem.buffer(len),
            };
            ActBuffer {
                buf,
                shape: written,
                signed,
                transposed: transposed[i],
            }
        };
        nodes.push(act);
    }

    // Weight layers: tables and plane groups, and their descriptors.
    let mut image = Vec::new();
    let mut planes = Vec::with_capacity(wl.len());
    let mut layers = Vec::with_capacity(wl.len());
    let mut li = 0usize;
    // Descriptors placed so far: where the next layer's list entries go.
    let mut di = 0u64;
    let mut seg_iter = seg_nodes.iter();
    for step in &mut steps {
        let Step::Device(seg) = step else { continue };
        let ids = seg_iter.next().expect("one node list per segment");
        let start = li;
        seg.list = DeviceAddr(lists.0 + di * DESCRIPTOR_BYTES as u64);
        for (j, &i) in ids.iter().enumerate() {
            let q = model.layers[i].as_ref().ok_or_else(|| HostError::Arg {
                what: "model",
                why: format!(
                    "weight node '{}' has no quantized layer",
                    graph.nodes[i].name
                ),
            })?;
            let src = graph.nodes[i].inputs[0];
            let in_act = src_act(&input, &nodes, src);
            let out = Placement {
                act: nodes[i],
                conv: shapes[i],
                max_pool: match pooled_by[i].map(|p| &graph.nodes[p].op) {
                    Some(Op::MaxPool { kernel, .. }) => *kernel,
                    _ => 0,
                },
                global_pool: fused_global(graph, &pooled_by, i),
            };
            let (layer, bytes) = place_layer(
                cfg,
                &caps,
                model,
                i,
                q,
                lowerings[i],
                in_act,
                out,
                bits[li],
                &mut mem,
                &mut image,
            )?;
            planes.push(bytes);
            let gap = match gap_before[i] {
                Some((g, gp)) => {
                    let src = src_act(&input, &nodes, graph.nodes[g].inputs[0]);
                    Some(gp.place(model, g, [src, nodes[g]], &mut mem, &mut image)?)
                }
                None => None,
            };
            let mut ops = Vec::with_capacity(after_of[i].len());
            for &(a, op) in &after_of[i] {
                ops.push(match op {
                    AfterOp::Add(al) => {
                        let (first, out) = (nodes[al.first], nodes[a]);
                        al.place(model, a, shapes[a], first, out, &mut mem, &mut image)?
                    }
                    AfterOp::Pool(pp) => {
                        let src = src_act(&input, &nodes, graph.nodes[a].inputs[0]);
                        pp.place(model, a, [src, nodes[a]], &mut mem, &mut image)?
                    }
                });
            }
            let layer = DeviceLayer {
                gap,
                after: ops,
                ..layer
            };
            let n = layer.list().count() as u64;
            layers.push(DeviceLayer {
                list_addr: DeviceAddr(lists.0 + di * DESCRIPTOR_BYTES as u64),
                single_addr: DeviceAddr(singles + di * DESCRIPTOR_BYTES as u64),
                last_in_list: j + 1 == ids.len(),
                ..layer
            });
            li += 1;
            di += n;
        }
        seg.layers = start..li;
        let count = layers[start..li]
            .iter()
            .map(|l| l.list().count())
            .sum::<usize>() as u32;
        caps.check_desc_count(count)
            .map_err(|(_, why)| HostError::Layer {
                layer: graph.nodes[ids[0]].name.clone(),
                config: cfg.name.clone(),
                what: format!("its segment of {count} layers: {why}"),
            })?;
    }
    let region = MemRegion {
        base,
        len: mem.next - base.0,
    };
    let output_quant = *model.acts.last().ok_or_else(|| HostError::Arg {
        what: "model",
        why: "the graph has no nodes".into(),
    })?;
    let program = Program {
        config: cfg.name.clone(),
        region,
        input,
        input_quant: model.input,
        output_quant,
        nodes,
        fused_pool: pooled_by,
        gate_node: caq_model::adaptive::gate_node(graph)?,
        layers,
        steps,
        image,
        planes,
        caps,
        shape,
    };
    for l in &program.layers {
        program.check_layer(l)?;
    }
    Ok(program)
}

/// Cycles [`lower`] charges a lowering for each part beyond its plane-steps: the engine drains a
/// descriptor's last writes before it starts the next one (about 120 cycles for a DS-CNN part on
/// pynq-z2, `caq run --backend func`'s per-layer rows).
const PART_OVERHEAD: usize = 120;

/// Each node's lowering, and whether its output map is stored transposed. A stride-1 depthwise
/// conv is lowered by columns ([`ColumnParts`]) when that costs fewer cycles than the
/// block-diagonal parts ([`GroupedParts`]), summed over the layer's nesting levels (plane-steps
/// plus [`PART_OVERHEAD`] per part), and every reader of its output can take the map
/// transposed: a pointwise conv or another depthwise conv lowered by columns (whose outputs are
/// transposed in turn, and so must be readable so; such a reader is lowered by columns whatever
/// it costs), or a host step (which reads the codes back CHW). Flatten, Dense, a fused pool and
/// the network's output read CHW bytes.
fn lower(
    model: &QModel,
    shapes: &[Shape3],
    pooled_by: &[Option<usize>],
    shape: &CoreShape,
) -> (Vec<Option<Lowering>>, Vec<bool>) {
    let graph = &model.graph;
    let n = graph.nodes.len();
    let (rows, cols) = (shape.rows as usize, shape.cols as usize);
    let in_shape = |i: usize| match graph.nodes[i].inputs.first() {
        Some(Src::Node(j)) => shapes[*j],
        _ => graph.input_shape,
    };
    let hw = |s: Shape3| [s[1], s[2]];
    // A fused global pool sums every pixel of the map, transposed or not, and writes a 1x1 map.
    let global = |i: usize| fused_global(graph, pooled_by, i);
    let pointwise = |i: usize| {
        matches!(graph.nodes[i].op, Op::Conv2d { kernel: [1, 1], stride: 1, padding, .. }
            if padding == Padding::default())
            && (pooled_by[i].is_none() || global(i))
    };
    // Whether node i's output may be stored transposed (its readers come later in the graph).
    let mut may = vec![false; n];
    for i in (0..n).rev() {
        let readers: Vec<usize> = (i + 1..n)
            .filter(|&j| graph.nodes[j].inputs.contains(&Src::Node(i)))
            .collect();
        may[i] = i + 1 < n
            && pooled_by[i].is_none()
            && !readers.is_empty()
            && readers.iter().all(|&j| match &graph.nodes[j].op {
                Op::Conv2d { .. } if pointwise(j) => may[j] || global(j),
                op @ Op::Conv2d { .. } => {
                    may[j] && ColumnParts::of(op, hw(in_shape(j)), true, rows, cols).is_some()
                }
                Op::MaxPool { .. }
                | Op::AvgPool { .. }
                | Op::GlobalAvgPool
                | Op::Add { .. }
                | Op::Relu => true,
                Op::Dense { .. } | Op::Flatten => false,
            });
    }
    let mut lowerings = vec![None; n];
    let mut transposed = vec![false; n];
    for (i, node) in graph.nodes.iter().enumerate() {
        let t_in = match node.inputs.first() {
            Some(Src::Node(j)) => transposed[*j],
            _ => false,
        };
        let (ins, outs) = (in_shape(i), shapes[i]);
        let grouped = GroupedParts::of(&node.op, rows);
        let columns = ColumnParts::of(&node.op, hw(ins), t_in, rows, cols);
        if t_in && matches!(node.op, Op::Conv2d { .. }) {
            // Only a pointwise conv or a depthwise one lowered by columns reads a transposed map
            // (a host step reads it back CHW and writes CHW); `may` let no other reader be.
            debug_assert!(
                columns.is_some() || pointwise(i),
                "node {i} reads a transposed map"
            );
            lowerings[i] = columns
                .map(Lowering::Columns)
                .or(grouped.map(Lowering::Grouped));
            transposed[i] = !global(i);
            continue;
        }
        lowerings[i] = grouped.map(Lowering::Grouped);
        if let (Some(g), Some(c)) = (grouped, columns)
            && may[i]
        {
            // Per part and weight plane: pixels x chunks x row tiles; planes summed over the
            // levels, the drain once per level.
            let (Op::Conv2d { kernel, .. }, Some(q)) = (&node.op, &model.layers[i]) else {
                continue;
            };
            let planes: usize = q
                .levels()
                .iter()
                .filter_map(|&l| q.weights.active_groups(l).ok())
                .map(|a| {
                    q.weights.groups[..a]
                        .iter()
                        .map(|g| usize::from(g.bits))
                        .sum::<usize>()
                })
                .sum();
            let drains = q.levels().len() * PART_OVERHEAD;
            let block = (g.groups_per_part * kernel[0] * kernel[1]).div_ceil(cols)
                * g.groups_per_part.div_ceil(rows)
                * outs[1]
                * outs[2];
            let by_groups = g.parts * (planes * block + drains);
            let by_columns = c.parts * (planes * outs[1] + drains);
            if by_columns < by_groups {
                lowerings[i] = Some(Lowering::Columns(c));
                transposed[i] = true;
            }
        }
    }
    (lowerings, transposed)
}

struct Alloc {
    next: u64,
}

impl Alloc {
    fn take(&mut self, len: u64) -> DeviceAddr {
        let a = self.next;
        self.next = (a + len.max(1)).div_ceil(BUFFER_ALIGN) * BUFFER_ALIGN;
        DeviceAddr(a)
    }

    /// Places `bytes` in the static image at the next buffer; returns their address.
    fn put(&mut self, image: &mut Vec<(DeviceAddr, Vec<u8>)>, bytes: Vec<u8>) -> DeviceAddr {
        let a = self.take(bytes.len() as u64);
        image.push((a, bytes));
        a
    }

    fn buffer(&mut self, len: u64) -> Buffer {
        Buffer {
            addr: self.take(len),
            len,
        }
    }
}

fn out_range(a: &ActQuant, relu: bool) -> OutRange {
    OutRange {
        qmin: a.qmin(),
        qmax: a.qmax(),
        relu,
    }
}

fn src_act(input: &ActBuffer, nodes: &[ActBuffer], s: Src) -> ActBuffer {
    match s {
        Src::Input => *input,
        Src::Node(j) => nodes[j],
    }
}

fn u16_dim(layer: &str, cfg: &AccelConfig, what: &str, v: usize) -> Result<u16> {
    u16::try_from(v).map_err(|_| HostError::Layer {
        layer: layer.to_string(),
        config: cfg.name.clone(),
        what: format!("{what} = {v} does not fit a 16-bit descriptor field"),
    })
}

/// How a grouped convolution is lowered to dense ones: parts of `groups_per_part` consecutive
/// channel groups, each a dense conv over its groups' input channels with block-diagonal weights
/// (an output channel's weights on its own group's channels, zero elsewhere). A part has the
/// array's rows of output channels where a group has fewer (a depthwise conv's part is R
/// channels), so each part fills the array's rows once. A part reads and writes a run of whole
/// channels (CHW), which starts where the previous part's ends: at any byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupedParts {
    pub groups: usize,
    pub groups_per_part: usize,
    pub parts: usize,
}

impl GroupedParts {
    /// The lowering of `op` on an array of `rows` rows; `None` unless it is a grouped Conv2d.
    pub fn of(op: &Op, rows: usize) -> Option<GroupedParts> {
        match *op {
            Op::Conv2d {
                out_channels,
                groups,
                ..
            } if groups > 1 => {
                let og = (out_channels / groups).max(1);
                let groups_per_part = (rows / og).clamp(1, groups);
                Some(GroupedParts {
                    groups,
                    groups_per_part,
                    parts: groups.div_ceil(groups_per_part),
                })
            }
            _ => None,
        }
    }
}

/// A depthwise convolution (stride 1, one output channel per input channel) lowered along its
/// output columns (docs/hardware.md, "Depthwise convolutions by columns"): a part of `per_part`
/// channels is one Conv2d whose kernel spans the whole padded width of the map, so that one
/// patch (kh rows of a channel, all their columns) feeds every output column of its output row
/// at once. Its rows are (channel, output column), its pixels the output rows, and it writes
/// each channel transposed (`[x][y]`, [`ActBuffer::transposed`]). On a map that is itself
/// transposed it runs the same way with the axes swapped (`transposed_in`): then the kernel
/// spans the padded height of the stored map, and still writes the output transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColumnParts {
    pub per_part: usize,
    pub parts: usize,
    pub transposed_in: bool,
    /// The conv's kernel, padding and input [height, width], as the graph has them.
    kernel: [usize; 2],
    pad: Padding,
    in_hw: [usize; 2],
}

/// A part's descriptor geometry: input `[c, h, w]`, kernel `[h, w]`, padding and output
/// `[c, h, w]`, as the device sees them.
struct PartGeometry {
    input: [usize; 3],
    kernel: [usize; 2],
    pad: Padding,
    output: [usize; 3],
}

impl PartGeometry {
    /// The part's K: its channels' patches.
    fn k(&self) -> usize {
        self.input[0] * self.kernel[0] * self.kernel[1]
    }
}

impl ColumnParts {
    /// The lowering of `op` reading a map of `in_hw` = [height, width] pixels per channel (stored
    /// transposed when `transposed_in`), on an array of `rows` rows and `cols` lanes; `None`
    /// unless `op` is a stride-1 depthwise conv whose padded rows fit one kernel row (one kernel
    /// column when transposed) and whose output columns fit the rows.
    pub fn of(
        op: &Op,
        in_hw: [usize; 2],
        transposed_in: bool,
        rows: usize,
        cols: usize,
    ) -> Option<ColumnParts> {
        let Op::Conv2d {
            in_channels,
            out_channels,
            kernel: [kh, kw],
            stride: 1,
            padding: p,
            groups,
            ..
        } = *op
        else {
            return None;
        };
        if groups < 2 || in_channels != groups || out_channels != groups {
            return None;
        }
        let span = in_hw[1] + p.left + p.right;
        let out_w = (span + 1).checked_sub(kw)?;
        let (span_max, kh_max) = if transposed_in {
            (MAX_KERNEL_H, MAX_KERNEL_W)
        } else {
            (MAX_KERNEL_W, MAX_KERNEL_H)
        };
        if span > usize::from(span_max) || kh > usize::from(kh_max) || out_w == 0 {
            return None;
        }
        let per_part = (rows / out_w).min(cols / (kh * span)).min(groups);
        (per_part > 0).then(|| ColumnParts {
            per_part,
            parts: groups.div_ceil(per_part),
            transposed_in,
            kernel: [kh, kw],
            pad: p,
            in_hw,
        })
    }

    /// The descriptor geometry of a part of `n` channels.
    fn geometry(&self, n: usize) -> PartGeometry {
        let ([kh, kw], p, [h, w]) = (self.kernel, self.pad, self.in_hw);
        let span = w + p.left + p.right;
        let (out_h, out_w) = (h + p.top + p.bottom + 1 - kh, span + 1 - kw);
        if self.transposed_in {
            PartGeometry {
                input: [n, w, h],
                kernel: [span, kh],
                pad: Padding {
                    top: p.left,
                    bottom: p.right,
                    left: p.top,
                    right: p.bottom,
                },
                output: [n * out_w, 1, out_h],
            }
        } else {
            PartGeometry {
                input: [n, h, w],
                kernel: [kh, span],
                pad: p,
                output: [n * out_w, out_h, 1],
            }
        }
    }

    /// The `[n · out_w, n · kh · span]` codes of a part of `n` channels from `c0`: row
    /// (c, j) holds channel c's kernel at output column j's place in the patch.
    fn codes(&self, codes: ndarray::ArrayView2<i32>, c0: usize, n: usize) -> ndarray::Array2<i32> {
        let ([kh, kw], p) = (self.kernel, self.pad);
        let span = self.in_hw[1] + p.left + p.right;
        let out_w = span + 1 - kw;
        let kc = kh * span;
        let mut m = ndarray::Array2::<i32>::zeros((n * out_w, n * kc));
        for c in 0..n {
            for j in 0..out_w {
                for a in 0..kh {
                    for b in 0..kw {
                        // The patch's (row, column) of kernel tap (a, b) for output column j:
                        // (a, j + b) in the map's orientation, (j + b, a) transposed.
                        let at = if self.transposed_in {
                            (j + b) * kh + a
                        } else {
                            a * span + j + b
                        };
                        m[[c * out_w + j, c * kc + at]] = codes[[c0 + c, a * kw + b]];
                    }
                }
            }
        }
        m
    }
}

/// A global average pool run on the device (docs/hardware.md, "Global average pooling on the
/// device"), as Conv2d descriptors: a part of `per_part` channels reads their maps as one vector
/// of `per_part · area` codes (CHW keeps each channel's map in one run of bytes, transposed or
/// not) and has a row per channel, which weighs its own channel's codes by
/// [`MeanAsLayer::WEIGHT`] (code 1 of a `bits`-bit plane group at shift 2) and the others' by 0;
/// bias [`MeanAsLayer::BIAS`], requantization `1/(4·area)`: the average-pool rule exactly
/// (docs/numerics.md, "Average pooling as a layer").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GapParts {
    pub channels: usize,
    pub per_part: usize,
    pub parts: usize,
    /// Pixels of a channel's map.
    pub area: usize,
    /// Width of the plane group; its code 1 at shift [`GapParts::SHIFT`] is the weight.
    pub bits: BitWidth,
    layer: MeanAsLayer,
}

impl GapParts {
    /// The plane group's shift: code 1 weighs 2^2 = [`MeanAsLayer::WEIGHT`].
    pub const SHIFT: u8 = 2;

    /// The cheapest lowering of a global average pool over `input` (its codes `in_bits` wide,
    /// signed or not) on the device: parts of 1 to the array's rows of channels, or of a multiple
    /// of the rows, by plane-steps plus [`PART_OVERHEAD`] per part plus the bus beats of every
    /// part's weights (the block-diagonal zeros are read too) and inputs. `None` when no part fits: no
    /// supported weight width of at least 2 bits leaves room for the shift, or a single channel's
    /// map exceeds K or the buffers.
    pub fn of(
        input: Shape3,
        in_bits: BitWidth,
        in_signed: bool,
        caps: &Caps,
        shape: &CoreShape,
    ) -> Option<GapParts> {
        let [channels, h, w] = input;
        let area = h * w;
        let layer = MeanAsLayer::of(area)?;
        let wmax = caps.max_weight_bits().get();
        let bits = BitWidth::all().find(|&b| {
            b.get() >= 2 && b.get() + Self::SHIFT <= wmax && caps.supports_weight_bits(b)
        })?;
        let rows = shape.rows as usize;
        let mut best: Option<(u64, GapParts)> = None;
        let candidates = (1..rows).chain((1..=channels.div_ceil(rows)).map(|t| t * rows));
        let candidates = candidates.map(|n| n.min(channels));
        for per_part in candidates {
            let g = GapParts {
                channels,
                per_part,
                parts: channels.div_ceil(per_part),
                area,
                bits,
                layer,
            };
            let d = g.descriptor(per_part, in_bits, in_signed, [DeviceAddr(0); 5]);
            let Some(d) = d else { continue };
            if d.validate(caps).is_err() {
                continue;
            }
            let Ok(sched) = shape.schedule(&d) else {
                continue;
            };
            let bytes = u64::from(d.output.c) * sched.wpr * 8 * sched.planes + d.input.bytes();
            let cost = g.parts as u64
                * (sched.plane_steps()
                    + PART_OVERHEAD as u64
                    + bytes / u64::from(caps.bus_bytes()));
            if best.is_none_or(|(c, _)| cost < c) {
                best = Some((cost, g));
            }
        }
        best.map(|(_, g)| g)
    }

    /// The descriptor of a part of `n` channels reading from `addrs[0]` and writing to
    /// `addrs[1]`, with its bias, requantization and plane tables at `addrs[2..5]`; `None` when a
    /// dimension does not fit its field.
    fn descriptor(
        &self,
        n: usize,
        in_bits: BitWidth,
        signed: bool,
        addrs: [DeviceAddr; 5],
    ) -> Option<LayerDescriptor> {
        let dims = [[n * self.area, 1, 1], [n, 1, 1]];
        let weight = (self.bits, Self::SHIFT);
        constant_conv(
            dims,
            mean_flags(signed),
            [in_bits, in_bits],
            weight,
            (1, 1),
            None,
            addrs,
        )
    }

    /// Writes the tables and planes of pool node `node` into the static image and builds its
    /// descriptors, reading `input` and writing `output` (`[channels, 1, 1]`).
    fn place(
        &self,
        model: &QModel,
        node: usize,
        io: [ActBuffer; 2],
        mem: &mut Alloc,
        image: &mut Vec<(DeviceAddr, Vec<u8>)>,
    ) -> Result<DeviceOp> {
        let slices = MeanSlices {
            channels: self.channels,
            per_part: self.per_part,
            parts: self.parts,
            window: self.area,
            areas: [self.area, 1],
            layer: self.layer,
            bits: self.bits,
        };
        place_means(slices, model, node, io, (mem, image), |n, b, s, a| {
            self.descriptor(n, b, s, a)
        })
    }
}

/// How a mean lowering ([`GapParts`], [`PoolParts`]) splits its channels: parts of `per_part`
/// channels (the last may have fewer), each reading its channels' maps of `areas[0]` bytes and
/// writing their outputs of `areas[1]` bytes, with `window` codes of a channel per output.
#[derive(Clone, Copy)]
struct MeanSlices {
    channels: usize,
    per_part: usize,
    parts: usize,
    window: usize,
    areas: [usize; 2],
    layer: MeanAsLayer,
    bits: BitWidth,
}

/// Writes every part's tables and planes ([`mean_tables`]) into the static image and builds its
/// descriptor with `descriptor` (from the part's channels, input bits, sign and addresses: input
/// slice, output slice, bias, requantization, planes), reading `io[0]` and writing `io[1]`.
fn place_means(
    m: MeanSlices,
    model: &QModel,
    node: usize,
    [input, output]: [ActBuffer; 2],
    (mem, image): (&mut Alloc, &mut Vec<(DeviceAddr, Vec<u8>)>),
    descriptor: impl Fn(usize, BitWidth, bool, [DeviceAddr; 5]) -> Option<LayerDescriptor>,
) -> Result<DeviceOp> {
    let in_bits = input_bits(model, node)?;
    let mut put = |bytes: Vec<u8>| mem.put(image, bytes);
    let mut descs = Vec::with_capacity(m.parts);
    for p in 0..m.parts {
        let c0 = p * m.per_part;
        let n = m.per_part.min(m.channels - c0);
        let [bias, rq, planes] = mean_tables(&mut put, m.layer, n, m.window, m.bits)?;
        let addrs = [
            DeviceAddr(input.buf.addr.0 + (c0 * m.areas[0]) as u64),
            DeviceAddr(output.buf.addr.0 + (c0 * m.areas[1]) as u64),
            bias,
            rq,
            planes,
        ];
        let d = descriptor(n, in_bits, input.signed, addrs)
            .expect("checked for the largest part when the lowering was chosen");
        descs.push(d);
    }
    Ok(DeviceOp {
        name: model.graph.nodes[node].name.clone(),
        node,
        descs,
    })
}

/// The flags of a mean part ([`GapParts`], [`PoolParts`]): no ReLU, its codes' sign kept.
fn mean_flags(signed: bool) -> Flags {
    Flags {
        relu: false,
        in_signed: signed,
        out_signed: signed,
        grouped: false,
        last: false,
    }
}

/// The bias, requantization and plane tables of a mean part of `n` channels whose K holds
/// `window` codes per channel, one channel after the other ([`GapParts`], [`PoolParts`]): row r
/// weighs its own channel's codes by [`MeanAsLayer::WEIGHT`] (code 1 of a `bits`-bit plane group
/// at shift [`GapParts::SHIFT`]) and the others' by 0, bias [`MeanAsLayer::BIAS`]; each table put
/// where `put` places it.
fn mean_tables(
    put: &mut impl FnMut(Vec<u8>) -> DeviceAddr,
    layer: MeanAsLayer,
    n: usize,
    window: usize,
    bits: BitWidth,
) -> Result<[DeviceAddr; 3]> {
    let bias = put(pad8(
        std::iter::repeat_n(MeanAsLayer::BIAS.to_le_bytes(), n)
            .flatten()
            .collect(),
    ));
    let rq = put(requant::table_bytes(&vec![layer.requant; n]));
    let codes =
        ndarray::Array2::from_shape_fn((n, n * window), |(r, k)| i32::from(k / window == r));
    let planes = put(planes::pack(codes.view(), bits.get())?.to_le_bytes());
    Ok([bias, rq, planes])
}

/// The descriptor of a constant-weight layer ([`GapParts`], [`AddLayer`], [`PoolParts`]): a Conv2d
/// from `dims[0]` to `dims[1]` (`[c, h, w]`) with a square `window` = (kernel, stride) and no
/// padding, `bits` = [in, out] code widths, one plane group `weight` = (width, shift), no local
/// regions, and optionally a global average pool on its result path; reading `addrs[0]`, writing
/// `addrs[1]`, its bias, requantization and planes at `addrs[2..5]`. `None` when a value does not
/// fit its field.
fn constant_conv(
    dims: [Shape3; 2],
    flags: Flags,
    bits: [BitWidth; 2],
    weight: (BitWidth, u8),
    window: (usize, usize),
    global_pool: Option<caq_spec::RequantEntry>,
    addrs: [DeviceAddr; 5],
) -> Option<LayerDescriptor> {
    let [
        input_addr,
        output_addr,
        bias_addr,
        requant_addr,
        weight_addr,
    ] = addrs;
    let shape = |[c, h, w]: Shape3| {
        Some(Shape {
            c: u16::try_from(c).ok()?,
            h: u16::try_from(h).ok()?,
            w: u16::try_from(w).ok()?,
        })
    };
    let group = PlaneGroup {
        bits: weight.0,
        shift: weight.1,
        weight_addr,
    };
    Some(LayerDescriptor {
        op: Opcode::Conv2d,
        flags,
        in_bits: bits[0],
        out_bits: bits[1],
        group_size: 0,
        input: shape(dims[0])?,
        output: shape(dims[1])?,
        kernel_h: u8::try_from(window.0).ok()?,
        kernel_w: u8::try_from(window.0).ok()?,
        stride: u8::try_from(window.1).ok()?,
        pad: Pad::default(),
        plane_groups: PlaneGroups::new(&[group]).ok()?,
        active_groups: 1,
        input_addr,
        output_addr,
        bias_addr,
        requant_addr,
        group_mult_addr: DeviceAddr(0),
        batch: 1,
        max_pool: 0,
        global_pool,
    })
}

/// A residual Add the device runs as a layer (docs/hardware.md, "Residual adds as layers").
/// Its two inputs share one quantizer (`caq_model::qmodel`), so its two multipliers are one, and
/// the compiler puts their buffers one right after the other, so the pair is one CHW map of 2·C
/// channels; a 1×1 Conv2d over that map with a row per channel, which
/// weighs the channel's code in each input by 1 (code 1 of a plane group of [`AddLayer::bits`])
/// and every other code by 0, bias 0, and the add's multiplier and shift computes `(a·m + b·m +
/// 2^(shift−1)) >> shift`, the add's rule exactly, then its ReLU and saturation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddLayer {
    /// The node whose buffer holds the first C channels of the pair, and the node whose buffer
    /// follows it (each the owner of one input's codes: a Flatten or a fused pool shares its
    /// input's buffer).
    pub first: usize,
    pub second: usize,
    /// The weight layer whose list it ends.
    pub after: usize,
    /// Width of the plane group whose code 1 is the weight.
    pub bits: BitWidth,
    /// A global average pool runs on its result path (descriptor field `global_pool`): the add
    /// writes each channel's mean.
    pub global_pool: bool,
}

impl AddLayer {
    /// Its one descriptor, reading the pair at `addrs[0]` and writing `addrs[1]`, with its bias,
    /// requantization and plane tables at `addrs[2..5]`; `None` when a dimension does not fit its
    /// field or the add's inputs are not one quantizer.
    fn descriptor(
        &self,
        model: &QModel,
        node: usize,
        shape: Shape3,
        addrs: [DeviceAddr; 5],
    ) -> Option<LayerDescriptor> {
        let Op::Add { relu } = model.graph.nodes[node].op else {
            return None;
        };
        let (in_act, out) = (model.acts[self.first], model.acts[node]);
        let [c, h, w] = shape;
        let flags = Flags {
            relu,
            in_signed: in_act.signed,
            out_signed: out.signed,
            grouped: false,
            last: false,
        };
        let bits = [
            BitWidth::try_from(in_act.bits).ok()?,
            BitWidth::try_from(out.bits).ok()?,
        ];
        let pool = match self.global_pool {
            true => Some(MeanAsLayer::of(h * w)?.requant.entry()),
            false => None,
        };
        let dims = [[2 * c, h, w], [c, h, w]];
        constant_conv(dims, flags, bits, (self.bits, 0), (1, 1), pool, addrs)
    }

    /// Writes the tables and planes of Add node `node` (output `shape`) into the static image and
    /// builds its descriptor, reading the pair at `first` (the buffer of [`AddLayer::first`]) and
    /// writing `output` (its pool's means with [`AddLayer::global_pool`]).
    #[allow(clippy::too_many_arguments)]
    fn place(
        &self,
        model: &QModel,
        node: usize,
        shape: Shape3,
        first: ActBuffer,
        output: ActBuffer,
        mem: &mut Alloc,
        image: &mut Vec<(DeviceAddr, Vec<u8>)>,
    ) -> Result<DeviceOp> {
        let rq = model.adds[node].ok_or_else(|| HostError::Arg {
            what: "model",
            why: format!(
                "add node '{}' has no requantization",
                model.graph.nodes[node].name
            ),
        })?;
        let c = shape[0];
        let mut put = |bytes: Vec<u8>| mem.put(image, bytes);
        let bias = put(pad8(vec![0; 4 * c]));
        let entry = requant::Requant {
            mult: rq.mult_a,
            shift: rq.shift,
        };
        let rq_addr = put(requant::table_bytes(&vec![entry; c]));
        let codes = ndarray::Array2::from_shape_fn((c, 2 * c), |(r, k)| i32::from(k % c == r));
        let planes = put(planes::pack(codes.view(), self.bits.get())?.to_le_bytes());
        let addrs = [first.buf.addr, output.buf.addr, bias, rq_addr, planes];
        let d = self
            .descriptor(model, node, shape, addrs)
            .expect("checked in AfterCtx::add and global_pool_fuses");
        Ok(DeviceOp {
            name: model.graph.nodes[node].name.clone(),
            node,
            descs: vec![d],
        })
    }
}

/// The node whose buffer holds the codes `s` reads: a Flatten and a fused pool share their
/// input's buffer. `None` for the network input.
fn owner(graph: &Graph, fused: &[bool], mut s: Src) -> Option<usize> {
    loop {
        let Src::Node(j) = s else { return None };
        if matches!(graph.nodes[j].op, Op::Flatten) || fused[j] {
            s = graph.nodes[j].inputs[0];
        } else {
            return Some(j);
        }
    }
}

/// A node without weights that runs at the end of the list of the weight layer before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterOp {
    Add(AddLayer),
    Pool(PoolParts),
}

impl AfterOp {
    /// The weight layer whose list it ends.
    pub fn after(&self) -> usize {
        match self {
            AfterOp::Add(a) => a.after,
            AfterOp::Pool(p) => p.after,
        }
    }

    /// Its descriptors.
    pub fn parts(&self) -> usize {
        match self {
            AfterOp::Add(_) => 1,
            AfterOp::Pool(p) => p.parts,
        }
    }
}

/// What [`after_ops`] decides from.
struct AfterCtx<'a> {
    model: &'a QModel,
    shapes: &'a [Shape3],
    fused: &'a [bool],
    transposed: &'a [bool],
    caps: &'a Caps,
    shape: &'a CoreShape,
}

impl AfterCtx<'_> {
    /// Per node, the residual Add ([`AddLayer`], with [`CompileOptions::add_on_device`]) or
    /// average pool ([`PoolParts`], with [`CompileOptions::avg_pool_on_device`]) the device runs
    /// at the end of the list of the weight layer before it: the nearest weight layer with nothing
    /// between them but Flatten, fused pools and other such nodes (a host step between them keeps
    /// the node a host step). Every other Add or pool is a host step.
    fn after_ops(&self, opts: CompileOptions) -> Vec<Option<AfterOp>> {
        let graph = &self.model.graph;
        let n = graph.nodes.len();
        let mut paired = vec![false; n];
        let mut ops = vec![None; n];
        // The weight layer whose list a node here would end.
        let mut attach: Option<usize> = None;
        for (i, node) in graph.nodes.iter().enumerate() {
            if node.op.has_weights() {
                attach = Some(i);
                continue;
            }
            if matches!(node.op, Op::Flatten) || self.fused[i] {
                continue;
            }
            let op = match (attach, &node.op) {
                (Some(after), Op::Add { .. }) if opts.add_on_device => {
                    self.add(&paired, i, after).map(AfterOp::Add)
                }
                (Some(after), Op::AvgPool { .. }) if opts.avg_pool_on_device => self.pool(i, after),
                (Some(after), Op::MaxPool { .. }) if opts.max_pool_on_device => self.pool(i, after),
                _ => None,
            };
            match op {
                Some(AfterOp::Add(a)) => {
                    paired[a.first] = true;
                    paired[a.second] = true;
                }
                Some(AfterOp::Pool(_)) => {}
                // A host step: the next such node has no list to end until a weight layer.
                None => attach = None,
            }
            ops[i] = op;
        }
        ops
    }

    /// Pool node `i` as parts ending `after`'s list ([`PoolParts::of`]), where its input is
    /// CHW (not transposed).
    fn pool(&self, i: usize, after: usize) -> Option<AfterOp> {
        let src = owner(
            &self.model.graph,
            self.fused,
            self.model.graph.nodes[i].inputs[0],
        );
        if src.is_some_and(|j| self.transposed[j]) {
            return None;
        }
        PoolParts::of(self.model, self.shapes, i, after, self.caps, self.shape).map(AfterOp::Pool)
    }

    /// Add node `i` as a layer ending `after`'s list, where: its multipliers are equal (its
    /// inputs share a quantizer); its inputs are two different node buffers, neither the input
    /// of another such Add (`paired`), CHW (not transposed), of one bit width and signedness; the
    /// buffer placed second starts on a bus word or no Dense layer reads it (a Conv2d's maps may
    /// start at any byte, a Dense layer's may not); and its descriptor passes the descriptor rules
    /// and fits the device's buffers.
    fn add(&self, paired: &[bool], i: usize, after: usize) -> Option<AddLayer> {
        let (model, caps, fused) = (self.model, self.caps, self.fused);
        let graph = &model.graph;
        let node = &graph.nodes[i];
        let bits = BitWidth::all().find(|&b| b.get() >= 2 && caps.supports_weight_bits(b))?;
        let rq = model.adds[i]?;
        if rq.mult_a != rq.mult_b || node.inputs.len() != 2 {
            return None;
        }
        let a = owner(graph, fused, node.inputs[0])?;
        let b = owner(graph, fused, node.inputs[1])?;
        let (first, second) = (a.min(b), a.max(b));
        let (fa, sa) = (model.acts[first], model.acts[second]);
        if first == second
            || paired[first]
            || paired[second]
            || self.transposed[first]
            || self.transposed[second]
            || (fa.bits, fa.signed) != (sa.bits, sa.signed)
        {
            return None;
        }
        let len = self.shapes[i].iter().product::<usize>();
        let dense_reads_second = graph.nodes.iter().any(|r| {
            matches!(r.op, Op::Dense { .. }) && owner(graph, fused, r.inputs[0]) == Some(second)
        });
        if len % caps.bus_bytes() as usize != 0 && dense_reads_second {
            return None;
        }
        let add = AddLayer {
            first,
            second,
            after,
            bits,
            global_pool: false,
        };
        let d = add.descriptor(model, i, self.shapes[i], [DeviceAddr(0); 5])?;
        (d.validate(caps).is_ok() && self.shape.check_capacity(&d).is_ok()).then_some(add)
    }
}

/// A standalone pool the device runs at the end of the list of the weight layer before it
/// (docs/hardware.md, "Pooling by constant-weight layers"): parts of up to R channels, each a
/// Conv2d over its slice of channels (CHW keeps each channel's map in one run of bytes) with a
/// row per channel that weighs its own channel's codes by [`MeanAsLayer::WEIGHT`] (code 1 of a
/// `bits`-bit plane group at shift [`GapParts::SHIFT`]) and the others' by 0, bias
/// [`MeanAsLayer::BIAS`]:
/// - an average pool (window k×k with stride k, k ≤ the largest stride, 2): a k×k stride-k conv
///   with requantization `1/(4·k·k)`, the average-pool rule exactly (docs/numerics.md, "Average
///   pooling as a layer");
/// - a max pool (window k×k with stride k, k in the result path's `POOL_WINDOWS`): a 1×1 conv with
///   requantization `1/4`, the mean of one code, which is the code itself, and the window on the
///   result path (descriptor field `max_pool`).
///
/// Rows and columns past the last whole window are dropped, as both rules drop them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolParts {
    pub channels: usize,
    pub per_part: usize,
    pub parts: usize,
    /// The pool's window (its stride).
    pub kernel: usize,
    /// A max pool: 1×1 copies pooled on the result path; otherwise k×k means.
    pub max: bool,
    /// The input map's height and width.
    pub map: [usize; 2],
    /// Width of the plane group whose code 1 at shift [`GapParts::SHIFT`] is the weight.
    pub bits: BitWidth,
    /// The weight layer whose list it ends.
    pub after: usize,
    layer: MeanAsLayer,
}

impl PoolParts {
    /// The lowering of AvgPool or MaxPool node `node` ending `after`'s list: `None` when its
    /// window is not its stride, an average pool's window exceeds the largest stride, a max
    /// pool's is not one the result path pools or its pooled width exceeds the pooling line, its
    /// output codes are not its input's width and sign (the mean of in-range codes is in range),
    /// no supported weight width of at least 2 bits leaves room for the shift, or the largest part
    /// does not fit the descriptor rules or the device's buffers.
    pub fn of(
        model: &QModel,
        shapes: &[Shape3],
        node: usize,
        after: usize,
        caps: &Caps,
        shape: &CoreShape,
    ) -> Option<PoolParts> {
        let graph = &model.graph;
        let (kernel, stride, max) = match graph.nodes[node].op {
            Op::AvgPool { kernel, stride } => (kernel, stride, false),
            Op::MaxPool { kernel, stride }
                if result_path_max_pool(kernel, stride, shapes[node]) =>
            {
                (kernel, stride, true)
            }
            _ => return None,
        };
        let (input, in_act) = match graph.nodes[node].inputs[0] {
            Src::Input => (graph.input_shape, model.input),
            Src::Node(j) => (shapes[j], model.acts[j]),
        };
        let out = model.acts[node];
        if kernel != stride || (out.bits, out.signed) != (in_act.bits, in_act.signed) {
            return None;
        }
        let wmax = caps.max_weight_bits().get();
        let bits = BitWidth::all().find(|&b| {
            b.get() >= 2 && b.get() + GapParts::SHIFT <= wmax && caps.supports_weight_bits(b)
        })?;
        let [channels, h, w] = input;
        let per_part = (shape.rows as usize).min(channels);
        let p = PoolParts {
            channels,
            per_part,
            parts: channels.div_ceil(per_part),
            kernel,
            max,
            map: [h, w],
            bits,
            after,
            layer: MeanAsLayer::of(if max { 1 } else { kernel * kernel })?,
        };
        let in_bits = BitWidth::try_from(in_act.bits).ok()?;
        let d = p.descriptor(per_part, in_bits, in_act.signed, [DeviceAddr(0); 5])?;
        (d.validate(caps).is_ok() && shape.check_capacity(&d).is_ok()).then_some(p)
    }

    /// The descriptor of a part of `n` channels reading from `addrs[0]` and writing to
    /// `addrs[1]`, with its bias, requantization and plane tables at `addrs[2..5]`.
    fn descriptor(
        &self,
        n: usize,
        in_bits: BitWidth,
        signed: bool,
        addrs: [DeviceAddr; 5],
    ) -> Option<LayerDescriptor> {
        let ([h, w], k) = (self.map, self.kernel);
        let (conv, out) = match self.max {
            true => (1, [n, h, w]),
            false => (k, [n, h / k, w / k]),
        };
        let weight = (self.bits, GapParts::SHIFT);
        let mut d = constant_conv(
            [[n, h, w], out],
            mean_flags(signed),
            [in_bits, in_bits],
            weight,
            (conv, conv),
            None,
            addrs,
        )?;
        if self.max {
            d.max_pool = u8::try_from(k).ok()?;
        }
        Some(d)
    }

    /// Writes the tables and planes of pool node `node` into the static image and builds its
    /// descriptors, reading `input` and writing `output`.
    fn place(
        &self,
        model: &QModel,
        node: usize,
        io: [ActBuffer; 2],
        mem: &mut Alloc,
        image: &mut Vec<(DeviceAddr, Vec<u8>)>,
    ) -> Result<DeviceOp> {
        let ([h, w], k) = (self.map, self.kernel);
        let slices = MeanSlices {
            channels: self.channels,
            per_part: self.per_part,
            parts: self.parts,
            // K is ordered (c, ky, kx): a row's window is its own channel's k·k codes (one code
            // where the pool is a max on the result path).
            window: if self.max { 1 } else { k * k },
            areas: [h * w, (h / k) * (w / k)],
            layer: self.layer,
            bits: self.bits,
        };
        place_means(slices, model, node, io, (mem, image), |n, b, s, a| {
            self.descriptor(n, b, s, a)
        })
    }
}

/// How a weight layer becomes descriptors beyond one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lowering {
    /// A grouped convolution as block-diagonal dense parts.
    Grouped(GroupedParts),
    /// A depthwise convolution by output columns.
    Columns(ColumnParts),
}

impl Lowering {
    /// Descriptors of the layer.
    pub fn parts(&self) -> usize {
        match self {
            Lowering::Grouped(g) => g.parts,
            Lowering::Columns(c) => c.parts,
        }
    }
}

/// One descriptor's share of a layer: output channels `out` reading input channels `inp`, the
/// channels of `groups` consecutive channel groups (1 for an ungrouped layer).
struct Part {
    out: std::ops::Range<usize>,
    inp: std::ops::Range<usize>,
    groups: usize,
}

/// `codes` (`[O, K]` of a layer with `groups` groups) as the block-diagonal `[n, groups_in_part
/// · K]` matrix of the part with output channels `out`: row r's K codes at the block of its group
/// within the part.
fn block_diagonal(
    codes: ndarray::ArrayView2<i32>,
    out: &std::ops::Range<usize>,
    og: usize,
    groups_in_part: usize,
) -> ndarray::Array2<i32> {
    let k = codes.ncols();
    let first_group = out.start / og;
    let mut m = ndarray::Array2::<i32>::zeros((out.len(), groups_in_part * k));
    for (r, o) in out.clone().enumerate() {
        let g = o / og - first_group;
        m.slice_mut(ndarray::s![r, g * k..(g + 1) * k])
            .assign(&codes.row(o));
    }
    m
}

/// Where a layer writes: its buffer (the pooled map with a fused pool), the layer's own output
/// shape, and the fused pool's window (0: none).
#[derive(Clone, Copy)]
struct Placement {
    act: ActBuffer,
    conv: Shape3,
    max_pool: usize,
    /// A fused global average pool: the device writes each channel's mean.
    global_pool: bool,
}

/// Writes one layer's tables and plane groups into the image and builds its descriptors (one, or
/// one per part of `lowering`, the lowered grouped convolution).
#[allow(clippy::too_many_arguments)]
fn place_layer(
    cfg: &AccelConfig,
    caps: &Caps,
    model: &QModel,
    node: usize,
    q: &QLayer,
    lowering: Option<Lowering>,
    in_act: ActBuffer,
    out: Placement,
    bits: u8,
    mem: &mut Alloc,
    image: &mut Vec<(DeviceAddr, Vec<u8>)>,
) -> Result<(DeviceLayer, Vec<Vec<u8>>)> {
    let name = &q.name;
    let unfit = |what: String| HostError::Layer {
        layer: name.clone(),
        config: cfg.name.clone(),
        what,
    };
    let mut put = |bytes: Vec<u8>| mem.put(image, bytes);
    let [ic, ih, iw] = in_act.shape;
    let [oc, oh, ow] = out.conv;
    let out_act = out.act;
    // Bytes of one output channel as written (the pooled map's with a fused pool).
    let written_hw = out_act.shape[1] * out_act.shape[2];
    let op = &model.graph.nodes[node].op;
    let parts: Vec<Part> = match lowering {
        None => vec![Part {
            out: 0..oc,
            inp: 0..ic,
            groups: 1,
        }],
        // Rows of a part by columns are (channel, output column); its tables are per channel.
        Some(Lowering::Columns(cp)) => (0..cp.parts)
            .map(|p| {
                let c0 = p * cp.per_part;
                let c1 = (c0 + cp.per_part).min(oc);
                Part {
                    out: c0..c1,
                    inp: c0..c1,
                    groups: c1 - c0,
                }
            })
            .collect(),
        Some(Lowering::Grouped(gp)) => {
            let (og, cg) = (oc / gp.groups, ic / gp.groups);
            (0..gp.parts)
                .map(|p| {
                    let g0 = p * gp.groups_per_part;
                    let g1 = (g0 + gp.groups_per_part).min(gp.groups);
                    Part {
                        out: g0 * og..g1 * og,
                        inp: g0 * cg..g1 * cg,
                        groups: g1 - g0,
                    }
                })
                .collect()
        }
    };
    let part_codes = |codes: ndarray::ArrayView2<'_, i32>, part: &Part| match lowering {
        None => codes.to_owned(),
        Some(Lowering::Grouped(gp)) => {
            block_diagonal(codes, &part.out, oc / gp.groups, part.groups)
        }
        Some(Lowering::Columns(cp)) => cp.codes(codes, part.out.start, part.groups),
    };
    // Output rows of each part, and the channel each row's tables come from.
    let row_channels = |part: &Part| -> Vec<usize> {
        match lowering {
            Some(Lowering::Columns(_)) => {
                let per = ow;
                part.out
                    .clone()
                    .flat_map(|c| std::iter::repeat_n(c, per))
                    .collect()
            }
            _ => part.out.clone().collect(),
        }
    };
    // Tables per part: biases, requantization, and the region multipliers (a lowered part's
    // rows have one region each, so every region of its expanded row takes that multiplier).
    let mut tables = Vec::with_capacity(parts.len());
    for part in &parts {
        let chans = row_channels(part);
        let bias_addr = put(pad8(
            chans
                .iter()
                .flat_map(|&c| q.bias[c].to_le_bytes())
                .collect(),
        ));
        let rq: Vec<_> = chans.iter().map(|&c| q.requant[c]).collect();
        let requant_addr = put(requant::table_bytes(&rq));
        let (group_mult_addr, group_size) = match &q.groups {
            None => (DeviceAddr(0), 0u16),
            Some(g) => {
                if g.group_size != caps.group_size() as usize {
                    return Err(unfit(format!(
                        "quantized with local regions of {} but the device's group size is {} \
                         (quantize with --group-size {})",
                        g.group_size,
                        caps.group_size(),
                        caps.group_size()
                    )));
                }
                let mult = match lowering {
                    None => g.mult.clone(),
                    Some(lw) if g.mult.ncols() == 1 => {
                        let k = match lw {
                            Lowering::Grouped(_) => q.k() * part.groups,
                            Lowering::Columns(cp) => cp.geometry(part.groups).k(),
                        };
                        let regions = k.div_ceil(g.group_size);
                        ndarray::Array2::from_shape_fn((chans.len(), regions), |(r, _)| {
                            g.mult[[chans[r], 0]]
                        })
                    }
                    Some(_) => {
                        return Err(unfit(format!(
                            "a grouped convolution whose K = {} spans {} local regions: its \
                             lowering to dense parts keeps one region per row only",
                            q.k(),
                            g.mult.ncols()
                        )));
                    }
                };
                let bytes = mult.iter().flat_map(|m| m.to_le_bytes()).collect();
                (put(pad8(bytes)), g.group_size as u16)
            }
        };
        tables.push((bias_addr, requant_addr, group_mult_addr, group_size));
    }
    // Every plane group gets its place now (so paging one in never moves anything); the bytes
    // are kept apart from the tables: which of them are in device memory is the loader's choice.
    // A lowered layer's group holds every part's planes of that group, each part's from a
    // BUFFER_ALIGN boundary.
    let n_groups = q.weights.groups.len();
    let mut group_bytes = Vec::with_capacity(n_groups);
    let mut plane_bytes = Vec::with_capacity(n_groups);
    // Per part, per plane group: (bits, shift, offset within the group's bytes).
    let mut part_groups: Vec<Vec<(u8, u8, u64)>> = vec![Vec::with_capacity(n_groups); parts.len()];
    let mut group_base = Vec::with_capacity(n_groups);
    for pg in &q.weights.groups {
        let mut bytes = Vec::new();
        for (pi, part) in parts.iter().enumerate() {
            let codes = part_codes(pg.codes.view(), part);
            let mut b = planes::pack(codes.view(), pg.bits)?.to_le_bytes();
            if parts.len() > 1 {
                b.resize(b.len().next_multiple_of(BUFFER_ALIGN as usize), 0);
            }
            part_groups[pi].push((pg.bits, pg.shift, bytes.len() as u64));
            bytes.extend_from_slice(&b);
        }
        group_bytes.push(bytes.len() as u64);
        group_base.push(mem.take(bytes.len() as u64));
        plane_bytes.push(bytes);
    }
    let active = q
        .weights
        .active_groups(bits)
        .map_err(|e| unfit(e.to_string()))?;
    let dim = |what: &str, v: usize| u16_dim(name, cfg, what, v);
    let small = |what: &str, v: usize| {
        u8::try_from(v)
            .map_err(|_| unfit(format!("{what} = {v} does not fit its descriptor field")))
    };
    let (opcode, kernel, stride, pad) = match *op {
        Op::Dense { .. } => (Opcode::Dense, [1, 1], 1, Padding::default()),
        Op::Conv2d {
            kernel,
            stride,
            padding,
            ..
        } => (Opcode::Conv2d, kernel, stride, padding),
        _ => unreachable!("only weight layers are placed"),
    };
    let mut descs = Vec::with_capacity(parts.len());
    for (pi, part) in parts.iter().enumerate() {
        let groups: Vec<PlaneGroup> = part_groups[pi]
            .iter()
            .zip(&group_base)
            .map(|(&(b, shift, off), base)| {
                Ok(PlaneGroup {
                    bits: BitWidth::try_from(b)?,
                    shift,
                    weight_addr: DeviceAddr(base.0 + off),
                })
            })
            .collect::<Result<_>>()?;
        let plane_groups = PlaneGroups::new(&groups).map_err(|e| unfit(e.to_string()))?;
        let columns = match lowering {
            Some(Lowering::Columns(cp)) => Some(cp.geometry(part.groups)),
            _ => None,
        };
        let shape3 = |what: [&str; 3], [c, h, w]: [usize; 3]| -> Result<Shape> {
            Ok(Shape {
                c: dim(what[0], c)?,
                h: dim(what[1], h)?,
                w: dim(what[2], w)?,
            })
        };
        let (input, output) = match opcode {
            _ if let Some(g) = &columns => (
                shape3(["in_c", "in_h", "in_w"], g.input)?,
                shape3(["out_c", "out_h", "out_w"], g.output)?,
            ),
            Opcode::Dense => (
                Shape {
                    c: dim("in_c", q.k())?,
                    h: 1,
                    w: 1,
                },
                Shape {
                    c: dim("out_c", oc)?,
                    h: 1,
                    w: 1,
                },
            ),
            // A 1x1 stride-1 unpadded conv reads and writes each channel's map as one run of
            // bytes, so it runs as a 1 x (h·w) map: the window generator's blocks of pixels then
            // span the rows (a 5-pixel row of a DS-CNN map no longer caps a block at 5).
            Opcode::Conv2d
                if kernel == [1, 1]
                    && stride == 1
                    && pad == Padding::default()
                    && out.max_pool == 0
                    && ih * iw <= caps.max_dim() as usize =>
            {
                (
                    Shape {
                        c: dim("in_c", part.inp.len())?,
                        h: 1,
                        w: dim("in_w", ih * iw)?,
                    },
                    Shape {
                        c: dim("out_c", part.out.len())?,
                        h: 1,
                        w: dim("out_w", oh * ow)?,
                    },
                )
            }
            Opcode::Conv2d => (
                Shape {
                    c: dim("in_c", part.inp.len())?,
                    h: dim("in_h", ih)?,
                    w: dim("in_w", iw)?,
                },
                Shape {
                    c: dim("out_c", part.out.len())?,
                    h: dim("out_h", oh)?,
                    w: dim("out_w", ow)?,
                },
            ),
        };
        // A part reads and writes a slice of channels (CHW, each channel's map one run of bytes,
        // transposed or not), from any byte.
        let input_addr = DeviceAddr(in_act.buf.addr.0 + (part.inp.start * ih * iw) as u64);
        let output_addr = DeviceAddr(out_act.buf.addr.0 + (part.out.start * written_hw) as u64);
        let (bias_addr, requant_addr, group_mult_addr, group_size) = tables[pi];
        let (kernel, pad) = columns
            .as_ref()
            .map_or((kernel, pad), |g| (g.kernel, g.pad));
        descs.push(LayerDescriptor {
            op: opcode,
            flags: Flags {
                relu: op.relu(),
                in_signed: in_act.signed,
                out_signed: out_act.signed,
                grouped: q.groups.is_some(),
                last: false,
            },
            in_bits: input_bits(model, node)?,
            out_bits: BitWidth::try_from(model.acts[node].bits)?,
            group_size,
            input,
            output,
            kernel_h: small("kernel_h", kernel[0])?,
            kernel_w: small("kernel_w", kernel[1])?,
            stride: small("stride", stride)?,
            pad: Pad {
                top: small("pad_top", pad.top)?,
                left: small("pad_left", pad.left)?,
                bottom: small("pad_bottom", pad.bottom)?,
                right: small("pad_right", pad.right)?,
            },
            plane_groups,
            active_groups: active as u8,
            input_addr,
            output_addr,
            bias_addr,
            requant_addr,
            group_mult_addr,
            batch: 1,
            max_pool: small("max_pool", out.max_pool)?,
            global_pool: match out.global_pool {
                true => Some(
                    MeanAsLayer::of(out.conv[1] * out.conv[2])
                        .ok_or_else(|| unfit("no mean requantization for its map".into()))?
                        .requant
                        .entry(),
                ),
                false => None,
            },
        });
    }
    Ok((
        DeviceLayer {
            name: name.clone(),
            node,
            levels: q.levels().to_vec(),
            bits,
            descs,
            list_addr: DeviceAddr(0),
            single_addr: DeviceAddr(0),
            last_in_list: false,
            group_bytes,
            expanded: lowering.is_some(),
            gap: None,
            after: Vec::new(),
        },
        plane_bytes,
    ))
}

fn input_bits(model: &QModel, node: usize) -> Result<BitWidth> {
    let bits = match model.graph.nodes[node].inputs[0] {
        Src::Input => model.input.bits,
        Src::Node(j) => model.acts[j].bits,
    };
    Ok(BitWidth::try_from(bits)?)
}

fn pad8(mut v: Vec<u8>) -> Vec<u8> {
    v.resize(v.len().div_ceil(8) * 8, 0);
    v
}

impl Program {
    /// The buffer a node input reads from.
    pub fn act(&self, s: Src) -> ActBuffer {
        src_act(&self.input, &self.nodes, s)
    }

    /// The network output (the last node's buffer).
    pub fn output(&self) -> ActBuffer {
        *self.nodes.last().expect("a graph has nodes")
    }

    /// The steps of a pass from `start` through weight layer `stop` (to the end when `None`).
    /// A segment is entered at any layer (its list from there on keeps the final `last` flag); a
    /// pass may stop inside a segment only after one layer of it (that layer's own list), since
    /// a list's `last` flag is on its final descriptor only. A pass that stops at the last layer
    /// of a segment also runs the host steps that follow it up to the next segment (an unfused
    /// max pool after the first layer: the gate network reads its output,
    /// `caq_model::adaptive::gate_node`), and a pass that starts `After` that layer begins at
    /// the next segment.
    pub fn pass(&self, start: PassStart, stop: Option<usize>) -> Result<Vec<PassStep<'_>>> {
        let n = self.layers.len();
        let bad = |why: String| HostError::Arg { what: "pass", why };
        let first = match start {
            PassStart::Input => 0,
            PassStart::Layer(i) if i < n => i,
            PassStart::After(i) if i < n => i + 1,
            PassStart::Layer(i) | PassStart::After(i) => {
                return Err(bad(format!("starts at weight layer {i} of {n}")));
            }
        };
        if let Some(s) = stop
            && (s >= n || s < first)
        {
            return Err(bad(format!(
                "stops at weight layer {s}, outside {first}..{n}"
            )));
        }
        let mut begun = start == PassStart::Input;
        // After the segment whose last layer is `stop`: its host steps, then the end.
        let mut stopping = false;
        let mut steps = Vec::new();
        for step in &self.steps {
            match step {
                Step::Device(seg) => {
                    if stopping {
                        break;
                    }
                    if seg.layers.end <= first {
                        continue;
                    }
                    begun = true;
                    let lo = seg.layers.start.max(first);
                    let hi = stop.map_or(seg.layers.end, |s| seg.layers.end.min(s + 1));
                    let list = if hi == seg.layers.end {
                        self.layers[lo].list_addr
                    } else if hi - lo == 1 {
                        self.layers[lo].single_addr
                    } else {
                        return Err(bad(format!(
                            "stops after layers {lo}..{hi} inside a segment of layers {:?}: only \
                             a single layer's list ends there",
                            seg.layers
                        )));
                    };
                    steps.push(PassStep::Device {
                        layers: lo..hi,
                        list,
                    });
                    match stop {
                        Some(s) if s + 1 < seg.layers.end => break,
                        Some(s) if s + 1 == seg.layers.end => stopping = true,
                        _ => {}
                    }
                }
                Step::Host(h) => {
                    if begun {
                        steps.push(PassStep::Host(h));
                    }
                }
            }
        }
        Ok(steps)
    }

    /// The active level of every weight layer.
    pub fn bits(&self) -> Vec<u8> {
        self.layers.iter().map(|l| l.bits).collect()
    }

    /// The DMA window that covers the program.
    pub fn window(&self) -> Window {
        Window {
            base: self.region.base,
            limit: DeviceAddr(self.region.end()),
        }
    }

    /// Bytes of weight planes resident (every stored group of every layer).
    pub fn weight_bytes(&self) -> u64 {
        self.layers.iter().flat_map(|l| &l.group_bytes).sum()
    }

    /// The descriptor rules, the device's buffer limits and the window, for one layer.
    fn check_layer(&self, l: &DeviceLayer) -> Result<()> {
        let unfit = |what: String| HostError::Layer {
            layer: l.name.clone(),
            config: self.config.clone(),
            what,
        };
        let names = l.list_names();
        for (d, name) in l.list().zip(&names) {
            let at = if names.len() > 1 {
                format!("{name}, ")
            } else {
                String::new()
            };
            d.validate(&self.caps).map_err(|(code, why)| {
                unfit(format!("{} ({at}at {} bits): {why}", code.name(), l.bits))
            })?;
            self.shape
                .check_capacity(d)
                .map_err(|why| unfit(format!("{at}at {} bits: {why}", l.bits)))?;
            d.check_window(&self.caps, self.window())
                .map_err(|(code, why)| unfit(format!("{}: {at}{why}", code.name())))?;
        }
        Ok(())
    }

    /// Sets the active level of every weight layer: only `active_groups` of the descriptors
    /// changes. Call [`Program::write_descriptors`] to put the lists in device memory. On an error
    /// (a level a layer does not have, or a layer that does not fit at that precision) nothing
    /// changes.
    pub fn set_bits(&mut self, bits: &[u8]) -> Result<()> {
        check_bits_len(bits, self.layers.len())?;
        let mut next = self.layers.clone();
        for (l, &b) in next.iter_mut().zip(bits) {
            let pos = l
                .levels
                .iter()
                .position(|&x| x == b)
                .ok_or_else(|| HostError::Layer {
                    layer: l.name.clone(),
                    config: self.config.clone(),
                    what: format!("{b} bits is not one of its nesting levels {:?}", l.levels),
                })?;
            l.bits = b;
            for d in &mut l.descs {
                d.active_groups = (l.levels.len() - pos) as u8;
            }
            self.check_layer(l)?;
        }
        self.layers = next;
        Ok(())
    }

    /// The stored bytes of plane group `g` of layer `layer` (None after
    /// [`Program::drop_planes`]).
    pub fn group_bytes(&self, layer: usize, g: usize) -> Option<&[u8]> {
        self.planes.get(layer)?.get(g).map(Vec::as_slice)
    }

    /// Frees the host copy of the plane bytes: a loader that pages groups in from the mapped
    /// bundle does not need a second copy. A lowered grouped convolution keeps its own: its
    /// device planes are not the bundle's.
    pub fn drop_planes(&mut self) {
        for (planes, l) in self.planes.iter_mut().zip(&self.layers) {
            if !l.expanded {
                *planes = Vec::new();
            }
        }
    }

    /// Where plane group `g` of layer `layer` lives in device memory.
    pub fn group_buffer(&self, layer: usize, g: usize) -> Option<Buffer> {
        let l = self.layers.get(layer)?;
        Some(Buffer {
            addr: l.desc().plane_groups.as_slice().get(g)?.weight_addr,
            len: *l.group_bytes.get(g)?,
        })
    }

    /// Copies the bytes of plane group `g` of layer `layer` into device memory (a page-in),
    /// after checking they are that group's size.
    pub fn write_group<D: caq_spec::Device>(
        &self,
        dev: &mut D,
        layer: usize,
        g: usize,
        bytes: &[u8],
    ) -> Result<()> {
        let buf = self.group_buffer(layer, g).ok_or_else(|| HostError::Arg {
            what: "plane group",
            why: format!("layer {layer} group {g} does not exist"),
        })?;
        if bytes.len() as u64 != buf.len {
            return Err(HostError::Arg {
                what: "plane group",
                why: format!(
                    "layer '{}' group {g}: {} bytes, the program expects {}",
                    self.layers[layer].name,
                    bytes.len(),
                    buf.len
                ),
            });
        }
        dev.mem_write(buf.addr, bytes).map_err(HostError::backend)?;
        dev.sync_for_device(buf.addr, buf.len)
            .map_err(HostError::backend)
    }

    /// The descriptor copies of layer `li`, two per descriptor (in its segment list and in its
    /// single list; `last` on the layer's final descriptor in the single list, and in the segment
    /// list when the layer ends it).
    pub fn layer_descriptors(&self, li: usize) -> Vec<(DeviceAddr, [u8; DESCRIPTOR_BYTES])> {
        let l = &self.layers[li];
        let n = l.list().count();
        let step = DESCRIPTOR_BYTES as u64;
        let mut out = Vec::with_capacity(2 * n);
        for (p, &desc) in l.list().enumerate() {
            let mut d = desc;
            let final_part = p + 1 == n;
            d.flags.last = l.last_in_list && final_part;
            out.push((DeviceAddr(l.list_addr.0 + p as u64 * step), d.encode()));
            d.flags.last = final_part;
            out.push((DeviceAddr(l.single_addr.0 + p as u64 * step), d.encode()));
        }
        out
    }

    /// Writes the descriptors of layer `li` only (after a precision switch of that layer).
    pub fn write_layer_descriptors<D: caq_spec::Device>(
        &self,
        dev: &mut D,
        li: usize,
    ) -> Result<u64> {
        let mut n = 0;
        for (addr, bytes) in self.layer_descriptors(li) {
            dev.mem_write(addr, &bytes).map_err(HostError::backend)?;
            dev.sync_for_device(addr, bytes.len() as u64)
                .map_err(HostError::backend)?;
            n += bytes.len() as u64;
        }
        Ok(n)
    }

    /// Every descriptor copy with its address: the segment lists and the single lists.
    pub fn descriptor_image(&self) -> Vec<(DeviceAddr, [u8; DESCRIPTOR_BYTES])> {
        (0..self.layers.len())
            .flat_map(|li| self.layer_descriptors(li))
            .collect()
    }

    /// Writes the descriptor lists (after [`Program::set_bits`]): 256 bytes per layer.
    pub fn write_descriptors<D: caq_spec::Device>(&self, dev: &mut D) -> Result<()> {
        for (addr, bytes) in self.descriptor_image() {
            dev.mem_write(addr, &bytes).map_err(HostError::backend)?;
            dev.sync_for_device(addr, bytes.len() as u64)
                .map_err(HostError::backend)?;
        }
        Ok(())
    }

    /// Writes weights (every plane group), tables and descriptors into `dev`'s memory; inputs are
    /// written per run. Needs the plane bytes (see [`Program::drop_planes`]).
    pub fn load<D: caq_spec::Device>(&self, dev: &mut D) -> Result<()> {
        self.load_tables(dev)?;
        for (li, layer) in self.planes.iter().enumerate() {
            if layer.len() != self.layers[li].group_bytes.len() {
                return Err(HostError::Arg {
                    what: "program",
                    why: "its plane bytes were dropped: page the groups in with write_group".into(),
                });
            }
            for (g, bytes) in layer.iter().enumerate() {
                self.write_group(dev, li, g, bytes)?;
            }
        }
        Ok(())
    }

    /// Writes the tables and descriptors, not the plane groups: the caller pages in the groups
    /// each layer needs with [`Program::write_group`]. Returns the table bytes written.
    pub fn load_tables<D: caq_spec::Device>(&self, dev: &mut D) -> Result<u64> {
        let mem = dev.memory();
        if !mem.contains(self.region.base, self.region.len) {
            return Err(HostError::Memory {
                base: self.region.base.0,
                end: self.region.end(),
                mem_base: mem.base.0,
                mem_end: mem.end(),
            });
        }
        let mut n = 0;
        for (addr, bytes) in &self.image {
            dev.mem_write(*addr, bytes).map_err(HostError::backend)?;
            dev.sync_for_device(*addr, bytes.len() as u64)
                .map_err(HostError::backend)?;
            n += bytes.len() as u64;
        }
        self.write_descriptors(dev)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grouped(c: usize, groups: usize) -> Op {
        Op::Conv2d {
            in_channels: c,
            out_channels: c,
            kernel: [3, 3],
            stride: 1,
            padding: Padding::uniform(1),
            groups,
            relu: true,
        }
    }

    #[test]
    fn grouped_parts_fill_the_rows() {
        let parts = |op: &Op, rows| {
            let g = GroupedParts::of(op, rows).unwrap();
            (g.groups_per_part, g.parts)
        };
        let dw = grouped(64, 64);
        assert_eq!(parts(&dw, 16), (16, 4));
        assert_eq!(parts(&dw, 8), (8, 8));
        // The last part holds what is left.
        assert_eq!(parts(&grouped(6, 6), 4), (4, 2));
        // Groups of 2 outputs: 2 groups fill 4 rows.
        assert_eq!(parts(&grouped(16, 8), 4), (2, 4));
        // Not grouped: no lowering.
        assert_eq!(GroupedParts::of(&grouped(8, 1), 4), None);
    }

    #[test]
    fn columns_take_the_channels_whose_output_columns_fill_the_rows_and_patches_one_chunk() {
        let of = |op: &Op, hw, t| ColumnParts::of(op, hw, t, 16, 64).map(|c| (c.per_part, c.parts));
        let dw = grouped(64, 64);
        // DS-CNN's 25x5 maps: a patch of 3 rows x 7 padded columns, 5 output columns a channel:
        // 3 channels a part (15 rows, 63 lanes), either way round.
        assert_eq!(of(&dw, [25, 5], false), Some((3, 22)));
        assert_eq!(of(&dw, [25, 5], true), Some((3, 22)));
        // 9 padded columns: wider than a kernel row, but a transposed map's 9 rows fit.
        assert_eq!(of(&dw, [9, 7], false), None);
        assert_eq!(of(&dw, [9, 7], true), Some((2, 32)));
        // 13 columns, 15 padded: one channel a part; 14 would pad to a 16-row patch.
        assert_eq!(of(&dw, [4, 13], true), Some((1, 64)));
        assert_eq!(of(&dw, [4, 14], true), None);
        // Stride 2, a grouped (not depthwise) conv, a dense one: no.
        let mut strided = dw.clone();
        if let Op::Conv2d { stride, .. } = &mut strided {
            *stride = 2;
        }
        assert_eq!(of(&strided, [25, 5], false), None);
        assert_eq!(of(&grouped(64, 32), [25, 5], false), None);
        assert_eq!(of(&grouped(8, 1), [25, 5], false), None);
    }
}
