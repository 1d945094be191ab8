//! The network graph shared by the float model and the quantized bundle, and the f32 reference
//! forward pass. Owns shapes and operator semantics; knows nothing of quantization or hardware.
//!
//! Layouts (fixed, everywhere in caq): activations are CHW (channel-major, one image at a time);
//! dense weights are `[out, in]`; conv weights are `[out, in, kh, kw]` (OIHW). Flatten is CHW
//! order. The reduction index K of a conv is `(c * kh + ky) * kw + kx`, so a conv's K axis is
//! OIHW flattened; this order also defines local quantization regions (groups along K).

use crate::error::{ModelError, Result};
use crate::store::{self, OutTensor, TensorFile};
use ndarray::{Array1, Array2, Array3, Array4, ArrayView3, Axis};
use safetensors::Dtype;
use serde::{Deserialize, Serialize};

/// Activation shape `[channels, height, width]`; a vector is `[n, 1, 1]`.
pub type Shape3 = [usize; 3];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    Dense {
        in_features: usize,
        out_features: usize,
        relu: bool,
    },
    /// A 2-D convolution. `groups` splits the channels: output channel o reads only the
    /// `in_channels / groups` input channels of its group (o / (out_channels / groups));
    /// `groups == in_channels == out_channels` is a depthwise convolution.
    Conv2d {
        in_channels: usize,
        out_channels: usize,
        kernel: [usize; 2],
        stride: usize,
        padding: Padding,
        #[serde(default = "one", skip_serializing_if = "is_one")]
        groups: usize,
        relu: bool,
    },
    MaxPool {
        kernel: usize,
        stride: usize,
    },
    AvgPool {
        kernel: usize,
        stride: usize,
    },
    /// The mean of each channel's whole map (any height and width), rounded like AvgPool:
    /// `[c, h, w] -> [c, 1, 1]`.
    GlobalAvgPool,
    Add {
        relu: bool,
    },
    Relu,
    Flatten,
}

fn one() -> usize {
    1
}

fn is_one(v: &usize) -> bool {
    *v == 1
}

/// Zero padding of a convolution, per side. Written in a graph as one number when every side is
/// the same (`"padding": 1`), else as `[top, left, bottom, right]` (the order ONNX's `pads` uses
/// for 2-D: begins then ends) — exporters write asymmetric padding for "same" convolutions with
/// an even kernel or a stride.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Padding {
    pub top: usize,
    pub left: usize,
    pub bottom: usize,
    pub right: usize,
}

impl Padding {
    /// The same padding on every side.
    pub const fn uniform(p: usize) -> Padding {
        Padding {
            top: p,
            left: p,
            bottom: p,
            right: p,
        }
    }

    /// TensorFlow's "same" padding of a `kernel` with `stride` over an `[h, w]` map: the output
    /// is ⌈size / stride⌉ along each axis, the padding that needs is split with the smaller half
    /// before (top, left) and the larger after (ONNX `auto_pad = SAME_UPPER`).
    pub fn same([h, w]: [usize; 2], kernel: [usize; 2], stride: usize) -> Padding {
        let axis = |size: usize, k: usize| {
            let out = size.div_ceil(stride.max(1));
            let total = ((out.max(1) - 1) * stride + k).saturating_sub(size);
            [total / 2, total - total / 2]
        };
        let ([top, bottom], [left, right]) = (axis(h, kernel[0]), axis(w, kernel[1]));
        Padding {
            top,
            left,
            bottom,
            right,
        }
    }

    /// The padding when every side is the same.
    pub fn as_uniform(&self) -> Option<usize> {
        (self.top == self.left && self.top == self.bottom && self.top == self.right)
            .then_some(self.top)
    }

    /// `[before, after]` padding along height (axis 0) or width (axis 1).
    pub fn axis(&self, axis: usize) -> [usize; 2] {
        if axis == 0 {
            [self.top, self.bottom]
        } else {
            [self.left, self.right]
        }
    }
}

