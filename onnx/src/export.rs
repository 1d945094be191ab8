//! caq float model → ONNX. Owns the mapping of caq operators onto standard opset-13 ONNX
//! operators; the result is what [`crate::import`] reads back into the identical model, and what
//! ONNX's checker and reference evaluator accept (tests/python.rs checks both).
//!
//! Names: the input is `input`; a caq node `n` becomes an ONNX node `n` with output `n.out`,
//! weights `n.weight` / `n.bias`, and, for a layer with its ReLU flag set, a pre-activation
//! `n.pre` and a Relu node `n/relu`. The batch axis is symbolic (`N`).

use crate::error::{OnnxError, Result};
use crate::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_type, data_type, tensor_shape_proto,
    type_proto,
};
use caq_model::graph::{FloatModel, Op, Shape3, Src};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The `ai.onnx` opset of exported models.
pub const EXPORT_OPSET: i64 = 13;
/// The IR version that goes with opset 13 (ONNX 1.8).
pub const EXPORT_IR_VERSION: i64 = 7;
/// Name of the graph input.
pub const INPUT_NAME: &str = "input";

/// The model as ONNX protobuf bytes.
pub fn export(model: &FloatModel) -> Result<Vec<u8>> {
    Ok(to_proto(model)?.encode_to_vec())
}

/// Writes the model as an ONNX file, atomically (a failed export leaves no file).
pub fn export_file(model: &FloatModel, path: &Path) -> Result<()> {
    let bytes = export(model)?;
    caq_model::store::write_bytes_atomic(path, &bytes)?;
    Ok(())
}

/// The model as an ONNX `ModelProto`.
pub fn to_proto(model: &FloatModel) -> Result<ModelProto> {
    model.validate()?;
    let shapes = model.graph.shapes()?;
    let mut seen = HashSet::new();
    for n in &model.graph.nodes {
        if n.name.is_empty() || !seen.insert(n.name.as_str()) {
            return Err(OnnxError::model(format!(
                "node name '{}' is empty or not unique; ONNX value names are made from caq \
                 node names",
                n.name
            )));
        }
    }
    let g = &model.graph;
    // A vector input stays 2-D ([N, F]) when only dense layers read it, as a trained MLP's
    // would; anything spatial reads [N, C, H, W].
    let [c, h, w] = g.input_shape;
    let input_rank = if h == 1
        && w == 1
        && g.nodes
            .iter()
            .filter(|n| n.inputs.contains(&Src::Input))
            .all(|n| matches!(n.op, Op::Dense { .. }))
    {
        2
    } else {
        4
    };
    let mut e = Emitter::default();
    let mut outs: Vec<(String, usize)> = Vec::with_capacity(g.nodes.len());
    for (i, node) in g.nodes.iter().enumerate() {
        let input = |s: Src| -> (String, usize, Shape3) {
            match s {
                Src::Input => (INPUT_NAME.to_string(), input_rank, g.input_shape),
                Src::Node(j) => (outs[j].0.clone(), outs[j].1, shapes[j]),
            }
        };
        let (x, x_rank, x_shape) = input(node.inputs[0]);
        let name = &node.name;
        let relu_after = node.op.relu() && node.op != Op::Relu;
        let out = if relu_after {
            format!("{name}.pre")
        } else {
            format!("{name}.out")
        };
        let rank = match &node.op {
            Op::Dense { .. } => {
                let p = model.params[i].as_ref().expect("validated");
                let x = e.with_rank(&x, x_rank, x_shape, 2);
                let (o, k) = p.weight.dim();
                let wn = e.f32_init(&format!("{name}.weight"), &[o, k], p.weight.iter());
                let bn = e.f32_init(&format!("{name}.bias"), &[o], p.bias.iter());
                e.node("Gemm", name, vec![x, wn, bn], &out, vec![int("transB", 1)]);
                2
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
                let p = model.params[i].as_ref().expect("validated");
                let x = e.with_rank(&x, x_rank, x_shape, 4);
                let dims = [*out_channels, in_channels / groups, kernel[0], kernel[1]];
                let wn = e.f32_init(&format!("{name}.weight"), &dims, p.weight.iter());
                let bn = e.f32_init(&format!("{name}.bias"), &[*out_channels], p.bias.iter());
                // ONNX 2-D pads: [top, left, bottom, right] (x1_begin, x2_begin, x1_end, x2_end).
                let pads = [padding.top, padding.left, padding.bottom, padding.right];
                let mut attrs = vec![
                    ints("kernel_shape", &[kernel[0], kernel[1]]),
                    ints("pads", &pads),
                    ints("strides", &[*stride; 2]),
                ];
                if *groups != 1 {
                    attrs.push(int("group", *groups as i64));
                }
                e.node("Conv", name, vec![x, wn, bn], &out, attrs);
                4
            }
            Op::MaxPool { kernel, stride } | Op::AvgPool { kernel, stride } => {
                let op_type = if matches!(node.op, Op::MaxPool { .. }) {
                    "MaxPool"
                } else {
                    "AveragePool"
                };
                let x = e.with_rank(&x, x_rank, x_shape, 4);
                let attrs = vec![
                    ints("kernel_shape", &[*kernel; 2]),
                    ints("strides", &[*stride; 2]),
                ];
                e.node(op_type, name, vec![x], &out, attrs);
                4
            }
            Op::GlobalAvgPool => {
                let x = e.with_rank(&x, x_rank, x_shape, 4);
                e.node("GlobalAveragePool", name, vec![x], &out, vec![]);
                4
            }
            Op::Add { .. } => {
                let (y, y_rank, y_shape) = input(node.inputs[1]);
                let y = e.with_rank(&y, y_rank, y_shape, x_rank);
                e.node("Add", name, vec![x, y], &out, vec![]);
                x_rank
            }
            Op::Relu => {
                e.node("Relu", name, vec![x], &out, vec![]);
                x_rank
            }
            Op::Flatten => {
                e.node("Flatten", name, vec![x], &out, vec![int("axis", 1)]);
                2
            }
        };
        let out = if relu_after {
            let post = format!("{name}.out");
            e.node("Relu", &format!("{name}/relu"), vec![out], &post, vec![]);
            post
        } else {
            out
        };
        outs.push((out, rank));
    }
    let (out_name, out_rank) = outs.last().expect("validated graphs have nodes").clone();
    let out_shape = *shapes.last().expect("validated graphs have nodes");
    let graph = GraphProto {
        node: e.nodes,
        name: "caq".into(),
        initializer: e.inits,
        doc_string: String::new(),
        input: vec![value_info(INPUT_NAME, [c, h, w], input_rank)],
        output: vec![value_info(&out_name, out_shape, out_rank)],
        value_info: Vec::new(),
    };
    Ok(ModelProto {
        ir_version: EXPORT_IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: EXPORT_OPSET,
        }],
        producer_name: "caq".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: String::new(),
        model_version: 0,
        doc_string: "caq float model".into(),
        graph: Some(graph),
    })
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INT,
        i: Some(v),
        ..Default::default()
    }
}

