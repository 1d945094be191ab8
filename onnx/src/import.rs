//! ONNX → caq float model. Owns the mapping of ONNX operators and attributes onto caq's graph
//! (`caq_model::graph`), the folds (BatchNormalization and a bias Add into the weights, Relu into
//! the layer before it) and the errors for what caq cannot express. Knows nothing of
//! quantization, and never panics on malformed input: every size read from the file is checked
//! before it is used.
//!
//! ONNX tensors carry a batch axis that caq does not: an ONNX activation `[N, C, H, W]` is caq's
//! `[C, H, W]` and `[N, F]` is caq's `[F, 1, 1]`, with N = 1 (or symbolic). The importer tracks
//! the ONNX rank (2 or 4) of every activation beside its caq shape, so that Gemm, Conv and the
//! pools can check they see the rank ONNX gives them.

use crate::error::{OnnxError, Result};
use crate::proto::{
    AttributeProto, DATA_LOCATION_EXTERNAL, GraphProto, ModelProto, NodeProto, TensorProto,
    ValueInfoProto, attribute_type, data_type, tensor_shape_proto::dimension, type_proto,
};
use caq_model::graph::{
    FloatModel, FloatParams, Graph, Node, Op, Padding, Shape3, Src, node_shape,
};
use ndarray::{Array1, Array2};
use prost::Message;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Oldest `ai.onnx` opset imported: opset 7 is the first with today's BatchNormalization (no
/// `spatial=0`, no `is_test`) and Dropout-as-identity; Reshape takes its shape as an input
/// since opset 5.
pub const MIN_OPSET: i64 = 7;
/// Newest `ai.onnx` opset imported: opset 22 is the newest of ONNX 1.17, the version the tests
/// build models with. None of the imported operators changed meaning between 7 and 22 in ways
/// the importer does not check (Reshape's `allowzero`, BatchNormalization's `training_mode`,
/// AveragePool's `dilations` are all read).
pub const MAX_OPSET: i64 = 22;

/// Largest input accepted, in values per image (C·H·W): far beyond any model caq runs, and small
/// enough that no size derived from it overflows.
pub const MAX_INPUT_VALUES: usize = 1 << 28;

/// The ONNX operators caq imports, in the order the unsupported-operator error lists them.
pub const SUPPORTED_OPS: &[&str] = &[
    "Gemm",
    "MatMul",
    "Conv",
    "Relu",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Add",
    "BatchNormalization",
    "Flatten",
    "Reshape",
    "Identity",
    "Dropout",
    "Constant",
];

/// What became of one ONNX node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A new caq node.
    Node,
    /// Folded into an earlier caq node (its weights, bias or ReLU flag).
    Folded,
    /// No caq node: Identity, Dropout, Constant, a Reshape that keeps the shape.
    Skipped,
}

/// One row of the import table: an ONNX node and what it became in caq.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeMapping {
    /// `'name'`, or `#index` for an unnamed node.
    pub onnx_node: String,
    pub op_type: String,
    pub action: Action,
    /// The caq node created or folded into.
    pub caq_node: Option<String>,
    /// What was done, e.g. `Dense 64→10`, `BatchNormalization into weights and bias`.
    pub detail: String,
}

/// What an import read and did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ImportReport {
    pub ir_version: i64,
    /// The `ai.onnx` opset the model imports.
    pub opset: i64,
    pub producer: String,
    pub input: String,
    /// caq's input shape `[C, H, W]`.
    pub input_shape: Shape3,
    pub output: String,
    pub nodes: Vec<NodeMapping>,
}

/// Reads an ONNX file into a caq float model.
pub fn import(path: &Path) -> Result<FloatModel> {
    Ok(import_with_report(path)?.0)
}

/// Reads an ONNX file; also returns what became of each ONNX node.
pub fn import_with_report(path: &Path) -> Result<(FloatModel, ImportReport)> {
    let bytes = caq_spec::fsio::read_regular(path).map_err(|source| OnnxError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    import_bytes_with_report(&bytes)
}

/// Decodes ONNX protobuf bytes into a caq float model.
pub fn import_bytes(bytes: &[u8]) -> Result<FloatModel> {
    Ok(import_bytes_with_report(bytes)?.0)
}

/// Decodes ONNX protobuf bytes; also returns what became of each ONNX node.
pub fn import_bytes_with_report(bytes: &[u8]) -> Result<(FloatModel, ImportReport)> {
    let model = ModelProto::decode(bytes)?;
    let opset = check_opset(&model)?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| OnnxError::model("the model has no graph"))?;
    let mut b = Builder::new(graph)?;
    for (index, node) in graph.node.iter().enumerate() {
        let ctx = Ctx::new(node, index);
        let mapping = b.node(&ctx, node, index)?;
        b.report.push(NodeMapping {
            onnx_node: ctx.node.clone(),
            op_type: node.op_type.clone(),
            action: mapping.0,
            caq_node: mapping.1,
            detail: mapping.2,
        });
    }
    let (fm, output) = b.finish(graph)?;
    let report = ImportReport {
        ir_version: model.ir_version,
        opset,
        producer: format!("{} {}", model.producer_name, model.producer_version)
            .trim()
            .to_string(),
        input: b.input_name,
        input_shape: fm.graph.input_shape,
        output,
        nodes: b.report,
    };
    Ok((fm, report))
}

fn check_opset(model: &ModelProto) -> Result<i64> {
    let version = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| {
            OnnxError::model(
                "the model imports no ai.onnx operator set (opset_import has no entry for domain \
                 \"\"); is this an ONNX model?",
            )
        })?;
    if !(MIN_OPSET..=MAX_OPSET).contains(&version) {
        return Err(OnnxError::model(format!(
            "ai.onnx opset {version} is not supported; caq imports opsets \
             {MIN_OPSET}..={MAX_OPSET}"
        )));
    }
    Ok(version)
}

/// The node an error is about: its name, or its index when unnamed.
struct Ctx {
    node: String,
    op_type: String,
}

impl Ctx {
    fn new(node: &NodeProto, index: usize) -> Ctx {
        Ctx {
            node: if node.name.is_empty() {
                format!("#{index}")
            } else {
                format!("'{}'", node.name)
            },
            op_type: node.op_type.clone(),
        }
    }
    fn err(&self, what: impl Into<String>) -> OnnxError {
        OnnxError::Node {
            node: self.node.clone(),
            op_type: self.op_type.clone(),
            what: what.into(),
        }
    }
}

/// An activation: where caq computes it, its ONNX rank (2 or 4), its caq shape, and whether
/// exactly one consumer reads it (and every value it aliases), so folding into its producer
/// changes no other reader.
#[derive(Clone, Debug)]
struct Act {
    src: Src,
    rank: usize,
    shape: Shape3,
    exclusive: bool,
}

