//! The reference architectures as caq graphs: the digits MLP and the MNIST LeNet. Plain graph
//! construction, free of the training feature, so benchmarks and the board build can shape a
//! model without candle.

use crate::graph::{Graph, Node, Op, Src};
use serde::{Deserialize, Serialize};

/// The reference architectures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// flatten → dense 128 ReLU → dense 64 ReLU → dense `classes` (64-128-64-10 on digits).
    Mlp,
    /// conv 5×5 → 16, ReLU → maxpool 2 → conv 5×5 → 32, ReLU → maxpool 2 → flatten → dense 64
    /// ReLU → dense `classes`. 46,730 parameters on 28×28 MNIST; needs inputs of at least 16×16.
    LeNet,
}

const MLP_HIDDEN: [usize; 2] = [128, 64];
const LENET_CHANNELS: [usize; 2] = [16, 32];
const LENET_KERNEL: usize = 5;
const LENET_HIDDEN: usize = 64;

/// The caq graph of `arch` for images of `input_shape` (CHW). An input too small for the
/// architecture gives a graph whose `shapes()` reports the layer that does not fit.
pub fn graph_for(arch: Arch, input_shape: [usize; 3], classes: usize) -> Graph {
    let mut nodes: Vec<Node> = Vec::new();
    let mut push = |name: &str, op: Op| {
        let input = match nodes.len() {
            0 => Src::Input,
            n => Src::Node(n - 1),
        };
        nodes.push(Node {
            name: name.into(),
            op,
            inputs: vec![input],
        });
    };
    let dense = |in_features, out_features, relu| Op::Dense {
        in_features,
        out_features,
        relu,
    };
    let [c, h, w] = input_shape;
    match arch {
        Arch::Mlp => {
            let [h1, h2] = MLP_HIDDEN;
            push("flatten", Op::Flatten);
            push("fc1", dense(c * h * w, h1, true));
            push("fc2", dense(h1, h2, true));
            push("fc3", dense(h2, classes, false));
        }
        Arch::LeNet => {
            let [c1, c2] = LENET_CHANNELS;
            let conv = |in_channels, out_channels| Op::Conv2d {
                in_channels,
                out_channels,
                kernel: [LENET_KERNEL, LENET_KERNEL],
                stride: 1,
                padding: 0,
                relu: true,
            };
            let pool = Op::MaxPool {
                kernel: 2,
                stride: 2,
            };
            // Valid 5×5 conv then 2×2 pool, twice; saturating so a too-small input yields a
            // graph that fails validation instead of an arithmetic overflow here.
            let side = |s: usize| s.saturating_sub(LENET_KERNEL - 1) / 2;
            let (fh, fw) = (side(side(h)), side(side(w)));
            push("conv1", conv(c, c1));
            push("pool1", pool.clone());
            push("conv2", conv(c1, c2));
            push("pool2", pool);
            push("flatten", Op::Flatten);
            push("fc1", dense(c2 * fh * fw, LENET_HIDDEN, true));
            push("fc2", dense(LENET_HIDDEN, classes, false));
        }
    }
    Graph { input_shape, nodes }
}