fn ints(name: &str, v: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INTS,
        ints: v.iter().map(|&d| d as i64).collect(),
        ..Default::default()
    }
}

/// `[N, C, H, W]` or `[N, F]` with the batch axis symbolic.
fn value_info(name: &str, shape: Shape3, rank: usize) -> ValueInfoProto {
    let [c, h, w] = shape;
    let fixed: Vec<usize> = if rank == 4 {
        vec![c, h, w]
    } else {
        vec![c * h * w]
    };
    let dim = |v: tensor_shape_proto::dimension::Value| tensor_shape_proto::Dimension {
        value: Some(v),
        denotation: String::new(),
    };
    let mut dims = vec![dim(tensor_shape_proto::dimension::Value::DimParam(
        "N".into(),
    ))];
    dims.extend(
        fixed
            .iter()
            .map(|&d| dim(tensor_shape_proto::dimension::Value::DimValue(d as i64))),
    );
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto { dim: dims }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

#[derive(Default)]
struct Emitter {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    /// Reshapes already emitted, by (value, rank).
    reshaped: HashMap<(String, usize), String>,
}

impl Emitter {
    fn node(
        &mut self,
        op_type: &str,
        name: &str,
        input: Vec<String>,
        output: &str,
        attribute: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input,
            output: vec![output.into()],
            name: name.into(),
            op_type: op_type.into(),
            attribute,
            ..Default::default()
        });
    }

    fn f32_init<'a>(
        &mut self,
        name: &str,
        dims: &[usize],
        values: impl Iterator<Item = &'a f32>,
    ) -> String {
        self.inits.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type::FLOAT,
            name: name.into(),
            raw_data: values.flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name.into()
    }

    /// `value` as a rank-`want` tensor: itself, or a Reshape to `[N, F]` / `[N, C, 1, 1]`
    /// (caq's vectors are `[F, 1, 1]`, so only vectors ever change rank).
    fn with_rank(&mut self, value: &str, have: usize, shape: Shape3, want: usize) -> String {
        if have == want {
            return value.to_string();
        }
        if let Some(done) = self.reshaped.get(&(value.to_string(), want)) {
            return done.clone();
        }
        let [c, h, w] = shape;
        // 0 copies the batch axis (allowzero defaults to 0).
        let target: Vec<i64> = if want == 2 {
            vec![0, -1]
        } else {
            vec![0, c as i64, h as i64, w as i64]
        };
        let shape_name = format!("{value}.shape{want}");
        self.inits.push(TensorProto {
            dims: vec![target.len() as i64],
            data_type: data_type::INT64,
            int64_data: target,
            name: shape_name.clone(),
            ..Default::default()
        });
        let out = format!("{value}.rank{want}");
        self.node(
            "Reshape",
            &format!("{value}/rank{want}"),
            vec![value.to_string(), shape_name],
            &out,
            vec![],
        );
        self.reshaped.insert((value.to_string(), want), out.clone());
        out
    }
}