impl std::fmt::Display for Padding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.as_uniform() {
            Some(p) => write!(f, "{p}"),
            None => write!(
                f,
                "[{}, {}, {}, {}]",
                self.top, self.left, self.bottom, self.right
            ),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum PaddingRepr {
    Uniform(usize),
    Sides([usize; 4]),
}

impl Serialize for Padding {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.as_uniform() {
            Some(p) => PaddingRepr::Uniform(p),
            None => PaddingRepr::Sides([self.top, self.left, self.bottom, self.right]),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Padding {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(match PaddingRepr::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "padding: expected a number or [top, left, bottom, right] of non-negative integers",
            )
        })? {
            PaddingRepr::Uniform(p) => Padding::uniform(p),
            PaddingRepr::Sides([top, left, bottom, right]) => Padding {
                top,
                left,
                bottom,
                right,
            },
        })
    }
}

impl Op {
    /// True for the layers that carry weights (and so have bit-widths).
    pub fn has_weights(&self) -> bool {
        matches!(self, Op::Dense { .. } | Op::Conv2d { .. })
    }
    /// Whether the layer's output goes through ReLU.
    pub fn relu(&self) -> bool {
        match self {
            Op::Dense { relu, .. } | Op::Conv2d { relu, .. } | Op::Add { relu } => *relu,
            Op::Relu => true,
            _ => false,
        }
    }
    /// `[out, K]` of the weight matrix, with K the reduction length; and the SQuant kernel
    /// length (the spatial kernel kh*kw for conv, 1 for dense).
    pub fn weight_matrix_dims(&self) -> Option<(usize, usize, usize)> {
        match *self {
            Op::Dense {
                in_features,
                out_features,
                ..
            } => Some((out_features, in_features, 1)),
            Op::Conv2d {
                in_channels,
                out_channels,
                kernel,
                groups,
                ..
            } => Some((
                // Saturating: a hostile kernel must not wrap; validation refuses the huge K.
                // A grouped conv's K is one group's input channels times the kernel.
                out_channels,
                (in_channels / groups.max(1))
                    .saturating_mul(kernel[0])
                    .saturating_mul(kernel[1]),
                kernel[0].saturating_mul(kernel[1]),
            )),
            _ => None,
        }
    }
}

/// Where a node takes an input from: the graph input, or an earlier node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Src {
    Input,
    Node(usize),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<Src>,
}

/// A DAG in topological order; the last node is the output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Graph {
    pub input_shape: Shape3,
    pub nodes: Vec<Node>,
}

/// `(pad_before + size + pad_after − k) / stride + 1`, or `None` when the window does not fit or
/// the arithmetic would overflow (a hostile padding of 2^62 must be an error, not a wrapped size).
pub fn conv_out(
    size: usize,
    k: usize,
    stride: usize,
    [before, after]: [usize; 2],
) -> Option<usize> {
    let padded = before.checked_add(after)?.checked_add(size)?;
    if stride == 0 || k == 0 || padded < k {
        return None;
    }
    Some((padded - k) / stride + 1)
}

