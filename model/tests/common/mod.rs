//! Fixtures shared by the integration tests: a tiny network with every kind of node, and random
//! images for it.

use caq_model::data::Dataset;
use caq_model::graph::{FloatModel, FloatParams, Graph, Node, Op, Src};
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// conv(1→3, 3x3, pad 1) → maxpool 2 → flatten → dense(48→5): small, every kind of node.
pub fn tiny_model(seed: u64) -> FloatModel {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let graph = Graph {
        input_shape: [1, 8, 8],
        nodes: vec![
            Node {
                name: "conv1".into(),
                op: Op::Conv2d {
                    in_channels: 1,
                    out_channels: 3,
                    kernel: [3, 3],
                    stride: 1,
                    padding: caq_model::graph::Padding::uniform(1),
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
                name: "flatten".into(),
                op: Op::Flatten,
                inputs: vec![Src::Node(1)],
            },
            Node {
                name: "fc".into(),
                op: Op::Dense {
                    in_features: 48,
                    out_features: 5,
                    relu: false,
                },
                inputs: vec![Src::Node(2)],
            },
        ],
    };
    let mut p = |o: usize, k: usize| {
        Some(FloatParams {
            weight: Array2::from_shape_fn((o, k), |_| rng.random_range(-0.5..0.5f32)),
            bias: Array1::from_shape_fn(o, |_| rng.random_range(-0.1..0.1f32)),
        })
    };
    let params = vec![p(3, 9), None, None, p(5, 48)];
    FloatModel { graph, params }
}

pub fn tiny_data(n: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Dataset {
        name: "random".into(),
        shape: [1, 8, 8],
        pixels: (0..n * 64).map(|_| rng.random_range(0..=16u8)).collect(),
        labels: (0..n).map(|i| (i % 5) as u8).collect(),
        max_value: 16,
        classes: 5,
    }
}
