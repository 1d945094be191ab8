//! `CpuModel`: a quantized network prepared once for one per-layer precision, then run on single
//! images or on batches, layer by layer. Owns graph traversal, the per-node code ranges that the
//! kernels' exactness rests on, and the batch layout; the arithmetic is in `layer.rs` (weight
//! layers) and `ops.rs` (the rest).
//!
//! A batch of n images is held per node as n CHW tensors back to back. A weight layer sees all of
//! them at once: a convolution's columns are every output pixel of every image, a dense layer's
//! are the images, so a batch fills the kernels' lanes where one image alone would leave a dense
//! layer with a single column.

use crate::error::{CpuError, Result};
use crate::layer::{CodeRange, Engine, LayerInfo, WeightLayer};
use crate::ops;
use crate::panel::Geom;
use caq_model::graph::{Op, Shape3, Src};
use caq_model::qmodel::QModel;
use caq_model::requant::{AddRequant, OutRange};

#[derive(Clone, Debug)]
enum PlanOp {
    Weight(Box<WeightLayer>),
    /// A grouped convolution: one layer per group (same bits and kernel choice in each).
    Grouped(Vec<WeightLayer>),
    GlobalAvgPool,
    MaxPool {
        kernel: usize,
        stride: usize,
    },
    AvgPool {
        kernel: usize,
        stride: usize,
    },
    Add {
        rq: AddRequant,
        out: OutRange,
    },
    Relu,
    Flatten,
}

#[derive(Clone, Debug)]
struct PlanNode {
    inputs: Vec<Src>,
    in_shape: Shape3,
    op: PlanOp,
}

/// A quantized model prepared for the CPU at one per-layer precision.
#[derive(Clone, Debug)]
pub struct CpuModel {
    input_shape: Shape3,
    shapes: Vec<Shape3>,
    nodes: Vec<PlanNode>,
    /// Per node, the last node reading its output (the output node reads itself).
    last_use: Vec<usize>,
}

impl CpuModel {
    /// Prepares `model` at `bits` (one nesting level per weight layer, in graph order) for
    /// `engine`. Checks the model as far as the plan relies on it, so that running the plan
    /// cannot panic on a malformed model.
    pub fn new(model: &QModel, bits: &[u8], engine: Engine) -> Result<CpuModel> {
        model.check_bits(bits)?;
        let graph = &model.graph;
        let shapes = graph.shapes()?;
        let count = graph.nodes.len();
        for (field, len) in [
            ("activation quantizers", model.acts.len()),
            ("layers", model.layers.len()),
            ("adds", model.adds.len()),
        ] {
            if len != count {
                return Err(CpuError::Node {
                    node: 0,
                    name: graph.nodes[0].name.clone(),
                    what: format!("the model has {len} {field} for {count} nodes"),
                });
            }
        }
        // The network input is 8-bit pixels whatever its quantizer says.
        let pixels = CodeRange { min: 0, max: 255 };
        let mut ranges: Vec<CodeRange> = Vec::with_capacity(count);
        let mut nodes = Vec::with_capacity(count);
        let mut bits = bits.iter().copied();
        for (i, node) in graph.nodes.iter().enumerate() {
            let node_err = |what: &str| CpuError::Node {
                node: i,
                name: node.name.clone(),
                what: what.to_string(),
            };
            let src_shape = |s: Src| match s {
                Src::Input => graph.input_shape,
                Src::Node(j) => shapes[j],
            };
            let src_range = |s: Src| match s {
                Src::Input => pixels,
                Src::Node(j) => ranges[j],
            };
            let in_shape = src_shape(node.inputs[0]);
            let input = src_range(node.inputs[0]);
            let act = model.acts[i];
            let out = OutRange {
                qmin: act.qmin(),
                qmax: act.qmax(),
                relu: node.op.relu(),
            };
            let clamped = CodeRange {
                min: i64::from(out.qmin),
                max: i64::from(out.qmax),
            };
            let [c, h, w] = in_shape;
            let out_shape = shapes[i];
            let weight_geom = match node.op {
                Op::Dense { .. } => Some((Geom::dense(c * h * w), 1)),
                Op::Conv2d {
                    kernel,
                    stride,
                    padding,
                    groups,
                    ..
                } => Some((
                    Geom {
                        c: c / groups,
                        c0: 0,
                        in_c: c,
                        h,
                        w,
                        kh: kernel[0],
                        kw: kernel[1],
                        stride,
                        pad_top: padding.top,
                        pad_left: padding.left,
                        oh: out_shape[1],
                        ow: out_shape[2],
                    },
                    groups,
                )),
                _ => None,
            };
            let (op, range) = match (&node.op, weight_geom) {
                (_, Some((geom, 1))) => {
                    let l = model.layers[i]
                        .as_ref()
                        .ok_or_else(|| node_err("a weight layer without quantized weights"))?;
                    let b = bits.next().expect("check_bits counted the weight layers");
                    let layer = WeightLayer::new(l, b, geom, input, out, engine)?;
                    (PlanOp::Weight(Box::new(layer)), clamped)
                }
                (_, Some((geom, groups))) => {
                    // A grouped conv: one layer per group, each on its channels and its rows.
                    let l = model.layers[i]
                        .as_ref()
                        .ok_or_else(|| node_err("a weight layer without quantized weights"))?;
                    let b = bits.next().expect("check_bits counted the weight layers");
                    let og = l.out_features() / groups;
                    let parts = (0..groups)
                        .map(|g| {
                            let part = l.rows(g * og..(g + 1) * og);
                            let geom = Geom {
                                c0: g * geom.c,
                                ..geom
                            };
                            WeightLayer::new(&part, b, geom, input, out, engine)
                        })
                        .collect::<Result<Vec<_>>>()?;
                    (PlanOp::Grouped(parts), clamped)
                }
                (&Op::MaxPool { kernel, stride }, None) => {
                    (PlanOp::MaxPool { kernel, stride }, input)
                }
                (&Op::AvgPool { kernel, stride }, None) => {
                    (PlanOp::AvgPool { kernel, stride }, input)
                }
                (Op::GlobalAvgPool, None) => (PlanOp::GlobalAvgPool, input),
                (Op::Add { .. }, None) => {
                    let rq = model.adds[i]
                        .ok_or_else(|| node_err("an add without its requantization"))?;
                    (PlanOp::Add { rq, out }, clamped)
                }
                (Op::Relu, None) => (
                    PlanOp::Relu,
                    CodeRange {
                        min: input.min.max(0),
                        max: input.max.max(0),
                    },
                ),
                (Op::Flatten, None) => (PlanOp::Flatten, input),
                (Op::Dense { .. } | Op::Conv2d { .. }, None) => {
                    unreachable!("weight ops have a geometry")
                }
            };
            ranges.push(range);
            nodes.push(PlanNode {
                inputs: node.inputs.clone(),
                in_shape,
                op,
            });
        }
        let mut last_use: Vec<usize> = (0..count).collect();
        for (i, n) in nodes.iter().enumerate() {
            for s in &n.inputs {
                if let Src::Node(j) = *s {
                    last_use[j] = i;
                }
            }
        }
        Ok(CpuModel {
            input_shape: graph.input_shape,
            shapes,
            nodes,
            last_use,
        })
    }