/// The output shape of `node` given the shapes of its inputs (in `node.inputs` order), checking
/// the operator's shape rules with overflow-checked arithmetic.
pub fn node_shape(node: &Node, ins: &[Shape3]) -> Result<Shape3> {
    let bad = |what: String| ModelError::Layer {
        layer: node.name.clone(),
        what,
    };
    let want_inputs = if matches!(node.op, Op::Add { .. }) {
        2
    } else {
        1
    };
    if ins.len() != want_inputs {
        return Err(bad(format!(
            "takes {want_inputs} input(s), has {}",
            ins.len()
        )));
    }
    let [c, h, w] = ins[0];
    Ok(match node.op {
        Op::Dense {
            in_features,
            out_features,
            ..
        } => {
            if ins[0] != [in_features, 1, 1] {
                return Err(bad(format!(
                    "dense expects input [{in_features}, 1, 1], found {:?}",
                    ins[0]
                )));
            }
            if out_features == 0 {
                return Err(bad("out_features is 0".into()));
            }
            [out_features, 1, 1]
        }
        Op::Conv2d {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            groups,
            ..
        } => {
            if c != in_channels {
                return Err(bad(format!(
                    "conv expects {in_channels} input channels, found {c}"
                )));
            }
            if groups == 0
                || !in_channels.is_multiple_of(groups)
                || !out_channels.is_multiple_of(groups)
            {
                return Err(bad(format!(
                    "conv groups = {groups} must divide in_channels ({in_channels}) and \
                     out_channels ({out_channels})"
                )));
            }
            let oh = conv_out(h, kernel[0], stride, padding.axis(0));
            let ow = conv_out(w, kernel[1], stride, padding.axis(1));
            match (oh, ow) {
                (Some(oh), Some(ow)) if out_channels > 0 => [out_channels, oh, ow],
                _ => {
                    return Err(bad(format!(
                        "conv {kernel:?} stride {stride} pad {padding} does not fit input {:?}",
                        ins[0]
                    )));
                }
            }
        }
        Op::MaxPool { kernel, stride } | Op::AvgPool { kernel, stride } => {
            match (
                conv_out(h, kernel, stride, [0, 0]),
                conv_out(w, kernel, stride, [0, 0]),
            ) {
                (Some(oh), Some(ow)) => [c, oh, ow],
                _ => {
                    return Err(bad(format!(
                        "pool {kernel} stride {stride} does not fit input {:?}",
                        ins[0]
                    )));
                }
            }
        }
        Op::GlobalAvgPool => {
            if h == 0 || w == 0 {
                return Err(bad(format!("global pool of an empty map {:?}", ins[0])));
            }
            [c, 1, 1]
        }
        Op::Add { .. } => {
            if ins[0] != ins[1] {
                return Err(bad(format!(
                    "add inputs differ in shape: {:?} vs {:?}",
                    ins[0], ins[1]
                )));
            }
            ins[0]
        }
        Op::Relu => ins[0],
        Op::Flatten => {
            let n = c
                .checked_mul(h)
                .and_then(|v| v.checked_mul(w))
                .ok_or_else(|| bad(format!("flattening {:?} overflows", ins[0])))?;
            [n, 1, 1]
        }
    })
}

impl Graph {
    /// The weight layer or add that calibrated the codes `s` reads: traced back through the nodes
    /// that pass their input's quantizer on unchanged (pooling, flatten). `None` for the network
    /// input and through a standalone ReLU (which makes its own, unsigned).
    pub fn quantizer_source(&self, mut s: Src) -> Option<usize> {
        loop {
            let Src::Node(j) = s else { return None };
            match self.nodes.get(j)?.op {
                Op::Dense { .. } | Op::Conv2d { .. } | Op::Add { .. } => return Some(j),
                Op::Relu => return None,
                _ => s = *self.nodes[j].inputs.first()?,
            }
        }
    }

    /// Per node, whether an add reads its quantizer ([`Graph::quantizer_source`] of one of an
    /// add's inputs): such nodes share one quantizer with the add's other input
    /// (docs/numerics.md, "Residual add: one quantizer for both inputs").
    pub fn add_sources(&self) -> Vec<bool> {
        let mut out = vec![false; self.nodes.len()];
        for node in self.nodes.iter().filter(|n| matches!(n.op, Op::Add { .. })) {
            for &s in &node.inputs {
                if let Some(j) = self.quantizer_source(s) {
                    out[j] = true;
                }
            }
        }
        out
    }

    /// This graph with every AvgPool whose window covers its whole input (a k×k window over a
    /// k×k map, any stride: one output pixel) replaced by GlobalAvgPool, which computes the same
    /// codes (one window of area k², [`crate::kernels::window_mean`]'s rounding); `None` when the
    /// graph has no such pool. Exporters write a network's final pool either way (Keras'
    /// `AveragePooling2D(pool_size=8)`, PyTorch's `AvgPool2d(8)`, or a global pool); a backend
    /// that runs global pools its own way takes both through this.
    pub fn with_global_pools(&self) -> Result<Option<Graph>> {
        let shapes = self.shapes()?;
        let mut out: Option<Graph> = None;
        for (i, node) in self.nodes.iter().enumerate() {
            let Op::AvgPool { kernel, .. } = node.op else {
                continue;
            };
            let [_, h, w] = match node.inputs.first() {
                Some(Src::Node(j)) => shapes[*j],
                _ => self.input_shape,
            };
            if h == kernel && w == kernel {
                out.get_or_insert_with(|| self.clone()).nodes[i].op = Op::GlobalAvgPool;
            }
        }
        Ok(out)
    }

