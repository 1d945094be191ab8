//! The reference architectures as caq graphs — the digits MLP, the MNIST LeNet and the four MLPerf
//! Tiny reference networks (ResNet-8, DS-CNN, MobileNetV1 α = 0.25, the FC autoencoder) — and
//! their seeded Kaiming initialisation. Plain graph construction, free of the training feature, so
//! benchmarks and the board build can shape a model without candle.
//!
//! The MLPerf Tiny networks follow the reference Keras models (github.com/mlcommons/tiny,
//! `benchmark/training`): "same" padding in TensorFlow's convention (`Padding::same`, asymmetric
//! for a stride-2 or even kernel), BatchNormalization folded into the convolution before it (a
//! float model here has no BN node), ReLU after every BN except before a residual add, dropout
//! dropped (inference).

use crate::graph::{FloatModel, FloatParams, Graph, Node, Op, Padding, Src};
use ndarray::{Array1, Array2};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The reference architectures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arch {
    /// flatten → dense 128 ReLU → dense 64 ReLU → dense `classes` (64-128-64-10 on digits).
    #[serde(rename = "mlp")]
    Mlp,
    /// conv 5×5 → 16, ReLU → maxpool 2 → conv 5×5 → 32, ReLU → maxpool 2 → flatten → dense 64
    /// ReLU → dense `classes`. 46,730 parameters on 28×28 MNIST; needs inputs of at least 16×16.
    #[serde(rename = "lenet", alias = "le_net")]
    LeNet,
    /// MLPerf Tiny image classification (CIFAR-10, 3×32×32): conv 3×3 → 16; three residual
    /// stacks of two 3×3 convs (16, 32, 64 filters; the second and third start with stride 2 and
    /// take a 1×1 stride-2 shortcut conv), the add followed by ReLU; global average pool;
    /// dense `classes`. 77,706 parameters at 3×32×32, 10 classes.
    #[serde(rename = "resnet8")]
    ResNet8,
    /// MLPerf Tiny keyword spotting (1×49×10 MFCC): conv 10×4 stride 2 → 64; four
    /// depthwise-separable blocks (depthwise 3×3 then pointwise 1×1 → 64, ReLU after each);
    /// global average pool; dense `classes`. 22,604 parameters at 1×49×10, 12 classes.
    #[serde(rename = "ds_cnn")]
    DsCnn,
    /// MLPerf Tiny visual wake words (3×96×96): MobileNetV1 with width multiplier 0.25: conv 3×3
    /// stride 2 → 8, then 13 depthwise-separable blocks (16, 32·2, 64·2, 128·6, 256·2 filters;
    /// stride 2 at the first block of 32, 64, 128 and 256); global average pool; dense `classes`.
    /// 210,850 parameters at 3×96×96, 2 classes.
    #[serde(rename = "mobilenet_v1")]
    MobileNetV1,
    /// MLPerf Tiny anomaly detection (640 = 5 frames × 128 mel bins): dense 128 ×4 → 8 → 128 ×4
    /// (ReLU after each) → dense back to the input length, no ReLU (the reconstruction; the
    /// anomaly score is its error). `classes` is not used. 265,864 parameters at 640.
    #[serde(rename = "autoencoder")]
    AutoEncoder,
}

impl Arch {
    /// Every architecture with its command-line name.
    pub const ALL: [(&'static str, Arch); 6] = [
        ("mlp", Arch::Mlp),
        ("lenet", Arch::LeNet),
        ("resnet8", Arch::ResNet8),
        ("ds_cnn", Arch::DsCnn),
        ("mobilenet_v1", Arch::MobileNetV1),
        ("autoencoder", Arch::AutoEncoder),
    ];

    /// The architecture called `name` (one of [`Arch::ALL`]'s names).
    pub fn from_name(name: &str) -> Option<Arch> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|&(_, a)| a)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map(|(n, _)| *n)
            .expect("every Arch is in ALL")
    }

    /// The MLPerf Tiny benchmark input shape (CHW) and class count of the four Tiny networks;
    /// `None` for the MLP and the LeNet, whose shape comes from their data.
    pub fn mlperf_tiny(self) -> Option<([usize; 3], usize)> {
        match self {
            Arch::ResNet8 => Some(([3, 32, 32], 10)),
            Arch::DsCnn => Some(([1, 49, 10], 12)),
            Arch::MobileNetV1 => Some(([3, 96, 96], 2)),
            Arch::AutoEncoder => Some(([640, 1, 1], 640)),
            Arch::Mlp | Arch::LeNet => None,
        }
    }
}

