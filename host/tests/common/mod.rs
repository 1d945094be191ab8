//! Models, data and devices shared by the host integration tests.
#![allow(dead_code)]

use caq_model::data::{self, Dataset};
use caq_model::graph::{FloatModel, FloatParams, Graph, Node, Op, Src};
use caq_model::qmodel::{self, QModel, QuantizeConfig};
use caq_sim::FuncDevice;
use caq_spec::{AccelConfig, DeviceAddr, MemRegion};
use ndarray::{Array1, Array2};

pub const BASE: u64 = 0x1000_0000;

pub fn config(name: &str) -> AccelConfig {
    let path = format!("{}/../configs/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    AccelConfig::load(path).expect("shipped config")
}

/// Deterministic weights in ±1/√K (a xorshift stream; no accuracy needed, only byte-equality).
pub fn random_model(graph: Graph, seed: u64) -> FloatModel {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
    };
    let params = graph
        .nodes
        .iter()
        .map(|n| {
            n.op.weight_matrix_dims().map(|(o, k, _)| {
                let r = 1.0 / (k as f32).sqrt();
                FloatParams {
                    weight: Array2::from_shape_simple_fn((o, k), || next() * r * 1.7),
                    bias: Array1::from_shape_simple_fn(o, || next() * 0.1),
                }
            })
        })
        .collect();
    let m = FloatModel { graph, params };
    m.validate().expect("valid model");
    m
}

pub fn chain(input_shape: [usize; 3], ops: Vec<(&str, Op)>) -> Graph {
    let nodes = ops
        .into_iter()
        .enumerate()
        .map(|(i, (name, op))| Node {
            name: name.into(),
            op,
            inputs: vec![if i == 0 { Src::Input } else { Src::Node(i - 1) }],
        })
        .collect();
    Graph { input_shape, nodes }
}

pub fn dense(i: usize, o: usize, relu: bool) -> Op {
    Op::Dense {
        in_features: i,
        out_features: o,
        relu,
    }
}

pub fn conv(i: usize, o: usize, k: usize, pad: usize) -> Op {
    Op::Conv2d {
        in_channels: i,
        out_channels: o,
        kernel: [k, k],
        stride: 1,
        padding: caq_model::graph::Padding::uniform(pad),
        groups: 1,
        relu: true,
    }
}

pub fn maxpool() -> Op {
    Op::MaxPool {
        kernel: 2,
        stride: 2,
    }
}

/// The digits MLP: 64-128-64-10.
pub fn mlp() -> Graph {
    chain(
        [1, 8, 8],
        vec![
            ("flatten", Op::Flatten),
            ("fc1", dense(64, 128, true)),
            ("fc2", dense(128, 64, true)),
            ("fc3", dense(64, 10, false)),
        ],
    )
}

/// MNIST-shaped LeNet: conv5x5 16, pool, conv5x5 32, pool, fc 64, fc 10 on 28x28.
pub fn lenet() -> Graph {
    chain(
        [1, 28, 28],
        vec![
            ("conv1", conv(1, 16, 5, 0)),
            ("pool1", maxpool()),
            ("conv2", conv(16, 32, 5, 0)),
            ("pool2", maxpool()),
            ("flatten", Op::Flatten),
            ("fc1", dense(512, 64, true)),
            ("fc2", dense(64, 10, false)),
        ],
    )
}

/// A residual block on 8x8 digits: conv, conv, add (host), avg-pool (host), a standalone ReLU
/// (host), dense.
pub fn residual() -> Graph {
    let node = |name: &str, op: Op, inputs: Vec<Src>| Node {
        name: name.into(),
        op,
        inputs,
    };
    Graph {
        input_shape: [1, 8, 8],
        nodes: vec![
            node("conv1", conv(1, 8, 3, 1), vec![Src::Input]),
            node("conv2", conv(8, 8, 3, 1), vec![Src::Node(0)]),
            node(
                "add",
                Op::Add { relu: false },
                vec![Src::Node(1), Src::Node(0)],
            ),
            node(
                "pool",
                Op::AvgPool {
                    kernel: 2,
                    stride: 2,
                },
                vec![Src::Node(2)],
            ),
            node("relu", Op::Relu, vec![Src::Node(3)]),
            node("flatten", Op::Flatten, vec![Src::Node(4)]),
            node("fc", dense(128, 10, false), vec![Src::Node(5)]),
        ],
    }
}

/// The MLPerf Tiny shapes in small, on 1x8x8: a tall 9x3 stride-2 conv with TensorFlow "same"
/// padding (top 3, bottom 4, left 0, right 1), a depthwise 3x3, a pointwise 1x1, a grouped 3x3
/// (2 groups, padded [0, 1, 2, 1]), a global average pool and a dense layer.
#[allow(dead_code)]
pub fn separable() -> Graph {
    use caq_model::graph::Padding;
    let conv = |i: usize, o: usize, kernel: [usize; 2], stride, padding, groups| Op::Conv2d {
        in_channels: i,
        out_channels: o,
        kernel,
        stride,
        padding,
        groups,
        relu: true,
    };
    chain(
        [1, 8, 8],
        vec![
            (
                "tall",
                conv(1, 12, [9, 3], 2, Padding::same([8, 8], [9, 3], 2), 1),
            ),
            ("dw", conv(12, 12, [3, 3], 1, Padding::uniform(1), 12)),
            ("pw", conv(12, 8, [1, 1], 1, Padding::default(), 1)),
            (
                "grouped",
                conv(
                    8,
                    8,
                    [3, 3],
                    1,
                    Padding {
                        top: 0,
                        left: 1,
                        bottom: 2,
                        right: 1,
                    },
                    2,
                ),
            ),
            ("gap", Op::GlobalAvgPool),
            ("flatten", Op::Flatten),
            ("fc", dense(8, 10, false)),
        ],
    )
}