    /// Output shape of every node, checking every operator's shape rules.
    pub fn shapes(&self) -> Result<Vec<Shape3>> {
        let mut out: Vec<Shape3> = Vec::with_capacity(self.nodes.len());
        if self.nodes.is_empty() {
            return Err(ModelError::arg("graph", "has no nodes"));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let mut ins = Vec::with_capacity(node.inputs.len());
            for src in &node.inputs {
                ins.push(match *src {
                    Src::Input => self.input_shape,
                    Src::Node(j) if j < i => out[j],
                    Src::Node(j) => {
                        return Err(ModelError::Layer {
                            layer: node.name.clone(),
                            what: format!(
                                "input node {j} is not an earlier node (graph must be in topological order)"
                            ),
                        });
                    }
                });
            }
            out.push(node_shape(node, &ins)?);
        }
        Ok(out)
    }

    /// Output shape of the graph.
    pub fn output_shape(&self) -> Result<Shape3> {
        Ok(*self
            .shapes()?
            .last()
            .expect("shapes() rejects an empty graph"))
    }

    /// Indices of the nodes that carry weights, in order.
    pub fn weight_layers(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].op.has_weights())
            .collect()
    }
}

/// Float parameters of one weight layer. `weight` is `[out, K]` with K in the order of the
/// module doc (a conv's OIHW weight reshaped to `[out, in*kh*kw]`).
#[derive(Clone, Debug, PartialEq)]
pub struct FloatParams {
    pub weight: Array2<f32>,
    pub bias: Array1<f32>,
}

/// A trained float network: the graph and the parameters of each weight layer (indexed like
/// `graph.nodes`; `None` for layers without weights).
#[derive(Clone, Debug, PartialEq)]
pub struct FloatModel {
    pub graph: Graph,
    pub params: Vec<Option<FloatParams>>,
}