const MLP_HIDDEN: [usize; 2] = [128, 64];
const LENET_CHANNELS: [usize; 2] = [16, 32];
const LENET_KERNEL: usize = 5;
const LENET_HIDDEN: usize = 64;
const RESNET8_FILTERS: [usize; 3] = [16, 32, 64];
const DSCNN_FILTERS: usize = 64;
const DSCNN_BLOCKS: usize = 4;
/// MobileNetV1 α = 0.25: the first conv's filters, then each depthwise-separable block's
/// (pointwise filters, depthwise stride).
const MOBILENET_FIRST: usize = 8;
const MOBILENET_BLOCKS: [(usize, usize); 13] = [
    (16, 1),
    (32, 2),
    (32, 1),
    (64, 2),
    (64, 1),
    (128, 2),
    (128, 1),
    (128, 1),
    (128, 1),
    (128, 1),
    (128, 1),
    (256, 2),
    (256, 1),
];
const AE_HIDDEN: usize = 128;
const AE_BOTTLENECK: usize = 8;
const AE_DEPTH: usize = 4;

/// Builds a graph node by node; each node's output shape is tracked so that "same" padding and
/// flatten sizes follow the input.
struct Builder {
    input_shape: [usize; 3],
    nodes: Vec<Node>,
    shapes: Vec<[usize; 3]>,
}

impl Builder {
    fn new(input_shape: [usize; 3]) -> Builder {
        Builder {
            input_shape,
            nodes: Vec::new(),
            shapes: Vec::new(),
        }
    }

    fn shape(&self, s: Src) -> [usize; 3] {
        match s {
            Src::Input => self.input_shape,
            Src::Node(j) => self.shapes[j],
        }
    }

    /// The last node added (the graph input before any).
    fn last(&self) -> Src {
        match self.nodes.len() {
            0 => Src::Input,
            n => Src::Node(n - 1),
        }
    }

    /// Adds `op` reading `inputs`; a node that does not fit its input gets a zero shape (the
    /// graph's `shapes()` then names it), so a too-small input is an error, not a panic here.
    fn push(&mut self, name: String, op: Op, inputs: Vec<Src>) -> Src {
        let ins: Vec<_> = inputs.iter().map(|&s| self.shape(s)).collect();
        let node = Node { name, op, inputs };
        let shape = crate::graph::node_shape(&node, &ins).unwrap_or([0, 0, 0]);
        self.nodes.push(node);
        self.shapes.push(shape);
        self.last()
    }

    fn then(&mut self, name: impl Into<String>, op: Op) -> Src {
        let from = self.last();
        self.push(name.into(), op, vec![from])
    }

    /// A convolution with TensorFlow "same" padding over `from`.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        name: impl Into<String>,
        from: Src,
        out_channels: usize,
        kernel: [usize; 2],
        stride: usize,
        groups: usize,
        relu: bool,
    ) -> Src {
        let [c, h, w] = self.shape(from);
        let op = Op::Conv2d {
            in_channels: c,
            out_channels,
            kernel,
            stride,
            padding: Padding::same([h, w], kernel, stride),
            groups,
            relu,
        };
        self.push(name.into(), op, vec![from])
    }

    fn dense(&mut self, name: impl Into<String>, out_features: usize, relu: bool) -> Src {
        let from = self.last();
        let op = Op::Dense {
            in_features: self.shape(from)[0],
            out_features,
            relu,
        };
        self.push(name.into(), op, vec![from])
    }

    fn graph(self) -> Graph {
        Graph {
            input_shape: self.input_shape,
            nodes: self.nodes,
        }
    }
}

