//! Builders shared by the caq-onnx test binaries: hand-built ONNX protobufs and seeded random
//! caq models. Each binary uses a part of them.
#![allow(dead_code)]

use caq_model::graph::{FloatModel, FloatParams, Graph, Node, Op, Src};
use caq_onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_type, data_type, tensor_shape_proto,
    type_proto,
};
use ndarray::{Array1, Array2};
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub fn tensor(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        float_data: data.to_vec(),
        name: name.into(),
        ..Default::default()
    }
}

pub fn tensor_i64(name: &str, data: &[i64]) -> TensorProto {
    TensorProto {
        dims: vec![data.len() as i64],
        data_type: data_type::INT64,
        int64_data: data.to_vec(),
        name: name.into(),
        ..Default::default()
    }
}

pub fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: name.into(),
        op_type: op.into(),
        ..Default::default()
    }
}

pub fn with(mut n: NodeProto, attrs: Vec<AttributeProto>) -> NodeProto {
    n.attribute = attrs;
    n
}

pub fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INT,
        i: Some(v),
        ..Default::default()
    }
}

pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INTS,
        ints: v.to_vec(),
        ..Default::default()
    }
}

#[allow(dead_code)]
pub fn string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::STRING,
        s: Some(v.as_bytes().to_vec()),
        ..Default::default()
    }
}

pub fn float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::FLOAT,
        f: Some(v),
        ..Default::default()
    }
}

/// A float value; a negative size is the symbolic batch axis `N`.
pub fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
    use tensor_shape_proto::dimension::Value as D;
    let dim = dims
        .iter()
        .map(|&d| tensor_shape_proto::Dimension {
            value: Some(if d < 0 {
                D::DimParam("N".into())
            } else {
                D::DimValue(d)
            }),
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

/// An opset-13 model with graph input `x` and output `y`.
pub fn model(
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    x_dims: &[i64],
    y_dims: &[i64],
) -> ModelProto {
    ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        producer_name: "caq-onnx tests".into(),
        graph: Some(GraphProto {
            node: nodes,
            name: "test".into(),
            initializer: inits,
            input: vec![value("x", x_dims)],
            output: vec![value("y", y_dims)],
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn bytes(m: &ModelProto) -> Vec<u8> {
    m.encode_to_vec()
}

pub fn randn(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| rng.random_range(-1.0f32..1.0) * scale)
        .collect()
}

/// `graph` with seeded random weights and biases.
pub fn random_model(graph: Graph, seed: u64) -> FloatModel {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let params = graph
        .nodes
        .iter()
        .map(|n| {
            n.op.weight_matrix_dims().map(|(o, k, _)| FloatParams {
                weight: Array2::from_shape_vec((o, k), randn(&mut rng, o * k, 0.5)).unwrap(),
                bias: Array1::from(randn(&mut rng, o, 0.2)),
            })
        })
        .collect();
    let m = FloatModel { graph, params };
    m.validate().unwrap();
    m
}

fn n(name: &str, op: Op, inputs: &[Src]) -> Node {
    Node {
        name: name.into(),
        op,
        inputs: inputs.to_vec(),
    }
}

/// Every caq operator: padded strided convs, a residual Add with ReLU, a separate Relu node
/// (after a pool: after a conv or dense it alone reads, import folds it into that layer's flag),
/// both pools, flatten, dense.
pub fn residual_graph() -> Graph {
    let conv = |i, o, stride, padding, relu| Op::Conv2d {
        in_channels: i,
        out_channels: o,
        kernel: [3, 3],
        stride,
        padding: caq_model::graph::Padding::uniform(padding),
        groups: 1,
        relu,
    };
    Graph {
        input_shape: [2, 9, 9],
        nodes: vec![
            n("conv1", conv(2, 4, 1, 1, true), &[Src::Input]),
            n("conv2", conv(4, 4, 1, 1, false), &[Src::Node(0)]),
            n("res", Op::Add { relu: true }, &[Src::Node(1), Src::Node(0)]),
            n(
                "pool",
                Op::MaxPool {
                    kernel: 2,
                    stride: 2,
                },
                &[Src::Node(2)],
            ),
            n("act", Op::Relu, &[Src::Node(3)]),
            n("conv3", conv(4, 3, 2, 0, false), &[Src::Node(4)]),
            n(
                "avg",
                Op::AvgPool {
                    kernel: 1,
                    stride: 1,
                },
                &[Src::Node(5)],
            ),
            n("flat", Op::Flatten, &[Src::Node(6)]),
            n(
                "fc",
                Op::Dense {
                    in_features: 3,
                    out_features: 5,
                    relu: false,
                },
                &[Src::Node(7)],
            ),
        ],
    }
}

/// Dense layers straight on a vector input (no Flatten), and a conv on a 1×1 vector: the
/// exporter must change ranks with Reshape and the importer must see those as no-ops.
pub fn vector_graph() -> Graph {
    let dense = |i, o, relu| Op::Dense {
        in_features: i,
        out_features: o,
        relu,
    };
    Graph {
        input_shape: [12, 1, 1],
        nodes: vec![
            n("fc1", dense(12, 8, true), &[Src::Input]),
            n(
                "pointwise",
                Op::Conv2d {
                    in_channels: 8,
                    out_channels: 8,
                    kernel: [1, 1],
                    stride: 1,
                    padding: caq_model::graph::Padding::uniform(0),
                    groups: 1,
                    relu: false,
                },
                &[Src::Node(0)],
            ),
            n(
                "skip",
                Op::Add { relu: false },
                &[Src::Node(0), Src::Node(1)],
            ),
            n("fc2", dense(8, 4, false), &[Src::Node(2)]),
        ],
    }
}