impl FloatModel {
    /// Checks that every weight layer has parameters of its declared shape.
    pub fn validate(&self) -> Result<()> {
        self.graph.shapes()?;
        if self.params.len() != self.graph.nodes.len() {
            return Err(ModelError::arg(
                "params",
                format!(
                    "{} entries for {} nodes",
                    self.params.len(),
                    self.graph.nodes.len()
                ),
            ));
        }
        for (node, p) in self.graph.nodes.iter().zip(&self.params) {
            match (node.op.weight_matrix_dims(), p) {
                (None, None) => {}
                (Some((o, k, _)), Some(p)) => {
                    if p.weight.dim() != (o, k) || p.bias.len() != o {
                        return Err(ModelError::Layer {
                            layer: node.name.clone(),
                            what: format!(
                                "weight {:?} / bias {} do not match [{o}, {k}] / {o}",
                                p.weight.dim(),
                                p.bias.len()
                            ),
                        });
                    }
                }
                (Some(_), None) => {
                    return Err(ModelError::Layer {
                        layer: node.name.clone(),
                        what: "has no parameters".into(),
                    });
                }
                (None, Some(_)) => {
                    return Err(ModelError::Layer {
                        layer: node.name.clone(),
                        what: "takes no parameters but has some".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Weights and biases, summed over the weight layers.
    pub fn param_count(&self) -> usize {
        self.params
            .iter()
            .flatten()
            .map(|p| p.weight.len() + p.bias.len())
            .sum()
    }

    /// f32 forward pass of one image; returns every node's output (the last is the logits).
    pub fn forward_all(&self, x: ArrayView3<f32>) -> Vec<Array3<f32>> {
        let mut outs: Vec<Array3<f32>> = Vec::with_capacity(self.graph.nodes.len());
        for (i, node) in self.graph.nodes.iter().enumerate() {
            let input = |s: Src| -> ArrayView3<f32> {
                match s {
                    Src::Input => x.view(),
                    Src::Node(j) => outs[j].view(),
                }
            };
            let a = input(node.inputs[0]);
            let mut y = match node.op {
                Op::Dense { .. } => {
                    let p = self.params[i].as_ref().expect("validated");
                    let v = a.iter().copied().collect::<Array1<f32>>();
                    let y = p.weight.dot(&v) + &p.bias;
                    let n = y.len();
                    y.into_shape_with_order((n, 1, 1)).expect("vector")
                }
                Op::Conv2d {
                    out_channels,
                    kernel,
                    stride,
                    padding,
                    groups,
                    ..
                } => {
                    let p = self.params[i].as_ref().expect("validated");
                    let geom = FloatConv {
                        out_c: out_channels,
                        kernel,
                        stride,
                        pad: padding,
                        groups,
                    };
                    conv2d_f32(a, &p.weight, &p.bias, geom)
                }
                Op::MaxPool { kernel, stride } => pool_f32(a, kernel, stride, true),
                Op::AvgPool { kernel, stride } => pool_f32(a, kernel, stride, false),
                Op::GlobalAvgPool => {
                    let (c, h, w) = a.dim();
                    Array3::from_shape_fn((c, 1, 1), |(ci, _, _)| {
                        a.index_axis(Axis(0), ci).sum() / (h * w) as f32
                    })
                }
                Op::Add { .. } => &a + &input(node.inputs[1]),
                Op::Relu => a.to_owned(),
                Op::Flatten => {
                    let n = a.len();
                    a.iter()
                        .copied()
                        .collect::<Array1<f32>>()
                        .into_shape_with_order((n, 1, 1))
                        .expect("vector")
                }
            };
            if node.op.relu() {
                y.mapv_inplace(|v| v.max(0.0));
            }
            outs.push(y);
        }
        outs
    }

    /// f32 logits of one image.
    pub fn forward(&self, x: ArrayView3<f32>) -> Array1<f32> {
        let out = self.forward_all(x).pop().expect("non-empty graph");
        out.iter().copied().collect()
    }
}

/// The float model file: schema version of its JSON document.
/// Version 2 added the header checksum (`store`).
pub const FLOAT_SCHEMA_VERSION: u32 = 2;
const FLOAT_KIND: &str = "caq.float_model";

impl FloatModel {
    /// Writes the model atomically: safetensors with `{layer}.weight` (`[out, K]`) and
    /// `{layer}.bias`, and the graph as JSON in the header.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        self.validate()?;
        let doc = serde_json::json!({
            "kind": FLOAT_KIND,
            "schema_version": FLOAT_SCHEMA_VERSION,
            "graph": self.graph,
        });
        let mut tensors = Vec::new();
        for (node, p) in self.graph.nodes.iter().zip(&self.params) {
            if let Some(p) = p {
                let (o, k) = p.weight.dim();
                let w: Vec<f32> = p.weight.iter().copied().collect();
                tensors.push(OutTensor::f32s(
                    format!("{}.weight", node.name),
                    vec![o, k],
                    &w,
                ));
                tensors.push(OutTensor::f32s(
                    format!("{}.bias", node.name),
                    vec![o],
                    p.bias.as_slice().expect("contiguous"),
                ));
            }
        }
        store::write_atomic(path, &doc, &tensors)
    }

    /// Reads a model written by [`FloatModel::save`], checking version, shapes and checksums.
    pub fn load(path: &std::path::Path) -> Result<FloatModel> {
        let f = TensorFile::open(path)?;
        store::check_version(
            path,
            f.doc(),
            FLOAT_KIND,
            FLOAT_SCHEMA_VERSION,
            FLOAT_SCHEMA_VERSION,
        )?;
        let graph: Graph = serde_json::from_value(f.doc()["graph"].clone())
            .map_err(|e| ModelError::format(path, format!("graph: {e}")))?;
        let limits = crate::validate::Limits::for_this_machine();
        crate::validate::graph(&graph, &limits)
            .map_err(|e| ModelError::format(path, e.to_string()))?;
        let expected: Vec<_> = graph
            .nodes
            .iter()
            .filter_map(|n| n.op.weight_matrix_dims().map(|d| (n, d)))
            .flat_map(|(n, (o, k, _))| {
                [
                    (format!("{}.weight", n.name), Dtype::F32, vec![o, k]),
                    (format!("{}.bias", n.name), Dtype::F32, vec![o]),
                ]
            })
            .collect();
        f.expect_tensors(&expected)?;
        let mut params = Vec::with_capacity(graph.nodes.len());
        for node in &graph.nodes {
            params.push(match node.op.weight_matrix_dims() {
                None => None,
                Some((o, k, _)) => {
                    let w = f.f32s(&format!("{}.weight", node.name), &[o, k])?;
                    let b = f.f32s(&format!("{}.bias", node.name), &[o])?;
                    Some(FloatParams {
                        weight: Array2::from_shape_vec((o, k), w).expect("length checked"),
                        bias: Array1::from(b),
                    })
                }
            });
        }
        let m = FloatModel { graph, params };
        crate::validate::float_model(&m, &limits)
            .map_err(|e| ModelError::format(path, e.to_string()))?;
        Ok(m)
    }
}

/// The geometry of a float convolution.
#[derive(Clone, Copy, Debug)]
pub struct FloatConv {
    pub out_c: usize,
    pub kernel: [usize; 2],
    pub stride: usize,
    pub pad: Padding,
    pub groups: usize,
}

/// Float conv2d, zero padding; `w` is `[out, (in/groups)*kh*kw]`.
pub fn conv2d_f32(
    x: ArrayView3<f32>,
    w: &Array2<f32>,
    bias: &Array1<f32>,
    g: FloatConv,
) -> Array3<f32> {
    let (c, h, wd) = x.dim();
    let [kh, kw] = g.kernel;
    let (stride, out_c) = (g.stride, g.out_c);
    let oh = conv_out(h, kh, stride, g.pad.axis(0)).expect("shape checked by validate()");
    let ow = conv_out(wd, kw, stride, g.pad.axis(1)).expect("shape checked by validate()");
    let cg = c / g.groups;
    let og = out_c / g.groups;
    let w4: Array4<f32> = w
        .to_owned()
        .into_shape_with_order((out_c, cg, kh, kw))
        .expect("weight shape checked by validate()");
    let mut y = Array3::<f32>::zeros((out_c, oh, ow));
    for o in 0..out_c {
        let c0 = (o / og) * cg;
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = bias[o];
                for ci in 0..cg {
                    for ky in 0..kh {
                        let iy = (oy * stride + ky) as isize - g.pad.top as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kx in 0..kw {
                            let ix = (ox * stride + kx) as isize - g.pad.left as isize;
                            if ix < 0 || ix >= wd as isize {
                                continue;
                            }
                            acc += w4[[o, ci, ky, kx]] * x[[c0 + ci, iy as usize, ix as usize]];
                        }
                    }
                }
                y[[o, oy, ox]] = acc;
            }
        }
    }
    y
}

fn pool_f32(x: ArrayView3<f32>, k: usize, stride: usize, max: bool) -> Array3<f32> {
    let (c, h, w) = x.dim();
    let oh = (h - k) / stride + 1;
    let ow = (w - k) / stride + 1;
    let mut y = Array3::<f32>::zeros((c, oh, ow));
    for (ci, plane) in x.axis_iter(Axis(0)).enumerate() {
        for oy in 0..oh {
            for ox in 0..ow {
                let win = plane.slice(ndarray::s![
                    oy * stride..oy * stride + k,
                    ox * stride..ox * stride + k
                ]);
                y[[ci, oy, ox]] = if max {
                    win.iter().copied().fold(f32::NEG_INFINITY, f32::max)
                } else {
                    win.sum() / (k * k) as f32
                };
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lenet_graph() -> Graph {
        Graph {
            input_shape: [1, 28, 28],
            nodes: vec![
                Node {
                    name: "conv1".into(),
                    op: Op::Conv2d {
                        in_channels: 1,
                        out_channels: 4,
                        kernel: [5, 5],
                        stride: 1,
                        padding: Padding::uniform(0),
                        groups: 1,
                        relu: true,
                    },
                    inputs: vec![Src::Input],
                },
                Node {
                    name: "pool1".into(),
                    op: Op::MaxPool {
                        kernel: 2,
                        stride: 2,
                    },
                    inputs: vec![Src::Node(0)],
                },
                Node {
                    name: "flat".into(),
                    op: Op::Flatten,
                    inputs: vec![Src::Node(1)],
                },
                Node {
                    name: "fc".into(),
                    op: Op::Dense {
                        in_features: 4 * 12 * 12,
                        out_features: 10,
                        relu: false,
                    },
                    inputs: vec![Src::Node(2)],
                },
            ],
        }
    }

    #[test]
    fn shapes_follow_conv_pool_flatten_rules() {
        let s = lenet_graph().shapes().unwrap();
        assert_eq!(s, vec![[4, 24, 24], [4, 12, 12], [576, 1, 1], [10, 1, 1]]);
    }

    #[test]
    fn dense_with_wrong_input_is_rejected_naming_the_layer() {
        let mut g = lenet_graph();
        g.nodes[3].op = Op::Dense {
            in_features: 100,
            out_features: 10,
            relu: false,
        };
        let e = g.shapes().unwrap_err().to_string();
        assert!(e.contains("fc") && e.contains("[100, 1, 1]"), "{e}");
    }

    #[test]
    fn forward_reference_is_not_topologically_sorted_error() {
        let mut g = lenet_graph();
        g.nodes[0].inputs = vec![Src::Node(2)];
        assert!(g.shapes().is_err());
    }

    #[test]
    fn an_avg_pool_over_its_whole_map_becomes_a_global_pool_that_computes_the_same_codes() {
        // conv1's 4x24x24 average-pooled by 2 to 12x12 (not its whole map: it stays), then
        // AvgPool 12 stride 12 over that 12x12 map (the whole map: it becomes global).
        let mut g = lenet_graph();
        g.nodes[1].op = Op::AvgPool {
            kernel: 2,
            stride: 2,
        };
        g.nodes.insert(
            2,
            Node {
                name: "tail".into(),
                op: Op::AvgPool {
                    kernel: 12,
                    stride: 12,
                },
                inputs: vec![Src::Node(1)],
            },
        );
        g.nodes[3].inputs = vec![Src::Node(2)];
        g.nodes[4].op = Op::Dense {
            in_features: 4,
            out_features: 10,
            relu: false,
        };
        let canon = g
            .with_global_pools()
            .unwrap()
            .expect("one pool covers its map");
        let ops: Vec<&Op> = canon.nodes.iter().map(|n| &n.op).collect();
        assert_eq!(ops[1], &g.nodes[1].op, "a 2x2 pool over 24x24 stays");
        assert_eq!(ops[2], &Op::GlobalAvgPool);
        assert_eq!(canon.shapes().unwrap(), g.shapes().unwrap());
        // The same codes, signed and unsigned, at the rounding's ties too.
        use rand::{Rng, SeedableRng};
        let seed = 41;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for k in 1..=9usize {
            let x = Array3::from_shape_fn((3, k, k), |_| rng.random_range(-128..=127));
            assert_eq!(
                crate::kernels::avg_pool(x.view(), k, k).unwrap(),
                crate::kernels::global_avg_pool(x.view()).unwrap(),
                "seed {seed}, k {k}"
            );
        }
        assert_eq!(lenet_graph().with_global_pools().unwrap(), None);
    }

    #[test]
    fn graph_json_round_trips() {
        let g = lenet_graph();
        let s = serde_json::to_string(&g).unwrap();
        let back: Graph = serde_json::from_str(&s).unwrap();
        assert_eq!(g, back);
    }

    #[test]
    fn conv2d_f32_matches_hand_computed_values() {
        // 1x3x3 input, one 2x2 kernel of ones, stride 1, pad 1 -> 4x4 output of window sums.
        let x = Array3::from_shape_vec((1, 3, 3), (1..=9).map(|v| v as f32).collect()).unwrap();
        let w = Array2::from_elem((1, 4), 1.0f32);
        let b = Array1::from_elem(1, 0.5f32);
        let geom = FloatConv {
            out_c: 1,
            kernel: [2, 2],
            stride: 1,
            pad: Padding::uniform(1),
            groups: 1,
        };
        let y = conv2d_f32(x.view(), &w, &b, geom);
        assert_eq!(y.dim(), (1, 4, 4));
        assert_eq!(y[[0, 0, 0]], 1.5);
        assert_eq!(y[[0, 1, 1]], 1.0 + 2.0 + 4.0 + 5.0 + 0.5);
        assert_eq!(y[[0, 3, 3]], 9.5);
    }
}