/// The caq graph of `arch` for images of `input_shape` (CHW). An input too small for the
/// architecture gives a graph whose `shapes()` reports the layer that does not fit.
pub fn graph_for(arch: Arch, input_shape: [usize; 3], classes: usize) -> Graph {
    let mut b = Builder::new(input_shape);
    match arch {
        Arch::Mlp => {
            let [h1, h2] = MLP_HIDDEN;
            b.then("flatten", Op::Flatten);
            b.dense("fc1", h1, true);
            b.dense("fc2", h2, true);
            b.dense("fc3", classes, false);
        }
        Arch::LeNet => {
            let [c1, c2] = LENET_CHANNELS;
            let pool = Op::MaxPool {
                kernel: 2,
                stride: 2,
            };
            let valid = |b: &mut Builder, name: &str, out: usize| {
                let from = b.last();
                let op = Op::Conv2d {
                    in_channels: b.shape(from)[0],
                    out_channels: out,
                    kernel: [LENET_KERNEL, LENET_KERNEL],
                    stride: 1,
                    padding: Padding::uniform(0),
                    groups: 1,
                    relu: true,
                };
                b.push(name.into(), op, vec![from]);
            };
            valid(&mut b, "conv1", c1);
            b.then("pool1", pool.clone());
            valid(&mut b, "conv2", c2);
            b.then("pool2", pool);
            b.then("flatten", Op::Flatten);
            b.dense("fc1", LENET_HIDDEN, true);
            b.dense("fc2", classes, false);
        }
        Arch::ResNet8 => {
            let [f1, _, _] = RESNET8_FILTERS;
            let mut x = b.conv("conv0", Src::Input, f1, [3, 3], 1, 1, true);
            for (i, &f) in RESNET8_FILTERS.iter().enumerate() {
                let s = i + 1;
                let stride = if i == 0 { 1 } else { 2 };
                // The shortcut, then conv1, then conv2: the shortcut and conv1 read the block's
                // input, which the layer engine keeps on chip for the second (docs/hardware.md,
                // "A resident input map"), and conv2 reads conv1's output, which it mirrors on
                // chip as it writes it ("The output mirror").
                let shortcut = if stride == 1 {
                    x
                } else {
                    b.conv(format!("s{s}_short"), x, f, [1, 1], stride, 1, false)
                };
                let a = b.conv(format!("s{s}_conv1"), x, f, [3, 3], stride, 1, true);
                let y = b.conv(format!("s{s}_conv2"), a, f, [3, 3], 1, 1, false);
                x = b.push(
                    format!("s{s}_add"),
                    Op::Add { relu: true },
                    vec![y, shortcut],
                );
            }
            b.then("pool", Op::GlobalAvgPool);
            b.then("flatten", Op::Flatten);
            b.dense("fc", classes, false);
        }
        Arch::DsCnn => {
            let f = DSCNN_FILTERS;
            let mut x = b.conv("conv0", Src::Input, f, [10, 4], 2, 1, true);
            for i in 1..=DSCNN_BLOCKS {
                x = b.conv(format!("dw{i}"), x, f, [3, 3], 1, f, true);
                x = b.conv(format!("pw{i}"), x, f, [1, 1], 1, 1, true);
            }
            b.then("pool", Op::GlobalAvgPool);
            b.then("flatten", Op::Flatten);
            b.dense("fc", classes, false);
        }
        Arch::MobileNetV1 => {
            let mut x = b.conv("conv0", Src::Input, MOBILENET_FIRST, [3, 3], 2, 1, true);
            for (i, &(f, stride)) in MOBILENET_BLOCKS.iter().enumerate() {
                let c = b.shape(x)[0];
                x = b.conv(format!("dw{}", i + 1), x, c, [3, 3], stride, c, true);
                x = b.conv(format!("pw{}", i + 1), x, f, [1, 1], 1, 1, true);
            }
            b.then("pool", Op::GlobalAvgPool);
            b.then("flatten", Op::Flatten);
            b.dense("fc", classes, false);
        }
        Arch::AutoEncoder => {
            let [c, h, w] = input_shape;
            b.then("flatten", Op::Flatten);
            for i in 1..=AE_DEPTH {
                b.dense(format!("enc{i}"), AE_HIDDEN, true);
            }
            b.dense("bottleneck", AE_BOTTLENECK, true);
            for i in 1..=AE_DEPTH {
                b.dense(format!("dec{i}"), AE_HIDDEN, true);
            }
            b.dense("out", c * h * w, false);
        }
    }
    b.graph()
}

/// Kaiming-uniform weights (gain √2 before a ReLU, 1 otherwise: U(±√(3·gain²/K))) and
/// PyTorch-style biases U(±1/√K), K a layer's reduction length, drawn from `rng` layer by layer
/// in graph order (all of a layer's weights, row-major `[out, K]`, then its biases). The
/// training's initialisation; `None` for the nodes without weights.
pub fn kaiming_params(graph: &Graph, rng: &mut impl Rng) -> Vec<Option<FloatParams>> {
    graph
        .nodes
        .iter()
        .map(|node| {
            let (out, k, _) = node.op.weight_matrix_dims()?;
            let gain2 = if node.op.relu() { 2.0 } else { 1.0 };
            let w_bound = (3.0 * gain2 / k as f32).sqrt();
            let b_bound = 1.0 / (k as f32).sqrt();
            let w: Vec<f32> = (0..out * k)
                .map(|_| rng.random_range(-w_bound..w_bound))
                .collect();
            let b: Vec<f32> = (0..out)
                .map(|_| rng.random_range(-b_bound..b_bound))
                .collect();
            Some(FloatParams {
                weight: Array2::from_shape_vec((out, k), w).expect("out·K values"),
                bias: Array1::from(b),
            })
        })
        .collect()
}