#[derive(Clone, Debug)]
enum ConstData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A constant: an initializer or the value of a Constant node.
#[derive(Clone, Debug)]
struct Const {
    dims: Vec<usize>,
    data: ConstData,
}

impl Const {
    /// True when every axis but the last is 1 (`[n]`, `[1, n]`): a per-feature vector.
    fn is_row(&self) -> bool {
        self.dims.iter().rev().skip(1).all(|&d| d == 1)
    }
    /// True for `[c, 1, 1]` and `[1, c, 1, 1]`: a per-channel vector of an NCHW activation.
    fn is_channel_vector(&self) -> bool {
        matches!(self.dims.as_slice(), [_, 1, 1] | [1, _, 1, 1])
    }
}

#[derive(Clone, Debug)]
enum Value {
    Act(Act),
    Const(Const),
}

fn decode_tensor(t: &TensorProto) -> std::result::Result<Const, String> {
    if t.data_location == DATA_LOCATION_EXTERNAL {
        return Err(
            "is stored as external data, which caq does not read; save the model with its \
             tensors inside the .onnx file"
                .into(),
        );
    }
    let mut dims = Vec::with_capacity(t.dims.len());
    let mut n: usize = 1;
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| format!("has a negative dimension {d}"))?;
        n = n
            .checked_mul(d)
            .ok_or_else(|| format!("dims {:?} overflow the element count", t.dims))?;
        dims.push(d);
    }
    let raw_len = |width: usize| -> std::result::Result<(), String> {
        match n.checked_mul(width) {
            Some(len) if len == t.raw_data.len() => Ok(()),
            _ => Err(format!(
                "raw_data holds {} bytes, dims {:?} need {n} elements of {width} bytes",
                t.raw_data.len(),
                t.dims
            )),
        }
    };
    let data = match t.data_type {
        data_type::FLOAT if !t.raw_data.is_empty() => {
            raw_len(4)?;
            ConstData::F32(
                t.raw_data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            )
        }
        data_type::FLOAT => {
            if t.float_data.len() != n {
                return Err(format!(
                    "float_data holds {} values, dims {:?} need {n}",
                    t.float_data.len(),
                    t.dims
                ));
            }
            ConstData::F32(t.float_data.clone())
        }
        data_type::INT64 if !t.raw_data.is_empty() => {
            raw_len(8)?;
            ConstData::I64(
                t.raw_data
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                    .collect(),
            )
        }
        data_type::INT64 => {
            if t.int64_data.len() != n {
                return Err(format!(
                    "int64_data holds {} values, dims {:?} need {n}",
                    t.int64_data.len(),
                    t.dims
                ));
            }
            ConstData::I64(t.int64_data.clone())
        }
        other => {
            return Err(format!(
                "has data type {other}; caq reads FLOAT (1) weights and INT64 (7) shapes"
            ));
        }
    };
    Ok(Const { dims, data })
}

/// A node's attributes, read with their declared type checked and unknown names refused.
struct Attrs<'a> {
    ctx: &'a Ctx,
    list: &'a [AttributeProto],
}

impl<'a> Attrs<'a> {
    fn new(ctx: &'a Ctx, node: &'a NodeProto, known: &[&str]) -> Result<Attrs<'a>> {
        for a in &node.attribute {
            if !known.contains(&a.name.as_str()) {
                return Err(ctx.err(format!(
                    "attribute '{}' is not supported (caq reads {})",
                    a.name,
                    if known.is_empty() {
                        "none for this operator".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            }
            if !a.ref_attr_name.is_empty() {
                return Err(ctx.err(format!(
                    "attribute '{}' refers to a function attribute, which caq does not import",
                    a.name
                )));
            }
        }
        Ok(Attrs {
            ctx,
            list: &node.attribute,
        })
    }
    fn get(&self, name: &str, want: i32, type_name: &str) -> Result<Option<&'a AttributeProto>> {
        match self.list.iter().find(|a| a.name == name) {
            None => Ok(None),
            Some(a) if a.r#type == want => Ok(Some(a)),
            Some(a) => Err(self.ctx.err(format!(
                "attribute '{name}' must be of type {type_name}, found type {}",
                a.r#type
            ))),
        }
    }
    fn int(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self
            .get(name, attribute_type::INT, "INT")?
            .map_or(default, |a| a.i.unwrap_or(0)))
    }
    fn float(&self, name: &str, default: f32) -> Result<f32> {
        Ok(self
            .get(name, attribute_type::FLOAT, "FLOAT")?
            .map_or(default, |a| a.f.unwrap_or(0.0)))
    }
    fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        Ok(self
            .get(name, attribute_type::INTS, "INTS")?
            .map(|a| a.ints.clone()))
    }
    fn string(&self, name: &str, default: &str) -> Result<String> {
        Ok(self
            .get(name, attribute_type::STRING, "STRING")?
            .map_or(default.to_string(), |a| {
                String::from_utf8_lossy(a.s.as_deref().unwrap_or_default()).into_owned()
            }))
    }
    fn tensor(&self, name: &str) -> Result<Option<&'a TensorProto>> {
        Ok(self
            .get(name, attribute_type::TENSOR, "TENSOR")?
            .and_then(|a| a.t.as_ref()))
    }
}

/// `[a, a]` → `a`; anything else is an error saying caq takes one value for both axes.
fn square(ctx: &Ctx, what: &str, v: &[i64], default: i64) -> Result<usize> {
    let a = match v {
        [] => default,
        [a, b] if a == b => *a,
        _ => {
            return Err(ctx.err(format!(
                "{what} {v:?} differ or are not 2-D; caq takes one value for both spatial axes"
            )));
        }
    };
    usize::try_from(a)
        .ok()
        .filter(|&a| a > 0)
        .ok_or_else(|| ctx.err(format!("{what} {v:?} must be positive")))
}

/// Dilations must be absent or all 1.
fn no_dilation(ctx: &Ctx, attrs: &Attrs) -> Result<()> {
    if let Some(d) = attrs.ints("dilations")?
        && d.iter().any(|&d| d != 1)
    {
        return Err(ctx.err(format!(
            "dilations {d:?} are not supported; caq kernels are dense (dilations 1)"
        )));
    }
    Ok(())
}

/// Result of one node: what it became, which caq node, and a detail line.
type Mapped = (Action, Option<String>, String);

struct Builder {
    input_shape: Shape3,
    input_name: String,
    nodes: Vec<Node>,
    /// The output shape of every node in `nodes` (folds never change a shape).
    shapes: Vec<Shape3>,
    params: Vec<Option<FloatParams>>,
    values: HashMap<String, Value>,
    consumers: HashMap<String, usize>,
    names: HashSet<String>,
    /// Per base name, the next suffix to try, so making names unique stays linear.
    next_suffix: HashMap<String, usize>,
    report: Vec<NodeMapping>,
}