/// Grouped convolutions whose rows each fit one local region of 16 (sim-small's group size):
/// a tall 5x3 conv (K = 15), a depthwise 3x3 (K = 9), a pointwise 1x1 (K = 12), a grouped 1x3
/// of 4 groups (K = 6), a global average pool and a dense layer, on 1x8x8.
#[allow(dead_code)]
pub fn regional() -> Graph {
    use caq_model::graph::Padding;
    let conv = |i: usize, o: usize, kernel: [usize; 2], groups| Op::Conv2d {
        in_channels: i,
        out_channels: o,
        kernel,
        stride: 1,
        padding: Padding::same([8, 8], kernel, 1),
        groups,
        relu: true,
    };
    chain(
        [1, 8, 8],
        vec![
            ("tall", conv(1, 12, [5, 3], 1)),
            ("dw", conv(12, 12, [3, 3], 12)),
            ("pw", conv(12, 8, [1, 1], 1)),
            ("grouped", conv(8, 8, [1, 3], 4)),
            ("gap", Op::GlobalAvgPool),
            ("flatten", Op::Flatten),
            ("fc", dense(8, 10, false)),
        ],
    )
}

/// [`quantize`] with local quantization regions of `group_size`.
#[allow(dead_code)]
pub fn quantize_regions(
    graph: Graph,
    set: &Dataset,
    levels: &[u8],
    seed: u64,
    group_size: usize,
) -> QModel {
    let m = random_model(graph, seed);
    let mut cfg = QuantizeConfig::nested(levels);
    cfg.calib_images = 64;
    cfg.group_size = Some(group_size);
    qmodel::quantize(&m, set, &cfg).expect("quantizes")
}

pub fn digits() -> Dataset {
    data::digits().expect("embedded digits")
}

/// Digits scaled up to 28x28 (nearest neighbour, 0..=16 → 0..=240).
pub fn digits28(d: &Dataset, n: usize) -> Dataset {
    let mut pixels = Vec::with_capacity(n * 784);
    for i in 0..n {
        let img = d.image(i);
        for y in 0..28 {
            for x in 0..28 {
                pixels.push(img[(y * 8 / 28) * 8 + x * 8 / 28] * 15);
            }
        }
    }
    Dataset {
        name: "digits28".into(),
        shape: [1, 28, 28],
        pixels,
        labels: d.labels[..n].to_vec(),
        max_value: 255,
        classes: 10,
    }
}

pub fn quantize(graph: Graph, set: &Dataset, levels: &[u8], seed: u64) -> QModel {
    let m = random_model(graph, seed);
    let mut cfg = QuantizeConfig::nested(levels);
    cfg.calib_images = 64;
    qmodel::quantize(&m, set, &cfg).expect("quantizes")
}

pub fn device(cfg: &AccelConfig) -> FuncDevice {
    FuncDevice::new(
        cfg,
        MemRegion {
            base: DeviceAddr(BASE),
            len: 4 << 20,
        },
    )
    .expect("device")
}

/// The median stage-0 margin of `bits` over the first `n` images: a cascade with it as its
/// threshold escalates about half of them.
pub fn median_margin(q: &QModel, bits: &[u8], set: &Dataset, n: usize) -> i32 {
    let ex = q.executor(bits).unwrap();
    let mut m: Vec<i32> = (0..n)
        .map(|i| caq_model::adaptive::margin(&ex.logits(set.image(i)).unwrap()))
        .collect();
    m.sort();
    m[n / 2]
}

/// A one-unit gate network on the digits MLP ([`mlp`]): the first hidden unit's code against its
/// median over the first `n` images picks `[4, 2, 2]` or `[4, 8, 8]`, so about half take each.
pub fn mlp_gate(q: &QModel, set: &Dataset, n: usize) -> caq_model::adaptive::GateNet {
    let codebook = vec![vec![4, 2, 2], vec![4, 8, 8]];
    let hidden_units = q.graph.shapes().unwrap()[1][0];
    let mut w1 = vec![0; hidden_units];
    w1[0] = 1;
    let first = q.executor(&codebook[0]).unwrap();
    let mut v: Vec<i32> = (0..n)
        .map(|i| first.run(set.image(i)).unwrap()[1][[0, 0, 0]])
        .collect();
    v.sort();
    caq_model::adaptive::GateNet {
        grid: 1,
        row_step: 1,
        hidden: 1,
        w1,
        b1: vec![0],
        shift: 0,
        w2: vec![0, 1],
        b2: vec![i64::from(v[n / 2]), 0],
        codebook,
    }
}