/// `arch` with seeded Kaiming weights ([`kaiming_params`] from ChaCha8 seeded with `seed`): the
/// untrained network of the benchmark shapes, for latency, bytes and bit-exactness where its data
/// is not available.
pub fn seeded(
    arch: Arch,
    input_shape: [usize; 3],
    classes: usize,
    seed: u64,
) -> crate::Result<FloatModel> {
    use rand::SeedableRng;
    let graph = graph_for(arch, input_shape, classes);
    crate::validate::graph(&graph, &crate::validate::Limits::for_this_machine())?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let params = kaiming_params(&graph, &mut rng);
    let m = FloatModel { graph, params };
    m.validate()?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlperf_tiny_networks_have_the_reference_shapes_and_sizes() {
        // Parameter counts of the reference Keras models less their BatchNormalization parameters
        // (folded here), counted by hand from the layer list.
        for (arch, want_params, want_out) in [
            (Arch::ResNet8, 77_706, [10, 1, 1]),
            (Arch::DsCnn, 22_604, [12, 1, 1]),
            (Arch::MobileNetV1, 210_850, [2, 1, 1]),
            (Arch::AutoEncoder, 265_864, [640, 1, 1]),
        ] {
            let (shape, classes) = arch.mlperf_tiny().unwrap();
            let m = seeded(arch, shape, classes, 1).unwrap();
            assert_eq!(m.param_count(), want_params, "{arch:?}");
            assert_eq!(m.graph.output_shape().unwrap(), want_out, "{arch:?}");
            assert_eq!(Arch::from_name(arch.name()), Some(arch));
        }
    }

    #[test]
    fn mlperf_tiny_maps_follow_same_padding() {
        let shapes = |a: Arch| {
            let (s, c) = a.mlperf_tiny().unwrap();
            graph_for(a, s, c).shapes().unwrap()
        };
        // DS-CNN: 49x10 -> 25x5 by the 10x4 stride-2 conv, padded [4, 1, 5, 1].
        let g = graph_for(Arch::DsCnn, [1, 49, 10], 12);
        assert_eq!(shapes(Arch::DsCnn)[0], [64, 25, 5]);
        match g.nodes[0].op {
            Op::Conv2d { padding, .. } => assert_eq!(
                padding,
                Padding {
                    top: 4,
                    left: 1,
                    bottom: 5,
                    right: 1
                }
            ),
            _ => panic!("conv0 is a conv"),
        }
        // ResNet-8: 32 -> 16 -> 8; the last map before the pool is 64x8x8.
        let r = shapes(Arch::ResNet8);
        assert_eq!(r[r.len() - 4], [64, 8, 8]);
        // MobileNetV1: 96 -> 48 -> 24 -> 12 -> 6 -> 3.
        let m = shapes(Arch::MobileNetV1);
        assert_eq!(m[0], [8, 48, 48]);
        assert_eq!(m[m.len() - 4], [256, 3, 3]);
    }

    #[test]
    fn seeded_models_are_deterministic() {
        let a = seeded(Arch::DsCnn, [1, 49, 10], 12, 7).unwrap();
        assert_eq!(a, seeded(Arch::DsCnn, [1, 49, 10], 12, 7).unwrap());
        assert_ne!(a, seeded(Arch::DsCnn, [1, 49, 10], 12, 8).unwrap());
    }

    #[test]
    fn a_too_small_input_is_an_error_not_a_panic() {
        assert!(seeded(Arch::LeNet, [1, 8, 8], 10, 0).is_err());
        assert!(seeded(Arch::ResNet8, [3, 0, 4], 10, 0).is_err());
        // "Same" padding fits any map of at least one pixel.
        let tiny = seeded(Arch::DsCnn, [1, 3, 2], 12, 0).unwrap();
        assert_eq!(tiny.graph.output_shape().unwrap(), [12, 1, 1]);
    }
}