fn input_value(graph: &GraphProto, inits: &HashSet<&str>) -> Result<(String, usize, Shape3)> {
    let inputs: Vec<&ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !inits.contains(i.name.as_str()))
        .collect();
    let input = match inputs.as_slice() {
        [one] => *one,
        _ => {
            return Err(OnnxError::model(format!(
                "caq models take one input tensor; the graph has {} ({:?})",
                inputs.len(),
                inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>()
            )));
        }
    };
    let bad = |what: String| OnnxError::model(format!("graph input '{}': {what}", input.name));
    let tensor = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t,
        None => return Err(bad("is not a tensor (or has no type)".into())),
    };
    if tensor.elem_type != data_type::FLOAT {
        return Err(bad(format!(
            "element type {} is not FLOAT (1)",
            tensor.elem_type
        )));
    }
    let dims: Vec<Option<i64>> = tensor
        .shape
        .as_ref()
        .ok_or_else(|| bad("has no shape".into()))?
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(dimension::Value::DimValue(v)) => Some(*v),
            _ => None,
        })
        .collect();
    let shown: Vec<String> = dims
        .iter()
        .map(|d| d.map_or("?".into(), |v| v.to_string()))
        .collect();
    let expect = || {
        bad(format!(
            "shape [{}]; caq takes [N, C, H, W] or [N, F] with N = 1 or symbolic and the other \
             sizes fixed and positive",
            shown.join(", ")
        ))
    };
    let fixed = |d: &Option<i64>| -> Result<usize> {
        d.and_then(|v| usize::try_from(v).ok())
            .filter(|&v| v > 0)
            .ok_or_else(expect)
    };
    if !matches!(dims.first(), Some(None) | Some(Some(1))) {
        return Err(expect());
    }
    let (rank, shape) = match dims.as_slice() {
        [_, c, h, w] => (4, [fixed(c)?, fixed(h)?, fixed(w)?]),
        [_, f] => (2, [fixed(f)?, 1, 1]),
        _ => return Err(expect()),
    };
    let [c, h, w] = shape;
    if c.checked_mul(h)
        .and_then(|v| v.checked_mul(w))
        .is_none_or(|n| n > MAX_INPUT_VALUES)
    {
        return Err(bad(format!(
            "shape [{}] exceeds {MAX_INPUT_VALUES} values per image",
            shown.join(", ")
        )));
    }
    Ok((input.name.clone(), rank, shape))
}

impl Builder {
    fn new(graph: &GraphProto) -> Result<Builder> {
        let mut values = HashMap::new();
        for (i, t) in graph.initializer.iter().enumerate() {
            if t.name.is_empty() {
                return Err(OnnxError::model(format!("initializer #{i} has no name")));
            }
            let c = decode_tensor(t)
                .map_err(|e| OnnxError::model(format!("initializer '{}' {e}", t.name)))?;
            if values.insert(t.name.clone(), Value::Const(c)).is_some() {
                return Err(OnnxError::model(format!(
                    "initializer '{}' is defined twice",
                    t.name
                )));
            }
        }
        let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let (input_name, rank, input_shape) = input_value(graph, &inits)?;
        let mut consumers: HashMap<String, usize> = HashMap::new();
        let uses = graph
            .node
            .iter()
            .flat_map(|n| n.input.iter())
            .chain(graph.output.iter().map(|o| &o.name));
        for name in uses.filter(|n| !n.is_empty()) {
            *consumers.entry(name.clone()).or_default() += 1;
        }
        let exclusive = consumers.get(&input_name) == Some(&1);
        values.insert(
            input_name.clone(),
            Value::Act(Act {
                src: Src::Input,
                rank,
                shape: input_shape,
                exclusive,
            }),
        );
        Ok(Builder {
            input_shape,
            input_name,
            nodes: Vec::new(),
            params: Vec::new(),
            values,
            consumers,
            names: HashSet::new(),
            next_suffix: HashMap::new(),
            shapes: Vec::new(),
            report: Vec::new(),
        })
    }

    fn value(&self, ctx: &Ctx, node: &NodeProto, idx: usize) -> Result<Option<Value>> {
        let name = match node.input.get(idx) {
            Some(n) if !n.is_empty() => n,
            _ => return Ok(None),
        };
        match self.values.get(name) {
            Some(v) => Ok(Some(v.clone())),
            None => Err(ctx.err(format!(
                "input {idx} '{name}' is neither the graph input, an initializer nor the \
                 output of an earlier node"
            ))),
        }
    }

    fn act(&self, ctx: &Ctx, node: &NodeProto, idx: usize) -> Result<Act> {
        match self.value(ctx, node, idx)? {
            Some(Value::Act(a)) => Ok(a),
            Some(Value::Const(_)) => Err(ctx.err(format!(
                "input {idx} '{}' must be an activation, found a constant",
                node.input[idx]
            ))),
            None => Err(ctx.err(format!("input {idx} (an activation) is missing"))),
        }
    }

    fn konst(&self, ctx: &Ctx, node: &NodeProto, idx: usize) -> Result<Option<Const>> {
        match self.value(ctx, node, idx)? {
            Some(Value::Const(c)) => Ok(Some(c)),
            Some(Value::Act(_)) => Err(ctx.err(format!(
                "input {idx} '{}' must be an initializer or a Constant (caq takes weights as \
                 constants), found an activation",
                node.input[idx]
            ))),
            None => Ok(None),
        }
    }

    fn weights(&self, ctx: &Ctx, node: &NodeProto, idx: usize, what: &str) -> Result<Const> {
        self.konst(ctx, node, idx)?
            .ok_or_else(|| ctx.err(format!("input {idx} ({what}) is missing")))
    }

    fn f32s(ctx: &Ctx, c: &Const, what: &str) -> Result<Vec<f32>> {
        match &c.data {
            ConstData::F32(v) => Ok(v.clone()),
            ConstData::I64(_) => Err(ctx.err(format!("{what} must be FLOAT, found INT64"))),
        }
    }

    fn arity(ctx: &Ctx, node: &NodeProto, inputs: std::ops::RangeInclusive<usize>) -> Result<()> {
        let n = node.input.len();
        if !inputs.contains(&n) {
            return Err(ctx.err(format!(
                "has {n} inputs, expected {}..={}",
                inputs.start(),
                inputs.end()
            )));
        }
        if node.output.first().is_none_or(|o| o.is_empty()) {
            return Err(ctx.err("has no output"));
        }
        Ok(())
    }