    /// The weight layers in graph order: their bits and the kernel each runs on.
    pub fn layers(&self) -> impl Iterator<Item = &LayerInfo> {
        self.nodes.iter().filter_map(|n| match &n.op {
            PlanOp::Weight(l) => Some(&l.info),
            PlanOp::Grouped(parts) => parts.first().map(|l| &l.info),
            _ => None,
        })
    }

    /// Pixels per input image.
    pub fn input_len(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Output codes of the last node for one image: `Executor::logits`.
    pub fn infer(&self, pixels: &[u8]) -> Result<Vec<i32>> {
        let mut out = self.infer_batch(pixels, 1)?;
        Ok(out.pop().expect("one image"))
    }

    /// Output codes of the last node for each of `n` images stored back to back.
    pub fn infer_batch(&self, images: &[u8], n: usize) -> Result<Vec<Vec<i32>>> {
        let mut outs = self.run_batch(images, n, false)?;
        let last = outs.pop().flatten().expect("the output node is kept");
        Ok(split(&last, n))
    }

    /// Every node's output codes (CHW order) for one image: `Executor::run`, flattened.
    pub fn run_all(&self, pixels: &[u8]) -> Result<Vec<Vec<i32>>> {
        let outs = self.run_batch(pixels, 1, true)?;
        Ok(outs
            .into_iter()
            .map(|o| o.expect("every node is kept"))
            .collect())
    }

    fn run_batch(&self, images: &[u8], n: usize, keep_all: bool) -> Result<Vec<Option<Vec<i32>>>> {
        let len = self.input_len();
        if images.len() != n * len {
            return Err(CpuError::Input {
                what: format!("{n} image(s) of {:?}", self.input_shape),
                expected: n * len,
                found: images.len(),
            });
        }
        let input: Vec<i32> = images.iter().map(|&p| i32::from(p)).collect();
        let mut outs: Vec<Option<Vec<i32>>> = Vec::with_capacity(self.nodes.len());
        for (i, node) in self.nodes.iter().enumerate() {
            let src = |s: Src| -> &[i32] {
                match s {
                    Src::Input => &input,
                    Src::Node(j) => outs[j].as_deref().expect("kept until its last use"),
                }
            };
            let x = src(node.inputs[0]);
            let y = match &node.op {
                PlanOp::Weight(l) => l.run(x, n),
                PlanOp::Grouped(parts) => grouped(parts, x, n),
                &PlanOp::MaxPool { kernel, stride } => {
                    ops::pool(x, node.in_shape, kernel, stride, false)
                }
                &PlanOp::AvgPool { kernel, stride } => {
                    ops::pool(x, node.in_shape, kernel, stride, true)
                }
                PlanOp::GlobalAvgPool => ops::global_avg_pool(x, node.in_shape),
                PlanOp::Add { rq, out } => ops::add(x, src(node.inputs[1]), rq, *out),
                PlanOp::Relu => ops::relu(x),
                PlanOp::Flatten => x.to_vec(),
            };
            debug_assert_eq!(y.len(), n * self.shapes[i].iter().product::<usize>());
            outs.push(Some(y));
            if !keep_all {
                for s in &node.inputs {
                    if let Src::Node(j) = *s
                        && self.last_use[j] == i
                    {
                        outs[j] = None;
                    }
                }
            }
        }
        Ok(outs)
    }
}

/// Runs a grouped convolution's parts and interleaves their outputs: image by image, group g's
/// channels follow group g − 1's.
fn grouped(parts: &[WeightLayer], x: &[i32], n: usize) -> Vec<i32> {
    let outs: Vec<Vec<i32>> = parts.iter().map(|l| l.run(x, n)).collect();
    let per = outs.first().map_or(0, |o| o.len() / n.max(1));
    let mut y = Vec::with_capacity(per * parts.len() * n);
    for img in 0..n {
        for o in &outs {
            y.extend_from_slice(&o[img * per..(img + 1) * per]);
        }
    }
    y
}

fn split(v: &[i32], n: usize) -> Vec<Vec<i32>> {
    if n == 0 {
        return Vec::new();
    }
    v.chunks_exact(v.len() / n).map(<[i32]>::to_vec).collect()
}