    fn rank(ctx: &Ctx, a: &Act, want: usize, what: &str) -> Result<()> {
        if a.rank != want {
            return Err(ctx.err(format!(
                "{what} must be a rank-{want} tensor, found rank {} (caq shape {:?})",
                a.rank, a.shape
            )));
        }
        Ok(())
    }

    /// A caq node name for an ONNX node: its name, or op type and index, with every character
    /// outside caq's node-name rule (`caq_model::validate::NODE_NAME_RULE`) replaced by '_' and
    /// cut to 100 characters; made unique with a suffix.
    fn caq_name(&mut self, node: &NodeProto, index: usize) -> String {
        let raw = if node.name.is_empty() {
            format!("{}{index}", node.op_type.to_lowercase())
        } else {
            node.name.clone()
        };
        let mut base: String = raw
            .chars()
            .take(100)
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_./:".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if base.is_empty() {
            base = format!("node{index}");
        }
        let mut name = base.clone();
        let k = self.next_suffix.entry(base.clone()).or_insert(1);
        while self.names.contains(&name) {
            name = format!("{base}_{k}");
            *k += 1;
        }
        self.names.insert(name.clone());
        name
    }

    /// Appends a caq node and checks it against caq's shape rules; returns its output shape.
    fn push(
        &mut self,
        ctx: &Ctx,
        name: &str,
        op: Op,
        inputs: Vec<Src>,
        params: Option<FloatParams>,
    ) -> Result<(Src, Shape3)> {
        // Only the new node's shape is computed: re-checking the whole graph at every node made
        // the import quadratic in the node count.
        let ins: Vec<Shape3> = inputs
            .iter()
            .map(|s| match *s {
                Src::Input => self.input_shape,
                Src::Node(j) => self.shapes[j],
            })
            .collect();
        let node = Node {
            name: name.to_string(),
            op,
            inputs,
        };
        let shape = node_shape(&node, &ins)
            .map_err(|e| ctx.err(format!("fails caq's shape rules: {e}")))?;
        self.nodes.push(node);
        self.shapes.push(shape);
        self.params.push(params);
        Ok((Src::Node(self.nodes.len() - 1), shape))
    }

    fn define(&mut self, ctx: &Ctx, name: &str, v: Value) -> Result<()> {
        if self.values.contains_key(name) {
            return Err(ctx.err(format!("output '{name}' is already defined")));
        }
        self.values.insert(name.to_string(), v);
        Ok(())
    }

    fn define_act(
        &mut self,
        ctx: &Ctx,
        node: &NodeProto,
        src: Src,
        rank: usize,
        shape: Shape3,
    ) -> Result<()> {
        let name = &node.output[0];
        let exclusive = self.consumers.get(name) == Some(&1);
        self.define(
            ctx,
            name,
            Value::Act(Act {
                src,
                rank,
                shape,
                exclusive,
            }),
        )
    }

    /// The output of this node is `a` under a new name (Identity, Dropout, a shape-keeping
    /// Reshape).
    fn alias(&mut self, ctx: &Ctx, node: &NodeProto, a: &Act, rank: usize) -> Result<()> {
        let name = &node.output[0];
        let exclusive = a.exclusive && self.consumers.get(name) == Some(&1);
        self.define(
            ctx,
            name,
            Value::Act(Act {
                src: a.src,
                rank,
                shape: a.shape,
                exclusive,
            }),
        )
    }

    /// The caq node `a` comes from, when a fold into it is safe: `a` is its only reader and
    /// its ReLU is not yet applied.
    fn foldable(&self, a: &Act) -> Option<usize> {
        match a.src {
            Src::Node(j) if a.exclusive && !self.nodes[j].op.relu() => Some(j),
            _ => None,
        }
    }

    fn node(&mut self, ctx: &Ctx, node: &NodeProto, index: usize) -> Result<Mapped> {
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(ctx.err(format!(
                "operator of domain '{}' is not supported; caq imports only standard ai.onnx \
                 operators: {}",
                node.domain,
                SUPPORTED_OPS.join(", ")
            )));
        }
        match node.op_type.as_str() {
            "Gemm" => self.gemm(ctx, node, index),
            "MatMul" => self.matmul(ctx, node, index),
            "Conv" => self.conv(ctx, node, index),
            "Relu" => self.relu(ctx, node, index),
            "MaxPool" | "AveragePool" => self.pool(ctx, node, index),
            "GlobalAveragePool" | "GlobalMaxPool" => self.global_pool(ctx, node, index),
            "Add" => self.add(ctx, node, index),
            "BatchNormalization" => self.batch_norm(ctx, node),
            "Flatten" => self.flatten(ctx, node, index),
            "Reshape" => self.reshape(ctx, node, index),
            "Identity" | "Dropout" => self.identity(ctx, node),
            "Constant" => self.constant(ctx, node),
            _ => Err(ctx.err(format!(
                "operator not supported; caq imports {}",
                SUPPORTED_OPS.join(", ")
            ))),
        }
    }

    fn dense(
        &mut self,
        ctx: &Ctx,
        node: &NodeProto,
        index: usize,
        x: &Act,
        weight: Array2<f32>,
        bias: Array1<f32>,
    ) -> Result<Mapped> {
        let (out_features, in_features) = weight.dim();
        let name = self.caq_name(node, index);
        let op = Op::Dense {
            in_features,
            out_features,
            relu: false,
        };
        let (src, shape) = self.push(
            ctx,
            &name,
            op,
            vec![x.src],
            Some(FloatParams { weight, bias }),
        )?;
        self.define_act(ctx, node, src, 2, shape)?;
        Ok((
            Action::Node,
            Some(name),
            format!("Dense {in_features}→{out_features}"),
        ))
    }

    fn gemm(&mut self, ctx: &Ctx, node: &NodeProto, index: usize) -> Result<Mapped> {
        Self::arity(ctx, node, 2..=3)?;
        let attrs = Attrs::new(ctx, node, &["alpha", "beta", "transA", "transB"])?;
        let (alpha, beta) = (attrs.float("alpha", 1.0)?, attrs.float("beta", 1.0)?);
        if attrs.int("transA", 0)? != 0 {
            return Err(
                ctx.err("transA=1 is not supported; input A must be the activation as [N, K]")
            );
        }
        let trans_b = attrs.int("transB", 0)? != 0;
        let x = self.act(ctx, node, 0)?;
        Self::rank(ctx, &x, 2, "input A")?;
        let k = x.shape[0];
        let b = self.weights(ctx, node, 1, "B")?;
        let w = Self::f32s(ctx, &b, "B")?;
        let (rows, cols) = match b.dims.as_slice() {
            [r, c] => (*r, *c),
            d => return Err(ctx.err(format!("B must be 2-D, found dims {d:?}"))),
        };
        let stored = Array2::from_shape_vec((rows, cols), w).expect("length checked at decode");
        let weight = if trans_b {
            stored
        } else {
            stored.reversed_axes()
        };
        let (out, kin) = weight.dim();
        if kin != k {
            return Err(ctx.err(format!(
                "B {:?} (transB={}) has {kin} input features, input A has {k}",
                b.dims, trans_b as u8
            )));
        }
        let mut weight = weight.as_standard_layout().to_owned();
        if alpha != 1.0 {
            weight.mapv_inplace(|v| v * alpha);
        }
        let bias = match self.konst(ctx, node, 2)? {
            None => Array1::zeros(out),
            Some(c) => {
                let v = Self::f32s(ctx, &c, "C")?;
                let full: Vec<f32> = if v.len() == out && c.is_row() {
                    v
                } else if v.len() == 1 {
                    vec![v[0]; out]
                } else {
                    return Err(ctx.err(format!(
                        "C {:?} is not a bias of the {out} outputs (caq takes [{out}], \
                         [1, {out}] or a scalar)",
                        c.dims
                    )));
                };
                Array1::from(full).mapv(|v| if beta != 1.0 { v * beta } else { v })
            }
        };
        self.dense(ctx, node, index, &x, weight, bias)
    }

    fn matmul(&mut self, ctx: &Ctx, node: &NodeProto, index: usize) -> Result<Mapped> {
        Self::arity(ctx, node, 2..=2)?;
        Attrs::new(ctx, node, &[])?;
        if let Some(Value::Const(_)) = self.value(ctx, node, 0)? {
            return Err(ctx
                .err("input A is a constant; caq imports MatMul(x, W) with the activation first"));
        }
        let x = self.act(ctx, node, 0)?;
        Self::rank(ctx, &x, 2, "input A")?;
        let b = self.weights(ctx, node, 1, "B")?;
        let w = Self::f32s(ctx, &b, "B")?;
        let k = x.shape[0];
        let (rows, cols) = match b.dims.as_slice() {
            [r, c] if *r == k => (*r, *c),
            d => {
                return Err(ctx.err(format!(
                    "B must be [{k}, out] for an input of {k} features, found dims {d:?}"
                )));
            }
        };
        let weight = Array2::from_shape_vec((rows, cols), w)
            .expect("length checked at decode")
            .reversed_axes()
            .as_standard_layout()
            .to_owned();
        self.dense(ctx, node, index, &x, weight, Array1::zeros(cols))
    }

    fn conv(&mut self, ctx: &Ctx, node: &NodeProto, index: usize) -> Result<Mapped> {
        Self::arity(ctx, node, 2..=3)?;
        let attrs = Attrs::new(
            ctx,
            node,
            &[
                "auto_pad",
                "dilations",
                "group",
                "kernel_shape",
                "pads",
                "strides",
            ],
        )?;
        let x = self.act(ctx, node, 0)?;
        Self::rank(ctx, &x, 4, "input X")?;
        let group = attrs.int("group", 1)?;
        no_dilation(ctx, &attrs)?;
        let wc = self.weights(ctx, node, 1, "W")?;
        let w = Self::f32s(ctx, &wc, "W")?;
        let [o, i, kh, kw] = match wc.dims.as_slice() {
            &[o, i, kh, kw] if o > 0 && kh > 0 && kw > 0 => [o, i, kh, kw],
            d => return Err(ctx.err(format!("W must be [M, C, kH, kW], found dims {d:?}"))),
        };
        // Grouped (depthwise when group = C = M): W holds C/group input channels per output.
        let groups = usize::try_from(group)
            .ok()
            .filter(|&g| g >= 1 && o % g == 0 && i.checked_mul(g) == Some(x.shape[0]))
            .ok_or_else(|| {
                ctx.err(format!(
                    "group={group} with W {:?} and {} input channels: expected group ≥ 1 \
                     dividing M, and W's C × group = the input's channels",
                    wc.dims, x.shape[0]
                ))
            })?;
        if let Some(ks) = attrs.ints("kernel_shape")?
            && ks != [kh as i64, kw as i64]
        {
            return Err(ctx.err(format!(
                "kernel_shape {ks:?} does not match W {:?}",
                wc.dims
            )));
        }
        let stride = square(
            ctx,
            "strides",
            &attrs.ints("strides")?.unwrap_or_default(),
            1,
        )?;
        let pads = attrs.ints("pads")?.unwrap_or_default();
        let auto_pad = attrs.string("auto_pad", "NOTSET")?;
        let [_, in_h, in_w] = x.shape;
        let padding = match auto_pad.as_str() {
            "NOTSET" | "" | "VALID" => {
                // ONNX 2-D pads: [top, left, bottom, right].
                let p = match pads.as_slice() {
                    [] => Padding::default(),
                    &[t, l, b, r] if [t, l, b, r].iter().all(|&v| v >= 0) => Padding {
                        top: t as usize,
                        left: l as usize,
                        bottom: b as usize,
                        right: r as usize,
                    },
                    _ => {
                        return Err(ctx.err(format!(
                            "pads {pads:?}: expected four non-negative values [top, left, bottom, right]"
                        )));
                    }
                };
                // A pad of a whole kernel or more adds outputs that see only padding; refusing
                // it also bounds the sizes caq's shape rules compute with.
                if p.top.max(p.bottom) >= kh || p.left.max(p.right) >= kw {
                    return Err(ctx.err(format!(
                        "pads {pads:?} are not smaller than the {kh}×{kw} kernel"
                    )));
                }
                if auto_pad == "VALID" && p != Padding::default() {
                    return Err(ctx.err(format!("auto_pad=VALID with pads {pads:?}")));
                }
                p
            }
            // SAME_UPPER puts the larger half after, SAME_LOWER before.
            "SAME_UPPER" => Padding::same([in_h, in_w], [kh, kw], stride),
            "SAME_LOWER" => {
                let p = Padding::same([in_h, in_w], [kh, kw], stride);
                Padding {
                    top: p.bottom,
                    left: p.right,
                    bottom: p.top,
                    right: p.left,
                }
            }
            other => {
                return Err(ctx.err(format!(
                    "auto_pad={other}: expected NOTSET, VALID, SAME_UPPER or SAME_LOWER"
                )));
            }
        };
        let bias = match self.konst(ctx, node, 2)? {
            None => Array1::zeros(o),
            Some(c) => {
                let v = Self::f32s(ctx, &c, "B")?;
                if v.len() != o || c.dims.len() != 1 {
                    return Err(ctx.err(format!(
                        "B {:?} is not a bias of the {o} output channels",
                        c.dims
                    )));
                }
                Array1::from(v)
            }
        };
        let weight = Array2::from_shape_vec((o, i * kh * kw), w).expect("length checked at decode");
        let name = self.caq_name(node, index);
        let op = Op::Conv2d {
            in_channels: x.shape[0],
            out_channels: o,
            kernel: [kh, kw],
            stride,
            padding,
            groups,
            relu: false,
        };
        let (src, shape) = self.push(
            ctx,
            &name,
            op,
            vec![x.src],
            Some(FloatParams { weight, bias }),
        )?;
        self.define_act(ctx, node, src, 4, shape)?;
        Ok((
            Action::Node,
            Some(name),
            format!("Conv2d {i}→{o} {kh}×{kw} stride {stride} pad {padding}"),
        ))
    }

    fn relu(&mut self, ctx: &Ctx, node: &NodeProto, index: usize) -> Result<Mapped> {
        Self::arity(ctx, node, 1..=1)?;
        Attrs::new(ctx, node, &[])?;
        let x = self.act(ctx, node, 0)?;
        if let Some(j) = self.foldable(&x) {
            let target = &mut self.nodes[j].op;
            let flag = match target {
                Op::Dense { relu, .. } | Op::Conv2d { relu, .. } | Op::Add { relu } => Some(relu),
                _ => None,
            };
            if let Some(flag) = flag {
                *flag = true;
                let caq = self.nodes[j].name.clone();
                self.alias(ctx, node, &x, x.rank)?;
                return Ok((Action::Folded, Some(caq.clone()), format!("ReLU of {caq}")));
            }
        }
        let name = self.caq_name(node, index);
        let (src, shape) = self.push(ctx, &name, Op::Relu, vec![x.src], None)?;
        self.define_act(ctx, node, src, x.rank, shape)?;
        Ok((Action::Node, Some(name), "Relu".into()))
    }

    fn pool(&mut self, ctx: &Ctx, node: &NodeProto, index: usize) -> Result<Mapped> {
        Self::arity(ctx, node, 1..=1)?;
        let max = node.op_type == "MaxPool";
        let known: &[&str] = if max {
            &[
                "auto_pad",
                "ceil_mode",
                "dilations",
                "kernel_shape",
                "pads",
                "storage_order",
                "strides",
            ]
        } else {
            &[
                "auto_pad",
                "ceil_mode",
                "count_include_pad",
                "dilations",
                "kernel_shape",
                "pads",
                "strides",
            ]
        };
        let attrs = Attrs::new(ctx, node, known)?;
        if node.output.get(1).is_some_and(|o| !o.is_empty()) {
            return Err(ctx.err("the Indices output is not supported"));
        }
        no_dilation(ctx, &attrs)?;
        let ks = attrs
            .ints("kernel_shape")?
            .ok_or_else(|| ctx.err("kernel_shape is missing"))?;
        let x = self.act(ctx, node, 0)?;
        Self::rank(ctx, &x, 4, "input X")?;
        let [_, h, w] = x.shape;
        // A non-square average pool over the whole map (Keras writes a network's last pool with
        // the map's own size and strides, DS-CNN's 25×5) is a global average pool: one window,
        // the same mean. A square one stays an AvgPool, which computes the same codes
        // (`Graph::with_global_pools`) and exports back as it came.
        let whole_map = !max
            && matches!(ks.as_slice(), [a, b] if *a != *b
                && usize::try_from(*a).ok() == Some(h)
                && usize::try_from(*b).ok() == Some(w));
        let strides = attrs.ints("strides")?.unwrap_or_default();
        let op = if whole_map {
            if !(strides.is_empty() || strides.len() == 2 && strides.iter().all(|&v| v > 0)) {
                return Err(ctx.err(format!("strides {strides:?} must be two positive values")));
            }
            Op::GlobalAvgPool
        } else {
            let kernel = match ks.as_slice() {
                [a, b] if a == b => square(ctx, "kernel_shape", &ks, 1)?,
                _ => {
                    let hint = if max {
                        String::new()
                    } else {
                        format!(" (or, averaging, the whole {h}×{w} map)")
                    };
                    return Err(ctx.err(format!(
                        "kernel_shape {ks:?} is not square; caq pools take a k×k window{hint}"
                    )));
                }
            };
            let stride = square(ctx, "strides", &strides, 1)?;
            if max {
                Op::MaxPool { kernel, stride }
            } else {
                Op::AvgPool { kernel, stride }
            }
        };
        let pads = attrs.ints("pads")?.unwrap_or_default();
        if pads.iter().any(|&p| p != 0) {
            return Err(ctx.err(format!(
                "pads {pads:?} are not supported; caq pools take no padding"
            )));
        }
        let auto_pad = attrs.string("auto_pad", "NOTSET")?;
        if !matches!(auto_pad.as_str(), "NOTSET" | "" | "VALID") {
            return Err(ctx.err(format!(
                "auto_pad={auto_pad} is not supported; caq pools take no padding"
            )));
        }
        if attrs.int("ceil_mode", 0)? != 0 {
            return Err(
                ctx.err("ceil_mode=1 is not supported; caq pools round the output size down")
            );
        }
        if attrs.int("storage_order", 0)? != 0 {
            return Err(ctx.err("storage_order=1 is not supported"));
        }
        // count_include_pad: with no padding every window lies inside the input, so both values
        // divide by k*k, as caq's AvgPool does.
        attrs.int("count_include_pad", 0)?;
        let what = match op {
            Op::MaxPool { kernel, stride } => format!("MaxPool {kernel}×{kernel} stride {stride}"),
            Op::AvgPool { kernel, stride } => format!("AvgPool {kernel}×{kernel} stride {stride}"),
            _ => format!("GlobalAvgPool {h}×{w} (an AveragePool over the whole map)"),
        };
        let name = self.caq_name(node, index);
        let (src, shape) = self.push(ctx, &name, op, vec![x.src], None)?;
        self.define_act(ctx, node, src, 4, shape)?;
        Ok((Action::Node, Some(name), what))
    }

    fn global_pool(&mut self, ctx: &Ctx, node: &NodeProto, index: usize) -> Result<Mapped> {
        Self::arity(ctx, node, 1..=1)?;
        Attrs::new(ctx, node, &[])?;
        let x = self.act(ctx, node, 0)?;
        Self::rank(ctx, &x, 4, "input X")?;
        let [_, h, w] = x.shape;
        // Global average pooling takes any map; caq's max pool a k×k window.
        let (op, what) = if node.op_type == "GlobalMaxPool" {
            if h != w {
                return Err(ctx.err(format!(
                    "input is {h}×{w}; caq max pools take a k×k window, so a global max pool \
                     needs a square input"
                )));
            }
            (
                Op::MaxPool {
                    kernel: h,
                    stride: 1,
                },
                "MaxPool",
            )
        } else {
            (Op::GlobalAvgPool, "GlobalAvgPool")
        };
        let name = self.caq_name(node, index);
        let (src, shape) = self.push(ctx, &name, op, vec![x.src], None)?;
        self.define_act(ctx, node, src, 4, shape)?;
        Ok((Action::Node, Some(name), format!("{what} {h}×{w} (global)")))
    }

    fn add(&mut self, ctx: &Ctx, node: &NodeProto, index: usize) -> Result<Mapped> {
        Self::arity(ctx, node, 2..=2)?;
        Attrs::new(ctx, node, &[])?;
        let a = self.value(ctx, node, 0)?;
        let b = self.value(ctx, node, 1)?;
        match (a, b) {
            (Some(Value::Act(a)), Some(Value::Act(b))) => {
                if a.rank != b.rank || a.shape != b.shape {
                    return Err(ctx.err(format!(
                        "inputs differ in shape (rank {} {:?} vs rank {} {:?}); caq adds \
                         equal shapes, without broadcasting",
                        a.rank, a.shape, b.rank, b.shape
                    )));
                }
                let name = self.caq_name(node, index);
                let (src, shape) = self.push(
                    ctx,
                    &name,
                    Op::Add { relu: false },
                    vec![a.src, b.src],
                    None,
                )?;
                self.define_act(ctx, node, src, a.rank, shape)?;
                Ok((Action::Node, Some(name), "Add (residual)".into()))
            }
            (Some(Value::Act(x)), Some(Value::Const(c)))
            | (Some(Value::Const(c)), Some(Value::Act(x))) => self.add_bias(ctx, node, &x, &c),
            (Some(Value::Const(_)), Some(Value::Const(_))) => {
                Err(ctx.err("both inputs are constants; fold constant expressions before import"))
            }
            _ => Err(ctx.err("an input is missing")),
        }
    }

    fn add_bias(&mut self, ctx: &Ctx, node: &NodeProto, x: &Act, c: &Const) -> Result<Mapped> {
        let not_bias = || {
            ctx.err(
                "Add of a constant is supported only as the bias of a directly preceding Gemm, \
                 MatMul or Conv whose output it alone reads",
            )
        };
        let j = self.foldable(x).ok_or_else(not_bias)?;
        let v = Self::f32s(ctx, c, "the bias")?;
        let (op, caq) = (self.nodes[j].op.clone(), self.nodes[j].name.clone());
        let out = match op {
            Op::Dense { out_features, .. } if v.len() == out_features && c.is_row() => out_features,
            Op::Conv2d { out_channels, .. } if v.len() == out_channels && c.is_channel_vector() => {
                out_channels
            }
            Op::Dense {
                out_features: n, ..
            }
            | Op::Conv2d {
                out_channels: n, ..
            } => {
                return Err(ctx.err(format!(
                    "constant {:?} is not a per-channel bias of the {n} outputs of '{caq}' \
                     (caq takes [{n}] / [1, {n}] after Gemm or MatMul, [{n}, 1, 1] / \
                     [1, {n}, 1, 1] after Conv)",
                    c.dims
                )));
            }
            _ => return Err(not_bias()),
        };
        let p = self.params[j].as_mut().expect("weight layers have params");
        for (b, d) in p.bias.iter_mut().zip(&v[..out]) {
            *b += d;
        }
        self.alias(ctx, node, x, x.rank)?;
        Ok((Action::Folded, Some(caq.clone()), format!("bias of {caq}")))
    }

    fn batch_norm(&mut self, ctx: &Ctx, node: &NodeProto) -> Result<Mapped> {
        Self::arity(ctx, node, 5..=5)?;
        let attrs = Attrs::new(
            ctx,
            node,
            &["epsilon", "momentum", "training_mode", "spatial"],
        )?;
        if attrs.int("training_mode", 0)? != 0 {
            return Err(ctx.err("training_mode=1 is not supported; caq imports inference graphs"));
        }
        if attrs.int("spatial", 1)? != 1 {
            return Err(ctx.err("spatial=0 is not supported"));
        }
        if node.output.iter().skip(1).any(|o| !o.is_empty()) {
            return Err(ctx.err(
                "running mean/variance outputs are not supported; caq imports inference graphs",
            ));
        }
        let eps = attrs.float("epsilon", 1e-5)? as f64;
        let x = self.act(ctx, node, 0)?;
        let j = self
            .foldable(&x)
            .filter(|&j| self.nodes[j].op.has_weights())
            .ok_or_else(|| {
                ctx.err(
                    "BatchNormalization must directly follow a Conv, Gemm or MatMul whose output \
                     it alone reads (caq folds it into that layer's weights and bias)",
                )
            })?;
        let (o, _, _) = self.nodes[j].op.weight_matrix_dims().expect("weight layer");
        let mut vecs = Vec::with_capacity(4);
        for (idx, what) in [(1, "scale"), (2, "B"), (3, "input_mean"), (4, "input_var")] {
            let c = self.weights(ctx, node, idx, what)?;
            let v = Self::f32s(ctx, &c, what)?;
            if v.len() != o {
                return Err(ctx.err(format!(
                    "{what} {:?} does not have the {o} channels of '{}'",
                    c.dims, self.nodes[j].name
                )));
            }
            vecs.push(v);
        }
        let (gamma, beta, mean, var) = (&vecs[0], &vecs[1], &vecs[2], &vecs[3]);
        if let Some(ch) = (0..o).find(|&ch| {
            let v = var[ch] as f64 + eps;
            v.is_nan() || v <= 0.0
        }) {
            return Err(ctx.err(format!(
                "input_var[{ch}] + epsilon = {} is not positive",
                var[ch] as f64 + eps
            )));
        }
        let p = self.params[j].as_mut().expect("weight layers have params");
        for ch in 0..o {
            // In f64: w' = w·γ/√(var+ε), b' = (b − μ)·γ/√(var+ε) + β.
            let s = gamma[ch] as f64 / (var[ch] as f64 + eps).sqrt();
            p.weight.row_mut(ch).mapv_inplace(|w| (w as f64 * s) as f32);
            p.bias[ch] = ((p.bias[ch] as f64 - mean[ch] as f64) * s + beta[ch] as f64) as f32;
        }
        let caq = self.nodes[j].name.clone();
        self.alias(ctx, node, &x, x.rank)?;
        Ok((
            Action::Folded,
            Some(caq.clone()),
            format!("BatchNormalization into the weights and bias of {caq}"),
        ))
    }

    fn flatten(&mut self, ctx: &Ctx, node: &NodeProto, index: usize) -> Result<Mapped> {
        Self::arity(ctx, node, 1..=1)?;
        let attrs = Attrs::new(ctx, node, &["axis"])?;
        let x = self.act(ctx, node, 0)?;
        let axis = attrs.int("axis", 1)?;
        let normalized = if axis < 0 { axis + x.rank as i64 } else { axis };
        if normalized != 1 {
            return Err(ctx.err(format!(
                "axis={axis} is not supported; caq flattens everything after the batch axis \
                 (axis=1)"
            )));
        }
        self.flatten_node(ctx, node, index, &x)
    }

    fn flatten_node(
        &mut self,
        ctx: &Ctx,
        node: &NodeProto,
        index: usize,
        x: &Act,
    ) -> Result<Mapped> {
        let name = self.caq_name(node, index);
        let (src, shape) = self.push(ctx, &name, Op::Flatten, vec![x.src], None)?;
        self.define_act(ctx, node, src, 2, shape)?;
        Ok((Action::Node, Some(name), format!("Flatten → {}", shape[0])))
    }

    fn reshape(&mut self, ctx: &Ctx, node: &NodeProto, index: usize) -> Result<Mapped> {
        Self::arity(ctx, node, 2..=2)?;
        let attrs = Attrs::new(ctx, node, &["allowzero"])?;
        let allow_zero = attrs.int("allowzero", 0)? != 0;
        let x = self.act(ctx, node, 0)?;
        let target = match self.weights(ctx, node, 1, "shape")?.data {
            ConstData::I64(v) => v,
            ConstData::F32(_) => return Err(ctx.err("shape must be INT64, found FLOAT")),
        };
        let [c, h, w] = x.shape;
        let input: Vec<usize> = if x.rank == 4 {
            vec![1, c, h, w]
        } else {
            vec![1, c]
        };
        let total = c * h * w;
        let mut resolved: Vec<Option<usize>> = Vec::with_capacity(target.len());
        for (i, &t) in target.iter().enumerate() {
            resolved.push(match t {
                -1 => None,
                0 if !allow_zero => Some(*input.get(i).ok_or_else(|| {
                    ctx.err(format!(
                        "shape {target:?}: 0 at axis {i} copies no input axis"
                    ))
                })?),
                t if t >= 0 => Some(t as usize),
                _ => return Err(ctx.err(format!("shape {target:?} has an invalid entry {t}"))),
            });
        }
        let known: Option<usize> = resolved
            .iter()
            .flatten()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let dims: Vec<usize> = match (resolved.iter().filter(|d| d.is_none()).count(), known) {
            (0, Some(k)) if k == total => resolved.iter().flatten().copied().collect(),
            (1, Some(k)) if k > 0 && total % k == 0 => {
                resolved.iter().map(|d| d.unwrap_or(total / k)).collect()
            }
            _ => {
                return Err(ctx.err(format!(
                    "shape {target:?} does not fit the input {input:?} ({total} values per image)"
                )));
            }
        };
        let caq_shape: Option<Shape3> = match dims.as_slice() {
            [1, f] => Some([*f, 1, 1]),
            [1, c, h, w] => Some([*c, *h, *w]),
            _ => None,
        };
        match caq_shape {
            Some(s) if s == x.shape => {
                self.alias(ctx, node, &x, dims.len())?;
                Ok((
                    Action::Skipped,
                    None,
                    format!("Reshape to {dims:?} keeps caq's shape"),
                ))
            }
            Some(_) if dims.len() == 2 => self.flatten_node(ctx, node, index, &x),
            _ => Err(ctx.err(format!(
                "Reshape of {input:?} to {dims:?} is not supported; caq reshapes only to \
                 [N, -1] (a flatten) or to the same shape"
            ))),
        }
    }

    fn identity(&mut self, ctx: &Ctx, node: &NodeProto) -> Result<Mapped> {
        let dropout = node.op_type == "Dropout";
        Self::arity(ctx, node, if dropout { 1..=3 } else { 1..=1 })?;
        Attrs::new(
            ctx,
            node,
            if dropout {
                &["ratio", "seed", "is_test"]
            } else {
                &[]
            },
        )?;
        if let Some(mask) = node.output.get(1).filter(|m| !m.is_empty())
            && self.consumers.contains_key(mask)
        {
            return Err(ctx.err(format!(
                "the mask output '{mask}' is read; caq skips Dropout"
            )));
        }
        match self.value(ctx, node, 0)? {
            Some(Value::Act(x)) => self.alias(ctx, node, &x, x.rank)?,
            Some(Value::Const(c)) => {
                let name = node.output[0].clone();
                self.define(ctx, &name, Value::Const(c))?
            }
            None => return Err(ctx.err("input 0 is missing")),
        }
        Ok((
            Action::Skipped,
            None,
            if dropout {
                "Dropout is the identity at inference"
            } else {
                "Identity"
            }
            .into(),
        ))
    }

    fn constant(&mut self, ctx: &Ctx, node: &NodeProto) -> Result<Mapped> {
        Self::arity(ctx, node, 0..=0)?;
        let attrs = Attrs::new(ctx, node, &["value"])?;
        let t = attrs
            .tensor("value")?
            .ok_or_else(|| ctx.err("the 'value' attribute is missing"))?;
        let c = decode_tensor(t).map_err(|e| ctx.err(format!("value {e}")))?;
        let name = node.output[0].clone();
        self.define(ctx, &name, Value::Const(c))?;
        Ok((Action::Skipped, None, format!("constant {name}")))
    }

    fn finish(&mut self, graph: &GraphProto) -> Result<(FloatModel, String)> {
        let output = match graph.output.as_slice() {
            [one] => one.name.clone(),
            outs => {
                return Err(OnnxError::model(format!(
                    "caq models have one output; the graph has {} ({:?})",
                    outs.len(),
                    outs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>()
                )));
            }
        };
        let last = self.nodes.len().checked_sub(1);
        match self.values.get(&output) {
            Some(Value::Act(a)) => match a.src {
                Src::Node(j) if Some(j) == last => {}
                Src::Node(j) => {
                    return Err(OnnxError::model(format!(
                        "graph output '{output}' is caq node '{}', but {} later node(s) do not \
                         feed it; caq takes a graph whose last node is the output",
                        self.nodes[j].name,
                        self.nodes.len() - 1 - j
                    )));
                }
                Src::Input => {
                    return Err(OnnxError::model(format!(
                        "graph output '{output}' is the graph input; the graph has no layers"
                    )));
                }
            },
            Some(Value::Const(_)) => {
                return Err(OnnxError::model(format!(
                    "graph output '{output}' is a constant"
                )));
            }
            None => {
                return Err(OnnxError::model(format!(
                    "graph output '{output}' is not produced by any node"
                )));
            }
        }
        let fm = FloatModel {
            graph: Graph {
                input_shape: self.input_shape,
                nodes: std::mem::take(&mut self.nodes),
            },
            params: std::mem::take(&mut self.params),
        };
        caq_model::validate::float_model(&fm, &caq_model::validate::Limits::for_this_machine())?;
        Ok((fm, output))
    }
}
